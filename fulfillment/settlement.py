"""Money after the order, in one module: record the authorization an order is paid by, release
an authorization that paid for nothing, settle (capture only what partners accepted), refund a
line that will not be charged after all. The Stripe reconciliation lives beside the Stripe
endpoint (``fulfillment.stripe_webhooks``); *when* money moves is decided by the line state
machine (``fulfillment.status``), which queues the tasks that call these services.

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

from clinics.audit import Action, audit_record
from clinics.models import Clinic
from fizy.lib.money import ZERO, to_cents
from fizy.lib.payments import CANCELED, SUCCEEDED, Authorization, Gateway, PaymentError, PaymentState, get_gateway

from .models import Order, OrderLine, PaymentEvent
from .status import ANSWERED, CHARGEABLE

logger = logging.getLogger(__name__)

PS = Order.PaymentStatus
Kind = PaymentEvent.Kind
CAPTURE_KINDS = (Kind.CAPTURED, Kind.PARTIALLY_CAPTURED)
AUDIT_ACTIONS = {
    Kind.AUTHORIZED: Action.PAYMENT_AUTHORIZED,
    Kind.CAPTURED: Action.PAYMENT_CAPTURED,
    Kind.PARTIALLY_CAPTURED: Action.PAYMENT_PARTIALLY_CAPTURED,
    Kind.CANCELLED: Action.PAYMENT_CANCELLED,
    Kind.REFUNDED: Action.PAYMENT_REFUNDED,
    Kind.FAILED: Action.PAYMENT_FAILED,
}
# A checkout that started less than this ago may still turn its authorization into an order;
# one that started longer ago was interrupted (its cart may be ordered again, its authorization
# released).
CHECKOUT_GRACE = datetime.timedelta(minutes=10)


class PaymentServiceError(Exception):
    """A payment action that cannot be done on this order or line; the message is readable."""


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
        action=AUDIT_ACTIONS[kind],
        actor=actor,
        clinic=clinic,
        patient=patient,
        obj=order if order is not None else event,
        detail={"amount": str(amount), "reference": reference, "gateway": gateway_name, "event_id": event.pk},
    )
    return event


# --- authorization (called by order placement and checkout) -------------------------------------


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


def payment_record_failure(
    *, clinic: Clinic, message: str, reference: str, amount: Decimal, gateway_name: str,
    decline_code: str = "", actor=None, payload: dict | None = None,
) -> PaymentEvent:
    """A declined or failed authorization: no order, but a row that says why. ``payload`` carries
    what the caller needs to find it again (checkout: the cart and its version)."""
    with transaction.atomic(durable=True):
        return _record(
            kind=Kind.FAILED, clinic=clinic, order=None, amount=amount, gateway_name=gateway_name,
            reference=reference, message=message, actor=actor, payload={"decline_code": decline_code, **(payload or {})},
        )


def _record_orphan_once(*, clinic: Clinic, kind: str, reference: str, amount: Decimal, gateway_name: str,
                        message: str, actor=None) -> PaymentEvent:
    """Record what happened to a payment that has no order, once per payment and kind."""
    with transaction.atomic(durable=True):
        Clinic.objects.select_for_update().filter(pk=clinic.pk).first()  # serialise repeated deliveries
        existing = PaymentEvent.objects.filter(order=None, reference=reference, kind=kind).first()
        if existing is not None:
            return existing
        return _record(
            kind=kind, clinic=clinic, order=None, amount=amount, gateway_name=gateway_name,
            reference=reference, message=message, actor=actor, payload={"orphan": True},
        )


def authorization_release(*, clinic: Clinic, reference: str, amount: Decimal, message: str, actor=None) -> PaymentEvent:
    """Cancel an approved authorization that pays for no order (its checkout failed after the
    approval, or died) and record why, once. Raises PaymentError when the gateway cannot be
    reached: the Stripe reconciliation then releases it when Stripe reports it again."""
    gateway = get_gateway()
    gateway.cancel(reference=reference, idempotency_key=f"fizy-orphan-{reference}-cancel")
    return _record_orphan_once(
        clinic=clinic, kind=Kind.CANCELLED, reference=reference, amount=amount, gateway_name=gateway.name,
        message=message, actor=actor,
    )


def orphan_refund(*, clinic: Clinic, reference: str, amount: Decimal) -> PaymentEvent:
    """Give back a charge that has no order (never a charge without an order), once."""
    gateway = get_gateway()
    refund = gateway.refund(reference=reference, amount=amount, idempotency_key=f"fizy-orphan-{reference}-refund")
    return _record_orphan_once(
        clinic=clinic, kind=Kind.REFUNDED, reference=reference, amount=refund.amount, gateway_name=gateway.name,
        message=f"A charge without an order was refunded ({refund.reference}).",
    )


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
            with transaction.atomic(durable=True):
                _record(
                    kind=Kind.FAILED, clinic=order.clinic, order=order, amount=amount, gateway_name=gateway.name,
                    reference=order.payment_reference, message=exc.message, payload={"action": "settle", "code": exc.code},
                )
            raise
    line_ids = [line.pk for line in accepted]
    with transaction.atomic(durable=True):
        order = Order.objects.select_for_update().select_related("clinic").get(pk=order_id)
        if order.payment_status != PS.AUTHORIZED:
            return order  # a concurrent run recorded it
        order_record_settled_state(order=order, state=state, gateway_name=gateway.name, line_ids=line_ids)
    # A line cancelled while the capture was in flight was charged: give it back.
    for line in OrderLine.objects.filter(pk__in=line_ids).exclude(status__in=CHARGEABLE):
        order_line_refund(line=line, actor=None)
    order.refresh_from_db()
    return order


NOTHING_ACCEPTED = "No line was accepted by a partner pharmacy; the authorization was released."


def order_record_settled_state(
    *, order: Order, state: PaymentState, gateway_name: str, line_ids: list[int] | None,
    cancel_message: str = NOTHING_ACCEPTED,
) -> None:
    """Record a capture or a cancellation the gateway reports (after our own capture, or when
    Stripe tells us: ``line_ids`` None). The caller holds the order's lock."""
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
    with transaction.atomic(durable=True):
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
