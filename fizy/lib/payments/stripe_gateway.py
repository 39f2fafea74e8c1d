"""Stripe PaymentIntents with manual capture through the official ``stripe`` library."""

from __future__ import annotations

import logging
from decimal import Decimal

from fizy.lib.money import from_cents, money, to_cents

from .base import (
    AUTHORIZED_STATUSES,
    REQUIRES_PAYMENT_METHOD,
    SUCCEEDED,
    Authorization,
    CardDetails,
    PaymentError,
    PaymentState,
    Refund,
)

logger = logging.getLogger(__name__)


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


def _replayed(headers) -> bool:
    """Stripe marks a response it replays for a repeated idempotency key."""
    if not headers:
        return False
    value = headers.get("Idempotent-Replayed") or headers.get("idempotent-replayed") or ""
    return str(value).lower() == "true"


def _plain(obj) -> dict:
    """A Stripe response as plain dicts and lists (StripeObject is no longer a Mapping)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


class StripeGateway:
    """Stripe PaymentIntents with manual capture, confirmed off-session with a saved card."""

    name = "stripe"

    def __init__(self, *, api_key: str, api_base: str = "", max_network_retries: int = 2):
        import stripe

        if not api_key:
            raise PaymentError("Card payments are not configured (no Stripe secret key).", code="not_configured",
                               kind=PaymentError.NOT_CONFIGURED)
        base = {"api": api_base.rstrip("/")} if api_base else None
        self._stripe = stripe
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=max_network_retries)

    def _error(self, exc, action: str) -> PaymentError:
        stripe = self._stripe
        retryable = isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError))
        if isinstance(exc, stripe.APIConnectionError):
            text, kind = f"Fizy could not reach Stripe to {action}.", PaymentError.UNREACHABLE
        elif isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            text, kind = f"Stripe refused Fizy's credentials while trying to {action}.", PaymentError.CREDENTIALS
        else:
            detail = getattr(exc, "user_message", None) or getattr(exc, "_message", None) or str(exc)
            text = f"Stripe could not {action}: {detail}"
            kind = PaymentError.UNREACHABLE if retryable else PaymentError.REFUSED
        logger.warning("stripe error during %s: %r", action, exc)
        return PaymentError(text, code=getattr(exc, "code", "") or "", kind=kind, retryable=retryable)

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
            cancellation_reason=_get(pi, "cancellation_reason", default="") or "",
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
                f"The card was not saved: the bank has not confirmed it yet ({si['status']}).", code=si["status"],
                kind=PaymentError.CARD_NOT_SAVED,
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
        return self._confirm(
            capture_method="manual", action="authorize the payment", amount=amount, currency=currency,
            customer_id=customer_id, payment_method_id=payment_method_id, idempotency_key=idempotency_key,
            description=description, metadata=metadata,
        )

    def charge(
        self, *, amount: Decimal, currency: str, customer_id: str, payment_method_id: str,
        idempotency_key: str, description: str = "", metadata: dict | None = None,
    ) -> Authorization:
        return self._confirm(
            capture_method="automatic", action="charge the card", amount=amount, currency=currency,
            customer_id=customer_id, payment_method_id=payment_method_id, idempotency_key=idempotency_key,
            description=description, metadata=metadata,
        )

    def _confirm(
        self, *, capture_method: str, action: str, amount: Decimal, currency: str, customer_id: str,
        payment_method_id: str, idempotency_key: str, description: str, metadata: dict | None,
    ) -> Authorization:
        """Create and confirm a PaymentIntent off-session on the saved card."""
        stripe = self._stripe
        params = {
            "amount": to_cents(amount),
            "currency": currency,
            "customer": customer_id,
            "payment_method": payment_method_id,
            "payment_method_types": ["card"],
            "capture_method": capture_method,
            "confirm": True,
            "off_session": True,
            "description": description,
            "metadata": {k: str(v) for k, v in (metadata or {}).items()},
        }
        try:
            response = self.client.v1.payment_intents.create(params=params, options={"idempotency_key": idempotency_key})
        except stripe.CardError as exc:
            error = _get(exc.json_body, "error", default={})
            code = exc.code or _get(error, "code", default="")
            decline_code = _get(error, "decline_code", default="") or code
            return Authorization(
                ok=False,
                reference=_get(error, "payment_intent", "id", default=""),
                status=_get(error, "payment_intent", "status", default=REQUIRES_PAYMENT_METHOD),
                amount=money(amount),
                decline_code=decline_code,
                code=code,
                card_last4=_get(error, "payment_method", "card", "last4", default=""),
                replayed=_replayed(getattr(exc, "headers", None)),
            )
        except stripe.StripeError as exc:
            raise self._error(exc, action) from exc
        replayed = _replayed(getattr(getattr(response, "last_response", None), "headers", None))
        pi = _plain(response)
        state = self._state(pi)
        if state.status in AUTHORIZED_STATUSES:
            return Authorization(
                ok=True, reference=state.reference, status=state.status, amount=state.amount, replayed=replayed
            )
        # requires_action (3-D Secure), a failed confirmation, or (replayed) no longer usable.
        last_error = _get(pi, "last_payment_error", default={})
        code = _get(last_error, "code", default="") or state.status
        decline_code = _get(last_error, "decline_code", default="") or code
        return Authorization(
            ok=False, reference=state.reference, status=state.status, amount=state.amount,
            decline_code=decline_code, code=code,
            card_last4=_get(last_error, "payment_method", "card", "last4", default=""), replayed=replayed,
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
