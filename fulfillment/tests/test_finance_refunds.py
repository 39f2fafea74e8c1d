"""Finance refunds a shipped line from the admin (issue 11), a large one only when a second finance
staff member approves (issue 14); declined follow-up charges have their own filter."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from clinics.models import Approval, AuditEntry
from clinics.roles import DISPATCH, FINANCE, SUPPORT
from conftest import verified_login
from fulfillment.models import OrderLine, PaymentEvent
from fulfillment.settlement import order_settle_payment
from fulfillment.tests.test_payments import gateway, make_order  # noqa: F401  (the gateway fixture)

pytestmark = pytest.mark.django_db
S = OrderLine.Status
LINES = reverse("admin:fulfillment_orderline_changelist")
APPROVALS = reverse("admin:clinics_approval_changelist")


@pytest.fixture
def shipped(clinic_a, gateway):  # noqa: F811
    """A captured order: a $120 line delivered, a $600 line shipped, a $80 line accepted."""
    order = make_order(clinic_a, [(S.DELIVERED, "120.00"), (S.SHIPPED, "600.00"), (S.ACCEPTED, "80.00")])
    order_settle_payment(order_id=order.pk)
    assert gateway.kinds() == ["capture"]
    return list(order.lines.order_by("id"))


def refund(client, line, reason="Vial arrived broken; the clinic destroyed it."):
    return client.post(LINES, {"action": "refund_line", "_selected_action": [line.pk], "apply": "1", "reason": reason},
                       follow=True)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def money_is_clean(capsys):
    call_command("check_money")
    return "Money is right" in capsys.readouterr().out


def test_finance_refunds_a_delivered_line_once_with_a_reason(client, make_staff, shipped, gateway, capsys):  # noqa: F811
    delivered = shipped[0]
    fran = make_staff("fran", FINANCE)
    verified_login(client, fran)
    form = client.post(LINES, {"action": "refund_line", "_selected_action": [delivered.pk]})
    assert form.status_code == 200 and "Refund after shipment" in form.content.decode()

    assert "This field is required" in refund(client, delivered, reason="").content.decode()
    assert gateway.kinds() == ["capture"]

    response = refund(client, delivered)
    assert f"Line {delivered.pk}: refunded $120.00." in messages_of(response)
    delivered.refresh_from_db()
    assert (delivered.status, delivered.amount_refunded) == (S.DELIVERED, Decimal("120.00"))
    event = PaymentEvent.objects.get(line=delivered, kind=PaymentEvent.Kind.REFUNDED)
    assert event.amount == Decimal("120.00") and event.payload["reason"].startswith("Vial arrived broken")
    assert AuditEntry.objects.filter(action="payment.refunded", actor=fran, patient=delivered.patient).count() == 1

    again = refund(client, delivered)
    assert any("nothing left to refund" in m for m in messages_of(again))
    assert gateway.kinds() == ["capture", "refund"]
    assert money_is_clean(capsys)


def test_a_line_that_has_not_shipped_is_cancelled_not_refunded(client, make_staff, shipped, gateway):  # noqa: F811
    accepted = shipped[2]
    verified_login(client, make_staff("fran", FINANCE))
    response = refund(client, accepted)
    assert any("not shipped" in m for m in messages_of(response))
    assert gateway.kinds() == ["capture"]


def test_a_large_refund_waits_for_a_second_finance_staff_member(client, make_staff, shipped, gateway, capsys):  # noqa: F811
    large = shipped[1]
    fran, felix = make_staff("fran", FINANCE), make_staff("felix", FINANCE)
    verified_login(client, fran)
    response = refund(client, large)
    assert any("waits for a second finance staff member" in m for m in messages_of(response))
    approval = Approval.objects.get(kind=Approval.Kind.LINE_REFUND)
    assert (approval.status, approval.requested_by, approval.payload["amount"]) == ("pending", fran, "600.00")
    large.refresh_from_db()
    assert large.amount_refunded == 0 and gateway.kinds() == ["capture"]
    assert any("already waits" in m for m in messages_of(refund(client, large)))

    # The requester cannot approve it; nor can staff of another role.
    decide = {"action": "approve", "_selected_action": [approval.pk]}
    assert any("another staff member must approve" in m for m in messages_of(client.post(APPROVALS, decide, follow=True)))
    for role in [DISPATCH, SUPPORT]:
        verified_login(client, make_staff(role.group.lower(), role))
        client.post(APPROVALS, decide)
    approval.refresh_from_db()
    assert approval.status == "pending" and gateway.kinds() == ["capture"]

    verified_login(client, felix)
    response = client.post(APPROVALS, decide, follow=True)
    assert any("Refunded $600.00" in m for m in messages_of(response))
    approval.refresh_from_db()
    large.refresh_from_db()
    assert (approval.status, approval.decided_by) == ("approved", felix)
    assert large.amount_refunded == Decimal("600.00") and gateway.kinds() == ["capture", "refund"]
    assert AuditEntry.objects.filter(action="approval.requested", actor=fran).count() == 1
    assert AuditEntry.objects.filter(action="approval.approved", actor=felix).count() == 1
    assert AuditEntry.objects.filter(action="payment.refunded", actor=felix, patient=large.patient).count() == 1
    client.post(APPROVALS, decide)  # approving again does nothing
    assert gateway.kinds() == ["capture", "refund"]
    assert money_is_clean(capsys)


def test_a_declined_refund_refunds_nothing(client, make_staff, shipped, gateway):  # noqa: F811
    large = shipped[1]
    verified_login(client, make_staff("fran", FINANCE))
    refund(client, large)
    approval = Approval.objects.get()
    verified_login(client, make_staff("felix", FINANCE))
    client.post(APPROVALS, {"action": "decline", "_selected_action": [approval.pk]})
    approval.refresh_from_db()
    assert approval.status == "declined" and gateway.kinds() == ["capture"]
    assert AuditEntry.objects.filter(action="approval.declined").count() == 1


def test_only_finance_refunds(client, make_staff, shipped, gateway):  # noqa: F811
    for role in [SUPPORT, DISPATCH]:
        verified_login(client, make_staff(role.group.lower(), role))
        refund(client, shipped[0])
        assert "Refund this line" not in client.get(LINES).content.decode()
    assert gateway.kinds() == ["capture"]
    assert not OrderLine.objects.filter(amount_refunded__gt=0).exists()


def test_lines_whose_follow_up_charge_was_declined_have_a_filter(client, make_staff, shipped):
    declined = shipped[2]
    OrderLine.objects.filter(pk=declined.pk).update(charge_failed_at=timezone.now())
    verified_login(client, make_staff("sam", SUPPORT))
    page = client.get(LINES, {"charge": "failed"}).content.decode()
    link = "/admin/fulfillment/orderline/{}/change/"
    assert link.format(declined.pk) in page and link.format(shipped[0].pk) not in page
    assert link.format(shipped[0].pk) in client.get(LINES).content.decode()
