from django.contrib import admin

from fizy.lib.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import Fill, Prescription


class FillInline(ReadOnlyInline):
    model = Fill
    fields = ["status", "order_line_id", "reserved_at", "used_at", "delivered_at", "given_back_at"]
    readonly_fields = fields


@admin.register(Prescription)
class PrescriptionAdmin(ReadOnlyAdmin):
    """Prescriptions are recorded by clinics (with their source and attestation) and their fills
    move with orders: staff look, never edit."""

    list_display = ["__str__", "clinic", "prescriber", "written_on", "expires_on", "fills_remaining", "status", "source"]
    list_filter = ["status", "source"]
    search_fields = ["rx_number", "erx_message_id", "patient__chart_id", "patient__last_name"]
    list_select_related = ["patient", "product", "clinic", "prescriber"]
    raw_id_fields = ["patient", "prescriber", "product", "clinic"]
    inlines = [FillInline]
