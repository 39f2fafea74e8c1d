"""Sending text messages: one small interface, two senders.

- :class:`TwilioSender` sends through the official ``twilio`` library (its Messages API), with
  a status callback URL so the provider reports delivery later.
- :class:`SandboxSender` sends nothing (demo, tests): it answers like the provider would, using
  the provider's documented test numbers for the failures (``+15005550001`` is not a valid
  number, ``+15005550004`` has unsubscribed, ``+15005550009`` cannot receive texts).

:func:`get_sms_sender` picks one from ``settings.SMS_BACKEND``. :func:`signature_is_valid`
checks the ``X-Twilio-Signature`` of a request the provider sent us (status callbacks, replies).
Nothing here knows what the messages are about.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping, Protocol

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

# The provider's message statuses, in the order a message goes through them.
QUEUED, SENDING, SENT, DELIVERED, UNDELIVERED, FAILED = "queued", "sending", "sent", "delivered", "undelivered", "failed"

# Error codes of the Messages API that mean "this number will never get this text".
INVALID_NUMBER = 21211
UNSUBSCRIBED = 21610
NOT_SMS_CAPABLE = 21614
PERMANENT_CODES = frozenset({INVALID_NUMBER, UNSUBSCRIBED, NOT_SMS_CAPABLE, 21408, 21612, 21617, 21660})
EXPLANATIONS = {
    INVALID_NUMBER: "not a valid phone number",
    UNSUBSCRIBED: "the recipient replied STOP to our texts",
    NOT_SMS_CAPABLE: "the number cannot receive text messages (a landline?)",
    30003: "the phone is switched off or unreachable",
    30005: "the number does not exist at the carrier",
    30006: "a landline or a carrier that cannot receive texts",
    30007: "the carrier filtered the message",
    30008: "the carrier could not deliver it",
    20003: "the provider refused our credentials",
}


@dataclass(frozen=True)
class SmsResult:
    """What the provider said when it took the message."""

    sid: str
    status: str  # queued, sent, delivered...


class SmsError(Exception):
    """The provider did not take the message. ``permanent``: trying again will not help."""

    def __init__(self, message: str, *, code: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.permanent = permanent


class SmsSender(Protocol):
    name: str

    def send(self, *, to: str, body: str, status_callback: str = "") -> SmsResult: ...


def explain(code: int | None) -> str:
    return EXPLANATIONS.get(code or 0, "")


class TwilioSender:
    """The Messages API through the ``twilio`` library. ``api_base`` only points the library at a
    local fake server (tests); ``from_number`` or ``messaging_service_sid`` is the sender."""

    name = "twilio"

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str = "", messaging_service_sid: str = "",
                 api_base: str = "", timeout: float = 10.0):
        if not account_sid or not auth_token:
            raise SmsError("Texts cannot be sent: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set.", permanent=True)
        if not from_number and not messaging_service_sid:
            raise SmsError("Texts cannot be sent: set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID.", permanent=True)
        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        if api_base:
            self.client.api.base_url = api_base.rstrip("/")
        self.sender = {"messaging_service_sid": messaging_service_sid} if messaging_service_sid else {"from_": from_number}

    def send(self, *, to: str, body: str, status_callback: str = "") -> SmsResult:
        extra = {"status_callback": status_callback} if status_callback else {}
        try:
            message = self.client.messages.create(to=to, body=body, **self.sender, **extra)
        except TwilioRestException as exc:
            # 4xx: the provider refused this message for a reason that sending it again will not
            # change (a bad number, an unsubscribed recipient, our credentials); 429 and 5xx pass.
            permanent = exc.code in PERMANENT_CODES or (400 <= exc.status < 500 and exc.status != 429)
            reason = explain(exc.code) or exc.msg
            raise SmsError(f"The SMS provider refused the message ({exc.code or exc.status}: {reason}).",
                           code=exc.code, permanent=permanent) from exc
        except (requests.RequestException, TwilioException) as exc:
            raise SmsError(f"The SMS provider could not be reached ({exc.__class__.__name__}).") from exc
        return SmsResult(sid=message.sid, status=message.status or QUEUED)


SANDBOX_FAILURES = {
    "+15005550001": (INVALID_NUMBER, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550004": (UNSUBSCRIBED, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (NOT_SMS_CAPABLE, "The 'To' phone number is not currently reachable via SMS"),
}


class SandboxSender:
    """Sends nothing. Every other number is "delivered" at once (there is no callback to wait for);
    the test numbers above fail the way the provider fails them."""

    name = "sandbox"

    def send(self, *, to: str, body: str, status_callback: str = "") -> SmsResult:
        if not to or not body:
            raise SmsError("A text needs a number and a body.", permanent=True)
        if to in SANDBOX_FAILURES:
            code, message = SANDBOX_FAILURES[to]
            raise SmsError(f"The SMS provider refused the message ({code}: {explain(code) or message}).",
                           code=code, permanent=True)
        sid = "SMsandbox" + hashlib.sha256(f"{to}\x1f{body}".encode()).hexdigest()[:23]
        return SmsResult(sid=sid, status=DELIVERED)


def get_sms_sender() -> SmsSender:
    """The sender ``settings.SMS_BACKEND`` names: "twilio" or "sandbox"."""
    name = getattr(settings, "SMS_BACKEND", "sandbox")
    if name == "twilio":
        return TwilioSender(
            account_sid=settings.TWILIO_ACCOUNT_SID, auth_token=settings.TWILIO_AUTH_TOKEN,
            from_number=settings.TWILIO_FROM_NUMBER, messaging_service_sid=settings.TWILIO_MESSAGING_SERVICE_SID,
            api_base=settings.TWILIO_API_BASE, timeout=settings.TWILIO_TIMEOUT,
        )
    if name == "sandbox":
        return SandboxSender()
    raise SmsError(f"Unknown SMS backend {name!r}; set SMS_BACKEND to 'twilio' or 'sandbox'.", permanent=True)


def signature_is_valid(*, auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    """True when ``signature`` (the ``X-Twilio-Signature`` header) was made with ``auth_token`` for
    a POST of ``params`` to ``url`` (the exact public URL the provider called)."""
    if not auth_token or not signature:
        return False
    return RequestValidator(auth_token).validate(url, params, signature)


def mask_phone(number: str) -> str:
    """``+15125551234`` → ``•••-•••-1234``: enough to tell two numbers apart, not to call one."""
    digits = "".join(c for c in str(number or "") if c.isdigit())
    return f"•••-•••-{digits[-4:]}" if len(digits) >= 4 else "•••"


def mask_email(address: str) -> str:
    """``olivia.nguyen@mail.example`` → ``o•••@mail.example``."""
    local, at, domain = str(address or "").partition("@")
    return f"{local[:1]}•••@{domain}" if at else "•••"
