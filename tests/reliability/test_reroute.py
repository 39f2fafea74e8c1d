"""Reroute keeps the money right (issue 12, item 4), on PostgreSQL, through the real ``stripe``
library against the strict fake Stripe: a line its pharmacy rejects for want of stock goes to the
next eligible pharmacy by itself, at a higher or a lower price, and the clinic's card ends up
paying exactly the new price — captured within the authorization when it fits, charged on its
own when it does not. ``check_money`` is clean at every step (and after, by this directory's
conftest)."""

from decimal import Decimal

import pytest

from catalog.tests.factories import OfferingFactory, PartnerFactory
from fulfillment.ledger import money_violations
from fulfillment.models import AttentionItem, LineEvent, Order, OrderLine
from fulfillment.settlement import order_settle_payment

from .conftest import build_cart
from .test_money import answer, charged, place, stripe_card

S = OrderLine.Status
pytestmark = pytest.mark.postgres


@pytest.mark.django_db
@pytest.mark.parametrize("bayside_price, fits", [(Decimal("170.00"), False), (Decimal("120.00"), True)],
                         ids=["higher price", "lower price"])
def test_out_of_stock_rejection_is_rerouted_and_the_card_pays_the_new_price(
    clinic_a, alice, partners, fake_stripe, django_capture_on_commit_callbacks, bayside_price, fits
):
    world = build_cart(clinic_a, alice, patients_per_partner=1)
    stripe_card(clinic_a)
    bayside = PartnerFactory(name="Bayside", states=["TX"])
    # Out of stock at checkout (so Cedar gets the line), restocked before Cedar rejects it.
    offering = OfferingFactory(partner=bayside, product=world["sema"], unit_price=bayside_price,
                               shipping_fee=Decimal("20.00"), stock_quantity=0)
    order = place(clinic_a, alice, django_capture_on_commit_callbacks)
    offering.stock_quantity = 50
    offering.save()
    sema_line = order.lines.get(product=world["sema"])
    ldn_line = order.lines.get(product=world["ldn"])
    assert sema_line.partner_order.partner == world["cedar"] and sema_line.status == S.SENT

    answer(sema_line, "rejected", django_capture_on_commit_callbacks, reason_code="out_of_stock")

    new = OrderLine.objects.get(rerouted_from=sema_line)
    assert new.partner_order.partner == bayside and new.partner_order.is_reroute
    assert new.status == S.SENT  # dispatched the normal way
    assert [c["line_ids"] for c in partners.for_partner(bayside)] == [[new.pk]]
    assert new.landed_cost == bayside_price + Decimal("20.00")
    item = AttentionItem.objects.get(line=sema_line)
    assert item.resolution == AttentionItem.Resolution.REROUTED and item.replacement_line == new
    told = LineEvent.objects.get(line=new, to_status=S.PENDING)
    assert "Cedar rejected it (out of stock at the pharmacy); sent to Bayside instead" in told.reason
    assert not money_violations()

    answer(ldn_line, "accepted", django_capture_on_commit_callbacks)
    answer(new, "accepted", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        order_settle_payment(order_id=order.pk)  # whatever was still queued: safe to run again

    order.refresh_from_db()
    assert charged(sema_line) == 0
    assert charged(new) == new.price and charged(ldn_line) == ldn_line.price
    assert order.net_charged == new.price + ldn_line.price
    if fits:  # captured with the rest, less than authorized
        assert order.amount_captured == new.price + ldn_line.price and order.amount_charged_later == 0
    else:  # dearer than what was authorized: the rest captured, the new line charged on its own
        assert order.amount_captured == ldn_line.price and order.amount_charged_later == new.price
    assert order.payment_status in (Order.PaymentStatus.CAPTURED, Order.PaymentStatus.PARTIALLY_CAPTURED)
    assert not money_violations()
