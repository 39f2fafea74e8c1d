import datetime
import json

import pytest
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from clinic_api.models import WebhookDelivery
from clinic_api.webhooks import webhook_deliver, webhooks_scan
from clinics.models import AuditEntry
from conftest import verified_login
from fulfillment.models import OrderLine
from fulfillment.status import line_apply_status
from fulfillment.tests.factories import order_with_lines

from .fake_receiver import FakeReceiver

pytestmark = pytest.mark.django_db
D = WebhookDelivery.Status


@pytest.fixture(autouse=True)
def _http_allowed(settings):
    settings.CLINIC_WEBHOOK_ALLOW_HTTP = True
    settings.CLINIC_WEBHOOK_MAX_ATTEMPTS = 3


@pytest.fixture
def receiver():
    with FakeReceiver() as server:
        yield server


@pytest.fixture
def order(clinic_a, alice):
    order = order_with_lines(clinic=clinic_a, lines_per_partner=2, placed_by=alice)
    OrderLine.objects.filter(order=order).update(status=OrderLine.Status.SENT)
    return order


@pytest.fixture
def scan(django_capture_on_commit_callbacks):
    """The minute's scan, with its deliveries' tasks run (the test's transaction never commits)."""
    def run():
        with django_capture_on_commit_callbacks(execute=True):
            return webhooks_scan()
    return run


def subscribe(api, url, events=("line.status_changed",)) -> dict:
    answer = api.post("/api/v1/webhooks", {"url": url, "events": list(events)}, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def test_each_status_change_reaches_the_clinic_signed_with_ids_only(api, receiver, order, scan):
    secret = subscribe(api, receiver.url)["secret"]
    assert secret.startswith("whsec_")
    line = order.lines.order_by("pk").first()
    line_apply_status(line=line, to="accepted", source="webhook")
    assert scan() == 1
    assert len(receiver.received) == 1
    got = receiver.received[0]
    payload = Webhook(secret).verify(got["body"], got["headers"])  # raises if the signature is wrong
    assert payload["type"] == "line.status_changed"
    assert payload["data"] == {**payload["data"], "order": order.pk, "line": line.pk, "from_status": "sent",
                               "status": "accepted"}
    for secret_text in (line.patient.first_name, line.patient.last_name, line.sig):
        assert secret_text not in got["body"]
    # Scanning again sends nothing twice.
    assert scan() == 0 and len(receiver.received) == 1
    with pytest.raises(Exception):
        Webhook("whsec_" + "A" * 43 + "=").verify(got["body"], got["headers"])


def test_a_failing_url_is_retried_with_backoff_then_given_up(api, receiver, order, scan):
    subscribe(api, receiver.url)
    receiver.answers = [500, 503, 500]
    line_apply_status(line=order.lines.first(), to="accepted", source="webhook")
    scan()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == D.RETRYING and delivery.attempts == 1 and delivery.last_status_code == 500
    assert delivery.next_attempt_at > timezone.now() + datetime.timedelta(seconds=20)
    assert webhook_deliver(delivery_id=delivery.pk) is None  # not due yet
    for attempt in (2, 3):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == D.FAILED and delivery.attempts == 3 and "503" not in delivery.last_error


def test_resend_from_the_settings_page(client, clinic_admin_a, api, receiver, order, scan,
                                       django_capture_on_commit_callbacks):
    subscribe(api, receiver.url)
    line_apply_status(line=order.lines.first(), to="accepted", source="webhook")
    scan()
    delivery = WebhookDelivery.objects.get()
    verified_login(client, clinic_admin_a)
    page = client.get(reverse("clinic_api:settings")).content.decode()
    assert "line.status_changed" in page and "Delivered" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("clinic_api:delivery-resend", args=[delivery.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "sent again" in response.content.decode()
    assert len(receiver.received) == 2
    assert receiver.received[0]["headers"]["webhook-id"] == receiver.received[1]["headers"]["webhook-id"]
    assert AuditEntry.objects.filter(action="api.webhook_resend", actor=clinic_admin_a).exists()


def test_attention_and_settled_events(api, receiver, order, scan):
    subscribe(api, receiver.url, events=["line.needs_attention", "order.settled"])
    first, second = order.lines.order_by("pk")
    line_apply_status(line=first, to="rejected", source="webhook", reason_code="out_of_stock")
    line_apply_status(line=second, to="accepted", source="webhook")
    scan()
    assert [e["type"] for e in receiver.events()] == ["line.needs_attention"]
    assert receiver.events()[0]["data"]["reason_code"] == "out_of_stock"
    for to in ("compounding", "shipped", "delivered"):
        line_apply_status(line=second, to=to, source="webhook")
    scan()
    settled = [e for e in receiver.events() if e["type"] == "order.settled"]
    assert len(settled) == 1 and settled[0]["data"] == {"order": order.pk, "statuses": {"rejected": 1, "delivered": 1}}


def test_subscriptions_are_the_clinics_own(api, clinic_b, receiver):
    from clinic_api.webhooks import subscription_create

    theirs = subscription_create(clinic=clinic_b, url="https://b.example/hook", events=["order.settled"])
    assert api.delete(f"/api/v1/webhooks/{theirs.pk}").status_code == 404
    mine = subscribe(api, receiver.url)
    assert [s["id"] for s in api.get("/api/v1/webhooks").json()] == [mine["id"]]
    assert "secret" not in api.get("/api/v1/webhooks").json()[0]
    assert api.delete(f"/api/v1/webhooks/{mine['id']}").status_code == 204
    assert api.get("/api/v1/webhooks").json() == []


def test_a_url_must_be_https_in_production(api, settings):
    settings.CLINIC_WEBHOOK_ALLOW_HTTP = False
    answer = api.post("/api/v1/webhooks", {"url": "http://ehr.example/hook", "events": ["order.settled"]}, format="json")
    assert answer.status_code == 400 and answer.json()["field"] == "url"
    bad = api.post("/api/v1/webhooks", {"url": "https://ehr.example/hook", "events": ["order.placed"]}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "events[0]"


def test_the_settings_page_subscribes_and_shows_the_secret_once(client, clinic_admin_a, receiver):
    verified_login(client, clinic_admin_a)
    response = client.post(reverse("clinic_api:webhook-create"), {"url": receiver.url, "events": ["order.settled"]},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    secret = response.content.decode().split('id="new-webhook-secret">')[1].split("<")[0]
    assert secret.startswith("whsec_")
    assert secret not in client.get(reverse("clinic_api:settings")).content.decode()


def test_a_prescription_whose_last_fill_is_used_is_reported_once(api, receiver, clinic_a, order, scan):
    from prescriptions.models import Fill
    from prescriptions.tests.factories import PrescriptionFactory

    subscribe(api, receiver.url, events=["prescription.refills_exhausted"])
    line = order.lines.first()
    rx = PrescriptionFactory(clinic=clinic_a, patient=line.patient, refills_authorized=0, fills_remaining=0)
    Fill.objects.create(prescription=rx, status=Fill.Status.USED, used_at=timezone.now(), order_line_id=line.pk)
    other = PrescriptionFactory(clinic=clinic_a, patient=line.patient, refills_authorized=2, fills_remaining=2)
    Fill.objects.create(prescription=other, status=Fill.Status.USED, used_at=timezone.now())
    scan()
    scan()
    assert [e["data"] for e in receiver.events()] == [
        {"prescription": rx.pk, "patient": line.patient_id, "product": rx.product_id, "order_line": line.pk}]
    assert receiver.events()[0]["type"] == "prescription.refills_exhausted"
