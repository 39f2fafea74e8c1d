"""Payment services on orders: record the authorization, settle (capture only what partners
accepted), refund a cancelled line, and reconcile what Stripe tells us.

Every action writes a :class:`~fulfillment.models.PaymentEvent` and an audit row in the same
transaction. The gateway is never called while a row lock is held: call it first, then lock the
order, re-check that nobody recorded the same thing meanwhile, and record. Gateway calls carry
idempotency keys derived from what they act on, so running a service twice charges once.
"""

from __future__ import annotations

import datetime
import logging
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from carts.models import Cart
from clinics.audit import audit_record
from clinics.models import Clinic
from fizy.lib.payments import (
    CANCELED,
    REQUIRES_CAPTURE,
    SUCCEEDED,
    Authorization,
    Gateway,
    PaymentError,
    PaymentState,
    from_cents,
    get_gateway,
    to_cents,
)

from .models import Order, OrderLine, PaymentEvent
from .status import ANSWERED, CHARGEABLE

logger = logging.getLogger(__name__)

PS = Order.PaymentStatus
Kind = PaymentEvent.Kind
ZERO = Decimal("0.00")
CAPTURE_KINDS = (Kind.CAPTURED, Kind.PARTIALLY_CAPTURED)
# A cart still "checking out" this recently may yet turn its authorization into an order.
CHECKOUT_GRACE = datetime.timedelta(minutes=10)


class PaymentServiceError(Exception):
    """A payment action that cannot be done on this order or line; the message is readable."""


# --- helpers shared with checkout ---------------------------------------------------------------


def authorization_idempotency_key(*, cart: Cart, payment_method_id: str = "") -> str:
    """One authorization per attempt at a cart version: a double submit replays the same
    PaymentIntent, but after a decline the next attempt (a new card, or the same card once the
    bank agrees) gets a key of its own — Stripe would otherwise replay the decline."""
    failed = PaymentEvent.objects.filter(
        clinic_id=cart.clinic_id, kind=Kind.FAILED, order=None,
        payload__cart=cart.pk, payload__cart_version=cart.version,
    ).count()
    return f"fizy-cart-{cart.pk}-v{cart.version}-{payment_method_id or 'card'}-a{failed}-authorize"


def authorization_metadata(*, cart: Cart) -> dict[str, str]:
    """What the PaymentIntent carries so a Stripe event can be tied back to its checkout."""
    return {"clinic_id": str(cart.clinic_id), "cart_id": str(cart.pk), "cart_version": str(cart.version)}


def _gateway_for(order: Order) -> Gateway:
    gateway = get_gateway()
    if order.payment_gateway and order.payment_gateway != gateway.name:
        raise PaymentServiceError(
            f"Order {order.number} was paid through {order.payment_gateway}, but this server is set up "
            f"for {gateway.name}; its payment cannot be changed from here."
        )
    return gateway


def _record(
    *, kind: str, clinic: Clinic, order: Order | None, amount: Decimal, gateway_name: str, reference: str,
    message: str = "", payload: dict | None = None, actor=None, patient=None,
) -> PaymentEvent:
    """One PaymentEvent and its audit row. Call inside the service's transaction."""
    event = PaymentEvent.objects.create(
        order=order, clinic=clinic, kind=kind, amount=amount, gateway=gateway_name,
        reference=reference, message=message, payload=payload or {},
    )
    audit_record(
        action=f"payment.{kind}",
        actor=actor,
        clinic=clinic,
        patient=patient,
        obj=order if order is not None else event,
        detail={"amount": str(amount), "reference": reference, "gateway": gateway_name, "event_id": event.pk},
    )
    return event


# --- authorization (called by checkout) ----------------------------------------------------------


