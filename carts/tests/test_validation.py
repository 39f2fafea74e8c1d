import dataclasses
import datetime
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from carts import validation as v
from carts.models import CartLine
from carts.tests.factories import CartFactory, CartLineFactory
from catalog.models import Offering, Partner, PartnerStateLicense, Product
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.models import Patient, Prescriber, PrescriberLicense
from clinics.tests.factories import DEARegistrationFactory, PrescriberFactory, PrescriberLicenseFactory
from fulfillment.models import Order, OrderLine, PartnerOrder
from prescriptions.tests.factories import prescribe_as_line
from routing.tests.factories import route_cart

pytestmark = pytest.mark.django_db

GOOD_SIG = "Inject 0.25 mg subcutaneously once weekly for 4 weeks."
TODAY = datetime.date.today()


@pytest.fixture
def harbor():
    return PartnerFactory(name="Harbor", states=["TX", "CA"])


@pytest.fixture
def product(harbor):
    product = ProductFactory(name="Semaglutide", unit="vial", max_quantity_per_line=10)
    OfferingFactory(partner=harbor, product=product, stock_quantity=50)
    return product


@pytest.fixture
def line(product):
    line = CartLineFactory(product=product, sig=GOOD_SIG, days_supply=28, refills=0)
    PrescriberLicenseFactory(prescriber=line.prescriber, state="TX")
    return line


def codes(problems, line=None):
    return {p.code for p in problems if line is None or p.line_id == line.pk}


# --- how each case breaks and fixes a line -------------------------------------------------------


def set_line(**fields):
    return lambda line: CartLine.objects.filter(pk=line.pk).update(**fields)


def set_patient(**fields):
    return lambda line: Patient.objects.filter(pk=line.patient_id).update(**fields)


def set_product(**fields):
    return lambda line: Product.objects.filter(pk=line.product_id).update(**fields)


def set_prescriber(**fields):
    return lambda line: Prescriber.objects.filter(pk=line.prescriber_id).update(**fields)


def set_license(**fields):
    return lambda line: PrescriberLicense.objects.filter(prescriber_id=line.prescriber_id).update(**fields)


def steps(*actions):
    def run(line):
        for action in actions:
            action(line)
    return run


def new_licensed_prescriber(line):
    prescriber = PrescriberFactory(organization=line.cart.clinic.organization)
    PrescriberLicenseFactory(prescriber=prescriber, state="TX")
    CartLine.objects.filter(pk=line.pk).update(prescriber=prescriber)


def add_tx_license(line):
    PrescriberLicenseFactory(prescriber=line.prescriber, state="TX")


def add_tx_dea(line):
    DEARegistrationFactory(prescriber=line.prescriber, state="TX")


def unlicense_harbor_in_tx(line):
    PartnerStateLicense.objects.filter(partner__name="Harbor", state="TX").delete()


def relicense_harbor_in_tx(line):
    PartnerStateLicense.objects.create(partner=Partner.objects.get(name="Harbor"), state="TX")


@dataclasses.dataclass
class Case:
    code: str
    field: str
    breaks: Callable
    fixes: Callable
    mentions: Callable = lambda line: []  # what the message must name, so the coordinator knows what to fix

    def __str__(self):
        return self.code


YESTERDAY = TODAY - datetime.timedelta(days=1)
SCHEDULE_III = set_product(dea_schedule=Product.Schedule.III)

