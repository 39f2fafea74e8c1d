"""A sandbox partner pharmacy inside the project, for the demo and the tests.

It speaks the partner protocol of ``docs/partner-api.md`` from the partner's side:

- ``POST /sandbox/partners/<slug>/orders`` takes our order (checks ``Authorization: Bearer
  <partner.api_key>`` and ``Idempotency-Key``; a repeated key returns the same reference).
- ``GET /sandbox/partners/<slug>/orders/<reference>`` (the status call) says where each line is.
- ``POST /sandbox/partners/<slug>/orders/<reference>/lines/<id>/responses`` takes a clinic's answer
  to a hold and releases it (an ``accepted`` webhook for the line follows).
- Over the following minutes it sends webhooks signed the Standard Webhooks way with the
  partner's secrets (real HTTP through ``requests``) to
  ``SANDBOX_WEBHOOK_BASE_URL`` + ``/api/partners/<slug>/events``, one step at a time, each step a
  django-q2 scheduled task (the demo's ``qcluster`` runs them).

The progression of a line is deterministic, by its line id:

==================  =====================================================================
line id             steps (at ``SANDBOX_STEP_DELAYS`` seconds after the order arrived)
==================  =====================================================================
multiple of 7       rejected, with a reason (never charged)
multiple of 11      on_hold (awaiting a prescriber callback) → compounding → shipped → delivered
any other           accepted → compounding → shipped (tracking number, carrier) → delivered
==================  =====================================================================

Tests call :func:`sandbox_play_all` to play every step at once.
"""

from __future__ import annotations

import hmac
import json
import logging
from datetime import timedelta

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from catalog.models import Partner

from .models import OrderLine, SandboxPartnerOrder
from .reasons import ReasonCode
from .webhooks import webhook_headers

log = logging.getLogger(__name__)

LS = OrderLine.Status
STEP_TASK = "fulfillment.tasks.sandbox_play_step"
STEP_COUNT = 4
DEFAULT_STEP_DELAYS = (15, 45, 90, 150)  # seconds after the order arrives, one per step
STEP_RETRY_SECONDS = 15
STEP_MAX_TRIES = 5
REJECT_REASONS = (
    (ReasonCode.LICENSE_UNVERIFIED, "Prescriber's state license could not be verified with the board."),
    (ReasonCode.SIG_UNCLEAR, "SIG is ambiguous: dose and frequency do not match the product strength."),
    (ReasonCode.DOB_MISMATCH, "Patient's date of birth does not match the prescription on file."),
)
HOLD_REASON = (ReasonCode.CLINICAL_QUESTION, "On hold: awaiting a callback from the prescriber to confirm the dose.")
CARRIERS = ("UPS", "FedEx", "USPS")


def sandbox_enabled() -> bool:
    return settings.SANDBOX_PARTNERS


def sandbox_webhook_base_url() -> str:
    return settings.SANDBOX_WEBHOOK_BASE_URL.rstrip("/")


def sandbox_step_delays() -> tuple[int, ...]:
    return tuple(getattr(settings, "SANDBOX_STEP_DELAYS", DEFAULT_STEP_DELAYS))


# --- the partner's side of the order API -------------------------------------------------------


def _order_problem(data) -> str:
    if not isinstance(data, dict):
        return "The order must be a JSON object."
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        return "The order has no lines."
    if not all(isinstance(line, dict) and isinstance(line.get("line_id"), int) for line in lines):
        return "Every line needs an integer line_id."
    return ""


def _authenticated_partner(slug: str, headers) -> tuple[Partner | None, tuple[int, dict] | None]:
    """The sandbox partner ``slug`` if the request carries its Bearer API key, else the refusal."""
    partner = Partner.objects.filter(slug=slug).first() if sandbox_enabled() else None
    if partner is None:
        return None, (404, {"error": "No such sandbox partner."})
    given = headers.get("Authorization", "")
    if not partner.api_key or not hmac.compare_digest(given.encode(), f"Bearer {partner.api_key}".encode()):
        return None, (401, {"error": "Invalid API key."})
    return partner, None


