"""Dispatch: queue an order's partner orders, send one partner order, retry it, reclaim lost ones.

A partner order is claimed with a conditional update (queued → sending, or sending whose lease
ran out) so any number of workers may run the same task: exactly one of them sends. The partner
is called with no transaction open and no row locked; its answer is recorded afterwards in one
transaction.

Every attempt ends recorded, whatever happens: the partner call has an overall deadline shorter
than the task timeout (``fulfillment.partners``), and any exception while sending or recording
becomes a failed attempt with its reason. A worker killed mid-attempt leaves the partner order
``sending`` with a lease (the task timeout); the reclaimer (:func:`partner_orders_reclaim`, a
django-q2 schedule every minute) queues it again once the lease has run out, as it does for
partner orders whose queued task was lost. The same Idempotency-Key makes a repeated send
harmless.

When the attempts are used up after failures that may have reached the partner (a timeout, a
5xx, an unreadable answer), the partner is asked whether it has the order (its order lookup, for
partners that offer one) before the partner order is declared failed: if it has, the order is
recorded as sent.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from clinics.audit import Action, audit_record

from .attention import attention_resolve
from .models import AttentionItem, LineEvent, Order, OrderLine, PartnerOrder, WebhookEvent
from .partners import PartnerClient, PartnerError, PartnerOrderAnswer, PartnerUnavailable, build_order_payload
from .status import IllegalTransition, line_apply_status, locked_line_apply_status

logger = logging.getLogger(__name__)

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


def sending_lease() -> timedelta:
    """How long a claim holds: the queue's task timeout. An attempt ends well within it (the partner
    call's deadline is shorter, ``fizy.E001``); a worker killed mid-send leaves the partner order
    ``sending`` until the lease runs out, then the reclaimer queues it again."""
    return timedelta(seconds=int(getattr(settings, "Q_CLUSTER", {}).get("timeout", 60)))


def stale_after() -> timedelta:
    return timedelta(seconds=settings.PARTNER_DISPATCH_STALE_SECONDS)


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


def partner_order_queue_dispatch(*, partner_order: PartnerOrder) -> None:
    """Queue one new partner order (a rerouted line's) after the caller's transaction commits."""
    transaction.on_commit(lambda pk=partner_order.pk: _enqueue_dispatch(pk))


def _claim(partner_order_id: int) -> bool:
    now = timezone.now()
    claimable = Q(status=PO.QUEUED) | Q(status=PO.SENDING, next_attempt_at__lt=now)
    return bool(
        PartnerOrder.objects.filter(claimable, pk=partner_order_id).update(
            status=PO.SENDING, attempts=F("attempts") + 1, next_attempt_at=now + sending_lease()
        )
    )


def partner_order_dispatch(*, partner_order_id: int) -> str:
    """Send one partner order: claim it, POST its pending lines, record the answer.

    Safe to run twice and from several workers: only the claim's winner sends. On a transient
    error a retry is scheduled with exponential backoff until ``PARTNER_DISPATCH_MAX_ATTEMPTS``;
    then (after asking the partner whether it has the order) or at once on a 4xx refusal, the
    partner order and its lines become ``failed`` with the reason. Returns a
    :class:`DispatchOutcome` value."""
    if not _claim(partner_order_id):
        return DispatchOutcome.SKIPPED
    partner_order = PartnerOrder.objects.select_related("order__clinic", "partner").get(pk=partner_order_id)
    try:
        return _attempt(partner_order)
    except Exception as exc:  # a bug or a database error: the attempt still ends, recorded
        logger.exception("dispatch of partner order %s: attempt %s raised", partner_order.pk, partner_order.attempts)
        error = PartnerUnavailable(f"Dispatch error ({exc.__class__.__name__}) while sending or recording the order.")
        return _record_failure(partner_order, error)


def _attempt(partner_order: PartnerOrder) -> str:
    lines = list(
        partner_order.lines.filter(status=LS.PENDING).select_related("patient", "prescriber", "product", "prescription")
        .order_by("pk")
    )
    if not lines:
        _record_sent(partner_order, [], PartnerOrderAnswer(reference=partner_order.partner_reference))
        return DispatchOutcome.SENT
    if partner_order.attempts > dispatch_max_attempts():
        # Claimed again by the reclaimer after a worker died during the last allowed attempt.
        error = PartnerUnavailable(f"The worker sending attempt {partner_order.attempts - 1} stopped before it ended.")
        return _conclude(partner_order, error, [line.pk for line in lines])
    client = PartnerClient(partner_order.partner)
    try:
        answer = client.send_order(
            build_order_payload(partner_order, lines), idempotency_key=str(partner_order.idempotency_key)
        )
    except PartnerError as error:
        return _record_failure(partner_order, error)
    _record_sent(partner_order, [line.pk for line in lines], answer)
    return DispatchOutcome.SENT


def _record_sent(partner_order: PartnerOrder, line_ids: list[int], answer: PartnerOrderAnswer, *,
                 found_by_lookup: bool = False) -> None:
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
            action=Action.PARTNER_ORDER_FOUND if found_by_lookup else Action.PARTNER_ORDER_SENT,
            actor_label=DISPATCH_ACTOR,
            clinic=partner_order.order.clinic,
            obj=partner_order,
            detail={"partner": partner.slug, "reference": answer.reference, "attempts": partner_order.attempts},
        )
        how = "found at" if found_by_lookup else "sent to"
        # Only lines still pending: a second worker past an expired lease finds them sent already.
        still_pending = (
            OrderLine.objects.select_for_update(no_key=True)
            .filter(pk__in=line_ids, status=LS.PENDING).order_by("pk")
        )
        sent = {}
        for line in still_pending:
            line_apply_status(
                line=line, to=LS.SENT, source=LineEvent.Source.SYSTEM, actor_label=DISPATCH_ACTOR,
                reason=f"Order {how} {partner.name} (reference {answer.reference}).",
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
                    reason_code=line_answer.reason_code,
                    payload={"line_id": line_answer.line_id, "status": line_answer.status, "reason": line_answer.reason,
                             "reason_code": line_answer.reason_code},
                )
            except IllegalTransition:
                pass  # recorded as a refused event
        if sent:
            _apply_held_events(partner_order, list(sent))


def _apply_held_events(partner_order: PartnerOrder, line_ids: list[int]) -> None:
    """Events the partner sent while these lines were marked failed were stored, recorded as
    refused on the line with ``payload["held"]`` and held for staff (``fulfillment.webhooks``).
    Now that the lines are sent, apply them in the order received, through the state machine,
    and resolve the staff items."""
    refused = list(
        LineEvent.objects.filter(line_id__in=line_ids, applied=False, payload__held=True).order_by("at", "id")
    )
    if not refused:
        return
    still_held = set(
        WebhookEvent.objects.filter(
            pk__in=[e.payload.get("webhook_event") for e in refused], outcome=WebhookEvent.Outcome.HELD
        ).values_list("pk", flat=True)
    )
    replayed: set[str] = set()
    for held in refused:
        event_id, data = held.payload.get("webhook_event"), held.payload
        if event_id not in still_held:
            continue
        if data.get("event_id") in replayed:  # the partner sent the same event twice while it was held
            WebhookEvent.objects.filter(pk=event_id).update(outcome=WebhookEvent.Outcome.DUPLICATE, processed_at=timezone.now())
            continue
        replayed.add(data.get("event_id"))
        line = OrderLine.objects.select_for_update(no_key=True).get(pk=held.line_id)
        change = locked_line_apply_status(
            line=line, to=held.to_status, source=LineEvent.Source.WEBHOOK, actor_label=partner_order.partner.name,
            reason=data.get("reason", ""), reason_code=data.get("reason_code", ""),
            tracking_number=data.get("tracking_number", ""), carrier=data.get("carrier", ""),
            payload={**data, "held": False, "replayed": True},
        )
        outcome = WebhookEvent.Outcome.APPLIED if change.applied else WebhookEvent.Outcome.IGNORED
        WebhookEvent.objects.filter(pk=event_id).update(outcome=outcome, processed_at=timezone.now())
    for line_id in {e.line_id for e in refused}:
        attention_resolve(line_id=line_id, resolution=AttentionItem.Resolution.RETRIED, actor=None,
                          note="The partner order was sent again; the partner's held events were applied.",
                          audience=AttentionItem.Audience.STAFF)


def _record_failure(partner_order: PartnerOrder, error: PartnerError) -> str:
    attempts = partner_order.attempts
    if error.transient and attempts < dispatch_max_attempts():
        next_at = timezone.now() + dispatch_backoff(attempts)
        with transaction.atomic(durable=True):
            PartnerOrder.objects.filter(pk=partner_order.pk, status=PO.SENDING).update(
                status=PO.QUEUED, last_error=f"Attempt {attempts}: {error.reason}", next_attempt_at=next_at
            )
            transaction.on_commit(lambda: _schedule_dispatch(partner_order.pk, next_at))
        return DispatchOutcome.RETRY_SCHEDULED
    line_ids = list(partner_order.lines.filter(status=LS.PENDING).values_list("pk", flat=True))
    return _conclude(partner_order, error, line_ids)


def _conclude(partner_order: PartnerOrder, error: PartnerError, line_ids: list[int]) -> str:
    """The attempts are used up (or the partner refused): ask the partner whether it has the order
    when the attempts may have reached it, then record sent or failed."""
    partner = partner_order.partner
    lookup_note = ""
    if error.transient and partner.order_lookup:
        try:
            found = PartnerClient(partner).lookup_order(idempotency_key=str(partner_order.idempotency_key))
        except PartnerError as lookup_error:
            found, lookup_note = None, f" We could not ask {partner.name} whether it received the order: {lookup_error.reason}"
        except Exception as exc:  # never leave the partner order sending
            logger.exception("order lookup for partner order %s raised", partner_order.pk)
            found, lookup_note = None, f" The order lookup failed ({exc.__class__.__name__})."
        else:
            if found is not None:
                _record_sent(partner_order, line_ids, found, found_by_lookup=True)
                return DispatchOutcome.SENT
            lookup_note = f" {partner.name} confirms it has no such order."
    attempts = partner_order.attempts
    if error.transient:
        reason = f"{partner.name} could not be reached after {attempts} attempts. Last error: {error.reason}{lookup_note}"
    else:
        reason = error.reason
    with transaction.atomic(durable=True):
        PartnerOrder.objects.filter(pk=partner_order.pk).update(status=PO.FAILED, last_error=reason, next_attempt_at=None)
        audit_record(
            action=Action.PARTNER_ORDER_DISPATCH_FAILED,
            actor_label=DISPATCH_ACTOR,
            clinic=partner_order.order.clinic,
            obj=partner_order,
            detail={"partner": partner.slug, "attempts": attempts, "status_code": error.status_code},
        )
        for line in partner_order.lines.select_for_update(no_key=True).filter(status=LS.PENDING).order_by("pk"):
            line_apply_status(
                line=line, to=LS.FAILED, source=LineEvent.Source.SYSTEM, actor_label=DISPATCH_ACTOR, reason=reason
            )
    return DispatchOutcome.FAILED


# --- the reclaimer and staff retries ----------------------------------------------------------


def _stale_filter(now: datetime) -> Q:
    """Partner orders that should be moving and are not: ``sending`` past its lease (the worker
    died), or ``queued`` well past its due time (its task was lost: a broker without
    acknowledgement, a crash between commit and enqueue)."""
    late = now - stale_after()
    return (
        Q(status=PO.SENDING, next_attempt_at__lt=now)
        | Q(status=PO.QUEUED, next_attempt_at__lt=late)
        | Q(status=PO.QUEUED, next_attempt_at__isnull=True, order__placed_at__lt=late)
    )


def partner_orders_stale(*, now: datetime | None = None):
    return PartnerOrder.objects.filter(_stale_filter(now or timezone.now()))


def partner_orders_reclaim(*, now: datetime | None = None) -> list[int]:
    """Queue a dispatch for every stale partner order (the periodic reclaimer). A partner order
    claimed meanwhile by a live worker is skipped by the claim. Returns the ids queued."""
    ids = list(partner_orders_stale(now=now).order_by("pk").values_list("pk", flat=True)[:500])
    for partner_order_id in ids:
        _enqueue_dispatch(partner_order_id)
    if ids:
        logger.warning("reclaimer: queued %s stale partner order(s) again: %s", len(ids), ids)
    return ids


def partner_order_can_retry(partner_order: PartnerOrder, *, now: datetime | None = None) -> bool:
    """Failed, queued (send now instead of after the backoff), or sending past its lease."""
    now = now or timezone.now()
    if partner_order.status in (PO.FAILED, PO.QUEUED):
        return True
    return partner_order.status == PO.SENDING and partner_order.next_attempt_at is not None and partner_order.next_attempt_at < now


def partner_order_retry_dispatch(*, partner_order: PartnerOrder, actor) -> PartnerOrder:
    """Staff action, at any time: send a failed or stale partner order again (attempts start over,
    its failed lines go back to pending, except those the clinic re-ordered). Lines accepted after the order's payment was settled are
    charged on their own by settlement (a follow-up charge), so a retry needs no payment step."""
    with transaction.atomic(durable=True):
        locked = (
            PartnerOrder.objects.select_for_update(of=("self",), no_key=True)
            .select_related("order__clinic", "partner").get(pk=partner_order.pk)
        )
        if not partner_order_can_retry(locked):
            state = locked.get_status_display().lower()
            if locked.status == PO.SENDING:
                raise DispatchError(f"{locked} is being sent right now (its attempt ends within {sending_lease().seconds} s).")
            raise DispatchError(f"{locked} is {state}, not failed or stuck; nothing to retry.")
        previous = locked.status
        locked.status = PO.QUEUED
        locked.attempts = 0
        locked.last_error = ""
        locked.next_attempt_at = timezone.now()
        locked.save(update_fields=["status", "attempts", "last_error", "next_attempt_at"])
        audit_record(
            action=Action.PARTNER_ORDER_RETRY, actor=actor, clinic=locked.order.clinic, obj=locked,
            detail={"partner": locked.partner.slug, "was": previous},
        )
        # A failed line the clinic has re-ordered meanwhile stays failed: sending it would order it twice.
        reordered = AttentionItem.objects.filter(resolution=AttentionItem.Resolution.REORDERED).values("line_id")
        failed = locked.lines.select_for_update(no_key=True).filter(status=LS.FAILED).exclude(pk__in=reordered)
        for line in failed.order_by("pk"):
            line_apply_status(
                line=line, to=LS.PENDING, source=LineEvent.Source.STAFF, actor=actor,
                actor_label=getattr(actor, "username", ""), reason="Dispatch retried by pharmacy staff.",
            )
        transaction.on_commit(lambda: _enqueue_dispatch(locked.pk))
    partner_order.refresh_from_db()
    return partner_order
