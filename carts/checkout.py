"""Checkout: one payment for the whole cart, then one order with a partner order per pharmacy.

In this order (Saleor's complete_checkout, Oscar's OrderCreator):
1. lock the cart row, check the coordinator saw this version, validate and route it again,
   reserve one fill of each line's prescription (a conditional update: a line whose
   prescription's last fill went to another order is flagged ``refills_exhausted`` and nothing
   is authorized), and move it to "checking out" (edits are refused meanwhile);
2. authorize the total with the clinic's saved card — outside any database lock;
3. re-lock the cart and create the Order, one PartnerOrder per partner and one OrderLine per
   line (patient, ship-to, product, partner SKU, SIG and prices snapshotted), close the cart,
   open a fresh one, and queue the partner dispatch after commit.
A declined or failed authorization puts the cart back exactly as it was (same lines, same
version) and gives the reserved fills back; the order uses them (step 3, same transaction). If step 3 fails after an approval, the authorization is cancelled: never a charge
without an order. A double submit finds the cart checking out (or already replaced by an empty
one) and does nothing; the authorization's idempotency key is per cart version (and attempt), so
even a retry that reaches the gateway replays the first authorization instead of charging twice.

Checkout enters fulfillment once: :func:`fulfillment.placement.order_place`, with a draft per
line. The payment helpers that are keyed by the cart (the authorization's idempotency key, its
metadata, the failure records of a cart version) live here.
"""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from clinics.models import Clinic
from clinics.payment_messages import decline_message, payment_error_message
from fizy.lib.money import ZERO
from fizy.lib.payments import Authorization, PaymentError, get_gateway
from fulfillment.models import Order
from fulfillment.placement import LineDraft, OutOfStock, order_place
from fulfillment.selectors import failed_authorizations
from fulfillment.settlement import (
    CHECKOUT_GRACE,
    authorization_check_live,
    authorization_record_pending,
    authorization_release,
    payment_record_failure,
)
from prescriptions.services import FillsUnavailable, fills_release, fills_reserve, fills_use
from routing.engine import RoutingDecision, route_lines

from .models import ACTIVE_CART_STATUSES, Cart, CartLine
from .pricing import CartPrice, cart_price
from .validation import Problem, has_blocking_errors, refills_exhausted_problem, validate_cart

logger = logging.getLogger(__name__)


class CheckoutError(Exception):
    """Checkout refused before any money moved; the message says what to do."""


