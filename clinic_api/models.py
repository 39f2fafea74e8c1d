"""The clinic API's records: per-clinic API keys (stored hashed), the answers kept for retried
requests (``Idempotency-Key``), the cart's "ready for review" requests, and outbound webhooks
(subscriptions, one delivery per event and URL, a cursor over the lines' status history)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from clinics.models import Clinic
from fizy.lib.encryption import EncryptedTextField


class Scope(models.TextChoices):
    CART_WRITE = "cart:write", "cart:write — fill and validate the cart"
    ORDERS_READ = "orders:read", "orders:read — read orders, their lines' status, tracking and money"
    PATIENTS_WRITE = "patients:write", "patients:write — create, update and read patients"
    WEBHOOKS_MANAGE = "webhooks:manage", "webhooks:manage — subscribe URLs to events"


class ApiKey(models.Model):
    """A clinic's key for its own systems (its EHR). The secret is shown once; only its SHA-256 is
    kept. ``prefix`` (the token's first characters) finds the row; the hash proves the rest."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80, help_text="Who uses it, e.g. 'EHR sync'. The audit trail shows it.")
    prefix = models.CharField(max_length=16, unique=True)
    hashed = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the whole token, hex.")
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["clinic", "name"], name="api_key_name_unique_per_clinic")]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def audit_label(self) -> str:
        return f"API key '{self.name}'"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class IdempotentRequest(models.Model):
    """The first answer to a request sent with an ``Idempotency-Key``: a retry with the same key and
    body gets it again and changes nothing; the same key with another body is refused."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique_per_api_key")]


class ReviewRequest(models.Model):
    """The clinic's systems said the cart is ready: a coordinator reviews it and places the order."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    cart_id = models.BigIntegerField()
    cart_version = models.PositiveIntegerField()
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    note = models.CharField(max_length=300, blank=True)
    lines = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]


class WebhookEvent(models.TextChoices):
    LINE_STATUS_CHANGED = "line.status_changed", "line.status_changed — a line moved to another status"
    LINE_NEEDS_ATTENTION = "line.needs_attention", "line.needs_attention — rejected, on hold or failed"
    ORDER_SETTLED = "order.settled", "order.settled — every line of an order reached its final status"
    PRESCRIPTION_REFILLS_EXHAUSTED = "prescription.refills_exhausted", "prescription.refills_exhausted — no refills left"


class WebhookSubscription(models.Model):
    """A URL of the clinic's that receives the events it chose, signed with its own secret
    (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="webhook_subscriptions")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    secret = EncryptedTextField(help_text="whsec_… (Standard Webhooks); encrypted at rest.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.url} ({', '.join(self.events)})"


class WebhookDelivery(models.Model):
    """One event sent to one subscription: queued, retried with backoff, delivered or given up."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        RETRYING = "retrying", "Will retry"
        FAILED = "failed", "Gave up"

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    message_id = models.CharField(max_length=60, unique=True, help_text="The webhook-id header: the same on every retry.")
    source = models.CharField(max_length=60, help_text="What caused it (e.g. line_event:42); unique per subscription.")
    payload = models.JSONField(default=dict, help_text="Ids and statuses only: no names, no prescription text.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["subscription", "source"], name="webhook_delivery_once_per_source")]


class WebhookCursor(models.Model):
    """How far the webhook scan has read the lines' status history (one row)."""

    scanned_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
