"""Scenario 5: the clinic's card is declined at "Place order". The cart stays exactly as the
coordinator left it (lines, quantities, SIGs, prescribers, version), no order exists, the
failure is recorded, and the page names the card and says what to do. The clinic admin then
saves another card on the billing page's services and the very same cart checks out."""

import pytest
from django.urls import reverse

from carts.models import Cart
from clinics.services import clinic_set_payment_method, clinic_start_card_setup
from fulfillment.models import Order, PaymentEvent
from carts.tests.checkout_form import place_order_data

from .conftest import cart_state

pytestmark = pytest.mark.django_db


def _switch_card(clinic, admin, payment_method):
    """What the billing page does: start a card setup, the admin picks the card, save it."""
    setup = clinic_start_card_setup(clinic=clinic, actor=admin)
    chosen = next(value for value, _ in setup.test_cards if value.endswith(":" + payment_method))
    return clinic_set_payment_method(clinic=clinic, setup_intent_id=chosen, actor=admin)


def test_a_declined_card_leaves_the_cart_unchanged_and_a_new_card_orders_the_same_cart(
    client_alice, clinic_a, clinic_admin_a, world_a, partners, django_capture_on_commit_callbacks
):
    _switch_card(clinic_a, clinic_admin_a, "pm_sandbox_declined")
    cart = world_a["cart"]
    before = cart_state(cart)

    response = client_alice.post(reverse("carts:checkout"), place_order_data(client_alice))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="checkout-error"' in page
    assert "The card ending 0002 was declined by the bank (insufficient funds)" in page
    assert "Ask your clinic admin to update the card on the Billing page" in page
    assert "Nothing was charged; the cart is unchanged." in page
    assert cart_state(cart) == before and before[0] == Cart.Status.OPEN
    assert not Order.objects.exists() and not partners.calls
    failed = PaymentEvent.objects.get()
    assert (failed.kind, failed.clinic, failed.order) == ("failed", clinic_a, None)
    assert "0002" in failed.message
    # The coordinator may open the cart and edit it again at once.
    assert client_alice.get(reverse("carts:cart")).status_code == 200

    _switch_card(clinic_a, clinic_admin_a, "pm_sandbox_visa")
    clinic_a.refresh_from_db()
    assert (clinic_a.payment_method_id, clinic_a.card_last4) == ("pm_sandbox_visa", "4242")

    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post(reverse("carts:checkout"), place_order_data(client_alice))

    order = Order.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("fulfillment:order", kwargs={"pk": order.pk})
    assert sorted(order.lines.values_list("patient_id", "product_id", "quantity", "sig", "prescriber_id")) == before[2]
    assert list(PaymentEvent.objects.order_by("pk").values_list("kind", flat=True)) == ["failed", "authorized"]
    assert order.payment_status == Order.PaymentStatus.AUTHORIZED and order.amount_authorized == order.total
    assert Cart.objects.get(pk=cart.pk).status == Cart.Status.SUBMITTED


def test_with_stripe_a_new_card_after_a_decline_orders_the_same_cart(
    client_alice, clinic_a, clinic_admin_a, world_a, partners, fake_stripe, django_capture_on_commit_callbacks
):
    clinic_a.stripe_customer_id = ""
    clinic_a.save()

    def switch(payment_method):
        setup = clinic_start_card_setup(clinic=clinic_a, actor=clinic_admin_a)
        fake_stripe.confirm_setup_intent(setup.setup_intent_id, payment_method)
        clinic_set_payment_method(clinic=clinic_a, setup_intent_id=setup.setup_intent_id, actor=clinic_admin_a)
        clinic_a.refresh_from_db()

    switch("pm_card_visa_chargeDeclinedInsufficientFunds")
    before = cart_state(world_a["cart"])
    page = client_alice.post(reverse("carts:checkout"), place_order_data(client_alice)).content.decode()
    assert "The card ending 9995 was declined" in page and cart_state(world_a["cart"]) == before

    switch("pm_card_visa")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post(reverse("carts:checkout"), place_order_data(client_alice))

    assert response.status_code == 302, response.content.decode()[:3000]
    assert Order.objects.count() == 1
