"""Answer a hold in place (issue 12, item 3): text and/or a file sent to the pharmacy's API from
Needs attention or the order page; the line shows "answered, waiting for the pharmacy" until the
pharmacy moves it, and then the item resolves as answered. The partner is a real HTTP server
(``fake_partner.FakePartner``), reached through the real ``requests`` code path."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry
from fulfillment import tasks
from fulfillment.models import AttentionItem, HoldAnswer, OrderLine, SandboxPartnerOrder
from fulfillment.status import line_apply_status
from fulfillment.tests.factories import order_with_lines

from .fake_partner import FakePartner

pytestmark = pytest.mark.django_db
S = OrderLine.Status
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def fake():
    with FakePartner() as server:
        yield server


@pytest.fixture
def held(fake, clinic_a, django_capture_on_commit_callbacks):
    """Clinic A's order sent to the fake partner, its first line on hold for a signed prescription."""
    partner = PartnerFactory(name="Harbor", api_base_url=fake.base_url)
    order = order_with_lines(clinic=clinic_a, partners=[partner], lines_per_partner=2)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.dispatch_partner_order(order.partner_orders.get().pk)
    line = order.lines.order_by("pk").first()
    line_apply_status(line=line, to=S.ON_HOLD, source="webhook", reason="Please send the signed prescription.",
                      reason_code="prescription_needed")
    return line


def test_text_and_a_pdf_reach_the_partner_and_the_line_shows_answered_until_it_moves(client_alice, alice, fake, held):
    page = client_alice.get("/orders/attention").content.decode()
    assert f'id="answer-form-{held.pk}"' in page and 'enctype="multipart/form-data"' in page
    response = client_alice.post(f"/orders/{held.order_id}/lines/{held.pk}/answer", {
        "text": "Signed prescription attached.", "back": "attention",
        "file": SimpleUploadedFile("rx-lee.pdf", PDF, content_type="application/octet-stream"),
    })
    assert response.status_code == 302 and response.url == "/orders/attention"
    (call,) = fake.of_kind("hold_answer")
    assert call["reference"] == held.partner_order.partner_reference and call["line_id"] == held.pk
    assert call["text"] == "Signed prescription attached."
    assert [(f["filename"], f["content_type"], f["data"]) for f in call["files"]] == [("rx-lee.pdf", "application/pdf", PDF)]
    answer = HoldAnswer.objects.get(line=held)
    assert answer.status == HoldAnswer.Status.SENT and answer.file_type == "application/pdf"
    with answer.file.open("rb") as stored:  # kept through the default storage
        assert stored.read() == PDF
    assert AuditEntry.objects.filter(action="order_line.hold_answered", object_id=str(held.pk), actor=alice).exists()
    item = AttentionItem.objects.get(line=held)
    assert item.answered_at and item.is_open
    assert f'id="answered-{item.pk}"' in client_alice.get("/orders/attention").content.decode()
    assert f'id="answered-{held.pk}"' in client_alice.get(f"/orders/{held.order_id}").content.decode()

    line_apply_status(line=held, to=S.ACCEPTED, source="webhook")  # the pharmacy moves the line on

    item.refresh_from_db()
    assert item.resolution == AttentionItem.Resolution.ANSWERED and item.resolved_at
    page = client_alice.get("/orders/attention?tab=resolved").content.decode()
    assert f'id="item-{item.pk}"' in page and "Answered; the pharmacy moved the line on" in page


def test_text_alone_is_an_answer(client_alice, fake, held):
    client_alice.post(f"/orders/{held.order_id}/lines/{held.pk}/answer", {"text": "Dose confirmed: 0.25 mg weekly."})
    (call,) = fake.of_kind("hold_answer")
    assert call["text"] == "Dose confirmed: 0.25 mg weekly." and call["files"] == []


@pytest.mark.parametrize("upload, message", [
    (None, "Write an answer or attach a file"),
    (SimpleUploadedFile("rx.pdf", b"MZ\x90\x00 not a pdf", content_type="application/pdf"), "is not a PDF, JPEG or PNG"),
    (SimpleUploadedFile("big.png", b"\x89PNG\r\n\x1a\n" + b"0" * (10 * 1024 * 1024), content_type="image/png"),
     "files are at most 10 MB"),
])
def test_a_bad_answer_is_refused_with_a_clear_message_and_nothing_is_sent(client_alice, fake, held, upload, message):
    data = {"text": ""} | ({"file": upload} if upload else {})
    response = client_alice.post(f"/orders/{held.order_id}/lines/{held.pk}/answer", data, follow=True)
    assert response.status_code == 200 and message in response.content.decode()
    assert fake.of_kind("hold_answer") == [] and not HoldAnswer.objects.exists()
    assert AttentionItem.objects.get(line=held).answered_at is None


def test_a_partner_that_fails_leaves_the_answer_recorded_as_failed(client_alice, fake, held):
    fake.hold_answer_status = 503
    response = client_alice.post(f"/orders/{held.order_id}/lines/{held.pk}/answer", {"text": "Here it is."}, follow=True)
    assert "could not be sent" in response.content.decode()
    assert HoldAnswer.objects.get(line=held).status == HoldAnswer.Status.FAILED
    assert AttentionItem.objects.get(line=held).answered_at is None


def test_another_clinic_gets_404(held, bob, fake):
    client = Client()
    client.force_login(bob)
    url = f"/orders/{held.order_id}/lines/{held.pk}/answer"
    assert client.get(url).status_code == 404
    assert client.post(url, {"text": "hi"}).status_code == 404
    assert fake.of_kind("hold_answer") == []


@pytest.fixture
def sandbox(settings, route_to_django):
    settings.SANDBOX_PARTNERS = True
    settings.SANDBOX_WEBHOOK_BASE_URL = route_to_django
    return route_to_django


def test_the_sandbox_partner_takes_the_answer_and_releases_the_hold(sandbox, client_alice, clinic_a,
                                                                    django_capture_on_commit_callbacks):
    partner = PartnerFactory(slug="cedar", api_base_url=f"{sandbox}/sandbox/partners/cedar", api_key="sandbox-key")
    order = order_with_lines(clinic=clinic_a, partners=[partner], lines_per_partner=1)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.dispatch_partner_order(order.partner_orders.get().pk)
    line = order.lines.get()
    line_apply_status(line=line, to=S.ON_HOLD, source="webhook", reason="Callback needed.", reason_code="clinical_question")
    with django_capture_on_commit_callbacks(execute=True):
        client_alice.post(f"/orders/{order.pk}/lines/{line.pk}/answer", {
            "text": "Dr. Lee confirms the dose.", "file": SimpleUploadedFile("note.pdf", PDF)})
    line.refresh_from_db()
    assert line.status == S.ACCEPTED
    assert SandboxPartnerOrder.objects.get().payload["answers"][0]["file"] == "note.pdf"
    assert AttentionItem.objects.get(line=line).resolution == AttentionItem.Resolution.ANSWERED