def order_record_authorization(
    *, order: Order, authorization: Authorization, gateway_name: str, actor=None
) -> PaymentEvent:
    """Mark ``order`` as paid by ``authorization`` (made just before the order was created)."""
    if not authorization.ok:
        raise PaymentServiceError("A declined authorization cannot pay for an order.")
    with transaction.atomic():
        order.payment_gateway = gateway_name
        order.payment_reference = authorization.reference
        order.payment_status = PS.AUTHORIZED
        order.amount_authorized = authorization.amount
        order.save(update_fields=["payment_gateway", "payment_reference", "payment_status", "amount_authorized"])
        return _record(
            kind=Kind.AUTHORIZED, clinic=order.clinic, order=order, amount=authorization.amount,
            gateway_name=gateway_name, reference=authorization.reference, actor=actor,
            payload={"status": authorization.status},
        )


def record_payment_failure(
    *, clinic: Clinic, message: str, reference: str, amount: Decimal, gateway_name: str,
    decline_code: str = "", actor=None, cart: Cart | None = None,
) -> PaymentEvent:
    """A declined or failed authorization at checkout: no order, but a row that says why (and
    which cart version it was for, so the next attempt gets a fresh idempotency key)."""
    payload = {"decline_code": decline_code}
    if cart is not None:
        payload.update(cart=cart.pk, cart_version=cart.version)
    with transaction.atomic():
        return _record(
            kind=Kind.FAILED, clinic=clinic, order=None, amount=amount, gateway_name=gateway_name,
            reference=reference, message=message, actor=actor, payload=payload,
        )


def record_authorization_cancelled(
    *, clinic: Clinic, reference: str, amount: Decimal, gateway_name: str, message: str, actor=None,
) -> PaymentEvent:
    """Checkout cancelled an approved authorization because its order could not be created."""
    with transaction.atomic():
        return _record(
            kind=Kind.CANCELLED, clinic=clinic, order=None, amount=amount, gateway_name=gateway_name,
            reference=reference, message=message, actor=actor,
        )


# --- settlement ---------------------------------------------------------------------------------


def _state_after_error(gateway: Gateway, reference: str, exc: PaymentError) -> PaymentState:
    """A capture or cancel failed: if an earlier attempt already settled the payment (the process
    died before recording it), go on with what the gateway says; otherwise re-raise."""
    try:
        state = gateway.retrieve(reference=reference)
    except PaymentError:
        raise exc from None
    if state.status in (SUCCEEDED, CANCELED):
        return state
    raise exc


def order_settle_payment(*, order_id: int) -> Order:
    """Capture the landed cost of the lines the partners accepted, once every line has its final
    answer; cancel the authorization when none was accepted. A rejected, failed or cancelled
    line is never captured. Safe to run twice: the second run finds the order settled."""
    order = Order.objects.select_related("clinic").get(pk=order_id)
    if order.payment_status != PS.AUTHORIZED:
        return order
    lines = list(order.lines.only("id", "status", "landed_cost"))
    if any(line.status not in ANSWERED for line in lines):
        # Not every line has its final answer (one went back on hold). Re-arm the trigger that
        # queues settlement once (Order.settlement_requested_at), then look again, so the next
        # final answer queues it anew and an answer given meanwhile is not missed.
        Order.objects.filter(pk=order_id).update(settlement_requested_at=None)
        lines = list(order.lines.only("id", "status", "landed_cost"))
        waiting = [line.pk for line in lines if line.status not in ANSWERED]
        if waiting:
            logger.info("order %s not settled: lines %s have no final answer yet", order_id, waiting)
            return order
    accepted = [line for line in lines if line.status in CHARGEABLE]
    amount = sum((line.landed_cost for line in accepted), ZERO)
    if amount > order.amount_authorized:
        raise PaymentServiceError(
            f"Order {order.number}: the accepted lines cost ${amount}, more than the ${order.amount_authorized} "
            "authorized. Nothing was captured; Fizy support must look at this order."
        )
    gateway = _gateway_for(order)
    try:
        if amount:
            state = gateway.capture(
                reference=order.payment_reference, amount=amount,
                idempotency_key=f"fizy-order-{order.pk}-capture-{to_cents(amount)}",
            )
        else:
            state = gateway.cancel(reference=order.payment_reference, idempotency_key=f"fizy-order-{order.pk}-cancel")
    except PaymentError as exc:
        try:
            state = _state_after_error(gateway, order.payment_reference, exc)
        except PaymentError:
            with transaction.atomic():
                _record(
                    kind=Kind.FAILED, clinic=order.clinic, order=order, amount=amount, gateway_name=gateway.name,
                    reference=order.payment_reference, message=exc.message, payload={"action": "settle", "code": exc.code},
                )
            raise
    line_ids = [line.pk for line in accepted]
    with transaction.atomic():
        order = Order.objects.select_for_update().select_related("clinic").get(pk=order_id)
        if order.payment_status != PS.AUTHORIZED:
            return order  # a concurrent run recorded it
        _apply_settled_state(order=order, state=state, gateway_name=gateway.name, line_ids=line_ids)
    # A line cancelled while the capture was in flight was charged: give it back.
    for line in OrderLine.objects.filter(pk__in=line_ids).exclude(status__in=CHARGEABLE):
        order_line_refund(line=line, actor=None)
    order.refresh_from_db()
    return order