CASES = [
    Case(v.SIG_MISSING, "sig", set_line(sig="  "), set_line(sig=GOOD_SIG), lambda line: ["SIG", "e.g."]),
    Case(v.SIG_TOO_VAGUE, "sig", set_line(sig="Use as directed"), set_line(sig=GOOD_SIG),
         lambda line: ["as directed", "dose, route and frequency"]),
    Case(v.QUANTITY_INVALID, "quantity", set_line(quantity=0), set_line(quantity=1), lambda line: ["at least 1"]),
    Case(v.QUANTITY_OVER_MAX, "quantity", set_line(quantity=11), set_line(quantity=10),
         lambda line: ["10 vials", "Reduce the quantity to 10"]),
    Case(v.DAYS_SUPPLY_INVALID, "days_supply", set_line(days_supply=None), set_line(days_supply=30),
         lambda line: ["missing", str(v.MAX_DAYS_SUPPLY)]),
    Case(v.REFILLS_INVALID, "refills", set_line(refills=v.MAX_REFILLS + 1), set_line(refills=v.MAX_REFILLS),
         lambda line: [f"At most {v.MAX_REFILLS} refills"]),
    Case(v.PATIENT_DOB_MISSING, "patient", set_patient(date_of_birth=None),
         set_patient(date_of_birth=datetime.date(1970, 1, 2)), lambda line: [line.patient.full_name, "date of birth"]),
    Case(v.PATIENT_DOB_INVALID, "patient", set_patient(date_of_birth=TODAY + datetime.timedelta(days=400)),
         set_patient(date_of_birth=datetime.date(1970, 1, 2)), lambda line: [line.patient.full_name, "in the future"]),
    Case(v.ADDRESS_INCOMPLETE, "patient", set_patient(address_line1="", zip_code=""),
         set_patient(address_line1="1 Elm St", zip_code="78701"), lambda line: ["address line 1", "ZIP code"]),
    Case(v.PRESCRIBER_MISSING, "prescriber", set_line(prescriber=None), new_licensed_prescriber,
         lambda line: ["Choose the prescriber"]),
    Case(v.PRESCRIBER_INACTIVE, "prescriber", set_prescriber(active=False), set_prescriber(active=True),
         lambda line: [str(line.prescriber), "inactive"]),
    Case(v.PRESCRIBER_NOT_LICENSED_IN_STATE, "prescriber", set_license(state="OK"), add_tx_license,
         lambda line: [str(line.prescriber), "TX"]),
    Case(v.PRESCRIBER_LICENSE_EXPIRED, "prescriber", set_license(expires_on=YESTERDAY),
         set_license(expires_on=TODAY + datetime.timedelta(days=30)), lambda line: [f"{YESTERDAY:%b %d, %Y}", "TX"]),
    Case(v.DEA_REGISTRATION_REQUIRED, "prescriber", SCHEDULE_III, add_tx_dea,
         lambda line: ["DEA registration", "TX", "Schedule III"]),
    Case(v.CLINICAL_DIFFERENCE_REQUIRED, "clinical_difference",
         steps(set_product(requires_clinical_difference=True), set_line(clinical_difference="needed")),
         set_line(clinical_difference="Patient is allergic to an excipient of the commercial pen."),
         lambda line: ["clinical difference", line.patient.full_name]),
    Case(v.PRODUCT_INACTIVE, "product", set_product(active=False), set_product(active=True),
         lambda line: ["no longer offered"]),
    Case(v.NO_ELIGIBLE_PARTNER, "product", unlicense_harbor_in_tx, relicense_harbor_in_tx,
         lambda line: ["Harbor is not licensed in TX"]),
    Case(v.OUT_OF_STOCK, "quantity", steps(set_line(quantity=3), lambda line: Offering.objects.update(stock_quantity=2)),
         set_line(quantity=2), lambda line: ["Only 2 vials", "Reduce the quantity to 2"]),
]


def test_a_complete_line_has_no_problems(line):
    assert v.validate_cart(line.cart) == []


def test_every_code_has_a_case():
    codes_in_module = {value for name, value in vars(v).items() if name.isupper() and isinstance(value, str)
                       and value.islower() and "_" in value}
    codes_in_module.discard(v.PHARMACY_PREFIX)  # pharmacy flags: carts/tests/test_reorder.py
    prescription_codes = {v.PRESCRIPTION_MISSING, v.PRESCRIPTION_EXPIRED, v.REFILLS_EXHAUSTED, v.REFILL_TOO_SOON,
                          v.PRESCRIPTION_MISMATCH, v.CONTROLLED_REFILL_LIMIT}  # prescriptions/tests/test_preflight.py
    assert codes_in_module - {case.code for case in CASES} == {v.CART_EMPTY, v.DUPLICATE_THERAPY} | prescription_codes


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_problem_is_reported_on_its_line_and_field_with_what_to_do(line, case):
    case.breaks(line)
    line.refresh_from_db()

    problems = [p for p in v.validate_cart(line.cart) if p.code == case.code]

    assert len(problems) == 1
    problem = problems[0]
    assert (problem.line_id, problem.field, problem.severity) == (line.pk, case.field, v.ERROR)
    for text in case.mentions(line):
        assert text in problem.message
    assert v.has_blocking_errors(problems)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fixing_the_line_clears_the_problem(line, case):
    case.breaks(line)
    assert case.code in codes(v.validate_cart(line.cart))

    case.fixes(line)

    assert case.code not in codes(v.validate_cart(line.cart))


