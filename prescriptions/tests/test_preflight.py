"""The prescription codes of the cart's preflight: each triggered on its line and field, and
cleared by its fix; the number of queries does not grow with the cart."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from carts import validation as v
from carts.models import CartLine
from carts.services import LineInput, cart_add_lines, cart_get_active, cart_line_set_prescription
from carts.tests.factories import CartLineFactory
from catalog.models import Product
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.tests.factories import DEARegistrationFactory, PatientFactory, PrescriberLicenseFactory
from prescriptions.models import Fill, Prescription
from prescriptions.tests.factories import PrescriptionFactory, prescription_for_line

pytestmark = pytest.mark.django_db
TODAY = timezone.localdate()
SIG = "Inject 0.25 mg subcutaneously once weekly for 4 weeks."


@pytest.fixture
def product():
    product = ProductFactory(name="Semaglutide", max_quantity_per_line=10)
    OfferingFactory(partner=PartnerFactory(states=["TX"]), product=product, stock_quantity=5000)
    return product


@pytest.fixture
def line(clinic_a, product):
    line = CartLineFactory(cart=cart_get_active(clinic=clinic_a), product=product, quantity=2, sig=SIG, days_supply=28)
    PrescriberLicenseFactory(prescriber=line.prescriber, state="TX")
    return line


def problems(line, code=None):
    found = [p for p in v.validate_cart(line.cart) if p.line_id == line.pk]
    return [p for p in found if code is None or p.code == code]


def only(line, code):
    [problem] = problems(line, code)
    return problem


def rx_of(line) -> Prescription:
    return Prescription.objects.get(pk=CartLine.objects.get(pk=line.pk).prescription_id)


def test_a_line_pointing_to_a_matching_active_prescription_is_clean(line):
    assert problems(line) == []


def test_prescription_missing_until_one_on_file_is_picked(alice, line):
    rx = rx_of(line)
    CartLine.objects.filter(pk=line.pk).update(prescription=None)
    problem = only(line, v.PRESCRIPTION_MISSING)
    assert (problem.field, problem.severity) == ("prescription", v.ERROR)
    use = problem.fixes[0]
    assert (use.action, use.value) == (v.USE_PRESCRIPTION, str(rx.pk)) and rx.reference in use.label
    assert problem.fixes[-1].action == v.RECORD_PRESCRIPTION

    cart_line_set_prescription(line=line, prescription=rx, actor=alice)
    assert problems(line) == []


def test_adding_a_line_picks_the_patients_active_prescription(clinic_a, alice, product):
    patient = PatientFactory(organization=clinic_a.organization, state="TX")
    old = PrescriptionFactory(clinic=clinic_a, patient=patient, product=product, fills_remaining=0,
                              status=Prescription.Status.EXHAUSTED, written_on=TODAY - datetime.timedelta(days=90))
    current = PrescriptionFactory(clinic=clinic_a, patient=patient, product=product, prescriber=old.prescriber)
    PrescriptionFactory(clinic=clinic_a, patient=patient, prescriber=old.prescriber)  # another product
    [line] = cart_add_lines(clinic=clinic_a, actor=alice, items=[
        LineInput(patient=patient, product=product, prescriber=old.prescriber, quantity=1, sig=SIG, days_supply=28)
    ]).created
    assert line.prescription_id == current.pk


def test_prescription_expired_is_cleared_by_a_new_prescription(alice, line):
    rx = rx_of(line)
    Prescription.objects.filter(pk=rx.pk).update(written_on=TODAY - datetime.timedelta(days=400),
                                                 expires_on=TODAY - datetime.timedelta(days=1))
    problem = only(line, v.PRESCRIPTION_EXPIRED)
    assert "expired on" in problem.message and problem.fixes[-1].label == "Request a new prescription"

    cart_line_set_prescription(line=line, prescription=prescription_for_line(line), actor=alice)
    assert problems(line) == []


def test_refills_exhausted_asks_for_a_new_prescription(alice, line):
    rx = rx_of(line)
    Prescription.objects.filter(pk=rx.pk).update(fills_remaining=0, status=Prescription.Status.EXHAUSTED)
    problem = only(line, v.REFILLS_EXHAUSTED)
    assert (problem.field, problem.severity) == ("prescription", v.ERROR)
    assert [f.label for f in problem.fixes] == ["Request a new prescription"]

    fresh = prescription_for_line(line)
    assert [f.value for f in only(line, v.REFILLS_EXHAUSTED).fixes if f.action == v.USE_PRESCRIPTION] == [str(fresh.pk)]
    cart_line_set_prescription(line=line, prescription=fresh, actor=alice)
    assert problems(line) == []


def test_refill_too_soon_counts_from_the_delivery_of_the_last_fill(line):
    rx = rx_of(line)
    fill = Fill.objects.create(prescription=rx, status=Fill.Status.USED, order_line_id=None,
                               delivered_at=timezone.now() - datetime.timedelta(days=5))
    problem = only(line, v.REFILL_TOO_SOON)
    assert problem.severity == v.WARNING and "5 days of its 28-day supply" in problem.message
    assert not v.has_blocking_errors(problems(line))

    Fill.objects.filter(pk=fill.pk).update(delivered_at=timezone.now() - datetime.timedelta(days=14))
    assert problems(line) == []  # half the supply has passed


def test_refill_too_soon_share_is_a_setting(line, settings):
    Fill.objects.create(prescription=rx_of(line), status=Fill.Status.USED,
                        delivered_at=timezone.now() - datetime.timedelta(days=14))
    settings.PRESCRIPTION_REFILL_TOO_SOON_SHARE = 0.75
    assert only(line, v.REFILL_TOO_SOON)


@pytest.mark.parametrize("field, value, fixed_by", [
    ("quantity", 3, "quantity"),
    ("sig", "Inject 0.5 mg subcutaneously once weekly for 4 weeks.", "sig"),
])
def test_prescription_mismatch_on_quantity_and_sig_is_fixed_to_the_prescription(client_alice, line, field, value,
                                                                                 fixed_by):
    from django.urls import reverse

    CartLine.objects.filter(pk=line.pk).update(**{field: value})
    problem = only(line, v.PRESCRIPTION_MISMATCH)
    assert (problem.field, problem.severity) == (field, v.ERROR)
    fix = problem.fixes[0]
    client_alice.post(reverse("carts:line-fix", args=[line.pk]), {"field": fix.field, "value": fix.value})
    assert problems(line) == []


def test_prescription_mismatch_on_the_product(line, product):
    other = PrescriptionFactory(clinic=line.cart.clinic, patient=line.patient, prescriber=line.prescriber)
    CartLine.objects.filter(pk=line.pk).update(prescription=other)
    problem = only(line, v.PRESCRIPTION_MISMATCH)
    assert problem.field == "product" and other.product.name in problem.message
    fix = next(f for f in problem.fixes if f.action == v.USE_PRESCRIPTION)  # the one for this product
    CartLine.objects.filter(pk=line.pk).update(prescription_id=int(fix.value))
    assert problems(line) == []


def test_controlled_refill_limit(alice, line, product):
    Product.objects.filter(pk=product.pk).update(dea_schedule=Product.Schedule.III)
    DEARegistrationFactory(prescriber=line.prescriber, state="TX")
    rx = rx_of(line)
    Prescription.objects.filter(pk=rx.pk).update(refills_authorized=8, fills_remaining=9)
    problem = only(line, v.CONTROLLED_REFILL_LIMIT)
    assert "at most 5 refills" in problem.message and problem.severity == v.ERROR

    Prescription.objects.filter(pk=rx.pk).update(refills_authorized=5, fills_remaining=6,
                                                 written_on=TODAY - datetime.timedelta(days=200),
                                                 expires_on=TODAY + datetime.timedelta(days=30))
    assert "cannot be refilled more than 183 days" in only(line, v.CONTROLLED_REFILL_LIMIT).message

    line.refresh_from_db()
    cart_line_set_prescription(line=line, prescription=prescription_for_line(line), actor=alice)
    assert problems(line) == []


def test_a_state_may_set_its_own_limits(line, product, settings):
    Product.objects.filter(pk=product.pk).update(dea_schedule=Product.Schedule.III)
    DEARegistrationFactory(prescriber=line.prescriber, state="TX")
    Prescription.objects.filter(pk=rx_of(line).pk).update(refills_authorized=3, fills_remaining=4)
    assert problems(line) == []
    settings.PRESCRIPTION_STATE_RULES = {"TX": {"III": {"max_refills": 2}}}
    assert "at most 2 refills" in only(line, v.CONTROLLED_REFILL_LIMIT).message


def _cart_of(clinic, product, n):
    cart = cart_get_active(clinic=clinic)
    CartLine.objects.filter(cart=cart).delete()
    for i in range(n):
        line = CartLineFactory(cart=cart, product=product, quantity=2, sig=SIG, days_supply=28)
        rx = line.prescription
        # every code at least once across the cart
        kind = i % 5
        if kind == 1:
            Prescription.objects.filter(pk=rx.pk).update(fills_remaining=0, status=Prescription.Status.EXHAUSTED)
        elif kind == 2:
            Prescription.objects.filter(pk=rx.pk).update(expires_on=TODAY - datetime.timedelta(days=1),
                                                         written_on=TODAY - datetime.timedelta(days=300))
        elif kind == 3:
            Fill.objects.create(prescription=rx, status=Fill.Status.USED, delivered_at=timezone.now())
            CartLine.objects.filter(pk=line.pk).update(quantity=3)
        elif kind == 4:
            CartLine.objects.filter(pk=line.pk).update(prescription=None)
    return cart


def test_validation_queries_do_not_grow_with_the_cart(clinic_a, product):
    counts = []
    for size in (20, 200):
        cart = _cart_of(clinic_a, product, size)
        with CaptureQueriesContext(connection) as ctx:
            found = v.validate_cart(cart)
        counts.append(len(ctx))
        codes = {p.code for p in found}
        assert {v.REFILLS_EXHAUSTED, v.PRESCRIPTION_EXPIRED, v.REFILL_TOO_SOON, v.PRESCRIPTION_MISMATCH,
                v.PRESCRIPTION_MISSING} <= codes
    assert counts[0] == counts[1]
