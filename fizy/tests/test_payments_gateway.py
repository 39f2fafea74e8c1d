"""The payment gateways: Stripe through the real ``stripe`` library against a local fake server,
and the sandbox, which must answer in the same shapes."""

from decimal import Decimal

import pytest

from clinics.payment_messages import decline_message
from fizy.lib.payments import (
    CANCELED,
    REQUIRES_CAPTURE,
    SUCCEEDED,
    Authorization,
    CardDetails,
    PaymentError,
    PaymentState,
    Refund,
    SandboxGateway,
    StripeGateway,
    get_gateway,
)
from fizy.lib.money import to_cents
from fizy.tests.fake_stripe import fake_stripe  # noqa: F401  (fixture)


def authorize(gateway, pm="pm_card_visa", key="fizy-cart-7-v3-authorize", amount="245.50"):
    return gateway.authorize(
        amount=Decimal(amount), currency="usd", customer_id="cus_fake0001", payment_method_id=pm,
        idempotency_key=key, description="Fizy order for Clinic A", metadata={"cart_id": 7, "cart_version": 3},
    )


def test_get_gateway_follows_the_setting(settings, fake_stripe):  # noqa: F811
    assert isinstance(get_gateway(), StripeGateway)
    settings.PAYMENT_GATEWAY = "sandbox"
    assert isinstance(get_gateway(), SandboxGateway)
    settings.PAYMENT_GATEWAY = "paypal"
    with pytest.raises(PaymentError):
        get_gateway()


def test_cents_are_integers():
    assert to_cents(Decimal("245.50")) == 24550
    assert to_cents(Decimal("0.01")) == 1


def test_stripe_authorize_creates_a_manual_capture_off_session_intent(fake_stripe):  # noqa: F811
    result = authorize(get_gateway())

    assert result == Authorization(ok=True, reference=result.reference, status=REQUIRES_CAPTURE,
                                   amount=Decimal("245.50"))
    (request,) = fake_stripe.posts("/v1/payment_intents")
    form = request["form"]
    assert form["amount"] == "24550" and form["currency"] == "usd"
    assert form["capture_method"] == "manual"
    assert form["confirm"] == "true" and form["off_session"] == "true"
    assert form["payment_method"] == "pm_card_visa" and form["customer"] == "cus_fake0001"
    assert form["metadata[cart_id]"] == "7" and form["metadata[cart_version]"] == "3"
    assert request["headers"]["idempotency-key"] == "fizy-cart-7-v3-authorize"
    assert request["headers"]["authorization"] == "Bearer sk_test_fizy_fake"


def test_stripe_authorize_twice_with_one_key_is_one_payment_intent(fake_stripe):  # noqa: F811
    gateway = get_gateway()

    first, second = authorize(gateway), authorize(gateway)

    assert first.reference == second.reference
    assert len(fake_stripe.intents) == 1


def test_stripe_decline_reads_like_a_sentence(fake_stripe):  # noqa: F811
    result = authorize(get_gateway(), pm="pm_card_visa_chargeDeclinedInsufficientFunds")

    assert not result.ok
    assert result.decline_code == "insufficient_funds"
    assert result.reference.startswith("pi_fake")
    assert decline_message(result) == (
        "The card ending 9995 was declined by the bank (insufficient funds). Ask your clinic admin to update "
        "the card on the Billing page, then place the order again."
    )


def test_stripe_authentication_required_is_a_readable_decline(fake_stripe):  # noqa: F811
    result = authorize(get_gateway(), pm="pm_card_authenticationRequired")

    assert not result.ok
    assert result.decline_code == "authentication_required"
    assert "card ending 3184" in decline_message(result) and "authentication required" in decline_message(result)
    assert "Billing page" in decline_message(result)


def test_stripe_intent_left_requiring_action_is_not_an_authorization(fake_stripe):  # noqa: F811
    result = authorize(get_gateway(), pm="pm_card_threeDSecureRequired")

    assert not result.ok and result.status == "requires_action"
    assert "authentication required" in decline_message(result)


def test_stripe_partial_capture_sends_amount_to_capture(fake_stripe):  # noqa: F811
    gateway = get_gateway()
    reference = authorize(gateway).reference

    state = gateway.capture(reference=reference, amount=Decimal("130.25"), idempotency_key="fizy-order-1-capture-13025")

    assert state == PaymentState(reference=reference, status=SUCCEEDED, amount=Decimal("245.50"),
                                 amount_capturable=Decimal("0.00"), amount_received=Decimal("130.25"),
                                 metadata={"cart_id": "7", "cart_version": "3"})
    (request,) = fake_stripe.posts(f"/v1/payment_intents/{reference}/capture")
    assert request["form"] == {"amount_to_capture": "13025"}
    assert request["headers"]["idempotency-key"] == "fizy-order-1-capture-13025"


def test_stripe_cancel_releases_the_authorization(fake_stripe):  # noqa: F811
    gateway = get_gateway()
    reference = authorize(gateway).reference

    state = gateway.cancel(reference=reference, idempotency_key="fizy-order-1-cancel")

    assert state.status == CANCELED
    assert fake_stripe.posts(f"/v1/payment_intents/{reference}/cancel")[0]["headers"]["idempotency-key"] == "fizy-order-1-cancel"
    assert gateway.retrieve(reference=reference).status == CANCELED