def test_a_cart_with_three_flagged_lines_validates_clean_once_each_is_fixed(line, product):
    by_code = {case.code: case for case in CASES}
    second = CartLineFactory(cart=line.cart, product=product)
    third = CartLineFactory(cart=line.cart, product=product)
    for other in (second, third):
        PrescriberLicenseFactory(prescriber=other.prescriber, state="TX")
    flagged = {line: by_code[v.SIG_TOO_VAGUE], second: by_code[v.PRESCRIBER_LICENSE_EXPIRED],
               third: by_code[v.QUANTITY_OVER_MAX]}
    for flagged_line, case in flagged.items():
        case.breaks(flagged_line)

    problems = v.validate_cart(line.cart)
    # (the changed quantity and SIG also differ from the prescriptions: prescription_mismatch)
    assert {(p.line_id, p.code) for p in problems if p.code != v.PRESCRIPTION_MISMATCH} == {
        (fl.pk, case.code) for fl, case in flagged.items()}
    assert v.has_blocking_errors(problems)

    for flagged_line, case in flagged.items():
        case.fixes(flagged_line)
        prescribe_as_line(flagged_line)  # what the line now orders is what is prescribed

    problems = v.validate_cart(line.cart)
    assert problems == [] and not v.has_blocking_errors(problems)


@pytest.mark.parametrize("sig", [
    "as directed", "Use as directed.", "Take as directed by your physician", "See notes", "N/A", "n/a",
    "same as before", "Same as last time", "Inject as directed", "UD", "ut dict", "TBD", "Inject", "1 qd",
])
def test_vague_directions_are_refused(line, sig):
    set_line(sig=sig)(line)

    assert v.SIG_TOO_VAGUE in codes(v.validate_cart(line.cart))


@pytest.mark.parametrize("sig", [
    GOOD_SIG, "Take 1 capsule by mouth daily", "Apply a thin layer to the affected area twice daily",
    "Inject 10 units subcutaneously daily as directed", "Dissolve 1 troche under the tongue as needed for nausea",
])
def test_specific_directions_pass(line, sig):
    set_line(sig=sig)(line)

    assert v.SIG_TOO_VAGUE not in codes(v.validate_cart(line.cart))


@pytest.mark.parametrize("days", [0, v.MAX_DAYS_SUPPLY + 1])
def test_days_supply_out_of_range_is_refused(line, days):
    set_line(days_supply=days)(line)

    problems = [p for p in v.validate_cart(line.cart) if p.code == v.DAYS_SUPPLY_INVALID]

    assert problems and f"of {days} is not valid" in problems[0].message


@pytest.mark.parametrize("schedule, refills, allowed", [
    (Product.Schedule.II, 1, 0), (Product.Schedule.IV, v.MAX_REFILLS_SCHEDULE_III_TO_V + 1, v.MAX_REFILLS_SCHEDULE_III_TO_V),
])
def test_controlled_products_have_tighter_refill_limits(line, schedule, refills, allowed):
    set_product(dea_schedule=schedule)(line)
    add_tx_dea(line)
    set_line(refills=refills)(line)

    problems = [p for p in v.validate_cart(line.cart) if p.code == v.REFILLS_INVALID]
    assert problems and f"Schedule {schedule}" in problems[0].message

    set_line(refills=allowed)(line)
    prescribe_as_line(line)  # a prescription written for the controlled product
    assert v.validate_cart(line.cart) == []


def test_an_expired_dea_registration_is_named(line):
    SCHEDULE_III(line)
    DEARegistrationFactory(prescriber=line.prescriber, state="TX", expires_on=YESTERDAY)

    problem = next(p for p in v.validate_cart(line.cart) if p.code == v.DEA_REGISTRATION_REQUIRED)

    assert f"expired on {YESTERDAY:%b %d, %Y}" in problem.message


def test_a_dea_registration_in_another_state_does_not_count(line):
    SCHEDULE_III(line)
    DEARegistrationFactory(prescriber=line.prescriber, state="CA")

    assert v.DEA_REGISTRATION_REQUIRED in codes(v.validate_cart(line.cart))


