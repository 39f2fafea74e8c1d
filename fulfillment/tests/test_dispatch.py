import json
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from django_q.models import Schedule

from catalog.tests.factories import PartnerFactory
from fulfillment import tasks
from fulfillment.models import LineEvent, OrderLine, PartnerOrder
from fulfillment.dispatch import (
    DispatchError,
    DispatchOutcome,
    dispatch_backoff,
    order_queue_dispatch,
    partner_order_retry_dispatch,
)
from fulfillment.tests.factories import order_with_lines

pytestmark = pytest.mark.django_db
S = OrderLine.Status
PO = PartnerOrder.Status


def orders_url(partner):
    return f"{partner.api_base_url}/orders"


def test_checkout_dispatch_sends_each_partner_order_once_with_its_lines(rsps, django_capture_on_commit_callbacks):
    cedar, harbor = PartnerFactory(), PartnerFactory()
    order = order_with_lines(partners=[cedar, harbor], lines_per_partner=2)
    rsps.post(orders_url(cedar), json={"reference": "CED-1"}, status=201)
    rsps.post(orders_url(harbor), json={"reference": "HAR-1", "lines": []}, status=201)

    with django_capture_on_commit_callbacks(execute=True):
        queued = order_queue_dispatch(order=order)

    assert len(queued) == 2 and len(rsps.calls) == 2
    for partner_order in order.partner_orders.all():
        assert (partner_order.status, partner_order.attempts) == (PO.SENT, 1)
        assert partner_order.partner_reference in ("CED-1", "HAR-1") and partner_order.sent_at
        assert set(partner_order.lines.values_list("status", flat=True)) == {S.SENT}
    call = next(c for c in rsps.calls if c.request.url == orders_url(cedar))
    partner_order = order.partner_orders.get(partner=cedar)
    assert call.request.headers["Authorization"] == "Bearer key-for-tests"
    assert call.request.headers["Idempotency-Key"] == str(partner_order.idempotency_key)
    payload = json.loads(call.request.body)
    line = partner_order.lines.order_by("pk").first()
    assert payload["order_id"] == partner_order.pk
    assert payload["clinic"]["npi"] == order.clinic.npi
    assert payload["ship_to"]["zip"] == order.clinic.zip_code
    sent = payload["lines"][0]
    assert sent["line_id"] == line.pk
    assert sent["patient"]["last_name"] == line.patient.last_name
    assert sent["patient"]["date_of_birth"] == "1980-05-17"
    assert sent["patient"]["address"]["state"] == "TX"
    assert sent["product"]["partner_sku"] == line.partner_sku
    assert (sent["quantity"], sent["sig"], sent["days_supply"], sent["refills"]) == (2, line.sig, 28, 0)
    assert sent["prescriber"]["npi"] == line.prescriber.npi and sent["prescriber"]["license_number"]
    assert LineEvent.objects.filter(line=line, from_status=S.PENDING, to_status=S.SENT, source="system").exists()


def test_running_the_task_twice_sends_once(rsps):
    order = order_with_lines()
    partner_order = order.partner_orders.get()
    rsps.post(orders_url(partner_order.partner), json={"reference": "R-1"})
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.SENT
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.SKIPPED
    assert len(rsps.calls) == 1
    assert LineEvent.objects.filter(line__order=order).count() == 2


def test_partner_500_then_success_on_retry_with_the_same_idempotency_key(rsps, django_capture_on_commit_callbacks):
    order = order_with_lines()
    partner_order = order.partner_orders.get()
    url = orders_url(partner_order.partner)
    rsps.post(url, json={"error": "database is down"}, status=500)
    rsps.post(url, json={"reference": "R-2"}, status=201)

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.RETRY_SCHEDULED
    partner_order.refresh_from_db()
    assert partner_order.status == PO.QUEUED and partner_order.attempts == 1
    assert "500" in partner_order.last_error and "database is down" in partner_order.last_error
    assert set(partner_order.lines.values_list("status", flat=True)) == {S.PENDING}
    retry = Schedule.objects.get(func="fulfillment.tasks.dispatch_partner_order")
    assert retry.args == f"({partner_order.pk},)"
    assert timedelta(seconds=25) < retry.next_run - timezone.now() <= timedelta(seconds=30)

    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.SENT  # what the scheduler runs
    partner_order.refresh_from_db()
    assert (partner_order.status, partner_order.partner_reference, partner_order.attempts) == (PO.SENT, "R-2", 2)
    keys = {c.request.headers["Idempotency-Key"] for c in rsps.calls}
    assert keys == {str(partner_order.idempotency_key)} and len(rsps.calls) == 2


