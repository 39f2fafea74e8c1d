"""Pharmacy operations: orders with their lines, each line's history, what partners sent us,
payments, and the actions staff need — retry a failed dispatch (dispatch role), set a line's
status (dispatch), refund a shipped line (finance)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from clinics.access import PatientAccessAdminMixin, lines_patients
from clinics.approvals import ApprovalError
from clinics.models import Approval
from fizy.lib.admin import ActionsOnlyAdmin, ReadOnlyAdmin, ReadOnlyInline

from .dispatch import DispatchError, partner_order_retry_dispatch
from .finance import line_refund_by_finance, refund_approval_above
from .models import (
    ExpectedTime, LineEvent, Order, OrderLine, PartnerOrder, PaymentEvent, RefusedWebhookRequest, WebhookEvent,
)
from .selectors import partner_order_rollup, partner_orders_with_rollup
from .settlement import PaymentServiceError
from .status import LineStatusError, allowed_targets, line_set_status_by_staff
from .watchdog import overdue_filter


class OrderNumberSearchMixin:
    """The order number as printed or read out ("FZ-000036", "fz 36") finds its order; any other
    text goes through the usual search fields. ``order_number_lookup`` is the path to the order id."""

    order_number_lookup = "order_id"

    def get_search_results(self, request, queryset, search_term):
        order_id = Order.id_from_number(search_term)
        if order_id is not None and search_term.strip().upper().startswith(("FZ", "#")):
            return queryset.filter(**{self.order_number_lookup: order_id}), False
        return super().get_search_results(request, queryset, search_term)


@admin.display(description="status")
def rolled_up_status(partner_order):
    return partner_order_rollup(partner_order)


class PartnerOrderInline(ReadOnlyInline):
    model = PartnerOrder
    fields = ["partner", rolled_up_status, "partner_reference", "attempts", "last_error", "sent_at", "next_attempt_at"]
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request):
        return partner_orders_with_rollup(super().get_queryset(request).select_related("partner"))


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fk_name = "order"
    fields = ["patient", "product_name", "quantity", "partner_order", "status", "status_reason", "tracking_number", "landed_cost"]
    readonly_fields = fields
    show_change_link = True


class LineEventInline(ReadOnlyInline):
    model = LineEvent
    fields = ["at", "from_status", "to_status", "applied", "source", "actor", "actor_label", "reason", "payload"]
    readonly_fields = fields
    ordering = ["at", "id"]


@admin.register(Order)
class OrderAdmin(PatientAccessAdminMixin, OrderNumberSearchMixin, ReadOnlyAdmin):
    """An order is what the clinic submitted: staff look it up (by the number the clinic reads
    out, a patient's name or chart id, a partner's reference) and never edit it here."""

    list_display = ["number", "clinic", "placed_at", "placed_by", "total", "payment_status", "settlement_requested_at"]
    list_filter = ["payment_status", "clinic"]
    list_select_related = ["clinic__organization", "placed_by"]
    search_fields = [
        "=id", "payment_reference", "clinic__name", "lines__patient__first_name", "lines__patient__last_name",
        "=lines__patient__chart_id", "=partner_orders__partner_reference",
    ]
    search_help_text = "An order number (FZ-000036), a patient's name or chart id, a partner's reference, a clinic."
    order_number_lookup = "pk"
    ordering = ["-placed_at", "-id"]
    date_hierarchy = "placed_at"
    exclude = ["ship_to"]
    readonly_fields = ["ship_to_display"]
    inlines = [PartnerOrderInline, OrderLineInline]

    list_shows_patients = False  # the list names no patient; the page's lines do

    def patients_of(self, obj):
        return lines_patients(obj)

    @admin.display(description="ship to")
    def ship_to_display(self, order):
        ship_to = order.ship_to or {}
        address = ship_to.get("address") or {}
        street = ", ".join(p for p in (address.get("line1"), address.get("line2")) if p)
        place = " ".join(p for p in (f"{address.get('city', '')},", address.get("state"), address.get("zip")) if p)
        rows = [
            ("Clinic", ship_to.get("clinic")), ("NPI", ship_to.get("npi")), ("DEA", ship_to.get("dea")),
            ("Address", street), ("", place.strip(" ,")),
        ]
        return format_html_join("", "<div>{}{}</div>", ((f"{label}: " if label else "", value) for label, value in rows if value))


@admin.register(PartnerOrder)
class PartnerOrderAdmin(OrderNumberSearchMixin, ActionsOnlyAdmin):
    list_display = ["__str__", "partner", rolled_up_status, "attempts", "partner_reference", "last_error", "sent_at"]
    list_filter = ["status", "partner"]
    list_select_related = ["order", "partner"]
    search_fields = ["=order__id", "partner_reference"]
    search_help_text = "An order number (FZ-000036) or the partner's reference."
    ordering = ["-order_id", "partner__name"]
    actions = ["retry_dispatch"]

    def get_queryset(self, request):
        return partner_orders_with_rollup(super().get_queryset(request))

    @admin.action(description="Retry dispatch of the selected failed or stuck partner orders", permissions=["change"])
    def retry_dispatch(self, request, queryset):
        retried = 0
        for partner_order in queryset.order_by("pk"):
            try:
                partner_order_retry_dispatch(partner_order=partner_order, actor=request.user)
                retried += 1
            except DispatchError as error:
                self.message_user(request, str(error), messages.ERROR)
        if retried:
            self.message_user(request, f"{retried} partner order(s) queued for dispatch again.", messages.SUCCESS)


class OverdueFilter(admin.SimpleListFilter):
    """Lines waiting for their partner's next event longer than expected (fulfillment.watchdog)."""

    title = "next event"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue")]

    def queryset(self, request, queryset):
        return queryset.filter(overdue_filter()) if self.value() == "yes" else queryset


