"""One 20-patient order moving through the sandbox partner pharmacy (real HTTP, signed webhooks):
exactly one notice per patient per milestone, however many of their lines move together; nothing
in quiet hours (time is moved); nothing to a patient who opted out or never agreed; a STOP reply
through the provider's signed webhook opts a patient out, an unsigned one is refused."""

import datetime
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from django.core import mail

from catalog.tests.factories import PartnerFactory
from clinics.models import AuditEntry, Patient
from clinics.tests.factories import ClinicFactory, PatientFactory
from fulfillment.dispatch import order_queue_dispatch
from fulfillment.models import LineEvent, OrderLine, SandboxPartnerOrder
from fulfillment.sandbox import sandbox_play_step
from fulfillment.tests.factories import OrderFactory, OrderLineFactory, PartnerOrderFactory
from notices.milestones import MILESTONE_OF_STATUS
from notices.models import Channel, Message, Notice, NoticeLine, SmsReply
from notices.tests.conftest import SITE, at_local, consenting_patient, run
from notices.tests.fake_twilio import twilio_signature

pytestmark = pytest.mark.django_db
P = Patient.ContactPreference
INBOUND = "/api/notices/twilio/inbound"
AUTH_TOKEN = "test-inbound-auth-token"


@pytest.fixture
def sandbox(settings, route_to_django):
    settings.SANDBOX_PARTNERS = True
    settings.SANDBOX_WEBHOOK_BASE_URL = route_to_django
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    return route_to_django


def reply(client, *, from_number, body, sid, signed=True):
    params = {"AccountSid": "AC" + "1" * 32, "Body": body, "From": from_number, "MessageSid": sid,
              "To": "+15125550000", "OptOutType": body.upper()}
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, SITE + INBOUND, params)} if signed else {}
    return client.post(INBOUND, data=params, headers=headers)


def play(step, capture):
    with capture(execute=True):
        for sandbox_order in SandboxPartnerOrder.objects.order_by("pk"):
            sandbox_play_step(sandbox_order_id=sandbox_order.pk, step=step)


def in_quiet_hours(moment, tz="America/Chicago") -> bool:
    local = moment.astimezone(ZoneInfo(tz)).time()
    return local >= datetime.time(21) or local < datetime.time(8)


