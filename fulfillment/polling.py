"""Asking partners where their lines are (the status call, docs/partner-api.md §1c).

Every minute a django-q2 schedule (:func:`partner_orders_poll_due`) picks, for each active
partner that offers a status call (``Partner.status_api``), the sent partner orders that need a
look — those with an overdue line (``fulfillment.watchdog``) or, for a partner that sends no
webhooks, those with any open line — not asked in the partner's last ``poll_minutes``, and queues
one task per partner order. The task (:func:`partner_order_poll`) calls the partner outside any
lock, then applies each line's news through the state machine, as a LineEvent with source "poll".

A status the line already has is news to nobody: it is skipped, so a poll and a webhook that
report the same change apply it once, whichever comes first (the webhook side answers "duplicate"
for a status the line already has). A report that the state machine would refuse (the partner's
status call lags behind a webhook we applied) is skipped too, not recorded on every poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Partner

from .models import LineEvent, OrderLine, PartnerOrder
from .partners import PartnerClient, PartnerError
from .status import can_transition, locked_line_apply_status
from .watchdog import expected_times, overdue_filter

log = logging.getLogger(__name__)

S = OrderLine.Status
POLL_TASK = "fulfillment.tasks.poll_partner_order"
# Lines the partner can still tell us something about.
OPEN = [S.SENT, S.ACCEPTED, S.COMPOUNDING, S.SHIPPED, S.ON_HOLD]
MAX_PER_PARTNER = 500  # partner orders queued per partner and run; the rest wait for the next minute


@dataclass
class PollResult:
    partner_order_id: int
    applied: list[int] = field(default_factory=list)  # line ids moved
    unchanged: int = 0
    skipped: int = 0  # stale reports, unknown lines
    error: str = ""


def _due_partner_orders(partner: Partner, *, now, times) -> list[int]:
    lines = OrderLine.objects.filter(partner_order__partner=partner, partner_order__status=PartnerOrder.Status.SENT,
                                     status__in=OPEN)
    if partner.sends_webhooks:
        lines = lines.filter(overdue_filter(now=now, times=times))
    not_lately = Q(polled_at__isnull=True) | Q(polled_at__lt=now - timedelta(minutes=partner.poll_minutes))
    return list(
        PartnerOrder.objects.filter(not_lately, partner=partner, status=PartnerOrder.Status.SENT,
                                    pk__in=lines.values("partner_order_id"))
        .exclude(partner_reference="")
        .order_by("polled_at", "pk")
        .values_list("pk", flat=True)[:MAX_PER_PARTNER]
    )


def partner_orders_poll_due(*, now=None) -> list[int]:
    """Queue a status poll for each partner order that needs one (see the module docstring).
    Claimed with a conditional update of ``polled_at``, so two schedulers never queue the same
    partner order twice in one period. Returns the ids queued."""
    from django_q.tasks import async_task

    now = now or timezone.now()
    times = expected_times()
    queued = []
    for partner in Partner.objects.filter(active=True, status_api=True).exclude(api_base_url="").order_by("pk"):
        since = now - timedelta(minutes=partner.poll_minutes)
        for pk in _due_partner_orders(partner, now=now, times=times):
            claimed = PartnerOrder.objects.filter(Q(polled_at__isnull=True) | Q(polled_at__lt=since), pk=pk).update(polled_at=now)
            if claimed:
                queued.append(pk)
    for pk in queued:
        async_task(POLL_TASK, pk)
    return queued


def partner_order_poll(*, partner_order_id: int) -> PollResult:
    """Ask the partner for the status of this partner order's lines and apply what changed (source
    "poll"). Safe to run twice: a status the line already has is skipped."""
    result = PollResult(partner_order_id=partner_order_id)
    partner_order = PartnerOrder.objects.select_related("partner").filter(pk=partner_order_id).first()
    if partner_order is None or partner_order.status != PartnerOrder.Status.SENT or not partner_order.partner_reference:
        result.error = "not sent"
        return result
    partner = partner_order.partner
    if not partner.status_api:
        result.error = f"{partner.name} offers no status call"
        return result
    PartnerOrder.objects.filter(pk=partner_order.pk).update(polled_at=timezone.now())
    try:
        reports = PartnerClient(partner).order_status(reference=partner_order.partner_reference)
    except PartnerError as error:
        log.warning("status poll of partner order %s failed: %s", partner_order.pk, error.reason)
        result.error = error.reason
        return result
    for report in reports:
        if report.status == "received":
            result.unchanged += 1
            continue
        with transaction.atomic():
            line = (
                OrderLine.objects.select_for_update(of=("self",), no_key=True)
                .select_related("order__clinic", "patient")
                .filter(pk=report.line_id, partner_order=partner_order).first()
            )
            if line is None or not can_transition(line.status, report.status) or line.status not in OPEN:
                if line is not None and line.status == report.status:
                    result.unchanged += 1
                else:
                    result.skipped += 1
                continue
            locked_line_apply_status(
                line=line, to=report.status, source=LineEvent.Source.POLL, actor_label=partner.name,
                reason=report.reason, reason_code=report.reason_code,
                tracking_number=report.tracking_number, carrier=report.carrier,
                payload={"poll": True, "reference": partner_order.partner_reference, "status": report.status,
                         "updated_at": report.updated_at, "reason_code": report.reason_code,
                         "tracking_number": report.tracking_number, "carrier": report.carrier},
            )
            result.applied.append(line.pk)
    return result
