"""Refill day, end to end, in Debian's Chromium: a coordinator adds every due patient in one
action, imports the clinic's CSV (the sample file), fixes the lines preflight flags from the
summary, places one order, and watches every line reach its final status through the sandbox
partner pharmacy.

The coordinator's actions are counted, logging in excluded: a click, a field typed into, a key
pressed; picking a file is two (open the chooser, choose the file); an element out of view costs
a scroll first. The design asks for no more than 12, and the count must not grow with the number
of patients due: the test runs with 20 and with 40."""

import datetime
import io

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from catalog.models import Partner
from clinics.models import Clinic, Patient
from conftest import browser_login
from fizy.demo_data import PASSWORD
from fulfillment.models import Order, OrderLine, PartnerOrder, SandboxPartnerOrder
from fulfillment.sandbox import sandbox_play_all
from fulfillment.status import CHARGEABLE
from prescriptions.models import Prescription

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
FINAL = {OrderLine.Status.DELIVERED, OrderLine.Status.REJECTED}
MAX_ACTIONS = 12


class Coordinator:
    """Drives the page like a person and counts what they do (see the module's docstring)."""

    def __init__(self, page):
        self.page, self.actions, self.log = page, 0, []

    def _count(self, n, what):
        self.actions += n
        self.log.append(what)

    def _reach(self, selector):
        """An element below or above the window costs a scroll to reach."""
        in_view = self.page.locator(selector).first.evaluate(
            "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }")
        if not in_view:
            self._count(1, f"scroll to {selector}")

    def click(self, selector):
        self._reach(selector)
        self.page.click(selector)
        self._count(1, f"click {selector}")

    def type(self, selector, text):
        self._reach(selector)
        self.page.fill(selector, text)
        self._count(1, f"type into {selector}")

    def press(self, selector, key):
        self.page.press(selector, key)
        self._count(1, f"press {key}")

    def pick_file(self, selector, payload):
        self._reach(selector)
        self.page.set_input_files(selector, payload)
        self._count(2, "choose a file")


def add_due_patients(clinic, count):
    """``count`` more patients of the clinic whose last fill (a copy of a due patient's) runs out
    this week, each with complete details."""
    template = (OrderLine.objects.filter(order__clinic=clinic, patient__chart_id="BW-1002")
                .select_related("order", "partner_order", "patient").get())
    source = template.patient
    for i in range(count):
        patient = Patient.objects.create(
            organization=source.organization, chart_id=f"BW-9{i:03d}", first_name=f"Extra{i}", last_name="Due",
            date_of_birth=datetime.date(1970, 1, 1 + i % 28), address_line1=source.address_line1, city=source.city,
            state=source.state, zip_code=source.zip_code,
        )
        order = Order.objects.create(clinic=clinic, placed_at=template.order.placed_at, total=template.landed_cost,
                                     payment_reference=f"extra-{i}")
        po = PartnerOrder.objects.create(order=order, partner=template.partner_order.partner,
                                         status=PartnerOrder.Status.SENT)
        rx = template.prescription  # the same prescription of record, written for this patient
        rx = Prescription.objects.create(
            clinic=clinic, patient=patient, product=rx.product, prescriber=rx.prescriber, sig=rx.sig,
            quantity=rx.quantity, days_supply=rx.days_supply, refills_authorized=rx.refills_authorized,
            fills_remaining=rx.refills_authorized, written_on=rx.written_on, expires_on=rx.expires_on,
            source=rx.source, rx_number=f"{rx.rx_number}-{i}", erx_message_id=rx.erx_message_id)
        OrderLine.objects.create(
            order=order, partner_order=po, patient=patient, product=template.product, prescriber=template.prescriber,
            prescription=rx,
            product_name=template.product_name, partner_sku=template.partner_sku, quantity=template.quantity,
            sig=template.sig, days_supply=template.days_supply, unit_price=template.unit_price,
            shipping_share=template.shipping_share, landed_cost=template.landed_cost, status=OrderLine.Status.DELIVERED,
        )


