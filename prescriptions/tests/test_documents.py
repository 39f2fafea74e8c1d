"""Signed prescription documents: only PDF, JPEG or PNG (told by their bytes), at most 10 MB;
served to the clinic's organization and, through a short-lived signed link, to the partner the
line was routed to — never to another clinic, another partner, or after the link expired."""

import datetime
import time

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from carts.services import cart_get_active
from carts.tests.factories import CartLineFactory
from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry, PatientAccess
from fulfillment.models import PartnerOrder
from fulfillment.partners import build_order_payload
from fulfillment.tests.factories import order_with_lines
from prescriptions.models import Prescription
from prescriptions.services import PrescriptionError, prescription_record
from prescriptions.tests.factories import PrescriptionFactory

pytestmark = pytest.mark.django_db
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _record(clinic, actor, **extra):
    line = CartLineFactory(cart=cart_get_active(clinic=clinic))
    fields = dict(clinic=clinic, patient=line.patient, prescriber=line.prescriber, product=line.product,
                  sig="Inject 0.25 mg subcutaneously once weekly", quantity=1, days_supply=28, refills_authorized=2,
                  written_on=timezone.localdate(), actor=actor)
    return prescription_record(**{**fields, **extra})


def test_a_signed_pdf_is_stored_and_audited(clinic_a, alice):
    rx = _record(clinic_a, alice, source="document", document=ContentFile(PDF, name="scan.pdf"))
    assert rx.document_content_type == "application/pdf" and rx.document.read() == PDF
    assert rx.expires_on == timezone.localdate() + datetime.timedelta(days=365) and rx.fills_remaining == 3
    assert AuditEntry.objects.filter(action="prescription.record", object_id=str(rx.pk), actor=alice).exists()


@pytest.mark.parametrize("content, why", [
    (b"GIF89a not a prescription", "must be a PDF, JPEG or PNG"),
    (b"", "empty"),
])
def test_other_files_are_refused_whatever_their_name(clinic_a, alice, content, why):
    with pytest.raises(PrescriptionError, match=why):
        _record(clinic_a, alice, source="document", document=ContentFile(content, name="looks-like.pdf"))


def test_a_document_over_10_mb_is_refused(clinic_a, alice):
    big = ContentFile(b"%PDF-" + b"0" * (10 * 1024 * 1024), name="big.pdf")
    with pytest.raises(PrescriptionError, match="the limit is 10 MB"):
        _record(clinic_a, alice, source="document", document=big)


def test_written_in_fizy_needs_the_prescribers_typed_name(clinic_a, alice):
    line = CartLineFactory(cart=cart_get_active(clinic=clinic_a))
    name = f"{line.prescriber.first_name} {line.prescriber.last_name}"
    with pytest.raises(PrescriptionError, match="types their full name"):
        _record(clinic_a, alice, source="written", attested_name="Someone Else")
    rx = prescription_record(clinic=clinic_a, patient=line.patient, prescriber=line.prescriber, product=line.product,
                             sig="Inject 0.25 mg subcutaneously once weekly", quantity=1, days_supply=28,
                             refills_authorized=0, written_on=timezone.localdate(), actor=alice, source="written",
                             attested_name=f"  {name.upper()} ")
    assert rx.attested_at and rx.attested_by == alice
    assert AuditEntry.objects.get(object_id=str(rx.pk)).detail["attested_name"] == name.upper()


def test_an_e_prescription_needs_its_reference_and_schedules_limit_refills(clinic_a, alice):
    with pytest.raises(PrescriptionError, match="message id or the pharmacy's Rx number"):
        _record(clinic_a, alice, source="erx")
    with pytest.raises(PrescriptionError, match="at most 11 refills"):
        _record(clinic_a, alice, source="erx", rx_number="RX1", refills_authorized=12)


def test_the_clinic_sees_the_document_another_clinic_gets_404(client, clinic_a, alice, bob):
    rx = PrescriptionFactory(clinic=clinic_a, source="document", document=ContentFile(PDF, name="a.pdf"),
                             document_content_type="application/pdf")
    url = reverse("prescriptions:document", args=[rx.pk])
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    assert response["Content-Type"] == "application/pdf"
    # In the PHI access log: alice opened this patient's prescription in clinic A.
    assert list(PatientAccess.objects.values_list("user__username", "clinic", "patient", "page")) == [
        ("alice", clinic_a.pk, rx.patient_id, "prescriptions:document")]
    client.force_login(bob)
    assert client.get(url).status_code == 404
    assert PatientAccess.objects.count() == 1  # a refused read shows nothing and logs nothing