def test_a_twenty_patient_order_through_the_sandbox_partner(sandbox, client, django_capture_on_commit_callbacks):
    clinic = ClinicFactory(name="Bloom Wellness — Austin", timezone="America/Chicago")
    org = clinic.organization
    cedar = PartnerFactory(slug="cedar", api_base_url=f"{sandbox}/sandbox/partners/cedar", api_key="sandbox-key-cedar")
    texters = [consenting_patient(org, first_name=f"Pat{i}") for i in range(15)]
    emailer = consenting_patient(org, first_name="Em", preference=P.EMAIL, email="em@mail.example")
    both = consenting_patient(org, first_name="Bea", preference=P.SMS_AND_EMAIL, email="bea@mail.example")
    opted_out = consenting_patient(org, first_name="Otto", notices_opted_out_at=datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC))
    no_consent = PatientFactory(organization=org, first_name="Nico", phone="+15125557777")
    stopper = consenting_patient(org, first_name="Stu")
    patients = [*texters, emailer, both, opted_out, no_consent, stopper]
    assert len(patients) == 20
    # Five patients have two lines each (adjacent: they move together).
    two_lines = set(p.pk for p in texters[:5])
    order = OrderFactory(clinic=clinic)
    po = PartnerOrderFactory(order=order, partner=cedar)
    for patient in patients:
        for _ in range(2 if patient.pk in two_lines else 1):
            OrderLineFactory(partner_order=po, patient=patient)
    assert order.lines.count() == 25
    order.total = order.amount_authorized = sum(line.price for line in order.lines.all())
    order.save(update_fields=["total", "amount_authorized"])

    # The order reaches the pharmacy (pending → sent). Notices wait for the batching window.
    with django_capture_on_commit_callbacks(execute=True):
        order_queue_dispatch(order=order)
    day = at_local(clinic, 10)
    run(day)
    assert Notice.objects.filter(milestone="placed").count() == 20 and not Message.objects.exists()
    run(day + datetime.timedelta(minutes=2))
    placed = Message.objects.filter(notice__milestone="placed")
    assert placed.filter(channel=Channel.SMS).count() == 15 + 1 + 1  # texters, Bea, Stu
    assert placed.filter(channel=Channel.EMAIL).count() == 2  # Em, Bea

    # The pharmacy answers in the evening: accepted / on hold / rejected, then compounding and
    # shipping overnight. Nothing goes out inside the quiet hours (21:00–08:00 in Austin).
    sent_before_night = Message.objects.count()
    night = at_local(clinic, 22, 30)
    play(0, django_capture_on_commit_callbacks)
    run(night)
    run(night + datetime.timedelta(minutes=30))
    play(1, django_capture_on_commit_callbacks)
    play(2, django_capture_on_commit_callbacks)
    run(night + datetime.timedelta(hours=2))
    run(night + datetime.timedelta(hours=9))  # 07:30
    assert Message.objects.count() == sent_before_night
    morning = at_local(clinic, 8, 0, days=1)
    waiting = Notice.objects.filter(status="waiting")
    assert waiting.exists() and set(waiting.values_list("send_after", flat=True)) == {morning}

    # Stu replies STOP (signed by the provider); a forged, unsigned STOP for Pat0 is refused.
    response = reply(client, from_number=str(stopper.phone), body="STOP", sid="SM" + "a" * 32)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
    forged = reply(client, from_number=str(texters[0].phone), body="STOP", sid="SM" + "b" * 32, signed=False)
    assert forged.status_code == 403
    stopper.refresh_from_db(), texters[0].refresh_from_db()
    assert stopper.notices_opted_out_at is not None and texters[0].notices_opted_out_at is None
    assert list(SmsReply.objects.values_list("keyword", "patients")) == [("stop", 1)]
    assert AuditEntry.objects.filter(action="patient.notices_opt_out", patient=stopper).exists()

    run(morning + datetime.timedelta(minutes=1))
    play(3, django_capture_on_commit_callbacks)  # delivered
    run(morning + datetime.timedelta(minutes=10))
    run(morning + datetime.timedelta(minutes=12))

    # Exactly one notice per patient per milestone their lines reached.
    reached = defaultdict(set)
    for event in LineEvent.objects.filter(line__order=order, applied=True):
        if event.to_status in MILESTONE_OF_STATUS:
            reached[event.line.patient_id].add(MILESTONE_OF_STATUS[event.to_status])
    notices = defaultdict(list)
    for notice in Notice.objects.filter(order=order):
        notices[notice.patient_id].append(notice.milestone)
    for patient in patients:
        assert sorted(notices[patient.pk]) == sorted(reached[patient.pk]), patient.first_name
    assert {"placed", "shipped", "delivered", "not_filled"} <= set().union(*reached.values())

    # A patient whose two lines shipped together got one "shipped" notice, covering both lines.
    together = [p for p in texters[:5] if not order.lines.filter(patient=p, status=OrderLine.Status.REJECTED).exists()]
    assert together
    for patient in together:
        shipped = Notice.objects.get(order=order, patient=patient, milestone="shipped")
        assert NoticeLine.objects.filter(notice=shipped).count() == 2
        assert Message.objects.filter(notice=shipped).count() == 1

    # Who got what: a text per notice for texters, none to Otto or Nico, none to Stu after STOP.
    for patient in texters:
        texts = Message.objects.filter(notice__patient=patient, channel=Channel.SMS)
        assert texts.count() == len(reached[patient.pk]) and texts.filter(status="delivered").count() == texts.count()
    assert Message.objects.filter(notice__patient=emailer, channel=Channel.EMAIL).count() == len(reached[emailer.pk])
    for patient, why in ((opted_out, "asked to stop"), (no_consent, "agreement to order updates is not recorded")):
        assert not Message.objects.filter(notice__patient=patient).exists()
        assert all(why in n.reason for n in Notice.objects.filter(patient=patient))
    after_stop = Notice.objects.filter(patient=stopper).exclude(milestone="placed")
    assert after_stop.exists() and set(after_stop.values_list("status", flat=True)) == {"not_sent"}
    assert not Message.objects.filter(notice__in=after_stop).exists()

    # Nothing went out in quiet hours.
    assert not [m for m in Message.objects.all() if in_quiet_hours(m.sent_at)]
    assert {sent.to[0] for sent in mail.outbox} == {"em@mail.example", "bea@mail.example"}
