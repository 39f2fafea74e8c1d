"""A prescription's fills follow the orders: placing an order uses one fill in the order's
transaction; a declined card uses none; a line rejected or cancelled before it ships gives its
fill back; two clinics racing for a prescription's last refill make one order, and the other
line is flagged ``refills_exhausted`` with nothing authorized for it."""

import datetime
from decimal import Decimal

import pytest

from carts import validation as v
from carts.checkout import CheckoutBlocked, PaymentDeclined, cart_checkout
from carts.models import Cart, CartLine
from carts.services import LineInput, cart_add_lines
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.tests.factories import ClinicFactory, MembershipFactory, PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from fizy.tests.concurrency import run_threads
from fulfillment.models import LineEvent, Order, OrderLine, PaymentEvent
from fulfillment.status import line_apply_status
from prescriptions.models import Fill, Prescription
from prescriptions.tests.factories import PrescriptionFactory

from .conftest import cart_state, with_saved_card

S = OrderLine.Status


def _fills(rx):
    rx.refresh_from_db()
    return rx.fills_remaining


def _rx_of(line):
    return Prescription.objects.get(pk=line.prescription_id)


@pytest.mark.django_db
def test_placing_the_order_uses_one_fill_of_each_lines_prescription(clinic_a, alice, world_a, partners):
    lines = list(CartLine.objects.filter(cart=world_a["cart"]))
    before = {line.pk: _fills(_rx_of(line)) for line in lines}

    order = cart_checkout(clinic=clinic_a, actor=alice)

    for line in lines:
        assert _fills(_rx_of(line)) == before[line.pk] - 1
    assert Fill.objects.filter(status=Fill.Status.USED).count() == len(lines)
    assert set(Fill.objects.values_list("order_line_id", flat=True)) == set(order.lines.values_list("pk", flat=True))
    assert all(ol.prescription_id for ol in order.lines.all())


@pytest.mark.django_db
def test_a_declined_card_uses_no_fill(clinic_a, alice, world_a, partners):
    with_saved_card(clinic_a, "pm_sandbox_declined")
    lines = list(CartLine.objects.filter(cart=world_a["cart"]))
    before = {line.pk: _fills(_rx_of(line)) for line in lines}

    with pytest.raises(PaymentDeclined):
        cart_checkout(clinic=clinic_a, actor=alice)

    assert {line.pk: _fills(_rx_of(line)) for line in lines} == before
    assert not Fill.objects.exclude(status=Fill.Status.GIVEN_BACK).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("answer", [S.REJECTED, S.CANCELLED])
