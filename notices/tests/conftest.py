import datetime
import itertools
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.utils import timezone

from clinics.models import Patient
from clinics.tests.factories import PatientFactory
from fulfillment.models import LineEvent
from fulfillment.status import line_apply_status
from fulfillment.tests.conftest import rsps, route_to_django  # noqa: F401  (fixtures)
from fulfillment.tests.factories import OrderFactory, OrderLineFactory, PartnerOrderFactory
from notices.delivery import notices_send_due
from notices.scan import notices_scan
from notices.tests.fake_twilio import FakeTwilio

SITE = "https://fizy.test"
_phones = itertools.count(5551000)


def next_phone() -> str:
    return f"+1512{next(_phones):07d}"


@pytest.fixture(autouse=True)
def _site(settings):
    cache.clear()  # rate-limit counters of earlier tests
    settings.SITE_URL = SITE
    settings.SMS_BACKEND = "sandbox"
    settings.NOTICE_BATCH_SECONDS = 60
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def fake_twilio(settings):
    fake = FakeTwilio().start()
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = fake.account_sid
    settings.TWILIO_AUTH_TOKEN = fake.auth_token
    settings.TWILIO_FROM_NUMBER = fake.from_number
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_API_BASE = fake.url
    yield fake
    fake.stop()


def consenting_patient(organization, *, preference=Patient.ContactPreference.SMS, **fields) -> Patient:
    """A patient who agreed to order updates by ``preference``, with a phone number of their own."""
    fields.setdefault("phone", next_phone())
    return PatientFactory(organization=organization, contact_preference=preference,
                          notices_consent_at=timezone.now() - datetime.timedelta(days=30), **fields)


def order_for(clinic, patients, *, partner=None, lines_each=1):
    """An order of ``clinic`` with ``lines_each`` pending lines per patient, to one partner."""
    order = OrderFactory(clinic=clinic)
    partner_order = PartnerOrderFactory(order=order, **({"partner": partner} if partner else {}))
    for patient in patients:
        for _ in range(lines_each):
            OrderLineFactory(partner_order=partner_order, patient=patient)
    return order


def move(lines, *statuses, **details):
    """Move each line through ``statuses`` (as the partner would report them)."""
    for line in lines:
        for status in statuses:
            extra = dict(details)
            if status == "shipped":
                extra.setdefault("tracking_number", f"1Z999AA1{line.pk:010d}")
                extra.setdefault("carrier", "UPS")
            if status in ("rejected", "on_hold", "cancelled"):
                extra.setdefault("reason", "Prescriber's license could not be verified.")
            line_apply_status(line=line, to=status, source=LineEvent.Source.WEBHOOK, actor_label="Partner", **extra)


def at_local(clinic, hour: int, minute: int = 0, *, days: int = 0) -> datetime.datetime:
    """Today (plus ``days``) at hour:minute in the clinic's time zone, as an aware datetime."""
    zone = ZoneInfo(clinic.timezone)
    day = timezone.now().astimezone(zone).date() + datetime.timedelta(days=days)
    return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=zone)


def run(now=None):
    """One pass of the every-minute task at ``now``: scan, then send what is due."""
    now = now or timezone.now()
    notices_scan(now=now)
    return notices_send_due(now=now)


def run_until_sent(now=None):
    """Scan now, then send once the batching window has passed (in daytime, no quiet hours)."""
    now = now or timezone.now()
    notices_scan(now=now)
    return notices_send_due(now=now + datetime.timedelta(minutes=2))
