"""Stripe's events about our PaymentIntents: ``POST /api/stripe/events``, and the reconciliation
that keeps our records in step with what Stripe reports.

Verified with Stripe's signature (``Stripe-Signature``, ``settings.STRIPE_WEBHOOK_SECRET``) before
anything is read; what cannot be verified is refused with 400 and not stored. A verified
PaymentIntent event goes through :func:`reconcile_payment_intent`.

Status codes tell Stripe whether to deliver again: 2xx done; 409 while the checkout that made
the authorization may still finish, 503 when Stripe itself could not be reached to act on it
(both retried by Stripe later); 400 for a request that will never be acceptable.
"""

import json
import logging

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.response import Response

from clinics.models import Clinic
from fizy.lib.money import from_cents
from fizy.lib.payments import CANCELED, REQUIRES_CAPTURE, SUCCEEDED, Authorization, PaymentError, PaymentState, get_gateway

from .models import Order
from .settlement import (
    CHECKOUT_GRACE,
    PS,
    PaymentServiceError,
    authorization_release,
    line_record_gateway_charge,
    order_lock_with_lines,
    order_record_authorization,
    order_record_settled_state,
    orphan_refund,
)

logger = logging.getLogger(__name__)


class Reconciled:
    """What :func:`reconcile_payment_intent` did (stable strings for the endpoint and the tests)."""

    IN_SYNC = "in_sync"
    UPDATED = "updated"
    IN_PROGRESS = "in_progress"
    CANCELLED_ORPHAN = "cancelled_orphan"
    REFUNDED_ORPHAN = "refunded_orphan"
    IGNORED = "ignored"


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _order_for_intent(reference: str, metadata: dict) -> Order | None:
    order = Order.objects.select_related("clinic").filter(payment_reference=reference).first()
    if order is not None:
        return order
    cart_id = _int_or_none(metadata.get("cart_id"))
    if cart_id is None:
        return None
    order = Order.objects.select_related("clinic").filter(cart_id=cart_id).first()
    # An order of that cart paid by another intent makes this intent an orphan, not its payment.
    if order is not None and order.payment_reference in ("", reference):
        return order
    return None


def _checkout_in_progress(metadata: dict) -> bool:
    """The checkout that made the authorization started within the grace (it says when in the
    intent's metadata, ``checkout_started_at`` in Unix seconds), so it may still create its order."""
    started = _int_or_none(metadata.get("checkout_started_at"))
    if started is None:
        return False
    return timezone.now().timestamp() - started < CHECKOUT_GRACE.total_seconds()


def _sync_order(order: Order, intent: dict, gateway_name: str) -> str:
    """Bring the order's payment fields in step with the intent Stripe reports."""
    status = intent.get("status")
    with transaction.atomic():
        order = order_lock_with_lines(order_id=order.pk)
        if status == REQUIRES_CAPTURE and order.payment_status == PS.NONE:
            order_record_authorization(
                order=order, gateway_name=gateway_name,
                authorization=Authorization(
                    ok=True, reference=intent["id"], status=status,
                    amount=from_cents(intent.get("amount_capturable") or intent.get("amount")),
                ),
            )
            return Reconciled.UPDATED
        if status in (SUCCEEDED, CANCELED) and order.payment_status in (PS.NONE, PS.AUTHORIZED):
            if not order.payment_reference:
                order.payment_reference = intent["id"]
                order.payment_gateway = gateway_name
            state = PaymentState(
                reference=intent["id"], status=status, amount=from_cents(intent.get("amount")),
                amount_received=from_cents(intent.get("amount_received")),
                cancellation_reason=intent.get("cancellation_reason") or "",
            )
            order_record_settled_state(
                order=order, state=state, gateway_name=gateway_name,
                cancel_message="Stripe reports the authorization was cancelled.",
            )
            # Accepted lines the ended authorization no longer covers are charged on their own.
            transaction.on_commit(lambda: async_task("fulfillment.tasks.settle_order_payment", order.pk))
            return Reconciled.UPDATED
    return Reconciled.IN_SYNC


def reconcile_payment_intent(*, intent: dict) -> str:
    """Make our records agree with a PaymentIntent Stripe reports (from a webhook event).

    With an order: keep its payment fields in step (authorized, captured, cancelled). Without
    one: an authorization whose checkout is no longer in progress is cancelled (a captured one is
    refunded), so there is never a charge without an order. Intents that are not Fizy's (no
    clinic in their metadata) are left alone. Returns one of :class:`Reconciled`."""
    reference = intent.get("id") or ""
    status = intent.get("status") or ""
    metadata = intent.get("metadata") or {}
    gateway = get_gateway()
    if metadata.get("line_id"):  # a follow-up charge for one line
        line_id, order_id = _int_or_none(metadata.get("line_id")), _int_or_none(metadata.get("order_id"))
        if status != SUCCEEDED or line_id is None or order_id is None:
            return Reconciled.IGNORED
        return line_record_gateway_charge(
            line_id=line_id, order_id=order_id, reference=reference, amount=from_cents(intent.get("amount_received")),
        )
    order = _order_for_intent(reference, metadata)
    if order is not None:
        return _sync_order(order, intent, order.payment_gateway or gateway.name)
    clinic = Clinic.objects.filter(pk=_int_or_none(metadata.get("clinic_id"))).first()
    if clinic is None or not reference:
        return Reconciled.IGNORED
    if status == REQUIRES_CAPTURE:
        if _checkout_in_progress(metadata):
            return Reconciled.IN_PROGRESS
        authorization_release(
            clinic=clinic, reference=reference,
            amount=from_cents(intent.get("amount_capturable") or intent.get("amount")),
            message="An authorization without an order (its checkout did not finish) was cancelled.",
        )
        # The checkout may have finished while we cancelled: then its order must say so too.
        late = _order_for_intent(reference, metadata)
        if late is not None:
            _sync_order(late, {**intent, "status": CANCELED}, late.payment_gateway or gateway.name)
        return Reconciled.CANCELLED_ORPHAN
    if status == SUCCEEDED and intent.get("amount_received"):
        orphan_refund(clinic=clinic, reference=reference, amount=from_cents(intent["amount_received"]))
        return Reconciled.REFUNDED_ORPHAN
    return Reconciled.IGNORED


# --- the endpoint ------------------------------------------------------------------------------

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
