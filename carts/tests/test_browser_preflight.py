"""Preflight in Chromium: three flagged lines listed first in the summary, each fixed in place
with the fix its problem offers, until checkout is enabled."""

import io
from dataclasses import replace

import pytest
from django.core.management import call_command

from carts.models import CartLine
from carts.services import LineInput, cart_add_lines
from catalog.models import Product
from clinics.models import Clinic, Patient, Prescriber
from conftest import browser_login
from fizy.demo_data import PASSWORD
from prescriptions.tests.factories import prescriptions_on_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def flagged_cart():
    call_command("seed_demo", stdout=io.StringIO())
    clinic = Clinic.objects.get(name="Bloom Wellness — Austin")
    patel = Prescriber.objects.get(last_name="Patel")
    ortega = Prescriber.objects.get(last_name="Ortega")
    lopez = Patient.objects.get(chart_id="BW-1002")  # TX
    clark = Patient.objects.get(last_name="Clark", organization=clinic.organization)  # TX
    no_dob = Patient.objects.get(chart_id="BW-1006")  # AZ, date of birth missing in the demo data
    sema, ldn, prog = (Product.objects.get(sku=s) for s in ("FZ-SEMA-25", "FZ-LDN-45", "FZ-PROG-100"))
    items = [
        LineInput(patient=lopez, product=sema, prescriber=patel, quantity=1, days_supply=28, sig="Use as directed",
                  clinical_difference="Needs a dose below the commercial pen's smallest increment."),
        LineInput(patient=clark, product=ldn, prescriber=patel, quantity=200, days_supply=30,
                  sig="Take 1 capsule by mouth at bedtime"),
        LineInput(patient=no_dob, product=prog, prescriber=ortega, quantity=30, days_supply=30,
                  sig="Take 1 capsule by mouth at bedtime"),
    ]
    # Each line has its prescription of record on file, as the prescriber wrote it: the vague SIG
    # and the quantity over the limit were typed in the cart, so they differ from it too.
    prescriptions_on_file(clinic, [replace(items[0], sig="Inject 0.25 mg subcutaneously once weekly for 4 weeks"),
                                   replace(items[1], quantity=90), items[2]])
    cart_add_lines(clinic=clinic, actor=None, items=items)
    return lopez, clark, no_dob


def row(page, text):
    return page.locator("tr.line", has_text=text)


def wait_idle(page):
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def test_flagged_lines_are_listed_first_and_each_is_fixed_in_one_action(page):
    lopez, clark, no_dob = flagged_cart()
    naltrexone = CartLine.objects.get(patient=clark)
    browser_login(page, "austin", PASSWORD)

    assert "5 errors on 3 lines" in page.inner_text("#problem-summary")  # two of them differ from the Rx too
    assert page.locator("#checkout-link").is_disabled()
    links = page.locator("#flagged-lines a.problem-link")
    assert links.count() == 3
    assert "quantity over the limit" in links.filter(has_text="Clark").inner_text()
    assert "date of birth missing" in links.filter(has_text="Adams").inner_text()

    # The summary's link scrolls to the line and puts focus on its first fix.
    links.filter(has_text="Clark").click()
    focused = page.evaluate("[document.activeElement.closest('tr') && document.activeElement.closest('tr').id,"
                            " document.activeElement.textContent.trim()]")
    assert focused == [f"line-{naltrexone.pk}", "Set quantity to 90"]
    assert page.evaluate(f"(() => {{ const r = document.getElementById('line-{naltrexone.pk}').getBoundingClientRect();"
                         " return r.top >= 0 && r.bottom <= window.innerHeight; })()")

    # One click applies it: the line's problems are gone (over the limit, and more than prescribed).
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#line-{naltrexone.pk}:not(.has-problems)")
    assert row(page, "Naltrexone").locator("[data-field=quantity]").inner_text().startswith("90")
    assert "3 errors" in page.inner_text("#problem-summary")
    assert CartLine.objects.get(pk=naltrexone.pk).quantity == 90

    # Editing keeps the problem in sight, and the prescriber list puts those licensed in TX first.
    row(page, "Semaglutide").locator("button:has-text('Edit')").click()
    editing = page.locator("tr.line.editing")
    editing.wait_for()
    assert editing.locator("[data-code=sig_too_vague]").is_visible()
    first_choice = editing.locator("select[name=prescriber] option").nth(1).inner_text()
    assert first_choice.endswith("· licensed in TX")
    editing.locator("textarea[name=sig]").fill("Inject 0.25 mg subcutaneously once weekly for 4 weeks")
    editing.locator("textarea[name=sig]").press("Enter")  # Enter saves the row
    page.wait_for_selector("tr.line.editing", state="detached")
    assert row(page, "Semaglutide").locator(".problem").count() == 0
    assert "1 error" in page.inner_text("#problem-summary")

    # The patient's missing date of birth is typed where the problem is; a future one is refused.
    head = page.locator(f"#patient-head-{no_dob.pk}")
    head.locator("input[name=date_of_birth]").fill("2031-04-02")
    head.locator("input[name=date_of_birth]").press("Enter")
    page.wait_for_selector("#cart-messages .msg-error:has-text('in the future')")
    no_dob.refresh_from_db()
    assert no_dob.date_of_birth is None
    head.locator("input[name=date_of_birth]").fill("1975-04-02")
    head.locator("input[name=date_of_birth]").press("Enter")
    page.wait_for_selector(f"#patient-head-{no_dob.pk}:has-text('04/02/1975')")

    assert "No errors" in page.inner_text("#problem-summary")
    assert page.locator(".problem.error").count() == 0
    assert page.locator("#flagged-lines").count() == 0
    assert page.locator("a#checkout-link").is_enabled()
    page.click("a#checkout-link")
    page.wait_for_selector("#place-order")
    assert page.locator("#cart-summary").count() == 0  # the checkout page, not a stray copy
    assert page.console_errors == []
