"""A coordinator builds a cart in Debian's Chromium: three patients (one created on the spot),
an edit in place, a removal."""

import io

import pytest
from django.core.management import call_command

from carts.models import CartLine
from conftest import browser_login
from fizy.demo_data import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def htmx_idle(page):
    """Wait until htmx has finished swapping (new inputs are wired up only after it settles)."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def choose_patient(page, query, name):
    htmx_idle(page)
    page.fill("#patient-search", query)
    page.click(f"#patient-results button:has-text('{name}')")
    page.wait_for_selector("[data-testid=chosen-patient]")


def choose_product(page, query, name):
    htmx_idle(page)
    page.fill("#product-search", query)
    page.click(f"#product-results button:has-text('{name}')")
    page.wait_for_selector("[data-testid=chosen-product]")


def add_line(page, *, prescriber, quantity, sig, days, clinical_difference=None):
    # Options read "Maya Patel, MD · licensed in TX": the patient's state decides the order and mark.
    option = page.locator("#add-line-form select[name=prescriber] option", has_text=prescriber).first
    page.select_option("#add-line-form select[name=prescriber]", option.get_attribute("value"))
    page.fill("#add-line-form input[name=quantity]", str(quantity))
    page.fill("#add-line-form input[name=days_supply]", str(days))
    page.fill("#add-line-form textarea[name=sig]", sig)
    if clinical_difference:
        page.fill("#add-line-form textarea[name=clinical_difference]", clinical_difference)
    count = page.locator("tr.line").count()
    page.click("#add-line-submit")
    page.wait_for_function(f"() => document.querySelectorAll('tr.line').length > {count}")


def test_coordinator_builds_edits_and_trims_the_cart(page):
    call_command("seed_demo", stdout=io.StringIO())
    browser_login(page, "austin", PASSWORD)

    choose_patient(page, "lopez", "Lopez")
    choose_product(page, "semaglutide", "Semaglutide")
    add_line(page, prescriber="Maya Patel, MD", quantity=1, days=28,
             sig="Inject 0.25 mg subcutaneously once weekly for 4 weeks",
             clinical_difference="Patient needs a dose below the commercial pen's smallest increment.")
    assert "Added 1 line to the cart." in page.inner_text("#cart-messages")

    page.click("[data-testid=chosen-patient] button:has-text('change')")
    choose_patient(page, "clark", "Clark")
    choose_product(page, "naltrexone", "Naltrexone")
    add_line(page, prescriber="Maya Patel, MD", quantity=30, days=30, sig="Take 1 capsule by mouth at bedtime")

    # A patient who is not in Fizy yet, created without leaving the cart.
    page.click("[data-testid=chosen-patient] button:has-text('change')")
    page.wait_for_selector("#patient-search")
    page.click("#new-patient-toggle")
    form = page.locator("#new-patient-form")
    form.locator("[name=chart_id]").fill("BW-2001")
    form.locator("[name=first_name]").fill("Grace")
    form.locator("[name=last_name]").fill("Hopper")
    form.locator("[name=date_of_birth]").fill("1980-12-09")
    form.locator("[name=address_line1]").fill("500 W 2nd St")
    form.locator("[name=city]").fill("Austin")
    form.locator("[name=state]").select_option("TX")
    form.locator("[name=zip_code]").fill("78701")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("[data-testid=chosen-patient]:has-text('Grace Hopper')")
    assert page.locator("#new-patient").is_hidden()
    choose_product(page, "progesterone", "Progesterone")
    add_line(page, prescriber="Rachel Kim, NP", quantity=30, days=30, sig="Take 1 capsule by mouth at bedtime")

    assert page.locator("tbody.patient-group").count() == 3
    assert "3 lines for 3 patients" in page.inner_text("#cart-totals")

    # Edit Clark's line in place: only that row changes.
    clark_row = page.locator("tr.line", has_text="Naltrexone")
    clark_row.locator("button:has-text('Edit')").click()
    editing = page.locator("tr.line.editing")
    editing.locator("input[name=quantity]").fill("60")
    editing.locator("button:has-text('Save')").click()
    page.wait_for_selector("tr.line.editing", state="detached")
    assert page.locator("tr.line", has_text="Naltrexone").locator("[data-field=quantity]").inner_text().startswith("60")
    assert "91 units" in page.inner_text("#cart-totals")  # 1 + 60 + 30 (not a reload: the summary re-rendered)
    assert page.locator("#cart-summary").count() == 1 and page.locator("tr.line").count() == 3

    # Remove Lopez's line.
    page.locator("tr.line", has_text="Semaglutide").locator("button:has-text('Remove')").click()
    page.wait_for_selector("tr.line:has-text('Semaglutide')", state="detached")
    assert "Removed Semaglutide for Liam Lopez." in page.inner_text("#cart-messages")
    assert "2 lines for 2 patients" in page.inner_text("#cart-totals")
    groups = [t.split("\n")[0] for t in page.locator("tr.group-head").all_inner_texts()]
    assert [g.split(" ")[0] for g in groups] == ["Clark,", "Hopper,"]

    # What the page shows is what the cart holds.
    austins = CartLine.objects.filter(cart__clinic__memberships__user__username="austin")
    assert sorted(austins.values_list("patient__last_name", "quantity")) == [("Clark", 60), ("Hopper", 30)]
    page.reload()
    assert "2 lines for 2 patients" in page.inner_text("#cart-totals")
    assert page.console_errors == []
