"""Sending notices: texts through the SMS sender (``fizy.lib.sms``), emails through Django's
email framework; the provider's delivery reports; email when a text cannot be delivered.

A due notice is claimed with a conditional update (one worker sends it), checked again against
the clinic's quiet hours and the patient's consent, and written as one :class:`Message` per
channel before anything is sent. Each message is claimed again before its send, so a message
goes out at most once; a provider that could not be reached is tried again later, a message
that the provider refused for good (an invalid number, a landline) is replaced by an email when
the patient has one. No row lock is held while a provider is called.
"""

from __future__ import annotations

import datetime
import logging
import smtplib

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from fizy.lib import sms
from fulfillment.selectors import tracking_url

from .consent import notice_block_reason, patient_channels, patients_opt_out_by_phone
from .models import Channel, Message, MessageEvent, Notice, NoticeLine, NoticeTemplate
from .timing import quiet_hours_end
from .tracking import link_url, notice_settings_for, tracking_link_for
from .wording import Rendered, compose, items_phrase

log = logging.getLogger(__name__)

MS = Message.Status
NS = Notice.Status
MAX_ATTEMPTS = 4
RETRY_DELAYS = (60, 300, 900)  # seconds before the 2nd, 3rd, 4th attempt
STALE_AFTER = datetime.timedelta(hours=48)  # old news is not sent (a worker outage, a restored backup)
LEASE = datetime.timedelta(minutes=10)  # a claim older than this was interrupted
# Provider statuses, by how far along they are; a late report never moves a message back.
RANK = {MS.QUEUED: 0, MS.SENDING: 1, MS.SENT: 2, MS.DELIVERED: 3, MS.UNDELIVERED: 3, MS.FAILED: 3}
PROVIDER_STATUS = {
    "accepted": MS.QUEUED, "scheduled": MS.QUEUED, "queued": MS.QUEUED, "sending": MS.SENDING, "sent": MS.SENT,
    "delivered": MS.DELIVERED, "read": MS.DELIVERED, "undelivered": MS.UNDELIVERED, "failed": MS.FAILED,
    "canceled": MS.FAILED,
}
DELIVERY_FAILED = frozenset({MS.UNDELIVERED, MS.FAILED})


def status_callback_url() -> str:
    return settings.SITE_URL + reverse("notices:twilio-status")


# --- the words of one notice -------------------------------------------------------------------


def notice_values(notice: Notice) -> dict[str, str]:
    """The placeholder values of ``notice``'s messages (its patient, clinic, lines and link)."""
    notice_settings = notice_settings_for(notice.clinic)
    lines = [nl.line for nl in NoticeLine.objects.filter(notice=notice).select_related("line__product")]
    lines = list({line.pk: line for line in lines}.values())
    shipments = [(line.carrier, line.tracking_number) for line in lines if line.tracking_number]
    shipments = list(dict.fromkeys(shipments))
    carriers = list(dict.fromkeys(carrier for carrier, _ in shipments if carrier))
    tracking = "\n".join(
        f"{carrier} {number}" + (f": {tracking_url(carrier, number)}" if tracking_url(carrier, number) else "")
        for carrier, number in shipments
    )
    link = tracking_link_for(order_id=notice.order_id, patient_id=notice.patient_id)
    return {
        "first_name": notice.patient.first_name,
        "clinic": notice.clinic.name,
        "clinic_phone": notice_settings.phone_for_patients() or "your clinic",
        "link": link_url(link),
        "items": items_phrase(product_names=[line.product.name for line in lines],
                              allowed=notice_settings.products_in_messages),
        "carrier": " and ".join(carriers) or "the carrier",
        "tracking": tracking or "The tracking page shows the carrier's link.",
    }


def notice_compose(notice: Notice, channel: str, values: dict[str, str]) -> Rendered:
    template = NoticeTemplate.objects.filter(clinic_id=notice.clinic_id, milestone=notice.milestone, channel=channel).first()
    return compose(milestone=notice.milestone, channel=channel, values=values, template=template)


# --- notices -------------------------------------------------------------------------------------


def notices_send_due(*, now: datetime.datetime | None = None, limit: int = 500) -> int:
    """Send every notice whose time has come; how many went out."""
    now = now or timezone.now()
    due = list(Notice.objects.filter(status=NS.WAITING, send_after__lte=now).order_by("send_after", "id")
               .values_list("pk", flat=True)[:limit])
    return sum(1 for pk in due if notice_deliver(notice_id=pk, now=now))


