"""The payment gateway: one interface, two implementations.

``StripeGateway`` talks to Stripe through the official ``stripe`` library; ``SandboxGateway``
needs no keys and answers the same way for the demo and the tests. :func:`get_gateway` picks one
from ``settings.PAYMENT_GATEWAY``.

Domain-free: amounts, references and card details only. Which order a payment belongs to, and
whether an amount is right for it, is the services' business, not the gateway's.

Every write takes an ``idempotency_key``: the same key always yields the same result (Stripe
replays its first answer; the sandbox derives its references from the key).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")

# PaymentIntent statuses (Stripe's words, shared by the sandbox).
REQUIRES_CAPTURE = "requires_capture"
SUCCEEDED = "succeeded"
CANCELED = "canceled"
REQUIRES_PAYMENT_METHOD = "requires_payment_method"
REQUIRES_ACTION = "requires_action"

AUTHORIZED_STATUSES = (REQUIRES_CAPTURE, SUCCEEDED)

UPDATE_CARD = "Ask your clinic admin to update the card on the Billing page, then place the order again."

DECLINE_REASONS = {
    "insufficient_funds": "insufficient funds",
    "card_velocity_exceeded": "the card's spending limit was reached",
    "withdrawal_count_limit_exceeded": "the card's spending limit was reached",
    "expired_card": "the card has expired",
    "incorrect_cvc": "the security code is wrong",
    "incorrect_number": "the card number is wrong",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "pickup_card": "the card cannot be used",
    "restricted_card": "the card cannot be used",
    "fraudulent": "the bank suspects fraud",
    "do_not_honor": "the bank gave no reason",
    "generic_decline": "the bank gave no reason",
    "card_not_supported": "the card does not support this kind of purchase",
    "currency_not_supported": "the card does not support US dollars",
    "processing_error": "an error at the bank; trying again in a few minutes may work",
    "try_again_later": "a temporary problem at the bank; trying again in a few minutes may work",
}


def to_cents(amount: Decimal) -> int:
    """Dollars (Decimal) to integer cents, as Stripe wants them."""
    return int((Decimal(amount) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def from_cents(cents: int | None) -> Decimal:
    return (Decimal(cents or 0) / 100).quantize(CENT)


class PaymentError(Exception):
    """The gateway itself failed (network, 5xx, bad keys, an unexpected state): not a decline.

    ``message`` is readable by a coordinator; ``code`` is the gateway's code when it gave one."""

    def __init__(self, message: str, *, code: str = "", retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class Authorization:
    """The outcome of authorizing an amount. ``ok`` False is a decline, with a readable message."""

    ok: bool
    reference: str
    status: str
    amount: Decimal
    decline_code: str = ""
    message: str = ""


@dataclass(frozen=True)
class PaymentState:
    """A payment (PaymentIntent) as the gateway sees it now: after a capture, a cancel, a retrieve."""

    reference: str
    status: str
    amount: Decimal
    amount_capturable: Decimal = Decimal("0.00")
    amount_received: Decimal = Decimal("0.00")
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Refund:
    reference: str
    payment_reference: str
    amount: Decimal
    status: str


@dataclass(frozen=True)
class CardDetails:
    """The card a clinic admin saved through a SetupIntent."""

    payment_method_id: str
    brand: str
    last4: str
    exp: str  # MM/YYYY
    customer_id: str = ""


class Gateway(Protocol):
    name: str

    def ensure_customer(self, *, name: str, email: str, metadata: dict, idempotency_key: str = "") -> str: ...

    def create_setup_intent(self, *, customer_id: str) -> tuple[str, str]: ...

    def attach_result(self, *, setup_intent_id: str) -> CardDetails: ...

    def authorize(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization: ...

    def capture(self, *, reference: str, amount: Decimal, idempotency_key: str) -> PaymentState: ...

    def cancel(self, *, reference: str, idempotency_key: str) -> PaymentState: ...

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> Refund: ...

    def retrieve(self, *, reference: str) -> PaymentState: ...


def _card_words(last4: str) -> str:
    return f"The card ending {last4}" if last4 else "The clinic's card"


def decline_message(*, code: str, decline_code: str, last4: str) -> str:
    """A sentence a coordinator understands, for a card the bank refused."""
    if code == "authentication_required" or decline_code == "authentication_required" or code == REQUIRES_ACTION:
        return (
            f"{_card_words(last4)} needs the cardholder to confirm each payment with their bank "
            f"(authentication required), which cannot happen while you order for patients. {UPDATE_CARD}"
        )
    reason = DECLINE_REASONS.get(decline_code) or DECLINE_REASONS.get(code) or "the bank gave no reason"
    return f"{_card_words(last4)} was declined by the bank ({reason}). {UPDATE_CARD}"


# --- Stripe -----------------------------------------------------------------------------------


def _get(obj, *path, default=None):
    """Walk dicts and StripeObjects alike; ``default`` when a step is missing or None."""
    for key in path:
        if obj is None:
            return default
        try:
            obj = obj[key]
        except (KeyError, TypeError, IndexError):
            return default
    return default if obj is None else obj


def _plain(obj) -> dict:
    """A Stripe response as plain dicts and lists (StripeObject is no longer a Mapping)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


class StripeGateway:
    """Stripe PaymentIntents with manual capture, confirmed off-session with a saved card."""

    name = "stripe"

    def __init__(self, *, api_key: str, api_base: str = "", max_network_retries: int = 2):
        import stripe

        if not api_key:
            raise PaymentError("Card payments are not configured (no Stripe secret key).", code="not_configured")
        base = {"api": api_base.rstrip("/")} if api_base else None
        self._stripe = stripe
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=max_network_retries)

    def _error(self, exc, action: str) -> PaymentError:
        stripe = self._stripe
        retryable = isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError))
        if isinstance(exc, stripe.APIConnectionError):
            text = f"Fizy could not reach Stripe to {action}. Nothing was charged twice; try again in a minute."
        elif isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            text = f"Stripe refused Fizy's credentials while trying to {action}. Contact Fizy support."
        else:
            detail = getattr(exc, "user_message", None) or getattr(exc, "_message", None) or str(exc)
            text = f"Stripe could not {action}: {detail}"
        logger.warning("stripe error during %s: %r", action, exc)
        return PaymentError(text, code=getattr(exc, "code", "") or "", retryable=retryable)

    @staticmethod
    def _state(pi) -> PaymentState:
        pi = _plain(pi)
        return PaymentState(
            reference=pi["id"],
            status=pi["status"],
            amount=from_cents(_get(pi, "amount", default=0)),
            amount_capturable=from_cents(_get(pi, "amount_capturable", default=0)),
            amount_received=from_cents(_get(pi, "amount_received", default=0)),
            metadata=dict(_get(pi, "metadata", default={}) or {}),
        )

    def ensure_customer(self, *, name: str, email: str, metadata: dict, idempotency_key: str = "") -> str:
        params = {"name": name, "metadata": {k: str(v) for k, v in metadata.items()}}
        if email:
            params["email"] = email
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        try:
            return self.client.v1.customers.create(params=params, options=options)["id"]
        except self._stripe.StripeError as exc:
            raise self._error(exc, "create the clinic's billing profile") from exc

    def create_setup_intent(self, *, customer_id: str) -> tuple[str, str]:
        params = {"customer": customer_id, "usage": "off_session", "payment_method_types": ["card"]}
        try:
            si = self.client.v1.setup_intents.create(params=params)
        except self._stripe.StripeError as exc:
            raise self._error(exc, "start saving a card") from exc
        return si["id"], si["client_secret"]

    def attach_result(self, *, setup_intent_id: str) -> CardDetails:
        try:
            si = _plain(self.client.v1.setup_intents.retrieve(setup_intent_id, params={"expand": ["payment_method"]}))
        except self._stripe.StripeError as exc:
            raise self._error(exc, "read the saved card") from exc
        if si["status"] != SUCCEEDED:
            raise PaymentError(
                f"The card was not saved: the bank has not confirmed it yet ({si['status']}). Try again.",
                code=si["status"],
            )
        pm = si["payment_method"]
        customer = si["customer"]
        card = _get(pm, "card", default={})
        return CardDetails(
            payment_method_id=pm if isinstance(pm, str) else pm["id"],
            brand=_get(card, "brand", default=""),
            last4=_get(card, "last4", default=""),
            exp=f"{int(_get(card, 'exp_month', default=0)):02d}/{_get(card, 'exp_year', default='')}",
            customer_id=customer if isinstance(customer, str) else _get(customer, "id", default=""),
        )

    def authorize(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization:
        stripe = self._stripe
        params = {
            "amount": to_cents(amount),
            "currency": currency,
            "customer": customer_id,
            "payment_method": payment_method_id,
            "payment_method_types": ["card"],
            "capture_method": "manual",
            "confirm": True,
            "off_session": True,
            "description": description,
            "metadata": {k: str(v) for k, v in (metadata or {}).items()},
        }
        try:
            pi = _plain(
                self.client.v1.payment_intents.create(params=params, options={"idempotency_key": idempotency_key})
            )
        except stripe.CardError as exc:
            error = _get(exc.json_body, "error", default={})
            code = exc.code or _get(error, "code", default="")
            decline_code = _get(error, "decline_code", default="") or code
            return Authorization(
                ok=False,
                reference=_get(error, "payment_intent", "id", default=""),
                status=_get(error, "payment_intent", "status", default=REQUIRES_PAYMENT_METHOD),
                amount=Decimal(amount).quantize(CENT),
                decline_code=decline_code,
                message=decline_message(
                    code=code, decline_code=decline_code,
                    last4=_get(error, "payment_method", "card", "last4", default=""),
                ),
            )
        except stripe.StripeError as exc:
            raise self._error(exc, "authorize the payment") from exc
        state = self._state(pi)
        if state.status in AUTHORIZED_STATUSES:
            return Authorization(ok=True, reference=state.reference, status=state.status, amount=state.amount)
        # requires_action (3-D Secure) or a failed confirmation: not a usable authorization.
        last_error = _get(pi, "last_payment_error", default={})
        code = _get(last_error, "code", default="") or state.status
        decline_code = _get(last_error, "decline_code", default="") or code
        return Authorization(
            ok=False, reference=state.reference, status=state.status, amount=state.amount,
            decline_code=decline_code,
            message=decline_message(
                code=code, decline_code=decline_code,
                last4=_get(last_error, "payment_method", "card", "last4", default=""),
            ),
        )

    def capture(self, *, reference: str, amount: Decimal, idempotency_key: str) -> PaymentState:
        try:
            pi = self.client.v1.payment_intents.capture(
                reference, params={"amount_to_capture": to_cents(amount)},
                options={"idempotency_key": idempotency_key},
            )
        except self._stripe.StripeError as exc:
            raise self._error(exc, "capture the payment") from exc
        return self._state(pi)

    def cancel(self, *, reference: str, idempotency_key: str) -> PaymentState:
        try:
            pi = self.client.v1.payment_intents.cancel(reference, options={"idempotency_key": idempotency_key})
        except self._stripe.StripeError as exc:
            raise self._error(exc, "cancel the authorization") from exc
        return self._state(pi)

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> Refund:
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": reference, "amount": to_cents(amount)},
                options={"idempotency_key": idempotency_key},
            )
        except self._stripe.StripeError as exc:
            raise self._error(exc, "refund the payment") from exc
        return Refund(
            reference=refund["id"], payment_reference=reference,
            amount=from_cents(refund["amount"]), status=refund["status"],
        )

    def retrieve(self, *, reference: str) -> PaymentState:
        try:
            return self._state(self.client.v1.payment_intents.retrieve(reference))
        except self._stripe.StripeError as exc:
            raise self._error(exc, "read the payment") from exc


# --- Sandbox ----------------------------------------------------------------------------------

SANDBOX_CARDS = {
    "pm_sandbox_visa": CardDetails("pm_sandbox_visa", "visa", "4242", "12/2034"),
    "pm_sandbox_declined": CardDetails("pm_sandbox_declined", "visa", "0002", "12/2034"),
    "pm_sandbox_auth_required": CardDetails("pm_sandbox_auth_required", "visa", "3155", "12/2034"),
}
SANDBOX_CARD_LABELS = {
    "pm_sandbox_visa": "Visa ending 4242 — approves",
    "pm_sandbox_declined": "Visa ending 0002 — declined (insufficient funds)",
    "pm_sandbox_auth_required": "Visa ending 3155 — needs authentication",
}
SANDBOX_DECLINES = {
    "pm_sandbox_declined": ("card_declined", "insufficient_funds"),
    "pm_sandbox_auth_required": ("authentication_required", "authentication_required"),
}
_SETUP_PREFIX = "seti_sandbox"


def _digest(*parts: str, size: int = 24) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:size]


class SandboxGateway:
    """A stateless stand-in for Stripe: no keys, no network, the same result shapes.

    References are derived from the idempotency key, so a repeated call returns the same
    reference. The sandbox keeps no balance: it approves any capture up to the amount given."""

    name = "sandbox"

    def ensure_customer(self, *, name: str, email: str, metadata: dict, idempotency_key: str = "") -> str:
        return "cus_sandbox_" + _digest(idempotency_key or name, email, repr(sorted(metadata.items())), size=14)

    def create_setup_intent(self, *, customer_id: str) -> tuple[str, str]:
        # The customer travels inside the id (the sandbox remembers nothing).
        setup_intent_id = f"{_SETUP_PREFIX}.{customer_id}.{_digest(customer_id, size=10)}"
        return setup_intent_id, f"{setup_intent_id}_secret_{_digest(setup_intent_id, size=16)}"

    @staticmethod
    def card_choices(*, setup_intent_id: str) -> list[tuple[str, str]]:
        """(value, label) for each sandbox test card: the value is the setup intent as the
        browser would confirm it with that card; post it back to :meth:`attach_result`."""
        return [(f"{setup_intent_id}:{pm}", label) for pm, label in SANDBOX_CARD_LABELS.items()]

    def attach_result(self, *, setup_intent_id: str) -> CardDetails:
        base, _, payment_method = setup_intent_id.partition(":")
        prefix, _, rest = base.partition(".")
        customer_id = rest.rpartition(".")[0]
        if prefix != _SETUP_PREFIX or not customer_id:
            raise PaymentError("The card was not saved: this card setup is unknown. Start again.", code="resource_missing")
        card = SANDBOX_CARDS.get(payment_method or "pm_sandbox_visa")
        if card is None:
            raise PaymentError("The card was not saved: unknown sandbox test card.", code="resource_missing")
        return CardDetails(card.payment_method_id, card.brand, card.last4, card.exp, customer_id=customer_id)

    @staticmethod
    def _reference(idempotency_key: str) -> str:
        return "pi_sandbox_" + _digest("authorize", idempotency_key)

    def authorize(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization:
        amount = Decimal(amount).quantize(CENT)
        reference = self._reference(idempotency_key)
        if payment_method_id in SANDBOX_DECLINES:
            code, decline_code = SANDBOX_DECLINES[payment_method_id]
            return Authorization(
                ok=False, reference=reference, status=REQUIRES_PAYMENT_METHOD, amount=amount,
                decline_code=decline_code,
                message=decline_message(
                    code=code, decline_code=decline_code, last4=SANDBOX_CARDS[payment_method_id].last4
                ),
            )
        if payment_method_id not in SANDBOX_CARDS:
            raise PaymentError("The saved card is unknown to the sandbox. Ask your clinic admin to set it up again.")
        return Authorization(ok=True, reference=reference, status=REQUIRES_CAPTURE, amount=amount)

    def capture(self, *, reference: str, amount: Decimal, idempotency_key: str) -> PaymentState:
        amount = Decimal(amount).quantize(CENT)
        return PaymentState(reference=reference, status=SUCCEEDED, amount=amount, amount_received=amount)

    def cancel(self, *, reference: str, idempotency_key: str) -> PaymentState:
        return PaymentState(reference=reference, status=CANCELED, amount=Decimal("0.00"))

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> Refund:
        return Refund(
            reference="re_sandbox_" + _digest("refund", idempotency_key), payment_reference=reference,
            amount=Decimal(amount).quantize(CENT), status=SUCCEEDED,
        )

    def retrieve(self, *, reference: str) -> PaymentState:
        # Stateless: the sandbox can only say the authorization is still open.
        return PaymentState(reference=reference, status=REQUIRES_CAPTURE, amount=Decimal("0.00"))


def get_gateway() -> Gateway:
    """The gateway that ``settings.PAYMENT_GATEWAY`` names: "stripe" or "sandbox"."""
    name = getattr(settings, "PAYMENT_GATEWAY", "sandbox")
    if name == "stripe":
        return StripeGateway(api_key=settings.STRIPE_SECRET_KEY, api_base=getattr(settings, "STRIPE_API_BASE", ""))
    if name == "sandbox":
        return SandboxGateway()
    raise PaymentError(f"Unknown payment gateway {name!r}; set PAYMENT_GATEWAY to 'stripe' or 'sandbox'.")
