"""The PHI access log (issue 14, item 4): every page that shows patients records who saw which
patients, in which clinic, on which page, in one INSERT per request; staff list, for one
patient, everyone who saw or changed their record."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import clinics.access
from carts.models import CartLine
from carts.tests.test_views import _fill_cart, line_a  # noqa: F401  (fixture)
from clinics.models import PatientAccess
from conftest import verified_login
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db


def _pages_for(patient):
    return set(PatientAccess.objects.filter(patient=patient).values_list("page", flat=True))


def test_the_log_lists_every_page_a_patient_was_shown_on(client, alice, charlie, clinic_a, line_a):  # noqa: F811
    patient = line_a.patient
    client.force_login(alice)
    client.get(reverse("carts:cart"))
    client.get(reverse("carts:patient-results"), {"q": "Lovelace"})
    client.get(reverse("carts:add-panel"), {"choose_patient": patient.pk})
    client.get(reverse("carts:line", args=[line_a.pk]))
    client.get(reverse("carts:patient-fix", args=[patient.pk]))
    client.get(reverse("carts:checkout"))
    client.get(reverse("notices:patient", args=[patient.pk]))
    assert _pages_for(patient) == {"carts:cart", "carts:patient-results", "carts:add-panel", "carts:line",
                                   "carts:patient-fix", "carts:checkout", "notices:patient"}
    row = PatientAccess.objects.filter(patient=patient).first()
    assert row.user == alice and row.clinic == clinic_a

    verified_login(client, charlie)
    client.get(reverse("admin:clinics_patient_changelist"), {"q": "Lovelace"})
    client.get(reverse("admin:clinics_patient_change", args=[patient.pk]))
    assert {"admin:clinics_patient_changelist", "admin:clinics_patient_change"} <= _pages_for(patient)

    # Staff list everyone who saw or changed the record: the pages above, and the cart's audit row.
    page = client.get(reverse("admin:clinics_patient_who_saw", args=[patient.pk])).content.decode()
    for seen in ("carts:patient-results", "carts:checkout", "notices:patient", "admin:clinics_patient_change"):
        assert seen in page
    assert "cart.add" in page and "alice" in page and "charlie" in page
    assert reverse("admin:clinics_patient_who_saw", args=[patient.pk]) in client.get(
        reverse("admin:clinics_patient_change", args=[patient.pk])).content.decode()


def test_order_pages_log_the_patients_of_their_lines(client_alice, clinic_a, alice):
    order = order_with_lines(clinic=clinic_a, lines_per_partner=2, placed_by=alice)
    patients = set(order.lines.values_list("patient_id", flat=True))
    client_alice.get(reverse("fulfillment:order", args=[order.pk]))
    client_alice.get(reverse("fulfillment:receipt", args=[order.pk]))
    logged = PatientAccess.objects.filter(patient_id__in=patients)
    assert set(logged.filter(page="fulfillment:order").values_list("patient_id", flat=True)) == patients
    assert set(logged.filter(page="fulfillment:receipt").values_list("patient_id", flat=True)) == patients


def test_a_page_without_patients_and_a_refused_request_log_nothing(client_alice, client, line_a):  # noqa: F811
    client_alice.get(reverse("billing"))
    client_alice.get(reverse("carts:patient-fix", args=[line_a.patient_id + 1000]))  # 404
    assert PatientAccess.objects.count() == 0


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries.captured_queries)


def test_logging_costs_exactly_one_query_per_request_at_two_cart_sizes(
        client_alice, clinic_a, monkeypatch, django_assert_num_queries):
    url = reverse("carts:cart")
    client_alice.get(url)  # warm the session
    for size in (5, 40):
        _fill_cart(clinic_a, size - CartLine.objects.count())
        with monkeypatch.context() as off:
            off.setattr(clinics.access, "write_patient_access", lambda request, **kw: 0)
            without_log = _queries(client_alice, url)
        before = PatientAccess.objects.count()
        with django_assert_num_queries(without_log + 1):
            client_alice.get(url)
        assert PatientAccess.objects.count() - before == size  # one row per patient shown, one INSERT
