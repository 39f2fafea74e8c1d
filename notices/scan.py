"""The milestone scan: from the lines' status history to notices and coordinator alerts.

Fulfillment never calls this app; it records every status change as a ``LineEvent``. Every
minute (a django-q2 schedule) the scan reads the applied events it has not used yet, maps their
statuses to milestones, and groups them per (order, patient, milestone): the lines of a patient
that move together share one :class:`~notices.models.Notice`, and there is at most one notice
per (order, patient, milestone) — a database constraint. A new notice waits for the batching
window (``NOTICE_BATCH_SECONDS``) so that lines moving moments apart join it, and never goes
out in the clinic's quiet hours. Rejections, holds and cancellations also join the order's open
coordinator alert.

Safe on several workers: the scan holds the cursor row's lock (another scan skips), each event
is used once (``NoticeLine.event`` is unique), and it re-reads a margin before its cursor so an
event whose transaction committed late is not missed.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from clinics.models import Clinic
from fulfillment.models import LineEvent

from .milestones import ALERT_STATUSES, MILESTONE_OF_STATUS
from .models import AlertLine, AttentionAlert, Notice, NoticeLine, NoticeSettings, ScanCursor
from .timing import earliest_send

OVERLAP = datetime.timedelta(minutes=10)  # longer than any transaction that writes a line event
FIRST_LOOKBACK = datetime.timedelta(hours=1)
SCAN_LIMIT = 2000


@dataclass
class ScanResult:
    events: int = 0
    notices: int = 0
    alerts: int = 0
    skipped: bool = False


def notices_scan(*, now: datetime.datetime | None = None, limit: int = SCAN_LIMIT) -> ScanResult:
    """Turn the line events since the last scan into notices and alerts. ``now`` is when the
    notices count as created (their batching window and quiet hours start from it)."""
    now = now or timezone.now()
    ScanCursor.objects.get_or_create(pk=1)
    with transaction.atomic():
        cursor = ScanCursor.objects.select_for_update(skip_locked=True).filter(pk=1).first()
        if cursor is None:
            return ScanResult(skipped=True)  # another worker is scanning
        since = (cursor.scanned_until or timezone.now() - FIRST_LOOKBACK) - OVERLAP
        events = list(
            LineEvent.objects.filter(applied=True, to_status__in=list(MILESTONE_OF_STATUS), at__gte=since)
            .exclude(Exists(NoticeLine.objects.filter(event_id=OuterRef("pk"))))
            .order_by("at", "id")
            .values("id", "at", "to_status", "line_id", "line__order_id", "line__patient_id", "line__order__clinic_id")
            [:limit]
        )
        if not events:
            return ScanResult()
        result = ScanResult(events=len(events))
        result.notices = _notices(events, now)
        result.alerts = _alerts([e for e in events if e["to_status"] in ALERT_STATUSES], now)
        newest = max(e["at"] for e in events)
        if cursor.scanned_until is None or newest > cursor.scanned_until:
            cursor.scanned_until = newest
            cursor.save(update_fields=["scanned_until", "updated_at"])
        return result


def _send_after(clinic: Clinic, notice_settings: NoticeSettings | None, at: datetime.datetime) -> datetime.datetime:
    notice_settings = notice_settings or NoticeSettings(clinic=clinic)
    return earliest_send(at, tz=clinic.timezone, start=notice_settings.quiet_hours_start, end=notice_settings.quiet_hours_end)


def _notices(events: list[dict], now: datetime.datetime) -> int:
    groups: dict[tuple[int, int, str], list[dict]] = defaultdict(list)
    for event in events:
        groups[(event["line__order_id"], event["line__patient_id"], MILESTONE_OF_STATUS[event["to_status"]])].append(event)
    order_ids = {order_id for order_id, _, _ in groups}
    # Locked: a notice being claimed for sending waits until its new lines are in (and then has them).
    existing = {(n.order_id, n.patient_id, n.milestone): n
                for n in Notice.objects.select_for_update().filter(order_id__in=order_ids).order_by("pk")}
    clinic_ids = {e["line__order__clinic_id"] for e in events}
    clinics = Clinic.objects.in_bulk(clinic_ids)
    notice_settings = {s.clinic_id: s for s in NoticeSettings.objects.filter(clinic_id__in=clinic_ids)}
    window = datetime.timedelta(seconds=settings.NOTICE_BATCH_SECONDS)
    new = []
    for key, group in groups.items():
        if key not in existing:
            clinic = clinics[group[0]["line__order__clinic_id"]]
            notice = Notice(clinic=clinic, order_id=key[0], patient_id=key[1], milestone=key[2], created_at=now,
                            send_after=_send_after(clinic, notice_settings.get(clinic.pk), now + window))
            new.append(notice)
            existing[key] = notice
    Notice.objects.bulk_create(new)
    NoticeLine.objects.bulk_create([
        NoticeLine(notice_id=existing[key].pk, line_id=event["line_id"], event_id=event["id"])
        for key, group in groups.items() for event in group
    ])
    return len(new)


def _alerts(events: list[dict], now: datetime.datetime) -> int:
    if not events:
        return 0
    by_order: dict[int, list[dict]] = defaultdict(list)
    for event in events:
        by_order[event["line__order_id"]].append(event)
    open_alerts = {a.order_id: a for a in AttentionAlert.objects.select_for_update().filter(
        order_id__in=by_order, status=AttentionAlert.Status.WAITING).order_by("pk")}
    window = datetime.timedelta(seconds=settings.NOTICE_BATCH_SECONDS)
    new = [
        AttentionAlert(clinic_id=group[0]["line__order__clinic_id"], order_id=order_id, created_at=now,
                       send_after=now + window)
        for order_id, group in by_order.items() if order_id not in open_alerts
    ]
    AttentionAlert.objects.bulk_create(new)
    open_alerts.update({a.order_id: a for a in new})
    AlertLine.objects.bulk_create([
        AlertLine(alert_id=open_alerts[order_id].pk, line_id=e["line_id"], event_id=e["id"], status=e["to_status"])
        for order_id, group in by_order.items() for e in group
    ])
    return len(new)