def test_partner_down_past_the_limit_fails_its_lines_while_the_other_partner_is_sent(
    rsps, settings, client_alice, clinic_a, django_capture_on_commit_callbacks
):
    settings.PARTNER_DISPATCH_MAX_ATTEMPTS = 5
    down, up = PartnerFactory(name="Down Pharmacy"), PartnerFactory(name="Up Pharmacy")
    order = order_with_lines(clinic=clinic_a, partners=[down, up])
    rsps.post(orders_url(down), body=requests.ConnectionError("refused"))
    rsps.post(orders_url(up), json={"reference": "UP-1"})

    with django_capture_on_commit_callbacks(execute=True):
        order_queue_dispatch(order=order)
    failing = order.partner_orders.get(partner=down)
    for _ in range(4):  # the scheduled retries
        with django_capture_on_commit_callbacks(execute=True):
            tasks.dispatch_partner_order(failing.pk)

    failing.refresh_from_db()
    assert (failing.status, failing.attempts) == (PO.FAILED, 5)
    assert "could not be reached after 5 attempts" in failing.last_error
    assert set(failing.lines.values_list("status", flat=True)) == {S.FAILED}
    assert set(order.partner_orders.get(partner=up).lines.values_list("status", flat=True)) == {S.SENT}
    assert Schedule.objects.filter(func="fulfillment.tasks.dispatch_partner_order").count() == 4
    page = client_alice.get("/orders/attention").content.decode()
    for line in failing.lines.select_related("patient"):
        assert f'data-line="{line.pk}"' in page
    assert "Down Pharmacy" in page and "could not be reached" in page


def test_timeout_is_transient(rsps):
    order = order_with_lines()
    partner_order = order.partner_orders.get()
    rsps.post(orders_url(partner_order.partner), body=requests.ReadTimeout("slow"))
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.RETRY_SCHEDULED
    partner_order.refresh_from_db()
    assert "did not answer in time" in partner_order.last_error


def test_partner_4xx_fails_at_once_with_its_reason(rsps):
    order = order_with_lines()
    partner_order = order.partner_orders.get()
    rsps.post(orders_url(partner_order.partner), json={"error": "Unknown SKU PSKU-1"}, status=422)
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.FAILED
    partner_order.refresh_from_db()
    assert partner_order.status == PO.FAILED and "Unknown SKU PSKU-1" in partner_order.last_error
    assert list(partner_order.lines.values_list("status_reason", flat=True)) == [partner_order.last_error] * 2


def test_per_line_answers_in_the_order_response_are_applied(rsps):
    order = order_with_lines(lines_per_partner=2)
    partner_order = order.partner_orders.get()
    first, second = partner_order.lines.order_by("pk")
    rsps.post(orders_url(partner_order.partner), json={"reference": "R", "lines": [
        {"line_id": first.pk, "status": "accepted"},
        {"line_id": second.pk, "status": "rejected", "reason": "Out of stock"},
    ]})
    tasks.dispatch_partner_order(partner_order.pk)
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, second.status, second.status_reason) == (S.ACCEPTED, S.REJECTED, "Out of stock")


def test_a_claim_is_a_conditional_update(rsps):
    order = order_with_lines()
    partner_order = order.partner_orders.get()
    PartnerOrder.objects.filter(pk=partner_order.pk).update(
        status=PO.SENDING, next_attempt_at=timezone.now() + timedelta(seconds=60)
    )
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.SKIPPED  # another worker holds it
    PartnerOrder.objects.filter(pk=partner_order.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    rsps.post(orders_url(partner_order.partner), json={"reference": "R"})
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.SENT  # its lease ran out


def test_backoff_doubles():
    assert [dispatch_backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]


def test_staff_retry_dispatch_requeues_a_failed_partner_order(rsps, charlie, django_capture_on_commit_callbacks):
    down, up = PartnerFactory(), PartnerFactory()
    order = order_with_lines(partners=[down, up])
    failing = order.partner_orders.get(partner=down)
    rsps.post(orders_url(down), json={"error": "bad key"}, status=401)
    rsps.post(orders_url(down), json={"reference": "D-1"})
    tasks.dispatch_partner_order(failing.pk)
    failing.refresh_from_db()
    assert failing.status == PO.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        partner_order_retry_dispatch(partner_order=failing, actor=charlie)
    failing.refresh_from_db()
    assert (failing.status, failing.partner_reference, failing.attempts) == (PO.SENT, "D-1", 1)
    assert set(failing.lines.values_list("status", flat=True)) == {S.SENT}
    assert LineEvent.objects.filter(line__partner_order=failing, to_status=S.PENDING, source="staff", actor=charlie).count() == 2
    with pytest.raises(DispatchError):
        partner_order_retry_dispatch(partner_order=failing, actor=charlie)
