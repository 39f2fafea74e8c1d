"""Outbound webhooks to the clinics' systems.

Fulfillment never calls this app: it records every status change as a ``LineEvent`` (and an
order's use of a prescription's fill as a ``Fill``). Every minute (a django-q2 schedule, as the
notices do) :func:`webhooks_scan` reads the applied events and used fills it has not used yet and makes one :class:`WebhookDelivery` per event and subscribed URL (at most one per
cause: a database constraint); each delivery is one django-q2 task that POSTs it, signed with the
Standard Webhooks scheme (``standardwebhooks``: ``webhook-id``, ``webhook-timestamp``,
``webhook-signature``), and retries with backoff up to ``CLINIC_WEBHOOK_MAX_ATTEMPTS``.

Payloads carry ids and statuses only — never a patient's name, a SIG or a pharmacy's free text;
the clinic's system reads the details with its API key.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import secrets
import uuid
from collections import defaultdict

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from clinics.audit import Action, audit_record
from clinics.models import Clinic
from fulfillment.models import LineEvent, OrderLine
from fulfillment.status import NEEDS_ATTENTION, TERMINAL
from prescriptions.models import Fill

from .models import WebhookCursor, WebhookDelivery, WebhookEvent, WebhookSubscription

log = logging.getLogger(__name__)
D = WebhookDelivery.Status
DELIVER_TASK = "clinic_api.tasks.deliver_webhook"
OVERLAP = datetime.timedelta(minutes=10)  # longer than any transaction that writes a line event
FIRST_LOOKBACK = datetime.timedelta(hours=1)
SCAN_LIMIT = 2000
MAX_SUBSCRIPTIONS = 10


class WebhookError(Exception):
    """A subscription cannot be made; the message says why."""


# --- subscriptions --------------------------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _check_url(url: str) -> None:
    if not url.startswith("https://") and not (url.startswith("http://") and settings.CLINIC_WEBHOOK_ALLOW_HTTP):
        raise WebhookError("The URL must start with https://.")


def subscription_create(*, clinic: Clinic, url: str, events: list[str], actor=None) -> WebhookSubscription:
    """Subscribe ``url`` to ``events``; its secret (``subscription.secret``) is shown once."""
    _check_url(url)
    if not events or set(events) - set(WebhookEvent.values):
        raise WebhookError(f"Choose events among: {', '.join(WebhookEvent.values)}.")
    with transaction.atomic():
        if WebhookSubscription.objects.filter(clinic=clinic, active=True).count() >= MAX_SUBSCRIPTIONS:
            raise WebhookError(f"A clinic has at most {MAX_SUBSCRIPTIONS} webhook URLs; remove one first.")
        subscription = WebhookSubscription(clinic=clinic, url=url, events=[e for e in WebhookEvent.values if e in events],
                                           secret=new_secret())
        try:
            subscription.full_clean(exclude=["secret"])
        except ValidationError:
            raise WebhookError("Enter a valid URL.") from None
        subscription.save()
        audit_record(action=Action.API_WEBHOOK_SUBSCRIBE, actor=actor, clinic=clinic, obj=subscription,
                     detail={"url": url, "events": subscription.events})
    return subscription


def subscription_remove(*, subscription: WebhookSubscription, actor=None) -> None:
    with transaction.atomic():
        updated = WebhookSubscription.objects.filter(pk=subscription.pk, active=True).update(active=False)
        if updated:
            audit_record(action=Action.API_WEBHOOK_UNSUBSCRIBE, actor=actor, clinic=subscription.clinic,
                         obj=subscription, detail={"url": subscription.url})


# --- from line events to deliveries ---------------------------------------------------------------


def _line_data(event: dict) -> dict:
    return {"order": event["line__order_id"], "line": event["line_id"], "patient": event["line__patient_id"],
            "product": event["line__product_id"], "from_status": event["from_status"], "status": event["to_status"],
            "reason_code": event["line__reason_code"] if event["to_status"] == event["line__status"] else "",
            "at": event["at"].isoformat()}


def _payload(event_type: str, at: datetime.datetime, data: dict) -> dict:
    return {"type": event_type, "timestamp": at.isoformat(), "data": data}


def _causes(events: list[dict]) -> list[tuple[int, str, str, dict]]:
    """(clinic, event type, source, payload) for every webhook the events cause."""
    out = []
    for e in events:
        clinic, at = e["line__order__clinic_id"], e["at"]
        out.append((clinic, WebhookEvent.LINE_STATUS_CHANGED, f"line_event:{e['id']}",
                    _payload(WebhookEvent.LINE_STATUS_CHANGED, at, _line_data(e))))
        if e["to_status"] in NEEDS_ATTENTION:
            out.append((clinic, WebhookEvent.LINE_NEEDS_ATTENTION, f"attention:{e['id']}",
                        _payload(WebhookEvent.LINE_NEEDS_ATTENTION, at, _line_data(e))))
    # An order is settled when none of its lines can change by itself any more.
    orders = {e["line__order_id"]: e for e in events if e["to_status"] in TERMINAL}
    if orders:
        open_lines = dict(OrderLine.objects.filter(order_id__in=orders).exclude(status__in=list(TERMINAL))
                          .order_by().values_list("order_id").annotate(n=Count("id")))
        statuses: dict[int, dict[str, int]] = defaultdict(dict)
        for order_id, status, n in (OrderLine.objects.filter(order_id__in=orders).order_by()
                                    .values_list("order_id", "status").annotate(n=Count("id"))):
            statuses[order_id][status] = n
        for order_id, e in orders.items():
            if not open_lines.get(order_id):
                out.append((e["line__order__clinic_id"], WebhookEvent.ORDER_SETTLED, f"order_settled:{order_id}",
                            _payload(WebhookEvent.ORDER_SETTLED, e["at"], {"order": order_id, "statuses": statuses[order_id]})))
    return out


def webhook_deliveries_create(causes: list[tuple[int, str, str, dict]]) -> list[int]:
    """One delivery per cause and subscription of its clinic to its type (never twice: the
    constraint on (subscription, source)); queued after commit. Returns the new deliveries' ids."""
    clinics = {c for c, _, _, _ in causes}
    subscriptions = defaultdict(list)
    for sub in WebhookSubscription.objects.filter(clinic_id__in=clinics, active=True):
        for event_type in sub.events:
            subscriptions[(sub.clinic_id, event_type)].append(sub)
    wanted = [WebhookDelivery(subscription=sub, clinic_id=clinic, event_type=event_type, source=source,
                              payload=payload, message_id=f"msg_{uuid.uuid4().hex}")
              for clinic, event_type, source, payload in causes for sub in subscriptions[(clinic, event_type)]]
    if not wanted:
        return []
    WebhookDelivery.objects.bulk_create(wanted, ignore_conflicts=True)
    ids = list(WebhookDelivery.objects.filter(message_id__in=[d.message_id for d in wanted])
               .order_by("pk").values_list("pk", flat=True))  # sent in the order they happened
    for pk in ids:
        transaction.on_commit(lambda pk=pk: _enqueue(pk))
    return ids