def test_out_of_stock_everywhere_says_so(line):
    Offering.objects.update(stock_quantity=0)

    problem = next(p for p in v.validate_cart(line.cart) if p.code == v.OUT_OF_STOCK)

    assert "out of stock at every pharmacy that ships to TX" in problem.message


def test_nobody_carrying_the_product_is_no_eligible_partner(line):
    Offering.objects.all().delete()

    problem = next(p for p in v.validate_cart(line.cart) if p.code == v.NO_ELIGIBLE_PARTNER)

    assert f"no partner pharmacy carries {line.product}" in problem.message


def test_a_missing_state_is_reported_once_as_an_incomplete_address(line):
    set_patient(state="")(line)

    found = codes(v.validate_cart(line.cart))

    assert v.ADDRESS_INCOMPLETE in found
    assert not found & {v.NO_ELIGIBLE_PARTNER, v.PRESCRIBER_NOT_LICENSED_IN_STATE}


def test_an_empty_cart_cannot_check_out(db):
    problems = v.validate_cart(CartFactory())

    assert [(p.line_id, p.code) for p in problems] == [(None, v.CART_EMPTY)]
    assert v.has_blocking_errors(problems)


# --- duplicate therapy (a warning) ---------------------------------------------------------------


def sent_before(line, *, days_ago, days_supply, status=OrderLine.Status.DELIVERED):
    placed = timezone.now() - datetime.timedelta(days=days_ago)
    order = Order.objects.create(clinic=line.cart.clinic, placed_at=placed)
    partner_order = PartnerOrder.objects.create(order=order, partner=PartnerFactory())
    return OrderLine.objects.create(
        order=order, partner_order=partner_order, patient=line.patient, product=line.product,
        product_name=line.product.name, partner_sku="X", quantity=1, sig=GOOD_SIG, days_supply=days_supply,
        unit_price=Decimal("10.00"), landed_cost=Decimal("10.00"), status=status,
    )


def test_a_recent_fill_of_the_same_product_is_a_warning_that_does_not_block(line):
    sent_before(line, days_ago=10, days_supply=28)

    problems = v.validate_cart(line.cart)

    [problem] = problems
    assert (problem.code, problem.field, problem.severity) == (v.DUPLICATE_THERAPY, "product", v.WARNING)
    assert "18 days of that supply remain" in problem.message
    assert line.patient.full_name in problem.message
    assert not problem.acknowledged
    assert not v.has_blocking_errors(problems)
    assert v.has_blocking_errors(problems, warnings_block=True)
    assert not v.has_blocking_errors(problems, warnings_block=True, acknowledged={(line.pk, v.DUPLICATE_THERAPY)})


def test_the_warning_clears_once_the_previous_supply_has_run_out(line):
    sent_before(line, days_ago=10, days_supply=28)

    assert v.DUPLICATE_THERAPY in codes(v.validate_cart(line.cart))
    assert v.DUPLICATE_THERAPY not in codes(v.validate_cart(line.cart, today=TODAY + datetime.timedelta(days=18)))


def test_a_refill_in_the_last_quarter_of_the_supply_is_a_normal_refill(line):
    sent_before(line, days_ago=21, days_supply=28)  # 7 of 28 days left: time to reorder
    assert v.DUPLICATE_THERAPY not in codes(v.validate_cart(line.cart))


def test_a_refill_one_day_before_the_last_quarter_is_too_soon(line):
    sent_before(line, days_ago=20, days_supply=28)  # 8 of 28 days left
    assert v.DUPLICATE_THERAPY in codes(v.validate_cart(line.cart))


def test_removing_the_duplicate_product_clears_the_warning(line, harbor):
    sent_before(line, days_ago=10, days_supply=28)
    other = ProductFactory()
    OfferingFactory(partner=harbor, product=other)

    set_line(product=other)(line)
    prescribe_as_line(line)

    assert v.validate_cart(line.cart) == []


def test_a_fill_that_never_reached_the_patient_is_not_a_duplicate(line):
    sent_before(line, days_ago=10, days_supply=28, status=OrderLine.Status.REJECTED)

    assert v.validate_cart(line.cart) == []


