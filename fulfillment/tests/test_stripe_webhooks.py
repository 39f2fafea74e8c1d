"""POST /api/stripe/events: Stripe's signature checked, PaymentIntents reconciled through the real
``stripe`` library against the local fake Stripe."""

import datetime
import json
import time
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from carts.checkout import authorization_idempotency_key, authorization_metadata
from carts.models import Cart
from fizy.lib.payments import get_gateway
from fizy.tests.fake_stripe import WEBHOOK_SECRET, fake_stripe, sign  # noqa: F401  (fixture)
from fulfillment.models import Order, PaymentEvent
from fulfillment.settlement import order_record_authorization
from fulfillment.tests.test_payments import make_order

URL = "/api/stripe/events"
Kind = PaymentEvent.Kind


def event_body(intent: dict, kind="payment_intent.amount_capturable_updated") -> str:
    return json.dumps({"id": "evt_fake_1", "object": "event", "type": kind, "api_version": "2026-10-28.endive",
                       "created": int(time.time()), "livemode": False, "data": {"object": intent}})


def post(client, body: str, signature: str | None = None):
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post(URL, data=body, content_type="application/json", **headers)


def authorize_cart(cart):
    """What checkout does before it creates the order: authorize the cart's total on Stripe."""
    authorization = get_gateway().authorize(
        amount=Decimal("120.00"), currency="usd", customer_id="cus_fake", payment_method_id="pm_card_visa",
        idempotency_key=authorization_idempotency_key(cart=cart), metadata=authorization_metadata(cart=cart),
    )
    assert authorization.ok
    return authorization


def dead_checkout(clinic, minutes=30):
    cart = Cart.objects.create(clinic=clinic, status=Cart.Status.CHECKING_OUT, version=3)
    Cart.objects.filter(pk=cart.pk).update(checkout_started_at=timezone.now() - datetime.timedelta(minutes=minutes))
    cart.refresh_from_db()
    return cart


def test_the_url_is_wired():
    assert reverse("stripe-events") == URL


def test_a_signed_event_for_an_orphan_authorization_cancels_it(client, clinic_a, fake_stripe):  # noqa: F811
    cart = dead_checkout(clinic_a)
    authorization = authorize_cart(cart)
    intent = fake_stripe.intents[authorization.reference]
    body = event_body(intent)

    response = post(client, body, sign(body))

    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "cancelled_orphan"
    assert fake_stripe.intents[authorization.reference]["status"] == "canceled"
    (cancel,) = fake_stripe.posts(f"/v1/payment_intents/{authorization.reference}/cancel")
    assert cancel["headers"]["idempotency-key"] == f"fizy-orphan-{authorization.reference}-cancel"
    event = PaymentEvent.objects.get(reference=authorization.reference)
    assert (event.kind, event.order, event.clinic, event.amount) == (Kind.CANCELLED, None, clinic_a, Decimal("120.00"))


def test_a_redelivered_event_changes_nothing_more(client, clinic_a, fake_stripe):  # noqa: F811
    authorization = authorize_cart(dead_checkout(clinic_a))
    body = event_body(fake_stripe.intents[authorization.reference])
    post(client, body, sign(body))

    stale = event_body({**fake_stripe.intents[authorization.reference], "status": "requires_capture"})
    again = post(client, stale, sign(stale))

    assert again.status_code == 200
    assert PaymentEvent.objects.filter(reference=authorization.reference).count() == 1


def test_an_authorization_that_has_its_order_is_left_alone(client, clinic_a, fake_stripe):  # noqa: F811
    cart = dead_checkout(clinic_a)
    authorization = authorize_cart(cart)
    order = make_order(clinic_a, [("pending", "120.00")], authorize=False)
    order_record_authorization(order=order, authorization=authorization, gateway_name="stripe")
    body = event_body(fake_stripe.intents[authorization.reference])

    response = post(client, body, sign(body))

    assert response.status_code == 200 and response.json()["outcome"] == "in_sync"
    assert fake_stripe.posts(f"/v1/payment_intents/{authorization.reference}/cancel") == []
    order.refresh_from_db()
    assert order.payment_status == Order.PaymentStatus.AUTHORIZED


