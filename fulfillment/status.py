"""The line state machine: which status may follow which, and the one service that moves a line.

Happy path: pending → sent → accepted → compounding → shipped → delivered. Besides it:

- ``rejected``: the partner declined the line (final; the line is never charged).
- ``on_hold``: the partner paused the line (needs a callback, a document); it resumes forward.
- ``cancelled``: stopped before shipping, by staff or the partner (final).
- ``failed``: we could not deliver the order to the partner (dispatch gave up). Staff "retry
  dispatch" moves it back to ``pending``.

A partner may skip steps forward (a lost "accepted" webhook must not block "shipped"), but
nothing ever moves backwards: a late "accepted" after "shipped" is recorded, not applied.
Every attempt, applied or refused, is a :class:`~fulfillment.models.LineEvent`.

The state machine is also the one place that decides *when* money moves
(``fulfillment.settlement`` moves it, through its tasks):

- the order's last line gets its final answer → settle the payment (capture what was accepted);
- a line reaches a status in which it is never charged (rejected, cancelled, failed) from one in
  which it could have been captured → refund it if it was captured;
- a line is accepted after the order's authorization stopped covering new lines (captured,
  released or expired) → charge it on its own.

A line rejected or cancelled before it shipped also gives its quantity back to the partner's stock
and its fill back to its prescription; a delivered line's fill records when it was delivered
(``refill_too_soon`` counts from then).
"""

from __future__ import annotations

from typing import TypedDict, Unpack

from django.db import transaction
from django.db.models import F, Subquery
from django.utils import timezone

from catalog.models import Offering
from clinics.audit import Action, audit_record
from prescriptions.services import fill_give_back, fill_mark_delivered

from .attention import attention_after_status_change
from .models import LineEvent, Order, OrderLine, PartnerOrder
from .reasons import PARTNER_SIDE

S = OrderLine.Status
Source = LineEvent.Source

# from status -> statuses it may move to. Anything not listed is refused (and recorded).
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.SENT, S.FAILED, S.CANCELLED}),
    S.SENT: frozenset({S.ACCEPTED, S.COMPOUNDING, S.SHIPPED, S.DELIVERED, S.REJECTED, S.ON_HOLD, S.CANCELLED}),
    S.ON_HOLD: frozenset({S.ACCEPTED, S.COMPOUNDING, S.SHIPPED, S.DELIVERED, S.REJECTED, S.CANCELLED}),
    S.ACCEPTED: frozenset({S.COMPOUNDING, S.SHIPPED, S.DELIVERED, S.ON_HOLD, S.CANCELLED}),
    S.COMPOUNDING: frozenset({S.SHIPPED, S.DELIVERED, S.ON_HOLD, S.CANCELLED}),
    S.SHIPPED: frozenset({S.DELIVERED}),
    S.DELIVERED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.FAILED: frozenset({S.PENDING}),
}

# The partner has given its final answer on the line's payment: charge it (accepted or later)
# or never charge it (rejected, failed, cancelled). ``on_hold`` is not an answer yet.
CHARGEABLE = frozenset({S.ACCEPTED, S.COMPOUNDING, S.SHIPPED, S.DELIVERED})
NEVER_CHARGED = frozenset({S.REJECTED, S.FAILED, S.CANCELLED})
ANSWERED = CHARGEABLE | NEVER_CHARGED
# Statuses a line may have been captured in: accepted or later, or on hold after that.
MAY_BE_CAPTURED = CHARGEABLE | {S.ON_HOLD}
# A line that ends here before it shipped gives its quantity back to the partner's stock.
RESTOCKED = frozenset({S.REJECTED, S.CANCELLED})
SHIPPED_OR_LATER = frozenset({S.SHIPPED, S.DELIVERED})
# Lines the coordinator must act on (the "needs attention" page).
NEEDS_ATTENTION = frozenset({S.REJECTED, S.ON_HOLD, S.FAILED})
# A hold, a rejection or a cancellation carries a reason code (fulfillment.reasons).
NEEDS_REASON_CODE = frozenset({S.REJECTED, S.ON_HOLD, S.CANCELLED})
# Nothing more will happen to the line.
TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets) | {S.FAILED}


class LineStatusError(Exception):
    """A status change that the state machine refuses. ``event`` is the recorded refusal."""

    def __init__(self, message: str, *, event: LineEvent | None = None):
        super().__init__(message)
        self.event = event


