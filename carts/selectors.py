"""Reads the cart pages need, each in a fixed number of queries."""

import datetime
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from catalog.models import Product
from clinics.models import Clinic, Patient, Prescriber, PrescriberLicense
from fulfillment.selectors import latest_lines_by_patient_product
from prescriptions.selectors import pick_prescription, prescriptions_for_pairs
from routing.engine import CartTotals, cart_totals, route_lines

from .models import Cart, CartLine
from .pricing import CartPrice, cart_price
from .validation import (
    SET_LINE_FIELD,
    SET_PATIENT_FIELD,
    Problem,
    ProblemCounts,
    count_problems,
    has_blocking_errors,
    problems_by_field,
    problems_by_line,
    validate_cart,
)

PRODUCT_SEARCH_LIMIT = 12
ZERO = Decimal("0.00")


@dataclass
class CartReview:
    """The cart as the coordinator sees it: lines grouped by patient, each with its routing
    decision and problems (``line.decision``, ``line.problems``, ``line.problems_by_field``)."""

    cart: Cart
    lines: list[CartLine]
    groups: list
    problems: list[Problem]
    counts: dict
    problem_counts: ProblemCounts
    totals: CartTotals
    cart_problems: list[Problem]
    price: CartPrice  # drugs, the platform fee and the total the payment authorizes
    flagged: list["Flagged"]  # the lines with open problems, in cart order (the summary's list)

    @property
    def can_checkout(self) -> bool:
        return bool(self.lines) and not has_blocking_errors(self.problems)


@dataclass(frozen=True)
class Flagged:
    """A line the summary lists: its open problems' titles, and where on the page to fix them
    (the patient's header when only patient details are wrong)."""

    line: CartLine
    titles: list[str]
    severity: str
    anchor: str
    problem: Problem | None = None  # the first error with a one-step fix, and that fix (the
    fix: object = None  # summary offers it beside the link: one action, no scrolling)


def _quick_fix(problems: list[Problem]) -> tuple[Problem | None, object]:
    """The first error's first fix that is one step: a button, or one patient field to type."""
    for problem in problems:
        if not problem.is_error:
            continue
        for fix in problem.fixes:
            if fix.action == SET_PATIENT_FIELD or (fix.action == SET_LINE_FIELD and not fix.needs_input):
                return problem, fix
    return None, None


def _flagged(line) -> Flagged | None:
    open_problems = [p for p in line.problems if p.is_open]
    if not open_problems:
        return None
    only_patient = all(p.field == "patient" for p in open_problems)
    problem, fix = _quick_fix(open_problems)
    return Flagged(line=line, titles=[p.title for p in open_problems],
                   severity="error" if any(p.is_error for p in open_problems) else "warning",
                   anchor=f"patient-head-{line.patient_id}" if only_patient else f"line-{line.pk}",
                   problem=problem, fix=fix)


def cart_review(*, cart: Cart) -> CartReview:
    """Route and validate the whole cart, in a fixed number of queries."""
    lines = cart_lines(cart=cart)
    decisions = route_lines(lines, clinic=cart.clinic)
    problems = validate_cart(cart, decisions=decisions, lines=lines)
    by_line = problems_by_line(problems)
    for line in lines:
        line.decision = decisions.get(line.pk)
        line.problems = by_line.get(line.pk, [])
        # A defaultdict: the row asks for every field's problems, and a missing key would cost the
        # template engine an exception per lookup.
        line.problems_by_field = defaultdict(list, problems_by_field(line.problems))
        line.has_errors = any(p.is_error for p in line.problems)
        line.flagged = any(p.is_open for p in line.problems)
    return CartReview(
        cart=cart, lines=lines, groups=group_by_patient(lines), problems=problems,
        counts={"lines": len(lines), "patients": len({line.patient_id for line in lines}),
                "units": sum(line.quantity for line in lines)},
        problem_counts=count_problems(problems), totals=cart_totals(decisions),
        cart_problems=by_line.get(None, []) if lines else [], price=cart_price(clinic=cart.clinic, decisions=decisions),
        flagged=[f for f in map(_flagged, lines) if f is not None],
    )