NOTHING_ACCEPTED = "No line was accepted by a partner pharmacy; the authorization was released."


def _apply_settled_state(
    *, order: Order, state: PaymentState, gateway_name: str, line_ids: list[int] | None,
    cancel_message: str = NOTHING_ACCEPTED,
) -> None:
    """Record a capture or a cancellation the gateway reports. Caller holds the order's lock."""
    if state.status == CANCELED:
        order.payment_status = PS.CANCELLED
        order.save(update_fields=["payment_status"])
        _record(
            kind=Kind.CANCELLED, clinic=order.clinic, order=order, amount=order.amount_authorized,
            gateway_name=gateway_name, reference=order.payment_reference, message=cancel_message,
        )
        return
    captured = state.amount_received
    full = captured == order.amount_authorized
    order.amount_captured = captured
    order.payment_status = PS.CAPTURED if full else PS.PARTIALLY_CAPTURED
    order.save(update_fields=["amount_captured", "payment_status"])
    payload = {"line_ids": line_ids} if line_ids is not None else {"source": "gateway"}
    _record(
        kind=Kind.CAPTURED if full else Kind.PARTIALLY_CAPTURED, clinic=order.clinic, order=order,
        amount=captured, gateway_name=gateway_name, reference=order.payment_reference, payload=payload,
        message="" if full else f"Captured ${captured} of ${order.amount_authorized}: only the accepted lines.",
    )


# --- refunds ------------------------------------------------------------------------------------


def _line_refund_event(order: Order, line_id: int) -> PaymentEvent | None:
    return order.payment_events.filter(kind=Kind.REFUNDED, payload__line_id=line_id).first()


def _line_was_captured(order: Order, line_id: int) -> bool:
    payloads = order.payment_events.filter(kind__in=CAPTURE_KINDS).values_list("payload", flat=True)
    return any(line_id in (payload or {}).get("line_ids", ()) for payload in payloads)


def order_line_refund(*, line: OrderLine, actor) -> PaymentEvent | None:
    """Give back a cancelled (or rejected, failed) line's landed cost if it was captured.

    Call after the line's status changed. When the order is not captured yet there is nothing to
    refund: settlement leaves the line out. Returns the refund event, or None when no money moved.
    Safe to run twice: a line is refunded once."""
    line = OrderLine.objects.select_related("order__clinic", "patient").get(pk=line.pk)
    order = line.order
    if line.status in CHARGEABLE:
        raise PaymentServiceError(
            f"The line for {line.product_name} is {line.get_status_display().lower()}: "
            "cancel it before refunding it (a shipped line cannot be refunded)."
        )
    if order.payment_status not in (PS.CAPTURED, PS.PARTIALLY_CAPTURED):
        return None
    if not _line_was_captured(order, line.pk) or _line_refund_event(order, line.pk):
        return None
    gateway = _gateway_for(order)
    refund = gateway.refund(
        reference=order.payment_reference, amount=line.landed_cost, idempotency_key=f"fizy-line-{line.pk}-refund"
    )
    with transaction.atomic():
        order = Order.objects.select_for_update().select_related("clinic").get(pk=order.pk)
        existing = _line_refund_event(order, line.pk)
        if existing is not None:
            return existing
        order.amount_refunded += refund.amount
        order.save(update_fields=["amount_refunded"])
        return _record(
            kind=Kind.REFUNDED, clinic=order.clinic, order=order, amount=refund.amount, gateway_name=gateway.name,
            reference=refund.reference, actor=actor, patient=line.patient,
            message=f"Refunded {line.product_name}: the line was {line.get_status_display().lower()}.",
            payload={"line_id": line.pk, "payment_reference": order.payment_reference, "status": refund.status},
        )


