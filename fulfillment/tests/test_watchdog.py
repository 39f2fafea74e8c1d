"""The watchdog (issue 12, item 5): a line waiting for its partner's next event longer than expected
is overdue — on Needs attention and in the admin — and partners that offer a status call are
asked, their answer applied as a "poll" LineEvent, once even when a webhook says the same.

The partner is a real HTTP server on 127.0.0.1 (``fake_partner.FakePartner``) or the sandbox
partner, reached through the real ``requests`` code path."""

import datetime
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.tests.factories import PartnerFactory
from fizy.lib.dates import add_business_days, business_days_before
from fulfillment import tasks
from fulfillment.models import ExpectedTime, LineEvent, OrderLine, PartnerOrder, SandboxPartnerOrder
from fulfillment.polling import partner_order_poll, partner_orders_poll_due
from fulfillment.tests.conftest import event_body, post_event
from fulfillment.tests.factories import order_with_lines
from fulfillment.watchdog import overdue_lines

from .fake_partner import FakePartner

pytestmark = pytest.mark.django_db
S = OrderLine.Status
ACTION = "_selected_action"


@pytest.fixture
def fake():
    with FakePartner() as server:
        yield server


def sent_order(*, partner, clinic=None, lines=2, reference="R-1"):
    order = order_with_lines(partners=[partner], lines_per_partner=lines, **({"clinic": clinic} if clinic else {}))
    PartnerOrder.objects.filter(order=order).update(status=PartnerOrder.Status.SENT, partner_reference=reference,
                                                   sent_at=timezone.now())
    OrderLine.objects.filter(order=order).update(status=S.SENT, status_changed_at=timezone.now())
    return order


def age(line, status, **ago):
    OrderLine.objects.filter(pk=line.pk).update(status=status, status_changed_at=timezone.now() - timedelta(**ago))


def test_business_days_skip_the_weekend():
    friday_10 = datetime.datetime(2026, 11, 27, 10)
    assert add_business_days(friday_10, 1) == datetime.datetime(2026, 11, 30, 10)  # Monday
    saturday = datetime.datetime(2026, 11, 28, 12)
    assert add_business_days(saturday, 1) == datetime.datetime(2026, 12, 1, 0)
    # Seen on Saturday, a line sent Friday morning is not late; one sent Thursday is.
    assert business_days_before(saturday, 1) == datetime.datetime(2026, 11, 27, 0)
    assert business_days_before(datetime.datetime(2026, 11, 30, 9), 1) == datetime.datetime(2026, 11, 27, 9)


def test_a_line_with_no_event_past_its_expected_time_is_overdue_on_needs_attention(client_alice, clinic_a):
    order = sent_order(partner=PartnerFactory(name="Harbor"), clinic=clinic_a, lines=3)
    quiet, fresh, shipped = order.lines.order_by("pk")
    age(quiet, S.ACCEPTED, days=6)  # accepted → shipped expected within 5 days
    age(fresh, S.ACCEPTED, days=2)
    age(shipped, S.SHIPPED, days=3)

    page = client_alice.get("/orders/attention").content.decode()
    assert f'id="overdue-line-{quiet.pk}"' in page
    assert "Overdue: shipped expected within 5 days" in page
    assert f'id="overdue-line-{fresh.pk}"' not in page and f'id="overdue-line-{shipped.pk}"' not in page

    # Another clinic's overdue line is not shown.
    other = sent_order(partner=PartnerFactory())
    age(other.lines.first(), S.SENT, days=10)
    assert f'id="overdue-line-{other.lines.first().pk}"' not in client_alice.get("/orders/attention").content.decode()


