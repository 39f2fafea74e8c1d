"""Money after the order, in one module: record the authorization an order is paid by, release
an authorization that pays for nothing, capture what partners accepted, charge lines accepted
after the capture, and refund a line that will not be charged after all. The Stripe
reconciliation lives beside the Stripe endpoint (``fulfillment.stripe_webhooks``); *when* money
moves is decided by the line state machine (``fulfillment.status``) and the sweepers
(``fulfillment.tasks``), which queue the tasks that call these services.

The rules:

- An order is paid by one authorization for its total (lines' landed cost + their shares of the
  platform fee). While it is open, settlement captures the price of the accepted lines once every
  line has its answer — or at the latest ``settings.CAPTURE_AFTER`` after it was placed, because
  Stripe releases uncaptured authorizations after about 7 days. A capture happens once: what it
  does not take is released.
- A line accepted after that (or after the authorization expired or was released) is charged on
  its own by an off-session payment on the clinic's saved card ("follow-up charge").
- A line that ends rejected, cancelled or failed after it was charged is refunded, once.

Each line records what it was charged, by which payment, and what was given back, so
``check_money`` can prove that captured + charged − refunded equals what the charged lines cost.

Every action writes a :class:`~fulfillment.models.PaymentEvent` and an audit row in the same
transaction. The gateway is never called while a row lock is held: call it first, then lock,
re-check that nobody recorded the same thing meanwhile, and record. Gateway calls carry
idempotency keys derived from what they act on, so running a service twice charges once; a
capture's lines are written down (``Order.capture_plan``) before Stripe is called, so a capture
that succeeded just before a crash is still attributed to the right lines.
"""

from __future__ import annotations

import datetime
import logging
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from clinics.audit import Action, audit_record
from clinics.models import Clinic
from clinics.payment_messages import decline_message, payment_error_message
from fizy.lib.money import ZERO, to_cents
from fizy.lib.payments import (
    CANCELED,
    REQUIRES_CAPTURE,
    SUCCEEDED,
    Authorization,
    Gateway,
    PaymentError,
    PaymentState,
    get_gateway,
)

from .models import Order, OrderLine, PaymentEvent
from .status import ANSWERED, CHARGEABLE

logger = logging.getLogger(__name__)

PS = Order.PaymentStatus
Kind = PaymentEvent.Kind
AUDIT_ACTIONS = {
    Kind.AUTHORIZED: Action.PAYMENT_AUTHORIZED,
    Kind.CAPTURED: Action.PAYMENT_CAPTURED,
    Kind.PARTIALLY_CAPTURED: Action.PAYMENT_PARTIALLY_CAPTURED,
    Kind.CANCELLED: Action.PAYMENT_CANCELLED,
    Kind.REFUNDED: Action.PAYMENT_REFUNDED,
    Kind.FAILED: Action.PAYMENT_FAILED,
    Kind.CHARGED: Action.PAYMENT_CHARGED,
}
# A checkout that started less than this ago may still turn its authorization into an order;
# one that started longer ago was interrupted (its cart may be ordered again, its authorization
# released).
CHECKOUT_GRACE = datetime.timedelta(minutes=10)
NOTHING_ACCEPTED = "No line was accepted by a partner pharmacy; the authorization was released."
EXPIRED = (
    "The card authorization expired before the accepted lines were captured; each accepted line is charged "
    "on its own on the clinic's saved card."
)


class PaymentServiceError(Exception):
    """A payment action that cannot be done on this order or line; the message is readable."""


def authorization_is_live(order: Order, *, now: datetime.datetime | None = None) -> bool:
    """Our records say the order's authorization is open and it is younger than Stripe keeps one."""
    now = now or timezone.now()
    return order.payment_status == PS.AUTHORIZED and now - order.placed_at < settings.AUTHORIZATION_LIFE


