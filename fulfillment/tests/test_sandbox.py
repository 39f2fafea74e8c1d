"""The sandbox partner pharmacy, end to end: dispatch → sandbox order API → signed webhooks →
lines delivered or rejected → payment captured for the accepted lines only. All HTTP goes
through ``requests`` and is routed into this project by ``responses``."""

import json
from decimal import Decimal

import pytest
from django_q.models import Schedule

from catalog.tests.factories import PartnerFactory
from fulfillment.models import Order, OrderLine, PaymentEvent, SandboxPartnerOrder, WebhookEvent
from fulfillment.sandbox import sandbox_line_events, sandbox_play_all
from fulfillment.dispatch import order_queue_dispatch
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status


@pytest.fixture
def sandbox(settings, route_to_django):
    settings.SANDBOX_PARTNERS = True
    settings.SANDBOX_WEBHOOK_BASE_URL = route_to_django
    return route_to_django


def sandbox_partner(base, slug):
    return PartnerFactory(slug=slug, api_base_url=f"{base}/sandbox/partners/{slug}", api_key=f"sandbox-key-{slug}")


def test_sandbox_partner_end_to_end(sandbox, django_capture_on_commit_callbacks):
    cedar, harbor = sandbox_partner(sandbox, "cedar"), sandbox_partner(sandbox, "harbor")
    order = order_with_lines(partners=[cedar, harbor], lines_per_partner=5)  # 10 consecutive ids: some × 7
    with django_capture_on_commit_callbacks(execute=True):
        order_queue_dispatch(order=order)

    assert set(order.lines.values_list("status", flat=True)) == {S.SENT}
    assert SandboxPartnerOrder.objects.count() == 2
    assert Schedule.objects.filter(func="fulfillment.tasks.sandbox_play_step").count() == 8  # 4 steps × 2 orders
    for partner_order in order.partner_orders.all():
        assert partner_order.partner_reference.startswith("SBX-")

    with django_capture_on_commit_callbacks(execute=True):
        for sandbox_order in SandboxPartnerOrder.objects.all():
            sandbox_play_all(sandbox_order_id=sandbox_order.pk)

    lines = list(order.lines.all())
    rejected = [line for line in lines if line.pk % 7 == 0]
    assert rejected, "the fixture should include a line id divisible by 7"
    for line in lines:
        if line.pk % 7 == 0:
            assert line.status == S.REJECTED and line.status_reason
        else:
            assert line.status == S.DELIVERED and line.tracking_number and line.carrier
    assert not WebhookEvent.objects.exclude(outcome=WebhookEvent.Outcome.APPLIED).exists()

    order.refresh_from_db()
    accepted_total = sum((line.landed_cost for line in lines if line.status == S.DELIVERED), Decimal("0.00"))
    assert order.payment_status == Order.PaymentStatus.PARTIALLY_CAPTURED
    assert order.amount_captured == accepted_total
    capture = PaymentEvent.objects.get(order=order, kind=PaymentEvent.Kind.PARTIALLY_CAPTURED)
    assert capture.amount == accepted_total

    # Played again (a scheduler hiccup): every event is acknowledged as a duplicate, nothing changes.
    sandbox_play_all(sandbox_order_id=SandboxPartnerOrder.objects.first().pk)
    assert WebhookEvent.objects.filter(outcome=WebhookEvent.Outcome.DUPLICATE).exists()
    assert PaymentEvent.objects.filter(order=order).exclude(kind=PaymentEvent.Kind.AUTHORIZED).count() == 1


def test_sandbox_order_api_checks_the_key_and_honours_the_idempotency_key(sandbox, client):
    partner = sandbox_partner(sandbox, "summit")
    body = json.dumps({"order_id": 1, "lines": [{"line_id": 3}]})
    url = "/sandbox/partners/summit/orders"

    def post(**headers):
        return client.post(url, data=body, content_type="application/json", headers=headers)

    assert post(Authorization="Bearer wrong", **{"Idempotency-Key": "k1"}).status_code == 401
    assert post(Authorization=f"Bearer {partner.api_key}").status_code == 400
    first = post(Authorization=f"Bearer {partner.api_key}", **{"Idempotency-Key": "k1"})
    again = post(Authorization=f"Bearer {partner.api_key}", **{"Idempotency-Key": "k1"})
    other = post(Authorization=f"Bearer {partner.api_key}", **{"Idempotency-Key": "k2"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["reference"] == again.json()["reference"] != other.json()["reference"]
    assert SandboxPartnerOrder.objects.count() == 2


def test_sandbox_is_off_unless_enabled(settings, client):
    settings.SANDBOX_PARTNERS = False
    PartnerFactory(slug="cedar")
    response = client.post("/sandbox/partners/cedar/orders", data="{}", content_type="application/json")
    assert response.status_code == 404


def test_sandbox_progression_rule():
    assert [e and e["status"] for e in sandbox_line_events(line_id=14, reference="SBX-1")] == ["rejected", None, None, None]
    assert [e["status"] for e in sandbox_line_events(line_id=22, reference="SBX-1")] == ["on_hold", "compounding", "shipped", "delivered"]
    plan = sandbox_line_events(line_id=5, reference="SBX-1")
    assert [e["status"] for e in plan] == ["accepted", "compounding", "shipped", "delivered"]
    assert plan[2]["tracking_number"] and plan[2]["carrier"]


def test_sandbox_order_lookup_finds_an_order_by_its_idempotency_key(sandbox, client):
    partner = sandbox_partner(sandbox, "summit")
    auth = {"Authorization": f"Bearer {partner.api_key}"}
    body = json.dumps({"order_id": 1, "lines": [{"line_id": 3}]})
    placed = client.post("/sandbox/partners/summit/orders", data=body, content_type="application/json",
                         headers={**auth, "Idempotency-Key": "k-look"}).json()

    found = client.get("/sandbox/partners/summit/orders", {"idempotency_key": "k-look"}, headers=auth)
    assert found.status_code == 200 and found.json() == placed
    assert client.get("/sandbox/partners/summit/orders", {"idempotency_key": "other"}, headers=auth).status_code == 404
    assert client.get("/sandbox/partners/summit/orders", {"idempotency_key": "k-look"}).status_code == 401
