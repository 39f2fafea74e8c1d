"""Money after the order is always right (issue 11), on PostgreSQL, through the real ``stripe``
library against the strict fake Stripe: no order on a dead authorization, every accepted line
charged within the authorization's life or by a follow-up payment, every exit from a chargeable
status refunded once, a total the coordinator confirmed, and stock that cannot be sold twice.
Every scenario ends with ``check_money`` clean (this directory's conftest checks it)."""

import datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from carts.checkout import PaymentDeclined, cart_checkout
from carts.models import Cart, CartLine
from carts.services import LineInput, cart_add_lines
from carts.tests.checkout_form import place_order_data
from catalog.models import Offering
from clinics.tests.factories import PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from fizy.tests.concurrency import run_threads
from fulfillment.ledger import money_violations
from fulfillment.models import Order, OrderLine, PaymentEvent
from fulfillment.settlement import sweep_payments
from fulfillment.status import line_apply_status
from fulfillment.tests.conftest import event_body, post_event
from prescriptions.tests.factories import prescriptions_on_file

from .conftest import build_cart, cart_state, with_saved_card

S = OrderLine.Status
PS = Order.PaymentStatus
Kind = PaymentEvent.Kind
pytestmark = pytest.mark.postgres


def stripe_card(clinic):
    clinic.stripe_customer_id, clinic.payment_method_id = "cus_fake_money", "pm_card_visa"
    clinic.card_brand, clinic.card_last4, clinic.card_exp = "visa", "4242", "08/2031"
    clinic.save()


def place(clinic, actor, capture) -> Order:
    with capture(execute=True):
        return cart_checkout(clinic=clinic, actor=actor)


def answer(line, status, capture, **fields):
    with capture(execute=True):
        line_apply_status(line=line, to=status, source="webhook", actor_label="Partner",
                          reason=f"{status} by the pharmacy" if status in ("rejected", "on_hold", "cancelled") else "",
                          **fields)


def age(order, days):
    Order.objects.filter(pk=order.pk).update(placed_at=timezone.now() - datetime.timedelta(days=days))


def charged(line) -> Decimal:
    line.refresh_from_db()
    return line.amount_charged - line.amount_refunded


# --- never an order on a dead authorization -----------------------------------------------------


@pytest.mark.django_db
def test_a_failure_after_authorization_then_placing_again_orders_on_a_live_authorization(
    clinic_a, alice, world_a, partners, fake_stripe, monkeypatch, django_capture_on_commit_callbacks
):
    stripe_card(clinic_a)
    import carts.checkout as checkout

    real = checkout._create_order
    calls = []

    def dies_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away after the card was authorized")
        return real(**kwargs)

    monkeypatch.setattr(checkout, "_create_order", dies_once)
    before = cart_state(world_a["cart"])
    with pytest.raises(RuntimeError):
        place(clinic_a, alice, django_capture_on_commit_callbacks)
    assert cart_state(world_a["cart"]) == before and not Order.objects.exists()
    (first,) = fake_stripe.intents.values()
    assert first["status"] == "canceled"

    order = place(clinic_a, alice, django_capture_on_commit_callbacks)

    live = fake_stripe.intents[order.payment_reference]
    assert order.payment_reference != first["id"]
    assert live["status"] == "requires_capture" and live["amount_capturable"] == int(order.total * 100)
    assert Order.objects.count() == 1
    assert not money_violations()


@pytest.mark.django_db
def test_a_replayed_authorization_that_expired_is_never_ordered_on(
    clinic_a, alice, world_a, partners, fake_stripe, django_capture_on_commit_callbacks
):
    """The first answer to the authorization is lost on the wire; the ``stripe`` library retries
    with the same idempotency key and Stripe replays the saved answer — "requires_capture" — though
    the authorization has since expired. Checkout must look, refuse cleanly, and order on a new one."""
    stripe_card(clinic_a)
    fake_stripe.drop_next_responses = 1
    fake_stripe.on_replay = fake_stripe.expire
    before = cart_state(world_a["cart"])

    with pytest.raises(PaymentDeclined, match="canceled"):
        place(clinic_a, alice, django_capture_on_commit_callbacks)
    (stale,) = fake_stripe.intents.values()
    keys = [r["headers"]["idempotency-key"] for r in fake_stripe.posts("/v1/payment_intents")]
    assert len(keys) == 2 and keys[0] == keys[1]  # the library's retry, replayed
    assert stale["status"] == "canceled"
    assert cart_state(world_a["cart"]) == before and not Order.objects.exists()

    fake_stripe.on_replay = None
    order = place(clinic_a, alice, django_capture_on_commit_callbacks)
    assert order.payment_reference != stale["id"]
    assert fake_stripe.intents[order.payment_reference]["status"] == "requires_capture"
    assert not Order.objects.filter(payment_reference=stale["id"]).exists()


