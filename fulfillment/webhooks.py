"""Partner status webhooks: verify first, then store, validate and apply an event to its line.

Protocol (``docs/partner-api.md``): the partner POSTs a JSON event to
``/api/partners/<slug>/events``, signed the Standard Webhooks way (``webhook-id``,
``webhook-timestamp``, ``webhook-signature`` with one or more ``v1,`` signatures; see
``fizy.lib.webhook_signing``) with the partner's current or next secret. Until
``settings.WEBHOOK_LEGACY_SIGNATURES_UNTIL`` the older ``X-Fizy-Timestamp`` / ``X-Fizy-Signature``
scheme is accepted too.

Order of the checks, so that nobody can fill the database or learn which partners exist:

1. size (the view refuses a body over ``WEBHOOK_MAX_BODY_BYTES`` with 413 before reading it);
2. the partner (by slug) and the signature: a request failing either is kept as metadata only
   (:class:`RefusedWebhookRequest`: size, time, source address, the check that failed, the first
   1 KB) and answered with the same 401 whatever the reason;
3. only a verified request is stored whole (:class:`WebhookEvent`), committed on its own before
   anything else, then validated (400 with the fields at fault) and applied once per event id.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from catalog.models import Offering, Partner
from fizy.lib import webhook_signing

from .attention import attention_hold_for_staff
from .models import LineEvent, OrderLine, RefusedWebhookRequest, WebhookEvent
from .reasons import ReasonCode
from .status import locked_line_apply_status, refusal_message

# The scheme partners used before Standard Webhooks (accepted until WEBHOOK_LEGACY_SIGNATURES_UNTIL).
TIMESTAMP_HEADER = "X-Fizy-Timestamp"
SIGNATURE_HEADER = "X-Fizy-Signature"
SIGNATURE_PREFIX = "sha256="
TOLERANCE_SECONDS = 300
# What a refused request keeps of its body: enough to recognise a partner's misconfigured event
# (at most 2 KB by design; 1 KB keeps the row inline, under PostgreSQL's TOAST threshold, so 1,000
# refused requests cost about 1.3 MB: tests/reliability/test_webhook_flood.py).
REFUSED_PREFIX_BYTES = 1024
STORED_HEADERS = (
    "content-type", "content-length", "user-agent", "x-request-id",
    webhook_signing.ID_HEADER, webhook_signing.TIMESTAMP_HEADER, webhook_signing.SIGNATURE_HEADER,
    "x-fizy-timestamp", "x-fizy-signature",
)
UNVERIFIED = {
    "error": "The request could not be verified. Check the URL, the signing secret, the webhook-id, "
             "webhook-timestamp and webhook-signature headers, and your clock (docs/partner-api.md).",
}
# Verified against when the slug is unknown, so that an unknown slug costs what a known one does.
_DECOY_SECRET = webhook_signing.generate_secret()

Outcome = WebhookEvent.Outcome
Check = RefusedWebhookRequest.Check
LS = OrderLine.Status
# What a partner may report. pending / sent / failed are ours alone.
PARTNER_STATUSES = [LS.ACCEPTED, LS.COMPOUNDING, LS.SHIPPED, LS.DELIVERED, LS.REJECTED, LS.ON_HOLD, LS.CANCELLED]
NEEDS_REASON = {LS.REJECTED, LS.ON_HOLD, LS.CANCELLED}
NEEDS_REASON_CODE = {LS.REJECTED, LS.ON_HOLD}


def max_body_bytes() -> int:
    return settings.WEBHOOK_MAX_BODY_BYTES


def legacy_signatures_accepted(today: datetime.date | None = None) -> bool:
    """Whether the X-Fizy-* scheme is still accepted (the transition window is open)."""
    until = settings.WEBHOOK_LEGACY_SIGNATURES_UNTIL
    return until is not None and (today or timezone.localdate()) <= until


def webhook_headers(*, secret: str | list[str], body: bytes, timestamp: int | None = None, msg_id: str | None = None) -> dict[str, str]:
    """The headers a partner sends with ``body``, signed with ``secret`` (or with each of a list
    of secrets, as a partner in the middle of a rotation does). Used by the sandbox partner and tests."""
    secrets_ = [secret] if isinstance(secret, str) else list(secret)
    return {"Content-Type": "application/json",
            **webhook_signing.sign_headers(secrets_=secrets_, body=body, msg_id=msg_id, timestamp=timestamp)}


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The legacy ``X-Fizy-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def legacy_webhook_headers(*, secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The legacy X-Fizy-* headers (partners not yet on Standard Webhooks)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=ts, body=body),
    }


class PartnerEventSerializer(serializers.Serializer):
    event_id = serializers.CharField(max_length=100)
    occurred_at = serializers.DateTimeField()
    line_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    status = serializers.ChoiceField(choices=PARTNER_STATUSES)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    reason_code = serializers.ChoiceField(choices=ReasonCode.values, required=False, allow_blank=True, default="")
    tracking_number = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    carrier = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        status = attrs["status"]
        if status in NEEDS_REASON and not attrs["reason"].strip():
            raise serializers.ValidationError({"reason": f"A reason is required when the status is {status}."})
        if status in NEEDS_REASON_CODE and not attrs["reason_code"]:
            raise serializers.ValidationError(
                {"reason_code": f"A reason_code is required when the status is {status} (docs/partner-api.md)."}
            )
        if status == LS.CANCELLED and not attrs["reason_code"]:
            attrs["reason_code"] = ReasonCode.OTHER
        if status == LS.SHIPPED:
            missing = {f: "Required when the status is shipped." for f in ("tracking_number", "carrier") if not attrs[f].strip()}
            if missing:
                raise serializers.ValidationError(missing)
        return attrs


class StockEventSerializer(serializers.Serializer):
    """``{"type": "stock", "partner_sku": …, "quantity_on_hand": …}``: what the partner has of one
    of its products now (docs/partner-api.md)."""

    event_id = serializers.CharField(max_length=100)
    occurred_at = serializers.DateTimeField()
    type = serializers.ChoiceField(choices=["stock"])
    partner_sku = serializers.CharField(max_length=60)
    quantity_on_hand = serializers.IntegerField(min_value=0, max_value=10_000_000)


EVENT_SERIALIZERS = {"stock": StockEventSerializer}


@dataclass
class WebhookResult:
    status_code: int
    data: dict
    event: WebhookEvent | None  # None when the request was refused before being stored


def _clean(text: str, limit: int) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; keep everything else as received.
    return text.replace("\x00", "\ufffd")[:limit]


def _stored_headers(headers: Mapping[str, str]) -> dict:
    return {k: _clean(v, 500) for k, v in headers.items() if k in STORED_HEADERS}


def _finish(event: WebhookEvent, outcome: str, status_code: int, data: dict) -> WebhookResult:
    event.outcome = outcome
    event.error = "" if outcome == Outcome.APPLIED else _clean(str(data.get("error") or data.get("detail") or ""), 2000)
    event.processed_at = timezone.now()
    event.save(update_fields=["outcome", "error", "processed_at", "event_id"])
    return WebhookResult(status_code=status_code, data=data, event=event)


def _legacy_problem(secrets_: list[str], headers: Mapping[str, str], body: bytes, now: float) -> str:
    timestamp = headers.get(TIMESTAMP_HEADER.lower(), "").strip()
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return f"missing or malformed {TIMESTAMP_HEADER} header"
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return f"{TIMESTAMP_HEADER} is more than {TOLERANCE_SECONDS // 60} minutes away from our clock"
    given = headers.get(SIGNATURE_HEADER.lower(), "").strip()
    if not given.startswith(SIGNATURE_PREFIX):
        given = SIGNATURE_PREFIX + given
    for secret in secrets_:
        expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
        if hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
            return ""
    return f"{SIGNATURE_HEADER} does not match the body"


def _verification_problem(partner: Partner | None, headers: Mapping[str, str], body: bytes, now: float) -> tuple[str, str]:
    """("", "") when the request is the partner's, else (the check that failed, why)."""
    secrets_ = partner.webhook_secrets if partner is not None else [_DECOY_SECRET]
    if webhook_signing.SIGNATURE_HEADER not in headers and SIGNATURE_HEADER.lower() in headers:
        if not legacy_signatures_accepted():
            return Check.LEGACY_CLOSED, f"{SIGNATURE_HEADER} is no longer accepted; sign with Standard Webhooks"
        problem = _legacy_problem(secrets_, headers, body, now)
    else:
        _, problem = webhook_signing.verify(secrets_=secrets_, body=body, headers=headers)
    if partner is None:
        return Check.UNKNOWN_PARTNER, "no partner with this slug"
    if not partner.webhook_secrets:
        return Check.NO_SECRET, "the partner has no webhook signing secret configured"
    return (Check.SIGNATURE, problem) if problem else ("", "")


