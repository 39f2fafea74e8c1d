"""Reroute: a line a pharmacy rejected goes to the next eligible pharmacy, as a new line of the
same order in a partner order of its own, dispatched the normal way.

Automatic for partner-side reasons (out of stock, cannot compound, at capacity: the state
machine queues ``fulfillment.tasks.reroute_line`` when such a rejection is applied), one click
for the others (the coordinator decides the order itself was fine).

Why a new line rather than the rejected one moved: a rejection is final in the state machine
(nothing moves back from ``rejected``), the rejected line keeps its history and its partner's
webhooks keep addressing it, and the new line has the new partner's price. Money follows from
the existing rules (``fulfillment.settlement``), with nothing special for a reroute:

- the rejected line is never charged (refunded if it had been captured, as for any rejection);
- the new line is charged its own price once its pharmacy accepts it: in the order's capture
  while the authorization is open (when it fits in what was authorized; a dearer line that does
  not fit is charged on its own), by a follow-up charge otherwise;
- the line's share of the platform fee moves to the new line, so the fee is charged once.

The rejected line gave its prescription fill back (the state machine); the new line takes one fill
of the same prescription (none left: it cannot be rerouted, the clinic records a new prescription
and re-orders).

``check_money`` holds throughout: the new line is "waiting" (nothing or its price charged) until
its pharmacy answers.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import Offering
from clinics.audit import Action, audit_record
from fizy.lib.money import ZERO, format_money
from prescriptions.services import FillsUnavailable, fills_reserve, fills_use
from routing.engine import route_lines

from .attention import attention_resolve
from .dispatch import partner_order_queue_dispatch
from .models import AttentionItem, LineEvent, OrderLine, PartnerOrder
from .reasons import reason_for

logger = logging.getLogger(__name__)
S = OrderLine.Status
REROUTABLE = frozenset({S.REJECTED})
REROUTE_ACTOR = "reroute"


class RerouteError(Exception):
    """The line cannot be rerouted; the message says why, in the coordinator's words."""


def refused_partner_ids(line: OrderLine) -> set[int]:
    """The partners that refused this line or the lines it replaces (never sent back to them)."""
    partner_ids, current = set(), line
    while current is not None:
        partner_ids.add(PartnerOrder.objects.filter(pk=current.partner_order_id).values_list("partner_id", flat=True).get())
        current = (OrderLine.objects.filter(pk=current.rerouted_from_id).only("pk", "partner_order_id", "rerouted_from_id")
                   .first() if current.rerouted_from_id else None)
    return partner_ids


def _refusal(line: OrderLine) -> str:
    reason = reason_for(line.reason_code).label.lower() if line.reason_code else "rejected"
    return f"{line.partner_order.partner.name} rejected it ({reason})"