@pytest.fixture
def demo(live_server):
    call_command("seed_demo", stdout=io.StringIO())
    # The sandbox pharmacies live on this test server.
    for partner in Partner.objects.all():
        partner.api_base_url = f"{live_server.url}/sandbox/partners/{partner.slug}"
        partner.save(update_fields=["api_base_url"])
    with override_settings(SANDBOX_PARTNERS=True, SANDBOX_WEBHOOK_BASE_URL=live_server.url):
        yield Clinic.objects.get(name="Bloom Wellness — Austin")


@pytest.mark.parametrize("due", [20, 40])
def test_refill_day(page, demo, capsys, due):
    clinic = demo
    add_due_patients(clinic, due - 20)
    you = Coordinator(page)
    browser_login(page, "austin", PASSWORD)  # not counted

    # 1. Refills due: every patient due is selected; one action adds them all.
    you.click("nav >> text=Refills due")
    assert page.locator("tr.refill").count() == due
    you.click("#add-refills")
    page.wait_for_url("**/cart/")
    assert f"Added {due} lines to the cart." in page.inner_text(".messages")

    # 2. The CSV: choosing the file opens its preview, checked as the cart checks; then add. The
    #    clinic's refill list, exported from its own system, is here the sample file.
    sample = page.request.get(reverse("carts:import-sample")).body()
    you.click("nav >> text=Import CSV")
    you.pick_file("#upload-form input[type=file]", {"name": "refills.csv", "mimeType": "text/csv", "buffer": sample})
    page.wait_for_selector("#import-preview")
    assert "3 of 3 rows ready to add" in page.inner_text("h2")
    you.click("#confirm-import")
    page.wait_for_url("**/cart/")
    assert f"{due + 3} lines for " in page.inner_text("#cart-totals")

    # 3. Preflight flags lines; each is fixed from the summary, at the top of the page.
    assert page.locator("#checkout-link").is_disabled()
    flagged = page.locator("#flagged-lines li.error")
    assert flagged.count() == 2, page.inner_text("#problem-summary")
    for _ in range(5):
        if not page.locator("#flagged-lines li.error .summary-fix").count():
            break
        fix = "#flagged-lines li.error .summary-fix >> nth=0"
        date = page.locator(f"{fix} >> input[type=date]")
        if date.count():
            you.type(f"{fix} >> input[type=date]", "1975-04-02")
            you.press(f"{fix} >> input[type=date]", "Enter")
        else:
            you.click(f"{fix} >> button.fix-apply")
        page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
    assert "No errors" in page.inner_text("#problem-summary")
    assert page.evaluate("document.activeElement.id") == "checkout-link"  # focus went on to the next step

    # 4. One order, one payment: "Place order · $total" is in view however long the order is.
    you.click("a#checkout-link")
    page.wait_for_selector("#place-order")
    assert "Visa ending 4242" in page.inner_text("#card-on-file")
    you.click("#place-order")
    page.wait_for_url("**/orders/*")
    order = Order.objects.get(clinic=clinic, cart_id__isnull=False)
    assert order.lines.count() == due + 3 and order.payment_status == Order.PaymentStatus.AUTHORIZED

    actions = you.actions
    with capsys.disabled():
        print(f"\nRefill day with {due} patients due: {due + 3} lines, one order, {actions} coordinator actions "
              f"(logging in excluded): " + "; ".join(you.log))
    assert actions <= MAX_ACTIONS
    assert page.console_errors == []
    if due != 20:
        return

    # 5. Time passes at the pharmacies: the sandbox sends its signed webhooks over HTTP; the page
    #    refreshes itself every few seconds until every line is final.
    assert set(order.partner_orders.values_list("status", flat=True)) == {"sent"}
    for sandbox_order in SandboxPartnerOrder.objects.all():
        sandbox_play_all(sandbox_order_id=sandbox_order.pk)
    page.wait_for_function(
        f"() => {{ const s = [...document.querySelectorAll('[data-status]')].map(e => e.dataset.status);"
        f" return s.length === {due + 3} && s.every(x => x === 'delivered' || x === 'rejected'); }}",
        timeout=30_000,
    )
    statuses = list(order.lines.values_list("status", flat=True))
    assert set(statuses) <= FINAL and OrderLine.Status.DELIVERED in statuses
    order.refresh_from_db()
    accepted = sum((l.landed_cost for l in order.lines.all() if l.status in CHARGEABLE), start=0)
    assert order.amount_captured == accepted
    assert page.console_errors == []
