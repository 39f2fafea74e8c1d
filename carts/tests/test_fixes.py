"""Fixes as data: each problem carries the actions that resolve it (``Problem.fixes``), computed
with the same queries whatever the cart size; applying one from the page is one request that
clears the problem and sends back only that patient's rows, the summary and the messages."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from carts import validation as v
from carts.models import CartLine
from carts.services import cart_get_active
from carts.tests.factories import CartLineFactory
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.models import Patient
from clinics.tests.factories import DEARegistrationFactory, PatientFactory, PrescriberFactory, PrescriberLicenseFactory
from prescriptions.tests.factories import prescribe_as_line

pytestmark = pytest.mark.django_db

TODAY = datetime.date.today()


@pytest.fixture
def product():
    product = ProductFactory(name="Naltrexone", unit="capsule", max_quantity_per_line=90)
    OfferingFactory(partner=PartnerFactory(name="Cedar", states=["TX", "CO"]), product=product, stock_quantity=5000)
    return product


@pytest.fixture
def line(clinic_a, product):
    cart = cart_get_active(clinic=clinic_a)
    line = CartLineFactory(cart=cart, product=product, quantity=30, sig="Take 1 capsule by mouth at bedtime")
    PrescriberLicenseFactory(prescriber=line.prescriber, state="TX")
    return line


def problem(line, code):
    found = [p for p in v.validate_cart(line.cart) if p.line_id == line.pk and p.code == code]
    assert len(found) == 1, v.validate_cart(line.cart)
    return found[0]


def test_an_unlicensed_prescriber_is_offered_the_colleagues_licensed_in_the_state(line):
    org = line.cart.clinic.organization
    line.prescriber.licenses.update(state="OK")
    kim = PrescriberFactory(organization=org, first_name="Rachel", last_name="Kim")
    PrescriberLicenseFactory(prescriber=kim, state="TX", expires_on=TODAY + datetime.timedelta(days=400))
    lapsed = PrescriberFactory(organization=org, last_name="Lapsed")
    PrescriberLicenseFactory(prescriber=lapsed, state="TX", expires_on=TODAY - datetime.timedelta(days=1))
    PrescriberLicenseFactory(prescriber=PrescriberFactory(), state="TX")  # another organization's
    fixes = problem(line, v.PRESCRIBER_NOT_LICENSED_IN_STATE).fixes
    assert [(f.action, f.field, f.value) for f in fixes] == [(v.SET_LINE_FIELD, "prescriber", str(kim.pk))]
    assert "Rachel Kim" in fixes[0].label and "TX license to" in fixes[0].label


def test_controlled_products_are_offered_only_prescribers_with_a_dea_registration_there(line):
    line.product.dea_schedule = line.product.Schedule.III
    line.product.save()
    org = line.cart.clinic.organization
    without, with_dea = (PrescriberFactory(organization=org, last_name=n) for n in ("Adams", "Brown"))
    for p in (without, with_dea):
        PrescriberLicenseFactory(prescriber=p, state="TX")
    DEARegistrationFactory(prescriber=with_dea, state="TX")
    fixes = problem(line, v.DEA_REGISTRATION_REQUIRED).fixes
    assert [f.value for f in fixes] == [str(with_dea.pk)]


@pytest.mark.parametrize("code, breaks, fix_value", [
    (v.QUANTITY_OVER_MAX, {"quantity": 200}, "90"),
    (v.REFILLS_INVALID, {"refills": 30}, str(v.MAX_REFILLS)),
])
def test_a_limit_is_fixed_by_setting_it(line, code, breaks, fix_value):
    CartLine.objects.filter(pk=line.pk).update(**breaks)
    (fix,) = [f for f in problem(line, code).fixes if f.action == v.SET_LINE_FIELD]
    assert fix.value == fix_value


def test_missing_patient_details_are_typed_in_place(line):
    Patient.objects.filter(pk=line.patient_id).update(date_of_birth=None, zip_code="")
    assert [(f.action, f.field) for f in problem(line, v.PATIENT_DOB_MISSING).fixes] == [(v.SET_PATIENT_FIELD, "date_of_birth")]
    assert [(f.action, f.field) for f in problem(line, v.ADDRESS_INCOMPLETE).fixes] == [(v.SET_PATIENT_FIELD, "zip_code")]


def test_a_future_date_of_birth_is_flagged(line):
    Patient.objects.filter(pk=line.patient_id).update(date_of_birth=TODAY + datetime.timedelta(days=1))
    assert "in the future" in problem(line, v.PATIENT_DOB_INVALID).message
    Patient.objects.filter(pk=line.patient_id).update(date_of_birth=datetime.date(1899, 12, 31))
    assert "before 1900" in problem(line, v.PATIENT_DOB_INVALID).message


def _flagged_cart(clinic, product, n):
    """``n`` lines, each with three problems that carry fixes (unlicensed prescriber, quantity
    over the limit, vague SIG), and one colleague licensed in TX to suggest."""
    org = clinic.organization
    cart = cart_get_active(clinic=clinic)
    unlicensed = PrescriberFactory(organization=org)
    colleague = PrescriberFactory(organization=org)
    PrescriberLicenseFactory(prescriber=colleague, state="TX")
    CartLine.objects.bulk_create([
        CartLine(cart=cart, patient=p, product=product, prescriber=unlicensed, quantity=120, sig="as directed",
                 days_supply=30) for p in PatientFactory.create_batch(n, organization=org)])
    return cart


def test_fixes_take_the_same_queries_for_20_and_200_lines(clinic_a, product):
    counts = []
    for size in (20, 200):
        CartLine.objects.all().delete()
        cart = _flagged_cart(clinic_a, product, size)
        with CaptureQueriesContext(connection) as ctx:
            problems = v.validate_cart(cart)
        counts.append(len(ctx))
        with_fixes = [p for p in problems if p.fixes and p.code != v.PRESCRIPTION_MISSING]
        assert len(with_fixes) == 3 * size
    assert counts[0] == counts[1]


def test_applying_a_fix_clears_the_problem_and_returns_the_patients_rows(client_alice, line):
    CartLine.objects.filter(pk=line.pk).update(quantity=90)
    prescribe_as_line(line)  # 90 prescribed
    CartLine.objects.filter(pk=line.pk).update(quantity=200)
    body = client_alice.post(reverse("carts:line-fix", args=[line.pk]), {"field": "quantity", "value": "90"}).content.decode()
    assert body.lstrip().startswith(f'<tbody class="patient-group" id="patient-{line.patient_id}"')
    assert "quantity_over_max" not in body and 'id="cart-summary"' in body and "No errors" in body
    line.refresh_from_db()
    assert line.quantity == 90


def test_a_fix_goes_through_the_line_forms_rules(client_alice, line):
    body = client_alice.post(reverse("carts:line-fix", args=[line.pk]), {"field": "quantity", "value": "0"}).content.decode()
    assert "Quantity must be at least 1." in body
    body = client_alice.post(reverse("carts:line-fix", args=[line.pk]), {"field": "acknowledged_warnings", "value": "x"})
    assert "That fix cannot be applied to a line." in body.content.decode()
    line.refresh_from_db()
    assert line.quantity == 30


def test_a_date_of_birth_typed_in_place_must_be_real(client_alice, line):
    Patient.objects.filter(pk=line.patient_id).update(date_of_birth=None)
    url = reverse("carts:patient-fix", args=[line.patient_id])
    future = (TODAY + datetime.timedelta(days=30)).isoformat()
    body = client_alice.post(url, {"fields": "date_of_birth", "date_of_birth": future}).content.decode()
    assert "is in the future" in body
    body = client_alice.post(url, {"fields": "date_of_birth", "date_of_birth": ""}).content.decode()
    assert "cannot be removed" in body or "required" in body
    assert Patient.objects.get(pk=line.patient_id).date_of_birth is None
    body = client_alice.post(url, {"fields": "date_of_birth", "date_of_birth": "1975-04-02"}).content.decode()
    assert "Saved" in body and "patient_dob_missing" not in body
    assert str(Patient.objects.get(pk=line.patient_id).date_of_birth) == "1975-04-02"


def test_a_recorded_date_of_birth_cannot_be_cleared_from_edit_patient(client_alice, line):
    data = {"date_of_birth": "", "address_line1": "1 Elm St", "city": "Austin", "state": "TX", "zip_code": "78701"}
    body = client_alice.post(reverse("carts:patient-fix", args=[line.patient_id]), data).content.decode()
    assert "The date of birth cannot be removed" in body
    assert Patient.objects.get(pk=line.patient_id).date_of_birth is not None


def test_acknowledge_all_warnings_at_once(client_alice, clinic_a, product, line):
    from clinics.models import AuditEntry
    from fulfillment.tests.factories import OrderLineFactory, PartnerOrderFactory

    second = CartLineFactory(cart=line.cart, product=ProductFactory(), prescriber=line.prescriber, quantity=1)
    OfferingFactory(partner=PartnerFactory(states=["TX"]), product=second.product)
    # Both were sent 3 days ago for 28 days: too soon to refill (a warning each).
    for cart_line in (line, second):
        OrderLineFactory(partner_order=PartnerOrderFactory(order__clinic=clinic_a,
                                                           order__placed_at=timezone.now() - datetime.timedelta(days=3)),
                         patient=cart_line.patient, product=cart_line.product, status="delivered")
    page = client_alice.get(reverse("carts:cart")).content.decode()
    assert "Acknowledge all 2 warnings" in page
    body = client_alice.post(reverse("carts:acknowledge-all")).content.decode()
    assert "Acknowledged 2 warnings" in body and "Acknowledge all" not in body
    assert body.count("(acknowledged)") == 2
    assert sorted(CartLine.objects.values_list("acknowledged_warnings", flat=True)) == [[v.DUPLICATE_THERAPY]] * 2
    assert AuditEntry.objects.filter(action="cart.acknowledge").count() == 2
    client_alice.post(reverse("carts:acknowledge-all"))  # again: nothing left to acknowledge
    assert AuditEntry.objects.filter(action="cart.acknowledge").count() == 2


def test_editing_a_flagged_line_keeps_its_problem_beside_the_field_and_lists_licensed_prescribers_first(client_alice, line):
    org = line.cart.clinic.organization
    line.patient.state = "TX"
    line.patient.save(update_fields=["state"])
    line.prescriber.licenses.update(state="OK")
    kim = PrescriberFactory(organization=org, first_name="Rachel", last_name="Zeta")
    PrescriberLicenseFactory(prescriber=kim, state="TX")
    body = client_alice.get(reverse("carts:line", args=[line.pk]), {"edit": "1"}).content.decode()
    prescriber_cell = body[body.index('data-label="Prescriber"'):]
    assert 'data-code="prescriber_not_licensed_in_state"' in prescriber_cell.split("</td>")[0]
    options = prescriber_cell[prescriber_cell.index("<select"):prescriber_cell.index("</select>")]
    assert options.index("Rachel Zeta, MD · licensed in TX") < options.index(f"{line.prescriber.last_name}, MD · no active TX license")


def test_row_actions_take_the_same_queries_for_20_and_200_lines(client_alice, clinic_a, product):
    """Save a line, apply a fix, remove a line: each re-renders the patient's rows and the summary
    from a review of the whole cart, in as many queries at 200 lines as at 20."""
    from carts.forms import CartLineForm

    client_alice.get(reverse("carts:cart"))  # the first request of a session stores the active clinic
    htmx = {"HX-Request": "true"}
    counts = []
    for size in (20, 200):
        CartLine.objects.all().delete()
        cart = _flagged_cart(clinic_a, product, size)
        first, last = cart.lines.order_by("pk").first(), cart.lines.order_by("pk").last()
        per_action = []
        for url, data in [
            (reverse("carts:line-save", args=[first.pk]), CartLineForm.data_of(first, sig="Take 1 capsule by mouth at bedtime")),
            (reverse("carts:line-fix", args=[first.pk]), {"field": "quantity", "value": "90"}),
            (reverse("carts:line-remove", args=[last.pk]), {}),
        ]:
            with CaptureQueriesContext(connection) as ctx:
                assert client_alice.post(url, data, headers=htmx).status_code == 200
            per_action.append(len(ctx))
        first.refresh_from_db()
        assert first.quantity == 90 and first.sig == "Take 1 capsule by mouth at bedtime"
        assert not CartLine.objects.filter(pk=last.pk).exists()
        counts.append(per_action)
    assert counts[0] == counts[1], counts
