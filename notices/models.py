"""Patient notices: what each patient was (or was not) told about their order, and how.

- A :class:`Notice` is one message-worthy moment for one patient in one order (a milestone):
  at most one per (order, patient, milestone), a database constraint. The lines of that patient
  that reached the milestone are its :class:`NoticeLine` rows, one per status change
  (``fulfillment.LineEvent``) that caused it.
- A notice goes out as one :class:`Message` per channel (text, email); the provider's delivery
  reports are :class:`MessageEvent` rows.
- The patient's :class:`TrackingLink` opens their tracking page; every view of it leaves a
  :class:`TrackingAccess` row (no patient data in it).
- Coordinators get an :class:`AttentionAlert` per order on rejections and holds, and a
  :class:`DigestRun` per clinic per day.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from phonenumber_field.modelfields import PhoneNumberField

from clinics.models import Clinic, Patient
from fizy.lib.sms import mask_email, mask_phone
from fulfillment.models import LineEvent, Order, OrderLine


class Milestone(models.TextChoices):
    PLACED = "placed", "Order received by the pharmacy"
    DELAYED = "delayed", "Delayed (on hold)"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    NOT_FILLED = "not_filled", "Not filled (rejected or cancelled)"


class Channel(models.TextChoices):
    SMS = "sms", "Text"
    EMAIL = "email", "Email"


class NoticeSettings(models.Model):
    """A clinic's choices for its patients' notices. A clinic without a row has the defaults."""

    clinic = models.OneToOneField(Clinic, on_delete=models.CASCADE, related_name="notice_settings")
    patient_phone = PhoneNumberField(
        "phone number for patients", blank=True,
        help_text="Shown on tracking pages and in messages. Empty: the clinic's billing phone.",
    )
    quiet_hours_start = models.TimeField(default=datetime.time(21, 0), help_text="No texts or emails from this time…")
    quiet_hours_end = models.TimeField(default=datetime.time(8, 0), help_text="…until this time (the clinic's time zone).")
    digest_hour = models.PositiveSmallIntegerField(
        "daily digest at", default=7, validators=[MaxValueValidator(23)],
        help_text="Hour of the day (0–23, the clinic's time zone) the coordinators' digest is emailed.",
    )
    show_products_on_page = models.BooleanField(
        "show product names on tracking pages", default=True,
        help_text="Off: the tracking page says 'Item 1', 'Item 2' instead of the product.",
    )
    products_in_messages = models.BooleanField(
        "name the products in texts and emails", default=False,
        help_text="Off (recommended): messages say 'your order' and the tracking page carries the detail.",
    )
    link_valid_days = models.PositiveSmallIntegerField(
        "tracking links work for", default=30, validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text="Days after the patient's last line is final (delivered, or not filled).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "notice settings"

    def __str__(self):
        return f"Notice settings of {self.clinic.name}"

    def phone_for_patients(self) -> str:
        number = self.patient_phone or self.clinic.billing_phone
        return number.as_national if number else ""


class NoticeTemplate(models.Model):
    """A clinic's own wording for one milestone on one channel (otherwise the default is used)."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="notice_templates")
    milestone = models.CharField(max_length=20, choices=Milestone.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    subject = models.CharField(max_length=200, blank=True, help_text="Emails only.")
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["clinic_id", "milestone", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "milestone", "channel"], name="notice_template_unique"),
        ]

    def __str__(self):
        return f"{self.clinic.name}: {self.get_milestone_display()} by {self.get_channel_display()}"


