"""Reads the cart pages need, each in a fixed number of queries."""

import datetime
from dataclasses import dataclass
from itertools import groupby

from django.db.models import Q, QuerySet
from django.utils import timezone

from catalog.models import Product
from clinics.models import Clinic, Patient, Prescriber
from fulfillment.selectors import latest_lines_by_patient_product

from .models import Cart, CartLine

PRODUCT_SEARCH_LIMIT = 12


def cart_lines(*, cart: Cart) -> QuerySet[CartLine]:
    return CartLine.objects.filter(cart=cart).select_related(
        "patient", "product", "prescriber", "added_by", "updated_by"
    )


def group_by_patient(lines) -> list[tuple[Patient, list[CartLine]]]:
    """Lines (already ordered by patient) as [(patient, [lines])]."""
    groups = []
    for _, group in groupby(lines, key=lambda line: line.patient_id):
        group = list(group)
        groups.append((group[0].patient, group))
    return groups


def prescribers_for(*, clinic: Clinic) -> QuerySet[Prescriber]:
    return Prescriber.objects.filter(organization_id=clinic.organization_id, active=True).order_by("last_name", "first_name")


def product_search(*, query: str, limit: int = PRODUCT_SEARCH_LIMIT) -> QuerySet[Product]:
    query = (query or "").strip()
    products = Product.objects.filter(active=True)
    if not query:
        return products.none()
    for term in query.split():
        products = products.filter(
            Q(name__icontains=term) | Q(strength__icontains=term) | Q(sku__iexact=term)
            | Q(offerings__partner_sku__iexact=term)
        )
    return products.distinct().order_by("name", "strength")[:limit]


def last_prescriber_for(*, patient: Patient) -> Prescriber | None:
    """The prescriber of the patient's most recent order line, or of their latest cart line."""
    latest = latest_lines_by_patient_product(patient_ids=[patient.pk])
    if latest:
        line = max(latest.values(), key=lambda l: (l.placed_at, l.pk))
        if line.prescriber and line.prescriber.active:
            return line.prescriber
    cart_line = (
        CartLine.objects.filter(patient=patient, prescriber__isnull=False).select_related("prescriber")
        .order_by("-updated_at").first()
    )
    return cart_line.prescriber if cart_line else None


@dataclass
class RefillDue:
    patient: Patient
    product: Product
    last_line: object  # fulfillment OrderLine: what they last got
    runs_out_on: datetime.date
    days_left: int
    in_cart: bool

    @property
    def key(self) -> str:
        return f"{self.patient.pk}:{self.product.pk}"


def refills_due(*, clinic: Clinic, within_days: int = 7, cart: Cart | None = None, today=None) -> list[RefillDue]:
    """The clinic's patients whose last order line of a product runs out (order date + days
    supply) within the next ``within_days`` days, or already ran out in the last 60 days,
    soonest first. Lines without a days supply cannot run out and are left out."""
    today = today or timezone.localdate()
    horizon = today + datetime.timedelta(days=within_days)
    oldest = today - datetime.timedelta(days=60)
    in_cart = set()
    if cart is not None:
        in_cart = set(CartLine.objects.filter(cart=cart).values_list("patient_id", "product_id"))
    due = []
    for (patient_id, product_id), line in latest_lines_by_patient_product(clinic=clinic).items():
        if not line.days_supply:
            continue
        runs_out = timezone.localtime(line.placed_at).date() + datetime.timedelta(days=line.days_supply)
        if oldest <= runs_out <= horizon:
            due.append(RefillDue(patient=line.patient, product=line.product, last_line=line, runs_out_on=runs_out,
                                 days_left=(runs_out - today).days, in_cart=(patient_id, product_id) in in_cart))
    due.sort(key=lambda d: (d.runs_out_on, d.patient.last_name, d.patient.first_name))
    return due