def test_an_acknowledged_warning_is_still_shown_but_marked(line):
    sent_before(line, days_ago=10, days_supply=28)
    set_line(acknowledged_warnings=[v.DUPLICATE_THERAPY])(line)

    [problem] = v.validate_cart(line.cart)

    assert problem.code == v.DUPLICATE_THERAPY and problem.acknowledged
    assert not v.has_blocking_errors([problem], warnings_block=True)
    assert v.count_problems([problem]) == v.ProblemCounts(errors=0, warnings=0, acknowledged_warnings=1, lines_with_errors=0)


def test_acknowledging_a_warning_never_silences_an_error(line):
    set_line(sig="", acknowledged_warnings=[v.SIG_MISSING])(line)

    [problem] = v.validate_cart(line.cart)

    assert problem.code == v.SIG_MISSING and not problem.acknowledged
    assert v.has_blocking_errors([problem], acknowledged={(line.pk, v.SIG_MISSING)})


# --- helpers and query counts --------------------------------------------------------------------


def test_problems_are_grouped_by_line_and_field(line, product):
    other = CartLineFactory(cart=line.cart, product=product, quantity=0, sig="")
    set_patient(date_of_birth=None)(line)

    problems = v.validate_cart(line.cart)
    by_line = v.problems_by_line(problems)

    assert set(by_line) == {line.pk, other.pk}
    assert codes(by_line[line.pk]) == {v.PATIENT_DOB_MISSING}
    by_field = v.problems_by_field(by_line[other.pk])
    assert {v.QUANTITY_INVALID} == codes(by_field["quantity"])
    assert {v.SIG_MISSING} == codes(by_field["sig"])
    assert v.count_problems(problems).lines_with_errors == 2


def test_routing_decisions_passed_in_are_reused(line):
    unlicense_harbor_in_tx(line)
    with CaptureQueriesContext(connection) as routing_anew:
        fresh = v.validate_cart(line.cart)
    decisions = route_cart(line.cart)

    with CaptureQueriesContext(connection) as reusing:
        reused = v.validate_cart(line.cart, decisions=decisions)

    assert reused == fresh and v.NO_ELIGIBLE_PARTNER in codes(reused)
    assert len(reusing) < len(routing_anew)


def test_lines_the_caller_already_fetched_are_reused(line, product):
    CartLineFactory(cart=line.cart, product=product, sig="")
    with CaptureQueriesContext(connection) as fetching:
        fetched_here = v.validate_cart(line.cart)
    lines = list(line.cart.lines.select_related("patient", "product", "prescriber"))

    with CaptureQueriesContext(connection) as reusing:
        reused = v.validate_cart(line.cart, lines=lines)

    assert reused == fetched_here and v.SIG_MISSING in codes(reused)
    assert len(reusing) == len(fetching) - 1


def _messy_cart(size, product, harbor):
    """A cart of ``size`` lines with a bit of everything: controlled lines, licensed and unlicensed
    prescribers, unroutable lines, patients who got the product recently."""
    controlled = ProductFactory(dea_schedule=Product.Schedule.III)
    OfferingFactory(partner=harbor, product=controlled, stock_quantity=1)
    cart = CartFactory()
    for i in range(size):
        line = CartLineFactory(cart=cart, product=controlled if i % 3 == 0 else product, quantity=1 + i % 2,
                               sig=["", GOOD_SIG, "as directed"][i % 3])
        if i % 2:
            PrescriberLicenseFactory(prescriber=line.prescriber, state="TX")
            DEARegistrationFactory(prescriber=line.prescriber, state="TX")
        if i % 5 == 0:
            sent_before(line, days_ago=3, days_supply=30)
    return cart


def test_validating_200_lines_takes_as_many_queries_as_20(product, harbor, django_assert_num_queries):
    small, large = _messy_cart(20, product, harbor), _messy_cart(200, product, harbor)
    small, large = type(small).objects.get(pk=small.pk), type(large).objects.get(pk=large.pk)  # nothing cached

    with CaptureQueriesContext(connection) as ctx:
        small_problems = v.validate_cart(small)
    with django_assert_num_queries(len(ctx)):
        large_problems = v.validate_cart(large)

    assert len(ctx) <= 10
    assert len(large_problems) > len(small_problems) > 0
    assert {v.DUPLICATE_THERAPY, v.OUT_OF_STOCK, v.DEA_REGISTRATION_REQUIRED, v.SIG_MISSING} <= codes(large_problems)
