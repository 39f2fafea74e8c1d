"""In Chromium: a coordinator places an order; the patient opens the link from their text in a
fresh browser (no login) and sees their status change after the pharmacy's webhook, through the
page's own refresh only (no reload)."""

import io
import re

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from carts.services import LineInput, cart_add_lines
from catalog.models import Partner, Product
from clinics.models import Clinic, Patient, Prescriber
from conftest import browser_login
from fizy.demo_data import PASSWORD
from fulfillment.models import Order, SandboxPartnerOrder
from fulfillment.sandbox import sandbox_play_step
from notices.models import Channel, Message
from notices.tests.conftest import run_until_sent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(live_server, settings):
    call_command("seed_demo", stdout=io.StringIO())
    for partner in Partner.objects.all():
        partner.api_base_url = f"{live_server.url}/sandbox/partners/{partner.slug}"
        partner.save(update_fields=["api_base_url"])
    settings.SITE_URL = live_server.url
    settings.TRACKING_POLL_SECONDS = 1
    with override_settings(SANDBOX_PARTNERS=True, SANDBOX_WEBHOOK_BASE_URL=live_server.url):
        yield Clinic.objects.get(name="Bloom Wellness — Austin")


def test_a_patient_follows_their_order_without_logging_in(page, browser, live_server, demo):
    clinic = demo
    lopez = Patient.objects.get(chart_id="BW-1002")
    assert lopez.notices_consent_at and lopez.contact_preference == "sms"
    patel = Prescriber.objects.get(last_name="Patel")
    cart_add_lines(clinic=clinic, actor=None, items=[
        LineInput(patient=lopez, product=Product.objects.get(sku="FZ-LDN-45"), prescriber=patel, quantity=30,
                  days_supply=30, sig="Take 1 capsule by mouth at bedtime"),
    ])

    # The coordinator places the order.
    browser_login(page, "austin", PASSWORD)
    page.click("a#checkout-link")
    page.click("#place-order")
    page.wait_for_url("**/orders/*")
    order = Order.objects.get(clinic=clinic, cart_id__isnull=False)
    assert set(order.lines.values_list("status", flat=True)) == {"sent"}

    # The "pharmacy received your order" text goes out with the patient's link.
    run_until_sent(timezone.now())
    text = Message.objects.get(notice__patient=lopez, channel=Channel.SMS)
    link = re.search(r"https?://\S+/t/\S+", text.body).group(0)
    assert link.startswith(live_server.url)

    # The patient opens it in their own browser: no login, no cookies.
    context = browser.new_context()
    context.set_default_timeout(15_000)
    phone = context.new_page()
    navigations, refreshes, errors = [], [], []
    phone.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == phone.main_frame else None)
    phone.on("request", lambda r: refreshes.append(r.url) if r.headers.get("hx-request") == "true" else None)
    phone.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    phone.goto(link)
    assert phone.inner_text("h1") == f"Hi {lopez.first_name} {lopez.last_name[0]}."
    now = phone.locator("[data-now]")
    assert now.inner_text() == "Your pharmacy received your order"
    assert "Bloom Wellness — Austin" in phone.inner_text("body")

    # The pharmacy's first webhook arrives; the open page shows it by itself.
    for sandbox_order in SandboxPartnerOrder.objects.all():
        sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=0)
    line = order.lines.get()
    assert line.status != "sent"
    phone.wait_for_function(
        "() => document.querySelector('[data-now]').textContent.trim() !== 'Your pharmacy received your order'")
    assert phone.locator("article.track-line").get_attribute("data-status") == line.status
    assert navigations == [link]  # never reloaded
    assert refreshes and all(url == link for url in refreshes)
    assert errors == [] and page.console_errors == []
    context.close()
