"""Notices go out through the real ``twilio`` library (against the local fake) and Django's email;
the provider's signed status callbacks update each message; a text that cannot be delivered
becomes an email where the patient has one."""

import datetime

import pytest
from django.core import mail

from clinics.models import Patient
from clinics.tests.factories import ClinicFactory
from notices.delivery import message_send, messages_retry_due, reclaim_interrupted
from notices.models import Channel, Message, MessageEvent, Notice
from notices.tests.conftest import SITE, at_local, consenting_patient, move, order_for, run, run_until_sent

pytestmark = pytest.mark.django_db
P = Patient.ContactPreference
STATUS_PATH = "/api/notices/twilio/status"


@pytest.fixture
def clinic():
    return ClinicFactory(name="Bloom Wellness — Austin", timezone="America/Chicago", billing_phone="+15125550143")


def post_callback(client, url, params, signature):
    assert url.startswith(SITE)
    return client.post(url[len(SITE):], data=params, headers={"X-Twilio-Signature": signature})


def test_a_notice_goes_out_through_twilio_and_the_delivery_report_is_recorded(clinic, fake_twilio, client):
    ann = consenting_patient(clinic.organization, first_name="Ann")
    order = order_for(clinic, [ann])
    move(order.lines.all(), "sent")
    assert run_until_sent(at_local(clinic, 10)) == 1

    (sent,) = fake_twilio.sent()
    assert sent["to"] == str(ann.phone) and sent["from"] == fake_twilio.from_number
    assert sent["body"].startswith("Bloom Wellness — Austin: Hi Ann, the pharmacy has received your order.")
    assert f"{SITE}/t/" in sent["body"] and sent["body"].endswith("Reply STOP to opt out.")
    assert sent["status_callback"] == f"{SITE}{STATUS_PATH}"
    message = Message.objects.get()
    assert (message.status, message.provider, message.provider_id) == ("sent", "twilio", sent["sid"])

    response = post_callback(client, *fake_twilio.callback(sent["sid"], "delivered"))
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"
    assert list(message.events.order_by("id").values_list("status", "source")) == [("sent", "send"), ("delivered", "callback")]


def test_a_late_report_never_moves_a_message_back(clinic, fake_twilio, client):
    order = order_for(clinic, [consenting_patient(clinic.organization)])
    move(order.lines.all(), "sent")
    run_until_sent(at_local(clinic, 10))
    sid = fake_twilio.sent()[0]["sid"]
    post_callback(client, *fake_twilio.callback(sid, "delivered"))
    post_callback(client, *fake_twilio.callback(sid, "sent"))  # arrives late
    assert Message.objects.get().status == "delivered"
    assert MessageEvent.objects.filter(source="callback").count() == 2  # both recorded


def test_an_unsigned_or_forged_callback_is_refused(clinic, fake_twilio, client):
    order = order_for(clinic, [consenting_patient(clinic.organization)])
    move(order.lines.all(), "sent")
    run_until_sent(at_local(clinic, 10))
    url, params, signature = fake_twilio.callback(fake_twilio.sent()[0]["sid"], "failed")
    assert client.post(STATUS_PATH, data=params).status_code == 403
    assert post_callback(client, url, {**params, "MessageStatus": "failed", "ErrorCode": "30005"},
                         signature).status_code == 403  # not what was signed
    forged = fake_twilio.callback(fake_twilio.sent()[0]["sid"], "failed")
    response = client.post(STATUS_PATH, data=forged[1], headers={"X-Twilio-Signature": "x" + forged[2][1:]})
    assert response.status_code == 403 and b"X-Twilio-Signature" in response.content
    assert Message.objects.get().status == "sent" and not MessageEvent.objects.filter(source="callback").exists()


def test_an_undeliverable_number_falls_back_to_email(clinic, fake_twilio, client, django_capture_on_commit_callbacks):
    """Twilio takes the text, then the carrier reports it undelivered (a landline): the patient
    gets the same notice by email."""
    bo = consenting_patient(clinic.organization, first_name="Bo", phone="+15125550777", email="bo@mail.example")
    fake_twilio.undeliverable.add("+15125550777")
    order = order_for(clinic, [bo])
    move(order.lines.all(), "sent")
    run_until_sent(at_local(clinic, 10))
    assert mail.outbox == []

    with django_capture_on_commit_callbacks(execute=True):
        response = post_callback(client, *fake_twilio.callback(fake_twilio.sent()[0]["sid"]))
    assert response.status_code == 200
    text = Message.objects.get(channel=Channel.SMS)
    assert text.status == "undelivered" and text.error_code == 30006 and "landline" in text.error
    email = Message.objects.get(channel=Channel.EMAIL)
    assert email.status == "sent" and email.fallback_for == text and email.to == "bo@mail.example"
    (sent,) = mail.outbox
    assert sent.to == ["bo@mail.example"] and sent.subject == "Bloom Wellness — Austin: the pharmacy has received your order"
    assert "Hi Bo," in sent.body and f"{SITE}/t/" in sent.body
    assert Notice.objects.get().status == "sent"

    # The same report again: no second email.
    with django_capture_on_commit_callbacks(execute=True):
        post_callback(client, *fake_twilio.callback(fake_twilio.sent()[0]["sid"], "undelivered"))
    assert len(mail.outbox) == 1