def lines_by_partner(lines) -> list[tuple[object, list[CartLine], Decimal]]:
    """Reviewed lines grouped by the partner they are routed to: [(partner, lines, subtotal)]."""
    groups: dict = {}
    for line in lines:
        partner = line.decision.partner if line.decision else None
        groups.setdefault(partner.pk if partner else None, (partner, []))[1].append(line)
    return [(partner, group, sum((l.decision.landed_cost or ZERO for l in group if l.decision), ZERO))
            for partner, group in groups.values()]


def lines_by_patient(review: CartReview) -> list[tuple[Patient, list[CartLine], Decimal]]:
    """The review's lines per patient, with each patient's subtotal (landed costs, shipping
    shares included): [(patient, lines, subtotal)], in the cart's order."""
    return [(patient, lines, sum((l.decision.landed_cost or ZERO for l in lines if l.decision), ZERO))
            for patient, lines in review.groups]


def cart_lines(*, cart: Cart) -> list[CartLine]:
    # The page shows neither phone nor email; parsing each patient's phone number costs more than
    # the query. Lines share the cart object instead of loading a cart and clinic copy each.
    lines = list(CartLine.objects.filter(cart=cart).select_related("patient", "product", "prescriber", "prescription").defer(
        "patient__phone", "patient__email", "patient__created_at", "patient__updated_at",
        "created_at", "added_by", "updated_by"))
    for line in lines:
        line.cart = cart
    return lines


def group_by_patient(lines) -> list[tuple[Patient, list[CartLine]]]:
    """Lines (already ordered by patient) as [(patient, [lines])]."""
    groups = []
    for _, group in groupby(lines, key=lambda line: line.patient_id):
        group = list(group)
        groups.append((group[0].patient, group))
    return groups


def prescribers_for(*, clinic: Clinic, state: str = "") -> QuerySet[Prescriber]:
    """The organization's active prescribers; with ``state``, each has ``licensed_here`` (an
    active license in that state) and those licensed come first."""
    prescribers = Prescriber.objects.filter(organization_id=clinic.organization_id, active=True)
    if not state:
        return prescribers.order_by("last_name", "first_name")
    licensed = PrescriberLicense.objects.filter(prescriber=OuterRef("pk"), state=state,
                                                expires_on__gte=timezone.localdate())
    return prescribers.annotate(licensed_here=Exists(licensed)).order_by("-licensed_here", "last_name", "first_name")


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

    @property
    def days_overdue(self) -> int:
        return max(0, -self.days_left)


def refills_due(*, clinic: Clinic, within_days: int = 7, cart: Cart | None = None, today=None) -> list[RefillDue]:
    """The clinic's patients whose last order line of a product runs out (order date + days
    supply) within the next ``within_days`` days, or already ran out in the last 60 days, and
    whose prescription of record for it is active with a fill left (those without one are in
    :func:`prescriptions_needed`), soonest first. Lines without a days supply cannot run out and
    are left out. A fixed number of queries."""
    return _refills(clinic=clinic, within_days=within_days, cart=cart, today=today)[0]


@dataclass
class PrescriptionNeeded:
    """A patient and product a prescriber must write a new prescription for, and why."""

    patient: Patient
    product: Product
    prescriber: Prescriber | None
    prescription: object | None  # prescriptions.Prescription: the one that ran out, expired or expires soon
    reason: str
    runs_out_on: datetime.date | None


EXPIRING_WITHIN_DAYS = 30


def prescriptions_needed(*, clinic: Clinic, today=None) -> list[tuple[Prescriber | None, list[PrescriptionNeeded]]]:
    """"Needs a new prescription", grouped by prescriber (by name): the clinic's patients whose
    prescription for a product they were ordered is exhausted, expired, cancelled, missing, or
    expires within 30 days. A fixed number of queries."""
    needed = _refills(clinic=clinic, within_days=0, cart=None, today=today)[1]
    needed.sort(key=lambda n: (str(n.prescriber or ""), n.patient.last_name, n.patient.first_name, n.product.name))
    return [(prescriber, list(items)) for prescriber, items in groupby(needed, key=lambda n: n.prescriber)]