def notice_deliver(*, notice_id: int, now: datetime.datetime | None = None) -> bool:
    """Send one due notice on the patient's channels. False when it did not go out now (claimed
    by another worker, quiet hours, or not to be sent at all: the notice says why)."""
    now = now or timezone.now()
    claimed = Notice.objects.filter(pk=notice_id, status=NS.WAITING, send_after__lte=now).update(
        status=NS.SENDING, claimed_at=now)
    if not claimed:
        return False
    notice = Notice.objects.select_related("clinic", "patient", "order").get(pk=notice_id)
    notice_settings = notice_settings_for(notice.clinic)
    later = quiet_hours_end(now, tz=notice.clinic.timezone, start=notice_settings.quiet_hours_start,
                            end=notice_settings.quiet_hours_end)
    if later is not None:
        Notice.objects.filter(pk=notice_id).update(status=NS.WAITING, send_after=later, claimed_at=None)
        return False
    reason = notice_block_reason(notice.patient)
    if not reason and notice.created_at < now - STALE_AFTER:
        reason = "Not sent: it was more than two days old when it could go out."
    if reason:
        Notice.objects.filter(pk=notice_id).update(status=NS.NOT_SENT, reason=reason)
        return False
    values = notice_values(notice)
    with transaction.atomic():
        messages = []
        for channel, address in patient_channels(notice.patient):
            rendered = notice_compose(notice, channel, values)
            messages.append(Message.objects.create(notice=notice, channel=channel, to=address,
                                                   subject=rendered.subject, body=rendered.body, created_at=now))
        Notice.objects.filter(pk=notice_id).update(status=NS.SENT, sent_at=now)
    for message in messages:
        message_send(message_id=message.pk, now=now)
    return True


def _settle_notice(notice_id: int) -> None:
    """A notice none of whose messages reached the patient is failed (with the last reason)."""
    messages = list(Message.objects.filter(notice_id=notice_id).values("status", "error"))
    if messages and all(m["status"] in DELIVERY_FAILED for m in messages):
        reason = next((m["error"] for m in reversed(messages) if m["error"]), "No message could be delivered.")
        Notice.objects.filter(pk=notice_id).update(status=NS.FAILED, reason=reason[:300])
    elif any(m["status"] not in DELIVERY_FAILED for m in messages):
        Notice.objects.filter(pk=notice_id, status=NS.FAILED).update(status=NS.SENT, reason="")


# --- messages ------------------------------------------------------------------------------------


def message_send(*, message_id: int, now: datetime.datetime | None = None) -> str:
    """Send one queued message (claimed: a second call, or a second worker, does nothing).
    Returns its status afterwards."""
    now = now or timezone.now()
    claimed = Message.objects.filter(pk=message_id, status=MS.QUEUED).update(
        status=MS.SENDING, attempts=F("attempts") + 1, next_attempt_at=None)
    if not claimed:
        return Message.objects.filter(pk=message_id).values_list("status", flat=True).first() or ""
    message = Message.objects.select_related("notice__clinic", "notice__patient").get(pk=message_id)
    if message.channel == Channel.SMS:
        status = _send_sms(message, now)
    else:
        status = _send_email(message, now)
    _settle_notice(message.notice_id)
    return status


def _record(message: Message, *, status: str, now, source: str = "send", error_code=None, error: str = "",
            **fields) -> None:
    Message.objects.filter(pk=message.pk).update(status=status, error_code=error_code, error=error[:300], **fields)
    MessageEvent.objects.create(message=message, status=status, error_code=error_code, source=source, at=now)
    message.status = status


def _retry_or_fail(message: Message, now, *, code, error: str) -> bool:
    """Queue another attempt when there are attempts left (True), else record the failure."""
    if message.attempts < MAX_ATTEMPTS:
        delay = RETRY_DELAYS[min(message.attempts, len(RETRY_DELAYS)) - 1]
        Message.objects.filter(pk=message.pk).update(status=MS.QUEUED, error_code=code, error=error[:300],
                                                     next_attempt_at=now + datetime.timedelta(seconds=delay))
        return True
    _record(message, status=MS.FAILED, now=now, error_code=code, error=error)
    return False


def _send_sms(message: Message, now) -> str:
    try:
        sender = sms.get_sms_sender()
        result = sender.send(to=message.to, body=message.body,
                             status_callback=status_callback_url() if sender.name == "twilio" else "")
    except sms.SmsError as exc:
        if not exc.permanent and _retry_or_fail(message, now, code=exc.code, error=exc.message):
            return MS.QUEUED
        if exc.permanent:
            _record(message, status=MS.FAILED, now=now, error_code=exc.code, error=exc.message)
        if exc.code == sms.UNSUBSCRIBED:
            # The provider keeps the patient's STOP: record it here too (and email nothing).
            patients_opt_out_by_phone(phone=message.to, label="SMS provider: recipient unsubscribed")
        else:
            message_fall_back_to_email(message=message, now=now)
        return MS.FAILED
    status = PROVIDER_STATUS.get(result.status, MS.SENT)
    if RANK[status] < RANK[MS.SENT]:
        status = MS.SENT  # the provider has it
    try:
        _record(message, status=status, now=now, provider=sender.name, provider_id=result.sid, sent_at=now)
    except IntegrityError:  # the provider reused an id: keep the message, not the id
        log.warning("SMS provider returned a message id already recorded (message %s)", message.pk)
        _record(message, status=status, now=now, provider=sender.name, sent_at=now)
    return status


