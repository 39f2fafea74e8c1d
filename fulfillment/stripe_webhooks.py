"""Stripe's events about our PaymentIntents: ``POST /api/stripe/events``.

Verified with Stripe's signature (``Stripe-Signature``, ``settings.STRIPE_WEBHOOK_SECRET``) before
anything is read; what cannot be verified is refused with 400 and not stored. A verified
PaymentIntent event goes through :func:`~fulfillment.payments.reconcile_payment_intent`.

Status codes tell Stripe whether to deliver again: 2xx done; 409 while the checkout that made
the authorization may still finish, 503 when Stripe itself could not be reached to act on it
(both retried by Stripe later); 400 for a request that will never be acceptable.
"""

import json
import logging

import stripe
from django.conf import settings
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.response import Response

from fizy.lib.payments import PaymentError

from .payments import PaymentServiceError, Reconciled, reconcile_payment_intent

logger = logging.getLogger(__name__)

HANDLED_EVENTS = frozenset({
    "payment_intent.amount_capturable_updated",
    "payment_intent.succeeded",
    "payment_intent.canceled",
    "payment_intent.payment_failed",
})


def _refuse(message: str, status: int = 400) -> Response:
    return Response({"error": message}, status=status)


@api_view(["POST"])
@authentication_classes([])
@permission_classes([])
def stripe_events(request):
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        return _refuse("Stripe webhooks are not configured on this server (no signing secret).")
    try:
        payload = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse("The body is not UTF-8 text.")
    signature = request.headers.get("Stripe-Signature")
    if not signature:
        return _refuse("Missing Stripe-Signature header.")
    try:
        stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError:
        return _refuse("Bad Stripe signature, or its timestamp is too old.")
    except Exception:  # the signature is good but the body is not an event (not JSON, wrong shape)
        return _refuse("The body is not a Stripe event.")
    event = json.loads(payload)
    kind = event.get("type") if isinstance(event, dict) else None
    if kind not in HANDLED_EVENTS:
        return Response({"received": True, "handled": False})
    intent = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(intent, dict) or intent.get("object") != "payment_intent" or not intent.get("id"):
        return _refuse(f"A {kind} event must carry a payment_intent object.")
    try:
        outcome = reconcile_payment_intent(intent=intent)
    except PaymentError as exc:
        logger.warning("stripe event %s for %s not reconciled: %s", event.get("id"), intent["id"], exc.message)
        return _refuse(exc.message, status=503)
    except PaymentServiceError as exc:
        logger.error("stripe event %s for %s refused: %s", event.get("id"), intent["id"], exc)
        return _refuse(str(exc), status=409)
    if outcome == Reconciled.IN_PROGRESS:
        return Response(
            {"received": True, "outcome": outcome,
             "detail": "The checkout that made this authorization may still finish; deliver again later."},
            status=409,
        )
    return Response({"received": True, "handled": True, "outcome": outcome})
