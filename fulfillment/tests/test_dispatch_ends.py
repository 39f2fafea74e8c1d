"""Dispatch always ends (issue 12, item 1): malformed answers, partners that trickle past the
deadline, errors while recording, workers that die mid-send, the order lookup before giving up,
webhooks for lines we had marked failed, and staff retries at any time.

Partners are a real HTTP server on 127.0.0.1 (``fake_partner.FakePartner``) reached through the
real ``requests`` code path."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from catalog.models import Partner
from catalog.tests.factories import PartnerFactory
from fulfillment import dispatch, tasks
from fulfillment.dispatch import (
    DispatchError,
    DispatchOutcome,
    partner_order_retry_dispatch,
    partner_orders_reclaim,
)
from fulfillment.partners import build_order_payload
from fulfillment.models import AttentionItem, LineEvent, Order, OrderLine, PartnerOrder, PaymentEvent, WebhookEvent
from fulfillment.tests.conftest import event_body, post_event
from fulfillment.tests.factories import order_with_lines

from .fake_partner import FakePartner

pytestmark = pytest.mark.django_db
S = OrderLine.Status
PO = PartnerOrder.Status


@pytest.fixture
def fake():
    with FakePartner() as server:
        yield server


@pytest.fixture
def fast(settings):
    settings.PARTNER_DISPATCH_MAX_ATTEMPTS = 3
    settings.PARTNER_ATTEMPT_DEADLINE = 1.0
    settings.PARTNER_READ_TIMEOUT = 0.5
    settings.PARTNER_CONNECT_TIMEOUT = 0.5
    return settings


def order_at(server, *, lookup=False, lines=2, clinic=None, name="Harbor Compounding"):
    partner = Partner.objects.filter(name=name).first() or PartnerFactory(
        name=name, api_base_url=server.base_url, order_lookup=lookup)
    order = order_with_lines(partners=[partner], lines_per_partner=lines, **({"clinic": clinic} if clinic else {}))
    return order, order.partner_orders.get()


def run_until_done(partner_order, capture, limit=10):
    """Run the dispatch task as the scheduler would until it no longer schedules a retry."""
    outcomes = []
    for _ in range(limit):
        with capture(execute=True):
            outcomes.append(tasks.dispatch_partner_order(partner_order.pk))
        if outcomes[-1] != DispatchOutcome.RETRY_SCHEDULED:
            break
    partner_order.refresh_from_db()
    return outcomes


MALFORMED = {
    "lines is a number": (b'{"reference": "R-1", "lines": 5}', "'lines' must be a list, not int"),
    "not JSON": (b"<html>OK</html>", "a body that is not JSON"),
    "a JSON list": (b"[]", "the answer is not a JSON object"),
    "no reference": (b'{"lines": []}', "it has no order reference"),
    "line id is text": (b'{"reference": "R", "lines": [{"line_id": "12", "status": "accepted"}]}',
                        "lines[0].line_id is not a positive integer"),
    "unknown line status": (b'{"reference": "R", "lines": [{"line_id": 12, "status": "maybe"}]}',
                            "lines[0].status must be one of accepted, rejected, received"),
    "unknown reason code": (b'{"reference": "R", "lines": [{"line_id": 12, "status": "rejected", "reason_code": "moon"}]}',
                            "reason_code 'moon' is not a known reason code"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_200s_end_failed_with_the_reason_after_the_attempts(fake, fast, django_capture_on_commit_callbacks, case):
    body, reason = MALFORMED[case]
    fake.script = [("raw200", body)] * 3
    order, partner_order = order_at(fake)

    outcomes = run_until_done(partner_order, django_capture_on_commit_callbacks)

    assert outcomes == [DispatchOutcome.RETRY_SCHEDULED, DispatchOutcome.RETRY_SCHEDULED, DispatchOutcome.FAILED]
    assert partner_order.status == PO.FAILED
    assert "could not be reached after 3 attempts" in partner_order.last_error and reason in partner_order.last_error
    assert set(partner_order.lines.values_list("status", flat=True)) == {S.FAILED}
    assert {c["key"] for c in fake.of_kind("order")} == {str(partner_order.idempotency_key)}


def test_malformed_200s_then_the_lookup_finds_the_order_so_it_is_sent(fake, fast, django_capture_on_commit_callbacks):
    fake.script = [("raw200", b'{"reference": "R-1", "lines": 5}')] * 3
    order, partner_order = order_at(fake, lookup=True)

    outcomes = run_until_done(partner_order, django_capture_on_commit_callbacks)

    assert outcomes[-1] == DispatchOutcome.SENT
    assert (partner_order.status, partner_order.partner_reference) == (PO.SENT, "FAKE-00001")
    assert len(fake.of_kind("order")) == 3 and len(fake.of_kind("lookup")) == 1
    assert fake.of_kind("lookup")[0]["key"] == str(partner_order.idempotency_key)
    assert set(partner_order.lines.values_list("status", flat=True)) == {S.SENT}
    assert all("found at Harbor Compounding" in e.reason for e in LineEvent.objects.filter(to_status=S.SENT))


def test_500s_then_the_lookup_confirms_no_order_so_it_fails(fake, fast, django_capture_on_commit_callbacks):
    fake.script = [("status", 500, {"error": "database is down"})] * 3
    order, partner_order = order_at(fake, lookup=True)

    run_until_done(partner_order, django_capture_on_commit_callbacks)

    assert partner_order.status == PO.FAILED
    assert "database is down" in partner_order.last_error
    assert "Harbor Compounding confirms it has no such order" in partner_order.last_error
    assert set(partner_order.lines.values_list("status", flat=True)) == {S.FAILED}


@pytest.mark.parametrize("how", ["trickle_body", "trickle_headers"])
def test_a_partner_trickling_past_the_deadline_is_cut_off_and_the_attempt_recorded(fake, fast, how):
    fake.script = [how]
    order, partner_order = order_at(fake)

    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.RETRY_SCHEDULED

    partner_order.refresh_from_db()
    assert partner_order.status == PO.QUEUED  # never left "sending"
    assert partner_order.last_error == "Attempt 1: Harbor Compounding did not finish answering within 1 s."
    # The partner kept the order (it was answering); the next attempt, under the same key, gets its reference.
    fake.script = ["ok"]
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.SENT
    partner_order.refresh_from_db()
    assert (partner_order.status, partner_order.partner_reference) == (PO.SENT, "FAKE-00001")
    assert len(fake.orders) == 1


def test_an_error_while_recording_the_answer_is_a_failed_attempt_not_a_stuck_order(fake, fast, monkeypatch):
    order, partner_order = order_at(fake)
    real = dispatch._record_sent
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database connection lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch, "_record_sent", broken_once)
    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.RETRY_SCHEDULED
    partner_order.refresh_from_db()
    assert partner_order.status == PO.QUEUED
    assert partner_order.last_error == "Attempt 1: Dispatch error (RuntimeError) while sending or recording the order."
    assert set(partner_order.lines.values_list("status", flat=True)) == {S.PENDING}

    assert tasks.dispatch_partner_order(partner_order.pk) == DispatchOutcome.SENT
    partner_order.refresh_from_db()
    assert partner_order.status == PO.SENT and len(fake.orders) == 1


def test_the_reclaimer_requeues_an_order_whose_worker_died_and_leaves_live_ones(fake, fast):
    order, dead = order_at(fake)
    _, alive = order_at(fake)
    _, lost = order_at(fake)  # queued, but its task never reached a worker
    now = timezone.now()
    PartnerOrder.objects.filter(pk=dead.pk).update(status=PO.SENDING, attempts=1, next_attempt_at=now - timedelta(seconds=1))
    PartnerOrder.objects.filter(pk=alive.pk).update(status=PO.SENDING, attempts=1, next_attempt_at=now + timedelta(seconds=50))
    Order.objects.filter(pk=lost.order_id).update(placed_at=now - timedelta(minutes=5))

    assert sorted(partner_orders_reclaim()) == sorted([dead.pk, lost.pk])  # the tasks run inline (sync)

    for partner_order, status in ((dead, PO.SENT), (alive, PO.SENDING), (lost, PO.SENT)):
        partner_order.refresh_from_db()
        assert partner_order.status == status
    dead.refresh_from_db()
    assert dead.attempts == 2
    assert partner_orders_reclaim() == []


def test_a_worker_dying_during_the_last_attempt_ends_failed_or_sent_never_sending(fake, fast):
    order, partner_order = order_at(fake, lookup=True)
    # The partner got the order of the third attempt; the worker died before recording the answer.
    fake.keep(str(partner_order.idempotency_key), build_order_payload(partner_order, list(partner_order.lines.order_by("pk"))))
    PartnerOrder.objects.filter(pk=partner_order.pk).update(
        status=PO.SENDING, attempts=3, next_attempt_at=timezone.now() - timedelta(seconds=1))

    partner_orders_reclaim()

    partner_order.refresh_from_db()
    assert (partner_order.status, partner_order.partner_reference) == (PO.SENT, "FAKE-00001")
    assert fake.of_kind("order") == [] and len(fake.of_kind("lookup")) == 1  # asked, not sent a 4th time


def test_the_reclaimer_runs_every_minute_from_a_schedule_created_by_migrate():
    schedule = Schedule.objects.get(func="fulfillment.tasks.reclaim_partner_orders")
    assert (schedule.name, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "fizy: dispatch reclaimer", Schedule.MINUTES, 1, -1)


def test_webhooks_for_a_line_marked_failed_are_held_for_staff_and_applied_by_the_retry(
    fake, fast, client, charlie, django_capture_on_commit_callbacks
):
    # The partner takes the order but answers 503, three times; it offers no lookup.
    fake.script = [("kept_status", 503, {"error": "maintenance"})] * 3
    order, partner_order = order_at(fake)
    run_until_done(partner_order, django_capture_on_commit_callbacks)
    assert partner_order.status == PO.FAILED
    line = partner_order.lines.order_by("pk").first()
    partner = partner_order.partner
    # It reports on the line: it had the order after all.
    response = post_event(client, partner, event_body(line, "accepted"))

    assert response.status_code == 200 and response.json()["status"] == "held"
    event = WebhookEvent.objects.get(event_id=f"evt-{line.pk}-accepted")
    assert event.outcome == WebhookEvent.Outcome.HELD
    item = AttentionItem.objects.get(line=line, audience=AttentionItem.Audience.STAFF, resolved_at=None)
    assert item.webhook_event == event and "the pharmacy has the order" in item.message
    line.refresh_from_db()
    assert line.status == S.FAILED

    fake.script = ["ok"]
    with django_capture_on_commit_callbacks(execute=True):
        partner_order_retry_dispatch(partner_order=partner_order, actor=charlie)

    partner_order.refresh_from_db()
    line.refresh_from_db()
    assert partner_order.status == PO.SENT and line.status == S.ACCEPTED
    event.refresh_from_db()
    assert event.outcome == WebhookEvent.Outcome.APPLIED
    item.refresh_from_db()
    assert item.resolution == AttentionItem.Resolution.RETRIED and item.resolved_at
    assert len(fake.orders) == 1


def test_staff_retry_after_the_payment_was_released_sends_and_each_accepted_line_is_charged(
    fake, fast, client, charlie, clinic_a, django_capture_on_commit_callbacks
):
    clinic_a.stripe_customer_id, clinic_a.payment_method_id = "cus_sandbox_x", "pm_sandbox_visa"
    clinic_a.save()
    fake.script = [("status", 422, {"error": "Unknown SKU"})]
    order, partner_order = order_at(fake, clinic=clinic_a)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.dispatch_partner_order(partner_order.pk)
    order.refresh_from_db()
    assert order.payment_status == Order.PaymentStatus.CANCELLED  # nothing to capture: released

    fake.script = ["ok"]
    with django_capture_on_commit_callbacks(execute=True):
        partner_order_retry_dispatch(partner_order=partner_order, actor=charlie)
    partner_order.refresh_from_db()
    assert partner_order.status == PO.SENT
    with django_capture_on_commit_callbacks(execute=True):
        for line in partner_order.lines.all():
            assert post_event(client, partner_order.partner, event_body(line, "accepted")).json()["status"] == "applied"

    charges = PaymentEvent.objects.filter(order=order, kind=PaymentEvent.Kind.CHARGED)
    assert sorted(charges.values_list("line_id", flat=True)) == sorted(partner_order.lines.values_list("pk", flat=True))
    for line in partner_order.lines.all():
        assert line.amount_charged == line.price and line.charge_reference


def test_staff_may_retry_a_stale_order_but_not_one_a_worker_is_sending(fake, fast, charlie, django_capture_on_commit_callbacks):
    order, partner_order = order_at(fake)
    PartnerOrder.objects.filter(pk=partner_order.pk).update(
        status=PO.SENDING, attempts=1, next_attempt_at=timezone.now() + timedelta(seconds=30))
    with pytest.raises(DispatchError, match="is being sent right now"):
        partner_order_retry_dispatch(partner_order=partner_order, actor=charlie)

    PartnerOrder.objects.filter(pk=partner_order.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        partner_order_retry_dispatch(partner_order=partner_order, actor=charlie)
    partner_order.refresh_from_db()
    assert partner_order.status == PO.SENT
    with pytest.raises(DispatchError, match="is sent, not failed or stuck"):
        partner_order_retry_dispatch(partner_order=partner_order, actor=charlie)
