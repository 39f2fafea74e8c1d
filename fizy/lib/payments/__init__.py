"""The payment gateway: one interface (``base``), two implementations — ``StripeGateway`` through
the official ``stripe`` library (``stripe_gateway``) and ``SandboxGateway`` for the demo and the
tests (``sandbox``). :func:`get_gateway` picks one from ``settings.PAYMENT_GATEWAY``."""

from django.conf import settings

from .base import (
    AUTHORIZED_STATUSES,
    CANCELED,
    REQUIRES_ACTION,
    REQUIRES_CAPTURE,
    REQUIRES_PAYMENT_METHOD,
    SUCCEEDED,
    Authorization,
    CardDetails,
    Gateway,
    PaymentError,
    PaymentState,
    Refund,
)
from .sandbox import SANDBOX_CARDS, SandboxGateway
from .stripe_gateway import StripeGateway

__all__ = [
    "AUTHORIZED_STATUSES", "CANCELED", "REQUIRES_ACTION", "REQUIRES_CAPTURE", "REQUIRES_PAYMENT_METHOD", "SUCCEEDED",
    "Authorization", "CardDetails", "Gateway", "PaymentError", "PaymentState", "Refund",
    "SANDBOX_CARDS", "SandboxGateway", "StripeGateway", "get_gateway",
]


def get_gateway() -> Gateway:
    """The gateway that ``settings.PAYMENT_GATEWAY`` names: "stripe" or "sandbox"."""
    name = getattr(settings, "PAYMENT_GATEWAY", "sandbox")
    if name == "stripe":
        return StripeGateway(api_key=settings.STRIPE_SECRET_KEY, api_base=getattr(settings, "STRIPE_API_BASE", ""))
    if name == "sandbox":
        return SandboxGateway()
    raise PaymentError(
        f"Unknown payment gateway {name!r}; set PAYMENT_GATEWAY to 'stripe' or 'sandbox'.",
        kind=PaymentError.NOT_CONFIGURED,
    )
