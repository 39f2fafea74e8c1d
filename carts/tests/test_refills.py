import datetime
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from carts.models import CartLine
from carts.selectors import refills_due
from carts.services import LineInput, cart_add_lines
from catalog.tests.factories import PartnerFactory, ProductFactory
from clinics.models import AuditEntry
from clinics.tests.factories import ClinicFactory, PatientFactory, PrescriberFactory
from fulfillment.models import Order, OrderLine, PartnerOrder
from prescriptions.models import Prescription
from prescriptions.tests.factories import PrescriptionFactory

pytestmark = pytest.mark.django_db
TODAY = datetime.date(2026, 11, 26)


def ordered(clinic, patient, product, *, days_ago, days_supply=30, status="delivered", quantity=2, prescriber=None):
    """A past order line, as checkout and fulfillment would have left it, on the patient's
    prescription of record (one per patient and product, with refills left)."""
    placed = timezone.make_aware(datetime.datetime.combine(TODAY - datetime.timedelta(days=days_ago), datetime.time(12)))
    order = Order.objects.create(clinic=clinic, placed_at=placed)
    po = PartnerOrder.objects.create(order=order, partner=PartnerFactory())
    prescriber = prescriber or PrescriberFactory(organization=clinic.organization)
    rx = (Prescription.objects.filter(patient=patient, product=product).first()
          or PrescriptionFactory(clinic=clinic, patient=patient, product=product, prescriber=prescriber,
                                 quantity=quantity, sig=f"SIG for {patient.last_name}", days_supply=days_supply or 30))
    return OrderLine.objects.create(
        order=order, partner_order=po, patient=patient, product=product, prescription=rx,
        prescriber=prescriber,
        product_name=product.name, partner_sku="X", quantity=quantity, sig=f"SIG for {patient.last_name}",
        days_supply=days_supply, unit_price=Decimal("10.00"), landed_cost=Decimal("20.00"), status=status,
    )


@pytest.fixture
def due_world(clinic_a):
    org = clinic_a.organization
    p = {name: PatientFactory(organization=org, last_name=name) for name in
         ["Soon", "Later", "Overdue", "Rejected", "Refilled", "NoSupply", "LongAgo"]}
    sema, ldn = ProductFactory(name="Semaglutide"), ProductFactory(name="LDN")
    ordered(clinic_a, p["Soon"], sema, days_ago=25)                     # runs out in 5 days
    ordered(clinic_a, p["Later"], sema, days_ago=10)                    # in 20 days
    ordered(clinic_a, p["Overdue"], ldn, days_ago=33)                   # ran out 3 days ago
    ordered(clinic_a, p["Rejected"], sema, days_ago=25, status="rejected")  # never received
    ordered(clinic_a, p["Refilled"], sema, days_ago=28)                 # old one would be due…
    ordered(clinic_a, p["Refilled"], sema, days_ago=2)                  # …but a newer order covers it
    ordered(clinic_a, p["NoSupply"], sema, days_ago=29, days_supply=None)
    ordered(clinic_a, p["LongAgo"], sema, days_ago=200)                 # ran out months ago: not a refill any more
    ordered(ClinicFactory(), PatientFactory(last_name="OtherClinic"), sema, days_ago=25)
    return p, sema, ldn


def test_refills_due_lists_only_this_clinics_patients_running_out_soon(clinic_a, due_world):
    due = refills_due(clinic=clinic_a, within_days=7, today=TODAY)
    assert [(d.patient.last_name, d.days_left) for d in due] == [("Overdue", -3), ("Soon", 5)]
    assert due[1].last_line.sig == "SIG for Soon" and due[1].last_line.quantity == 2


def test_window_widens_the_list(clinic_a, due_world):
    assert [d.patient.last_name for d in refills_due(clinic=clinic_a, within_days=30, today=TODAY)] == [
        "Overdue", "Soon", "Later", "Refilled"]


def test_patients_already_in_the_cart_are_marked(clinic_a, alice, due_world):
    patients, sema, _ = due_world
    result = cart_add_lines(clinic=clinic_a, actor=alice, items=[
        LineInput(patient=patients["Soon"], product=sema, prescriber=None, quantity=1)])
    due = refills_due(clinic=clinic_a, within_days=7, today=TODAY, cart=result.created[0].cart)
    assert {d.patient.last_name: d.in_cart for d in due} == {"Overdue": False, "Soon": True}


