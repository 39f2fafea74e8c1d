"""Pending imports live in a table, not in the session (issue 14, item 6): an hour to confirm,
deleted on confirm or cancel, purged when expired; the sample CSV is spreadsheet-safe; chart
ids follow a format rule."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from carts.imports import purge_expired_imports
from carts.models import CartLine, PendingImport
from carts.tests.test_imports import HEADER, csv_world, rows_of, upload  # noqa: F401  (fixture)
from catalog.tests.factories import OfferingFactory
from clinics.models import Patient

pytestmark = pytest.mark.django_db

GOOD = "BW-1,FZ-SEMA,2,Inject 0.25 mg weekly,1234567893,28\n"


def test_the_uploaded_rows_wait_in_a_table_not_in_the_session(client_alice, alice, clinic_a, csv_world):
    upload(client_alice, HEADER + GOOD)
    pending = PendingImport.objects.get()
    assert pending.owner == alice and pending.clinic == clinic_a
    assert pending.rows == [{"number": 2, "chart_id": "BW-1", "product": "FZ-SEMA", "quantity": "2",
                             "sig": "Inject 0.25 mg weekly", "prescriber_npi": "1234567893", "days_supply": "28"}]
    assert datetime.timedelta(minutes=59) < pending.expires_at - timezone.now() <= datetime.timedelta(hours=1)
    session = client_alice.session
    assert not any("Inject" in str(value) for value in session.values())


def test_confirm_adds_the_rows_and_deletes_the_pending_file(client_alice, csv_world):
    upload(client_alice, HEADER + GOOD)
    client_alice.post(reverse("carts:import-confirm"))
    assert CartLine.objects.count() == 1 and not PendingImport.objects.exists()


def test_cancel_discards_the_file_and_adds_nothing(client_alice, csv_world):
    upload(client_alice, HEADER + GOOD)
    page = client_alice.post(reverse("carts:import-cancel"), follow=True).content.decode()
    assert "discarded" in page and not PendingImport.objects.exists()
    page = client_alice.post(reverse("carts:import-confirm"), follow=True).content.decode()
    assert "upload the CSV again" in page and not CartLine.objects.exists()


def test_an_expired_upload_cannot_be_confirmed_and_is_purged(client_alice, csv_world):
    upload(client_alice, HEADER + GOOD)
    PendingImport.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    page = client_alice.post(reverse("carts:import-confirm"), follow=True).content.decode()
    assert "upload the CSV again" in page and not CartLine.objects.exists()
    upload(client_alice, HEADER + GOOD)  # a fresh one stays
    PendingImport.objects.create(owner=PendingImport.objects.get().owner, clinic=PendingImport.objects.get().clinic,
                                 rows=[], expires_at=timezone.now() - datetime.timedelta(minutes=5))
    assert purge_expired_imports() == 1 and PendingImport.objects.count() == 1


def test_another_coordinator_cannot_confirm_my_upload(client_alice, client, clinic_a, csv_world):
    from clinics.tests.factories import MembershipFactory, UserFactory

    upload(client_alice, HEADER + GOOD)
    colleague = MembershipFactory(user=UserFactory(username="carol"), clinic=clinic_a).user
    client.force_login(colleague)
    page = client.post(reverse("carts:import-confirm"), follow=True).content.decode()
    assert "upload the CSV again" in page and not CartLine.objects.exists() and PendingImport.objects.count() == 1


def test_the_purge_runs_on_a_schedule():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="fizy: purge expired imports")
    assert schedule.func == "carts.tasks.purge_expired_imports" and schedule.minutes == 15


def test_the_sample_csv_never_carries_a_live_formula(client_alice, clinic_a, csv_world):
    OfferingFactory(product=csv_world["sema"])  # the sample lists products a pharmacy carries
    # A chart id saved before the format rule (or by someone else) that a spreadsheet would run.
    Patient.objects.filter(pk=csv_world["ann"].pk).update(chart_id='=HYPERLINK("http://evil.example","x")')
    Patient.objects.filter(pk=csv_world["bo"].pk).update(chart_id="+1-2")
    text = client_alice.get(reverse("carts:import-sample")).content.decode()
    cells = [line.split(",")[0] for line in text.splitlines()[1:]]
    assert all(not cell.lstrip('"').startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells), cells
    assert "'=HYPERLINK" in text and "'+1-2" in text


def test_the_receipt_csv_escapes_formula_cells(client_alice, clinic_a, alice):
    from fulfillment.tests.factories import order_with_lines

    order = order_with_lines(clinic=clinic_a, lines_per_partner=1, placed_by=alice)
    Patient.objects.filter(pk=order.lines.get().patient_id).update(first_name="=cmd|' /C calc'!A0", chart_id="-2+3")
    text = client_alice.get(reverse("fulfillment:receipt", args=[order.pk]), {"format": "csv"}).content.decode()
    assert "'=cmd" in text and "'-2+3" in text


@pytest.mark.parametrize("chart_id", ['=HYPERLINK("x")', "-12", "A B", "ab/c", "é1", "<b>", ""])
def test_a_chart_id_outside_the_format_is_refused_in_the_patient_form(client_alice, chart_id):
    response = client_alice.post(reverse("carts:patient-new"), {
        "chart_id": chart_id, "first_name": "Ann", "last_name": "Lee", "date_of_birth": "1980-01-01",
        "address_line1": "1 Main St", "city": "Austin", "state": "TX", "zip_code": "78701"})
    assert not Patient.objects.filter(first_name="Ann").exists()
    if chart_id:
        assert "letters, digits, &#x27;-&#x27;, &#x27;_&#x27; and &#x27;.&#x27;" in response.content.decode()


def test_chart_ids_in_the_format_are_accepted(client_alice):
    client_alice.post(reverse("carts:patient-new"), {
        "chart_id": "MRN-2024_07.1", "first_name": "Ann", "last_name": "Lee", "date_of_birth": "1980-01-01",
        "address_line1": "1 Main St", "city": "Austin", "state": "TX", "zip_code": "78701"})
    assert Patient.objects.filter(chart_id="MRN-2024_07.1").exists()


def test_an_import_row_with_a_malformed_chart_id_says_the_rule(clinic_a, csv_world):
    [row] = rows_of(clinic_a, '"=HYPERLINK(""x"")",FZ-SEMA,1,Inject,1234567893,28\n')
    assert any("letters, digits, '-', '_' and '.'" in e for e in row.errors)


@pytest.mark.parametrize("quantity", ["²", "٣", "1.5"])
def test_an_import_quantity_in_other_digits_is_not_a_whole_number(clinic_a, csv_world, quantity):
    [row] = rows_of(clinic_a, f"BW-1,FZ-SEMA,{quantity},Inject,1234567893,28\n")
    assert f"Quantity '{quantity}' is not a whole number." in row.errors