class IllegalTransition(LineStatusError):
    pass


def allowed_targets(status: str) -> list[str]:
    """The statuses a line in ``status`` may move to, in the order of ``OrderLine.Status``."""
    targets = TRANSITIONS.get(status, frozenset())
    return [value for value in S.values if value in targets]


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


def refusal_message(from_status: str, to_status: str) -> str:
    """Why the state machine refuses ``from_status → to_status``, in words a partner or a user reads."""
    return f"A line that is {S(from_status).label.lower()} cannot become {S(to_status).label.lower()}."


class ChangeDetails(TypedDict, total=False):
    """Who made a status change and what came with it (every key optional)."""

    actor: object  # a user, or None for the system and partners
    actor_label: str
    reason: str
    payload: dict | None
    tracking_number: str
    carrier: str
    reason_code: str  # a fulfillment.reasons.ReasonCode, for holds and rejections


def line_apply_status(*, line: OrderLine, to: str, source: str, **details: Unpack[ChangeDetails]) -> LineEvent:
    """Move ``line`` to status ``to`` if the state machine allows it from its current status.

    Always writes a LineEvent; applied changes made by staff or the system also write an audit
    row, in the same transaction. A refused change is recorded (``applied=False``) and then
    :class:`IllegalTransition` is raised, outside this function's transaction so the record stays
    (a caller's own outer transaction decides for itself). ``line`` is refreshed in place.
    When the change gives the order's last open line its final answer, payment settlement is
    queued after commit.
    """
    with transaction.atomic():
        locked = (
            OrderLine.objects.select_for_update(of=("self",), no_key=True)
            .select_related("order__clinic", "patient").get(pk=line.pk)
        )
        event = locked_line_apply_status(line=locked, to=to, source=source, **details)
    _refresh(line, locked)
    if not event.applied:
        raise IllegalTransition(refusal_message(event.from_status, to), event=event)
    return event


def locked_line_apply_status(*, line: OrderLine, to: str, source: str, **details: Unpack[ChangeDetails]) -> LineEvent:
    """:func:`line_apply_status` for a caller that has already locked ``line`` with
    ``select_for_update()`` inside its own ``transaction.atomic()`` (the partner webhook reads the
    line once, with its lock, instead of a plain read and a locked re-read).

    Writes the same rows in the caller's transaction and updates ``line`` in place. It raises
    nothing for a refused change: the returned LineEvent has ``applied=False``, and the caller
    decides what a refusal means for it.
    """
    if to not in S.values:
        raise LineStatusError(f"Unknown line status {to!r}.")
    if source not in Source.values:
        raise LineStatusError(f"Unknown event source {source!r}.")
    if not transaction.get_connection().in_atomic_block:
        raise LineStatusError("locked_line_apply_status needs the caller's transaction holding the line's lock.")
    actor = details.get("actor")
    actor_label, reason = details.get("actor_label", ""), details.get("reason", "")
    tracking_number, carrier = details.get("tracking_number", ""), details.get("carrier", "")
    authed_actor = actor if getattr(actor, "is_authenticated", False) else None
    from_status = line.status
    applied = can_transition(from_status, to)
    event = LineEvent.objects.create(
        line=line,
        from_status=from_status,
        to_status=to,
        applied=applied,
        source=source,
        actor=authed_actor,
        actor_label=actor_label,
        reason=reason,
        payload=details.get("payload") or {},
    )
    if not applied:
        return event
    reason_code = details.get("reason_code", "") if to in NEEDS_REASON_CODE else ""
    line.status = to
    line.status_reason = reason
    line.status_changed_at = event.at
    line.reason_code = reason_code
    fields = ["status", "status_reason", "status_changed_at", "reason_code"]
    if tracking_number:
        line.tracking_number = tracking_number
        fields.append("tracking_number")
    if carrier:
        line.carrier = carrier
        fields.append("carrier")
    line.save(update_fields=fields)
    if source != Source.WEBHOOK:
        audit_record(
            action=Action.LINE_STATUS,
            actor=authed_actor,
            actor_label=actor_label,
            clinic=line.order.clinic,
            patient=line.patient,
            obj=line,
            detail={"from": from_status, "to": to, "source": source, "order_id": line.order_id},
        )
    if from_status in NEEDS_ATTENTION or to in NEEDS_ATTENTION:
        attention_after_status_change(line=line, from_status=from_status, to=to, reason=reason, reason_code=reason_code)
    if to == S.REJECTED and reason_code in PARTNER_SIDE:
        _reroute_after_commit(line.pk)
    _decide_money(line=line, from_status=from_status, to=to, actor=authed_actor)
    return event


