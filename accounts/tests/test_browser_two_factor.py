"""A clinic admin's first login in Chromium, under the Content-Security-Policy: the password,
then setting up the authenticator from the QR code page, the recovery codes once, then Billing;
the next login asks for a code."""

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinics.models import Membership
from clinics.tests.factories import MembershipFactory, UserFactory
from conftest import PASSWORD, browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_clinic_admin_sets_up_two_factor_at_the_first_login(page, clinic_a):
    user = UserFactory(username="dana")
    MembershipFactory(user=user, clinic=clinic_a, role=Membership.Role.CLINIC_ADMIN)
    page.goto("/clinic/billing")
    page.fill("#id_username", "dana")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/account/two-factor/?next=%2Fclinic%2Fbilling")
    assert page.locator("#totp-qr").evaluate("img => img.naturalWidth") > 0  # the QR code shows (CSP allows it)
    secret = page.inner_text("#totp-secret")
    assert page.goto("/cart/").url.endswith("/account/two-factor/?next=%2Fcart%2F")  # nothing else before it
    page.goto("/account/two-factor/?next=/clinic/billing")
    assert page.inner_text("#totp-secret") == secret  # the same key on a reload
    device = TOTPDevice.objects.get(user=user)
    page.fill("#id_code", f"{TOTP(device.bin_key).token():06d}")
    page.click("#enrol button[type=submit]")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    page.click("text=I saved them: continue")
    page.wait_for_url("**/clinic/billing")
    assert page.locator("h1").inner_text().startswith("Billing")

    page.click("text=Log out")
    browser_login(page, "dana", PASSWORD)  # now a code from the app (conftest computes it)
    assert page.console_errors == []
