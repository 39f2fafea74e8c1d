"""Every dollar in the browser (issue 11): a coordinator places an order, the sandbox pharmacy
accepts it and the payment is captured, the coordinator cancels one line before it ships (it is
refunded), and then sees what was captured and refunded on the order page and on Billing, and
downloads the receipt as CSV."""

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import override_settings

from carts.services import LineInput, cart_add_lines
from catalog.models import Partner, Product
from clinics.models import Clinic, Organization, Patient, Prescriber
from conftest import browser_login
from fizy.demo_data import PASSWORD
from fulfillment.ledger import money_violations
from fulfillment.models import Order, OrderLine, SandboxPartnerOrder
from fulfillment.sandbox import sandbox_play_step
from prescriptions.tests.factories import prescriptions_on_file
from routing.engine import route_preview

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = OrderLine.Status


@pytest.fixture
def austin(live_server):
    call_command("seed_demo", stdout=io.StringIO())
    for partner in Partner.objects.all():
        partner.api_base_url = f"{live_server.url}/sandbox/partners/{partner.slug}"
        partner.save(update_fields=["api_base_url"])
    Organization.objects.filter(clinics__name="Bloom Wellness — Austin").update(
        platform_fee_percent=Decimal("2.50"), platform_fee_fixed=Decimal("4.00"))
    with override_settings(SANDBOX_PARTNERS=True, SANDBOX_WEBHOOK_BASE_URL=live_server.url):
        yield Clinic.objects.get(name="Bloom Wellness — Austin")


def _cart_of_three(clinic):
    """Three complete TX patients, each with a product a pharmacy stocks, prescribed by Dr Patel."""
    patel = Prescriber.objects.get(last_name="Patel")
    products = [p for p in Product.objects.filter(active=True).order_by("sku") if not p.is_controlled
                and route_preview(product=p, state="TX", quantity=1, clinic=clinic).routed][:3]
    patients = [p for p in Patient.objects.filter(organization=clinic.organization, state="TX").order_by("chart_id")
                if p.date_of_birth and p.address_is_complete][:3]
    items = [LineInput(patient=p, product=product, prescriber=patel, quantity=1, days_supply=30,
                       sig="Use as prescribed by the clinic, once daily for thirty days",
                       clinical_difference="Patient cannot use the commercial form (allergy to an excipient).")
             for p, product in zip(patients, products, strict=True)]
    prescriptions_on_file(clinic, items)
    cart_add_lines(clinic=clinic, actor=None, items=items)


def test_the_coordinator_sees_captured_and_refunded_amounts_and_downloads_the_receipt(page, austin):
    _cart_of_three(austin)
    browser_login(page, "austin", PASSWORD)
    page.goto("/cart/checkout")
    fee = page.inner_text("#checkout-fee")
    assert fee.startswith("$") and Decimal(fee[1:].replace(",", "")) > Decimal("4.00")
    page.click("#place-order")
    page.wait_for_url("**/orders/*")
    order = Order.objects.get(clinic=austin, cart_id__isnull=False)
    assert order.fee == Decimal(fee[1:].replace(",", ""))

    # The pharmacies answer (accepted, compounding): every line has its answer, the capture runs.
    for sandbox_order in SandboxPartnerOrder.objects.all():
        for step in (0, 1):
            sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=step)
    order.refresh_from_db()
    assert order.amount_captured > 0
    charged = [line for line in order.lines.order_by("pk") if line.amount_charged]
    assert charged, "at least one line should have been accepted and captured"
    victim = charged[0]

    # The coordinator cancels one line before it ships.
    page.reload()
    row = page.locator(f"#line-{victim.pk}")
    row.locator("summary:has-text('Cancel')").click()
    row.locator("input[name=reason]").fill("Patient stopped the therapy")
    row.locator("button:has-text('Cancel this line')").click()
    page.wait_for_selector(".msg-success:has-text('is cancelled')")
    for sandbox_order in SandboxPartnerOrder.objects.all():
        for step in (2, 3):
            sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=step)

    order.refresh_from_db()
    victim.refresh_from_db()
    assert victim.status == S.CANCELLED and victim.amount_refunded == victim.price
    page.reload()
    assert page.inner_text("#money-captured") == f"${order.amount_captured:,}"
    assert page.inner_text("#money-refunded") == f"${victim.price:,}"
    assert page.inner_text("#money-fee") == f"${order.fee:,}"
    assert page.inner_text("#money-net") == f"${order.net_charged:,}"

    # Billing lists the capture and the refund.
    page.click("nav >> text=Billing")
    page.wait_for_selector("#payments")
    kinds = page.locator("#payments tbody tr").evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert {"authorized", "partially_captured", "refunded"} <= set(kinds) or {"authorized", "captured", "refunded"} <= set(kinds)
    assert order.number in page.inner_text("#payments")

    # The receipt, as CSV.
    page.goto(f"/orders/{order.pk}")
    with page.expect_download() as download:
        page.click("#receipt-csv")
    rows = list(csv.reader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert rows[0][:3] == ["Patient", "Chart ID", "Product"] and len(rows) == 1 + order.lines.count()
    refunded = [r for r in rows[1:] if r[9] != "0.00"]
    assert [(r[8], r[9], r[10]) for r in refunded] == [(f"{victim.price}", f"{victim.price}", "Cancelled")]
    assert page.console_errors == []
    assert not money_violations()
