import pytest

from clinics.models import AuditEntry, Patient
from clinics.tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

NEW = {"chart_id": "EHR-1", "first_name": "Ada", "last_name": "Byron", "date_of_birth": "1985-12-10",
       "phone": "+15125550111", "email": "ada@example.com", "address_line1": "1 Main St", "city": "Austin",
       "state": "TX", "zip_code": "78701"}


def test_upsert_creates_then_updates_a_patient_by_chart_id(api, clinic_a):
    created = api.post("/api/v1/patients", NEW, format="json")
    assert created.status_code == 201
    patient = Patient.objects.get(organization=clinic_a.organization, chart_id="EHR-1")
    assert created.json()["id"] == patient.pk and created.json()["date_of_birth"] == "1985-12-10"
    updated = api.post("/api/v1/patients", {"chart_id": "EHR-1", "city": "Dallas", "zip_code": "75201",
                                            "address_line1": "2 Elm St", "state": "TX"}, format="json")
    assert updated.status_code == 200 and updated.json()["city"] == "Dallas"
    assert Patient.objects.count() == 1
    audit = AuditEntry.objects.filter(patient=patient).order_by("id")
    assert [a.action for a in audit] == ["patient.create", "patient.change"]
    assert {a.actor_label for a in audit} == {"API key 'EHR sync'"} and {a.actor for a in audit} == {None}


def test_a_new_patient_is_checked_like_the_cart_form(api):
    answer = api.post("/api/v1/patients", {**NEW, "date_of_birth": "2999-01-01", "zip_code": "ABC"}, format="json")
    assert answer.status_code == 400
    fields = {e["field"]: e for e in answer.json()["errors"]}
    assert fields["date_of_birth"]["code"] == "invalid_date_of_birth" and "future" in fields["date_of_birth"]["message"]
    assert "zip_code" in fields
    missing = api.post("/api/v1/patients", {"chart_id": "EHR-2", "first_name": "X"}, format="json").json()
    assert {e["field"] for e in missing["errors"]} >= {"last_name", "date_of_birth", "address_line1", "city"}
    assert {e["code"] for e in missing["errors"]} == {"required"}
    assert not Patient.objects.exists()


def test_unknown_fields_are_refused(api):
    answer = api.post("/api/v1/patients", {**NEW, "middle_name": "K"}, format="json")
    assert answer.status_code == 400
    assert answer.json()["code"] == "unknown_field" and answer.json()["field"] == "middle_name"


def test_a_name_is_not_changed_through_the_api(api, clinic_a):
    PatientFactory(organization=clinic_a.organization, chart_id="EHR-1", first_name="Ada")
    answer = api.post("/api/v1/patients", {"chart_id": "EHR-1", "first_name": "Eve"}, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "not_changeable" and answer.json()["field"] == "first_name"


def test_read_a_patient_and_another_clinics_is_404(api, clinic_a, clinic_b):
    mine = PatientFactory(organization=clinic_a.organization)
    theirs = PatientFactory(organization=clinic_b.organization)
    assert api.get(f"/api/v1/patients/{mine.pk}").json()["chart_id"] == mine.chart_id
    answer = api.get(f"/api/v1/patients/{theirs.pk}")
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert AuditEntry.objects.filter(action="api.read", patient=mine, actor_label="API key 'EHR sync'").exists()


def test_a_body_over_the_limit_gets_413(api, settings):
    settings.CLINIC_API_MAX_BODY_BYTES = 1000
    answer = api.post("/api/v1/patients", {**NEW, "address_line2": "x" * 2000}, format="json")
    assert answer.status_code == 413 and answer.json()["code"] == "body_too_large"


def test_a_malformed_body_gets_400(api):
    answer = api.post("/api/v1/patients", "{not json", content_type="application/json")
    assert answer.status_code == 400 and answer.json()["code"] == "malformed_body"
    assert api.post("/api/v1/patients", [1, 2], format="json").json()["code"] == "malformed_body"


def test_find_a_patient_by_chart_id(api, clinic_a, clinic_b):
    mine = PatientFactory(organization=clinic_a.organization, chart_id="EHR-7")
    PatientFactory(organization=clinic_b.organization, chart_id="EHR-8")
    assert [p["id"] for p in api.get("/api/v1/patients", {"chart_id": "EHR-7"}).json()] == [mine.pk]
    assert api.get("/api/v1/patients", {"chart_id": "EHR-8"}).json() == []
    assert api.get("/api/v1/patients").json()["code"] == "required"


def test_api_reads_are_in_the_phi_access_log_as_the_keys_name(api, clinic_a, catalog_world):
    from clinics.models import PatientAccess

    patient = catalog_world["patient"]
    api.get(f"/api/v1/patients/{patient.pk}")
    api.post("/api/v1/cart/lines", {"lines": [{"patient": patient.pk, "product": catalog_world["product"].pk,
                                                "prescriber": catalog_world["prescriber"].pk, "quantity": 1,
                                                "sig": "Inject 0.25 mg subcutaneously once weekly", "days_supply": 28}]},
             format="json")
    api.get("/api/v1/cart/lines")
    rows = PatientAccess.objects.filter(patient=patient)
    assert rows.count() == 3
    assert set(rows.values_list("actor_label", flat=True)) == {"API key 'EHR sync'"}
    assert set(rows.values_list("clinic", flat=True)) == {clinic_a.pk} and set(rows.values_list("user", flat=True)) == {None}