class CheckoutBlocked(CheckoutError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = sum(p.is_error for p in problems)
        super().__init__(
            f"The cart has {errors} problem{'s' if errors != 1 else ''} to fix before it can be ordered; "
            "fix them on the cart page."
        )


class PaymentDeclined(CheckoutError):
    """The authorization was declined or failed; the cart is unchanged."""


@dataclass(frozen=True)
class PriceChange:
    line: CartLine | None  # None: the platform fee
    old: Decimal | None
    new: Decimal | None


class TotalChanged(CheckoutError):
    """The total is not the one the coordinator confirmed (a price, shipping, routing or the fee
    changed since the review): nothing was authorized. ``changes`` says what changed, line by line."""

    def __init__(self, *, old_total: Decimal, new_total: Decimal, changes: list[PriceChange]):
        self.old_total, self.new_total, self.changes = old_total, new_total, changes
        super().__init__(
            f"The total changed since you reviewed it: ${old_total:,} → ${new_total:,}. Nothing was charged. "
            "Check the changes below, then place the order for the new total."
        )


@dataclass(frozen=True)
class Quote:
    """What the coordinator saw on the review page: each line's price, the fee and the total."""

    total: Decimal
    fee: Decimal
    lines: dict[int, Decimal]

    def as_dict(self) -> dict:
        return {"total": str(self.total), "fee": str(self.fee), "lines": {str(k): str(v) for k, v in self.lines.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Quote":
        return cls(total=Decimal(data["total"]), fee=Decimal(data["fee"]),
                   lines={int(k): Decimal(v) for k, v in data["lines"].items()})

    @classmethod
    def of(cls, price: CartPrice) -> "Quote":
        return cls(total=price.total, fee=price.fee, lines={pk: price.line_price(pk) for pk in price.landed})


def _price_changes(lines: list[CartLine], quote: Quote, price: CartPrice) -> list[PriceChange]:
    changes = []
    for line in lines:
        old, new = quote.lines.get(line.pk), price.line_price(line.pk) if line.pk in price.landed else None
        if old != new:
            changes.append(PriceChange(line=line, old=old, new=new))
    if quote.fee != price.fee:
        changes.append(PriceChange(line=None, old=quote.fee, new=price.fee))
    return changes


def _cart_payload(cart: Cart) -> dict:
    return {"cart": cart.pk, "cart_version": cart.version}


def authorization_idempotency_key(*, cart: Cart, payment_method_id: str = "") -> str:
    """One key per checkout attempt (the cart, its version, the card, when the attempt started,
    and how many attempts at this version produced no order): the ``stripe`` library's own
    retries of a request replay the first answer, but a new attempt never does — Stripe would
    otherwise replay the first answer: a decline, or an authorization that no longer exists. A
    double submit never reaches the gateway twice: the cart is "checking out" meanwhile."""
    failed = failed_authorizations(clinic_id=cart.clinic_id, payload=_cart_payload(cart))
    started = f"-t{cart.checkout_started_at:%Y%m%d%H%M%S%f}" if cart.checkout_started_at else ""
    return f"fizy-cart-{cart.pk}-v{cart.version}-{payment_method_id or 'card'}-a{failed}{started}-authorize"


def authorization_metadata(*, cart: Cart) -> dict[str, str]:
    """What the PaymentIntent carries so a Stripe event can be tied back to its checkout, and
    tell whether that checkout may still be running (``checkout_started_at``, Unix seconds)."""
    metadata = {"clinic_id": str(cart.clinic_id), "cart_id": str(cart.pk), "cart_version": str(cart.version)}
    if cart.checkout_started_at is not None:
        metadata["checkout_started_at"] = str(int(cart.checkout_started_at.timestamp()))
    return metadata


@dataclass
class _Prepared:
    cart: Cart
    lines: list[CartLine]
    decisions: dict[int, RoutingDecision]
    price: CartPrice

    @property
    def total(self) -> Decimal:
        return self.price.total


def fills_hold(cart: Cart) -> str:
    """What the fills reserved by a checkout of ``cart`` are held under (one checkout at a time)."""
    return f"cart-{cart.pk}"


def _reserve_fills(cart: Cart, lines: list[CartLine]) -> None:
    """One fill of each line's prescription, in the caller's locked transaction. A prescription
    that lost its last fill to another order since validation blocks the checkout: its line is
    flagged, nothing is authorized (the caller's transaction rolls back every reservation)."""
    fills_release(hold=fills_hold(cart))  # a dead checkout's leftovers, if any
    try:
        fills_reserve(hold=fills_hold(cart), prescription_ids=[l.prescription_id for l in lines if l.prescription_id])
    except FillsUnavailable as exc:
        lost = set(exc.prescription_ids)
        raise CheckoutBlocked([refills_exhausted_problem(line, line.prescription)
                               for line in lines if line.prescription_id in lost]) from exc


def _prepare(*, clinic: Clinic, expected_version: int | None, quote: Quote | None) -> _Prepared:
    with transaction.atomic(durable=True):
        cart = Cart.objects.select_for_update().filter(clinic=clinic, status__in=ACTIVE_CART_STATUSES).first()
        if cart is None or (cart.status == Cart.Status.OPEN and not cart.lines.exists()):
            raise CheckoutError("The cart is empty: there is nothing to order. If you just placed an order, "
                                "it is on the Orders page.")
        if cart.status == Cart.Status.CHECKING_OUT and timezone.now() - cart.checkout_started_at < CHECKOUT_GRACE:
            raise CheckoutError("This cart is already being ordered (perhaps by a colleague, or a second click). "
                                "Its order will appear on the Orders page in a moment.")
        if expected_version is not None and cart.version != expected_version:
            raise CheckoutError("The cart changed since you reviewed it (a colleague may have edited it). "
                                "Review the updated cart, then place the order again.")
        lines = list(cart.lines.select_related("patient", "product", "prescriber", "prescription").order_by("pk"))
        decisions = route_lines(lines, clinic=clinic)
        problems = validate_cart(cart, decisions=decisions, lines=lines)
        if has_blocking_errors(problems):
            raise CheckoutBlocked(problems)
        price = cart_price(clinic=clinic, decisions=decisions)
        if quote is not None and quote.total != price.total:
            raise TotalChanged(old_total=quote.total, new_total=price.total,
                               changes=_price_changes(lines, quote, price))
        _reserve_fills(cart, lines)
        cart.status = Cart.Status.CHECKING_OUT
        cart.checkout_started_at = timezone.now()
        cart.save(update_fields=["status", "checkout_started_at", "updated_at"])
    return _Prepared(cart=cart, lines=lines, decisions=decisions, price=price)


def _reopen(cart: Cart) -> None:
    """Put the cart back as it was before the checkout started (the version is untouched), and
    give its reserved fills back."""
    with transaction.atomic():
        fills_release(hold=fills_hold(cart))
        Cart.objects.filter(pk=cart.pk, status=Cart.Status.CHECKING_OUT).update(
            status=Cart.Status.OPEN, checkout_started_at=None)


def reopen_stale_checkouts() -> int:
    """Carts left "checking out" longer than the grace by a checkout that died (its authorization,
    if any, is released by fulfillment's orphan sweeper): open for edits again, unchanged.
    Returns how many were reopened."""
    stale = Cart.objects.filter(status=Cart.Status.CHECKING_OUT, checkout_started_at__lt=timezone.now() - CHECKOUT_GRACE)
    reopened = 0
    for cart in stale.only("pk"):
        with transaction.atomic():
            if Cart.objects.filter(pk=cart.pk, status=Cart.Status.CHECKING_OUT,
                                   checkout_started_at__lt=timezone.now() - CHECKOUT_GRACE).update(
                    status=Cart.Status.OPEN, checkout_started_at=None):
                fills_release(hold=fills_hold(cart))
                reopened += 1
    return reopened


def _create_order(*, prepared: _Prepared, actor, authorization: Authorization, gateway_name: str) -> Order:
    """The order of the prepared lines (fulfillment's one placement service), then close the
    cart and open a fresh one — in the caller's transaction, with the cart row locked."""
    cart, decisions = prepared.cart, prepared.decisions
    drafts = [
        LineDraft(
            patient=line.patient, product=line.product, prescriber=line.prescriber, quantity=line.quantity,
            sig=line.sig, days_supply=line.days_supply, refills=line.refills,
            clinical_difference=line.clinical_difference, partner=decisions[line.pk].partner,
            offering=decisions[line.pk].offering, unit_price=decisions[line.pk].unit_price,
            shipping_share=decisions[line.pk].shipping_share, landed_cost=decisions[line.pk].landed_cost,
            routing_reason=decisions[line.pk].reason, fee_share=prepared.price.fee_shares.get(line.pk, ZERO),
            prescription=line.prescription,
        )
        for line in prepared.lines
    ]
    order = order_place(clinic=cart.clinic, cart_id=cart.pk, drafts=drafts, authorization=authorization,
                        gateway_name=gateway_name, actor=actor)
    fills_use(hold=fills_hold(cart), order_lines=dict(
        order.lines.filter(prescription__isnull=False).values_list("prescription_id", "pk")))
    cart.status = Cart.Status.SUBMITTED
    cart.submitted_at = timezone.now()
    cart.save(update_fields=["status", "submitted_at", "updated_at"])
    Cart.objects.create(clinic=cart.clinic)
    return order


def cart_checkout(*, clinic: Clinic, actor, expected_version: int | None = None, quote: Quote | None = None) -> Order:
    """Place the clinic's cart as one order paid by one authorization. ``quote``: the prices the
    coordinator confirmed (the place-order form carries them); a different total authorizes
    nothing and raises TotalChanged. Raises CheckoutError (nothing happened) or PaymentDeclined
    (nothing happened; the reason is in the message)."""
    if not clinic.payment_method_id:
        raise CheckoutError("This clinic has no saved card yet. A clinic admin can add one on the Billing page.")
    prepared = _prepare(clinic=clinic, expected_version=expected_version, quote=quote)
    cart = prepared.cart
    gateway = get_gateway()

    def fail(*, message: str, reference: str = "", decline_code: str = "") -> None:
        _reopen(cart)
        payment_record_failure(clinic=clinic, message=message, reference=reference, amount=prepared.total,
                               gateway_name=gateway.name, decline_code=decline_code, actor=actor,
                               payload=_cart_payload(cart))

    try:
        authorization = gateway.authorize(
            amount=prepared.total, currency="usd", customer_id=clinic.stripe_customer_id,
            payment_method_id=clinic.payment_method_id,
            idempotency_key=authorization_idempotency_key(cart=cart, payment_method_id=clinic.payment_method_id),
            description=f"Fizy order for {clinic.name} ({len(prepared.lines)} lines)",
            metadata=authorization_metadata(cart=cart),
        )
        # A replayed answer is what Stripe said the first time: the authorization may since have
        # been released or have expired. Look before ordering on it.
        dead = authorization_check_live(authorization=authorization, amount=prepared.total) \
            if authorization.ok and authorization.replayed else ""
    except PaymentError as exc:
        fail(message=exc.message, decline_code=exc.code)
        raise PaymentDeclined(f"The payment could not be made: {payment_error_message(exc)} Nothing was charged; "
                              "the cart is unchanged.") from exc
    if not authorization.ok:
        message = decline_message(authorization)
        fail(message=message, reference=authorization.reference, decline_code=authorization.decline_code)
        raise PaymentDeclined(message + " Nothing was charged; the cart is unchanged.")
    if dead:
        fail(message=f"Not used: {dead}.", reference=authorization.reference, decline_code="authorization_not_live")
        raise PaymentDeclined(f"The payment could not be made: {dead}. Nothing was charged; the cart is unchanged. "
                              "Place the order again: it gets a new authorization.")
    authorization_record_pending(clinic=clinic, authorization=authorization, gateway_name=gateway.name, actor=actor,
                                 payload=_cart_payload(cart))
    try:
        with transaction.atomic(durable=True):
            locked = Cart.objects.select_for_update().get(pk=cart.pk)
            if locked.status != Cart.Status.CHECKING_OUT or locked.version != cart.version:
                raise CheckoutError("The cart changed while the payment was being authorized; review it and "
                                    "place the order again.")
            prepared.cart = locked
            return _create_order(prepared=prepared, actor=actor, authorization=authorization,
                                 gateway_name=gateway.name)
    except Exception as exc:
        if not isinstance(exc, (CheckoutError, OutOfStock)):
            logger.exception("checkout of cart %s failed after authorization %s; cancelling it",
                             cart.pk, authorization.reference)
        try:
            authorization_release(
                clinic=clinic, reference=authorization.reference, amount=authorization.amount, actor=actor,
                payload=_cart_payload(cart),
                message="The order could not be created after the card was authorized; the authorization was "
                        "released and nothing was charged.",
            )
        finally:
            _reopen(cart)
        if isinstance(exc, OutOfStock):
            raise CheckoutError(f"{exc} The card authorization was released and nothing was charged; the line is "
                                "flagged on the cart.") from exc
        raise
