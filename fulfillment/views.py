"""Coordinator pages: orders, one order's lines (polled by HTMX), a line's history, needs attention.

Every view goes through ``clinic_required`` and looks ids up inside ``request.clinic``: another
clinic's order or line is a 404.
"""

import datetime
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from clinics.access import record_patient_access
from clinics.models import Membership
from clinics.tenancy import clinic_required
from fizy.lib.payments import PaymentError
from fizy.lib.spreadsheet import csv_download
from prescriptions.documents import document_link_verify
from prescriptions.views import document_response

from . import selectors
from .attention import AttentionError
from .attention import attention_dismiss as attention_dismiss_item
from .fhir import order_fhir_bundle
from .models import OrderLine
from .holds import MAX_FILE_BYTES, HoldAnswerError, line_answer_hold
from .reroute import RerouteError, line_reroute
from .cancellation import CANCELLABLE, CancellationError, line_request_cancellation
from .settlement import PaymentServiceError, line_retry_charge
from .watchdog import overdue_lines

POLL_SECONDS = 5


def _date_or_none(value: str):
    try:
        return datetime.date.fromisoformat((value or "").strip())
    except ValueError:
        return None


@clinic_required
def orders(request):
    """The clinic's orders, searchable by patient and filterable by a line status and the dates placed."""
    search = request.GET.get("q", "").strip()[:100]
    status = request.GET.get("status", "")
    if status not in OrderLine.Status.values:
        status = ""
    placed_from, placed_to = _date_or_none(request.GET.get("from")), _date_or_none(request.GET.get("to"))
    found = selectors.orders_for_clinic(clinic=request.clinic, search=search, status=status,
                                        placed_from=placed_from, placed_to=placed_to)
    page = Paginator(found, 25).get_page(request.GET.get("page"))
    filters = {key: value for key, value in {"q": search, "status": status, "from": placed_from and placed_from.isoformat(),
                                             "to": placed_to and placed_to.isoformat()}.items() if value}
    context = {"nav": "orders", "page": page, "orders": selectors.orders_with_summary(page.object_list),
               "q": search, "status": status, "placed_from": placed_from, "placed_to": placed_to,
               "statuses": OrderLine.Status.choices, "filtered": bool(filters), "filter_query": urlencode(filters)}
    return render(request, "fulfillment/orders.html", context)


@clinic_required
def order(request, pk: int):
    found = _order_or_404(request, pk)
    status = request.GET.get("status", "")
    if status not in OrderLine.Status.values:
        status = ""
    search = request.GET.get("q", "").strip()[:100]
    counts = selectors.order_status_counts(order=found)
    lines = selectors.order_lines(order=found, status=status, search=search)
    open_items = selectors.open_items_by_line(lines=lines)
    for each in lines:
        each.open_item = open_items.get(each.pk)
    record_patient_access(request, (line.patient_id for line in lines))
    context = {
        "nav": "orders",
        "order": found,
        "lines": lines,
        "money": selectors.order_money(order=found, lines=lines),
        "cancellable": CANCELLABLE,
        "status": status,
        "q": search,
        "statuses": OrderLine.Status.choices,
        "summary": selectors.status_summary(counts),
        "n_lines": sum(counts.values()),
        "poll_seconds": 0 if selectors.order_is_settled_for_status(counts) else POLL_SECONDS,
    }
    # A line's history opens in a row under the line (and stays open while the page polls).
    history_pk = request.GET.get("history", "")
    if history_pk.isascii() and history_pk.isdigit():
        history = next((line for line in lines if line.pk == int(history_pk)), None)
        if history is not None:
            context.update(history=history, events=selectors.line_events(line=history),
                           focus_history=bool(request.htmx) and request.htmx.trigger != "order-lines")
    template = "fulfillment/order.html#order-lines" if request.htmx else "fulfillment/order.html"
    return render(request, template, context)


@clinic_required
def line(request, pk: int, line_pk: int):
    found = selectors.line_for_clinic(clinic=request.clinic, order_pk=pk, line_pk=line_pk)
    if found is None:
        raise Http404("No such line in this clinic.")
    record_patient_access(request, [found.patient_id])
    context = {"nav": "orders", "line": found, "order": found.order, "events": selectors.line_events(line=found)}
    template = "fulfillment/line.html#line-history" if request.htmx else "fulfillment/line.html"
    return render(request, template, context)


