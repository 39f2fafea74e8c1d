"""Locks that do not wait on each other without need (issue 12, item 8: the 50-clinic refill day
once ended a partner's webhook in a PostgreSQL deadlock). On PostgreSQL, in real threads.

A partner's answer locks its line, then the line's order (to see whether every line is answered).
That order lock must not stop another transaction from adding a row that only points at the
order (a rerouted line and its partner order), nor the new line's own status change (which locked
the line's order, clinic and patient with it), or the two wait on each other, and with a third
transaction (a checkout holding stock) they can close a deadlock cycle."""

import threading
from decimal import Decimal

import pytest
from django.test import Client

from catalog.tests.factories import OfferingFactory, PartnerFactory
from fizy.tests.concurrency import run_threads
from fulfillment import status
from fulfillment.ledger import money_violations
from fulfillment.models import OrderLine
from fulfillment.reroute import line_reroute
from fulfillment.tests.conftest import event_body, post_event

from .conftest import build_cart
from .test_money import answer, place, stripe_card

S = OrderLine.Status
pytestmark = pytest.mark.postgres
HOLD_SECONDS = 10


@pytest.mark.django_db(transaction=True)
def test_a_reroute_adds_its_line_while_a_partner_answer_holds_the_order(
    clinic_a, alice, partners, fake_stripe, django_capture_on_commit_callbacks, monkeypatch
):
    world = build_cart(clinic_a, alice, patients_per_partner=1)
    stripe_card(clinic_a)
    order = place(clinic_a, alice, django_capture_on_commit_callbacks)
    bayside = PartnerFactory(name="Bayside", states=["TX"])
    OfferingFactory(partner=bayside, product=world["sema"], unit_price=Decimal("150.00"),
                    shipping_fee=Decimal("20.00"), stock_quantity=50)
    sema_line, ldn_line = order.lines.get(product=world["sema"]), order.lines.get(product=world["ldn"])
    answer(sema_line, "rejected", django_capture_on_commit_callbacks, reason_code="other")  # rerouted by a click

    # Harbor's "accepted" for the other line pauses right after it has locked the order, until
    # the coordinator's reroute has finished (or HOLD_SECONDS have passed).
    order_locked, rerouted = threading.Event(), threading.Event()
    seen = {}
    request_settlement = status.order_request_settlement_if_answered

    def answer_holding_the_order(*, order_id):
        result = request_settlement(order_id=order_id)
        order_locked.set()
        seen["rerouted while the order was locked"] = rerouted.wait(HOLD_SECONDS)
        return result

    monkeypatch.setattr(status, "order_request_settlement_if_answered", answer_holding_the_order)

    def harbor_accepts():
        response = post_event(Client(), world["harbor"], event_body(ldn_line, "accepted"))
        seen["webhook"] = response.status_code

    def coordinator_reroutes():
        assert order_locked.wait(HOLD_SECONDS)
        seen["new line"] = line_reroute(line_id=sema_line.pk, actor=alice)
        rerouted.set()

    assert run_threads(harbor_accepts, coordinator_reroutes) == []

    assert seen["rerouted while the order was locked"] is True
    assert seen["webhook"] == 200
    ldn_line.refresh_from_db()
    assert ldn_line.status == S.ACCEPTED
    new = seen["new line"]
    new.refresh_from_db()
    assert new.order_id == order.pk and new.partner_order.partner == bayside and new.status == S.SENT
    assert not money_violations()