def test_a_checkout_still_in_progress_asks_stripe_to_deliver_again(client, clinic_a, fake_stripe):  # noqa: F811
    authorization = authorize_cart(dead_checkout(clinic_a, minutes=1))
    body = event_body(fake_stripe.intents[authorization.reference])

    response = post(client, body, sign(body))

    assert response.status_code == 409
    assert fake_stripe.intents[authorization.reference]["status"] == "requires_capture"
    assert not PaymentEvent.objects.exists()


def test_a_cancellation_stripe_reports_is_recorded_on_the_order(client, clinic_a, fake_stripe):  # noqa: F811
    authorization = authorize_cart(dead_checkout(clinic_a))
    order = make_order(clinic_a, [("pending", "120.00")], authorize=False)
    order_record_authorization(order=order, authorization=authorization, gateway_name="stripe")
    intent = {**fake_stripe.intents[authorization.reference], "status": "canceled", "amount_capturable": 0}
    body = event_body(intent, kind="payment_intent.canceled")

    response = post(client, body, sign(body))

    assert response.status_code == 200 and response.json()["outcome"] == "updated"
    order.refresh_from_db()
    assert order.payment_status == Order.PaymentStatus.CANCELLED


def test_stripe_unreachable_while_cancelling_asks_for_a_retry(client, clinic_a, fake_stripe):  # noqa: F811
    authorization = authorize_cart(dead_checkout(clinic_a))
    body = event_body(fake_stripe.intents[authorization.reference])
    fake_stripe.fail_next = [500]

    response = post(client, body, sign(body))

    assert response.status_code == 503
    assert not PaymentEvent.objects.exists()


@pytest.mark.parametrize("signature", [
    None,
    "",
    "t=1,v1=deadbeef",
    "garbage",
    "signed with another secret",
])
def test_a_bad_signature_is_refused_and_nothing_happens(client, clinic_a, fake_stripe, signature):  # noqa: F811
    authorization = authorize_cart(dead_checkout(clinic_a))
    body = event_body(fake_stripe.intents[authorization.reference])
    if signature == "signed with another secret":
        signature = sign(body, secret="whsec_someone_else")
    calls_before = len(fake_stripe.requests)

    response = post(client, body, signature)

    assert response.status_code == 400
    assert "error" in response.json()
    assert len(fake_stripe.requests) == calls_before
    assert not PaymentEvent.objects.exists()


def test_an_old_signature_is_refused(client, clinic_a, fake_stripe):  # noqa: F811
    authorization = authorize_cart(dead_checkout(clinic_a))
    body = event_body(fake_stripe.intents[authorization.reference])

    response = post(client, body, sign(body, timestamp=int(time.time()) - 3600))

    assert response.status_code == 400
    assert not PaymentEvent.objects.exists()


def test_a_tampered_body_is_refused(client, clinic_a, fake_stripe):  # noqa: F811
    authorization = authorize_cart(dead_checkout(clinic_a))
    body = event_body(fake_stripe.intents[authorization.reference])

    response = post(client, body.replace('"amount": 12000', '"amount": 1'), sign(body))

    assert response.status_code == 400


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"type": "payment_intent.succeeded", "data": {"object": 5}}',
                                  '{"type": "payment_intent.succeeded", "data": []}'])
def test_a_signed_but_malformed_body_is_a_400_not_a_500(client, fake_stripe, body):  # noqa: F811
    response = post(client, body, sign(body))

    assert response.status_code == 400
    assert "error" in response.json()


def test_events_we_do_not_handle_are_acknowledged(client, fake_stripe):  # noqa: F811
    body = json.dumps({"id": "evt_2", "object": "event", "type": "customer.created", "data": {"object": {"id": "cus_1"}}})

    response = post(client, body, sign(body))

    assert response.status_code == 200 and response.json()["handled"] is False


def test_without_a_signing_secret_nothing_is_accepted(client, fake_stripe, settings):  # noqa: F811
    settings.STRIPE_WEBHOOK_SECRET = ""
    body = event_body({"id": "pi_1", "object": "payment_intent", "status": "requires_capture"})

    assert post(client, body, sign(body)).status_code == 400


def test_the_signing_secret_used_by_the_tests_is_the_configured_one(settings, fake_stripe):  # noqa: F811
    assert settings.STRIPE_WEBHOOK_SECRET == WEBHOOK_SECRET