# --- every accepted line charged within the authorization's life ---------------------------------


def _order_of_four(clinic, actor, capture):
    world = build_cart(clinic, actor, patients_per_partner=2)
    stripe_card(clinic)
    order = place(clinic, actor, capture)
    lines = list(order.lines.order_by("pk"))
    assert len(lines) == 4 and {line.status for line in lines} == {S.SENT}
    return world, order, lines


@pytest.mark.django_db
@pytest.mark.parametrize("late_answer", ["accepted", "rejected"])
def test_three_accepted_and_one_on_hold_past_the_safe_age(
    clinic_a, alice, partners, fake_stripe, django_capture_on_commit_callbacks, late_answer
):
    _, order, lines = _order_of_four(clinic_a, alice, django_capture_on_commit_callbacks)
    for line in lines[:3]:
        answer(line, "accepted", django_capture_on_commit_callbacks)
    answer(lines[3], "on_hold", django_capture_on_commit_callbacks)
    order.refresh_from_db()
    assert order.payment_status == PS.AUTHORIZED  # still waiting for the held line

    age(order, days=5)
    with django_capture_on_commit_callbacks(execute=True):
        sweep_payments()

    order.refresh_from_db()
    three = sum((line.price for line in lines[:3]), Decimal("0.00"))
    assert order.payment_status == PS.PARTIALLY_CAPTURED and order.amount_captured == three
    assert fake_stripe.intents[order.payment_reference]["amount_received"] == int(three * 100)
    assert [charged(line) for line in lines[:3]] == [line.price for line in lines[:3]]
    assert charged(lines[3]) == 0 and not money_violations()

    answer(lines[3], late_answer, django_capture_on_commit_callbacks)

    follow_ups = [pi for pi in fake_stripe.intents.values() if pi["capture_method"] == "automatic"]
    if late_answer == "accepted":
        (pi,) = follow_ups
        assert pi["status"] == "succeeded" and pi["amount_received"] == int(lines[3].price * 100)
        assert pi["metadata"]["line_id"] == str(lines[3].pk)
        assert charged(lines[3]) == lines[3].price
        assert PaymentEvent.objects.get(kind=Kind.CHARGED).line_id == lines[3].pk
    else:
        assert follow_ups == [] and charged(lines[3]) == 0
    assert not money_violations()


@pytest.mark.django_db
def test_stripe_expiring_the_authorization_first_charges_every_accepted_line_by_follow_up(
    client, clinic_a, alice, partners, fake_stripe, django_capture_on_commit_callbacks
):
    _, order, lines = _order_of_four(clinic_a, alice, django_capture_on_commit_callbacks)
    for line in lines[:3]:
        answer(line, "accepted", django_capture_on_commit_callbacks)
    answer(lines[3], "on_hold", django_capture_on_commit_callbacks)

    event = fake_stripe.expire(order.payment_reference)
    body, signature = fake_stripe.event_delivery(event)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/stripe/events", data=body, content_type="application/json",
                               HTTP_STRIPE_SIGNATURE=signature)
    assert response.status_code == 200, response.content

    order.refresh_from_db()
    assert order.payment_status == PS.EXPIRED and order.amount_captured == 0
    assert [charged(line) for line in lines[:3]] == [line.price for line in lines[:3]]
    assert not money_violations()

    answer(lines[3], "accepted", django_capture_on_commit_callbacks)
    assert charged(lines[3]) == lines[3].price
    order.refresh_from_db()
    assert order.amount_charged_later == sum((line.price for line in lines), Decimal("0.00"))
    assert len([pi for pi in fake_stripe.intents.values() if pi["capture_method"] == "automatic"]) == 4
    assert not money_violations()


