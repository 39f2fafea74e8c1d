"""The real ``twilio`` library's HTTP path, against a local fake of Twilio's Messages API."""

import base64

import pytest

from fizy.lib.sms import SandboxSender, SmsError, TwilioSender, get_sms_sender, mask_email, mask_phone, signature_is_valid
from notices.tests.fake_twilio import AUTH_TOKEN, twilio_signature


def sender(fake, **overrides):
    options = dict(account_sid=fake.account_sid, auth_token=fake.auth_token, from_number=fake.from_number,
                   api_base=fake.url, timeout=5)
    options.update(overrides)
    return TwilioSender(**options)


def test_a_text_is_created_with_basic_auth_and_form_parameters(fake_twilio):
    result = sender(fake_twilio).send(to="+15125550123", body="Hello — your order shipped.",
                                      status_callback="https://fizy.test/api/notices/twilio/status")
    assert result.sid.startswith("SM") and result.status == "queued"
    (request,) = fake_twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert request["headers"]["content-type"] == "application/x-www-form-urlencoded"
    user, _, password = base64.b64decode(request["headers"]["authorization"].split()[1]).decode().partition(":")
    assert (user, password) == (fake_twilio.account_sid, fake_twilio.auth_token)
    assert request["form"] == {"To": "+15125550123", "From": fake_twilio.from_number,
                               "Body": "Hello — your order shipped.",
                               "StatusCallback": "https://fizy.test/api/notices/twilio/status"}


def test_a_messaging_service_can_send_instead_of_a_number(fake_twilio):
    sender(fake_twilio, from_number="", messaging_service_sid="MG" + "1" * 32).send(to="+15125550123", body="Hi")
    assert fake_twilio.requests[0]["form"]["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in fake_twilio.requests[0]["form"]


@pytest.mark.parametrize("to, code, words", [
    ("5125550123", 21211, "not a valid phone number"),
    ("+15005550001", 21211, "not a valid phone number"),
    ("+15005550004", 21610, "replied STOP"),
    ("+15005550009", 21614, "cannot receive text messages"),
])
def test_numbers_twilio_refuses_are_permanent_errors_with_their_code(fake_twilio, to, code, words):
    with pytest.raises(SmsError) as caught:
        sender(fake_twilio).send(to=to, body="Hi")
    assert caught.value.code == code and caught.value.permanent
    assert str(code) in caught.value.message and words in caught.value.message


def test_wrong_credentials_are_refused(fake_twilio):
    with pytest.raises(SmsError) as caught:
        sender(fake_twilio, auth_token="wrong").send(to="+15125550123", body="Hi")
    assert caught.value.code == 20003 and caught.value.permanent
    assert "refused our credentials" in caught.value.message
    assert fake_twilio.messages == {}


def test_a_from_number_that_is_not_ours_is_refused(fake_twilio):
    with pytest.raises(SmsError) as caught:
        sender(fake_twilio, from_number="+15125559999").send(to="+15125550123", body="Hi")
    assert caught.value.code == 21606


def test_a_server_error_or_no_server_is_worth_another_try(fake_twilio):
    fake_twilio.fail_next.append(503)
    with pytest.raises(SmsError) as caught:
        sender(fake_twilio).send(to="+15125550123", body="Hi")
    assert not caught.value.permanent
    with pytest.raises(SmsError) as caught:
        sender(fake_twilio, api_base="http://127.0.0.1:9").send(to="+15125550123", body="Hi")
    assert not caught.value.permanent and "could not be reached" in caught.value.message


def test_a_sender_without_credentials_says_what_to_set():
    with pytest.raises(SmsError, match="TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"):
        TwilioSender(account_sid="", auth_token="", from_number="+15125550000")
    with pytest.raises(SmsError, match="TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"):
        TwilioSender(account_sid="AC1", auth_token="t")


def test_the_setting_picks_the_sender(settings, fake_twilio):
    assert get_sms_sender().name == "twilio"
    settings.SMS_BACKEND = "sandbox"
    assert isinstance(get_sms_sender(), SandboxSender)
    settings.SMS_BACKEND = "carrier-pigeon"
    with pytest.raises(SmsError, match="Unknown SMS backend"):
        get_sms_sender()


def test_the_sandbox_fails_twilios_test_numbers_like_twilio():
    assert SandboxSender().send(to="+15125550123", body="Hi").status == "delivered"
    with pytest.raises(SmsError) as caught:
        SandboxSender().send(to="+15005550001", body="Hi")
    assert caught.value.code == 21211 and caught.value.permanent


def test_signatures_are_checked_with_the_librarys_validator():
    url, params = "https://fizy.test/api/notices/twilio/status", {"MessageSid": "SM1", "MessageStatus": "delivered"}
    good = twilio_signature(AUTH_TOKEN, url, params)
    assert signature_is_valid(auth_token=AUTH_TOKEN, url=url, params=params, signature=good)
    assert not signature_is_valid(auth_token=AUTH_TOKEN, url=url, params={**params, "MessageStatus": "failed"}, signature=good)
    assert not signature_is_valid(auth_token=AUTH_TOKEN, url=url + "?x=1", params=params, signature=good)
    assert not signature_is_valid(auth_token="other", url=url, params=params, signature=good)
    assert not signature_is_valid(auth_token=AUTH_TOKEN, url=url, params=params, signature="")
    assert not signature_is_valid(auth_token="", url=url, params=params, signature=good)


def test_recipients_are_masked():
    assert mask_phone("+15125551234") == "•••-•••-1234"
    assert mask_email("olivia.nguyen@mail.example") == "o•••@mail.example"
    assert mask_phone("") == "•••" and mask_email("nonsense") == "•••"
