"""The line state machine: which status may follow which, and the one service that moves a line.

Happy path: pending → sent → accepted → compounding → shipped → delivered. Besides it:

- ``rejected``: the partner declined the line (final; the line is never charged).
- ``on_hold``: the partner paused the line (needs a callback, a document); it resumes forward.
- ``cancelled``: stopped before shipping, by staff (final).
- ``failed``: we could not deliver the order to the partner (dispatch gave up). Staff "retry
  dispatch" moves it back to ``pending``.

A partner may skip steps forward (a lost "accepted" webhook must not block "shipped"), but
nothing ever moves backwards: a late "accepted" after "shipped" is recorded, not applied.
Every attempt, applied or refused, is a :class:`~fulfillment.models.LineEvent`.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinics.audit import audit_record

from .models import LineEvent, Order, OrderLine

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
ANSWERED = CHARGEABLE | {S.REJECTED, S.FAILED, S.CANCELLED}
# Lines the coordinator must act on (the "needs attention" page).
NEEDS_ATTENTION = frozenset({S.REJECTED, S.ON_HOLD, S.FAILED})
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


def line_apply_status(
    *,
    line: OrderLine,
    to: str,
    source: str,
    actor=None,
    actor_label: str = "",
    reason: str = "",
    payload: dict | None = None,
    tracking_number: str = "",
    carrier: str = "",
) -> LineEvent:
    """Move ``line`` to status ``to`` if the state machine allows it from its current status.

    Always writes a LineEvent; applied changes made by staff or the system also write an audit
    row, in the same transaction. A refused change is recorded (``applied=False``) and then
    :class:`IllegalTransition` is raised, outside this function's transaction so the record stays
    (a caller's own outer transaction decides for itself). ``line`` is refreshed in place.
    When the change gives the order's last open line its final answer, payment settlement is
    queued after commit.
    """
    if to not in S.values:
        raise LineStatusError(f"Unknown line status {to!r}.")
    if source not in Source.values:
        raise LineStatusError(f"Unknown event source {source!r}.")
    authed_actor = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        locked = OrderLine.objects.select_for_update().select_related("order__clinic", "patient").get(pk=line.pk)
        from_status = locked.status
        applied = can_transition(from_status, to)
        event = LineEvent.objects.create(
            line=locked,
            from_status=from_status,
            to_status=to,
            applied=applied,
            source=source,
            actor=authed_actor,
            actor_label=actor_label,
            reason=reason,
            payload=payload or {},
        )
        if applied:
            locked.status = to
            locked.status_reason = reason
            locked.status_changed_at = event.at
            fields = ["status", "status_reason", "status_changed_at"]
            if tracking_number:
                locked.tracking_number = tracking_number
                fields.append("tracking_number")
            if carrier:
                locked.carrier = carrier
                fields.append("carrier")
            locked.save(update_fields=fields)
            if source != Source.WEBHOOK:
                audit_record(
                    action="order_line.status_changed",
                    actor=authed_actor,
                    actor_label=actor_label,
                    clinic=locked.order.clinic,
                    patient=locked.patient,
                    obj=locked,
                    detail={"from": from_status, "to": to, "source": source, "order_id": locked.order_id},
                )
            if to in ANSWERED and from_status not in ANSWERED:
                order_request_settlement_if_answered(order_id=locked.order_id)
    _refresh(line, locked)
    if not applied:
        raise IllegalTransition(
            f"A line that is {S(from_status).label.lower()} cannot become {S(to).label.lower()}.", event=event
        )
    return event


def _refresh(line: OrderLine, fresh: OrderLine) -> None:
    for field in ("status", "status_reason", "status_changed_at", "tracking_number", "carrier"):
        setattr(line, field, getattr(fresh, field))


def order_request_settlement_if_answered(*, order_id: int) -> bool:
    """When every line of the order has its final answer, queue payment settlement once (after
    commit). The claim is a conditional update on ``Order.settlement_requested_at``, so concurrent
    webhooks for the last two lines queue it once. True when this call queued it."""
    from django_q.tasks import async_task

    if OrderLine.objects.filter(order_id=order_id).exclude(status__in=ANSWERED).exists():
        return False
    claimed = Order.objects.filter(Q(pk=order_id), Q(settlement_requested_at__isnull=True)).update(
        settlement_requested_at=timezone.now()
    )
    if not claimed:
        return False
    transaction.on_commit(lambda: async_task("fulfillment.tasks.settle_order_payment", order_id))
    return True