def test_expected_times_are_per_partner_and_staff_editable(client_charlie):
    slow, usual = PartnerFactory(name="Slow Compounding"), PartnerFactory(name="Usual")
    slow_line = sent_order(partner=slow, lines=1).lines.get()
    usual_line = sent_order(partner=usual, lines=1, reference="R-2").lines.get()
    age(slow_line, S.ACCEPTED, days=8)
    age(usual_line, S.ACCEPTED, days=8)
    assert {line.pk for line in overdue_lines()} == {slow_line.pk, usual_line.pk}

    response = client_charlie.post("/admin/fulfillment/expectedtime/add/",
                                   {"partner": slow.pk, "status": "accepted", "days": 10, "business_days": ""})
    assert response.status_code == 302
    assert [line.pk for line in overdue_lines()] == [usual_line.pk]

    # Every partner's default, changed by staff.
    ExpectedTime.objects.create(status="accepted", days=9)
    assert overdue_lines() == []

    listed = client_charlie.get("/admin/fulfillment/orderline/", {"overdue": "yes"}).context["cl"].result_list
    assert list(listed) == []
    ExpectedTime.objects.filter(partner=None).delete()
    listed = client_charlie.get("/admin/fulfillment/orderline/", {"overdue": "yes"}).context["cl"].result_list
    assert [line.pk for line in listed] == [usual_line.pk]


def test_overdue_lines_cost_the_same_queries_for_one_line_or_many(django_assert_num_queries):
    partners = [PartnerFactory() for _ in range(3)]
    ExpectedTime.objects.create(partner=partners[0], status="sent", days=2)
    order = sent_order(partner=partners[0], lines=1)
    age(order.lines.get(), S.SENT, days=5)
    with django_assert_num_queries(2):
        assert len(overdue_lines()) == 1
    for index, partner in enumerate(partners):
        for line in sent_order(partner=partner, lines=4, reference=f"R-{index}").lines.all():
            age(line, S.SENT, days=5)
    with django_assert_num_queries(2):
        assert len(overdue_lines()) == 13


def test_an_overdue_line_is_polled_and_the_answer_applied_as_a_poll_event(fake, client, django_capture_on_commit_callbacks):
    partner = PartnerFactory(name="Harbor", api_base_url=fake.base_url, api_key=fake.api_key, status_api=True)
    order = sent_order(partner=partner, lines=2)
    fake.keep("k", {"lines": [{"line_id": line.pk} for line in order.lines.all()]})
    reference = fake.orders["k"]["reference"]
    order.partner_orders.update(partner_reference=reference)
    late, on_time = order.lines.order_by("pk")
    age(late, S.SENT, days=5)
    fake.line_status = {late.pk: {"status": "shipped", "tracking_number": "1Z1", "carrier": "UPS"},
                        on_time.pk: {"status": "accepted"}}

    with django_capture_on_commit_callbacks(execute=True):
        queued = tasks.poll_partners()
    assert queued == [order.partner_orders.get().pk]
    assert [call["reference"] for call in fake.of_kind("status")] == [reference]
    late.refresh_from_db()
    on_time.refresh_from_db()
    assert (late.status, late.tracking_number, late.carrier) == (S.SHIPPED, "1Z1", "UPS")
    assert on_time.status == S.ACCEPTED  # the same answer tells about every line of the order
    event = LineEvent.objects.get(line=late, to_status=S.SHIPPED)
    assert (event.source, event.applied, event.actor_label) == ("poll", True, "Harbor")

    # Asked again within the partner's poll period: nobody is polled twice.
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.poll_partners() == []
    # The partner's webhook for the same change comes later: applied once.
    response = post_event(client, partner, event_body(late, "shipped", tracking_number="1Z1", carrier="UPS"))
    assert response.status_code == 200 and response.json()["status"] == "duplicate"
    assert LineEvent.objects.filter(line=late, to_status=S.SHIPPED).count() == 1


def test_a_webhook_first_then_the_poll_applies_the_change_once(fake, client, django_capture_on_commit_callbacks):
    partner = PartnerFactory(api_base_url=fake.base_url, api_key=fake.api_key, status_api=True)
    order = sent_order(partner=partner, lines=1)
    fake.keep("k", {"lines": [{"line_id": line.pk} for line in order.lines.all()]})
    order.partner_orders.update(partner_reference=fake.orders["k"]["reference"])
    line = order.lines.get()
    assert post_event(client, partner, event_body(line, "accepted")).json()["status"] == "applied"
    fake.line_status = {line.pk: {"status": "accepted"}}

    with django_capture_on_commit_callbacks(execute=True):
        result = partner_order_poll(partner_order_id=order.partner_orders.get().pk)
    assert (result.applied, result.unchanged, result.error) == ([], 1, "")
    assert LineEvent.objects.filter(line=line, to_status=S.ACCEPTED).count() == 1

    # A status call lagging behind a webhook is not recorded as a refused move on each poll.
    post_event(client, partner, event_body(line, "shipped"))
    with django_capture_on_commit_callbacks(execute=True):
        result = partner_order_poll(partner_order_id=order.partner_orders.get().pk)
    assert result.skipped == 1 and not LineEvent.objects.filter(line=line, applied=False).exists()