def sandbox_receive_order(*, slug: str, headers, body: bytes) -> tuple[int, dict]:
    """Take one order POST as the sandbox partner ``slug`` would. Returns (status code, JSON)."""
    partner, refusal = _authenticated_partner(slug, headers)
    if refusal:
        return refusal
    key = headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 100:
        return 400, {"error": "An Idempotency-Key header is required."}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return 400, {"error": "The body is not valid JSON."}
    problem = _order_problem(data)
    if problem:
        return 422, {"error": problem}

    existing = SandboxPartnerOrder.objects.filter(partner=partner, idempotency_key=key).first()
    if existing is not None:
        return 200, _order_answer(existing)
    try:
        with transaction.atomic():
            order = SandboxPartnerOrder.objects.create(partner=partner, idempotency_key=key, payload=data)
            order.reference = f"SBX-{slug[:6].upper()}-{order.pk:06d}"
            order.save(update_fields=["reference"])
            transaction.on_commit(lambda: _schedule_steps(order.pk))
    except IntegrityError:  # the same key, concurrently
        return 200, _order_answer(SandboxPartnerOrder.objects.get(partner=partner, idempotency_key=key))
    return 201, _order_answer(order)


def sandbox_lookup_order(*, slug: str, headers, idempotency_key: str) -> tuple[int, dict]:
    """``GET /orders?idempotency_key=…``: the sandbox's answer to the order it received under that
    key, or 404."""
    partner, refusal = _authenticated_partner(slug, headers)
    if refusal:
        return refusal
    order = SandboxPartnerOrder.objects.filter(partner=partner, idempotency_key=idempotency_key.strip()).first()
    if order is None:
        return 404, {"error": "No order with this idempotency key."}
    return 200, _order_answer(order)


def sandbox_order_status(*, slug: str, headers, reference: str) -> tuple[int, dict]:
    """``GET /orders/{reference}`` (the status call): where each line of the order is after the
    steps played so far ("received" before its first step)."""
    partner, refusal = _authenticated_partner(slug, headers)
    if refusal:
        return refusal
    order = SandboxPartnerOrder.objects.filter(partner=partner, reference=reference).first()
    if order is None:
        return 404, {"error": f"No order {reference}."}
    cancelled = set(order.payload.get("cancelled_line_ids", []))
    lines = []
    for line in order.payload.get("lines", []):
        line_id = line["line_id"]
        state = {"status": "received"}
        if line_id in cancelled:
            state = {"status": LS.CANCELLED, "reason": "Cancelled at the clinic's request.", "reason_code": ReasonCode.OTHER}
        else:
            played = [event for event in sandbox_line_events(line_id=line_id, reference=order.reference)[:order.steps_played] if event]
            state = played[-1] if played else state
        lines.append({"line_id": line_id, "updated_at": timezone.now().isoformat(), **state})
    return 200, {"reference": order.reference, "lines": lines}


def _order_answer(order: SandboxPartnerOrder) -> dict:
    return {
        "reference": order.reference,
        "lines": [{"line_id": line["line_id"], "status": "received"} for line in order.payload.get("lines", [])],
    }


def _schedule_steps(sandbox_order_id: int) -> None:
    from django_q.models import Schedule
    from django_q.tasks import schedule

    now = timezone.now()
    for step, delay in zip(range(STEP_COUNT), sandbox_step_delays()):
        schedule(
            STEP_TASK, sandbox_order_id, step, schedule_type=Schedule.ONCE, repeats=-1,
            next_run=now + timedelta(seconds=delay), name=f"sandbox order {sandbox_order_id} step {step + 1}",
        )


SHIP_STEP = 2  # the step at which a line ships (see sandbox_line_events)