def capture_is_due(order: Order, *, now: datetime.datetime | None = None) -> bool:
    """The authorization is old enough that the accepted lines must be captured now."""
    return (now or timezone.now()) - order.placed_at >= settings.CAPTURE_AFTER


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
    message: str = "", payload: dict | None = None, actor=None, patient=None, line: OrderLine | None = None,
) -> PaymentEvent:
    """One PaymentEvent and its audit row. Call inside the service's transaction."""
    event = PaymentEvent.objects.create(
        order=order, line=line, clinic=clinic, kind=kind, amount=amount, gateway=gateway_name,
        reference=reference, message=message, payload=payload or {},
    )
    audit_record(
        action=AUDIT_ACTIONS[kind],
        actor=actor,
        clinic=clinic,
        patient=patient if patient is not None else (line.patient if line is not None else None),
        obj=line if line is not None else (order if order is not None else event),
        detail={"amount": str(amount), "reference": reference, "gateway": gateway_name, "event_id": event.pk,
                "order_id": order.pk if order is not None else None},
    )
    return event


# --- authorization (called by order placement and checkout) -------------------------------------


def authorization_record_pending(*, clinic: Clinic, authorization: Authorization, gateway_name: str, actor=None,
                                 payload: dict | None = None) -> PaymentEvent:
    """Write down an approved authorization the moment the gateway returns it, before its order
    exists: if the process dies before the order is created, the orphan sweeper finds and
    releases it (never a hold on the clinic's card without an order)."""
    with transaction.atomic(durable=True):
        existing = PaymentEvent.objects.filter(kind=Kind.AUTHORIZED, reference=authorization.reference).first()
        if existing is not None:
            return existing  # a resumed checkout replayed the same authorization
        return _record(
            kind=Kind.AUTHORIZED, clinic=clinic, order=None, amount=authorization.amount, gateway_name=gateway_name,
            reference=authorization.reference, actor=actor, payload={"status": authorization.status, **(payload or {})},
        )


def order_record_authorization(
    *, order: Order, authorization: Authorization, gateway_name: str, actor=None
) -> PaymentEvent:
    """Mark ``order`` as paid by ``authorization`` (made just before the order was created). The
    authorization's pending record, if checkout wrote one, becomes the order's; one the orphan
    sweeper has claimed for release cannot pay for an order (raises PaymentServiceError, and the
    caller's transaction creating the order rolls back)."""
    if not authorization.ok:
        raise PaymentServiceError("A declined authorization cannot pay for an order.")
    with transaction.atomic():
        pending = (PaymentEvent.objects.select_for_update(no_key=True)
                   .filter(kind=Kind.AUTHORIZED, reference=authorization.reference).first())
        if pending is not None and (pending.order_id is not None or pending.payload.get("released")):
            raise PaymentServiceError(
                f"The card authorization {authorization.reference} was released (or pays for another order); "
                "it cannot pay for this one."
            )
        order.payment_gateway = gateway_name
        order.payment_reference = authorization.reference
        order.payment_status = PS.AUTHORIZED
        order.amount_authorized = authorization.amount
        order.save(update_fields=["payment_gateway", "payment_reference", "payment_status", "amount_authorized"])
        if pending is not None:
            pending.order = order
            pending.save(update_fields=["order"])
            audit_record(action=Action.PAYMENT_AUTHORIZED, actor=actor, clinic=order.clinic, obj=order,
                         detail={"amount": str(authorization.amount), "reference": authorization.reference,
                                 "gateway": gateway_name, "event_id": pending.pk, "order_id": order.pk})
            return pending
        return _record(
            kind=Kind.AUTHORIZED, clinic=order.clinic, order=order, amount=authorization.amount,
            gateway_name=gateway_name, reference=authorization.reference, actor=actor,
            payload={"status": authorization.status},
        )


def authorization_check_live(*, authorization: Authorization, amount: Decimal) -> str:
    """For an authorization whose state is in doubt (the gateway replayed a saved answer): ask the
    gateway what it is now. Returns "" when it is open for exactly ``amount``, else why not."""
    state = get_gateway().retrieve(reference=authorization.reference)
    if state.status != REQUIRES_CAPTURE:
        return f"the card authorization {authorization.reference} is {state.status.replace('_', ' ')}"
    if state.amount_capturable != amount:
        return f"the card authorization is for ${state.amount_capturable}, not ${amount}"
    return ""


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
                        message: str, actor=None, payload: dict | None = None) -> PaymentEvent:
    """Record what happened to a payment that has no order, once per payment and kind."""
    with transaction.atomic(durable=True):
        Clinic.objects.select_for_update(no_key=True).filter(pk=clinic.pk).first()  # serialise repeated deliveries
        existing = PaymentEvent.objects.filter(order=None, reference=reference, kind=kind).first()
        if existing is not None:
            return existing
        return _record(
            kind=kind, clinic=clinic, order=None, amount=amount, gateway_name=gateway_name,
            reference=reference, message=message, actor=actor, payload={"orphan": True, **(payload or {})},
        )


