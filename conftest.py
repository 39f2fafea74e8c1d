"""Shared personas: a coordinator of clinic A, a coordinator of clinic B, a pharmacy staff user."""

import os

import pytest

from clinics.models import Membership
from clinics.tests.factories import ClinicFactory, MembershipFactory, UserFactory

PASSWORD = "pw-for-tests-1"

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]


def pytest_collection_modifyitems(config, items):
    # Decided at collection time from the configured database, not from a connection.
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://…")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


def pytest_report_header(config):
    from fizy.tests.queue import broker_under_test

    broker = broker_under_test()
    return f"tasks: through the {broker} broker (FIZY_TEST_BROKER)" if broker else "tasks: inline (Q_SYNC)"


@pytest.fixture(autouse=True)
def _tasks_through_the_broker(request):
    """With FIZY_TEST_BROKER=orm|redis, every task a test queues travels through that real broker
    (fizy/tests/queue.py); otherwise tasks run inline."""
    from fizy.tests.queue import broker_under_test, configured_broker_name, run_through_broker

    broker = broker_under_test()
    if not broker:
        yield
        return
    if configured_broker_name() != broker:
        pytest.fail(f"FIZY_TEST_BROKER={broker}, but django-q2 is configured with {configured_broker_name()}")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setattr("django_q.tasks._sync", run_through_broker)
    yield


@pytest.fixture
def clinic_a(db):
    return ClinicFactory(name="Clinic A")


@pytest.fixture
def clinic_b(db):
    return ClinicFactory(name="Clinic B")


@pytest.fixture
def alice(clinic_a):
    """Coordinator of clinic A."""
    return MembershipFactory(user=UserFactory(username="alice"), clinic=clinic_a).user


@pytest.fixture
def bob(clinic_b):
    """Coordinator of clinic B."""
    return MembershipFactory(user=UserFactory(username="bob"), clinic=clinic_b).user


@pytest.fixture
def make_staff(db):
    """``make_staff("sam", SUPPORT)``: a Fizy staff user (reaches the admin) in the given roles
    (clinics/roles.py), belonging to no clinic."""
    from django.contrib.auth.models import Group

    def make(username, *roles):
        user = UserFactory(username=username, is_staff=True)
        user.groups.set(Group.objects.filter(name__in=[role.group for role in roles]))
        return user

    return make


@pytest.fixture
def charlie(make_staff):
    """Pharmacy staff in every staff role (support, dispatch, finance, integrations, user admin):
    reaches the admin, belongs to no clinic. Tests of one role use ``make_staff``."""
    from clinics.roles import ROLES

    return make_staff("charlie", *ROLES)


@pytest.fixture
def clinic_admin_a(clinic_a):
    return MembershipFactory(user=UserFactory(username="alma"), clinic=clinic_a, role=Membership.Role.CLINIC_ADMIN).user


def verified_login(client, user):
    """Log ``user`` in on a test client as after the password and a correct authenticator code:
    staff and clinic admins reach no page without that second factor (accounts/). Use it instead
    of ``client.force_login`` for them; a confirmed TOTP device is created if they have none."""
    from django_otp import DEVICE_ID_SESSION_KEY

    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = totp_device(user).persistent_id
    session.save()
    return client


def totp_device(user):
    """The user's confirmed authenticator device (created on first use)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return (TOTPDevice.objects.filter(user=user, confirmed=True).first()
            or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True))


def totp_code(device) -> str:
    """The code the user's authenticator app shows now (or the next one, when this one was used)."""
    from django_otp.oath import TOTP

    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if totp.t() <= device.last_t:
        totp.time = device.t0 + (device.last_t + 1) * device.step
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def client_bob(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def client_charlie(client, charlie):
    return verified_login(client, charlie)


@pytest.fixture
def client_clinic_admin_a(client, clinic_admin_a):
    return verified_login(client, clinic_admin_a)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, driven by Playwright (its own browser download does not work here)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: apt-get install -y chromium (make test does it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


# Every page reports what its Content-Security-Policy blocked to the console, where the fixture
# below collects it (Playwright's init scripts are not subject to the page's policy).
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} on ${e.documentURI}`);
});
"""


@pytest.fixture
def page(browser, live_server):
    """A fresh browser tab on the live server. ``page.console_errors`` collects what Chromium's
    console reported as errors, and uncaught exceptions, for the test to assert on. Any
    Content-Security-Policy violation fails the test, whatever the test asserts."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    context.add_init_script(_REPORT_CSP_VIOLATIONS)
    tab = context.new_page()
    tab.console_errors = []
    tab.csp_violations = []

    def on_console(message):
        if message.type == "error":
            tab.console_errors.append(message.text)
        if "CSP violation" in message.text or "Content Security Policy" in message.text:
            tab.csp_violations.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda e: tab.console_errors.append(str(e)))
    tab.on("dialog", lambda d: d.accept())  # hx-confirm prompts: the test means to click OK
    yield tab
    context.close()
    assert not tab.csp_violations, "the Content-Security-Policy blocked something:\n" + "\n".join(tab.csp_violations)


def browser_login(page, username, password, *, lands_on="**/cart/"):
    """Log in through the login page; staff and clinic admins then enter their authenticator's
    code (a device is created for them if they have none)."""
    from django.contrib.auth import get_user_model

    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if "/account/two-factor/" in page.url:
        device = totp_device(get_user_model().objects.get(username=username))
        if "/verify/" not in page.url:  # no device yet when the page was asked for: enrolment
            page.goto(page.url.replace("/account/two-factor/", "/account/two-factor/verify/"))
        page.fill("#id_code", totp_code(device))
        page.click("button[type=submit]")
    page.wait_for_url(lands_on)