def sandbox_cancel_line(*, slug: str, reference: str, line_id: int, headers) -> tuple[int, dict]:
    """``POST /sandbox/partners/<slug>/orders/<reference>/lines/<line_id>/cancel``: the sandbox
    cancels a line it has not shipped (or rejected) yet, at once (200)."""
    partner, refusal = _authenticated_partner(slug, headers)
    if refusal:
        return refusal
    with transaction.atomic():
        order = (
            SandboxPartnerOrder.objects.select_for_update(no_key=True)
            .filter(partner=partner, reference=reference).first()
        )
        if order is None or line_id not in {line["line_id"] for line in order.payload.get("lines", [])}:
            return 404, {"error": f"No line {line_id} in order {reference}."}
        cancelled = set(order.payload.get("cancelled_line_ids", []))
        if line_id not in cancelled:
            plan = sandbox_line_events(line_id=line_id, reference=order.reference)
            if plan[0] and plan[0]["status"] == LS.REJECTED and order.steps_played > 0:
                return 409, {"error": "The line was already rejected."}
            if order.steps_played > SHIP_STEP:
                return 409, {"error": "The line has already shipped; it can no longer be cancelled."}
            order.payload = {**order.payload, "cancelled_line_ids": sorted(cancelled | {line_id})}
            order.save(update_fields=["payload"])
    return 200, {"line_id": line_id, "status": "cancelled"}


def sandbox_answer_hold(*, slug: str, reference: str, line_id: int, headers, read_answer) -> tuple[int, dict]:
    """``POST /sandbox/partners/<slug>/orders/<reference>/lines/<line_id>/responses``: the sandbox
    takes a clinic's answer to a hold (text and/or a file), keeps a note of it, and releases the
    hold: an ``accepted`` webhook for the line follows (a django-q2 task). ``read_answer()``
    parses the body into (text, file), once the API key is checked; it raises ValueError for a
    body that is not multipart/form-data."""
    from django_q.tasks import async_task

    partner, refusal = _authenticated_partner(slug, headers)
    if refusal:
        return refusal
    if not headers.get("Idempotency-Key"):
        return 400, {"error": "An Idempotency-Key header is required."}
    try:
        text, file = read_answer()
    except ValueError:
        return 415, {"error": "Send the answer as multipart/form-data."}
    if not (text or "").strip() and file is None:
        return 422, {"error": "An answer needs a text or a file."}
    with transaction.atomic():
        order = (
            SandboxPartnerOrder.objects.select_for_update(no_key=True)
            .filter(partner=partner, reference=reference).first()
        )
        if order is None or line_id not in {line["line_id"] for line in order.payload.get("lines", [])}:
            return 404, {"error": f"No line {line_id} in order {reference}."}
        answers = [*order.payload.get("answers", []), {"line_id": line_id, "text": (text or "")[:200],
                                                        "file": getattr(file, "name", ""), "size": getattr(file, "size", 0)}]
        order.payload = {**order.payload, "answers": answers}
        order.save(update_fields=["payload"])
        number = len(answers)
        transaction.on_commit(lambda: async_task("fulfillment.tasks.sandbox_release_hold", order.pk, line_id, number))
    return 201, {"id": f"{reference}-{line_id}-answer-{number}", "status": "received"}


def sandbox_release_hold(*, sandbox_order_id: int, line_id: int, number: int) -> int | None:
    """The sandbox pharmacy read the clinic's answer: the line is accepted (its webhook sent)."""
    order = SandboxPartnerOrder.objects.select_related("partner").filter(pk=sandbox_order_id).first()
    if order is None:
        return None
    event = {"event_id": f"{order.reference}-{line_id}-released-{number}", "occurred_at": timezone.now().isoformat(),
             "line_id": line_id, "status": LS.ACCEPTED, "reason": "Thank you: the answer resolves the hold.",
             "reason_code": "", "tracking_number": "", "carrier": ""}
    return sandbox_send_event(partner=order.partner, event=event)


# --- the progression ---------------------------------------------------------------------------