def test_a_line_rejected_or_cancelled_before_shipping_gives_its_fill_back(
    clinic_a, alice, world_a, partners, answer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        order = cart_checkout(clinic=clinic_a, actor=alice)
    line = order.lines.order_by("pk").first()
    rx = Prescription.objects.get(pk=line.prescription_id)
    used = _fills(rx)

    line_apply_status(line=line, to=answer, source=LineEvent.Source.WEBHOOK, actor_label="Partner",
                      reason_code="other")

    assert _fills(rx) == used + 1
    assert Fill.objects.get(order_line_id=line.pk).status == Fill.Status.GIVEN_BACK


@pytest.mark.django_db
def test_a_delivered_line_keeps_its_fill_and_records_the_delivery(clinic_a, alice, world_a, partners,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        order = cart_checkout(clinic=clinic_a, actor=alice)
    line = order.lines.order_by("pk").first()
    rx = Prescription.objects.get(pk=line.prescription_id)
    used = _fills(rx)
    for to in (S.SHIPPED, S.DELIVERED):
        line_apply_status(line=line, to=to, source=LineEvent.Source.WEBHOOK, actor_label="Partner")
    fill = Fill.objects.get(order_line_id=line.pk)
    assert fill.status == Fill.Status.USED and fill.delivered_at is not None and _fills(rx) == used


def test_the_last_fill_given_back_makes_an_exhausted_prescription_active_again(db):
    from prescriptions.services import fill_give_back

    rx = PrescriptionFactory(refills_authorized=0, fills_remaining=0, status=Prescription.Status.EXHAUSTED)
    Fill.objects.create(prescription=rx, status=Fill.Status.USED, order_line_id=987654)
    assert fill_give_back(order_line_id=987654) and not fill_give_back(order_line_id=987654)
    rx.refresh_from_db()
    assert (rx.fills_remaining, rx.status) == (1, Prescription.Status.ACTIVE)


@pytest.fixture
def last_refill(clinic_a, alice):
    """One patient of the organization, whose prescription has one fill left, in the carts of two
    clinics of that organization (Austin and a sister clinic), each with a saved card."""
    sister = ClinicFactory(organization=clinic_a.organization, name="Sister clinic")
    bea = MembershipFactory(clinic=sister).user
    for clinic in (clinic_a, sister):
        with_saved_card(clinic)
    partner = PartnerFactory(name="Cedar", states=["TX"])
    product = ProductFactory(name="Semaglutide", max_quantity_per_line=4, requires_clinical_difference=False)
    OfferingFactory(partner=partner, product=product, unit_price=Decimal("150.00"), shipping_fee=Decimal("20.00"),
                    stock_quantity=100)
    prescriber = PrescriberFactory(organization=clinic_a.organization)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX",
                             expires_on=datetime.date.today() + datetime.timedelta(days=400))
    patient = PatientFactory(organization=clinic_a.organization, state="TX")
    sig = "Inject 0.25 mg subcutaneously once weekly"
    rx = PrescriptionFactory(clinic=clinic_a, patient=patient, product=product, prescriber=prescriber, quantity=1,
                             sig=sig, days_supply=28, refills_authorized=3, fills_remaining=1)
    for clinic, actor in ((clinic_a, alice), (sister, bea)):
        cart_add_lines(clinic=clinic, actor=actor, items=[LineInput(
            patient=patient, product=product, prescriber=prescriber, quantity=1, sig=sig, days_supply=28)])
    return {"rx": rx, "clinics": [(clinic_a, alice), (sister, bea)]}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_clinics_racing_for_the_last_refill_make_one_order(last_refill, partners):
    rx = last_refill["rx"]
    carts = {clinic.pk: Cart.objects.get(clinic=clinic, status=Cart.Status.OPEN) for clinic, _ in last_refill["clinics"]}
    assert all(CartLine.objects.get(cart=cart).prescription_id == rx.pk for cart in carts.values())
    outcomes = {}

    def checkout(clinic, actor):
        def run():
            try:
                outcomes[clinic.pk] = cart_checkout(clinic=clinic, actor=actor)
            except CheckoutBlocked as exc:
                outcomes[clinic.pk] = exc
        return run

    assert run_threads(*[checkout(c, a) for c, a in last_refill["clinics"]]) == []

    orders = [o for o in outcomes.values() if isinstance(o, Order)]
    blocked = [o for o in outcomes.values() if isinstance(o, CheckoutBlocked)]
    assert len(orders) == 1 and len(blocked) == 1 and Order.objects.count() == 1
    [problem] = blocked[0].problems
    loser_clinic = next(pk for pk, o in outcomes.items() if o is blocked[0])
    loser_cart = carts[loser_clinic]
    assert problem.code == v.REFILLS_EXHAUSTED and problem.line_id == CartLine.objects.get(cart=loser_cart).pk
    # nothing was authorized for the losing line, and its cart is open as it was
    assert PaymentEvent.objects.filter(kind="authorized").count() == 1
    assert PaymentEvent.objects.get(kind="authorized").order == orders[0]
    assert cart_state(loser_cart)[0] == Cart.Status.OPEN
    rx.refresh_from_db()
    assert (rx.fills_remaining, rx.status) == (0, Prescription.Status.EXHAUSTED)
    assert list(Fill.objects.values_list("status", flat=True)) == [Fill.Status.USED]
    # the cart now says so before anyone tries again
    assert v.REFILLS_EXHAUSTED in {p.code for p in v.validate_cart(loser_cart)}
