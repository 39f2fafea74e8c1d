"""Scenario 2: "Place order" pressed by many coordinators at once makes one authorization and
one order, and every other coordinator is told why nothing more happened; a colleague editing
the cart while the payment is being authorized is refused with a clear message and the order
keeps exactly the reviewed lines."""

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from carts.models import Cart, CartLine
from clinics.tests.factories import MembershipFactory
from fizy.tests.concurrency import run_threads
from fulfillment.models import Order, PaymentEvent
from carts.tests.checkout_form import place_order_data

from .conftest import cart_state

SUBMITS = 8
LOSER_MESSAGES = (
    "This cart is already being ordered",  # it was checking out when this click arrived
    "The cart is empty: there is nothing to order. If you just placed an order, it is on the Orders page.",
)


@pytest.fixture
def authorizations(monkeypatch):
    from fizy.lib import payments

    calls = []
    real = payments.SandboxGateway.authorize

    def counting(self, **kwargs):
        calls.append(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(payments.SandboxGateway, "authorize", counting)
    return calls


def _logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_coordinators_placing_the_order_at_once_make_one_charge_and_one_order(
    clinic_a, alice, world_a, partners, authorizations
):
    cart = world_a["cart"]
    _, version, reviewed = cart_state(cart)
    coordinators = [alice] + [MembershipFactory(clinic=clinic_a).user for _ in range(SUBMITS - 1)]
    form = place_order_data(_logged_in(alice))
    assert form["version"] == str(version)
    answers = []

    def submit(user):
        def run():
            response = _logged_in(user).post(reverse("carts:checkout"), form)
            answers.append((response.status_code, response.get("Location", ""), response.content.decode()))
        return run

    assert run_threads(*[submit(u) for u in coordinators]) == []

    assert len(answers) == SUBMITS
    winners = [a for a in answers if a[0] == 302]
    losers = [a for a in answers if a[0] != 302]
    assert len(winners) == 1 and len(authorizations) == 1
    order = Order.objects.get()
    assert winners[0][1] == reverse("fulfillment:order", kwargs={"pk": order.pk})
    for status, _, body in losers:
        assert status == 200 and 'id="checkout-error"' in body
        assert any(message in body for message in LOSER_MESSAGES), body[:2000]
    assert PaymentEvent.objects.filter(kind="authorized").count() == 1
    assert not PaymentEvent.objects.exclude(kind="authorized").exists()
    assert authorizations[0]["amount"] == order.total == order.amount_authorized
    # The order holds exactly the reviewed lines; the clinic has a fresh empty cart.
    assert sorted(order.lines.values_list("patient_id", "product_id", "quantity", "sig", "prescriber_id")) == reviewed
    assert Cart.objects.get(pk=cart.pk).status == Cart.Status.SUBMITTED
    fresh = Cart.objects.get(clinic=clinic_a, status=Cart.Status.OPEN)
    assert not fresh.lines.exists()
    # Each pharmacy received its partner order once.
    assert sorted(c["slug"] for c in partners.calls) == sorted([world_a["cedar"].slug, world_a["harbor"].slug])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_editing_the_cart_while_it_is_checked_out_is_refused_and_loses_nothing(
    clinic_a, alice, world_a, partners, monkeypatch
):
    from fizy.lib import payments

    bea = MembershipFactory(clinic=clinic_a).user
    cart = world_a["cart"]
    _, version, reviewed = cart_state(cart)
    line = CartLine.objects.filter(cart=cart).order_by("pk").first()
    other_patient = world_a["patients"][0]
    in_gateway, release = threading.Event(), threading.Event()
    real = payments.SandboxGateway.authorize

    def slow_authorize(self, **kwargs):
        in_gateway.set()
        assert release.wait(20), "the test never released the gateway"
        return real(self, **kwargs)

    monkeypatch.setattr(payments.SandboxGateway, "authorize", slow_authorize)
    placed = []
    form = place_order_data(_logged_in(alice))
    assert form["version"] == str(version)

    def place():
        try:
            placed.append(_logged_in(alice).post(reverse("carts:checkout"), form).status_code)
        finally:
            connection.close()

    thread = threading.Thread(target=place)
    thread.start()
    try:
        assert in_gateway.wait(20), "checkout never reached the gateway"
        colleague = _logged_in(bea)
        refused = [
            colleague.post(reverse("carts:line-save", kwargs={"pk": line.pk}), {
                "prescriber": line.prescriber_id, "quantity": line.quantity + 5, "sig": "Changed mid-checkout",
                "days_supply": 28, "refills": 0}),
            colleague.post(reverse("carts:line-remove", kwargs={"pk": line.pk})),
            colleague.post(reverse("carts:line-add"), {
                "patient": other_patient.pk, "product": world_a["sema"].pk, "prescriber": line.prescriber_id,
                "quantity": 1, "sig": "One more", "days_supply": 28, "refills": 0}),
        ]
        for response in refused:
            body = response.content.decode()
            assert response.status_code == 200
            assert "being checked out right now" in body and "cannot be changed" in body
        assert cart_state(cart) == (Cart.Status.CHECKING_OUT, version, reviewed)
    finally:
        release.set()
        thread.join(30)

    assert placed == [302]
    order = Order.objects.get()
    assert sorted(order.lines.values_list("patient_id", "product_id", "quantity", "sig", "prescriber_id")) == reviewed
    assert PaymentEvent.objects.filter(kind="authorized").count() == 1
    # After the order, the colleague's cart is the new empty one: the edit can be made again there.
    assert not CartLine.objects.filter(cart__clinic=clinic_a, cart__status=Cart.Status.OPEN).exists()