def _reroute_after_commit(line_id: int) -> None:
    """The pharmacy's own problem (stock, capability, capacity): the line goes to the next eligible
    partner by itself (``fulfillment.reroute``), queued before settlement looks at the order."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task("fulfillment.tasks.reroute_line", line_id))


def _decide_money(*, line: OrderLine, from_status: str, to: str, actor) -> None:
    """When a change moves money (the rules in the module docstring), and stock with it. Called in
    the change's transaction; the settlement tasks run after it commits."""
    from django_q.tasks import async_task

    # Only a line's first final answer can complete the order; other moves skip the check.
    if to in ANSWERED and from_status not in ANSWERED:
        if order_request_settlement_if_answered(order_id=line.order_id) is None and to in CHARGEABLE:
            # The order's authorization no longer covers new lines: charge this one on its own.
            transaction.on_commit(lambda: async_task("fulfillment.tasks.charge_order_line", line.pk))
    elif to in CHARGEABLE and from_status == S.ON_HOLD:
        # Accepted again after a hold: charged already, or (if not) charged on its own if needed.
        transaction.on_commit(lambda: async_task("fulfillment.tasks.charge_order_line", line.pk))
    if to in NEVER_CHARGED and from_status in MAY_BE_CAPTURED:
        actor_id = getattr(actor, "pk", None)
        transaction.on_commit(lambda: async_task("fulfillment.tasks.refund_order_line", line.pk, actor_id))
    if to in RESTOCKED and from_status not in SHIPPED_OR_LATER:
        # Never compounded for this patient: the partner's stock comes back.
        partner = PartnerOrder.objects.filter(pk=line.partner_order_id).values("partner_id")[:1]
        Offering.objects.filter(partner_id=Subquery(partner), product_id=line.product_id).update(
            stock_quantity=F("stock_quantity") + line.quantity
        )
        # …and the patient's prescription gets its fill back.
        if line.prescription_id:
            fill_give_back(order_line_id=line.pk)
    if to == S.DELIVERED and line.prescription_id:
        fill_mark_delivered(order_line_id=line.pk, at=line.status_changed_at)


def _refresh(line: OrderLine, fresh: OrderLine) -> None:
    for field in ("status", "status_reason", "status_changed_at", "reason_code", "tracking_number", "carrier"):
        setattr(line, field, getattr(fresh, field))


def order_request_settlement_if_answered(*, order_id: int) -> bool | None:
    """When every line of the order has its final answer, queue payment settlement once (after
    commit). True when this call queued it, False when not (yet); None when the order's
    authorization is no longer open (settled, released, expired): new answers are then charged
    line by line.

    Call it in the transaction that gave a line its answer. It locks the order row first: two
    lines answered at the same time are then judged one after the other, and the second sees the
    first's answer (without the lock each could see the other still open, and neither would
    queue settlement). ``settlement_requested_at`` on the locked row makes it happen once. The
    same lock orders this answer against settlement recording its capture."""
    from django_q.tasks import async_task

    order = (
        Order.objects.select_for_update(no_key=True)
        .only("settlement_requested_at", "payment_status").get(pk=order_id)
    )
    if order.payment_status != Order.PaymentStatus.AUTHORIZED:
        return None
    if order.settlement_requested_at is not None:
        return False
    if OrderLine.objects.filter(order_id=order_id).exclude(status__in=ANSWERED).exists():
        return False
    claimed = Order.objects.filter(pk=order_id, settlement_requested_at__isnull=True).update(
        settlement_requested_at=timezone.now()
    )
    if not claimed:
        return False
    transaction.on_commit(lambda: async_task("fulfillment.tasks.settle_order_payment", order_id))
    return True


def line_set_status_by_staff(*, line: OrderLine, to: str, actor, reason: str) -> LineEvent:
    """Pharmacy staff override of a line's status (allowed transitions only; audited). A refused
    change raises :class:`IllegalTransition` and its refusal stays recorded."""
    return line_apply_status(
        line=line, to=to, source=Source.STAFF, actor=actor, actor_label=getattr(actor, "username", ""), reason=reason,
    )