def _refills(*, clinic, within_days, cart, today) -> tuple[list[RefillDue], list[PrescriptionNeeded]]:
    today = today or timezone.localdate()
    horizon = today + datetime.timedelta(days=within_days)
    oldest = today - datetime.timedelta(days=60)
    in_cart = set()
    if cart is not None:
        in_cart = set(CartLine.objects.filter(cart=cart).values_list("patient_id", "product_id"))
    latest = latest_lines_by_patient_product(clinic=clinic)
    on_file = prescriptions_for_pairs(clinic=clinic, pairs=latest.keys())
    due, needed = [], []
    for (patient_id, product_id), line in latest.items():
        rx = pick_prescription(on_file.get((patient_id, product_id), []), today=today)
        runs_out = (timezone.localtime(line.placed_at).date() + datetime.timedelta(days=line.days_supply)
                    if line.days_supply else None)
        why = _why_new_prescription(rx, today)
        if why:
            needed.append(PrescriptionNeeded(patient=line.patient, product=line.product,
                                             prescriber=rx.prescriber if rx else line.prescriber, prescription=rx,
                                             reason=why, runs_out_on=runs_out))
        if runs_out is None or not rx or not rx.is_usable(today):
            continue
        if oldest <= runs_out <= horizon:
            due.append(RefillDue(patient=line.patient, product=line.product, last_line=line, runs_out_on=runs_out,
                                 days_left=(runs_out - today).days, in_cart=(patient_id, product_id) in in_cart))
    due.sort(key=lambda d: (d.runs_out_on, d.patient.last_name, d.patient.first_name))
    return due, needed


def _why_new_prescription(rx, today) -> str:
    if rx is None:
        return "no prescription on file"
    status = rx.effective_status(today)
    if status == rx.Status.EXPIRED:
        return f"Rx {rx.reference} expired on {rx.expires_on:%b %d, %Y}"
    if status == rx.Status.CANCELLED:
        return f"Rx {rx.reference} was cancelled"
    if rx.fills_remaining <= 0:
        return f"Rx {rx.reference}: no refills left ({rx.refills_authorized + 1} fills used)"
    if (rx.expires_on - today).days <= EXPIRING_WITHIN_DAYS:
        return f"Rx {rx.reference} expires on {rx.expires_on:%b %d, %Y}"
    return ""


@dataclass(frozen=True)
class SkippedRefill:
    """A selected refill that was not added, and why (the Refills due page says so)."""

    patient: Patient | None
    product: Product | None
    reason: str

    def __str__(self) -> str:
        if self.patient is None:
            return f"A selected refill: {self.reason}"
        return f"{self.patient.full_name} — {self.product.name}: {self.reason}"


def _refill_key(key: str) -> tuple[int, int] | None:
    patient_id, _, product_id = (key or "").partition(":")
    if patient_id.isascii() and patient_id.isdigit() and product_id.isascii() and product_id.isdigit():
        return int(patient_id), int(product_id)
    return None


def refills_chosen(*, clinic: Clinic, keys, within_days: int, cart: Cart | None = None,
                   today=None) -> tuple[list[RefillDue], list[SkippedRefill]]:
    """The selected refills (``keys`` from the page) that can be added now, soonest first, and
    those that cannot, each with the reason: already in the cart, or no longer due in the window
    (ordered since, or the window changed). In a fixed number of queries."""
    due = {d.key: d for d in refills_due(clinic=clinic, within_days=within_days, cart=cart, today=today)}
    chosen, skipped, unknown = [], [], []
    for key in dict.fromkeys(keys):
        item = due.get(key)
        if item is None:
            unknown.append(key)
        elif item.in_cart:
            skipped.append(SkippedRefill(item.patient, item.product, "already in the cart, so it was not added again."))
        else:
            chosen.append(item)
    pairs = [pair for pair in map(_refill_key, unknown) if pair]
    patients = Patient.objects.filter(organization_id=clinic.organization_id, pk__in={p for p, _ in pairs}).in_bulk()
    products = Product.objects.filter(pk__in={p for _, p in pairs}).in_bulk() if patients else {}
    reason = f"not due within {within_days} days any more (it was ordered since, or the list changed)."
    for key in unknown:
        patient_id, product_id = _refill_key(key) or (None, None)
        if patient_id in patients and product_id in products:
            skipped.append(SkippedRefill(patients[patient_id], products[product_id], reason))
        else:  # not this organization's, or not a refill at all: say nothing about it
            skipped.append(SkippedRefill(None, None, "not one of this clinic's refills due."))
    chosen.sort(key=lambda d: (d.runs_out_on, d.patient.last_name, d.patient.first_name))
    return chosen, skipped
