"""Refill day, end to end, in Debian's Chromium: a coordinator queues 20 due patients in one
action, imports 3 more from a CSV, fixes the 2 lines preflight flags, places one order, and
watches every line reach its final status through the sandbox partner pharmacy. The
coordinator's clicks and keystrokes are counted and printed."""

import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from carts.models import CartLine
from catalog.models import Partner
from clinics.models import Clinic, Patient, Prescriber
from conftest import browser_login
from fizy.demo_data import PASSWORD
from fulfillment.models import Order, OrderLine, SandboxPartnerOrder
from fulfillment.sandbox import sandbox_play_all
from fulfillment.status import CHARGEABLE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
FINAL = {OrderLine.Status.DELIVERED, OrderLine.Status.REJECTED}


class Coordinator:
    """Drives the page like a person and counts what they do: a click per click, choice or
    file pick, a keystroke per character typed."""

    def __init__(self, page):
        self.page, self.clicks, self.keys = page, 0, 0

    def click(self, selector):
        self.page.click(selector)
        self.clicks += 1

    def type(self, selector, text):
        self.page.fill(selector, text)
        self.clicks += 1  # focus the field
        self.keys += len(text)

    def press(self, selector, key):
        self.page.press(selector, key)
        self.keys += 1

    def choose(self, selector, **option):
        self.page.select_option(selector, **option)
        self.clicks += 2  # open the list, pick

    def pick_file(self, selector, payload):
        self.page.set_input_files(selector, payload)
        self.clicks += 2  # open the file chooser, pick the file

    def idle(self):
        self.page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


@pytest.fixture
def demo(live_server):
    call_command("seed_demo", stdout=io.StringIO())
    # The sandbox pharmacies live on this test server.
    for partner in Partner.objects.all():
        partner.api_base_url = f"{live_server.url}/sandbox/partners/{partner.slug}"
        partner.save(update_fields=["api_base_url"])
    with override_settings(SANDBOX_PARTNERS=True, SANDBOX_WEBHOOK_BASE_URL=live_server.url):
        yield Clinic.objects.get(name="Bloom Wellness — Austin")


def csv_for_three_more(clinic):
    """Three patients not in the cart yet (Dr Patel is licensed in TX and CO), as a coordinator's refill list."""
    in_cart = set(CartLine.objects.filter(cart__clinic=clinic).values_list("patient_id", flat=True))
    patients = [p for p in Patient.objects.filter(organization=clinic.organization, state__in=["TX", "CO"]).order_by("chart_id")
                if p.pk not in in_cart and p.date_of_birth and p.address_is_complete][:3]
    assert len(patients) == 3
    npi = Prescriber.objects.get(last_name="Patel").npi
    rows = ["chart_id,product,quantity,sig,prescriber_npi,days_supply"] + [
        f"{p.chart_id},FZ-LDN-45,30,Take 1 capsule by mouth at bedtime,{npi},30" for p in patients]
    return {"name": "refills.csv", "mimeType": "text/csv", "buffer": ("\n".join(rows) + "\n").encode()}


def test_refill_day(page, demo, capsys):
    clinic = demo
    you = Coordinator(page)
    browser_login(page, "austin", PASSWORD)
    you.clicks += 3
    you.keys += len("austin") + len(PASSWORD)

    # 1. The refills-due queue: select all 20, add them in one action.
    you.click("nav >> text=Refills due")
    assert page.locator("tr.refill").count() == 20
    you.click("#select-all")
    you.click("#add-refills")
    page.wait_for_url("**/cart/")
    assert "Added 20 lines to the cart." in page.inner_text(".messages")

    # 2. Three more from the clinic's CSV: preview, then add.
    you.click("nav >> text=Import CSV")
    you.pick_file("#upload-form input[type=file]", csv_for_three_more(clinic))
    you.click("#upload-form button[type=submit]")
    page.wait_for_selector("#import-preview")
    assert "3 of 3 rows ready to add" in page.inner_text("h2")
    you.click("#confirm-import")
    page.wait_for_url("**/cart/")
    assert "23 lines for 23 patients" in page.inner_text("#cart-totals")

    # 3. Preflight flags two lines; fix both in place.
    assert "2 errors" in page.inner_text("#problem-summary")
    assert page.locator("#checkout-link").is_disabled()
    expired = page.locator("tr.line:has([data-code=prescriber_license_expired])")
    you.click(f"#{expired.get_attribute('id')} [data-code=prescriber_license_expired] button:has-text('Maya Patel')")
    page.wait_for_selector("tr.line:has([data-code=prescriber_license_expired])", state="detached")
    assert "1 error" in page.inner_text("#problem-summary")

    no_dob = Patient.objects.get(chart_id="BW-1006")
    you.type(f"#patient-head-{no_dob.pk} input[name=date_of_birth]", "1975-04-02")
    you.press(f"#patient-head-{no_dob.pk} input[name=date_of_birth]", "Enter")
    page.wait_for_selector("#cart-messages:has-text('Saved Elijah Adams')")
    assert "No errors" in page.inner_text("#problem-summary")

    # 4. One order, one payment.
    you.click("a#checkout-link")
    page.wait_for_selector("#place-order")
    assert "Visa ending 4242" in page.inner_text("#card-on-file")
    you.click("#place-order")
    page.wait_for_url("**/orders/*")
    order = Order.objects.get(clinic=clinic, cart_id__isnull=False)
    assert order.lines.count() == 23 and order.payment_status == Order.PaymentStatus.AUTHORIZED
    assert set(order.partner_orders.values_list("status", flat=True)) == {"sent"}

    # 5. Time passes at the pharmacies: the sandbox sends its signed webhooks over HTTP; the page
    #    refreshes itself every few seconds until every line is final.
    for sandbox_order in SandboxPartnerOrder.objects.all():
        sandbox_play_all(sandbox_order_id=sandbox_order.pk)
    page.wait_for_function(
        "() => { const s = [...document.querySelectorAll('[data-status]')].map(e => e.dataset.status);"
        " return s.length === 23 && s.every(x => x === 'delivered' || x === 'rejected'); }",
        timeout=30_000,
    )
    statuses = list(order.lines.values_list("status", flat=True))
    assert set(statuses) <= FINAL and OrderLine.Status.DELIVERED in statuses
    order.refresh_from_db()
    accepted = sum((l.landed_cost for l in order.lines.all() if l.status in CHARGEABLE), start=0)
    assert order.amount_captured == accepted
    rejected = statuses.count(OrderLine.Status.REJECTED)

    assert page.console_errors == []
    with capsys.disabled():
        print(f"\nRefill day: 23 lines for 23 patients, one order ({len(statuses) - rejected} delivered, "
              f"{rejected} rejected by the pharmacy and not charged), with {you.clicks} clicks and {you.keys} "
              f"keystrokes (of which {len('austin') + len(PASSWORD)} to log in).")
