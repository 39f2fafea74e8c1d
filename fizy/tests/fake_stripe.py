"""A tiny stand-in for the few Stripe endpoints Fizy uses, served over real HTTP on 127.0.0.1.

The real ``stripe`` library talks to it (``settings.STRIPE_API_BASE``), so the tests exercise the
library's request encoding, error classes and idempotency headers. It keeps PaymentIntents in
memory, records every request, and keeps Stripe's hard rules (a fake kinder than Stripe hides bugs):

- **Idempotency**: the first response to an ``Idempotency-Key`` (status and body, as they were
  then) is saved and replayed, with ``Idempotent-Replayed: true``, for every later request with
  that key — even when the PaymentIntent has changed since. The same key with other parameters
  is a 400 ``idempotency_error``. 5xx answers are not saved (Stripe lets the retry run).
- **Authorizations expire**: an uncaptured PaymentIntent older than ``expire_after`` seconds (7
  days, like a card authorization) becomes ``canceled`` with ``cancellation_reason=automatic``,
  and a ``payment_intent.canceled`` event is queued in ``events``. The fake's clock is
  ``time.time() + offset``: ``advance(seconds)`` moves it.
- **Capture once**: a PaymentIntent is captured at most once (no multicapture); capturing less
  than authorized releases the rest. Refunds never exceed what was received minus refunded.

Test payment methods (named like Stripe's own test cards):
- ``pm_card_visa``: authorizes.
- ``pm_card_visa_chargeDeclinedInsufficientFunds``: declined, insufficient funds (card 9995).
- ``pm_card_authenticationRequired``: declined off-session, authentication required (card 3184).
- ``pm_card_threeDSecureRequired``: the intent ends in ``requires_action``.
"""

import copy
import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

WEBHOOK_SECRET = "whsec_test_fizy"

