"""Recording a prescription in the line's row, and the data migration that gave lines placed
before prescriptions were tracked a prescription on file."""

import importlib

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from carts import validation as v
from carts.models import CartLine
from carts.services import cart_get_active
from carts.tests.factories import CartLineFactory
from fulfillment.models import OrderLine
from fulfillment.tests.factories import order_with_lines
from prescriptions.models import Fill, Prescription

pytestmark = pytest.mark.django_db


def test_the_coordinator_records_the_prescription_without_leaving_the_cart(client_alice, clinic_a):
    line = CartLineFactory(cart=cart_get_active(clinic=clinic_a), prescription=None)
    assert v.PRESCRIPTION_MISSING in {p.code for p in v.validate_cart(line.cart)}
    url = reverse("carts:line-prescription", args=[line.pk])
    form = client_alice.get(url).content.decode()
    assert 'class="rx-form"' in form and f'id="line-{line.pk}"' in form

    answer = client_alice.post(url, {
        "source": "erx", "rx_number": "RX-77", "prescriber": line.prescriber_id, "sig": line.sig,
        "quantity": line.quantity, "days_supply": line.days_supply, "refills_authorized": 2,
        "written_on": timezone.localdate().isoformat()})

    body = answer.content.decode()
    assert answer.status_code == 200 and "Recorded Rx RX-77" in body and v.PRESCRIPTION_MISSING not in body
    line.refresh_from_db()
    assert line.prescription.rx_number == "RX-77" and line.prescription.fills_remaining == 3


def test_a_prescription_the_service_refuses_is_said_in_the_form(client_alice, clinic_a):
    line = CartLineFactory(cart=cart_get_active(clinic=clinic_a), prescription=None)
    answer = client_alice.post(reverse("carts:line-prescription", args=[line.pk]), {
        "source": "erx", "prescriber": line.prescriber_id, "sig": line.sig, "quantity": 1, "days_supply": 28,
        "refills_authorized": 0, "written_on": timezone.localdate().isoformat()})
    assert answer.status_code == 200 and "message id or the pharmacy" in answer.content.decode()
    line.refresh_from_db()
    assert line.prescription is None


def test_the_data_migration_gives_every_line_a_prescription_on_file(clinic_a):
    order = order_with_lines(clinic=clinic_a, lines_per_partner=2)
    OrderLine.objects.filter(order=order).update(status="delivered", status_changed_at=timezone.now())
    cart_line = CartLineFactory(cart=cart_get_active(clinic=clinic_a), prescription=None)
    migration = importlib.import_module("carts.migrations.0005_lines_point_to_prescriptions")

    migration.forwards(apps, None)

    for line in OrderLine.objects.filter(order=order):
        rx = line.prescription
        assert rx is not None and rx.source == Prescription.Source.ON_FILE and rx.patient_id == line.patient_id
        fill = Fill.objects.get(order_line_id=line.pk)
        assert fill.status == Fill.Status.USED and fill.delivered_at is not None
    cart_line.refresh_from_db()
    assert cart_line.prescription is not None and cart_line.prescription.quantity == cart_line.quantity
