"""Coordinators adding to one clinic's cart at the same time lose nothing (PostgreSQL row locks)."""

from collections import Counter

import pytest

from carts.models import Cart, CartLine
from carts.services import LineInput, cart_add_lines
from catalog.tests.factories import ProductFactory
from clinics.tests.factories import ClinicFactory, MembershipFactory, PatientFactory, PrescriberFactory
from fizy.tests.concurrency import run_threads

THREADS, ADDS = 8, 25


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_coordinators_adding_25_lines_each_lose_nothing():
    clinic = ClinicFactory()
    org = clinic.organization
    users = [MembershipFactory(clinic=clinic).user for _ in range(THREADS)]
    patients = PatientFactory.create_batch(10, organization=org)
    products = ProductFactory.create_batch(3)
    prescriber = PrescriberFactory(organization=org)
    # Every thread adds its own mix; many (patient, product) pairs collide across threads and merge.
    plan = {t: [(patients[(t * 7 + i) % 10], products[(t + i) % 3], 1 + (i % 3)) for i in range(ADDS)]
            for t in range(THREADS)}
    expected = Counter()
    for adds in plan.values():
        for patient, product, qty in adds:
            expected[(patient.pk, product.pk)] += qty

    def coordinator(t):
        def adds():
            for patient, product, qty in plan[t]:
                cart_add_lines(clinic=clinic, actor=users[t], items=[
                    LineInput(patient=patient, product=product, prescriber=prescriber, quantity=qty, sig="Take as below")])
        return adds

    assert run_threads(*[coordinator(t) for t in range(THREADS)]) == []
    assert Cart.objects.filter(clinic=clinic).count() == 1
    got = Counter({(l.patient_id, l.product_id): l.quantity for l in CartLine.objects.all()})
    assert got == expected
    assert Cart.objects.get(clinic=clinic).version == 1 + THREADS * ADDS