# --- reconciliation with Stripe events ----------------------------------------------------------


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
    cart = Cart.objects.filter(pk=_int_or_none(metadata.get("cart_id"))).first()
    if cart is None or cart.status != Cart.Status.CHECKING_OUT:
        return False
    started = cart.checkout_started_at or cart.updated_at
    return started > timezone.now() - CHECKOUT_GRACE


def _sync_order(order: Order, intent: dict, gateway_name: str) -> str:
    """Bring the order's payment fields in step with the intent Stripe reports."""
    status = intent.get("status")
    with transaction.atomic():
        order = Order.objects.select_for_update().select_related("clinic").get(pk=order.pk)
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
            )
            _apply_settled_state(
                order=order, state=state, gateway_name=gateway_name, line_ids=None,
                cancel_message="Stripe reports the authorization was cancelled.",
            )
            return Reconciled.UPDATED
    return Reconciled.IN_SYNC


def _record_orphan(*, clinic: Clinic, kind: str, reference: str, amount: Decimal, gateway_name: str, message: str) -> str:
    with transaction.atomic():
        Clinic.objects.select_for_update().filter(pk=clinic.pk).first()  # serialise repeated deliveries
        if not PaymentEvent.objects.filter(order=None, reference=reference, kind=kind).exists():
            _record(
                kind=kind, clinic=clinic, order=None, amount=amount, gateway_name=gateway_name,
                reference=reference, message=message, payload={"orphan": True},
            )
    return Reconciled.CANCELLED_ORPHAN if kind == Kind.CANCELLED else Reconciled.REFUNDED_ORPHAN


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
    order = _order_for_intent(reference, metadata)
    if order is not None:
        return _sync_order(order, intent, order.payment_gateway or gateway.name)
    clinic = Clinic.objects.filter(pk=_int_or_none(metadata.get("clinic_id"))).first()
    if clinic is None or not reference:
        return Reconciled.IGNORED
    if status == REQUIRES_CAPTURE:
        if _checkout_in_progress(metadata):
            return Reconciled.IN_PROGRESS
        gateway.cancel(reference=reference, idempotency_key=f"fizy-orphan-{reference}-cancel")
        outcome = _record_orphan(
            clinic=clinic, kind=Kind.CANCELLED, reference=reference, gateway_name=gateway.name,
            amount=from_cents(intent.get("amount_capturable") or intent.get("amount")),
            message="An authorization without an order (its checkout did not finish) was cancelled.",
        )
        # The checkout may have finished while we cancelled: then its order must say so too.
        late = _order_for_intent(reference, metadata)
        if late is not None:
            _sync_order(late, {**intent, "status": CANCELED}, late.payment_gateway or gateway.name)
        return outcome
    if status == SUCCEEDED and intent.get("amount_received"):
        refund = gateway.refund(
            reference=reference, amount=from_cents(intent["amount_received"]),
            idempotency_key=f"fizy-orphan-{reference}-refund",
        )
        return _record_orphan(
            clinic=clinic, kind=Kind.REFUNDED, reference=reference, gateway_name=gateway.name, amount=refund.amount,
            message=f"A charge without an order was refunded ({refund.reference}).",
        )
    return Reconciled.IGNORED
