"""Scenario 3: one partner pharmacy's API is down when the order is placed, the other is up.
The up partner's lines go out at once; the down partner's order is retried with growing
backoff (the retries are driven here as the scheduler would run them) and, once the partner is
back, every line is sent exactly once under one Idempotency-Key. Down past the retry limit,
its lines end failed and show on the coordinator's "needs attention" page. No line is lost."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from fulfillment import tasks
from fulfillment.models import Order, OrderLine, PartnerOrder
from fulfillment.dispatch import DispatchOutcome
from carts.tests.checkout_form import place_order_data

from .conftest import cart_state

pytestmark = pytest.mark.django_db
S = OrderLine.Status
PO = PartnerOrder.Status


def place_order(client, world, capture):
    """The coordinator presses "Place order"; the dispatch tasks queued after commit run inline.
    Returns the order and the cart's lines as the coordinator reviewed them."""
    _, version, reviewed = cart_state(world["cart"])
    form = place_order_data(client)
    assert form["version"] == str(version)
    with capture(execute=True):
        response = client.post(reverse("carts:checkout"), form)
    assert response.status_code == 302
    return Order.objects.get(), reviewed


def retry_as_the_scheduler_would(partner_order, capture):
    with capture(execute=True):
        return tasks.dispatch_partner_order(partner_order.pk)


def every_cart_line_is_on_the_order(reviewed, order):
    assert sorted(order.lines.values_list("patient_id", "product_id", "quantity", "sig", "prescriber_id")) == reviewed


@pytest.mark.parametrize("outage", ["connection", "503"])
def test_a_partner_down_then_back_gets_every_line_exactly_once(
    client_alice, world_a, partners, settings, django_capture_on_commit_callbacks, outage
):
    settings.PARTNER_DISPATCH_MAX_ATTEMPTS = 5
    cedar, harbor = world_a["cedar"], world_a["harbor"]
    partners.down[cedar.slug] = outage

    order, reviewed = place_order(client_alice, world_a, django_capture_on_commit_callbacks)

    up = order.partner_orders.get(partner=harbor)
    down = order.partner_orders.get(partner=cedar)
    assert up.status == PO.SENT and set(up.lines.values_list("status", flat=True)) == {S.SENT}
    assert (down.status, down.attempts) == (PO.QUEUED, 1)
    assert set(down.lines.values_list("status", flat=True)) == {S.PENDING}

    # Two more failed attempts, each scheduled later than the one before.
    delays = []
    for attempt in (1, 2, 3):
        retry = Schedule.objects.filter(func="fulfillment.tasks.dispatch_partner_order", args=f"({down.pk},)") \
            .order_by("-id").first()
        delays.append(retry.next_run - timezone.now())
        if attempt < 3:
            assert retry_as_the_scheduler_would(down, django_capture_on_commit_callbacks) == DispatchOutcome.RETRY_SCHEDULED
    assert delays[0] < delays[1] < delays[2] and delays[2] > timedelta(seconds=100)
    down.refresh_from_db()
    assert (down.status, down.attempts) == (PO.QUEUED, 3) and down.last_error.startswith("Attempt 3:")

    partners.down.pop(cedar.slug)  # the partner is back
    assert retry_as_the_scheduler_would(down, django_capture_on_commit_callbacks) == DispatchOutcome.SENT
    assert retry_as_the_scheduler_would(down, django_capture_on_commit_callbacks) == DispatchOutcome.SKIPPED  # a late duplicate run

    down.refresh_from_db()
    assert (down.status, down.attempts, down.partner_reference) == (PO.SENT, 4, f"{cedar.slug.upper()}-REF")
    cedar_calls = partners.for_partner(cedar)
    assert len(cedar_calls) == 4 and len(partners.for_partner(cedar, ok=True)) == 1
    assert {c["key"] for c in cedar_calls} == {str(down.idempotency_key)}
    assert len(partners.for_partner(harbor)) == 1  # the up partner was never called again
    # Every line was delivered to its partner exactly once, and every cart line is on the order.
    delivered = [line_id for c in partners.calls if c["ok"] for line_id in c["line_ids"]]
    assert sorted(delivered) == sorted(order.lines.values_list("pk", flat=True))
    assert set(order.lines.values_list("status", flat=True)) == {S.SENT}
    every_cart_line_is_on_the_order(reviewed, order)
    page = client_alice.get(reverse("fulfillment:order", kwargs={"pk": order.pk})).content.decode()
    for line in order.lines.all():
        assert f'id="line-{line.pk}"' in page


def test_a_partner_down_past_the_retry_limit_fails_its_lines_onto_the_attention_page(
    client_alice, world_a, partners, settings, django_capture_on_commit_callbacks
):
    settings.PARTNER_DISPATCH_MAX_ATTEMPTS = 3
    cedar, harbor = world_a["cedar"], world_a["harbor"]
    partners.down[cedar.slug] = "503"

    order, reviewed = place_order(client_alice, world_a, django_capture_on_commit_callbacks)
    down = order.partner_orders.get(partner=cedar)
    outcomes = [retry_as_the_scheduler_would(down, django_capture_on_commit_callbacks) for _ in range(3)]
    assert outcomes == [DispatchOutcome.RETRY_SCHEDULED, DispatchOutcome.FAILED, DispatchOutcome.SKIPPED]

    down.refresh_from_db()
    assert (down.status, down.attempts) == (PO.FAILED, 3)
    assert len(partners.for_partner(cedar)) == 3 and {c["key"] for c in partners.for_partner(cedar)} == {
        str(down.idempotency_key)}
    failed = list(down.lines.select_related("patient"))
    assert failed and {line.status for line in failed} == {S.FAILED}
    assert set(order.partner_orders.get(partner=harbor).lines.values_list("status", flat=True)) == {S.SENT}
    every_cart_line_is_on_the_order(reviewed, order)  # failed, not lost

    page = client_alice.get(reverse("fulfillment:attention")).content.decode()
    for line in failed:
        assert f'data-line="{line.pk}"' in page and line.patient.full_name in page
    assert "It could not be sent to Cedar." in page
    for line in order.partner_orders.get(partner=harbor).lines.all():
        assert f'data-line="{line.pk}"' not in page
