"""Placing an order takes as many queries for 40 lines as for 6 (issue 12, item 8: the whole bench
re-run showed checkout growing by two queries a line, one per prescription fill taken and used).
Every line here has its prescription on file, as a real refill day's do."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from carts.checkout import cart_checkout
from carts.services import LineInput, cart_add_lines
from catalog.models import Offering
from clinics.tests.factories import PatientFactory
from prescriptions.tests.factories import prescriptions_on_file

from .conftest import build_cart

pytestmark = pytest.mark.postgres


def fill_cart(clinic, actor, world, patients: int) -> None:
    """The clinic's next cart: each new patient with one line at each of the world's two partners."""
    items = []
    for i in range(patients):
        patient = PatientFactory(organization=clinic.organization, state="TX", last_name=f"Second{i}")
        items += [LineInput(patient=patient, product=world["sema"], prescriber=world["prescriber"], quantity=1,
                            days_supply=28, sig="Inject 1 unit subcutaneously once weekly"),
                  LineInput(patient=patient, product=world["ldn"], prescriber=world["prescriber"], quantity=30,
                            days_supply=30, sig="Take 1 capsule by mouth nightly")]
    prescriptions_on_file(clinic, items)
    cart_add_lines(clinic=clinic, actor=actor, items=items)


@pytest.mark.django_db
def test_placing_40_lines_takes_as_many_queries_as_6(clinic_a, alice, django_assert_num_queries):
    world = build_cart(clinic_a, alice, patients_per_partner=3)
    with CaptureQueriesContext(connection) as six:
        order = cart_checkout(clinic=clinic_a, actor=alice)
    assert order.lines.filter(prescription__isnull=False).count() == 6

    Offering.objects.update(stock_quantity=10_000)  # 20 × 30 capsules
    fill_cart(clinic_a, alice, world, patients=20)
    with django_assert_num_queries(len(six)):
        order = cart_checkout(clinic=clinic_a, actor=alice)
    assert order.lines.filter(prescription__isnull=False).count() == 40