@admin.register(ExpectedTime)
class ExpectedTimeAdmin(admin.ModelAdmin):
    """How long a line may wait for its partner's next event before it is overdue. Without a row,
    the defaults of settings.LINE_EXPECTED_TIMES apply (sent → accepted 1 business day, accepted →
    shipped 5 days, shipped → delivered 7 days)."""

    list_display = ["__str__", "partner", "status", "days", "business_days"]
    list_editable = ["days", "business_days"]
    list_display_links = ["__str__"]
    list_filter = ["status", "partner"]
    list_select_related = ["partner"]


class SetLineStatusForm(forms.Form):
    to = forms.ChoiceField(label="New status")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Recorded on each line's history.")

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["to"].choices = choices


class RefundLineForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=300,
                             help_text="Why the clinic gets its money back (recorded with the refund and in the audit trail).")


class ChargeFailedFilter(admin.SimpleListFilter):
    """Lines whose follow-up charge was declined (the clinic must update its card)."""

    title = "follow-up charge"
    parameter_name = "charge"

    def lookups(self, request, model_admin):
        return [("failed", "Declined")]

    def queryset(self, request, queryset):
        if self.value() == "failed":
            return queryset.filter(charge_failed_at__isnull=False)
        return queryset


@admin.register(OrderLine)
class OrderLineAdmin(PatientAccessAdminMixin, OrderNumberSearchMixin, ActionsOnlyAdmin):
    list_display = ["id", "order_link", "patient", "product_name", "quantity", "partner", "status", "status_changed_at"]
    list_filter = [OverdueFilter, "status", ChargeFailedFilter, "partner_order__partner"]
    list_select_related = ["order", "patient", "partner_order__partner"]
    search_fields = [
        "=id", "=order__id", "patient__first_name", "patient__last_name", "=patient__chart_id", "tracking_number",
        "=partner_order__partner_reference",
    ]
    search_help_text = "An order number (FZ-000036), a patient's name or chart id, a tracking number, a partner's reference."
    ordering = ["-id"]
    inlines = [LineEventInline]
    actions = ["set_line_status", "refund_line"]

    @admin.display(description="order", ordering="order_id")
    def order_link(self, line):
        return format_html('<a href="{}">{}</a>', reverse("admin:fulfillment_order_change", args=[line.order_id]), line.order.number)

    @admin.display(description="partner")
    def partner(self, line):
        return line.partner_order.partner.name

    @admin.action(description="Set line status…", permissions=["change"])
    def set_line_status(self, request, queryset):
        lines = list(queryset.select_related("order", "patient").order_by("pk"))
        common = set.intersection(*(set(allowed_targets(line.status)) for line in lines)) if lines else set()
        choices = [(value, label) for value, label in OrderLine.Status.choices if value in common]
        if not choices:
            self.message_user(request, "No status change is allowed from every selected line's current status.", messages.ERROR)
            return None
        form = SetLineStatusForm(request.POST if "apply" in request.POST else None, choices=choices)
        if form.is_valid():
            done = 0
            for line in lines:
                try:
                    line_set_status_by_staff(line=line, to=form.cleaned_data["to"], actor=request.user, reason=form.cleaned_data["reason"])
                    done += 1
                except LineStatusError as error:
                    self.message_user(request, f"Line {line.pk}: {error}", messages.ERROR)
            if done:
                self.message_user(request, f"{done} line(s) set to {form.cleaned_data['to']}.", messages.SUCCESS)
            return None
        return self._line_action_page(
            request, lines, form, action="set_line_status", title="Set line status", submit="Set status",
            intro="Only the transitions allowed from every selected line's current status are offered. Each change "
                  "is recorded on the line's history and in the audit trail as made by you.",
        )

    def has_refund_permission(self, request):
        return request.user.has_perm("fulfillment.refund_orderline")

    @admin.action(description="Refund this line (after shipment)…", permissions=["refund"])
    def refund_line(self, request, queryset):
        lines = list(queryset.select_related("order", "patient").order_by("pk"))
        form = RefundLineForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for line in lines:
                try:
                    outcome = line_refund_by_finance(line=line, reason=form.cleaned_data["reason"], actor=request.user)
                except (PaymentServiceError, ApprovalError) as error:
                    self.message_user(request, f"Line {line.pk}: {error}", messages.ERROR)
                    continue
                if isinstance(outcome, Approval):
                    self.message_user(request, f"Line {line.pk}: a refund above ${refund_approval_above():,} waits for "
                                               f"a second finance staff member (approval #{outcome.pk}).", messages.WARNING)
                else:
                    self.message_user(request, f"Line {line.pk}: refunded ${outcome.amount:,}.", messages.SUCCESS)
            return None
        return self._line_action_page(
            request, lines, form, action="refund_line", title="Refund after shipment", submit="Refund",
            intro=f"The line stays shipped or delivered; what it was charged is given back once, with your reason "
                  f"(in the audit trail and on the clinic's Billing). A refund above ${refund_approval_above():,} "
                  f"waits for a second finance staff member's approval.",
        )

    def _line_action_page(self, request, lines, form, *, action, title, submit, intro):
        context = {
            **self.admin_site.each_context(request),
            "title": title, "intro": intro, "action": action, "submit": submit,
            "opts": self.model._meta,
            "lines": lines,
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "fulfillment/admin/line_action.html", context)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "partner_slug", "event_id", "outcome", "error"]
    list_filter = ["outcome", "partner_slug"]
    search_fields = ["event_id", "body"]


@admin.register(RefusedWebhookRequest)
class RefusedWebhookRequestAdmin(ReadOnlyAdmin):
    """Requests that failed the size, partner or signature check: metadata only, purged after
    WEBHOOK_REFUSED_RETENTION_DAYS days. A partner's misconfigured secret shows up here."""

    list_display = ["received_at", "partner_slug", "failed_check", "detail", "size", "source_address"]
    list_filter = ["failed_check", "partner"]
    search_fields = ["partner_slug", "source_address"]
    date_hierarchy = "received_at"


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "order", "clinic", "kind", "amount", "gateway", "reference"]
    list_filter = ["kind", "gateway"]
    list_select_related = ["order", "clinic"]
    search_fields = ["reference", "=order__id"]