def _send_email(message: Message, now) -> str:
    clinic = message.notice.clinic
    email = EmailMessage(subject=message.subject, body=message.body, from_email=settings.DEFAULT_FROM_EMAIL,
                         to=[message.to], reply_to=[clinic.billing_email] if clinic.billing_email else None)
    try:
        email.send(fail_silently=False)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        _record(message, status=MS.FAILED, now=now, error=f"The mail server refused the message ({exc.__class__.__name__}).")
        return MS.FAILED
    except (smtplib.SMTPException, OSError) as exc:
        error = f"The mail server could not be reached ({exc.__class__.__name__})."
        return MS.QUEUED if _retry_or_fail(message, now, code=None, error=error) else MS.FAILED
    _record(message, status=MS.SENT, now=now, provider="email", sent_at=now)
    return MS.SENT


def message_fall_back_to_email(*, message: Message, now=None) -> Message | None:
    """A text that will not arrive is replaced by an email, when the patient has an email and
    still wants updates, and the notice has no email yet. Returns the email (sent), or None."""
    now = now or timezone.now()
    notice = Notice.objects.select_related("clinic", "patient", "order").get(pk=message.notice_id)
    patient = notice.patient
    if message.channel != Channel.SMS or not patient.email or notice_block_reason(patient):
        return None
    rendered = notice_compose(notice, Channel.EMAIL, notice_values(notice))
    try:
        with transaction.atomic():
            email = Message.objects.create(notice=notice, channel=Channel.EMAIL, to=patient.email, subject=rendered.subject,
                                           body=rendered.body, fallback_for=message, created_at=now)
    except IntegrityError:  # the notice already has its email
        return None
    message_send(message_id=email.pk, now=now)
    email.refresh_from_db()
    return email


def messages_retry_due(*, now: datetime.datetime | None = None, limit: int = 500) -> int:
    """Send the messages waiting for another attempt (and any left queued by an interrupted run)."""
    now = now or timezone.now()
    due = Message.objects.filter(status=MS.QUEUED).filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lte=now - datetime.timedelta(minutes=1))
    ).order_by("pk").values_list("pk", flat=True)[:limit]
    return sum(1 for pk in list(due) if message_send(message_id=pk, now=now) in (MS.SENT, MS.DELIVERED))


def reclaim_interrupted(*, now: datetime.datetime | None = None) -> int:
    """Claims that outlived their lease. A notice claimed but never written as messages goes back
    to waiting; a message interrupted while it was being sent is failed, not sent again (the
    provider may have it: a patient should not get the same text twice)."""
    now = now or timezone.now()
    notices = Notice.objects.filter(status=NS.SENDING, claimed_at__lt=now - LEASE).update(
        status=NS.WAITING, claimed_at=None)
    stuck = list(Message.objects.filter(status=MS.SENDING, updated_at__lt=now - LEASE))
    for message in stuck:
        _record(message, status=MS.FAILED, now=now,
                error="Interrupted while sending; not sent again so that the patient is not messaged twice.")
        _settle_notice(message.notice_id)
    return notices + len(stuck)


# --- the provider's delivery reports ----------------------------------------------------------------


def message_record_delivery(*, provider_id: str, provider_status: str, error_code: int | None,
                            now: datetime.datetime | None = None) -> Message | None:
    """Record the provider's report on a message (its status callback). Reports that arrive out
    of order never move a message back; a text that could not be delivered is replaced by an
    email after commit. None when no message has this id."""
    now = now or timezone.now()
    status = PROVIDER_STATUS.get((provider_status or "").lower())
    if status is None or not provider_id:
        return None
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(provider_id=provider_id).first()
        if message is None:
            return None
        MessageEvent.objects.create(message=message, status=provider_status[:20], error_code=error_code,
                                    source="callback", at=now)
        if message.status in DELIVERY_FAILED or message.status == MS.DELIVERED or RANK[status] <= RANK[message.status]:
            return message  # final already, or a late or repeated report
        explained = sms.explain(error_code)
        error = f"Not delivered ({error_code}{': ' + explained if explained else ''})." if status in DELIVERY_FAILED else ""
        Message.objects.filter(pk=message.pk).update(status=status, error_code=error_code if error else None, error=error)
        message.status = status
        if status in DELIVERY_FAILED and message.channel == Channel.SMS:
            transaction.on_commit(lambda: async_task("notices.tasks.fall_back_to_email", message.pk))
        transaction.on_commit(lambda: _settle_notice(message.notice_id))
    return message
