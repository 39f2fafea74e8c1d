"""The front door: failed logins lock a login and an address; staff and clinic admins reach no
page without a second factor; recovery codes work once; a session ends after 30 idle minutes."""

import datetime
import re

import pytest
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tasks import clear_expired_sessions
from clinics.models import AuditEntry
from clinics.roles import SUPPORT, USER_ADMIN
from conftest import PASSWORD, totp_code, totp_device, verified_login

LOGIN = "/login/"
VERIFY = "/account/two-factor/verify/"
ENROL = "/account/two-factor/"


@pytest.fixture(autouse=True)
def no_code_throttle(settings):
    """django-otp makes a user wait 1 s, 2 s, 4 s… after each wrong code; these tests enter the
    right code at once after a wrong one (the throttle itself is django-otp's, tested there)."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


def password_login(client, user, password=PASSWORD, address="203.0.113.7"):
    return client.post(LOGIN, {"username": user.username, "password": password}, REMOTE_ADDR=address)


# --- Lockout ---------------------------------------------------------------------------------

def test_a_login_locks_after_the_set_number_of_failures_even_with_the_right_password(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        response = password_login(client, alice, "wrong")
        assert response.status_code == 200 and "didn't match" in response.content.decode()
    locked = password_login(client, alice, "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    right = password_login(client, alice)  # the right password no longer opens it
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    # From another address too: the lock is on the login.
    assert password_login(client, alice, address="198.51.100.9").status_code == 429


def test_an_address_locks_after_failures_on_any_logins(client, alice, bob, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for name in ("nobody", "admin", "root"):
        client.post(LOGIN, {"username": name, "password": "guess"}, REMOTE_ADDR="192.0.2.66")
    assert password_login(client, alice, address="192.0.2.66").status_code == 429
    assert password_login(client, bob, address="192.0.2.1").status_code == 302  # elsewhere, fine


def test_a_user_admin_unlocks_a_login_in_the_admin(client, alice, settings, make_staff):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        password_login(client, alice, "wrong")
    assert password_login(client, alice).status_code == 429
    support = verified_login(client.__class__(), make_staff("sue", SUPPORT))
    assert support.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403
    staff = verified_login(client.__class__(), make_staff("ursula", USER_ADMIN))
    assert "alice" in staff.get(reverse("admin:axes_accessattempt_changelist")).content.decode()
    attempts = AccessAttempt.objects.filter(username="alice")
    response = staff.post(reverse("admin:axes_accessattempt_changelist"),
                          {"action": "delete_selected", "_selected_action": [a.pk for a in attempts], "post": "yes"})
    assert response.status_code == 302 and not AccessAttempt.objects.filter(username="alice").exists()
    assert password_login(client, alice).status_code == 302


# --- Second factor ---------------------------------------------------------------------------

PAGES = ["/cart/", "/clinic/billing", "/orders/", "/admin/", "/admin/clinics/patient/", "/notices/"]


@pytest.mark.parametrize("who", ["charlie", "clinic_admin_a"])
def test_staff_and_clinic_admins_reach_no_page_before_the_second_factor(client, who, request):
    user = request.getfixturevalue(who)
    assert password_login(client, user).status_code == 302
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(ENROL), url
    htmx = client.get("/cart/", HTTP_HX_REQUEST="true")
    assert htmx.status_code == 204 and htmx["HX-Redirect"].startswith(ENROL)
    assert client.post(reverse("billing-setup")).status_code == 302
    # With a device, they are sent to the code page instead, and the code lets them in.
    device = totp_device(user)
    assert client.get("/cart/")["Location"] == VERIFY + "?next=%2Fcart%2F"
    wrong = client.post(VERIFY, {"code": "000000", "next": "/cart/"})
    assert wrong.status_code == 200 and "That code did not work" in wrong.content.decode()
    right = client.post(VERIFY, {"code": totp_code(device), "next": "/cart/"})
    assert right.status_code == 302 and right["Location"] == "/cart/"
    landing = "/admin/" if user.is_staff else "/cart/"
    assert client.get(landing).status_code == 200


def test_coordinators_need_no_second_factor_but_may_enrol_one(client_alice, alice):
    assert client_alice.get("/cart/").status_code == 200
    page = client_alice.get(ENROL).content.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    device = TOTPDevice.objects.get(user=alice, confirmed=False)
    assert "otpauth://totp/Fizy%3Aalice?secret=" + secret in page and 'src="data:image/svg+xml;base64,' in page
    wrong = client_alice.post(ENROL, {"code": "123456"})
    assert "did not match" in wrong.content.decode() and not TOTPDevice.objects.filter(confirmed=True).exists()
    done = client_alice.post(ENROL, {"code": totp_code(device)})
    codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", done.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert "shown only now" in done.content.decode()
    assert list(AuditEntry.objects.values_list("action", "actor__username")) == [
        ("account.second_factor_enrolled", "alice")]
    assert client_alice.get("/cart/").status_code == 200  # this session is verified
    # Having enrolled, alice too needs the code at her next login.
    client_alice.logout()
    password_login(client_alice, alice)
    assert client_alice.get("/cart/")["Location"].startswith(VERIFY)
    assert codes[0] not in client_alice.get(ENROL, follow=True).content.decode()  # never shown again


def test_a_recovery_code_works_once(client, clinic_admin_a):
    device = totp_device(clinic_admin_a)
    verified = verified_login(client.__class__(), clinic_admin_a)
    codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>",
                       verified.post(reverse("accounts:recovery-codes")).content.decode())
    assert len(codes) == 10 and device.pk
    assert AuditEntry.objects.filter(action="account.recovery_codes_replaced", actor=clinic_admin_a).count() == 1

    password_login(client, clinic_admin_a)
    response = client.post(VERIFY, {"code": codes[3].upper(), "next": "/cart/"}, follow=True)
    assert response.redirect_chain[0][0] == "/cart/" and "You used a recovery code" in response.content.decode()
    assert StaticToken.objects.filter(device__user=clinic_admin_a).count() == 9
    stored = set(StaticToken.objects.values_list("token", flat=True))
    assert not stored & set(codes)  # the database keeps digests, not the codes

    client.logout()
    password_login(client, clinic_admin_a)
    again = client.post(VERIFY, {"code": codes[3], "next": "/cart/"})
    assert again.status_code == 200 and "That code did not work" in again.content.decode()
    assert client.get("/cart/")["Location"].startswith(VERIFY)


def test_the_second_factor_pages_refuse_bad_input_clearly(client, clinic_admin_a):
    totp_device(clinic_admin_a)
    password_login(client, clinic_admin_a)
    for code in ["", "²²²²²²", "x" * 41]:
        response = client.post(VERIFY, {"code": code, "next": "https://evil.example/"})
        assert response.status_code == 200 and 'class="error"' in response.content.decode()
    nul = client.post(VERIFY, {"code": "12\x0034", "next": "https://evil.example/"})  # refused before the view
    assert nul.status_code == 400 and "NUL character" in nul.content.decode()
    ok = client.post(VERIFY, {"code": totp_code(totp_device(clinic_admin_a)), "next": "https://evil.example/"})
    assert ok["Location"] == "/"


def test_user_admins_remove_a_lost_authenticator_without_seeing_its_secret(client, clinic_admin_a, make_staff):
    device = totp_device(clinic_admin_a)
    staff = verified_login(client, make_staff("ursula", USER_ADMIN))
    page = staff.get(reverse("admin:otp_totp_totpdevice_change", args=[device.pk])).content.decode()
    assert "alma" in page and device.key not in page
    staff.post(reverse("admin:otp_totp_totpdevice_delete", args=[device.pk]), {"post": "yes"})
    assert not TOTPDevice.objects.filter(user=clinic_admin_a).exists()
    # Who removed whose second factor, in the audit trail.
    assert list(AuditEntry.objects.filter(action="account.second_factor_removed").values_list(
        "actor__username", "detail")) == [("ursula", {"user": clinic_admin_a.pk, "device": device.name})]


def test_the_demo_prints_a_login_s_current_code_and_only_in_the_demo(clinic_admin_a, settings):
    from io import StringIO

    from django.core.management import CommandError, call_command

    device = totp_device(clinic_admin_a)
    settings.DEBUG = True
    out = StringIO()
    call_command("totp_code", "alma", stdout=out)
    assert out.getvalue().strip() == totp_code(device)
    settings.DEBUG = False
    with pytest.raises(CommandError, match="demo only"):
        call_command("totp_code", "alma")


# --- Idle sessions ---------------------------------------------------------------------------

def _age_session(client, seconds):
    """Move the session back in time: its expiry and its last-seen mark."""
    session = Session.objects.get(session_key=client.session.session_key)
    data = session.get_decoded()
    data["seen_at"] -= seconds
    Session.objects.filter(pk=session.pk).update(
        session_data=Session.objects.encode(data), expire_date=session.expire_date - datetime.timedelta(seconds=seconds))


def _expiry(client):
    return Session.objects.get(session_key=client.session.session_key).expire_date


def test_a_session_ends_after_30_idle_minutes_and_activity_keeps_it(client_alice, alice, settings, order_for_alice,
                                                                   client):
    assert settings.SESSION_IDLE_TIMEOUT == 30 * 60
    client_alice.get("/cart/")
    left = (_expiry(client_alice) - timezone.now()).total_seconds()
    assert 29 * 60 < left <= 30 * 60

    _age_session(client_alice, 20 * 60)  # 20 minutes without doing anything
    client_alice.get("/cart/")  # then an action: another 30 minutes from now
    assert (_expiry(client_alice) - timezone.now()).total_seconds() > 29 * 60

    _age_session(client_alice, 20 * 60)
    # The open order page polls by itself: that is not activity.
    poll = client_alice.get(f"/orders/{order_for_alice.pk}", HTTP_HX_REQUEST="true", HTTP_X_FIZY_POLL="1")
    assert poll.status_code == 200
    assert (_expiry(client_alice) - timezone.now()).total_seconds() < 11 * 60

    _age_session(client_alice, 11 * 60)  # 31 minutes idle
    htmx = client_alice.get("/cart/", HTTP_HX_REQUEST="true")  # a click in the cart: the whole page goes to login
    assert htmx.status_code == 204 and htmx["HX-Redirect"] == "/login/?next=/cart/&ended=idle"
    response = client_alice.get("/cart/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/cart/&ended=idle"
    login = client_alice.get(response["Location"]).content.decode()
    assert "You were logged out after 30 minutes without activity" in login
    assert "logged out after" not in client.__class__().get("/login/?next=/cart/").content.decode()


def test_expired_sessions_are_cleared_by_a_schedule(client_alice):
    from django_q.models import Schedule

    assert Schedule.objects.get(name="Clear expired sessions").func == "accounts.tasks.clear_expired_sessions"
    client_alice.get("/cart/")
    _age_session(client_alice, 31 * 60)
    clear_expired_sessions()
    assert not Session.objects.exists()


@pytest.fixture
def order_for_alice(clinic_a, alice):
    from catalog.tests.factories import PartnerFactory
    from fulfillment.tests.factories import order_with_lines

    return order_with_lines(clinic=clinic_a, partners=[PartnerFactory()], lines_per_partner=1, placed_by=alice)


def test_behind_a_balancer_each_client_address_is_locked_on_its_own(client, alice, bob, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXY_COUNT = 1
    balancer = {"REMOTE_ADDR": "10.0.0.5"}
    for name in ("nobody", "root"):
        client.post(LOGIN, {"username": name, "password": "guess"}, HTTP_X_FORWARDED_FOR="192.0.2.66", **balancer)
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="192.0.2.66",
                       **balancer).status_code == 429
    assert client.post(LOGIN, {"username": "bob", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.3",
                       **balancer).status_code == 302