def _exhausted(fills: list[dict]) -> list[tuple[int, str, str, dict]]:
    """A prescription whose last fill an order just used: one event per prescription and fill."""
    latest: dict[int, dict] = {}
    for f in fills:
        latest[f["prescription_id"]] = f  # ordered by use: the last one wins
    return [(f["prescription__clinic_id"], WebhookEvent.PRESCRIPTION_REFILLS_EXHAUSTED, f"rx_exhausted:{rx}:{f['id']}",
             _payload(WebhookEvent.PRESCRIPTION_REFILLS_EXHAUSTED, f["used_at"],
                      {"prescription": rx, "patient": f["prescription__patient_id"],
                       "product": f["prescription__product_id"], "order_line": f["order_line_id"]}))
            for rx, f in latest.items()]


def webhooks_scan(*, limit: int = SCAN_LIMIT) -> int:
    """Turn the line events (and the fills used) since the last scan into deliveries. Returns how
    many were made."""
    WebhookCursor.objects.get_or_create(pk=1)
    if not WebhookSubscription.objects.filter(active=True).exists():
        WebhookCursor.objects.filter(pk=1).update(scanned_until=timezone.now() - OVERLAP)
        return 0
    with transaction.atomic():
        cursor = WebhookCursor.objects.select_for_update(skip_locked=True).filter(pk=1).first()
        if cursor is None:
            return 0  # another worker is scanning
        since = (cursor.scanned_until or timezone.now() - FIRST_LOOKBACK) - OVERLAP
        events = list(
            LineEvent.objects.filter(applied=True, at__gte=since)
            .exclude(Q(from_status=F("to_status")))
            .order_by("at", "id")
            .values("id", "at", "from_status", "to_status", "line_id", "line__order_id", "line__patient_id",
                    "line__product_id", "line__status", "line__reason_code", "line__order__clinic_id")[:limit]
        )
        fills = list(
            Fill.objects.filter(status=Fill.Status.USED, used_at__gte=since, prescription__fills_remaining=0)
            .order_by("used_at", "id")
            .values("id", "used_at", "order_line_id", "prescription_id", "prescription__clinic_id",
                    "prescription__patient_id", "prescription__product_id")[:limit]
        )
        if not events and not fills:
            return 0
        made = webhook_deliveries_create(_causes(events) + _exhausted(fills))
        newest = max([e["at"] for e in events] + [f["used_at"] for f in fills])
        if cursor.scanned_until is None or newest > cursor.scanned_until:
            cursor.scanned_until = newest
            cursor.save(update_fields=["scanned_until", "updated_at"])
        return len(made)


