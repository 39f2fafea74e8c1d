import pytest
from django.urls import reverse

from carts import urls as cart_urls
from carts.models import CartLine
from carts.services import LineInput, cart_add_lines
from catalog.tests.factories import ProductFactory
from clinics.models import Patient
from clinics.tests.factories import PatientFactory, PrescriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def line_a(clinic_a, alice):
    org = clinic_a.organization
    patient = PatientFactory(organization=org, first_name="Ada", last_name="Lovelace", chart_id="A-1")
    result = cart_add_lines(clinic=clinic_a, actor=alice, items=[LineInput(
        patient=patient, product=ProductFactory(name="Semaglutide"), prescriber=PrescriberFactory(organization=org),
        quantity=1, sig="Inject 0.25 mg weekly", days_supply=28)])
    return result.created[0]


def test_cart_page_shows_lines_grouped_by_patient(client_alice, line_a):
    page = client_alice.get(reverse("carts:cart")).content.decode()
    assert "Lovelace, Ada" in page and "Semaglutide" in page and "Inject 0.25 mg weekly" in page
    assert f'id="line-{line_a.pk}"' in page


def test_add_line_through_the_page_and_merge_message(client_alice, line_a):
    data = {"patient": line_a.patient_id, "product": line_a.product_id, "prescriber": line_a.prescriber_id,
            "quantity": 2, "sig": "Inject 0.25 mg weekly", "days_supply": 28, "refills": 0}
    body = client_alice.post(reverse("carts:line-add"), data, HTTP_HX_REQUEST="true").content.decode()
    assert "quantity is now 3 (was 1)" in body
    assert 'id="cart-lines" class="card" hx-swap-oob="true"' in body
    assert CartLine.objects.get().quantity == 3


def test_add_line_without_patient_or_product_says_what_to_choose(client_alice, clinic_a):
    body = client_alice.post(reverse("carts:line-add"), {"quantity": 1}, HTTP_HX_REQUEST="true").content.decode()
    assert "Choose a patient first" in body and "Choose a product" in body
    assert not CartLine.objects.exists()


def test_zero_quantity_is_refused_in_the_form(client_alice, line_a):
    data = {"patient": line_a.patient_id, "product": ProductFactory().pk, "quantity": 0, "refills": 0}
    body = client_alice.post(reverse("carts:line-add"), data, HTTP_HX_REQUEST="true").content.decode()
    assert "Quantity must be at least 1." in body
    assert CartLine.objects.count() == 1


def test_edit_in_place_returns_the_row_and_totals_only(client_alice, line_a):
    edit = client_alice.get(reverse("carts:line", args=[line_a.pk]), {"edit": 1}).content.decode()
    assert 'name="quantity"' in edit and "<table" not in edit
    data = {"prescriber": line_a.prescriber_id, "quantity": 4, "sig": "Inject 0.5 mg weekly", "days_supply": 28,
            "refills": 1, "clinical_difference": "", "notes": ""}
    body = client_alice.post(reverse("carts:line-save", args=[line_a.pk]), data).content.decode()
    # The patient's rows and header (their shipping shares may change too), not the whole table.
    assert body.lstrip().startswith(f'<tbody class="patient-group" id="patient-{line_a.patient_id}"')
    assert "<table class=\"lines" not in body and body.count('<tr id="line-') == 1
    assert 'id="cart-summary" class="card summary" hx-swap-oob="true"' in body and "· 4 units" in body
    assert "Inject 0.5 mg weekly" in body
    line_a.refresh_from_db()
    assert (line_a.quantity, line_a.refills) == (4, 1)


def test_remove_line(client_alice, line_a):
    body = client_alice.post(reverse("carts:line-remove", args=[line_a.pk])).content.decode()
    assert "Removed Semaglutide for Ada Lovelace." in body and "The cart is empty" in body
    assert not CartLine.objects.exists()


def test_quick_new_patient_is_chosen_for_the_next_line(client_alice, clinic_a):
    data = {"chart_id": "NEW-9", "first_name": "Grace", "last_name": "Hopper", "date_of_birth": "1980-12-09",
            "address_line1": "1 Navy Way", "city": "Austin", "state": "TX", "zip_code": "78701"}
    body = client_alice.post(reverse("carts:patient-new"), data).content.decode()
    assert "Grace Hopper" in body and 'data-testid="chosen-patient"' in body
    assert Patient.objects.get(chart_id="NEW-9").organization == clinic_a.organization


