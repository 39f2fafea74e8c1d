"""Preflight in Chromium: three flagged lines, each fixed in place, until checkout is enabled."""

import io

import pytest
from django.core.management import call_command

from carts.services import LineInput, cart_add_lines
from catalog.models import Product
from clinics.models import Clinic, Patient, Prescriber
from conftest import browser_login
from fizy.demo_data import PASSWORD

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
    cart_add_lines(clinic=clinic, actor=None, items=[
        LineInput(patient=lopez, product=sema, prescriber=patel, quantity=1, days_supply=28, sig="Use as directed",
                  clinical_difference="Needs a dose below the commercial pen's smallest increment."),
        LineInput(patient=clark, product=ldn, prescriber=patel, quantity=200, days_supply=30,
                  sig="Take 1 capsule by mouth at bedtime"),
        LineInput(patient=no_dob, product=prog, prescriber=ortega, quantity=30, days_supply=30,
                  sig="Take 1 capsule by mouth at bedtime"),
    ])
    return lopez, clark, no_dob


def row(page, text):
    return page.locator("tr.line", has_text=text)


def save_edit(page, text, **fields):
    row(page, text).locator("button:has-text('Edit')").click()
    editing = page.locator("tr.line.editing")
    for name, value in fields.items():
        editing.locator(f"[name={name}]").fill(value)
    editing.locator("button:has-text('Save')").click()
    page.wait_for_selector("tr.line.editing", state="detached")


def test_three_flagged_lines_fixed_in_place_enable_checkout(page):
    lopez, clark, no_dob = flagged_cart()
    browser_login(page, "austin", PASSWORD)

    assert "3 errors" in page.inner_text("#problem-summary")
    assert page.locator("#checkout-link").is_disabled()
    assert row(page, "Semaglutide").locator("[data-field=sig] [data-code=sig_too_vague]").is_visible()
    assert row(page, "Naltrexone").locator("[data-field=quantity] [data-code=quantity_over_max]").is_visible()
    assert row(page, "Progesterone").locator("[data-code=patient_dob_missing]").is_visible()

    save_edit(page, "Semaglutide", sig="Inject 0.25 mg subcutaneously once weekly for 4 weeks")
    assert row(page, "Semaglutide").locator(".problem").count() == 0
    assert "2 errors" in page.inner_text("#problem-summary")

    save_edit(page, "Naltrexone", quantity="60")
    assert row(page, "Naltrexone").locator(".problem").count() == 0
    assert "1 error" in page.inner_text("#problem-summary")
    assert page.locator("#checkout-link").is_disabled()

    # The patient's date of birth is fixed from their group in the cart.
    page.locator(f"#patient-head-{no_dob.pk} button:has-text('Edit patient')").click()
    page.locator(f"#patient-head-{no_dob.pk} [name=date_of_birth]").fill("1975-04-02")
    page.locator(f"#patient-head-{no_dob.pk} button:has-text('Save patient')").click()
    page.wait_for_selector(f"#patient-head-{no_dob.pk}:has-text('04/02/1975')")

    page.click("#validate-cart")
    page.wait_for_selector("#cart-messages:has-text('validates clean')")
    assert "No errors" in page.inner_text("#problem-summary")
    assert page.locator(".problem.error").count() == 0
    assert page.locator("a#checkout-link").is_enabled()
    page.click("a#checkout-link")
    page.wait_for_selector("#place-order")
    assert page.locator("#cart-summary").count() == 0  # the checkout page, not a stray copy
    assert page.console_errors == []
