"""Reads of submitted orders that pages and other apps need (the public read API of fulfillment)."""

from django.db.models import Count, Exists, F, OuterRef, Q, Subquery

from fizy.lib.money import ZERO

from .models import AttentionItem, LineEvent, Order, OrderLine, PaymentEvent
from .reasons import reason_for
from .status import NEEDS_ATTENTION, NEVER_CHARGED, TERMINAL

# Lines that never reached the patient do not count as "what they last got".
NOT_RECEIVED = list(NEVER_CHARGED)


def latest_lines_by_patient_product(*, patient_ids=None, clinic=None) -> dict[tuple[int, int], OrderLine]:
    """For each (patient, product) ordered, the most recent line that was not rejected, cancelled
    or failed, with its order's ``placed_at``: for the given patients, or for every patient the
    given clinic has ordered for. One query."""
    received = OrderLine.objects.exclude(status__in=NOT_RECEIVED)
    newest = (
        received.filter(patient_id=OuterRef("patient_id"), product_id=OuterRef("product_id"))
        .order_by("-order__placed_at", "-id")
        .values("id")[:1]
    )
    scope = received
    if patient_ids is not None:
        scope = scope.filter(patient_id__in=list(patient_ids))
    if clinic is not None:
        scope = scope.filter(order__clinic=clinic)
    lines = (
        scope.annotate(newest_id=Subquery(newest), placed_at=F("order__placed_at"))
        .filter(id=F("newest_id"))
        .select_related("patient", "product", "prescriber")
    )
    return {(line.patient_id, line.product_id): line for line in lines}


def failed_authorizations(*, clinic_id: int, payload: dict) -> int:
    """How many authorizations for what ``payload`` names (checkout: its cart and version) ended
    without an order: declined or failed (``settlement.payment_record_failure``), or approved and
    then released (``settlement.authorization_release``)."""
    filters = {f"payload__{key}": value for key, value in payload.items()}
    return PaymentEvent.objects.filter(
        clinic_id=clinic_id, kind__in=[PaymentEvent.Kind.FAILED, PaymentEvent.Kind.CANCELLED], order=None, **filters
    ).count()


# --- coordinator pages -------------------------------------------------------------------------

S = OrderLine.Status
STATUS_TONE = {
    S.DELIVERED: "ok", S.SHIPPED: "ok", S.ACCEPTED: "ok", S.COMPOUNDING: "ok",
    S.REJECTED: "error", S.FAILED: "error", S.ON_HOLD: "warning", S.CANCELLED: "",
}
TRACKING_URLS = {
    "ups": "https://www.ups.com/track?tracknum={}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
    "dhl": "https://www.dhl.com/us-en/home/tracking.html?tracking-id={}",
}


def tracking_url(carrier: str, number: str) -> str:
    template = TRACKING_URLS.get((carrier or "").strip().lower())
    return template.format(number) if template and number else ""


def status_label(value: str) -> str:
    """A line status as a coordinator reads it: "on hold", not "on_hold"."""
    try:
        return S(value).label.lower()
    except ValueError:
        return (value or "").replace("_", " ")


def status_summary(counts: dict[str, int]) -> list[dict]:
    """[{status, label, count, tone}] for the statuses present, in state-machine order."""
    return [
        {"status": value, "label": label, "count": counts[value], "tone": STATUS_TONE.get(value, "")}
        for value, label in S.choices
        if counts.get(value)
    ]


def orders_for_clinic(*, clinic, search: str = "", status: str = "", placed_from=None, placed_to=None):
    """The clinic's orders, newest first, each with ``n_lines`` and a count per status. One query.
    Narrowed to orders with a line for a patient matching ``search`` (name words or chart id),
    with a line in ``status``, and placed between ``placed_from`` and ``placed_to`` (dates)."""
    per_status = {f"n_{value}": Count("lines", filter=Q(lines__status=value)) for value in S.values}
    orders = Order.objects.filter(clinic=clinic)
    if search.split():
        lines = OrderLine.objects.filter(order=OuterRef("pk"))
        for word in search.split()[:5]:
            lines = lines.filter(Q(patient__first_name__icontains=word) | Q(patient__last_name__icontains=word)
                                 | Q(patient__chart_id__iexact=word))
        orders = orders.filter(Exists(lines))
    if status:
        orders = orders.filter(Exists(OrderLine.objects.filter(order=OuterRef("pk"), status=status)))
    if placed_from:
        orders = orders.filter(placed_at__date__gte=placed_from)
    if placed_to:
        orders = orders.filter(placed_at__date__lte=placed_to)
    return (
        orders.select_related("placed_by")
        .annotate(n_lines=Count("lines"), **per_status)
        .order_by("-placed_at", "-id")
    )