def test_stripe_refund_gives_back_part_of_a_capture(fake_stripe):  # noqa: F811
    gateway = get_gateway()
    reference = authorize(gateway).reference
    gateway.capture(reference=reference, amount=Decimal("200.00"), idempotency_key="cap")

    refund = gateway.refund(reference=reference, amount=Decimal("40.00"), idempotency_key="fizy-line-9-refund")

    assert refund == Refund(reference=refund.reference, payment_reference=reference, amount=Decimal("40.00"),
                            status=SUCCEEDED)
    (request,) = fake_stripe.posts("/v1/refunds")
    assert request["form"] == {"payment_intent": reference, "amount": "4000"}
    assert request["headers"]["idempotency-key"] == "fizy-line-9-refund"


def test_stripe_capture_in_the_wrong_state_is_a_payment_error(fake_stripe):  # noqa: F811
    gateway = get_gateway()
    reference = authorize(gateway).reference
    gateway.cancel(reference=reference, idempotency_key="c")

    with pytest.raises(PaymentError) as excinfo:
        gateway.capture(reference=reference, amount=Decimal("1.00"), idempotency_key="late")
    assert excinfo.value.code == "payment_intent_unexpected_state"


def test_stripe_outage_is_a_retryable_payment_error_not_a_decline(fake_stripe):  # noqa: F811
    fake_stripe.fail_next = [500]

    with pytest.raises(PaymentError) as excinfo:
        authorize(get_gateway())
    assert excinfo.value.retryable


def test_stripe_unreachable_is_a_readable_payment_error(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    gateway = StripeGateway(api_key="sk_test_x", api_base=settings.STRIPE_API_BASE, max_network_retries=0)

    with pytest.raises(PaymentError, match="could not reach Stripe"):
        authorize(gateway)


def test_stripe_card_setup_returns_the_saved_card(fake_stripe):  # noqa: F811
    gateway = get_gateway()
    customer_id = gateway.ensure_customer(name="Clinic A", email="billing@a.test", metadata={"clinic_id": 1})
    setup_intent_id, client_secret = gateway.create_setup_intent(customer_id=customer_id)
    fake_stripe.confirm_setup_intent(setup_intent_id)

    card = gateway.attach_result(setup_intent_id=setup_intent_id)

    assert client_secret.startswith(setup_intent_id)
    assert card == CardDetails("pm_card_visa", "visa", "4242", "08/2031", customer_id=customer_id)
    (setup_post,) = fake_stripe.posts("/v1/setup_intents")
    assert setup_post["form"]["usage"] == "off_session" and setup_post["form"]["customer"] == customer_id


def test_stripe_card_setup_not_confirmed_is_refused(fake_stripe):  # noqa: F811
    gateway = get_gateway()
    setup_intent_id, _ = gateway.create_setup_intent(customer_id="cus_x")

    with pytest.raises(PaymentError, match="not saved"):
        gateway.attach_result(setup_intent_id=setup_intent_id)


# --- sandbox ---------------------------------------------------------------------------------


def test_sandbox_authorizes_the_test_visa_idempotently():
    gateway = SandboxGateway()

    first = authorize(gateway, pm="pm_sandbox_visa")
    again = authorize(gateway, pm="pm_sandbox_visa")
    other = authorize(gateway, pm="pm_sandbox_visa", key="fizy-cart-7-v4-authorize")

    assert first == again == Authorization(ok=True, reference=first.reference, status=REQUIRES_CAPTURE,
                                           amount=Decimal("245.50"))
    assert other.reference != first.reference


def test_sandbox_declined_card_says_why():
    result = authorize(SandboxGateway(), pm="pm_sandbox_declined")

    assert not result.ok and result.decline_code == "insufficient_funds"
    assert decline_message(result).startswith("The card ending 0002 was declined by the bank (insufficient funds).")


def test_sandbox_card_that_needs_authentication_fails_authentication():
    result = authorize(SandboxGateway(), pm="pm_sandbox_auth_required")

    assert not result.ok and result.decline_code == "authentication_required"
    assert "card ending 3155" in decline_message(result)


def test_sandbox_capture_cancel_refund_have_stripe_shapes():
    gateway = SandboxGateway()
    reference = authorize(gateway, pm="pm_sandbox_visa").reference

    captured = gateway.capture(reference=reference, amount=Decimal("100.00"), idempotency_key="c")
    refund = gateway.refund(reference=reference, amount=Decimal("10.00"), idempotency_key="r")

    assert (captured.status, captured.amount_received) == (SUCCEEDED, Decimal("100.00"))
    assert refund.amount == Decimal("10.00") and refund.reference == gateway.refund(
        reference=reference, amount=Decimal("10.00"), idempotency_key="r").reference
    assert gateway.cancel(reference=reference, idempotency_key="x").status == CANCELED


def test_sandbox_card_setup_offers_the_three_test_cards():
    gateway = SandboxGateway()
    customer_id = gateway.ensure_customer(name="Clinic A", email="", metadata={"clinic_id": 1})
    setup_intent_id, _ = gateway.create_setup_intent(customer_id=customer_id)

    choices = dict(gateway.card_choices(setup_intent_id=setup_intent_id))
    cards = [gateway.attach_result(setup_intent_id=value) for value in choices]

    assert [c.last4 for c in cards] == ["4242", "0002", "3155"]
    assert all(c.customer_id == customer_id for c in cards)
    assert gateway.attach_result(setup_intent_id=setup_intent_id).payment_method_id == "pm_sandbox_visa"
    with pytest.raises(PaymentError):
        gateway.attach_result(setup_intent_id="seti_someone_else")