def test_quick_new_patient_errors_say_what_to_fix(client_alice, line_a):
    data = {"chart_id": "A-1", "first_name": "Dup", "last_name": "Licate", "date_of_birth": "1980-12-09",
            "address_line1": "1 Navy Way", "city": "Austin", "state": "TX", "zip_code": "7870"}
    response = client_alice.post(reverse("carts:patient-new"), data)
    body = response.content.decode()
    assert response["HX-Retarget"] == "#new-patient"
    assert "Chart ID A-1 already belongs to a patient" in body
    assert "Enter a zip code in the format XXXXX or XXXXX-XXXX." in body


def test_patient_details_are_fixed_from_the_cart_and_audited(client_alice, line_a):
    from clinics.models import AuditEntry

    patient = line_a.patient
    Patient.objects.filter(pk=patient.pk).update(date_of_birth=None, zip_code="")
    form = client_alice.get(reverse("carts:patient-fix", args=[patient.pk])).content.decode()
    assert 'name="date_of_birth"' in form and 'name="zip_code"' in form
    data = {"date_of_birth": "1975-04-02", "phone": "+15125550100", "address_line1": "200 Congress Ave", "address_line2": "",
            "city": "Austin", "state": "TX", "zip_code": "78701"}
    body = client_alice.post(reverse("carts:patient-fix", args=[patient.pk]), data).content.decode()
    assert "Saved Ada Lovelace&#x27;s details." in body and "DOB 04/02/1975" in body
    patient.refresh_from_db()
    assert str(patient.date_of_birth) == "1975-04-02" and patient.zip_code == "78701"
    entry = AuditEntry.objects.get(action="patient.change")
    assert entry.patient == patient and sorted(entry.detail["fields"]) == ["date_of_birth", "zip_code"]


def test_patient_fix_errors_stay_on_the_patient_row(client_alice, line_a):
    response = client_alice.post(reverse("carts:patient-fix", args=[line_a.patient_id]),
                                 {"state": "TX", "zip_code": "787", "city": "Austin", "address_line1": "x"})
    assert response["HX-Retarget"] == f"#patient-head-{line_a.patient_id}"
    assert "Enter a zip code" in response.content.decode()


def test_patient_search_by_name_chart_and_dob(client_alice, line_a):
    PatientFactory(organization=line_a.patient.organization, first_name="Alan", last_name="Turing",
                   chart_id="T-7", date_of_birth="1912-06-23")
    PatientFactory(first_name="Alan", last_name="Turing-Elsewhere")  # another organization: never shown
    for q in ["turing", "T-7", "06/23/1912", "1912-06-23", "alan tur"]:
        body = client_alice.get(reverse("carts:patient-results"), {"q": q}).content.decode()
        assert "Turing</strong>" in body or "Turing, Alan" in body, q
        assert "Elsewhere" not in body


def test_choosing_a_patient_defaults_the_prescriber_to_their_last_one(client_alice, line_a):
    body = client_alice.get(reverse("carts:add-panel"), {"choose_patient": line_a.patient_id}).content.decode()
    assert f'<option value="{line_a.prescriber_id}" selected>' in body