def sandbox_line_events(*, line_id: int, reference: str) -> list[dict | None]:
    """What the sandbox reports for a line at each step (None: nothing at that step)."""
    if line_id % 7 == 0:
        code, reason = REJECT_REASONS[line_id % len(REJECT_REASONS)]
        return [{"status": LS.REJECTED, "reason_code": code, "reason": reason}, None, None, None]
    carrier = CARRIERS[line_id % len(CARRIERS)]
    shipped = {"status": LS.SHIPPED, "tracking_number": f"SBX{reference[-6:]}{line_id:08d}", "carrier": carrier}
    if line_id % 11 == 0:
        first = {"status": LS.ON_HOLD, "reason_code": HOLD_REASON[0], "reason": HOLD_REASON[1]}
    else:
        first = {"status": LS.ACCEPTED}
    return [first, {"status": LS.COMPOUNDING}, shipped, {"status": LS.DELIVERED}]


def _events(order: SandboxPartnerOrder, step: int) -> list[dict]:
    events = []
    cancelled = set(order.payload.get("cancelled_line_ids", []))
    for line in order.payload.get("lines", []):
        if line["line_id"] in cancelled:
            continue
        plan = sandbox_line_events(line_id=line["line_id"], reference=order.reference)
        event = plan[step] if step < len(plan) else None
        if event is not None:
            events.append({
                "event_id": f"{order.reference}-{line['line_id']}-{event['status']}",
                "occurred_at": timezone.now().isoformat(),
                "line_id": line["line_id"],
                "reason": "",
                "reason_code": "",
                "tracking_number": "",
                "carrier": "",
                **event,
            })
    return events


def sandbox_send_event(*, partner: Partner, event: dict) -> int | None:
    """POST one signed event to our webhook endpoint; the HTTP status, or None if unreachable."""
    body = json.dumps(event).encode()
    url = sandbox_webhook_base_url() + reverse("fulfillment:partner-events", kwargs={"slug": partner.slug})
    if not partner.webhook_secrets:
        log.warning("sandbox %s: no webhook secret to sign %s with", partner.slug, event["event_id"])
        return None
    # Standard Webhooks, signed with every secret the partner holds: during a rotation (a next
    # secret is set) each event carries two signatures, as a real partner's would.
    headers = webhook_headers(secret=partner.webhook_secrets, body=body, msg_id=event["event_id"])
    try:
        response = requests.post(url, data=body, headers=headers, timeout=(5, 20))
    except requests.RequestException as exc:
        log.warning("sandbox %s: could not deliver %s: %s", partner.slug, event["event_id"], exc)
        return None
    if response.status_code >= 300:
        log.warning("sandbox %s: %s answered %s: %s", partner.slug, event["event_id"], response.status_code, response.text[:200])
    return response.status_code


def sandbox_play_step(*, sandbox_order_id: int, step: int, attempt: int = 1) -> int:
    """Send the webhooks of one step. Safe to run twice (event ids are stable, so our endpoint
    acknowledges a repeat without applying it). Events our endpoint could not take yet (409, 5xx,
    unreachable) are tried again a little later, up to ``STEP_MAX_TRIES``. Returns how many
    events were delivered."""
    order = SandboxPartnerOrder.objects.select_related("partner").filter(pk=sandbox_order_id).first()
    if order is None:
        return 0
    delivered, retry = 0, False
    # A partner configured without webhooks only moves its lines on: we learn it by polling.
    events = _events(order, step) if order.partner.sends_webhooks else []
    for event in events:
        status = sandbox_send_event(partner=order.partner, event=event)
        if status is not None and status < 300:
            delivered += 1
        elif status is None or status == 409 or status >= 500:
            retry = True
    SandboxPartnerOrder.objects.filter(pk=order.pk, steps_played__lt=step + 1).update(steps_played=step + 1)
    if retry and attempt < STEP_MAX_TRIES:
        from django_q.models import Schedule
        from django_q.tasks import schedule

        schedule(
            STEP_TASK, order.pk, step, attempt + 1, schedule_type=Schedule.ONCE, repeats=-1,
            next_run=timezone.now() + timedelta(seconds=STEP_RETRY_SECONDS),
        )
    return delivered


def sandbox_play_all(*, sandbox_order_id: int) -> int:
    """Play every step now, in order (tests, or a demo in a hurry)."""
    return sum(sandbox_play_step(sandbox_order_id=sandbox_order_id, step=step) for step in range(STEP_COUNT))
