"""Carts are the coordinators' to edit (every change audited through the cart services); staff
see them read-only to help a clinic on the phone."""

from django.contrib import admin

from clinics.access import PatientAccessAdminMixin, lines_patients
from fizy.lib.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import Cart, CartLine


class CartLineInline(ReadOnlyInline):
    model = CartLine
    fields = ["patient", "product", "prescriber", "quantity", "sig", "days_supply", "refills", "added_by", "updated_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("patient", "product", "prescriber", "added_by")


@admin.register(Cart)
class CartAdmin(PatientAccessAdminMixin, ReadOnlyAdmin):
    list_display = ["__str__", "clinic", "status", "version", "line_count", "updated_at"]
    list_filter = ["status", "clinic"]
    search_fields = ["clinic__name", "lines__patient__last_name", "lines__patient__chart_id"]
    list_select_related = ["clinic__organization"]
    inlines = [CartLineInline]

    list_shows_patients = False  # the list names no patient; the page's lines do

    def patients_of(self, obj):
        return lines_patients(obj)

    @admin.display(description="lines")
    def line_count(self, obj):
        return obj.lines.count()