CARDS = {
    "pm_card_visa": {"brand": "visa", "last4": "4242"},
    "pm_card_visa_chargeDeclinedInsufficientFunds": {"brand": "visa", "last4": "9995"},
    "pm_card_authenticationRequired": {"brand": "visa", "last4": "3184"},
    "pm_card_threeDSecureRequired": {"brand": "visa", "last4": "3063"},
}
DECLINES = {
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "pm_card_authenticationRequired": (
        "authentication_required", "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
}


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header, built the way Stripe documents it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def payment_method(pm_id: str) -> dict:
    card = CARDS.get(pm_id, {"brand": "visa", "last4": "4242"})
    return {"id": pm_id, "object": "payment_method", "type": "card",
            "card": {**card, "exp_month": 8, "exp_year": 2031, "country": "US"}}


AUTHORIZATION_LIFE = 7 * 24 * 3600


class FakeStripe:
    def __init__(self):
        self.requests: list[dict] = []
        self.intents: dict[str, dict] = {}
        self.setup_intents: dict[str, dict] = {}
        self.events: list[dict] = []  # what Stripe would send to the webhook endpoint
        self.fail_next: list[int] = []  # HTTP statuses to answer the next requests with
        self.expire_after = AUTHORIZATION_LIFE
        self.offset = 0.0
        # Faults: answer nothing to the next N requests after doing them (the client sees the
        # connection drop and retries with the same key); call on_replay(object id) before a replay.
        self.drop_next_responses = 0
        self.on_replay = None
        self._ids = itertools.count(1)
        self._replays: dict[str, tuple[dict, int, dict]] = {}
        self._lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def confirm_setup_intent(self, setup_intent_id: str, payment_method_id: str = "pm_card_visa") -> None:
        """What Stripe.js does in the browser when the admin submits the card form."""
        self.setup_intents[setup_intent_id].update(status="succeeded", payment_method=payment_method_id)

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock (and expire what is due)."""
        with self._lock:
            self.offset += seconds
            self._expire_due()

    def expire(self, intent_id: str) -> dict:
        """Stripe releases this authorization now (as it does after about 7 days). Returns the event.
        (Also usable as ``on_replay``: the server's lock is re-entrant.)"""
        with self._lock:
            return self._cancel_automatically(self.intents[intent_id])

    def _expire_due(self) -> None:
        for pi in self.intents.values():
            if pi["status"] == "requires_capture" and self.now() - pi["created"] >= self.expire_after:
                self._cancel_automatically(pi)

    def _cancel_automatically(self, pi: dict) -> dict:
        pi.update(status="canceled", amount_capturable=0, cancellation_reason="automatic", canceled_at=int(self.now()))
        event = {"id": self._id("evt"), "object": "event", "type": "payment_intent.canceled",
                 "api_version": "2026-10-28.endive", "created": int(self.now()), "livemode": False,
                 "data": {"object": copy.deepcopy(pi)}}
        self.events.append(event)
        return event

    def event_delivery(self, event: dict) -> tuple[str, str]:
        """(body, Stripe-Signature) to POST an event to the webhook endpoint."""
        body = json.dumps(event)
        return body, sign(body)

    def posts(self, path_prefix: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"].startswith(path_prefix)]

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):04d}"

    # --- endpoints ---

    def handle(self, method: str, path: str, form: dict, headers: dict) -> tuple[int, dict, dict]:
        """(status, body, extra headers) for one request."""
        if self.fail_next:
            error = {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}}
            return self.fail_next.pop(0), error, {}
        self._expire_due()
        key = headers.get("idempotency-key")
        if method == "POST" and key:
            request = {"path": path, "form": form}
            if key in self._replays:
                first, status, body = self._replays[key]
                if first != request:
                    return 400, {"error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters they were "
                                   f"first used with. Try using a key other than '{key}' if you meant to execute a "
                                   "different request.",
                    }}, {}
                if self.on_replay and isinstance(body, dict) and body.get("id"):
                    self.on_replay(body["id"])
                return status, copy.deepcopy(body), {"Idempotent-Replayed": "true"}
            status, body = self._route(method, path, form)
            if status < 500:
                self._replays[key] = (request, status, copy.deepcopy(body))
            return status, body, {}
        status, body = self._route(method, path, form)
        return status, body, {}

    def _route(self, method, path, form):
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        if parts == ["customers"] and method == "POST":
            return 200, {"id": self._id("cus"), "object": "customer", "name": form.get("name"), "email": form.get("email")}
        if parts == ["setup_intents"] and method == "POST":
            si_id = self._id("seti")
            si = {"id": si_id, "object": "setup_intent", "customer": form.get("customer"), "usage": form.get("usage"),
                  "client_secret": f"{si_id}_secret_fake", "status": "requires_payment_method", "payment_method": None}
            self.setup_intents[si_id] = si
            return 200, si
        if len(parts) == 2 and parts[0] == "setup_intents" and method == "GET":
            si = self.setup_intents.get(parts[1])
            if si is None:
                return self._missing(parts[1])
            return 200, {**si, "payment_method": payment_method(si["payment_method"]) if si["payment_method"] else None}
        if parts == ["payment_intents"] and method == "POST":
            return self._create_intent(form)
        if len(parts) >= 2 and parts[0] == "payment_intents":
            pi = self.intents.get(parts[1])
            if pi is None:
                return self._missing(parts[1])
            action = parts[2] if len(parts) > 2 else None
            if action is None and method == "GET":
                return 200, pi
            if action == "capture":
                return self._capture(pi, form)
            if action == "cancel":
                if pi["status"] not in ("requires_capture", "requires_payment_method", "requires_action"):
                    return self._unexpected(pi, "cancel")
                pi.update(status="canceled", amount_capturable=0, cancellation_reason=form.get("cancellation_reason"))
                return 200, pi
        if parts == ["refunds"] and method == "POST":
            pi = self.intents.get(form.get("payment_intent", ""))
            if pi is None or pi["status"] != "succeeded":
                return 400, {"error": {"type": "invalid_request_error", "code": "charge_not_refundable",
                                       "message": "This PaymentIntent has no successful charge to refund."}}
            refundable = pi["amount_received"] - pi.get("amount_refunded", 0)
            amount = int(form.get("amount") or refundable)
            if amount > refundable:
                return 400, {"error": {"type": "invalid_request_error", "code": "amount_too_large", "param": "amount",
                                       "message": f"Refund amount ({amount}) is greater than unrefunded amount on "
                                                  f"charge ({refundable})."}}
            pi["amount_refunded"] = pi.get("amount_refunded", 0) + amount
            return 200, {"id": self._id("re"), "object": "refund", "amount": amount, "currency": pi["currency"],
                         "payment_intent": pi["id"], "status": "succeeded"}
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({method}: {path})."}}

    def _create_intent(self, form):
        pm = form.get("payment_method", "")
        pi = {
            "id": self._id("pi"), "object": "payment_intent", "amount": int(form["amount"]), "currency": form["currency"],
            "customer": form.get("customer"), "payment_method": pm, "capture_method": form.get("capture_method"),
            "description": form.get("description"), "amount_capturable": 0, "amount_received": 0,
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "status": "requires_capture", "last_payment_error": None, "created": int(self.now()),
            "cancellation_reason": None, "amount_refunded": 0,
        }
        self.intents[pi["id"]] = pi
        if pm in DECLINES:
            code, decline_code, message = DECLINES[pm]
            error = {"type": "card_error", "code": code, "decline_code": decline_code, "message": message,
                     "payment_method": payment_method(pm)}
            pi.update(status="requires_payment_method", last_payment_error=error)
            return 402, {"error": {**error, "payment_intent": pi}}
        if pm == "pm_card_threeDSecureRequired":
            pi.update(status="requires_action", next_action={"type": "use_stripe_sdk"})
            return 200, pi
        if form.get("capture_method") == "automatic":
            pi.update(status="succeeded", amount_received=pi["amount"])
            return 200, pi
        pi["amount_capturable"] = pi["amount"]
        return 200, pi

    def _capture(self, pi, form):
        if pi["status"] != "requires_capture":
            return self._unexpected(pi, "capture")
        amount = int(form.get("amount_to_capture") or pi["amount_capturable"])
        if amount > pi["amount_capturable"]:
            return 400, {"error": {"type": "invalid_request_error", "code": "amount_too_large", "param": "amount_to_capture",
                                   "message": "The amount to capture is greater than the amount capturable."}}
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return 200, pi

    @staticmethod
    def _missing(object_id):
        return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                               "message": f"No such object: '{object_id}'"}}

    @staticmethod
    def _unexpected(pi, action):
        return 400, {"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                               "message": f"This PaymentIntent could not be {action}d because it has a status of {pi['status']}.",
                               "payment_intent": pi}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                form = dict(parse_qsl(body or url.query, keep_blank_values=True))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append({"method": self.command, "path": url.path, "form": form, "headers": headers})
                    status, payload, extra = fake.handle(self.command, url.path, form, headers)
                    drop = fake.drop_next_responses > 0
                    if drop:
                        fake.drop_next_responses -= 1
                if drop:  # done, but the answer is lost on the wire
                    self.close_connection = True
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake")
                for name, value in extra.items():
                    self.send_header(name, value)
                if status >= 500:
                    self.send_header("Stripe-Should-Retry", "false")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def fake_stripe(settings):
    """Stripe mode, with the client pointed at a fresh fake server."""
    fake = FakeStripe().start()
    settings.PAYMENT_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_fizy_fake"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_fizy_fake"
    settings.STRIPE_API_BASE = fake.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    yield fake
    fake.stop()