def partner_event_refuse(*, slug: str, check: str, detail: str, size: int, source_address: str | None,
                         body: bytes = b"", partner: Partner | None = None) -> WebhookResult:
    """Keep the metadata of a request that failed a check (never its whole body) and answer it."""
    prefix = body[:REFUSED_PREFIX_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")
    RefusedWebhookRequest.objects.create(
        partner=partner, partner_slug=_clean(slug, 60), failed_check=check, detail=_clean(detail, 200), size=size,
        source_address=source_address or None,
        body_prefix=prefix.encode("utf-8")[:REFUSED_PREFIX_BYTES].decode("utf-8", "ignore"),
    )
    if check == Check.TOO_LARGE:
        return WebhookResult(413, {"error": f"The body is larger than {max_body_bytes()} bytes."}, None)
    return WebhookResult(401, dict(UNVERIFIED), None)


def _parse(body: bytes) -> tuple[dict | None, dict]:
    """(validated event, None) or (None, error body)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, {"error": f"The body is not valid JSON: {exc.__class__.__name__}."}
    if not isinstance(data, dict):
        return None, {"error": "The body must be a JSON object."}
    kind = data.get("type", "line.status")
    if kind != "line.status" and kind not in EVENT_SERIALIZERS:
        return None, {"error": f"Unknown event type {str(kind)[:40]!r}: 'line.status' (the default) or 'stock'."}
    serializer = EVENT_SERIALIZERS.get(kind, PartnerEventSerializer)(data=data)
    try:
        valid = serializer.is_valid()
    except (ValueError, TypeError, OverflowError) as exc:
        return None, {"error": f"The event could not be read: {exc.__class__.__name__}."}
    if not valid:
        return None, {"error": "The event has missing or invalid fields.", "fields": serializer.errors}
    return serializer.validated_data, {}


def partner_event_receive(*, slug: str, headers: Mapping[str, str], body: bytes, source_address: str | None = None,
                          now: float | None = None) -> WebhookResult:
    """Verify, store, validate and apply one webhook request whose body the view has read (at
    most ``WEBHOOK_MAX_BODY_BYTES``). Never raises for bad input: the answer (status code and
    JSON) says what was wrong, and a row records it.

    A verified, applied event costs two commits: the WebhookEvent's INSERT (committed on its own,
    so that nothing verified is lost whatever happens next), then one transaction that locks the
    line, claims the event id, records the change and the event's outcome."""
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    if len(body) > max_body_bytes():
        return partner_event_refuse(slug=slug, check=Check.TOO_LARGE, detail="body over the size limit",
                                    size=len(body), source_address=source_address)
    partner = (Partner.objects.only("id", "name", "webhook_secret", "webhook_secret_next").filter(slug=slug).first()
               if len(slug) <= 60 else None)
    check, why = _verification_problem(partner, headers, body, time.time() if now is None else now)
    if check:
        return partner_event_refuse(slug=slug, check=check, detail=why, size=len(body), source_address=source_address,
                                    body=body, partner=partner)
    event = WebhookEvent.objects.create(
        partner=partner,
        partner_slug=_clean(slug, 60),
        headers=_stored_headers(headers),
        body=_clean(body.decode("utf-8", "replace"), max_body_bytes()),
    )
    data, error = _parse(body)
    if data is None:
        return _finish(event, Outcome.INVALID, 400, error)
    event.event_id = data["event_id"]
    if data.get("type") == "stock":
        return _apply_stock(event, partner, data)
    try:
        with transaction.atomic():
            # The line is read once, with its lock (only its own row: not the partner order's,
            # which would make every event of that partner order wait for the others).
            line = (
                OrderLine.objects.select_for_update(of=("self",), no_key=True)
                .filter(pk=data["line_id"], partner_order__partner=partner)
                .first()
            )
            if line is None:
                return _finish(event, Outcome.UNKNOWN_LINE, 404, {"error": f"No line {data['line_id']} was sent to {partner.name}."})
            return _apply(event, partner, line, data)
    except IntegrityError:
        # webhook_event_applied_once: this event id is already applied (or was applied by a
        # concurrent request while we waited). The transaction rolled back before touching the line.
        duplicate = {"status": "duplicate", "event_id": event.event_id, "detail": "Already applied; acknowledged."}
        return _finish(event, Outcome.DUPLICATE, 200, duplicate)