class AuthorizationInUse(PaymentServiceError):
    """The authorization pays for an order: it is not released."""


def _claim_for_release(reference: str) -> None:
    """Mark the authorization's pending record released (under its row lock), so no checkout can
    place an order on it from now on; refuse when an order already uses it."""
    with transaction.atomic(durable=True):
        pending = (
            PaymentEvent.objects.select_for_update(no_key=True)
            .filter(kind=Kind.AUTHORIZED, reference=reference).first()
        )
        if pending is None:
            return
        if pending.order_id is not None:
            raise AuthorizationInUse(f"The authorization {reference} pays for an order; it is not released.")
        if not pending.payload.get("released"):
            pending.payload = {**pending.payload, "released": True}
            pending.save(update_fields=["payload"])


def authorization_release(
    *, clinic: Clinic, reference: str, amount: Decimal, message: str, actor=None, payload: dict | None = None,
) -> PaymentEvent:
    """Cancel an approved authorization that pays for no order (its checkout failed after the
    approval, or died) and record why, once. It is claimed first, so no order can be placed on it
    afterwards; one that is already cancelled (expired, released before) is only recorded.
    Raises AuthorizationInUse when an order uses it, PaymentError when the gateway cannot be
    reached (the Stripe reconciliation and the orphan sweeper release it later)."""
    _claim_for_release(reference)
    gateway = get_gateway()
    try:
        gateway.cancel(reference=reference, idempotency_key=f"fizy-orphan-{reference}-cancel")
    except PaymentError:
        if gateway.retrieve(reference=reference).status != CANCELED:
            raise
    return _record_orphan_once(
        clinic=clinic, kind=Kind.CANCELLED, reference=reference, amount=amount, gateway_name=gateway.name,
        message=message, actor=actor, payload=payload,
    )


def release_orphan_authorizations(*, now: datetime.datetime | None = None) -> int:
    """The orphan sweeper: approved authorizations written down by a checkout that never created
    its order (the process died) are released once the checkout's grace has passed. Returns how
    many were released."""
    now = now or timezone.now()
    orphans = (PaymentEvent.objects.filter(kind=Kind.AUTHORIZED, order=None, at__lt=now - CHECKOUT_GRACE)
               .exclude(reference__in=PaymentEvent.objects.filter(kind=Kind.CANCELLED, order=None).values("reference"))
               .select_related("clinic"))
    released = 0
    for event in orphans:
        try:
            authorization_release(
                clinic=event.clinic, reference=event.reference, amount=event.amount,
                payload={k: v for k, v in event.payload.items() if k in ("cart", "cart_version")},
                message="An authorization whose checkout never created its order was released by the sweeper.",
            )
        except AuthorizationInUse:
            continue
        except PaymentError as exc:
            logger.warning("orphan authorization %s not released yet (%s); the next sweep retries", event.reference, exc)
            continue
        released += 1
    return released