def orders_with_summary(orders) -> list:
    """Evaluate ``orders`` (from :func:`orders_for_clinic`) and attach ``status_summary``."""
    orders = list(orders)
    for order in orders:
        order.status_summary = status_summary({value: getattr(order, f"n_{value}") for value in S.values})
    return orders


def order_for_clinic(*, clinic, pk: int) -> Order | None:
    return Order.objects.filter(clinic=clinic, pk=pk).select_related("placed_by").first()


def order_status_counts(*, order: Order) -> dict[str, int]:
    return dict(order.lines.order_by().values_list("status").annotate(n=Count("id")))


def order_is_settled_for_status(counts: dict[str, int]) -> bool:
    """True when no line of the order can still change by itself (the page may stop polling)."""
    return all(status in TERMINAL for status, n in counts.items() if n)


def _with_last_event(lines):
    last = LineEvent.objects.filter(line=OuterRef("pk")).order_by("-at", "-id")
    return lines.annotate(
        last_event_to=Subquery(last.values("to_status")[:1]),
        last_event_at=Subquery(last.values("at")[:1]),
        last_event_applied=Subquery(last.values("applied")[:1]),
        last_event_source=Subquery(last.values("source")[:1]),
    )


def _decorate(lines) -> list[OrderLine]:
    lines = list(lines)
    for line in lines:
        line.tracking_url = tracking_url(line.carrier, line.tracking_number)
        line.tone = STATUS_TONE.get(line.status, "")
        line.last_event_label = status_label(line.last_event_to) if getattr(line, "last_event_to", None) else ""
    return lines


def order_lines(*, order: Order, status: str = "", search: str = "") -> list[OrderLine]:
    """The order's lines for the order page, each with patient, product, partner, last event and
    tracking link; filtered by status and a patient search (name words or chart id). One query."""
    lines = order.lines.select_related("patient", "product", "partner_order__partner",
                                       "rerouted_from__partner_order__partner", "rerouted_to__partner_order__partner")
    if status:
        lines = lines.filter(status=status)
    for word in search.split()[:5]:
        lines = lines.filter(
            Q(patient__first_name__icontains=word) | Q(patient__last_name__icontains=word) | Q(patient__chart_id__iexact=word)
        )
    return _decorate(_with_last_event(lines).order_by("patient__last_name", "patient__first_name", "id"))


def line_for_clinic(*, clinic, order_pk: int, line_pk: int) -> OrderLine | None:
    return (
        OrderLine.objects.filter(pk=line_pk, order_id=order_pk, order__clinic=clinic)
        .select_related("order", "patient", "product", "partner_order__partner")
        .first()
    )


def line_events(*, line: OrderLine) -> list[LineEvent]:
    """The line's status changes, newest first, each with ``from_label`` and ``to_label``."""
    events = list(line.events.select_related("actor").order_by("-at", "-id"))
    for event in events:
        event.from_label, event.to_label = status_label(event.from_status), status_label(event.to_status)
    return events


def order_line_for_clinic(*, clinic, line_pk: int) -> OrderLine | None:
    """One of the clinic's order lines by id (None for another clinic's), with what re-ordering it
    needs: patient, product, prescriber, its order and partner."""
    return (
        OrderLine.objects.filter(pk=line_pk, order__clinic=clinic)
        .select_related("order", "patient", "product", "prescriber", "partner_order__partner")
        .first()
    )


# --- the Needs attention worklist ----------------------------------------------------------------

ItemAudience = AttentionItem.Audience


def attention_open_count(*, clinic) -> int:
    """How many items the clinic has open (the navigation badge). One query on an index."""
    return AttentionItem.objects.filter(clinic=clinic, audience=ItemAudience.CLINIC, resolved_at__isnull=True).count()


def attention_items(*, clinic, resolved: bool = False, limit: int = 200) -> list[AttentionItem]:
    """The clinic's open items, oldest first (the worklist), or the most recently resolved ones;
    each with its line, order, patient and partner, and ``reason`` (plain words and what to do,
    from ``fulfillment.reasons``). One query."""
    items = (
        AttentionItem.objects.filter(clinic=clinic, audience=ItemAudience.CLINIC, resolved_at__isnull=not resolved)
        .select_related("line__order", "line__patient", "line__partner_order__partner", "resolved_by",
                        "replacement_line__partner_order__partner")
        .order_by(*(["-resolved_at", "-id"] if resolved else ["opened_at", "id"]))[:limit]
    )
    items = list(items)
    for item in items:
        item.reason = reason_for(item.reason_code) if item.reason_code else None
        item.line.tone = STATUS_TONE.get(item.line.status, "")
    return items


