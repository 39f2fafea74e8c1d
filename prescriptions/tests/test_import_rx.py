"""The CSV import's optional Rx number column: a number on file points the row to that
prescription; a new one is recorded as an e-prescription reference when the rows are added."""

import pytest

from carts.imports import import_add_rows, parse_refill_csv
from carts.models import CartLine
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.tests.factories import PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from prescriptions.models import Prescription
from prescriptions.tests.factories import PrescriptionFactory

pytestmark = pytest.mark.django_db
SIG = "Take 1 capsule by mouth at bedtime"


@pytest.fixture
def world(clinic_a):
    product = ProductFactory(sku="FZ-LDN-45", name="Naltrexone", max_quantity_per_line=90)
    OfferingFactory(partner=PartnerFactory(states=["TX"]), product=product, stock_quantity=1000)
    prescriber = PrescriberFactory(organization=clinic_a.organization)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX")
    ann = PatientFactory(organization=clinic_a.organization, chart_id="RX-1", state="TX")
    bo = PatientFactory(organization=clinic_a.organization, chart_id="RX-2", state="TX")
    on_file = PrescriptionFactory(clinic=clinic_a, patient=ann, product=product, prescriber=prescriber, quantity=30,
                                  sig=SIG, days_supply=30, rx_number="RX-ON-FILE")
    PrescriptionFactory(clinic=clinic_a, patient=ann, product=product, prescriber=prescriber, quantity=30,
                        sig=SIG, days_supply=30, rx_number="RX-OTHER")  # newer, but not the one named
    return {"product": product, "prescriber": prescriber, "ann": ann, "bo": bo, "on_file": on_file}


def _csv(world, rows):
    npi = world["prescriber"].npi
    return "chart_id,product,quantity,sig,prescriber_npi,days_supply,rx_number\n" + "".join(
        f"{chart},FZ-LDN-45,30,{SIG},{npi},30,{rx}\n" for chart, rx in rows)


def test_an_rx_number_on_file_is_matched_and_a_new_one_recorded(clinic_a, alice, world):
    rows = parse_refill_csv(clinic=clinic_a, text=_csv(world, [("RX-1", "RX-ON-FILE"), ("RX-2", "RX-NEW-7")]))
    assert [r.errors for r in rows] == [[], []]
    assert rows[0].prescription == world["on_file"] and "not on file yet" in rows[1].notes[0]

    import_add_rows(clinic=clinic_a, rows=rows, actor=alice)

    ann_line = CartLine.objects.get(patient=world["ann"])
    bo_line = CartLine.objects.get(patient=world["bo"])
    assert ann_line.prescription == world["on_file"]
    new = Prescription.objects.get(rx_number="RX-NEW-7")
    assert bo_line.prescription == new and new.source == "erx" and new.patient == world["bo"]


def test_an_rx_number_of_another_patient_is_refused(clinic_a, world):
    [row] = parse_refill_csv(clinic=clinic_a, text=_csv(world, [("RX-2", "RX-ON-FILE")]))
    assert "another patient or product" in row.errors[0] and not row.ok