# --- sending --------------------------------------------------------------------------------------


def _enqueue(delivery_id: int) -> None:
    from django_q.tasks import async_task

    async_task(DELIVER_TASK, delivery_id)


def _schedule(delivery_id: int, at: datetime.datetime) -> None:
    from django_q.models import Schedule
    from django_q.tasks import schedule

    schedule(DELIVER_TASK, delivery_id, schedule_type=Schedule.ONCE, repeats=-1, next_run=at)


def backoff(attempt: int) -> datetime.timedelta:
    """Wait before attempt ``attempt + 1``: base × 2^(attempt−1), at most 6 hours."""
    return datetime.timedelta(seconds=min(settings.CLINIC_WEBHOOK_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0), 6 * 3600))


def signed_headers(*, secret: str, message_id: str, at: datetime.datetime, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "user-agent": "Fizy-Webhooks/1",
    }


def webhook_deliver(*, delivery_id: int) -> str | None:
    """Send one delivery (claimed first: safe on several workers and to run twice). Returns its
    new status, or None when there was nothing to send."""
    now = timezone.now()
    lease = now + datetime.timedelta(seconds=settings.CLINIC_WEBHOOK_TIMEOUT * 3)
    claimable = Q(status=D.QUEUED) | Q(status=D.RETRYING, next_attempt_at__lte=now) | Q(status=D.SENDING, next_attempt_at__lt=now)
    if not WebhookDelivery.objects.filter(claimable, pk=delivery_id).update(
            status=D.SENDING, attempts=F("attempts") + 1, next_attempt_at=lease):
        return None
    delivery = WebhookDelivery.objects.select_related("subscription").get(pk=delivery_id)
    subscription = delivery.subscription
    body = json.dumps(delivery.payload, separators=(",", ":"))
    code, problem = None, ""
    if not subscription.active:
        problem = "The subscription was removed."
    else:
        try:
            response = requests.post(
                subscription.url, data=body.encode(), allow_redirects=False, timeout=settings.CLINIC_WEBHOOK_TIMEOUT,
                headers=signed_headers(secret=subscription.secret, message_id=delivery.message_id, at=now, body=body))
            code = response.status_code
            if not 200 <= code < 300:
                problem = f"The URL answered {code}."
        except requests.RequestException as exc:
            problem = f"Could not reach the URL ({exc.__class__.__name__})."
    if not problem:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=D.DELIVERED, delivered_at=timezone.now(), last_status_code=code, last_error="", next_attempt_at=None)
        return D.DELIVERED
    if delivery.attempts >= settings.CLINIC_WEBHOOK_MAX_ATTEMPTS or not subscription.active:
        WebhookDelivery.objects.filter(pk=delivery_id).update(status=D.FAILED, last_status_code=code, last_error=problem,
                                                              next_attempt_at=None)
        return D.FAILED
    at = timezone.now() + backoff(delivery.attempts)
    WebhookDelivery.objects.filter(pk=delivery_id).update(status=D.RETRYING, last_status_code=code, last_error=problem,
                                                          next_attempt_at=at)
    _schedule(delivery_id, at)
    return D.RETRYING


def webhook_resend(*, delivery: WebhookDelivery, actor=None) -> WebhookDelivery:
    """Send a delivery again now (from the Settings page), whatever happened to it before."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=D.SENDING).update(
            status=D.QUEUED, next_attempt_at=None, attempts=0)
        audit_record(action=Action.API_WEBHOOK_RESEND, actor=actor, clinic=delivery.clinic, obj=delivery,
                     detail={"event": delivery.event_type, "message_id": delivery.message_id})
        transaction.on_commit(lambda: _enqueue(delivery.pk))
    delivery.refresh_from_db()
    return delivery


def webhooks_send_due(*, now: datetime.datetime | None = None) -> int:
    """Queue what is due and was not (a lost task, a retry whose schedule was lost, an expired lease)."""
    now = now or timezone.now()
    due = Q(status=D.RETRYING, next_attempt_at__lte=now) | Q(status=D.SENDING, next_attempt_at__lt=now) | Q(
        status=D.QUEUED, created_at__lte=now - datetime.timedelta(minutes=2))
    ids = list(WebhookDelivery.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:500])
    for pk in ids:
        _enqueue(pk)
    return len(ids)


def clinic_deliveries(*, clinic: Clinic, limit: int = 50):
    return WebhookDelivery.objects.filter(clinic=clinic).select_related("subscription")[:limit]