def attention_item_for_clinic(*, clinic, pk: int) -> AttentionItem | None:
    return (
        AttentionItem.objects.filter(pk=pk, clinic=clinic, audience=ItemAudience.CLINIC)
        .select_related("line__order", "line__patient", "line__partner_order__partner")
        .first()
    )


def open_items_by_line(*, lines) -> dict[int, AttentionItem]:
    """The open clinic item of each of ``lines`` that has one (the order page's actions). One query."""
    ids = [line.pk for line in lines if line.status in NEEDS_ATTENTION]
    if not ids:
        return {}
    items = AttentionItem.objects.filter(line_id__in=ids, audience=ItemAudience.CLINIC, resolved_at__isnull=True)
    return {item.line_id: item for item in items}


def hold_answers(*, line: OrderLine) -> list:
    """What the clinic already answered on this line, newest first."""
    return list(line.hold_answers.select_related("answered_by").order_by("-created_at", "-id"))


# --- money the clinic sees -----------------------------------------------------------------------


def order_money(*, order: Order, lines) -> dict:
    """What the order cost the clinic so far: authorized, captured, charged on its own, refunded,
    the fee, and net; with a subtotal per patient (from ``lines``, already loaded)."""
    patients: dict[int, dict] = {}
    for line in lines:
        row = patients.setdefault(line.patient_id, {"patient": line.patient, "lines": 0, "price": ZERO, "net": ZERO})
        row["lines"] += 1
        row["price"] += line.price
        row["net"] += line.net_charged
    return {
        "authorized": order.amount_authorized, "captured": order.amount_captured,
        "charged_later": order.amount_charged_later, "refunded": order.amount_refunded, "fee": order.fee,
        "net": order.amount_captured + order.amount_charged_later - order.amount_refunded,
        "by_patient": sorted(patients.values(), key=lambda r: (r["patient"].last_name, r["patient"].first_name)),
    }


def receipt_lines(*, order: Order) -> list[OrderLine]:
    """Every line of the order for its receipt, by patient. One query."""
    return list(order.lines.select_related("patient", "partner_order__partner")
                .order_by("patient__last_name", "patient__first_name", "id"))


def clinic_payments(*, clinic, limit: int = 200):
    """Every payment action on the clinic's card, newest first: authorizations, captures, follow-up
    charges, refunds, releases, failures."""
    return PaymentEvent.objects.filter(clinic=clinic).select_related("order", "line").order_by("-at", "-id")[:limit]


def lines_awaiting_charge(*, clinic) -> list[OrderLine]:
    """Accepted lines whose follow-up charge the bank declined: the clinic must fix its card."""
    return list(OrderLine.objects.filter(order__clinic=clinic, charge_failed_at__isnull=False, amount_charged=0)
                .select_related("order", "patient").order_by("charge_failed_at"))


# --- staff (admin) -----------------------------------------------------------------------------

FINAL_LINE_STATUSES = [S.DELIVERED, S.REJECTED, S.CANCELLED, S.FAILED]


def partner_orders_with_rollup(partner_orders):
    """``partner_orders`` annotated with how many lines each has and how many ended in each final
    status, for :func:`partner_order_rollup` (one query for the list, not one per row)."""
    per_final = {f"lines_{value}": Count("lines", filter=Q(lines__status=value)) for value in FINAL_LINE_STATUSES}
    return partner_orders.annotate(lines_total=Count("lines"), **per_final)


def partner_order_rollup(partner_order) -> str:
    """The partner order's status as its lines tell it: a sent order whose lines have all ended is
    no longer "Sent" but "Delivered", "Rejected", ... or "Closed: 2 delivered, 1 rejected".
    Needs the annotations of :func:`partner_orders_with_rollup`."""
    if partner_order.status != partner_order.Status.SENT:
        return partner_order.get_status_display()
    ended = {value: getattr(partner_order, f"lines_{value}") for value in FINAL_LINE_STATUSES}
    total, final = partner_order.lines_total, sum(ended.values())
    if not total or final < total:
        open_lines = total - final
        return f"Sent ({open_lines} of {total} lines open)" if final else "Sent"
    present = [(S(value).label.lower(), n) for value, n in ended.items() if n]
    if len(present) == 1:
        return S(next(v for v, n in ended.items() if n)).label
    return "Closed: " + ", ".join(f"{n} {label}" for label, n in present)
