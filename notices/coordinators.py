"""Coordinators are told, not asked: an email when lines of an order are rejected, put on hold
or cancelled (batched per order), and a daily digest, at the clinic's chosen hour, of what still
needs attention and which lines are overdue. The emails carry counts, order numbers and links —
no patient names or clinical detail (the pages behind the links do, after login)."""

from __future__ import annotations

import datetime
import logging
from collections import Counter

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from clinics.models import Clinic
from fulfillment.models import OrderLine
from fulfillment.watchdog import overdue_lines

from .models import AlertLine, AttentionAlert, DigestRun, NoticeSettings
from .selectors import coordinator_emails, digest_items
from .timing import local_now

log = logging.getLogger(__name__)
S = OrderLine.Status
REROUTED = "rerouted"
WHAT = {S.REJECTED: "rejected by the pharmacy", REROUTED: "rejected by the pharmacy and sent to another one by Fizy",
        S.ON_HOLD: "put on hold", S.CANCELLED: "cancelled", S.FAILED: "could not be sent to the pharmacy"}


def _counts_sentence(counts: Counter) -> str:
    order = list(WHAT)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], order.index(item[0]) if item[0] in order else len(order)))
    parts = [f"{n} {WHAT.get(status, status)}" for status, n in ranked]
    return ", ".join(parts)


def alerts_send_due(*, now: datetime.datetime | None = None) -> int:
    now = now or timezone.now()
    due = list(AttentionAlert.objects.filter(status=AttentionAlert.Status.WAITING, send_after__lte=now)
               .order_by("send_after", "id").values_list("pk", flat=True)[:200])
    return sum(1 for pk in due if alert_send(alert_id=pk, now=now))


def alert_send(*, alert_id: int, now: datetime.datetime | None = None) -> bool:
    """Email the clinic's coordinators about one order's rejected, held or cancelled lines."""
    now = now or timezone.now()
    claimed = AttentionAlert.objects.filter(pk=alert_id, status=AttentionAlert.Status.WAITING, send_after__lte=now).update(
        status=AttentionAlert.Status.SENT, sent_at=now)
    if not claimed:
        return False
    alert = AttentionAlert.objects.select_related("order__clinic").get(pk=alert_id)
    order, clinic = alert.order, alert.order.clinic
    recipients = coordinator_emails(clinic=clinic)
    if not recipients:
        AttentionAlert.objects.filter(pk=alert_id).update(status=AttentionAlert.Status.NOT_SENT,
                                                          reason="The clinic has no member with an email address.")
        return False
    # A rejected line Fizy has already sent to another pharmacy (fulfillment.reroute) is said so.
    counts = Counter(
        REROUTED if status == S.REJECTED and rerouted else status
        for status, rerouted in AlertLine.objects.filter(alert=alert).values_list("status", "line__rerouted_to")
    )
    n = sum(counts.values())
    subject = f"{clinic.name}: order {order.number} needs your attention ({n} line{'s' if n != 1 else ''})"
    body = (
        f"In order {order.number} (placed {order.placed_at:%b %d}), {n} line{'s were' if n != 1 else ' was'} "
        f"{_counts_sentence(counts)}.\n\n"
        "The patients were told their order is delayed or that the clinic will contact them (if they agreed to "
        "updates); they were not given the pharmacy's reason.\n\n"
        f"See what to do next: {settings.SITE_URL}{reverse('fulfillment:attention')}\n"
        f"The order: {settings.SITE_URL}{reverse('fulfillment:order', args=[order.pk])}\n"
    )
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:  # noqa: BLE001 — any mail failure is recorded on the alert, then raised
        AttentionAlert.objects.filter(pk=alert_id).update(status=AttentionAlert.Status.NOT_SENT,
                                                          reason=f"The email could not be sent ({exc.__class__.__name__}).")
        raise
    AttentionAlert.objects.filter(pk=alert_id).update(recipients=len(recipients))
    return True


def digest_text(*, clinic: Clinic, lines: list[OrderLine], overdue: list[OrderLine] = ()) -> tuple[str, str]:
    """The digest: the open Needs-attention lines by what happened to them, then the overdue ones
    (no news from their pharmacy for longer than expected: fulfillment.watchdog)."""
    counts = Counter(line.status for line in lines)
    n = len(lines) + len(overdue)
    orders = sorted({line.order.number for line in [*lines, *overdue]})
    subject = f"{clinic.name}: {n} line{'s' if n != 1 else ''} need{'s' if n == 1 else ''} attention"
    what = [_counts_sentence(counts)] if lines else []
    if overdue:
        what.append(f"{len(overdue)} overdue (no news from the pharmacy for longer than expected)")
    body = (
        f"Good morning. {n} line{'s' if n != 1 else ''} of {len(orders)} "
        f"order{'s' if len(orders) != 1 else ''} still need{'s' if n == 1 else ''} attention: "
        f"{', '.join(what)}.\n\n"
        f"Orders: {', '.join(orders)}\n\n"
        f"Needs attention: {settings.SITE_URL}{reverse('fulfillment:attention')}\n"
    )
    return subject, body


def digests_send_due(*, now: datetime.datetime | None = None) -> int:
    """Send each clinic's digest once a (clinic-local) day, from its chosen hour on. A day with
    nothing to report sends nothing (and is recorded, so it is not looked at again)."""
    now = now or timezone.now()
    notice_settings = {s.clinic_id: s for s in NoticeSettings.objects.all()}
    recent = set(DigestRun.objects.filter(day__gte=(now - datetime.timedelta(days=2)).date())
                 .values_list("clinic_id", "day"))
    sent = 0
    for clinic in Clinic.objects.only("id", "name", "timezone"):
        hour = (notice_settings.get(clinic.pk) or NoticeSettings()).digest_hour
        local = local_now(now, clinic.timezone)
        if local.hour < hour or (clinic.pk, local.date()) in recent:
            continue
        try:
            with transaction.atomic():
                run = DigestRun.objects.create(clinic=clinic, day=local.date(), created_at=now)
        except IntegrityError:
            continue  # another worker has it
        lines = digest_items(clinic=clinic)
        listed = {line.pk for line in lines}
        overdue = [line for line in overdue_lines(clinic=clinic, now=now) if line.pk not in listed]
        recipients = coordinator_emails(clinic=clinic) if lines or overdue else []
        if recipients:
            subject, body = digest_text(clinic=clinic, lines=lines, overdue=overdue)
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
            sent += 1
        DigestRun.objects.filter(pk=run.pk).update(items=len(lines) + len(overdue), recipients=len(recipients),
                                                   sent_at=now if recipients else None)
    return sent
