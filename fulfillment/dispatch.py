"""Dispatch: queue an order's partner orders, send one partner order, retry a failed one.

A partner order is claimed with a conditional update (queued → sending) so any number of
workers may run the same task: exactly one of them sends. The partner is called with no
transaction open and no row locked; its answer is recorded afterwards in one transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from clinics.audit import Action, audit_record

from .models import LineEvent, Order, OrderLine, PartnerOrder
from .partners import PartnerClient, PartnerError, PartnerOrderAnswer, build_order_payload
from .status import IllegalTransition, line_apply_status

DISPATCH_TASK = "fulfillment.tasks.dispatch_partner_order"
DISPATCH_ACTOR = "dispatch"
PO = PartnerOrder.Status
LS = OrderLine.Status


class DispatchError(Exception):
    """A dispatch action staff asked for that cannot be done; the message says why."""


class DispatchOutcome:
    SKIPPED = "skipped"  # another worker has it, or it is no longer queued
    SENT = "sent"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"


def dispatch_max_attempts() -> int:
    return settings.PARTNER_DISPATCH_MAX_ATTEMPTS


def dispatch_backoff(attempt: int) -> timedelta:
    """Delay before attempt ``attempt + 1``: base × 2^(attempt−1), capped at one hour (30 s, 60 s, 2 min…)."""
    base = settings.PARTNER_DISPATCH_BACKOFF_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempt - 1, 0), 3600))


def _sending_lease() -> timedelta:
    """How long a claim holds. A worker killed mid-send leaves the partner order ``sending``; once
    the lease (the queue's task timeout) has passed, django-q2's redelivery may claim it again.
    The partner's Idempotency-Key makes that second send harmless."""
    return timedelta(seconds=int(getattr(settings, "Q_CLUSTER", {}).get("timeout", 60)))


def _enqueue_dispatch(partner_order_id: int) -> None:
    from django_q.tasks import async_task

    async_task(DISPATCH_TASK, partner_order_id)


def _schedule_dispatch(partner_order_id: int, at: datetime) -> None:
    from django_q.models import Schedule
    from django_q.tasks import schedule

    schedule(DISPATCH_TASK, partner_order_id, schedule_type=Schedule.ONCE, repeats=-1, next_run=at)


def order_queue_dispatch(*, order: Order) -> list[int]:
    """Called by checkout inside its transaction: after commit, queue one dispatch task per
    queued partner order (one task each, so one slow partner never delays another).
    Returns the partner order ids that will be queued."""
    ids = list(order.partner_orders.filter(status=PO.QUEUED).order_by("pk").values_list("pk", flat=True))
    for partner_order_id in ids:
        transaction.on_commit(lambda pk=partner_order_id: _enqueue_dispatch(pk))
    return ids


def _claim(partner_order_id: int) -> bool:
    now = timezone.now()
    claimable = Q(status=PO.QUEUED) | Q(status=PO.SENDING, next_attempt_at__lt=now)
    return bool(
        PartnerOrder.objects.filter(claimable, pk=partner_order_id).update(
            status=PO.SENDING, attempts=F("attempts") + 1, next_attempt_at=now + _sending_lease()
        )
    )


def partner_order_dispatch(*, partner_order_id: int) -> str:
    """Send one partner order: claim it, POST its pending lines, record the answer.

    Safe to run twice and from several workers: only the claim's winner sends. On a transient
    error a retry is scheduled with exponential backoff until ``PARTNER_DISPATCH_MAX_ATTEMPTS``;
    then (or at once on a 4xx refusal) the partner order and its lines become ``failed`` with the
    reason. Returns a :class:`DispatchOutcome` value."""
    if not _claim(partner_order_id):
        return DispatchOutcome.SKIPPED
    partner_order = PartnerOrder.objects.select_related("order__clinic", "partner").get(pk=partner_order_id)
    lines = list(
        partner_order.lines.filter(status=LS.PENDING).select_related("patient", "prescriber", "product").order_by("pk")
    )
    if not lines:
        _record_sent(partner_order, [], PartnerOrderAnswer(reference=partner_order.partner_reference))
        return DispatchOutcome.SENT
    client = PartnerClient(partner_order.partner)
    try:
        answer = client.send_order(
            build_order_payload(partner_order, lines), idempotency_key=str(partner_order.idempotency_key)
        )
    except PartnerError as error:
        return _record_failure(partner_order, error)
    _record_sent(partner_order, [line.pk for line in lines], answer)
    return DispatchOutcome.SENT


def _record_sent(partner_order: PartnerOrder, line_ids: list[int], answer: PartnerOrderAnswer) -> None:
    partner = partner_order.partner
    with transaction.atomic(durable=True):
        PartnerOrder.objects.filter(pk=partner_order.pk).update(
            status=PO.SENT,
            partner_reference=answer.reference,
            sent_at=timezone.now(),
            last_error="",
            next_attempt_at=None,
        )
        audit_record(
            action=Action.PARTNER_ORDER_SENT,
            actor_label=DISPATCH_ACTOR,
            clinic=partner_order.order.clinic,
            obj=partner_order,
            detail={"partner": partner.slug, "reference": answer.reference, "attempts": partner_order.attempts},
        )
        # Only lines still pending: a second worker past an expired lease finds them sent already.
        still_pending = OrderLine.objects.select_for_update().filter(pk__in=line_ids, status=LS.PENDING).order_by("pk")
        sent = {}
        for line in still_pending:
            line_apply_status(
                line=line, to=LS.SENT, source=LineEvent.Source.SYSTEM, actor_label=DISPATCH_ACTOR,
                reason=f"Sent to {partner.name} (reference {answer.reference}).",
            )
            sent[line.pk] = line
        for line_answer in answer.lines:
            line = sent.get(line_answer.line_id)
            if line is None or line_answer.status == "received":
                continue
            try:
                line_apply_status(
                    line=line, to=line_answer.status, source=LineEvent.Source.SYSTEM,
                    actor_label=f"{partner.name} (order response)", reason=line_answer.reason,
                    payload={"line_id": line_answer.line_id, "status": line_answer.status, "reason": line_answer.reason},
                )
            except IllegalTransition:
                pass  # recorded as a refused event


def _record_failure(partner_order: PartnerOrder, error: PartnerError) -> str:
    attempts = partner_order.attempts
    partner = partner_order.partner
    with transaction.atomic(durable=True):
        if error.transient and attempts < dispatch_max_attempts():
            next_at = timezone.now() + dispatch_backoff(attempts)
            PartnerOrder.objects.filter(pk=partner_order.pk, status=PO.SENDING).update(
                status=PO.QUEUED, last_error=f"Attempt {attempts}: {error.reason}", next_attempt_at=next_at
            )
            transaction.on_commit(lambda: _schedule_dispatch(partner_order.pk, next_at))
            return DispatchOutcome.RETRY_SCHEDULED
        if error.transient:
            reason = f"{partner.name} could not be reached after {attempts} attempts. Last error: {error.reason}"
        else:
            reason = error.reason
        PartnerOrder.objects.filter(pk=partner_order.pk).update(status=PO.FAILED, last_error=reason, next_attempt_at=None)
        audit_record(
            action=Action.PARTNER_ORDER_DISPATCH_FAILED,
            actor_label=DISPATCH_ACTOR,
            clinic=partner_order.order.clinic,
            obj=partner_order,
            detail={"partner": partner.slug, "attempts": attempts, "status_code": error.status_code},
        )
        for line in partner_order.lines.select_for_update().filter(status=LS.PENDING).order_by("pk"):
            line_apply_status(
                line=line, to=LS.FAILED, source=LineEvent.Source.SYSTEM, actor_label=DISPATCH_ACTOR, reason=reason
            )
    return DispatchOutcome.FAILED


def partner_order_retry_dispatch(*, partner_order: PartnerOrder, actor) -> PartnerOrder:
    """Staff action: send a failed partner order again (attempts start over, its failed lines go
    back to pending). Refused once the order's payment has been settled: the failed lines were
    not charged, so they must be ordered again from a new cart."""
    with transaction.atomic(durable=True):
        locked = PartnerOrder.objects.select_for_update().select_related("order__clinic", "partner").get(pk=partner_order.pk)
        if locked.status != PO.FAILED:
            raise DispatchError(f"{locked} is {locked.get_status_display().lower()}, not failed; nothing to retry.")
        if locked.order.settlement_requested_at is not None:
            raise DispatchError(
                f"{locked}: the order's payment is already settled without these lines. "
                "Ask the clinic to order them again."
            )
        locked.status = PO.QUEUED
        locked.attempts = 0
        locked.last_error = ""
        locked.next_attempt_at = None
        locked.save(update_fields=["status", "attempts", "last_error", "next_attempt_at"])
        audit_record(
            action=Action.PARTNER_ORDER_RETRY, actor=actor, clinic=locked.order.clinic, obj=locked,
            detail={"partner": locked.partner.slug},
        )
        for line in locked.lines.select_for_update().filter(status=LS.FAILED).order_by("pk"):
            line_apply_status(
                line=line, to=LS.PENDING, source=LineEvent.Source.STAFF, actor=actor,
                actor_label=getattr(actor, "username", ""), reason="Dispatch retried by pharmacy staff.",
            )
        transaction.on_commit(lambda: _enqueue_dispatch(locked.pk))
    partner_order.refresh_from_db()
    return partner_order
