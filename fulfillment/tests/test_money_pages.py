"""The clinic sees every dollar: the order page, the Orders list, the receipt (page and CSV) and
the Billing page's payment history, with the fee as its own line and per-line charges."""

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from clinics.models import Membership
from conftest import verified_login
from fulfillment.models import Order, OrderLine, PaymentEvent
from fulfillment.settlement import order_line_refund, order_settle_payment
from fulfillment.status import line_apply_status
from fulfillment.tests.test_payments import make_order

pytestmark = pytest.mark.django_db
S = OrderLine.Status


@pytest.fixture
def settled(clinic_a, django_capture_on_commit_callbacks):
    """Three lines with a fee: two accepted and captured, then one of them cancelled and refunded;
    one rejected. A patient named like a formula, to prove the CSV escapes it."""
    order = make_order(clinic_a, [(S.SENT, "1200.00"), (S.SENT, "300.00"), (S.SENT, "50.00")], fee=["12.00", "3.00", "0.50"])
    first, second, third = order.lines.order_by("pk")
    first.patient.chart_id = "=HYPERLINK(\"http://evil\")"
    first.patient.save()
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=first, to=S.ACCEPTED, source="system")
        line_apply_status(line=second, to=S.ACCEPTED, source="system")
        line_apply_status(line=third, to=S.REJECTED, source="system", reason="Out of stock")
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=second, to=S.CANCELLED, source="staff", reason="Patient stopped the therapy")
    order.refresh_from_db()
    assert order.amount_captured == Decimal("1515.00") and order.amount_refunded == Decimal("303.00")
    return order


def test_the_order_page_shows_every_dollar(client_alice, settled):
    page = client_alice.get(reverse("fulfillment:order", args=[settled.pk])).content.decode()
    assert 'id="money-authorized">$1,565.50<' in page
    assert 'id="money-captured">$1,515.00<' in page
    assert 'id="money-refunded">$303.00<' in page
    assert 'id="money-fee">$15.50<' in page
    assert 'id="money-net">$1,212.00<' in page
    assert "−$303.00 refunded" in page  # on the cancelled line
    assert 'id="patient-subtotals"' in page


def test_the_orders_list_shows_charged_and_refunded(client_alice, settled):
    page = client_alice.get(reverse("fulfillment:orders")).content.decode()
    assert "$1,565.50" in page and "$1,212.00" in page and "$303.00" in page


def test_the_receipt_csv_has_a_row_per_line_and_escapes_formulas(client_alice, settled):
    response = client_alice.get(reverse("fulfillment:receipt", args=[settled.pk]) + "?format=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert f"fizy-receipt-{settled.number}.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["Patient", "Chart ID", "Product", "Quantity", "Pharmacy", "Unit price", "Shipping share",
                       "Fee share", "Charged", "Refunded", "Status"]
    assert len(rows) == 4
    by_charge = sorted((r[7], r[8], r[9], r[10]) for r in rows[1:])
    assert by_charge == sorted([("12.00", "1212.00", "0.00", "Accepted"), ("3.00", "303.00", "303.00", "Cancelled"),
                                ("0.50", "0.00", "0.00", "Rejected")])
    assert not any(cell.startswith("=") for row in rows for cell in row)
    assert any(cell.startswith("'=HYPERLINK") for row in rows for cell in row)


def test_the_receipt_page_is_printable(client_alice, settled):
    page = client_alice.get(reverse("fulfillment:receipt", args=[settled.pk])).content.decode()
    assert 'id="receipt-fee">$15.50<' in page and 'id="receipt-net">$1,212.00<' in page


def test_billing_lists_every_payment(client_alice, settled):
    page = client_alice.get(reverse("fulfillment:payments"), HTTP_HX_REQUEST="true").content.decode()
    assert page.count('data-kind="') == PaymentEvent.objects.filter(clinic=settled.clinic).count() == 3
    for label in ("Authorized", "Partially captured", "Refunded"):
        assert label in page
    assert settled.number in page
    billing = client_alice.get(reverse("billing")).content.decode()
    assert reverse("fulfillment:payments") in billing  # loaded into the Billing page


def test_a_declined_follow_up_shows_on_billing_and_only_a_clinic_admin_charges_again(
    client, clinic_a, alice, clinic_admin_a, django_capture_on_commit_callbacks
):
    order = make_order(clinic_a, [(S.SENT, "100.00"), (S.SENT, "40.00")])
    first, second = order.lines.order_by("pk")
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=first, to=S.ACCEPTED, source="system")
        line_apply_status(line=second, to=S.ON_HOLD, source="system", reason="Needs a call")
    Order.objects.filter(pk=order.pk).update(placed_at=order.placed_at.replace(year=order.placed_at.year - 1))
    order_settle_payment(order_id=order.pk)
    clinic_a.payment_method_id = "pm_sandbox_declined"
    clinic_a.save()
    with django_capture_on_commit_callbacks(execute=True):
        line_apply_status(line=second, to=S.ACCEPTED, source="system")
    second.refresh_from_db()
    assert second.charge_failed_at is not None and second.amount_charged == 0

    client.force_login(alice)
    page = client.get(reverse("fulfillment:payments")).content.decode()
    assert 'id="awaiting-charge"' in page and "Charge again" not in page
    client.post(reverse("fulfillment:charge-again", args=[order.pk, second.pk]))
    second.refresh_from_db()
    assert second.amount_charged == 0

    clinic_a.payment_method_id = "pm_sandbox_visa"
    clinic_a.save()
    verified_login(client, clinic_admin_a)
    assert Membership.objects.get(user=clinic_admin_a).role == Membership.Role.CLINIC_ADMIN
    response = client.post(reverse("fulfillment:charge-again", args=[order.pk, second.pk]), follow=True)
    second.refresh_from_db()
    assert second.amount_charged == Decimal("40.00") and second.charge_failed_at is None
    assert "Charged $40.00" in response.content.decode()