@pytest.mark.django_db
def test_a_declined_follow_up_is_held_for_the_clinic_and_charged_after_the_card_is_fixed(
    clinic_a, alice, partners, fake_stripe, django_capture_on_commit_callbacks
):
    from fulfillment.settlement import line_retry_charge

    _, order, lines = _order_of_four(clinic_a, alice, django_capture_on_commit_callbacks)
    for line in lines[:3]:
        answer(line, "accepted", django_capture_on_commit_callbacks)
    answer(lines[3], "on_hold", django_capture_on_commit_callbacks)
    age(order, days=6)
    with django_capture_on_commit_callbacks(execute=True):
        sweep_payments()
    clinic_a.payment_method_id = "pm_card_visa_chargeDeclinedInsufficientFunds"
    clinic_a.save()

    answer(lines[3], "accepted", django_capture_on_commit_callbacks)

    lines[3].refresh_from_db()
    assert lines[3].charge_failed_at is not None and charged(lines[3]) == 0
    failed = PaymentEvent.objects.get(kind=Kind.FAILED, line=lines[3])
    assert "declined by the bank (insufficient funds)" in failed.message
    assert [str(v).split(": ", 1)[1] for v in money_violations()] == [
        f"({lines[3].product_name}, accepted) is owed ${lines[3].price:,} but has neither a live authorization nor a charge"]

    clinic_a.payment_method_id = "pm_card_visa"
    clinic_a.save()
    line_retry_charge(line=lines[3], actor=alice)
    assert charged(lines[3]) == lines[3].price and not money_violations()


# --- refunds from every exit ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_partner_cancellation_after_capture_is_refunded_once_even_when_replayed(
    clinic_a, alice, partners, fake_stripe, django_capture_on_commit_callbacks
):
    _, order, lines = _order_of_four(clinic_a, alice, django_capture_on_commit_callbacks)
    for line in lines:
        answer(line, "accepted", django_capture_on_commit_callbacks)
    order.refresh_from_db()
    assert order.payment_status == PS.CAPTURED

    partner = lines[0].partner_order.partner
    cancelled = event_body(lines[0], "cancelled", event_id="evt-cancel-1")
    client = Client()
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert post_event(client, partner, cancelled).status_code == 200

    refunds = PaymentEvent.objects.filter(kind=Kind.REFUNDED)
    assert [(r.line_id, r.amount) for r in refunds] == [(lines[0].pk, lines[0].price)]
    assert fake_stripe.intents[order.payment_reference]["amount_refunded"] == int(lines[0].price * 100)
    assert charged(lines[0]) == 0 and not money_violations()


@pytest.mark.django_db
def test_accepted_then_on_hold_then_rejected_after_capture_is_refunded_once(
    clinic_a, alice, partners, fake_stripe, django_capture_on_commit_callbacks
):
    _, order, lines = _order_of_four(clinic_a, alice, django_capture_on_commit_callbacks)
    for line in lines:
        answer(line, "accepted", django_capture_on_commit_callbacks)
    answer(lines[1], "on_hold", django_capture_on_commit_callbacks)
    answer(lines[1], "rejected", django_capture_on_commit_callbacks)

    assert list(PaymentEvent.objects.filter(kind=Kind.REFUNDED).values_list("line_id", flat=True)) == [lines[1].pk]
    assert charged(lines[1]) == 0 and not money_violations()


# --- the total the coordinator confirmed ----------------------------------------------------------


