import io

import pytest
from django.urls import reverse

from carts.imports import ImportFileError, parse_refill_csv
from carts.models import CartLine
from catalog.tests.factories import OfferingFactory, ProductFactory
from clinics.models import AuditEntry
from clinics.tests.factories import PatientFactory, PrescriberFactory

pytestmark = pytest.mark.django_db

HEADER = "chart_id,product,quantity,sig,prescriber_npi,days_supply\n"


@pytest.fixture
def csv_world(clinic_a):
    org = clinic_a.organization
    return {
        "ann": PatientFactory(organization=org, chart_id="BW-1", first_name="Ann", last_name="Lee"),
        "bo": PatientFactory(organization=org, chart_id="BW-2", first_name="Bo", last_name="Ray"),
        "stranger": PatientFactory(chart_id="ZZ-9"),  # another organization
        "sema": ProductFactory(sku="FZ-SEMA", name="Semaglutide", max_quantity_per_line=4),
        "ldn": OfferingFactory(product=ProductFactory(sku="FZ-LDN", name="Naltrexone", max_quantity_per_line=90),
                              partner_sku="CED-LDN").product,
        "dr": PrescriberFactory(organization=org, npi="1234567893"),
    }


def rows_of(clinic, text):
    return parse_refill_csv(clinic=clinic, text=HEADER + text)


def test_good_rows_resolve_by_sku_partner_sku_or_name(clinic_a, csv_world):
    rows = rows_of(clinic_a, "BW-1,FZ-SEMA,2,Inject 0.25 mg weekly,1234567893,28\n"
                             "bw-2,CED-LDN,30,Take 1 capsule nightly,1234567893,30\n"
                             "BW-2,semaglutide,1,Inject 0.25 mg weekly,1234567893,28\n")
    assert [r.errors for r in rows] == [[], [], []]
    assert [(r.patient.first_name, r.product.name) for r in rows] == [
        ("Ann", "Semaglutide"), ("Bo", "Naltrexone"), ("Bo", "Semaglutide")]


@pytest.mark.parametrize("row, message", [
    ("ZZ-9,FZ-SEMA,1,x,1234567893,28", "No patient with chart ID ZZ-9 in your organization"),
    ("BW-404,FZ-SEMA,1,x,1234567893,28", "No patient with chart ID BW-404"),
    ("BW-1,FZ-NOPE,1,x,1234567893,28", "Unknown product 'FZ-NOPE'"),
    ("BW-1,FZ-SEMA,two,x,1234567893,28", "Quantity 'two' is not a whole number."),
    ("BW-1,FZ-SEMA,0,x,1234567893,28", "Quantity must be at least 1 (got 0)."),
    ("BW-1,FZ-SEMA,1,,1234567893,28", "SIG (directions) is empty."),
    ("BW-1,FZ-SEMA,1,x,1245319599,28", "No prescriber with NPI 1245319599 in your organization."),
    ("BW-1,FZ-SEMA,1,x,1234567893,400", "Days supply 400 is more than 365."),
    ("BW-1,FZ-SEMA,1,x,1234567893,", "Days supply is empty."),
])
def test_bad_rows_say_what_is_wrong(clinic_a, csv_world, row, message):
    [parsed] = rows_of(clinic_a, row + "\n")
    assert not parsed.ok
    assert any(message in e for e in parsed.errors), parsed.errors


def test_ambiguous_product_name_asks_for_the_sku(clinic_a, csv_world):
    ProductFactory(sku="FZ-SEMA-5", name="Semaglutide")
    [row] = rows_of(clinic_a, "BW-1,Semaglutide,1,x,1234567893,28\n")
    assert "matches 2 products (FZ-SEMA, FZ-SEMA-5); use the SKU instead." in row.errors[0]


@pytest.mark.parametrize("text, message", [
    ("chart,qty\nBW-1,1\n", "The file has no column for: product, sig, prescriber_npi, days_supply"),
    (HEADER, "no refill rows"),
    ("", "The file has no column for"),
])
def test_unreadable_files_are_refused_whole(clinic_a, csv_world, text, message):
    with pytest.raises(ImportFileError, match=message):
        parse_refill_csv(clinic=clinic_a, text=text)


def upload(client, text, name="refills.csv"):
    f = io.BytesIO(text.encode())
    f.name = name
    return client.post(reverse("carts:import"), {"file": f})


def test_preview_adds_nothing_then_confirm_adds_only_good_rows(client_alice, csv_world):
    text = HEADER + ("BW-1,FZ-SEMA,2,Inject 0.25 mg weekly,1234567893,28\n"
                     "BW-404,FZ-SEMA,1,Inject,1234567893,28\n"
                     "BW-2,FZ-LDN,30,Take 1 capsule nightly,1234567893,30\n")
    preview = upload(client_alice, text).content.decode()
    assert "Preview: 2 of 3 rows ready to add" in preview and "No patient with chart ID BW-404" in preview
    assert not CartLine.objects.exists()
    after = client_alice.post(reverse("carts:import-confirm")).content.decode()
    assert "Added 2 rows to the cart" in after and "BW-404" in after and "not</strong> added" in after
    assert sorted(CartLine.objects.values_list("patient__chart_id", "quantity")) == [("BW-1", 2), ("BW-2", 30)]
    assert AuditEntry.objects.filter(action="cart.import").count() == 2


