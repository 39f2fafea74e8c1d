"""What every payment gateway speaks: PaymentIntent statuses, result types, errors, the interface.

Domain-free: amounts, references and card details only. Which order a payment belongs to, and
whether an amount is right for it, is the services' business; what a coordinator reads about a
decline or an outage is worded by the pages (``clinics.payment_messages``), from the codes here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

# PaymentIntent statuses (Stripe's words, shared by the sandbox).
REQUIRES_CAPTURE = "requires_capture"
SUCCEEDED = "succeeded"
CANCELED = "canceled"
REQUIRES_PAYMENT_METHOD = "requires_payment_method"
REQUIRES_ACTION = "requires_action"

AUTHORIZED_STATUSES = (REQUIRES_CAPTURE, SUCCEEDED)


class PaymentError(Exception):
    """The gateway itself failed (network, 5xx, bad keys, an unexpected state): not a decline.

    ``message`` says what failed in plain words; ``kind`` (one of the ``PaymentError`` constants)
    lets a page say what to do about it; ``code`` is the gateway's code when it gave one."""

    UNREACHABLE = "unreachable"  # network or the gateway's own outage: try again later
    CREDENTIALS = "credentials"  # the gateway refused our keys: an operator must fix them
    REFUSED = "refused"  # the gateway refused the request as made
    NOT_CONFIGURED = "not_configured"
    CARD_NOT_SAVED = "card_not_saved"  # a card setup that did not finish or is unknown

    def __init__(self, message: str, *, code: str = "", kind: str = REFUSED, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = kind
        self.retryable = retryable


@dataclass(frozen=True)
class Authorization:
    """The outcome of authorizing (or, for :meth:`Gateway.charge`, charging) an amount. ``ok``
    False is a decline: ``code`` / ``decline_code`` say why (the bank's words), ``card_last4``
    which card. ``replayed``: the gateway answered a repeated idempotency key with the response
    it saved the first time — the payment may have changed since, so look it up before relying
    on it."""

    ok: bool
    reference: str
    status: str
    amount: Decimal
    decline_code: str = ""
    code: str = ""
    card_last4: str = ""
    replayed: bool = False


@dataclass(frozen=True)
class PaymentState:
    """A payment (PaymentIntent) as the gateway sees it now: after a capture, a cancel, a retrieve."""

    reference: str
    status: str
    amount: Decimal
    amount_capturable: Decimal = Decimal("0.00")
    amount_received: Decimal = Decimal("0.00")
    metadata: dict = field(default_factory=dict)
    cancellation_reason: str = ""  # "automatic": the authorization expired


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
    """Every write takes an ``idempotency_key``: the same key always yields the same result."""

    name: str

    def ensure_customer(self, *, name: str, email: str, metadata: dict, idempotency_key: str = "") -> str: ...

    def create_setup_intent(self, *, customer_id: str) -> tuple[str, str]: ...

    def attach_result(self, *, setup_intent_id: str) -> CardDetails: ...

    def authorize(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization: ...

    def charge(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization:
        """Charge the saved card now, off-session (captured at once)."""
        ...

    def capture(self, *, reference: str, amount: Decimal, idempotency_key: str) -> PaymentState: ...

    def cancel(self, *, reference: str, idempotency_key: str) -> PaymentState: ...

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> Refund: ...

    def retrieve(self, *, reference: str) -> PaymentState: ...