@clinic_required
@require_GET
def attention(request):
    """The worklist: open items (oldest first), or the resolved ones (``?tab=resolved``)."""
    resolved = request.GET.get("tab") == "resolved"
    context = {
        "nav": "attention",
        "items": selectors.attention_items(clinic=request.clinic, resolved=resolved),
        "resolved": resolved,
        "overdue": [] if resolved else _shown(request, overdue_lines(clinic=request.clinic)),
    }
    record_patient_access(request, (item.line.patient_id for item in context["items"]))
    return render(request, "fulfillment/attention.html", context)


def _shown(request, lines: list[OrderLine]) -> list[OrderLine]:
    """``lines`` (of a page about to be rendered), their patients recorded as shown."""
    record_patient_access(request, (line.patient_id for line in lines))
    return lines


@clinic_required
@require_POST
def attention_dismiss(request, pk: int):
    """A coordinator closes an item with a reason (the clinic handled it another way)."""
    item = selectors.attention_item_for_clinic(clinic=request.clinic, pk=pk)
    if item is None:
        raise Http404("No such item in this clinic.")
    try:
        attention_dismiss_item(item=item, actor=request.user, reason=request.POST.get("reason", ""))
    except AttentionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Dismissed: {item.line.product_name} for {item.line.patient.full_name}.")
    return redirect("fulfillment:attention")


def _order_or_404(request, pk: int):
    found = selectors.order_for_clinic(clinic=request.clinic, pk=pk)
    if found is None:
        raise Http404("No such order in this clinic.")
    return found


RECEIPT_HEADER = ["Patient", "Chart ID", "Product", "Quantity", "Pharmacy", "Unit price", "Shipping share",
                  "Fee share", "Charged", "Refunded", "Status"]


@clinic_required
@require_GET
def receipt(request, pk: int):
    """The order's receipt: a printable page (print stylesheet), or ``?format=csv``."""
    found = _order_or_404(request, pk)
    lines = _shown(request, selectors.receipt_lines(order=found))
    if request.GET.get("format") == "csv":
        return csv_download(
            filename=f"fizy-receipt-{found.number}.csv", header=RECEIPT_HEADER,
            rows=([line.patient.full_name, line.patient.chart_id, line.product_name, line.quantity,
                   line.partner_order.partner.name, line.unit_price, line.shipping_share, line.fee_share,
                   line.amount_charged, line.amount_refunded, line.get_status_display()] for line in lines),
        )
    return render(request, "fulfillment/receipt.html", {
        "nav": "orders", "order": found, "lines": lines, "money": selectors.order_money(order=found, lines=lines),
        "clinic": request.clinic,
    })


@clinic_required
@require_GET
def payments(request):
    """Every payment on the clinic's card (the Billing page loads it), and lines whose charge the
    bank declined."""
    context = {
        "nav": "billing", "events": selectors.clinic_payments(clinic=request.clinic),
        "awaiting": _shown(request, selectors.lines_awaiting_charge(clinic=request.clinic)),
        "can_manage": request.membership.role == Membership.Role.CLINIC_ADMIN,
    }
    template = "fulfillment/payments.html#payment-history" if request.htmx else "fulfillment/payments.html"
    return render(request, template, context)


@clinic_required
@require_POST
def charge_again(request, pk: int, line_pk: int):
    """A clinic admin, after fixing the card, asks to charge a declined line again."""
    found = selectors.line_for_clinic(clinic=request.clinic, order_pk=pk, line_pk=line_pk)
    if found is None:
        raise Http404("No such line in this clinic.")
    if request.membership.role != Membership.Role.CLINIC_ADMIN:
        messages.error(request, "Only a clinic admin can charge the clinic's card again.")
        return redirect("fulfillment:payments")
    try:
        event = line_retry_charge(line=found, actor=request.user)
    except (PaymentError, PaymentServiceError) as exc:
        messages.error(request, f"The charge could not be made: {exc}")
        return redirect("fulfillment:payments")
    found.refresh_from_db()
    if found.amount_charged:
        messages.success(request, f"Charged ${found.amount_charged:,} for {found.product_name} ({found.order.number}).")
    else:
        messages.error(request, (event.message if event else "") or "The card was declined again.")
    return redirect("fulfillment:payments")