def test_another_clinic_cannot_point_its_line_to_the_prescription(client, clinic_a, clinic_b, bob):
    rx = PrescriptionFactory(clinic=clinic_a)
    line_b = CartLineFactory(cart=cart_get_active(clinic=clinic_b))
    client.force_login(bob)
    response = client.post(reverse("carts:line-prescription", args=[line_b.pk]), {"use": rx.pk})
    assert response.status_code == 404
    assert line_b.prescription_id != rx.pk and type(line_b).objects.get(pk=line_b.pk).prescription_id != rx.pk


def _order_line_with_document(clinic):
    partner = PartnerFactory()
    order = order_with_lines(clinic=clinic, partners=[partner], lines_per_partner=1)
    line = order.lines.get()
    rx = PrescriptionFactory(clinic=clinic, patient=line.patient, product=line.product, source="document",
                             document=ContentFile(PDF, name="a.pdf"), document_content_type="application/pdf")
    type(line).objects.filter(pk=line.pk).update(prescription=rx)
    line.refresh_from_db()
    return line, rx


def test_the_partner_payload_carries_the_prescription_and_its_link_works_until_it_expires(client, clinic_a, settings,
                                                                                        monkeypatch):
    settings.PRESCRIPTION_DOCUMENT_LINK_MAX_AGE = 600
    line, rx = _order_line_with_document(clinic_a)
    [sent] = build_order_payload(line.partner_order, [line])["lines"]
    prescription = sent["prescription"]
    assert prescription["source"] == "document" and prescription["written_on"] == rx.written_on.isoformat()
    assert prescription["refills_remaining"] == rx.refills_remaining and prescription["rx_number"] == rx.rx_number
    path = prescription["document_url"].removeprefix(settings.SITE_URL)
    response = client.get(path)  # the partner: no session, the signed link only
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    # In the PHI access log as the pharmacy that opened it, for the line's clinic.
    assert list(PatientAccess.objects.values_list("user", "actor_label", "clinic", "patient", "page")) == [
        (None, f"partner {line.partner_order.partner.slug}", clinic_a.pk, line.patient_id,
         "fulfillment:partner-prescription-document")]
    assert client.get(path[:-3] + "xyz").status_code == 404  # altered

    later = time.time() + 601
    monkeypatch.setattr("django.core.signing.time.time", lambda: later)
    assert client.get(path).status_code == 404  # expired


def test_a_link_works_only_for_the_partner_the_line_was_routed_to(client, clinic_a):
    line, rx = _order_line_with_document(clinic_a)
    path = build_order_payload(line.partner_order, [line])["lines"][0]["prescription"]["document_url"]
    other = PartnerOrder.objects.create(order=line.order, partner=PartnerFactory())
    type(line).objects.filter(pk=line.pk).update(partner_order=other)  # rerouted to another pharmacy
    assert client.get(path.split("127.0.0.1:8000")[-1].split("testserver")[-1]).status_code == 404


def test_an_e_prescription_is_sent_as_its_reference_without_a_link(clinic_a):
    line, rx = _order_line_with_document(clinic_a)
    Prescription.objects.filter(pk=rx.pk).update(source="erx", document="", erx_message_id="SS-1")
    line = type(line).objects.select_related("prescription", "product").get(pk=line.pk)
    sent = build_order_payload(line.partner_order, [line])["lines"][0]["prescription"]
    assert sent["erx_message_id"] == "SS-1" and "document_url" not in sent


def test_an_order_exports_as_a_valid_fhir_r4_bundle_for_its_clinic_only(client, clinic_a, alice, bob):
    from fhir.resources.R4B.bundle import Bundle

    from prescriptions.models import Fill

    line, rx = _order_line_with_document(clinic_a)
    Fill.objects.create(prescription=rx, status=Fill.Status.USED, order_line_id=line.pk, used_at=timezone.now(),
                        delivered_at=timezone.now())
    client.force_login(alice)
    response = client.get(reverse("fulfillment:order-fhir", args=[line.order_id]))
    assert response.status_code == 200 and response["Content-Type"] == "application/fhir+json"
    data = response.json()
    Bundle.model_validate(data)  # valid FHIR
    kinds = [e["resource"]["resourceType"] for e in data["entry"]]
    assert {"Patient", "Organization", "MedicationRequest", "MedicationDispense"} <= set(kinds)
    request = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    assert request["dosageInstruction"][0]["text"] == line.sig
    assert request["dispenseRequest"]["numberOfRepeatsAllowed"] == rx.refills_authorized
    assert request["dispenseRequest"]["performer"]["reference"].startswith("Organization/pharmacy-")
    dispense = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "MedicationDispense")
    assert dispense["status"] == "completed" and dispense["whenHandedOver"]
    assert list(PatientAccess.objects.values_list("user__username", "patient", "page")) == [
        ("alice", line.patient_id, "fulfillment:order-fhir")]
    client.force_login(bob)
    assert client.get(reverse("fulfillment:order-fhir", args=[line.order_id])).status_code == 404
