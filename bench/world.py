"""The bench's data: the demo world (``seed_demo``) plus generated Texas patients, and carts of a
given size for the Austin clinic whose every line passes preflight (so checkout goes through).

Deterministic: patient i always has the same name, address and products; each cart takes fresh
patients (no duplicate-therapy warnings from the bench's own earlier orders)."""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction

from carts.models import Cart, CartLine
from carts.services import LineInput, cart_add_lines, cart_get_active
from catalog.models import Offering, Partner, Product
from clinics.models import Clinic, Organization, Patient, Prescriber
from fizy import demo_data

CLINIC_NAME = "Bloom Wellness — Austin"
ORG_NAME = "Bloom Wellness Group"
COORDINATOR = "austin"
PRESCRIBER_LAST_NAME = "Patel"  # licensed in TX with a TX DEA registration (controlled products pass)
CHART_PREFIX = "BENCH-"

# Every product a Texas patient can be routed to, with directions that pass the SIG check.
PRODUCT_SIGS = {
    "FZ-SEMA-25": "Inject 0.25 mg subcutaneously once weekly for 4 weeks",
    "FZ-TIRZ-10": "Inject 2.5 mg subcutaneously once weekly for 4 weeks",
    "FZ-TESC-200": "Inject 100 mg intramuscularly once weekly",
    "FZ-SERM-9": "Inject 300 mcg subcutaneously nightly at bedtime",
    "FZ-NAD-200": "Inject 100 mg subcutaneously twice weekly",
    "FZ-B12-5": "Inject 1 mg intramuscularly once weekly",
    "FZ-GLUT-200": "Inject 200 mg intramuscularly twice weekly",
    "FZ-LDN-45": "Take 1 capsule by mouth nightly at bedtime",
    "FZ-PROG-100": "Take 1 capsule by mouth nightly at bedtime",
    "FZ-BIEST-80": "Apply 1 gram to inner forearm once daily",
    "FZ-KET-150": "Dissolve 1 troche under the tongue once daily",
    "FZ-SILD-20": "Dissolve 1 troche under the tongue one hour before activity",
    "FZ-PHEN-375": "Take 1 capsule by mouth every morning before breakfast",
    "FZ-FINMIN-5": "Spray 1 mL on the scalp twice daily",
}
CLINICAL_DIFFERENCE = "Patient is allergic to an excipient of the commercial product."
LINES_PER_PATIENT = 2


@dataclass
class World:
    clinic: Clinic
    user: object
    prescriber: Prescriber
    products: list[Product]
    patients: list[Patient]
    next_patient: int = 0

    def take_patients(self, n: int) -> list[Patient]:
        if self.next_patient + n > len(self.patients):
            raise RuntimeError(f"the bench seeded {len(self.patients)} patients and needs more; raise --patients")
        chosen = self.patients[self.next_patient:self.next_patient + n]
        self.next_patient += n
        return chosen


BENCH_STOCK = 10_000_000


def seed(*, patients: int, partner_base_url: str) -> World:
    """Migrate-time data: ``seed_demo``, then ``patients`` generated Texas patients of Bloom;
    every partner's order API points at ``partner_base_url`` (a local stub)."""
    call_command("seed_demo", stdout=io.StringIO())
    org = Organization.objects.get(name=ORG_NAME)
    first, last = demo_data._FIRST, demo_data._LAST
    streets = demo_data._ADDRESSES["TX"]
    with transaction.atomic():
        Patient.objects.bulk_create([
            Patient(
                organization=org, chart_id=f"{CHART_PREFIX}{i:05d}",
                first_name=first[i % len(first)], last_name=f"{last[(i * 7) % len(last)]}{i:05d}",
                date_of_birth=datetime.date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
                email=f"bench{i}@mail.example",
                address_line1=f"{100 + i} {streets[i % len(streets)][0].split(' ', 1)[1]}",
                city=streets[i % len(streets)][1], state="TX", zip_code=streets[i % len(streets)][2],
            )
            for i in range(patients)
        ])
        for partner in Partner.objects.all():
            partner.api_base_url = f"{partner_base_url}/{partner.slug}"
            partner.save(update_fields=["api_base_url"])
        # Checkout reserves stock: the repeated checkouts of big carts must not run out of it.
        Offering.objects.filter(stock_quantity__gt=0).update(stock_quantity=BENCH_STOCK)
    return load()


def load() -> World:
    clinic = Clinic.objects.get(name=CLINIC_NAME)
    products = {p.sku: p for p in Product.objects.filter(sku__in=PRODUCT_SIGS)}
    return World(
        clinic=clinic,
        user=get_user_model().objects.get(username=COORDINATOR),
        prescriber=Prescriber.objects.get(organization=clinic.organization, last_name=PRESCRIBER_LAST_NAME),
        products=[products[sku] for sku in PRODUCT_SIGS],
        patients=list(Patient.objects.filter(chart_id__startswith=CHART_PREFIX).order_by("chart_id")),
    )


def line_input(world: World, patient: Patient, product: Product) -> LineInput:
    return LineInput(
        patient=patient, product=product, prescriber=world.prescriber, quantity=1,
        sig=PRODUCT_SIGS[product.sku], days_supply=30, refills=1,
        clinical_difference=CLINICAL_DIFFERENCE if product.requires_clinical_difference else "",
    )


def prescribe(world: World, items: list[LineInput]) -> None:
    """A prescription of record on file (an e-prescription) for each line's patient and product,
    as checkout requires; the cart picks it up when the line is added. Setup, never timed."""
    from prescriptions.models import Prescription
    from prescriptions.rules import default_expiry

    written_on = datetime.date.today() - datetime.timedelta(days=7)
    Prescription.objects.bulk_create([
        Prescription(
            clinic=world.clinic, patient=item.patient, prescriber=item.prescriber, product=item.product, sig=item.sig,
            quantity=item.quantity, days_supply=item.days_supply, refills_authorized=1, fills_remaining=2,
            written_on=written_on, source=Prescription.Source.ERX, rx_number=f"BENCH-{item.patient.pk}-{item.product.pk}",
            expires_on=default_expiry(written_on=written_on, schedule=item.product.dea_schedule, state=item.patient.state),
        )
        for item in items
    ])


def empty_cart(world: World) -> Cart:
    cart = cart_get_active(clinic=world.clinic)
    CartLine.objects.filter(cart=cart).delete()
    return cart


def build_cart(world: World, size: int) -> Cart:
    """The clinic's active cart with exactly ``size`` valid lines (two products per fresh patient),
    added the way the refill queue adds them: one ``cart_add_lines`` call."""
    empty_cart(world)
    patients = world.take_patients((size + LINES_PER_PATIENT - 1) // LINES_PER_PATIENT)
    m = len(world.products)
    items = []
    for p_index, patient in enumerate(patients):
        for k in range(LINES_PER_PATIENT):
            if len(items) < size:
                items.append(line_input(world, patient, world.products[(p_index * LINES_PER_PATIENT + k) % m]))
    prescribe(world, items)
    cart_add_lines(clinic=world.clinic, items=items, actor=world.user)
    cart = cart_get_active(clinic=world.clinic)
    assert cart.lines.count() == size, (cart.lines.count(), size)
    return cart
