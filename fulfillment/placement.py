"""Order placement: the one way into fulfillment for a checkout.

The caller (the cart's checkout) has validated and routed its lines and authorized one payment;
it describes each line as a :class:`LineDraft` and calls :func:`order_place` inside its own
transaction. Fulfillment creates the Order, one PartnerOrder per partner pharmacy and one
OrderLine per draft (patient, ship-to, prescriber credentials and prices snapshotted, so a
later edit of a patient or a price never changes what was ordered), records the authorization,
writes the audit rows and queues the partner dispatch after commit. It knows nothing of carts:
the order keeps the cart's id as a plain value.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F, prefetch_related_objects
from django.utils import timezone

from catalog.models import Offering, Partner, Product
from clinics.audit import Action, audit_record_many
from clinics.models import Clinic, Patient, Prescriber
from fizy.lib.money import ZERO
from fizy.lib.payments import Authorization
from prescriptions.models import Prescription

from .dispatch import order_queue_dispatch
from .models import Order, OrderLine, PartnerOrder
from .settlement import order_record_authorization


@dataclass(frozen=True)
class LineDraft:
    """One patient's line as it will be ordered: what, for whom, by whom, where it goes and why,
    and what it costs (``landed_cost`` = unit price × quantity + its share of the shipping)."""

    patient: Patient
    product: Product
    prescriber: Prescriber
    quantity: int
    sig: str
    days_supply: int | None
    refills: int
    clinical_difference: str
    partner: Partner
    offering: Offering
    unit_price: Decimal
    shipping_share: Decimal
    landed_cost: Decimal
    routing_reason: str
    fee_share: Decimal = ZERO
    prescription: Prescription | None = None  # its fill is reserved by the caller (prescriptions.services)

    @property
    def price(self) -> Decimal:
        return self.landed_cost + self.fee_share


class OutOfStock(Exception):
    """A partner no longer has enough of a product for the order; nothing was placed."""

    def __init__(self, drafts: list[LineDraft]):
        self.drafts = drafts
        draft = drafts[0]
        super().__init__(
            f"{draft.partner.name} no longer has enough {draft.product.name} in stock for this order "
            f"({sum(d.quantity for d in drafts)} needed)."
        )


class PriceMismatch(Exception):
    """The authorization is not for the price of the lines: never place such an order."""


def order_place(
    *, clinic: Clinic, drafts: list[LineDraft], authorization: Authorization, gateway_name: str, actor,
    cart_id: int | None = None,
) -> Order:
    """Create the order of ``drafts``, paid by ``authorization`` (already approved for their total).

    Call inside the caller's transaction (with the caller's source of the lines locked), so that
    the order and whatever the caller closes commit together; dispatch is queued after commit."""
    if not drafts:
        raise ValueError("An order needs at least one line.")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_place must run inside the caller's transaction.")
    total = sum((d.price for d in drafts), ZERO)
    if authorization.amount != total:
        raise PriceMismatch(f"The authorization is for ${authorization.amount}, the lines cost ${total}.")
    _reserve_stock(drafts)
    order = Order.objects.create(
        clinic=clinic, cart_id=cart_id, placed_by=actor, placed_at=timezone.now(), total=total,
        fee=sum((d.fee_share for d in drafts), ZERO), ship_to=clinic.ship_to_snapshot(),
    )
    partner_orders: dict[int, PartnerOrder] = {}
    for draft in drafts:
        po = partner_orders.get(draft.partner.pk)
        if po is None:
            po = partner_orders[draft.partner.pk] = PartnerOrder(order=order, partner=draft.partner)
        po.subtotal += draft.landed_cost
        po.shipping_fee += draft.shipping_share
    PartnerOrder.objects.bulk_create(list(partner_orders.values()))
    # Credentials for the snapshots, fetched once for all prescribers.
    prefetch_related_objects([d.prescriber for d in drafts], "licenses", "dea_registrations")
    order_lines = OrderLine.objects.bulk_create([
        OrderLine(
            order=order, partner_order=partner_orders[d.partner.pk], patient=d.patient, product=d.product,
            prescriber=d.prescriber, prescription=d.prescription, patient_snapshot=d.patient.snapshot(),
            prescriber_snapshot=d.prescriber.snapshot(state=d.patient.state), product_name=str(d.product),
            partner_sku=d.offering.partner_sku, quantity=d.quantity, sig=d.sig, days_supply=d.days_supply,
            refills=d.refills, clinical_difference=d.clinical_difference, unit_price=d.unit_price,
            shipping_share=d.shipping_share, landed_cost=d.landed_cost, fee_share=d.fee_share,
            routing_reason=d.routing_reason[:300],
        )
        for d in drafts
    ])
    order_record_authorization(order=order, authorization=authorization, gateway_name=gateway_name, actor=actor)
    audit_record_many([
        dict(action=Action.ORDER_PLACE, actor=actor, clinic=clinic, patient=ol.patient, obj=ol,
             detail={"order": order.pk, "partner": ol.partner_order.partner_id, "product": ol.product_id,
                     "quantity": ol.quantity, "landed_cost": str(ol.landed_cost)})
        for ol in order_lines
    ])
    order_queue_dispatch(order=order)
    return order


def _reserve_stock(drafts: list[LineDraft]) -> None:
    """Take each line's quantity out of its offering's stock, in the order's transaction: a
    conditional update per offering (in a fixed order, so two orders never wait on each other), so
    two clinics ordering the last units cannot both get them. Raises OutOfStock (and the caller's
    transaction rolls back) when an offering no longer has enough."""
    wanted: dict[int, list[LineDraft]] = {}
    for draft in drafts:
        wanted.setdefault(draft.offering.pk, []).append(draft)
    for offering_id in sorted(wanted):
        quantity = sum(d.quantity for d in wanted[offering_id])
        taken = Offering.objects.filter(pk=offering_id, stock_quantity__gte=quantity).update(
            stock_quantity=F("stock_quantity") - quantity
        )
        if not taken:
            raise OutOfStock(wanted[offering_id])