def test_all_good_rows_redirect_to_the_cart(client_alice, csv_world):
    upload(client_alice, HEADER + "BW-1,FZ-SEMA,2,Inject 0.25 mg weekly,1234567893,28\n")
    response = client_alice.post(reverse("carts:import-confirm"))
    assert response.status_code == 302 and response["Location"] == reverse("carts:cart")


def test_confirm_without_upload_says_to_upload_again(client_alice, csv_world):
    response = client_alice.post(reverse("carts:import-confirm"), follow=True)
    assert "upload the CSV again" in response.content.decode()


def test_non_utf8_file_gets_a_clear_error(client_alice, csv_world):
    f = io.BytesIO("chart_id,product\nBW-1,Sémaglutide\n".encode("latin-1"))
    f.name = "x.csv"
    body = client_alice.post(reverse("carts:import"), {"file": f}).content.decode()
    assert "CSV UTF-8" in body


def test_sample_csv_is_valid_for_the_clinic(client_alice, clinic_a, csv_world):
    response = client_alice.get(reverse("carts:import-sample"))
    assert response["Content-Type"] == "text/csv"
    rows = parse_refill_csv(clinic=clinic_a, text=response.content.decode())
    assert rows and all(r.ok for r in rows), [r.errors for r in rows]


def test_rows_are_checked_as_the_cart_checks_them(clinic_a, csv_world):
    """Read without errors, a row still gets the cart's problems: over the product's limit, no
    pharmacy ships there, the prescriber is not licensed in the patient's state."""
    csv_world["ann"].state = "CO"
    csv_world["ann"].save(update_fields=["state"])
    [row] = rows_of(clinic_a, "BW-1,FZ-SEMA,9,Inject 0.25 mg subcutaneously once weekly,1234567893,28\n")
    codes = {p.code for p in row.flagged}
    assert row.ok and {"quantity_over_max", "no_eligible_partner", "prescriber_not_licensed_in_state"} <= codes
    assert row.flag_severity == "error"


def test_the_preview_shows_the_problem_the_cart_will_show(client_alice, clinic_a, csv_world):
    csv_world["ann"].state = "CO"
    csv_world["ann"].save(update_fields=["state"])
    text = HEADER + "BW-1,FZ-SEMA,2,Inject 0.25 mg subcutaneously once weekly,1234567893,28\n"
    preview = upload(client_alice, text).content.decode()
    assert "1 of 1 row ready to add, 1 with problems to fix in the cart" in preview
    row = preview.split('id="import-row-2"')[1].split("</tr>")[0]
    assert "added with" in row and 'data-code="prescriber_not_licensed_in_state"' in row
    client_alice.post(reverse("carts:import-confirm"))
    cart = client_alice.get(reverse("carts:cart")).content.decode()
    assert 'data-code="prescriber_not_licensed_in_state"' in cart


def test_quick_add_and_import_refuse_the_same_missing_fields(client_alice, clinic_a, csv_world):
    """No SIG, no days supply: the CSV row is not added, and neither is the same line from the panel."""
    for missing in ("sig", "days_supply"):
        values = {"sig": "Take 1 capsule by mouth at bedtime", "days_supply": "30", missing: ""}
        [row] = rows_of(clinic_a, f"BW-1,FZ-LDN,30,{values['sig']},1234567893,{values['days_supply']}\n")
        assert not row.ok
        body = client_alice.post(reverse("carts:line-add"), {
            "patient": csv_world["ann"].pk, "product": csv_world["ldn"].pk, "prescriber": csv_world["dr"].pk,
            "quantity": 30, "refills": 0, **values}).content.decode()
        assert 'data-code="' in body and not CartLine.objects.exists(), missing


def test_the_sample_file_gives_each_product_directions_of_its_form(client_alice, clinic_a, csv_world):
    cream = ProductFactory(sku="FZ-CREAM", name="Bi-Est", dosage_form="cream", unit="tube", max_quantity_per_line=3)
    OfferingFactory(product=cream)
    csv_world["ldn"].dosage_form = "capsule"
    csv_world["ldn"].save(update_fields=["dosage_form"])
    rows = parse_refill_csv(clinic=clinic_a, text=client_alice.get(reverse("carts:import-sample")).content.decode())
    sigs = {r.product.sku: r.raw["sig"] for r in rows}
    assert sigs["FZ-CREAM"].startswith("Apply") and sigs["FZ-LDN"].startswith("Take 1 capsule")
    assert all(r.ok for r in rows)


def test_the_sample_file_takes_a_prescription_on_file_and_skips_what_the_cart_holds(client_alice, clinic_a, alice, csv_world):
    from carts.services import LineInput, cart_add_lines
    from prescriptions.tests.factories import PrescriptionFactory

    PrescriptionFactory(clinic=clinic_a, patient=csv_world["bo"], prescriber=csv_world["dr"], product=csv_world["ldn"],
                        sig="Take 1 capsule by mouth nightly, written by the prescriber", quantity=30, days_supply=30)
    cart_add_lines(clinic=clinic_a, actor=alice, items=[LineInput(patient=csv_world["ann"], product=csv_world["sema"],
                                                                  prescriber=csv_world["dr"], quantity=1)])
    rows = parse_refill_csv(clinic=clinic_a, text=client_alice.get(reverse("carts:import-sample")).content.decode())
    by_pair = {(r.raw["chart_id"], r.raw["product"]): r.raw for r in rows}
    assert by_pair[("BW-2", "FZ-LDN")]["sig"] == "Take 1 capsule by mouth nightly, written by the prescriber"
    assert ("BW-1", "FZ-SEMA") not in by_pair  # already in the cart: the row would only merge into it