def test_every_cart_url_refuses_another_clinics_ids(client_bob, line_a):
    """Bob (clinic B) walks every cart URL with clinic A's line and patient ids."""
    a_line, a_patient = line_a.pk, line_a.patient_id
    from fulfillment.tests.factories import order_with_lines

    a_order_line = order_with_lines(clinic=line_a.cart.clinic, lines_per_partner=1).lines.get().pk
    requests = {
        "reorder": [("post", {"line_pk": a_order_line}, {})],
        "line": [("get", {"pk": a_line}, {}), ("get", {"pk": a_line}, {"edit": 1})],
        "line-save": [("post", {"pk": a_line}, {"quantity": 9, "sig": "x", "refills": 0})],
        "line-remove": [("post", {"pk": a_line}, {})],
        "add-panel": [("get", {}, {"choose_patient": a_patient}), ("get", {}, {"patient": a_patient})],
        "line-add": [("post", {}, {"patient": a_patient, "product": line_a.product_id, "quantity": 1, "refills": 0})],
        "line-acknowledge": [("post", {"pk": a_line}, {"code": "duplicate_therapy"})],
        "line-fix": [("post", {"pk": a_line}, {"field": "quantity", "value": "9"})],
        "line-prescription": [("get", {"pk": a_line}, {}), ("post", {"pk": a_line}, {"use": line_a.prescription_id or 0}),
                              ("post", {"pk": a_line}, {"source": "erx", "rx_number": "RX1", "sig": "x"})],
        "patient-fix": [("get", {"pk": a_patient}, {}),
                        ("post", {"pk": a_patient}, {"date_of_birth": "1990-01-01", "city": "Hacked"})],
    }
    names = {p.name for p in cart_urls.urlpatterns}
    id_free = {"cart", "patient-results", "product-results", "patient-new", "refills", "prescriptions-needed-csv",
               "import", "import-confirm",
               "import-cancel", "import-sample", "validate", "checkout", "acknowledge-all"}
    assert names == set(requests) | id_free, "a new cart URL needs a tenancy check here"
    for name, calls in requests.items():
        for method, kwargs, data in calls:
            response = getattr(client_bob, method)(reverse(f"carts:{name}", kwargs=kwargs), data)
            assert response.status_code == 404, (name, data)
    # The id-free pages only ever show Bob's own clinic.
    for name in ["cart", "refills", "import", "validate", "checkout"]:
        body = client_bob.get(reverse(f"carts:{name}")).content.decode()
        assert "Lovelace" not in body
    search = client_bob.get(reverse("carts:patient-results"), {"q": "Lovelace"}).content.decode()
    assert 'name="choose_patient"' not in search and "No patient matches" in search
    line_a.refresh_from_db()
    line_a.patient.refresh_from_db()
    assert line_a.quantity == 1 and line_a.patient.city != "Hacked" and line_a.acknowledged_warnings == []


def test_cart_pages_need_login(client, db):
    response = client.get(reverse("carts:cart"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def _fill_cart(clinic, n):
    """Add ``n`` lines (new patients, one product) straight to the clinic's cart."""
    org = clinic.organization
    product = ProductFactory()
    prescriber = PrescriberFactory(organization=org)
    patients = PatientFactory.create_batch(n, organization=org)
    from carts.services import cart_get_active

    cart = cart_get_active(clinic=clinic)
    CartLine.objects.bulk_create([
        CartLine(cart=cart, patient=p, product=product, prescriber=prescriber, quantity=1, sig="Take 1 daily",
                 days_supply=30) for p in patients
    ])


# session, user, membership, cart, lines, routing (fixed), validation (fixed, with the prescriptions and
# their last deliveries), prescribers, and the PHI access log's one INSERT
CART_PAGE_QUERIES = 15


def test_cart_page_queries_do_not_grow_with_lines(client_alice, clinic_a, django_assert_max_num_queries):
    client_alice.get(reverse("carts:cart"))  # warm the session
    for size in (20, 200):
        _fill_cart(clinic_a, size - CartLine.objects.count())
        with django_assert_max_num_queries(CART_PAGE_QUERIES):
            response = client_alice.get(reverse("carts:cart"))
        assert response.content.decode().count('<tr id="line-') == size


def test_a_warning_can_be_acknowledged_and_stops_counting(client_alice, line_a):
    import datetime
    from decimal import Decimal

    from django.utils import timezone

    from carts.validation import DUPLICATE_THERAPY
    from catalog.tests.factories import PartnerFactory
    from fulfillment.models import Order, OrderLine, PartnerOrder

    order = Order.objects.create(clinic=line_a.cart.clinic, placed_at=timezone.now() - datetime.timedelta(days=3))
    OrderLine.objects.create(
        order=order, partner_order=PartnerOrder.objects.create(order=order, partner=PartnerFactory()),
        patient=line_a.patient, product=line_a.product, product_name="x", partner_sku="x", quantity=1, sig="x",
        days_supply=28, unit_price=Decimal("1.00"), landed_cost=Decimal("1.00"), status="delivered")
    page = client_alice.get(reverse("carts:cart")).content.decode()
    assert f'data-code="{DUPLICATE_THERAPY}"' in page and "Order anyway" in page
    body = client_alice.post(reverse("carts:line-acknowledge", args=[line_a.pk]),
                             {"code": DUPLICATE_THERAPY}).content.decode()
    assert "(acknowledged)" in body and "Order anyway" not in body
    line_a.refresh_from_db()
    assert line_a.acknowledged_warnings == [DUPLICATE_THERAPY]