def _apply(event: WebhookEvent, partner: Partner, line: OrderLine, data: dict) -> WebhookResult:
    """Apply the event to ``line``, which the caller has locked in its transaction."""
    # Claim the event id before the line is touched: marking this row applied is what the
    # webhook_event_applied_once constraint checks, so a replay fails here with IntegrityError
    # (and is answered "duplicate", not recorded on the line as a refused move).
    event.outcome = Outcome.APPLIED
    event.error = ""
    event.processed_at = timezone.now()
    event.save(update_fields=["outcome", "error", "processed_at", "event_id"])
    payload = {
        "webhook_event": event.pk,
        "event_id": data["event_id"],
        "occurred_at": data["occurred_at"].isoformat(),
        "status": data["status"],
        "reason": data["reason"],
        "reason_code": data["reason_code"],
        "tracking_number": data["tracking_number"],
        "carrier": data["carrier"],
    }
    if line.status == data["status"]:
        # Already there (a status poll got it first, or the partner reports the same status
        # under a new event id): applied once, nothing to record.
        already = {"status": "duplicate", "event_id": event.event_id, "line_status": line.status,
                   "detail": f"The line is already {LS(line.status).label.lower()}."}
        return _finish(event, Outcome.DUPLICATE, 200, already)
    held = line.status == LS.FAILED
    if held:
        payload["held"] = True
    change = locked_line_apply_status(
        line=line, to=data["status"], source=LineEvent.Source.WEBHOOK, actor_label=partner.name,
        reason=data["reason"], reason_code=data["reason_code"], payload=payload,
        tracking_number=data["tracking_number"], carrier=data["carrier"],
    )
    if held:
        # We gave up sending this line, yet the partner reports on it: it has the order. Keep the
        # event for staff (retrying the partner order applies it) instead of dropping it.
        attention_hold_for_staff(line=line, event=event, status=data["status"])
        body = {"status": "held", "event_id": event.event_id, "line_status": line.status,
                "detail": "This line was marked failed on our side; pharmacy staff will review the event. Do not resend it."}
        return _finish(event, Outcome.HELD, 200, body)
    if change.applied:
        return WebhookResult(
            status_code=200, data={"status": "applied", "event_id": event.event_id, "line_status": line.status}, event=event
        )
    refused = refusal_message(change.from_status, change.to_status)
    body = {"status": "ignored", "event_id": event.event_id, "line_status": line.status, "detail": refused}
    if line.status == LS.PENDING:
        # Our dispatch has not recorded the line as sent yet: ask the partner to retry.
        return _finish(event, Outcome.IGNORED, 409, {**body, "error": "The line is not sent yet; retry later."})
    return _finish(event, Outcome.IGNORED, 200, body)