def test_add_selected_refills_in_one_request_copies_the_last_order(client_alice, clinic_a, due_world, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.localdate", lambda *a, **k: TODAY)
    page = client_alice.get(reverse("carts:refills"), {"days": 7}).content.decode()
    assert "Soon" in page and "Overdue" in page and "Later" not in page and "OtherClinic" not in page
    assert "ran out 3 days ago" in page and "in 5 days" in page
    due = refills_due(clinic=clinic_a, within_days=7, today=TODAY)
    response = client_alice.post(reverse("carts:refills"), {"days": 7, "item": [d.key for d in due]})
    assert response.status_code == 302 and response["Location"] == reverse("carts:cart")
    lines = CartLine.objects.order_by("patient__last_name")
    assert [(l.patient.last_name, l.quantity, l.sig, l.days_supply) for l in lines] == [
        ("Overdue", 2, "SIG for Overdue", 30), ("Soon", 2, "SIG for Soon", 30)]
    assert all(l.prescriber_id == d.last_line.prescriber_id for l, d in zip(lines, due))
    assert AuditEntry.objects.filter(action="cart.refill").count() == 2


def test_refill_items_of_another_clinic_are_ignored(client_bob, clinic_a, due_world):
    due = refills_due(clinic=clinic_a, within_days=7, today=TODAY)
    response = client_bob.post(reverse("carts:refills"), {"days": 7, "item": [d.key for d in due]})
    assert response.status_code == 302
    assert not CartLine.objects.exists()


def test_adding_nothing_says_to_select_someone(client_alice, due_world):
    response = client_alice.post(reverse("carts:refills"), {"days": 7}, follow=True)
    assert "Select at least one patient" in response.content.decode()


def test_selected_refills_not_added_are_named_with_the_reason(client_alice, clinic_a, alice, due_world, monkeypatch):
    """Four selected, two added: the page says which two were skipped and why."""
    monkeypatch.setattr("django.utils.timezone.localdate", lambda *a, **k: TODAY)
    patients, sema, ldn = due_world
    keys = [d.key for d in refills_due(clinic=clinic_a, within_days=30, today=TODAY)]  # seen with a 30-day window
    cart_add_lines(clinic=clinic_a, actor=alice, items=[LineInput(patient=patients["Soon"], product=sema,
                                                                  prescriber=None, quantity=1)])
    response = client_alice.post(reverse("carts:refills"), {"days": 7, "item": keys}, follow=True)
    page = response.content.decode()
    assert f"Skipped {patients['Soon'].full_name} — Semaglutide: already in the cart" in page
    assert f"Skipped {patients['Later'].full_name} — Semaglutide: not due within 7 days" in page
    assert "Added 1 line to the cart." in page
    assert CartLine.objects.get(patient=patients["Soon"]).quantity == 1  # not merged a second time


def test_refills_of_another_organization_are_skipped_without_naming_them(client_bob, clinic_a, due_world):
    due = refills_due(clinic=clinic_a, within_days=7, today=TODAY)
    page = client_bob.post(reverse("carts:refills"), {"days": 7, "item": [d.key for d in due]}, follow=True).content.decode()
    assert "not one of this clinic&#x27;s refills due" in page
    assert not any(d.patient.last_name in page for d in due)
    assert not CartLine.objects.exists()


def test_only_patients_with_refills_left_are_due_the_others_need_a_new_prescription(client_alice, clinic_a, due_world):
    from carts.selectors import prescriptions_needed

    p, sema, ldn = due_world
    Prescription.objects.filter(patient=p["Soon"]).update(fills_remaining=0, status=Prescription.Status.EXHAUSTED)
    assert [d.patient.last_name for d in refills_due(clinic=clinic_a, within_days=7, today=TODAY)] == ["Overdue"]
    needed = prescriptions_needed(clinic=clinic_a, today=TODAY)
    [(prescriber, [item])] = needed
    assert item.patient == p["Soon"] and "no refills left" in item.reason
    assert prescriber == Prescription.objects.get(patient=p["Soon"]).prescriber

    page = client_alice.get(reverse("carts:refills")).content.decode()
    assert "Needs a new prescription" in page and "Soon" in page.split('id="prescriptions-needed"')[1]
    Patient = type(p["Soon"])
    Patient.objects.filter(pk=p["Soon"].pk).update(chart_id="=HYPERLINK(1)")
    csv = client_alice.get(reverse("carts:prescriptions-needed-csv"))
    assert csv["Content-Type"].startswith("text/csv")
    body = csv.content.decode()
    assert body.startswith("prescriber,prescriber_npi,chart_id") and "'=HYPERLINK(1)" in body
    assert "no refills left" in body