def test_a_partner_without_webhooks_has_every_open_line_polled(fake, django_capture_on_commit_callbacks):
    partner = PartnerFactory(api_base_url=fake.base_url, api_key=fake.api_key, status_api=True, sends_webhooks=False,
                             poll_minutes=10)
    order = sent_order(partner=partner, lines=1)
    fake.keep("k", {"lines": [{"line_id": line.pk} for line in order.lines.all()]})
    order.partner_orders.update(partner_reference=fake.orders["k"]["reference"])
    line = order.lines.get()
    fake.line_status = {line.pk: {"status": "on_hold", "reason": "Call the prescriber", "reason_code": "clinical_question"}}
    # Not overdue, polled anyway; a partner with webhooks and no status call is left alone.
    sent_order(partner=PartnerFactory(status_api=False), lines=1, reference="R-9")

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.poll_partners() == [order.partner_orders.get().pk]
    line.refresh_from_db()
    assert (line.status, line.reason_code) == (S.ON_HOLD, "clinical_question")

    # Ten minutes later it is asked again.
    later = timezone.now() + timedelta(minutes=11)
    with django_capture_on_commit_callbacks(execute=True):
        assert partner_orders_poll_due(now=later) == [order.partner_orders.get().pk]
    assert len(fake.of_kind("status")) == 2


def test_a_malformed_status_answer_changes_nothing(fake, django_capture_on_commit_callbacks):
    partner = PartnerFactory(api_base_url=fake.base_url, api_key=fake.api_key, status_api=True)
    order = sent_order(partner=partner, lines=1)
    fake.keep("k", {"lines": [{"line_id": line.pk} for line in order.lines.all()]})
    order.partner_orders.update(partner_reference=fake.orders["k"]["reference"])
    line = order.lines.get()
    fake.line_status = {line.pk: {"status": "shipped"}}  # no tracking number
    result = partner_order_poll(partner_order_id=order.partner_orders.get().pk)
    assert "tracking_number and carrier are required" in result.error
    line.refresh_from_db()
    assert line.status == S.SENT


def test_the_sandbox_partner_answers_the_status_call_and_can_stay_silent(settings, route_to_django,
                                                                        django_capture_on_commit_callbacks):
    from fulfillment.dispatch import order_queue_dispatch
    from fulfillment.sandbox import sandbox_play_step

    settings.SANDBOX_PARTNERS = True
    settings.SANDBOX_WEBHOOK_BASE_URL = route_to_django
    partner = PartnerFactory(slug="quiet", api_base_url=f"{route_to_django}/sandbox/partners/quiet", api_key="sbx-quiet",
                             status_api=True, sends_webhooks=False)
    order = order_with_lines(partners=[partner], lines_per_partner=3)
    with django_capture_on_commit_callbacks(execute=True):
        order_queue_dispatch(order=order)
    sandbox_order = SandboxPartnerOrder.objects.get()
    sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=0)
    assert set(order.lines.values_list("status", flat=True)) == {S.SENT}  # no webhooks: nothing heard

    with django_capture_on_commit_callbacks(execute=True):
        result = partner_order_poll(partner_order_id=order.partner_orders.get().pk)
    assert result.error == ""
    for line in order.lines.all():
        expected = S.REJECTED if line.pk % 7 == 0 else S.ON_HOLD if line.pk % 11 == 0 else S.ACCEPTED
        assert line.status == expected
        assert line.events.filter(source="poll", to_status=expected, applied=True).count() == 1

    client_headers = {"Authorization": "Bearer sbx-quiet"}
    from django.test import Client

    answer = Client().get(f"/sandbox/partners/quiet/orders/{sandbox_order.reference}", headers=client_headers)
    assert answer.status_code == 200 and answer.json()["reference"] == sandbox_order.reference
    assert Client().get("/sandbox/partners/quiet/orders/SBX-NOPE", headers=client_headers).status_code == 404
    assert json.loads(Client().get(f"/sandbox/partners/quiet/orders/{sandbox_order.reference}").content)["error"]
