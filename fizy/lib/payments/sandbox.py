"""A stand-in for Stripe with no keys and no network, answering in the same shapes (demo, tests)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from decimal import Decimal

from fizy.lib.money import ZERO, money

from .base import (
    CANCELED,
    REQUIRES_CAPTURE,
    REQUIRES_PAYMENT_METHOD,
    SUCCEEDED,
    Authorization,
    CardDetails,
    PaymentError,
    PaymentState,
    Refund,
)

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
            raise PaymentError("The card was not saved: this card setup is unknown.", code="resource_missing", kind=PaymentError.CARD_NOT_SAVED)
        card = SANDBOX_CARDS.get(payment_method or "pm_sandbox_visa")
        if card is None:
            raise PaymentError("The card was not saved: unknown sandbox test card.", code="resource_missing", kind=PaymentError.CARD_NOT_SAVED)
        return CardDetails(card.payment_method_id, card.brand, card.last4, card.exp, customer_id=customer_id)

    @staticmethod
    def _reference(idempotency_key: str) -> str:
        return "pi_sandbox_" + _digest("authorize", idempotency_key)

    def authorize(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization:
        amount = money(amount)
        reference = self._reference(idempotency_key)
        if payment_method_id in SANDBOX_DECLINES:
            code, decline_code = SANDBOX_DECLINES[payment_method_id]
            return Authorization(
                ok=False, reference=reference, status=REQUIRES_PAYMENT_METHOD, amount=amount,
                decline_code=decline_code, code=code, card_last4=SANDBOX_CARDS[payment_method_id].last4,
            )
        if payment_method_id not in SANDBOX_CARDS:
            raise PaymentError("The saved card is unknown to the sandbox.", code="resource_missing",
                               kind=PaymentError.CARD_NOT_SAVED)
        return Authorization(ok=True, reference=reference, status=REQUIRES_CAPTURE, amount=amount)

    def charge(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization:
        result = self.authorize(
            amount=amount, currency=currency, customer_id=customer_id, payment_method_id=payment_method_id,
            idempotency_key="charge:" + idempotency_key, description=description, metadata=metadata,
        )
        return replace(result, status=SUCCEEDED) if result.ok else result

    def capture(self, *, reference: str, amount: Decimal, idempotency_key: str) -> PaymentState:
        amount = money(amount)
        return PaymentState(reference=reference, status=SUCCEEDED, amount=amount, amount_received=amount)

    def cancel(self, *, reference: str, idempotency_key: str) -> PaymentState:
        return PaymentState(reference=reference, status=CANCELED, amount=ZERO)

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> Refund:
        return Refund(
            reference="re_sandbox_" + _digest("refund", idempotency_key), payment_reference=reference,
            amount=money(amount), status=SUCCEEDED,
        )

    def retrieve(self, *, reference: str) -> PaymentState:
        # Stateless: the sandbox can only say the authorization is still open.
        return PaymentState(reference=reference, status=REQUIRES_CAPTURE, amount=ZERO)