class TrackingLink(models.Model):
    """The link that opens one patient's tracking page for one order. The URL carries a signed
    random ``nonce``; a revoked link (and a link past its validity) shows no data."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="tracking_links")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="tracking_links")
    nonce = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "patient"], condition=Q(revoked_at__isnull=True),
                                    name="tracking_link_one_live_per_patient_order"),
        ]

    def __str__(self):
        return f"tracking link {self.pk} (order {self.order_id})"


class TrackingAccess(models.Model):
    """One request for a tracking page: which link (if the token named one), when, from where
    (a keyed hash of the address), and what it was shown. Never any patient data."""

    class Outcome(models.TextChoices):
        SHOWN = "shown", "Shown"
        INVALID = "invalid", "Wrong or tampered link"
        EXPIRED = "expired", "Expired link"
        REVOKED = "revoked", "Revoked link"
        RATE_LIMITED = "rate_limited", "Too many requests"

    link = models.ForeignKey(TrackingLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="accesses")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    ip_hash = models.CharField(max_length=16)
    refresh = models.BooleanField(default=False, help_text="The page's own periodic refresh.")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "tracking accesses"

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.outcome} (link {self.link_id or '—'})"


class ScanCursor(models.Model):
    """How far the milestone scan has read the line events (one row)."""

    scanned_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


class Notice(models.Model):
    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting (batching, or quiet hours)"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        NOT_SENT = "not_sent", "Not sent"
        FAILED = "failed", "Failed"

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="notices")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="notices")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="notices")
    milestone = models.CharField(max_length=20, choices=Milestone.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.WAITING)
    reason = models.CharField(max_length=300, blank=True, help_text="Why it was not sent, or failed.")
    created_at = models.DateTimeField(default=timezone.now)
    send_after = models.DateTimeField(help_text="Not before the batching window closes, and never in quiet hours.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "patient", "milestone"], name="notice_once_per_patient_milestone"),
        ]
        indexes = [models.Index(fields=["status", "send_after"], name="notice_due_idx")]

    def __str__(self):
        return f"{self.get_milestone_display()} for patient {self.patient_id} (order {self.order_id})"


class NoticeLine(models.Model):
    """A line that reached the notice's milestone, and the status change that says so."""

    notice = models.ForeignKey(Notice, on_delete=models.CASCADE, related_name="notice_lines")
    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="+")
    event = models.OneToOneField(LineEvent, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["notice_id", "line_id"]


class Message(models.Model):
    """One notice on one channel: what was sent to which address, and what became of it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Undelivered"
        FAILED = "failed", "Failed"

    notice = models.ForeignKey(Notice, on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    to = models.CharField(max_length=254)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    provider = models.CharField(max_length=20, blank=True)
    provider_id = models.CharField(max_length=64, blank=True, help_text="The provider's message id (SM…).")
    error_code = models.IntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    fallback_for = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                     help_text="The text that failed, when this email replaces it.")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["notice", "channel"], name="message_once_per_notice_channel"),
            models.UniqueConstraint(fields=["provider_id"], condition=~Q(provider_id=""), name="message_provider_id_unique"),
        ]

    def __str__(self):
        return f"{self.get_channel_display()} {self.get_status_display().lower()} (notice {self.notice_id})"

    @property
    def masked_to(self) -> str:
        return mask_phone(self.to) if self.channel == Channel.SMS else mask_email(self.to)

    @property
    def tone(self) -> str:
        return {"sent": "ok", "delivered": "ok", "undelivered": "error", "failed": "error"}.get(self.status, "")


class MessageEvent(models.Model):
    """A delivery report for a message (the provider's status callback, or the send itself)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=20)
    error_code = models.IntegerField(null=True, blank=True)
    source = models.CharField(max_length=20, help_text="send, callback")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]


class SmsReply(models.Model):
    """A text a patient sent back (STOP, START...), as the provider forwarded it."""

    class Keyword(models.TextChoices):
        STOP = "stop", "Stop"
        START = "start", "Start again"
        HELP = "help", "Help"
        OTHER = "other", "Other"

    message_sid = models.CharField(max_length=64, unique=True)
    from_number = models.CharField(max_length=30, help_text="Masked: the last four digits.")
    keyword = models.CharField(max_length=10, choices=Keyword.choices)
    patients = models.PositiveIntegerField(default=0, help_text="How many patient records it changed.")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "SMS replies"


class AttentionAlert(models.Model):
    """An email to the clinic's coordinators: lines of one order were rejected or put on hold.
    Lines that move within the batching window share one alert; one open alert per order."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting (batching)"
        SENT = "sent", "Sent"
        NOT_SENT = "not_sent", "Not sent"

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="attention_alerts")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.WAITING)
    reason = models.CharField(max_length=300, blank=True)
    recipients = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    send_after = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order"], condition=Q(status="waiting"), name="attention_alert_one_open_per_order"),
        ]


class AlertLine(models.Model):
    alert = models.ForeignKey(AttentionAlert, on_delete=models.CASCADE, related_name="alert_lines")
    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="+")
    event = models.OneToOneField(LineEvent, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=20)


class DigestRun(models.Model):
    """The coordinators' daily digest of one clinic on one (clinic-local) day: sent once."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    items = models.PositiveIntegerField(default=0)
    recipients = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day", "clinic_id"]
        constraints = [models.UniqueConstraint(fields=["clinic", "day"], name="digest_once_per_clinic_day")]
