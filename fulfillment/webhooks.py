"""Partner status webhooks: signature, validation, and applying an event to its line.

Protocol (``docs/partner-api.md``): the partner POSTs a JSON event to
``/api/partners/<slug>/events`` with ``X-Fizy-Timestamp`` (Unix seconds) and
``X-Fizy-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed with the partner's
webhook secret>``. Every request is stored as a WebhookEvent before anything else is looked at.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from catalog.models import Partner

from .models import LineEvent, OrderLine, WebhookEvent
from .status import locked_line_apply_status, refusal_message

TIMESTAMP_HEADER = "X-Fizy-Timestamp"
SIGNATURE_HEADER = "X-Fizy-Signature"
SIGNATURE_PREFIX = "sha256="
TOLERANCE_SECONDS = 300
MAX_STORED_BODY = 100_000
STORED_HEADERS = ("content-type", "content-length", "user-agent", "x-fizy-timestamp", "x-fizy-signature", "x-request-id")

Outcome = WebhookEvent.Outcome
LS = OrderLine.Status
# What a partner may report. pending / sent / failed are ours alone.
PARTNER_STATUSES = [LS.ACCEPTED, LS.COMPOUNDING, LS.SHIPPED, LS.DELIVERED, LS.REJECTED, LS.ON_HOLD, LS.CANCELLED]
NEEDS_REASON = {LS.REJECTED, LS.ON_HOLD, LS.CANCELLED}


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Fizy-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def webhook_headers(*, secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a partner sends with ``body`` (used by the sandbox partner and by tests)."""
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
    tracking_number = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    carrier = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        status = attrs["status"]
        if status in NEEDS_REASON and not attrs["reason"].strip():
            raise serializers.ValidationError({"reason": f"A reason is required when the status is {status}."})
        if status == LS.SHIPPED:
            missing = {f: "Required when the status is shipped." for f in ("tracking_number", "carrier") if not attrs[f].strip()}
            if missing:
                raise serializers.ValidationError(missing)
        return attrs


@dataclass
class WebhookResult:
    status_code: int
    data: dict
    event: WebhookEvent


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


def _signature_problem(partner: Partner, headers: Mapping[str, str], body: bytes, now: float) -> str:
    if not partner.webhook_secret:
        return "This partner has no webhook secret configured; events cannot be verified."
    timestamp = headers.get(TIMESTAMP_HEADER.lower(), "").strip()
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return f"Missing or malformed {TIMESTAMP_HEADER} header (Unix seconds expected)."
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return f"{TIMESTAMP_HEADER} is more than {TOLERANCE_SECONDS // 60} minutes away from our clock."
    given = headers.get(SIGNATURE_HEADER.lower(), "").strip()
    expected = webhook_signature(secret=partner.webhook_secret, timestamp=timestamp, body=body)
    if not given.startswith(SIGNATURE_PREFIX):
        given = SIGNATURE_PREFIX + given
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        return f"{SIGNATURE_HEADER} does not match the body."
    return ""


def _parse(body: bytes) -> tuple[dict | None, dict]:
    """(validated event, None) or (None, error body)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, {"error": f"The body is not valid JSON: {exc.__class__.__name__}."}
    if not isinstance(data, dict):
        return None, {"error": "The body must be a JSON object."}
    serializer = PartnerEventSerializer(data=data)
    try:
        valid = serializer.is_valid()
    except (ValueError, TypeError, OverflowError) as exc:
        return None, {"error": f"The event could not be read: {exc.__class__.__name__}."}
    if not valid:
        return None, {"error": "The event has missing or invalid fields.", "fields": serializer.errors}
    return serializer.validated_data, {}


def partner_event_receive(*, slug: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> WebhookResult:
    """Store, verify, validate and apply one webhook request. Never raises for bad input: the
    answer (status code and JSON) says what was wrong, and the WebhookEvent records it.

    An applied event costs two commits: the WebhookEvent's INSERT (committed on its own, so that
    nothing received is lost whatever happens next), then one transaction that locks the line,
    claims the event id, records the change and the event's outcome."""
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    partner = Partner.objects.only("id", "name", "webhook_secret").filter(slug=slug).first()
    event = WebhookEvent.objects.create(
        partner=partner,
        partner_slug=_clean(slug, 60),
        headers=_stored_headers(headers),
        body=_clean(body.decode("utf-8", "replace"), MAX_STORED_BODY),
    )
    if partner is None:
        return _finish(event, Outcome.INVALID, 404, {"error": f"No partner {slug!r}."})
    problem = _signature_problem(partner, headers, body, time.time() if now is None else now)
    if problem:
        return _finish(event, Outcome.UNAUTHORIZED, 401, {"error": problem})
    data, error = _parse(body)
    if data is None:
        return _finish(event, Outcome.INVALID, 400, error)
    event.event_id = data["event_id"]
    try:
        with transaction.atomic():
            # The line is read once, with its lock (only its own row: not the partner order's,
            # which would make every event of that partner order wait for the others).
            line = (
                OrderLine.objects.select_for_update(of=("self",))
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
        "tracking_number": data["tracking_number"],
        "carrier": data["carrier"],
    }
    change = locked_line_apply_status(
        line=line, to=data["status"], source=LineEvent.Source.WEBHOOK, actor_label=partner.name,
        reason=data["reason"], payload=payload,
        tracking_number=data["tracking_number"], carrier=data["carrier"],
    )
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