def sweep_payments(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """The periodic payment sweeper (a django-q2 schedule; idempotent, safe on several workers):
    capture orders whose authorization reached the safe age, charge accepted lines that no
    authorization covers any more, and release orphan authorizations. Failures of one order are
    logged and left for the next run; they never stop the others."""
    now = now or timezone.now()
    done = {"captured": 0, "charged": 0, "released": release_orphan_authorizations(now=now)}
    due = Order.objects.filter(payment_status=PS.AUTHORIZED, placed_at__lte=now - settings.CAPTURE_AFTER)
    uncovered = Order.objects.exclude(payment_status__in=[PS.AUTHORIZED, PS.NONE]).filter(
        lines__status__in=CHARGEABLE, lines__amount_charged=0, lines__charge_failed_at=None)
    for order_id in due.values_list("pk", flat=True):
        try:
            order_settle_payment(order_id=order_id)
            done["captured"] += 1
        except (PaymentError, PaymentServiceError) as exc:
            logger.warning("sweeper: order %s not settled: %s", order_id, exc)
    for order_id in uncovered.values_list("pk", flat=True).distinct():
        try:
            order_settle_payment(order_id=order_id)
            done["charged"] += 1
        except (PaymentError, PaymentServiceError) as exc:
            logger.warning("sweeper: order %s follow-up charges not made: %s", order_id, exc)
    return done


def orphan_refund(*, clinic: Clinic, reference: str, amount: Decimal) -> PaymentEvent:
    """Give back a charge that has no order (never a charge without an order), once."""
    gateway = get_gateway()
    refund = gateway.refund(reference=reference, amount=amount, idempotency_key=f"fizy-orphan-{reference}-refund")
    return _record_orphan_once(
        clinic=clinic, kind=Kind.REFUNDED, reference=reference, amount=refund.amount, gateway_name=gateway.name,
        message=f"A charge without an order was refunded ({refund.reference}).",
    )


# --- settlement ---------------------------------------------------------------------------------


def _state_after_error(gateway: Gateway, reference: str, exc: PaymentError) -> PaymentState:
    """A capture or cancel failed: if the payment is already settled (an earlier attempt did it and
    the process died before recording it, or Stripe let the authorization expire), go on with
    what the gateway says; otherwise re-raise."""
    try:
        state = gateway.retrieve(reference=reference)
    except PaymentError:
        raise exc from None
    if state.status in (SUCCEEDED, CANCELED):
        return state
    raise exc


def _plan_capture(order_id: int) -> dict | None:
    """Write down which lines the capture takes (once per order), or read the plan an earlier run
    wrote. None when the order no longer waits for a capture."""
    with transaction.atomic(durable=True):
        order = Order.objects.select_for_update(no_key=True).get(pk=order_id)
        if order.payment_status != PS.AUTHORIZED:
            return None
        if order.capture_plan:
            return order.capture_plan
        accepted = list(
            order.lines.filter(status__in=CHARGEABLE, amount_charged=0).order_by("pk").values_list("pk", "landed_cost", "fee_share")
        )
        # The capture takes the accepted lines that fit in the authorization, in line order. A line
        # that does not fit (rerouted to a dearer pharmacy after checkout) is charged on its own
        # by a follow-up payment once the capture is recorded.
        taken, amount = [], ZERO
        for pk, cost, fee in accepted:
            if amount + cost + fee <= order.amount_authorized:
                taken.append(pk)
                amount += cost + fee
        if len(taken) < len(accepted):
            logger.info("order %s: %s accepted lines do not fit in the authorization; charged on their own",
                        order.pk, len(accepted) - len(taken))
        order.capture_plan = {"line_ids": taken, "amount": str(amount)}
        order.save(update_fields=["capture_plan"])
        return order.capture_plan


def _waiting_for_answers(order: Order) -> bool:
    """Some line has no final answer yet and the authorization is young enough to wait for it.
    Re-arms the trigger that queues settlement (``settlement_requested_at``) so the next final
    answer queues it anew, and looks again so an answer given meanwhile is not missed."""
    if capture_is_due(order):
        return False
    if all(status in ANSWERED for status in order.lines.values_list("status", flat=True)):
        return False
    Order.objects.filter(pk=order.pk).update(settlement_requested_at=None)
    waiting = list(order.lines.exclude(status__in=ANSWERED).values_list("pk", flat=True))
    if waiting:
        logger.info("order %s not settled: lines %s have no final answer yet", order.pk, waiting)
    return bool(waiting)


def order_settle_payment(*, order_id: int) -> Order:
    """Settle what the order's payment can settle now (the module's rules), safe to run any time
    and any number of times:

    - authorization open, and every line answered or the capture due: capture the accepted lines
      (or release the authorization when none was accepted);
    - authorization no longer open (captured, released, expired): charge every accepted line that
      is not charged yet by a follow-up payment.
    """
    order = Order.objects.select_related("clinic").get(pk=order_id)
    if order.payment_status == PS.AUTHORIZED:
        if _waiting_for_answers(order):
            return order
        _capture(order)
        order.refresh_from_db()
    if order.payment_status != PS.NONE:
        for line_id in order.lines.filter(status__in=CHARGEABLE, amount_charged=0, charge_failed_at=None).values_list(
            "pk", flat=True
        ):
            line_charge_follow_up(line_id=line_id)
    order.refresh_from_db()
    return order


def _capture(order: Order) -> None:
    plan = _plan_capture(order.pk)
    if plan is None:
        return
    amount = Decimal(plan["amount"])
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
    with transaction.atomic(durable=True):
        locked = order_lock_with_lines(order_id=order.pk)
        if locked.payment_status != PS.AUTHORIZED:
            return  # a concurrent run recorded it
        order_record_settled_state(order=locked, state=state, gateway_name=gateway.name)
    # A line cancelled while the capture was in flight was charged: give it back.
    for line in OrderLine.objects.filter(pk__in=plan["line_ids"], amount_charged__gt=0).exclude(status__in=CHARGEABLE):
        order_line_refund(line=line, actor=None)


def order_lock_with_lines(*, order_id: int) -> Order:
    """Lock the order's lines (in id order), then the order (with its clinic), in the caller's
    transaction, and return the order. Writing a settlement onto the lines takes its locks in the
    order a partner's answer takes them (its line, then the line's order, to see whether the order
    is fully answered: status.order_request_settlement_if_answered): locking the order first and
    the lines second would deadlock against a webhook for one of its lines."""
    list(OrderLine.objects.select_for_update(of=("self",), no_key=True).filter(order_id=order_id).order_by("pk")
         .values_list("pk", flat=True))
    return Order.objects.select_for_update(no_key=True).select_related("clinic").get(pk=order_id)


def order_record_settled_state(
    *, order: Order, state: PaymentState, gateway_name: str, cancel_message: str = NOTHING_ACCEPTED,
) -> None:
    """Record a capture or a cancellation the gateway reports, after our own capture or when
    Stripe tells us. A capture is attributed to the lines of the order's capture plan; a capture
    made without one (at Stripe's dashboard) is recorded for the order and left for staff (it
    shows in ``check_money``). The caller holds the locks of :func:`order_lock_with_lines`."""
    if state.status == CANCELED:
        expired = state.cancellation_reason == "automatic"
        order.payment_status = PS.EXPIRED if expired else PS.CANCELLED
        order.save(update_fields=["payment_status"])
        _record(
            kind=Kind.CANCELLED, clinic=order.clinic, order=order, amount=order.amount_authorized,
            gateway_name=gateway_name, reference=order.payment_reference, message=EXPIRED if expired else cancel_message,
            payload={"cancellation_reason": state.cancellation_reason or ""},
        )
        return
    captured = state.amount_received
    plan = order.capture_plan or {}
    line_ids = plan.get("line_ids")
    planned = Decimal(plan["amount"]) if plan else None
    if planned is not None and planned == captured:
        lines = list(OrderLine.objects.filter(pk__in=line_ids).only("pk", "landed_cost", "fee_share"))
        for line in lines:
            line.amount_charged = line.landed_cost + line.fee_share
            line.charge_reference = order.payment_reference
        OrderLine.objects.bulk_update(lines, ["amount_charged", "charge_reference"])
    else:
        line_ids = None
        logger.error("order %s: captured %s does not match its capture plan %s", order.pk, captured, plan)
    full = captured == order.amount_authorized
    order.amount_captured = captured
    order.payment_status = PS.CAPTURED if full else PS.PARTIALLY_CAPTURED
    order.save(update_fields=["amount_captured", "payment_status"])
    _record(
        kind=Kind.CAPTURED if full else Kind.PARTIALLY_CAPTURED, clinic=order.clinic, order=order,
        amount=captured, gateway_name=gateway_name, reference=order.payment_reference,
        payload={"line_ids": line_ids} if line_ids is not None else {"source": "gateway", "plan": plan},
        message="" if full else f"Captured ${captured:,} of ${order.amount_authorized:,}: only the accepted lines.",
    )


# --- follow-up charges --------------------------------------------------------------------------


def line_charge_follow_up(*, line_id: int, actor=None) -> PaymentEvent | None:
    """Charge an accepted line that no authorization covers any more (it was accepted after the
    capture, or the authorization expired or was released) on the clinic's saved card, off-session.

    A declined charge marks the line (``charge_failed_at``): it shows on the staff attention list
    and on the clinic's Billing page until a clinic admin updates the card and it is charged
    again (:func:`line_retry_charge`). Returns the event, or None when nothing was due."""
    line = OrderLine.objects.select_related("order__clinic", "patient").get(pk=line_id)
    order = line.order
    if line.status not in CHARGEABLE or line.amount_charged > 0 or authorization_is_live(order):
        return None
    clinic = order.clinic
    gateway = _gateway_for(order)
    attempt = line.payment_events.filter(kind=Kind.FAILED).count()
    amount = line.price
    if not clinic.payment_method_id:
        result = Authorization(ok=False, reference="", status="", amount=amount, code="no_card")
        message = "The clinic has no saved card: a clinic admin must add one on the Billing page."
    else:
        try:
            result = gateway.charge(
                amount=amount, currency=order.currency, customer_id=clinic.stripe_customer_id,
                payment_method_id=clinic.payment_method_id, idempotency_key=f"fizy-line-{line.pk}-charge-a{attempt}",
                description=f"Fizy order {order.number}: {line.product_name} (accepted after the first payment)",
                metadata={"clinic_id": clinic.pk, "order_id": order.pk, "line_id": line.pk},
            )
        except PaymentError as exc:
            with transaction.atomic(durable=True):
                _record(kind=Kind.FAILED, clinic=clinic, order=order, line=line, amount=amount,
                        gateway_name=gateway.name, reference="", message=payment_error_message(exc),
                        payload={"action": "follow_up", "code": exc.code, "transient": True})
            raise
        message = "" if result.ok else decline_message(result)
    with transaction.atomic(durable=True):
        locked = OrderLine.objects.select_for_update(no_key=True).get(pk=line.pk)
        if locked.amount_charged > 0:
            return None  # a concurrent run charged it
        order = Order.objects.select_for_update(no_key=True).select_related("clinic").get(pk=order.pk)
        if not result.ok:
            locked.charge_failed_at = timezone.now()
            locked.save(update_fields=["charge_failed_at"])
            return _record(
                kind=Kind.FAILED, clinic=clinic, order=order, line=locked, amount=amount, gateway_name=gateway.name,
                reference=result.reference, message=message, actor=actor,
                payload={"action": "follow_up", "decline_code": result.decline_code},
            )
        locked.amount_charged = result.amount
        locked.charge_reference = result.reference
        locked.charge_failed_at = None
        locked.save(update_fields=["amount_charged", "charge_reference", "charge_failed_at"])
        Order.objects.filter(pk=order.pk).update(amount_charged_later=F("amount_charged_later") + result.amount)
        event = _record(
            kind=Kind.CHARGED, clinic=clinic, order=order, line=locked, amount=result.amount, gateway_name=gateway.name,
            reference=result.reference, actor=actor,
            message=f"Charged {line.product_name} for {line.patient_snapshot.get('first_name', '')} on its own: "
                    "it was accepted after the order's first payment was settled.",
        )
    # Cancelled while the charge was in flight: give it back.
    if OrderLine.objects.filter(pk=line.pk).exclude(status__in=CHARGEABLE).exists():
        order_line_refund(line=line, actor=None)
    return event


def line_record_gateway_charge(*, line_id: int, order_id: int, reference: str, amount: Decimal) -> str:
    """Stripe reports a follow-up charge succeeded (``reference``, for ``line_id``). Returns
    "in_sync" when our records already say so; "updated" when the process that charged it died
    before recording it (recorded now, or refunded if the line no longer owes it); "refunded"
    when the line had already been paid by another payment (never charge a line twice)."""
    line = OrderLine.objects.select_related("order__clinic").filter(pk=line_id, order_id=order_id).first()
    if line is None:
        return "ignored"
    if line.charge_reference == reference:
        return "in_sync"
    order = line.order
    if line.amount_charged > 0 or line.status not in CHARGEABLE:
        refund = _gateway_for(order).refund(reference=reference, amount=amount,
                                            idempotency_key=f"fizy-charge-{reference}-refund")
        with transaction.atomic(durable=True):
            Order.objects.filter(pk=order.pk).update(amount_charged_later=F("amount_charged_later") + amount,
                                                     amount_refunded=F("amount_refunded") + refund.amount)
            _record(kind=Kind.CHARGED, clinic=order.clinic, order=order, line=line, amount=amount,
                    gateway_name=order.payment_gateway, reference=reference, payload={"source": "gateway"},
                    message="A second charge for a line that was already paid (or no longer owed).")
            _record(kind=Kind.REFUNDED, clinic=order.clinic, order=order, line=line, amount=refund.amount,
                    gateway_name=order.payment_gateway, reference=refund.reference,
                    payload={"payment_reference": reference, "duplicate": True},
                    message="Refunded a second charge for the same line.")
        return "refunded"
    with transaction.atomic(durable=True):
        locked = OrderLine.objects.select_for_update(no_key=True).get(pk=line.pk)
        if locked.amount_charged > 0:
            return "in_sync"
        locked.amount_charged, locked.charge_reference, locked.charge_failed_at = amount, reference, None
        locked.save(update_fields=["amount_charged", "charge_reference", "charge_failed_at"])
        Order.objects.filter(pk=order.pk).update(amount_charged_later=F("amount_charged_later") + amount)
        _record(kind=Kind.CHARGED, clinic=order.clinic, order=order, line=locked, amount=amount,
                gateway_name=order.payment_gateway, reference=reference, payload={"source": "gateway"},
                message="Stripe reports this follow-up charge; recorded now.")
    return "updated"


def line_retry_charge(*, line: OrderLine, actor) -> PaymentEvent | None:
    """A clinic admin (after updating the card) or staff asks to charge a declined line again."""
    OrderLine.objects.filter(pk=line.pk).update(charge_failed_at=None)
    return line_charge_follow_up(line_id=line.pk, actor=actor)


# --- refunds ------------------------------------------------------------------------------------


def order_line_refund(*, line: OrderLine, actor, reason: str = "", finance: bool = False) -> PaymentEvent | None:
    """Give back what a line was charged (once), when it will not be charged after all: it ended
    rejected, cancelled or failed. ``finance``: a refund staff with the finance role make with a
    ``reason`` for a line that stays shipped or delivered (audited).

    Returns the refund event, or None when no money had moved for the line."""
    line = OrderLine.objects.select_related("order__clinic", "patient").get(pk=line.pk)
    order = line.order
    if line.status in CHARGEABLE and not finance:
        raise PaymentServiceError(
            f"The line for {line.product_name} is {line.get_status_display().lower()}: "
            "cancel it before refunding it (a shipped line is refunded by Fizy finance staff, with a reason)."
        )
    if finance and not reason.strip():
        raise PaymentServiceError("A refund of a shipped line needs a reason.")
    amount = line.amount_charged - line.amount_refunded
    if amount <= 0:
        return None
    gateway = _gateway_for(order)
    refund = gateway.refund(
        reference=line.charge_reference or order.payment_reference, amount=amount,
        idempotency_key=f"fizy-line-{line.pk}-refund",
    )
    with transaction.atomic(durable=True):
        locked = OrderLine.objects.select_for_update(no_key=True).get(pk=line.pk)
        order = Order.objects.select_for_update(no_key=True).select_related("clinic").get(pk=order.pk)
        if locked.amount_refunded > 0:
            return PaymentEvent.objects.filter(line=locked, kind=Kind.REFUNDED).first()
        locked.amount_refunded = refund.amount
        locked.save(update_fields=["amount_refunded"])
        order.amount_refunded += refund.amount
        order.save(update_fields=["amount_refunded"])
        why = reason.strip() if finance else f"the line was {line.get_status_display().lower()}"
        return _record(
            kind=Kind.REFUNDED, clinic=order.clinic, order=order, line=locked, amount=refund.amount,
            gateway_name=gateway.name, reference=refund.reference, actor=actor,
            message=f"Refunded {line.product_name}: {why}.",
            payload={"line_id": line.pk, "payment_reference": line.charge_reference or order.payment_reference,
                     "status": refund.status, "finance": finance, "reason": reason.strip()},
        )