def _apply_stock(event: WebhookEvent, partner: Partner, data: dict) -> WebhookResult:
    """A partner reports what it has on hand of one product: the offering's stock becomes that,
    unless a later report was applied already (reports can arrive out of order)."""
    try:
        with transaction.atomic():
            offering = (
                Offering.objects.select_for_update(no_key=True)
                .filter(partner=partner, partner_sku=data["partner_sku"]).first()
            )
            if offering is None:
                return _finish(event, Outcome.INVALID, 404,
                               {"error": f"{partner.name} has no product with SKU {data['partner_sku']!r} on Fizy."})
            event.outcome, event.error, event.processed_at = Outcome.APPLIED, "", timezone.now()
            event.save(update_fields=["outcome", "error", "processed_at", "event_id"])
            if offering.stock_reported_at and offering.stock_reported_at >= data["occurred_at"]:
                return WebhookResult(status_code=200, event=event, data={
                    "status": "applied", "event_id": event.event_id, "stock": offering.stock_quantity,
                    "detail": "A later stock report was applied already; this one changes nothing."})
            offering.stock_quantity = data["quantity_on_hand"]
            offering.stock_reported_at = data["occurred_at"]
            offering.save(update_fields=["stock_quantity", "stock_reported_at"])
    except IntegrityError:
        duplicate = {"status": "duplicate", "event_id": event.event_id, "detail": "Already applied; acknowledged."}
        return _finish(event, Outcome.DUPLICATE, 200, duplicate)
    return WebhookResult(status_code=200, event=event,
                         data={"status": "applied", "event_id": event.event_id, "stock": offering.stock_quantity})


def refused_webhook_requests_purge(*, now: datetime.datetime | None = None) -> int:
    """Delete the metadata of refused requests older than ``WEBHOOK_REFUSED_RETENTION_DAYS``."""
    cutoff = (now or timezone.now()) - datetime.timedelta(days=settings.WEBHOOK_REFUSED_RETENTION_DAYS)
    deleted, _ = RefusedWebhookRequest.objects.filter(received_at__lt=cutoff).delete()
    return deleted