@pytest.mark.django_db
def test_a_price_changed_between_review_and_place_authorizes_nothing_and_shows_what_changed(
    client_alice, clinic_a, world_a, partners, fake_stripe, django_capture_on_commit_callbacks
):
    from carts.selectors import cart_review

    stripe_card(clinic_a)
    form = place_order_data(client_alice)
    reviewed = cart_review(cart=world_a["cart"]).price.total
    Offering.objects.filter(partner=world_a["cedar"]).update(unit_price=Decimal("175.00"))

    page = client_alice.post(reverse("carts:checkout"), form)

    assert page.status_code == 200 and not fake_stripe.intents and not PaymentEvent.objects.exists()
    html = page.content.decode()
    assert 'id="price-changes"' in html and "The total changed since you reviewed it" in html
    assert "$170.00" in html and "$195.00" in html  # one vial: 150 + 20 shipping → 175 + 20

    again = place_order_data(client_alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post(reverse("carts:checkout"), again)
    assert response.status_code == 302
    order = Order.objects.get()
    assert order.total == reviewed + 6 * Decimal("25.00")  # 1 + 2 + 3 vials, $25 dearer each
    assert fake_stripe.intents[order.payment_reference]["amount"] == int(order.total * 100)


# --- stock ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_clinics_ordering_the_last_unit_at_once_make_one_order(clinic_a, clinic_b, alice, bob, partners):
    world = build_cart(clinic_a, alice, patients_per_partner=1)
    CartLine.objects.filter(cart=world["cart"], product=world["ldn"]).delete()
    # Clinic B orders the same semaglutide, for its own patient, from the same pharmacy.
    with_saved_card(clinic_b)
    prescriber = PrescriberFactory(organization=clinic_b.organization)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX",
                             expires_on=datetime.date.today() + datetime.timedelta(days=400))
    items = [LineInput(
        patient=PatientFactory(organization=clinic_b.organization, state="TX"), product=world["sema"],
        prescriber=prescriber, quantity=1, days_supply=28, sig="Inject 1 unit subcutaneously once weekly")]
    prescriptions_on_file(clinic_b, items)
    cart_add_lines(clinic=clinic_b, actor=bob, items=items)
    Offering.objects.filter(product=world["sema"]).update(stock_quantity=1)  # the last vial
    outcomes = []

    def order_for(clinic, user):
        def run():
            try:
                outcomes.append(("ordered", cart_checkout(clinic=clinic, actor=user).clinic_id))
            except Exception as exc:  # noqa: BLE001 - the loser's answer is asserted below
                outcomes.append(("refused", str(exc)))
        return run

    assert run_threads(order_for(clinic_a, alice), order_for(clinic_b, bob)) == []

    assert sorted(kind for kind, _ in outcomes) == ["ordered", "refused"], outcomes
    refusal = next(text for kind, text in outcomes if kind == "refused")
    assert "no longer has enough Semaglutide in stock" in refusal and "nothing was charged" in refusal
    assert Order.objects.count() == 1 and Offering.objects.get(product=world["sema"]).stock_quantity == 0
    winner = next(clinic for kind, clinic in outcomes if kind == "ordered")
    loser = Cart.objects.get(status=Cart.Status.OPEN, lines__isnull=False)
    assert loser.clinic_id != winner
    from carts.selectors import cart_review

    problems = [p for p in cart_review(cart=loser).problems if p.code == "out_of_stock"]
    assert len(problems) == 1 and problems[0].line_id == loser.lines.get().pk
    # The loser's approval was released: nothing stays authorized for it.
    released = PaymentEvent.objects.get(kind=Kind.CANCELLED, order=None)
    assert released.clinic_id == loser.clinic_id
    assert not money_violations()


@pytest.mark.django_db
def test_a_rejected_line_gives_its_stock_back(clinic_a, alice, world_a, partners, django_capture_on_commit_callbacks):
    offering = Offering.objects.get(partner=world_a["harbor"], product=world_a["ldn"])
    stock = offering.stock_quantity
    order = place(clinic_a, alice, django_capture_on_commit_callbacks)
    ldn_lines = list(order.lines.filter(product=world_a["ldn"]).order_by("pk"))
    offering.refresh_from_db()
    assert offering.stock_quantity == stock - sum(line.quantity for line in ldn_lines)

    answer(ldn_lines[0], "rejected", django_capture_on_commit_callbacks)
    offering.refresh_from_db()
    assert offering.stock_quantity == stock - sum(line.quantity for line in ldn_lines[1:])


# --- check_money ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_money_fails_on_an_inconsistent_order_and_passes_otherwise(
    clinic_a, alice, world_a, partners, django_capture_on_commit_callbacks, capsys
):
    order = place(clinic_a, alice, django_capture_on_commit_callbacks)
    for line in order.lines.all():
        answer(line, "accepted", django_capture_on_commit_callbacks)
    call_command("check_money")
    assert "Money is right: 1 order(s) checked" in capsys.readouterr().out

    line = order.lines.first()
    OrderLine.objects.filter(pk=line.pk).update(amount_charged=0)  # a captured line that lost its charge
    with pytest.raises(CommandError, match="2 money violation"):
        call_command("check_money")
    out = capsys.readouterr().out
    assert f"{order.number}: the payment events add up to" in out
    assert f"{order.number} line {line.pk}: ({line.product_name}, accepted) is owed" in out
    OrderLine.objects.filter(pk=line.pk).update(amount_charged=line.price)  # put back: the scenario ends clean