def line_reroute(*, line_id: int, actor=None, automatic: bool = False) -> OrderLine:
    """Send the rejected line ``line_id`` to the next eligible partner by the routing rules (not
    one that refused it): a new OrderLine in a new PartnerOrder, queued for dispatch after commit;
    the rejected line's attention item resolves as rerouted. Returns the new line.
    Raises :class:`RerouteError` when it cannot be done (no other eligible partner, already
    rerouted or re-ordered, not rejected)."""
    line = OrderLine.objects.select_related("order__clinic", "patient", "product", "partner_order__partner").get(pk=line_id)
    if line.status not in REROUTABLE:
        raise RerouteError(f"{line.product_name} for {line.patient.full_name} is {line.get_status_display().lower()}: "
                           "only a line a pharmacy rejected can be sent to another pharmacy.")
    need = SimpleNamespace(pk=line.pk, patient=line.patient, patient_id=line.patient_id, product=line.product,
                           product_id=line.product_id, quantity=line.quantity)
    decision = route_lines([need], clinic=line.order.clinic, exclude_partner_ids=refused_partner_ids(line))[line.pk]
    if not decision.routed:
        raise RerouteError(f"No other pharmacy can fill {line.product_name} for {line.patient.full_name}: "
                           f"{decision.reason}.")
    partner, offering = decision.partner, decision.offering
    with transaction.atomic():
        locked = OrderLine.objects.select_for_update(no_key=True).get(pk=line.pk)
        if locked.status not in REROUTABLE:
            raise RerouteError(f"{line.product_name} for {line.patient.full_name} changed meanwhile; look at the order.")
        if (OrderLine.objects.filter(rerouted_from=locked).exists() or AttentionItem.objects.filter(
                line=locked, resolution__in=[AttentionItem.Resolution.REORDERED, AttentionItem.Resolution.REROUTED]).exists()):
            raise RerouteError(f"{line.product_name} for {line.patient.full_name} was already re-ordered or sent to "
                               "another pharmacy.")
        taken = Offering.objects.filter(pk=offering.pk, stock_quantity__gte=line.quantity).update(
            stock_quantity=F("stock_quantity") - line.quantity
        )
        if not taken:
            raise RerouteError(f"{partner.name} no longer has {line.quantity} {line.product.name} in stock; try again.")
        hold = f"reroute-line-{locked.pk}"
        if locked.prescription_id:
            # The rejected line gave its fill back; the new line takes one of the same prescription.
            try:
                fills_reserve(hold=hold, prescription_ids=[locked.prescription_id])
            except FillsUnavailable:
                raise RerouteError(f"{line.patient.full_name}'s prescription for {line.product_name} has no fill left "
                                   "(or expired): record a new prescription, then re-order the line.") from None
        price_before, fee_share = locked.price, locked.fee_share
        partner_order = PartnerOrder.objects.create(
            order=line.order, partner=partner, is_reroute=True, subtotal=decision.landed_cost,
            shipping_fee=decision.shipping_share,
        )
        why = f"{_refusal(line)}; sent to {partner.name} instead"
        new = OrderLine.objects.create(
            order=line.order, partner_order=partner_order, patient=line.patient, product=line.product,
            prescriber_id=line.prescriber_id, prescription_id=locked.prescription_id, patient_snapshot=line.patient_snapshot,
            prescriber_snapshot=line.prescriber_snapshot, product_name=line.product_name,
            partner_sku=offering.partner_sku, quantity=line.quantity, sig=line.sig, days_supply=line.days_supply,
            refills=line.refills, clinical_difference=line.clinical_difference, unit_price=decision.unit_price,
            shipping_share=decision.shipping_share, landed_cost=decision.landed_cost, fee_share=fee_share,
            routing_reason=f"{why} ({decision.reason})"[:300], rerouted_from=locked, status_changed_at=timezone.now(),
        )
        if locked.prescription_id:
            fills_use(hold=hold, order_lines={locked.prescription_id: new.pk})
        # The fee share goes with the line: the order's fee is charged once.
        OrderLine.objects.filter(pk=locked.pk).update(fee_share=ZERO)
        price = new.price
        if price == price_before:
            money = f"same price, {format_money(price)}"
        else:
            money = f"{format_money(price)} instead of {format_money(price_before)}"
        note = f"{why}: {money}. The card is charged the new price once {partner.name} accepts it."
        authed = actor if getattr(actor, "is_authenticated", False) else None
        label = getattr(authed, "username", "") or REROUTE_ACTOR
        LineEvent.objects.create(
            line=new, from_status="", to_status=S.PENDING, source=LineEvent.Source.SYSTEM if automatic else LineEvent.Source.CLINIC,
            actor=authed, actor_label=label, reason=note,
            payload={"rerouted_from": locked.pk, "from_partner": line.partner_order.partner_id, "to_partner": partner.pk,
                     "price_before": str(price_before), "price": str(price), "automatic": automatic},
        )
        attention_resolve(line_id=locked.pk, resolution=AttentionItem.Resolution.REROUTED, actor=authed,
                          note=("Automatically: " if automatic else "") + note, replacement_line=new)
        audit_record(
            action=Action.LINE_REROUTE, actor=authed, actor_label="" if authed else REROUTE_ACTOR,
            clinic=line.order.clinic, patient=line.patient, obj=new,
            detail={"order_id": line.order_id, "rerouted_from": locked.pk, "from_partner": line.partner_order.partner_id,
                    "to_partner": partner.pk, "price_before": str(price_before), "price": str(price),
                    "automatic": automatic},
        )
        partner_order_queue_dispatch(partner_order=partner_order)
    return new


def line_reroute_automatically(*, line_id: int) -> OrderLine | None:
    """The state machine's automatic reroute (a partner-side rejection). When no other partner
    can fill the line, its attention item stays open and says so."""
    try:
        return line_reroute(line_id=line_id, automatic=True)
    except RerouteError as exc:
        AttentionItem.objects.filter(line_id=line_id, audience=AttentionItem.Audience.CLINIC,
                                     resolved_at__isnull=True).update(
            resolution_note=f"Fizy could not send it to another pharmacy: {exc}"[:2000])
        logger.info("line %s: automatic reroute not possible", line_id)
        return None
