import io

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from clinics.tests.factories import PatientFactory


@pytest.fixture
def seeded(db):
    call_command("seed_demo", stdout=io.StringIO())


def test_every_admin_page_loads_for_staff_with_seeded_data(seeded, client_charlie):
    for model in admin.site._registry:
        if model._meta.app_label not in {"clinics", "catalog", "routing", "carts", "fulfillment"}:
            continue
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        assert client_charlie.get(reverse(f"{prefix}_changelist")).status_code == 200, prefix
        obj = model.objects.first()
        if obj is not None:
            assert client_charlie.get(reverse(f"{prefix}_change", args=[obj.pk])).status_code == 200, prefix


def test_staff_sees_seeded_patients_and_can_search_by_dob(seeded, client_charlie):
    url = reverse("admin:clinics_patient_changelist")
    page = client_charlie.get(url).content.decode()
    assert "BW-1001" in page and "VT-1001" in page
    patient = PatientFactory(chart_id="DOB-1", last_name="Searchable", date_of_birth="1971-03-09")
    for term in ["03/09/1971", "1971-03-09", "Searchable", "DOB-1"]:
        body = client_charlie.get(url, {"q": term}).content.decode()
        assert patient.chart_id in body, term


def test_admin_is_refused_to_a_coordinator(client_alice):
    for url in [reverse("admin:index"), reverse("admin:clinics_patient_changelist"),
                reverse("admin:catalog_partner_changelist")]:
        response = client_alice.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_admin_is_refused_to_anonymous(client, db):
    response = client.get(reverse("admin:clinics_patient_changelist"))
    assert response.status_code == 302
