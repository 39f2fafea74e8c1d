"""A coordinator cancels a line before it ships: the sandbox pharmacy confirms through its API,
the line becomes cancelled and its charge is refunded once; a shipped line cannot be."""

from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry
from fulfillment.dispatch import order_queue_dispatch
from fulfillment.ledger import money_violations
from fulfillment.models import LineEvent, OrderLine, PaymentEvent, SandboxPartnerOrder
from fulfillment.sandbox import sandbox_play_step
from fulfillment.settlement import order_record_authorization
from fulfillment.tests.factories import order_with_lines
from fizy.lib.payments import SandboxGateway

pytestmark = pytest.mark.django_db
S = OrderLine.Status


@pytest.fixture
def sandbox(settings, route_to_django):
    settings.SANDBOX_PARTNERS = True
    settings.SANDBOX_WEBHOOK_BASE_URL = route_to_django
    return route_to_django


@pytest.fixture
def sent_order(sandbox, clinic_a, alice, django_capture_on_commit_callbacks):
    partner = PartnerFactory(slug="cedar", api_base_url=f"{sandbox}/sandbox/partners/cedar", api_key="sandbox-key")
    order = order_with_lines(clinic=clinic_a, partners=[partner], lines_per_partner=3, placed_by=alice)
    order.payment_status = "none"
    authorization = SandboxGateway().authorize(amount=order.total, currency="usd", customer_id="c",
                                               payment_method_id="pm_sandbox_visa", idempotency_key=f"t-{order.pk}")
    order_record_authorization(order=order, authorization=authorization, gateway_name="sandbox")
    with django_capture_on_commit_callbacks(execute=True):
        order_queue_dispatch(order=order)
    lines = [line for line in order.lines.order_by("pk") if line.pk % 7 and line.pk % 11]  # plain accepted lines
    return order, lines, SandboxPartnerOrder.objects.get()


def test_cancelling_a_captured_line_before_it_ships_refunds_it_once(
    client_alice, sent_order, django_capture_on_commit_callbacks
):
    order, lines, sandbox_order = sent_order
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=0)  # accepted (or rejected / on hold)
        sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=1)  # compounding: every line answered
    order.refresh_from_db()
    assert order.amount_captured > 0
    line = lines[0]

    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post(reverse("fulfillment:line-cancel", args=[order.pk, line.pk]),
                                     {"reason": "Patient stopped the therapy"}, follow=True)

    line.refresh_from_db()
    assert line.status == S.CANCELLED
    assert "is cancelled; if it was charged, the charge is refunded" in response.content.decode()
    event = line.events.filter(applied=True).order_by("-id").first()
    assert event.source == LineEvent.Source.CLINIC and "Patient stopped the therapy" in event.reason
    assert list(PaymentEvent.objects.filter(kind="refunded").values_list("line_id", "amount")) == [
        (line.pk, line.landed_cost)]
    assert AuditEntry.objects.filter(action="order_line.status_changed", object_id=str(line.pk)).exists()
    # The pharmacy will not ship it: its later steps skip the line.
    with django_capture_on_commit_callbacks(execute=True):
        for step in (2, 3):
            sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=step)
    line.refresh_from_db()
    assert line.status == S.CANCELLED
    # Asking again changes nothing and refunds nothing more.
    client_alice.post(reverse("fulfillment:line-cancel", args=[order.pk, line.pk]))
    assert PaymentEvent.objects.filter(kind="refunded").count() == 1
    assert not money_violations()


def test_a_shipped_line_cannot_be_cancelled_by_the_clinic(client_alice, sent_order, django_capture_on_commit_callbacks):
    order, lines, sandbox_order = sent_order
    with django_capture_on_commit_callbacks(execute=True):
        for step in range(3):
            sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=step)
    line = lines[0]
    line.refresh_from_db()
    assert line.status == S.SHIPPED

    page = client_alice.post(reverse("fulfillment:line-cancel", args=[order.pk, line.pk]), follow=True).content.decode()

    line.refresh_from_db()
    assert line.status == S.SHIPPED and "can no longer be cancelled" in page
    assert not PaymentEvent.objects.filter(kind="refunded").exists()


def test_the_pharmacy_refuses_once_it_has_shipped(sent_order, django_capture_on_commit_callbacks, alice):
    """Our records lag behind the pharmacy's: it answers 409 and nothing changes."""
    from fulfillment.cancellation import CancellationError, line_request_cancellation

    order, lines, sandbox_order = sent_order
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=0)
    SandboxPartnerOrder.objects.filter(pk=sandbox_order.pk).update(steps_played=3)  # shipped, webhook not in yet
    line = lines[0]
    line.refresh_from_db()
    with pytest.raises(CancellationError, match="already shipped"):
        line_request_cancellation(line=line, actor=alice, reason="")
    line.refresh_from_db()
    assert line.status == S.ACCEPTED


def test_a_line_not_yet_sent_is_cancelled_here(client_alice, clinic_a, alice):
    order = order_with_lines(clinic=clinic_a, lines_per_partner=2, placed_by=alice)
    line = order.lines.first()
    assert line.status == S.PENDING
    client_alice.post(reverse("fulfillment:line-cancel", args=[order.pk, line.pk]), {"reason": "Duplicate"})
    line.refresh_from_db()
    assert line.status == S.CANCELLED and line.amount_charged == Decimal("0.00")


def test_the_order_page_offers_cancel_only_before_shipment(client_alice, clinic_a, alice):
    order = order_with_lines(clinic=clinic_a, lines_per_partner=2, placed_by=alice)
    first, second = order.lines.order_by("pk")
    OrderLine.objects.filter(pk=second.pk).update(status=S.SHIPPED)
    page = client_alice.get(reverse("fulfillment:order", args=[order.pk])).content.decode()
    assert reverse("fulfillment:line-cancel", args=[order.pk, first.pk]) in page
    assert reverse("fulfillment:line-cancel", args=[order.pk, second.pk]) not in page