def test_an_invalid_number_falls_back_to_email_at_once(clinic, fake_twilio):
    cy = consenting_patient(clinic.organization, first_name="Cy", phone="+15005550001", email="cy@mail.example")
    move(order_for(clinic, [cy]).lines.all(), "sent")
    run_until_sent(at_local(clinic, 10))
    text = Message.objects.get(channel=Channel.SMS)
    assert text.status == "failed" and text.error_code == 21211 and "not a valid phone number" in text.error
    assert [sent.to for sent in mail.outbox] == [["cy@mail.example"]]
    assert fake_twilio.sent() == []


def test_without_an_email_a_failed_text_fails_the_notice_with_the_reason(clinic, fake_twilio):
    dee = consenting_patient(clinic.organization, phone="+15005550009", email="")
    move(order_for(clinic, [dee]).lines.all(), "sent")
    run_until_sent(at_local(clinic, 10))
    notice = Notice.objects.get()
    assert notice.status == "failed" and "cannot receive text messages" in notice.reason
    assert mail.outbox == []


def test_a_number_that_unsubscribed_at_twilio_is_recorded_as_opted_out_and_not_emailed(clinic, fake_twilio):
    eve = consenting_patient(clinic.organization, phone="+15005550004", email="eve@mail.example")
    move(order_for(clinic, [eve]).lines.all(), "sent")
    run_until_sent(at_local(clinic, 10))
    eve.refresh_from_db()
    assert eve.notices_opted_out_at is not None
    assert mail.outbox == []


def test_a_provider_outage_is_retried_later_and_sent_once(clinic, fake_twilio):
    move(order_for(clinic, [consenting_patient(clinic.organization)]).lines.all(), "sent")
    fake_twilio.fail_next.append(503)
    noon = at_local(clinic, 12)
    run_until_sent(noon)
    message = Message.objects.get()
    assert message.status == "queued" and message.attempts == 1 and message.next_attempt_at is not None
    assert "could not be reached" in message.error or "refused" in message.error
    assert messages_retry_due(now=noon + datetime.timedelta(minutes=2)) == 0  # not yet
    assert messages_retry_due(now=noon + datetime.timedelta(minutes=5)) == 1
    message.refresh_from_db()
    assert message.status == "sent" and message.attempts == 2 and len(fake_twilio.sent()) == 1
    assert message_send(message_id=message.pk) == "sent"  # a second run sends nothing more
    assert len(fake_twilio.sent()) == 1


def test_email_only_patients_get_email_and_both_get_both(clinic, fake_twilio):
    fay = consenting_patient(clinic.organization, preference=P.EMAIL, email="fay@mail.example")
    gus = consenting_patient(clinic.organization, preference=P.SMS_AND_EMAIL, email="gus@mail.example")
    move(order_for(clinic, [fay, gus]).lines.all(), "sent")
    run_until_sent(at_local(clinic, 10))
    assert sorted(sent.to[0] for sent in mail.outbox) == ["fay@mail.example", "gus@mail.example"]
    assert [m["to"] for m in fake_twilio.sent()] == [str(gus.phone)]


def test_a_message_interrupted_while_sending_is_not_sent_again(clinic, fake_twilio):
    move(order_for(clinic, [consenting_patient(clinic.organization)]).lines.all(), "sent")
    noon = at_local(clinic, 12)
    run(noon)
    notice = Notice.objects.get()
    message = Message.objects.create(notice=notice, channel=Channel.SMS, to="+15125550999", body="x", status="sending")
    Message.objects.filter(pk=message.pk).update(updated_at=noon - datetime.timedelta(hours=1))
    assert reclaim_interrupted(now=noon) == 1
    message.refresh_from_db()
    assert message.status == "failed" and "not sent again" in message.error
    assert fake_twilio.sent() == []