@clinic_required
@require_POST
def line_reroute_view(request, pk: int, line_pk: int):
    """One click: a rejected line goes to the next eligible pharmacy (the payment follows its price)."""
    found = selectors.line_for_clinic(clinic=request.clinic, order_pk=pk, line_pk=line_pk)
    if found is None:
        raise Http404("No such line in this clinic.")
    try:
        new = line_reroute(line_id=found.pk, actor=request.user)
    except RerouteError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{found.product_name} for {found.patient.full_name} is sent to "
                                  f"{new.partner_order.partner.name} ({new.price:,.2f} USD).")
    if request.POST.get("back") == "attention":
        return redirect("fulfillment:attention")
    return redirect("fulfillment:order", pk=pk)


@clinic_required
def line_answer(request, pk: int, line_pk: int):
    """"Answer the pharmacy" for a line on hold: the form (GET), then text and/or a file sent (POST)."""
    found = selectors.line_for_clinic(clinic=request.clinic, order_pk=pk, line_pk=line_pk)
    if found is None:
        raise Http404("No such line in this clinic.")
    back = "attention" if request.POST.get("back", request.GET.get("back")) == "attention" else "order"
    if request.method == "POST":
        try:
            line_answer_hold(line=found, actor=request.user, text=request.POST.get("text", ""),
                             upload=request.FILES.get("file"))
        except HoldAnswerError as exc:
            messages.error(request, str(exc))
            if found.status != OrderLine.Status.ON_HOLD:
                return redirect("fulfillment:order", pk=pk)
        else:
            messages.success(request, f"Your answer is sent to {found.partner_order.partner.name}; the line shows "
                                      "“answered, waiting for the pharmacy” until the pharmacy moves it.")
            return redirect("fulfillment:attention") if back == "attention" else redirect("fulfillment:order", pk=pk)
    context = {"nav": "orders", "line": found, "order": found.order, "back": back,
               "answers": selectors.hold_answers(line=found), "max_mb": MAX_FILE_BYTES // (1024 * 1024)}
    return render(request, "fulfillment/answer.html", context)


@clinic_required
@require_POST
def line_cancel(request, pk: int, line_pk: int):
    """A coordinator cancels a line before it ships (the pharmacy confirms; a charge is refunded)."""
    found = selectors.line_for_clinic(clinic=request.clinic, order_pk=pk, line_pk=line_pk)
    if found is None:
        raise Http404("No such line in this clinic.")
    try:
        outcome = line_request_cancellation(line=found, actor=request.user, reason=request.POST.get("reason", ""))
    except CancellationError as exc:
        messages.error(request, str(exc))
    else:
        if outcome == "cancelled":
            messages.success(request, f"{found.product_name} for {found.patient.full_name} is cancelled; "
                                      "if it was charged, the charge is refunded.")
        else:
            messages.success(request, f"{found.partner_order.partner.name} was asked to cancel {found.product_name}; "
                                      "the line changes when the pharmacy confirms.")
    return redirect("fulfillment:order", pk=pk)


@require_GET
def partner_prescription_document(request, token):
    """The signed prescription document of one order line, for the partner pharmacy the line was
    routed to: the link in the order payload is signed for that partner and line and works for
    ``PRESCRIPTION_DOCUMENT_LINK_MAX_AGE`` seconds; an expired, altered or re-routed link is 404."""
    grant = document_link_verify(token)
    if grant is None:
        raise Http404
    line = (OrderLine.objects.select_related("prescription", "partner_order__partner", "order__clinic")
            .filter(pk=grant.order_line_id, prescription_id=grant.prescription_id,
                    partner_order__partner_id=grant.partner_id).first())
    if line is None:
        raise Http404
    # In the PHI access log as the pharmacy that opened it, for the line's clinic.
    request.clinic, request.access_actor_label = line.order.clinic, f"partner {line.partner_order.partner.slug}"
    record_patient_access(request, [line.patient_id])
    return document_response(line.prescription)


@clinic_required
@require_GET
def order_fhir(request, pk: int):
    """The order as a FHIR R4 Bundle (JSON), for the clinic's own systems (docs/fhir.md)."""
    order = _order_or_404(request, pk)
    bundle = order_fhir_bundle(order=order)
    record_patient_access(request, order.lines.values_list("patient_id", flat=True))
    response = JsonResponse(bundle, content_type="application/fhir+json")
    response["Content-Disposition"] = f'attachment; filename="order-{pk}-fhir.json"'
    return response
