"""The cart works by keyboard, fits a phone and passes axe-core, in Debian's Chromium.

- Patients and products are picked with the arrow keys and Enter; focus moves to the next field.
- At 390 px wide the cart, review, order, refills and import pages need no horizontal scrolling
  (rows become stacked cards).
- axe-core (pinned in tests/e2e/package.json, installed by ``make test``) finds no serious or
  critical violation on those pages. It is added as a Playwright init script: those are not
  subject to the page's Content-Security-Policy, which refuses inline scripts.
- The CSV preview shows the problem the cart would flag, before the row is added."""

import io
import json
import pathlib

import pytest
from django.core.management import call_command
from django.urls import reverse

from carts.selectors import refills_due
from carts.services import LineInput, cart_add_lines
from clinics.models import Clinic, Patient, Prescriber
from conftest import browser_login
from fizy.demo_data import PASSWORD
from fulfillment.models import Order

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
AXE = pathlib.Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def refill_day_cart():
    """The demo's Austin clinic with its refills due in the cart (two of them flagged)."""
    call_command("seed_demo", stdout=io.StringIO())
    clinic = Clinic.objects.get(name="Bloom Wellness — Austin")
    cart_add_lines(clinic=clinic, actor=None, items=[
        LineInput(patient=d.patient, product=d.product, prescriber=d.last_line.prescriber, quantity=d.last_line.quantity,
                  sig=d.last_line.sig, days_supply=d.last_line.days_supply,
                  clinical_difference=d.last_line.clinical_difference)
        for d in refills_due(clinic=clinic)])
    return clinic


def pages(clinic):
    order = Order.objects.filter(clinic=clinic).order_by("-placed_at").first()
    return {"cart": reverse("carts:cart"), "review": reverse("carts:checkout"),
            "order": reverse("fulfillment:order", args=[order.pk]), "orders": reverse("fulfillment:orders"),
            "refills": reverse("carts:refills") + "?days=30", "import": reverse("carts:import")}


def idle(page):
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def test_arrow_keys_and_enter_pick_a_patient_and_a_product_and_focus_moves_on(page, refill_day_cart):
    browser_login(page, "austin", PASSWORD)
    patient = Patient.objects.get(chart_id="BW-1004")
    page.click("#patient-search")
    page.keyboard.type(patient.last_name)
    page.wait_for_selector("#patient-results [role=option]")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.getAttribute('role')") == "option"
    assert page.evaluate("document.activeElement.getAttribute('aria-selected')") == "true"
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=chosen-patient]")
    idle(page)
    assert patient.full_name in page.inner_text("[data-testid=chosen-patient]")
    assert page.evaluate("document.activeElement.id") == "product-search"  # the next field

    page.keyboard.type("Progesterone")
    page.wait_for_selector("#product-results [role=option]")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=chosen-product]")
    idle(page)
    assert "Progesterone" in page.inner_text("[data-testid=chosen-product]")
    focused = page.evaluate("document.activeElement.name")
    assert focused in {"quantity", "prescriber"}  # the first field still to fill

    # An edited row: Escape cancels, Enter saves.
    row = page.locator("tr.line", has_text="Naltrexone").first
    line_id = row.get_attribute("id")
    row.locator("button:has-text('Edit')").click()
    page.wait_for_selector(f"#{line_id}.editing")
    page.fill(f"#{line_id} input[name=days_supply]", "29")
    page.press(f"#{line_id} input[name=days_supply]", "Escape")
    page.wait_for_selector(f"#{line_id}:not(.editing)")
    assert page.inner_text(f"#{line_id} [data-field=days_supply]").startswith("30")
    page.locator(f"#{line_id} button:has-text('Edit')").click()
    page.wait_for_selector(f"#{line_id}.editing")
    page.fill(f"#{line_id} input[name=days_supply]", "29")
    page.press(f"#{line_id} input[name=days_supply]", "Enter")
    page.wait_for_selector(f"#{line_id}:not(.editing) [data-field=days_supply]:has-text('29')")
    assert page.console_errors == []


def test_no_horizontal_scrolling_at_390_px(browser, live_server, refill_day_cart):
    context = browser.new_context(base_url=live_server.url, viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        browser_login(page, "austin", PASSWORD)
        for name, url in pages(refill_day_cart).items():
            page.goto(url)
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{name}: the page is {width[0]} px wide in a {width[1]} px window"
        # The main actions are reachable on a phone: the review's place-order bar stays in view.
        page.goto(reverse("carts:checkout"))
        box = page.locator("#place-order-bar").bounding_box()
        assert box and box["y"] + box["height"] <= PHONE["height"] + 1 and box["x"] >= 0
    finally:
        context.close()


def test_axe_finds_no_serious_or_critical_violation(page, refill_day_cart):
    if not AXE.exists():
        pytest.fail("axe-core is missing: npm ci --prefix tests/e2e (make test does it)")
    page.add_init_script(path=str(AXE))
    browser_login(page, "austin", PASSWORD)
    found = {}
    for name, url in pages(refill_day_cart).items():
        page.goto(url)
        results = page.evaluate("async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
                                " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
                                " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }")
        bad = [v for v in results if v["impact"] in ("serious", "critical")]
        if bad:
            found[name] = bad
    assert not found, json.dumps(found, indent=1)


def test_the_csv_preview_shows_the_problem_the_cart_would_flag(page, refill_day_cart):
    colorado = Patient.objects.filter(organization=refill_day_cart.organization, state="CO").order_by("chart_id").first()
    kim = Prescriber.objects.get(last_name="Kim")  # licensed in TX only
    browser_login(page, "austin", PASSWORD)
    page.goto(reverse("carts:import"))
    text = ("chart_id,product,quantity,sig,prescriber_npi,days_supply\n"
            f"{colorado.chart_id},FZ-PROG-100,30,Take 1 capsule by mouth at bedtime,{kim.npi},30\n")
    page.set_input_files("#upload-form input[type=file]",
                         {"name": "refills.csv", "mimeType": "text/csv", "buffer": text.encode()})
    page.wait_for_selector("#import-preview")
    row = page.locator("#import-row-2")
    assert row.locator("[data-code=prescriber_not_licensed_in_state]").is_visible()
    assert "added with" in row.inner_text()
    assert page.console_errors == []


def test_a_lines_history_opens_under_its_row_and_orders_can_be_searched(page, refill_day_cart):
    order = Order.objects.filter(clinic=refill_day_cart).order_by("-placed_at").first()
    line = order.lines.select_related("patient").first()
    browser_login(page, "austin", PASSWORD)
    page.goto(reverse("fulfillment:order", args=[order.pk]))
    page.click(f"#history-link-{line.pk}")
    page.wait_for_selector(f"#history-{line.pk}")
    assert page.evaluate(f"document.getElementById('line-{line.pk}').nextElementSibling.id") == f"history-{line.pk}"
    assert page.evaluate("document.activeElement.id") == "line-history"  # focus moved to the history
    page.click(f"#history-link-{line.pk}")  # "Hide history"
    page.wait_for_selector(f"#history-{line.pk}", state="detached")

    page.goto(reverse("fulfillment:orders"))
    page.fill("#orders-q", line.patient.chart_id)
    page.click("#order-filters button[type=submit]")
    page.wait_for_url("**/orders/?q=*")
    assert order.number in page.inner_text("#orders")
    assert page.console_errors == []
