import base64
import datetime

import pytest

from clinics.models import AuditEntry
from prescriptions.models import Prescription
from prescriptions.tests.factories import PrescriptionFactory

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def body(world, **override):
    data = {"chart_id": world["patient"].chart_id, "product_sku": "SEMA-5", "prescriber_npi": world["prescriber"].npi,
            "source": "erx", "erx_message_id": "SS-88231", "sig": "Inject 0.25 mg subcutaneously once weekly",
            "quantity": 1, "days_supply": 28, "refills_authorized": 3,
            "written_on": (datetime.date.today() - datetime.timedelta(days=2)).isoformat()}
    data.update(override)
    return data


def test_record_an_e_prescription_and_read_it(api, catalog_world):
    answer = api.post("/api/v1/prescriptions", body(catalog_world), format="json")
    assert answer.status_code == 201, answer.json()
    rx = Prescription.objects.get(pk=answer.json()["id"])
    assert rx.erx_message_id == "SS-88231" and rx.fills_remaining == 4 and rx.source == "erx"
    read = api.get(f"/api/v1/prescriptions/{rx.pk}").json()
    assert read["fills_remaining"] == 4 and read["status"] == "active" and read["patient"] == catalog_world["patient"].pk
    assert AuditEntry.objects.filter(action="prescription.record", actor_label="API key 'EHR sync'").exists()


def test_record_a_signed_document(api, catalog_world):
    answer = api.post("/api/v1/prescriptions", body(catalog_world, source="document", erx_message_id="",
                                                    document_base64=base64.b64encode(PNG).decode(),
                                                    document_name="rx.png"), format="json")
    assert answer.status_code == 201, answer.json()
    assert answer.json()["has_document"]
    assert Prescription.objects.get(pk=answer.json()["id"]).document_content_type == "image/png"
    fake = api.post("/api/v1/prescriptions", body(catalog_world, source="document",
                                                  document_base64=base64.b64encode(b"hello").decode()), format="json")
    assert fake.status_code == 400 and "PDF, JPEG or PNG" in fake.json()["message"]


def test_the_services_rules_answer_with_a_message(api, catalog_world):
    before = Prescription.objects.count()
    no_ref = api.post("/api/v1/prescriptions", body(catalog_world, erx_message_id=""), format="json")
    assert no_ref.status_code == 400 and no_ref.json()["code"] == "prescription_refused"
    future = api.post("/api/v1/prescriptions", body(catalog_world, written_on="2999-01-01"), format="json")
    assert future.status_code == 400
    unknown = api.post("/api/v1/prescriptions", body(catalog_world, chart_id="NOPE"), format="json").json()
    assert unknown["code"] == "patient_not_found" and unknown["field"] == "chart_id"
    assert Prescription.objects.count() == before


def test_another_clinics_prescription_is_404(api, clinic_b):
    theirs = PrescriptionFactory(clinic=clinic_b)
    assert api.get(f"/api/v1/prescriptions/{theirs.pk}").status_code == 404
