import re
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from catalog.models import Partner, Product
from clinics.models import Clinic, Patient, Prescriber
from fizy.lib.money import MoneyField
from prescriptions.models import Prescription

from .reasons import ReasonCode


_ORDER_NUMBER_RE = re.compile(r"^\s*(?:FZ[\s-]*|#)?0*(\d{1,12})\s*$", re.IGNORECASE)


class Order(models.Model):
    """What a clinic submitted in one checkout: one payment, many partner orders."""

    class PaymentStatus(models.TextChoices):
        NONE = "none", "No payment"
        AUTHORIZED = "authorized", "Authorized"
        CAPTURED = "captured", "Captured"
        PARTIALLY_CAPTURED = "partially_captured", "Partially captured"
        CANCELLED = "cancelled", "Authorization cancelled"
        EXPIRED = "expired", "Authorization expired"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="orders")
    # The cart this order was placed from, as a plain value: fulfillment knows nothing of carts.
    cart_id = models.BigIntegerField(null=True, blank=True, unique=True, help_text="The cart it was placed from.")
    placed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    placed_at = models.DateTimeField(db_index=True)
    ship_to = models.JSONField(default=dict, blank=True, help_text="The clinic's NPI, DEA and address at checkout.")
    total = MoneyField(default=Decimal("0.00"))
    currency = models.CharField(max_length=3, default="usd")
    payment_gateway = models.CharField(max_length=20, blank=True)
    payment_reference = models.CharField(max_length=100, blank=True, db_index=True, help_text="PaymentIntent id")
    payment_status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.NONE)
    amount_authorized = MoneyField(default=Decimal("0.00"))
    amount_captured = MoneyField(default=Decimal("0.00"))
    amount_refunded = MoneyField(default=Decimal("0.00"))
    amount_charged_later = MoneyField(
        default=Decimal("0.00"), help_text="Follow-up charges on the saved card for lines accepted after the capture."
    )
    fee = MoneyField(default=Decimal("0.00"), help_text="Fizy's platform fee on this order (the sum of the lines' shares).")
    capture_plan = models.JSONField(
        default=dict, blank=True,
        help_text="The capture settlement is making: line ids and amount, written before Stripe is called so a "
                  "capture that succeeded just before a crash is still attributed to its lines.",
    )
    settlement_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When every line had its partner's final answer and payment settlement was queued."
    )

    class Meta:
        ordering = ["-placed_at", "-id"]

    def __str__(self):
        return f"Order {self.number}"

    @property
    def number(self) -> str:
        return f"FZ-{self.pk:06d}" if self.pk else "FZ-new"

    @staticmethod
    def id_from_number(text: str) -> int | None:
        """The order id in an order number as printed or read out ("FZ-000036", "fz 36", "#36",
        "36"); None when ``text`` is not an order number."""
        match = _ORDER_NUMBER_RE.match(text or "")
        return int(match.group(1)) if match else None

    @property
    def net_charged(self) -> Decimal:
        """What the clinic's card paid for this order: captured + charged separately − refunded."""
        return self.amount_captured + self.amount_charged_later - self.amount_refunded


class PartnerOrder(models.Model):
    """The lines of one order that go to one partner pharmacy, sent in one API call."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="partner_orders")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="partner_orders")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    partner_reference = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(
        null=True, blank=True, help_text="When we last asked the partner for its lines' status (the status call)."
    )
    subtotal = MoneyField(default=Decimal("0.00"))
    shipping_fee = MoneyField(default=Decimal("0.00"))
    is_reroute = models.BooleanField(
        default=False, help_text="Made after checkout for one line another pharmacy rejected (fulfillment.reroute).",
    )

    class Meta:
        ordering = ["order_id", "partner__name", "id"]
        constraints = [
            # Checkout sends one partner order per partner; a rerouted line gets a partner order of its own.
            models.UniqueConstraint(fields=["order", "partner"], condition=Q(is_reroute=False), name="partner_order_unique"),
        ]

    def __str__(self):
        return f"{self.order.number} → {self.partner.name}"


class OrderLine(models.Model):
    """One patient's line in a submitted order, snapshotted at checkout, with its own status."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent to pharmacy"
        ACCEPTED = "accepted", "Accepted"
        COMPOUNDING = "compounding", "Compounding"
        SHIPPED = "shipped", "Shipped"
        DELIVERED = "delivered", "Delivered"
        REJECTED = "rejected", "Rejected"
        ON_HOLD = "on_hold", "On hold"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    partner_order = models.ForeignKey(PartnerOrder, on_delete=models.CASCADE, related_name="lines")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="order_lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    prescriber = models.ForeignKey(Prescriber, null=True, on_delete=models.PROTECT, related_name="order_lines")
    prescription = models.ForeignKey(
        Prescription, null=True, blank=True, on_delete=models.PROTECT, related_name="order_lines",
        help_text="The prescription of record this line used a fill of.",
    )
    # Snapshots taken at checkout: what was ordered, for whom, where it ships, at what price.
    patient_snapshot = models.JSONField(default=dict, help_text="name, date of birth, phone, ship-to address")
    prescriber_snapshot = models.JSONField(default=dict, help_text="name, NPI, license and DEA used")
    product_name = models.CharField(max_length=300)
    partner_sku = models.CharField(max_length=60)
    quantity = models.PositiveIntegerField()
    sig = models.TextField()
    days_supply = models.PositiveIntegerField(null=True)
    refills = models.PositiveSmallIntegerField(default=0)
    clinical_difference = models.TextField(blank=True)
    unit_price = MoneyField()
    shipping_share = MoneyField(default=Decimal("0.00"))
    landed_cost = MoneyField()
    fee_share = MoneyField(default=Decimal("0.00"), help_text="This line's share of the order's platform fee.")
    # What this line was charged (landed cost + fee share) and by which payment, and given back.
    amount_charged = MoneyField(default=Decimal("0.00"))
    amount_refunded = MoneyField(default=Decimal("0.00"))
    charge_reference = models.CharField(max_length=100, blank=True, help_text="The PaymentIntent that charged it.")
    charge_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="A follow-up charge for this line was declined (the clinic must update its card)."
    )
    routing_reason = models.CharField(max_length=300, blank=True)
    rerouted_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="rerouted_to",
        help_text="The rejected line this one replaces at another pharmacy (fulfillment.reroute).",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_reason = models.TextField(blank=True)
    reason_code = models.CharField(
        max_length=30, choices=ReasonCode.choices, blank=True,
        help_text="Why the pharmacy holds or rejected the line (fulfillment/reasons.py).",
    )
    tracking_number = models.CharField(max_length=100, blank=True)
    carrier = models.CharField(max_length=40, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order_id", "id"]
        indexes = [models.Index(fields=["patient", "product"], name="orderline_patient_product_idx")]
        permissions = [("refund_orderline", "Can refund a line after shipment, with a reason (finance)")]

    def __str__(self):
        return f"{self.order.number} line {self.pk}: {self.product_name} × {self.quantity}"

    @property
    def price(self) -> Decimal:
        """What the line costs the clinic: landed cost and its share of the platform fee."""
        return self.landed_cost + self.fee_share

    @property
    def net_charged(self) -> Decimal:
        return self.amount_charged - self.amount_refunded


class LineEvent(models.Model):
    """One status change of a line (or a refused attempt at one), with who caused it."""

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Partner webhook"
        POLL = "poll", "Status poll"
        STAFF = "staff", "Staff"
        SYSTEM = "system", "System"
        CLINIC = "clinic", "Clinic"

    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20)
    to_status = models.CharField(max_length=20)
    applied = models.BooleanField(default=True, help_text="False when the transition was refused.")
    source = models.CharField(max_length=20, choices=Source.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        arrow = "→" if self.applied else "↛"
        return f"line {self.line_id}: {self.from_status} {arrow} {self.to_status} ({self.source})"


class ExpectedTime(models.Model):
    """How long a line may stay in a status before its next event is late (the line is then
    *overdue*: fulfillment/watchdog.py). For one partner, or, without a partner, for every partner
    that has none of its own; without any row, ``settings.LINE_EXPECTED_TIMES`` applies."""

    WATCHED = [OrderLine.Status.SENT, OrderLine.Status.ACCEPTED, OrderLine.Status.COMPOUNDING, OrderLine.Status.SHIPPED]

    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty: every partner without its own expected time for this status.",
    )
    status = models.CharField(
        max_length=20, choices=[(s.value, s.label) for s in WATCHED],
        help_text="While a line is in this status, the next event is expected within the time below.",
    )
    days = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    business_days = models.BooleanField(default=False, help_text="Count Monday to Friday only.")

    class Meta:
        ordering = ["partner__name", "status"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "status"], name="expected_time_per_partner_status"),
            models.UniqueConstraint(fields=["status"], condition=Q(partner__isnull=True), name="expected_time_default_status"),
        ]

    def __str__(self):
        who = self.partner.name if self.partner_id else "Every partner"
        return f"{who}: {OrderLine.Status(self.status).label.lower()} → next event within {self.describe()}"

    def describe(self) -> str:
        unit = "business day" if self.business_days else "day"
        return f"{self.days} {unit}{'' if self.days == 1 else 's'}"


class WebhookEvent(models.Model):
    """Every verified request a partner sent to our webhook endpoint, stored before it is applied.
    (Requests that fail verification are kept as metadata only: RefusedWebhookRequest.)"""

    class Outcome(models.TextChoices):
        RECEIVED = "received", "Received"
        APPLIED = "applied", "Applied"
        DUPLICATE = "duplicate", "Duplicate (already applied)"
        IGNORED = "ignored", "Ignored (stale or refused transition)"
        HELD = "held", "Held for staff (the line had failed)"
        UNAUTHORIZED = "unauthorized", "Bad signature or timestamp"
        INVALID = "invalid", "Malformed"
        UNKNOWN_LINE = "unknown_line", "Unknown line"

    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_events")
    partner_slug = models.CharField(max_length=60)
    event_id = models.CharField(max_length=100, blank=True, db_index=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RECEIVED, db_index=True)
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # An event id is applied at most once per partner; duplicates are still stored, as DUPLICATE.
            models.UniqueConstraint(
                fields=["partner", "event_id"], condition=Q(outcome="applied"), name="webhook_event_applied_once"
            ),
        ]

    def __str__(self):
        return f"{self.partner_slug} {self.event_id or '(no id)'} {self.outcome}"


class RefusedWebhookRequest(models.Model):
    """A request to the webhook endpoint that failed a check before it could be trusted (too
    large, unknown partner, bad signature): its metadata only, never its whole body. Purged after
    ``WEBHOOK_REFUSED_RETENTION_DAYS`` days by a django-q2 schedule."""

    class Check(models.TextChoices):
        TOO_LARGE = "too_large", "Body over the size limit"
        UNKNOWN_PARTNER = "unknown_partner", "Unknown partner"
        NO_SECRET = "no_secret", "Partner has no signing secret"
        SIGNATURE = "signature", "Signature, timestamp or signing headers"
        LEGACY_CLOSED = "legacy_closed", "X-Fizy signature after its transition window"

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    partner_slug = models.CharField(max_length=60, help_text="As given in the URL.")
    source_address = models.GenericIPAddressField(null=True, blank=True)
    size = models.PositiveIntegerField(help_text="Bytes in the body (as declared, for a body refused unread).")
    failed_check = models.CharField(max_length=20, choices=Check.choices)
    detail = models.CharField(max_length=200, blank=True)
    body_prefix = models.TextField(blank=True, help_text="At most the first 1 KB of the body.")

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.partner_slug} refused: {self.get_failed_check_display()}"


class AttentionItem(models.Model):
    """One line that a person must look at: a coordinator of its clinic (the pharmacy rejected or
    held it, or we could not send it) or pharmacy staff (a partner answered a line we had marked
    failed). Open until resolved, and then it says how, by whom and when."""

    class Audience(models.TextChoices):
        CLINIC = "clinic", "Clinic"
        STAFF = "staff", "Pharmacy staff"

    class Kind(models.TextChoices):
        REJECTED = "rejected", "Rejected by the pharmacy"
        ON_HOLD = "on_hold", "On hold at the pharmacy"
        FAILED = "failed", "Could not be sent"
        LATE_ANSWER = "late_answer", "Partner answered a line marked failed"

    class Resolution(models.TextChoices):
        REORDERED = "reordered", "Re-ordered"
        REROUTED = "rerouted", "Sent to another pharmacy"
        DISMISSED = "dismissed", "Dismissed"
        RESUMED = "resumed", "The pharmacy moved the line on"
        ANSWERED = "answered", "Answered; the pharmacy moved the line on"
        RETRIED = "retried", "Sent again"
        CLOSED = "closed", "The line was closed"

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="attention_items")
    line = models.ForeignKey("OrderLine", on_delete=models.CASCADE, related_name="attention_items")
    audience = models.CharField(max_length=10, choices=Audience.choices, default=Audience.CLINIC)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reason_code = models.CharField(max_length=30, blank=True)
    message = models.TextField(blank=True, help_text="What the pharmacy (or dispatch) said when the item opened.")
    opened_at = models.DateTimeField(default=timezone.now, db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True, help_text="The clinic answered the hold; waiting for the pharmacy.")
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_by_label = models.CharField(max_length=150, blank=True)
    resolution_note = models.TextField(blank=True)
    replacement_line = models.ForeignKey(
        "OrderLine", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The line that replaced this one (rerouted).",
    )
    cart_line_id = models.BigIntegerField(null=True, blank=True, help_text="The cart line it was re-ordered into.")
    webhook_event = models.ForeignKey(
        WebhookEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The partner's event that opened it (staff items).",
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["line", "audience"], condition=Q(resolved_at__isnull=True), name="attention_one_open_item_per_line",
            ),
        ]
        indexes = [models.Index(fields=["clinic", "audience", "resolved_at"], name="attention_clinic_open_idx")]

    def __str__(self):
        state = self.get_resolution_display() if self.resolved_at else "open"
        return f"{self.get_kind_display()} — line {self.line_id} ({state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class HoldAnswer(models.Model):
    """What a coordinator sent a pharmacy that holds a line: text and/or one file (a signed
    prescription, a document), stored through Django's default storage, and what the partner said."""

    class Status(models.TextChoices):
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent to the pharmacy"
        FAILED = "failed", "Could not be sent"

    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="hold_answers")
    attention_item = models.ForeignKey(AttentionItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="answers")
    text = models.TextField(blank=True)
    file = models.FileField(upload_to="hold-answers/%Y/%m/", blank=True, max_length=200)
    file_name = models.CharField(max_length=200, blank=True, help_text="The name the file was uploaded with.")
    file_type = models.CharField(max_length=40, blank=True, help_text="Checked from the file's content.")
    file_size = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENDING)
    error = models.TextField(blank=True)
    partner_response_id = models.CharField(max_length=100, blank=True)
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"answer to line {self.line_id} ({self.get_status_display()})"


class PaymentEvent(models.Model):
    """Every payment action on an order: authorized, captured, cancelled, refunded, failed."""

    class Kind(models.TextChoices):
        AUTHORIZED = "authorized", "Authorized"
        CAPTURED = "captured", "Captured"
        PARTIALLY_CAPTURED = "partially_captured", "Partially captured"
        CANCELLED = "cancelled", "Authorization cancelled"
        REFUNDED = "refunded", "Refunded"
        FAILED = "failed", "Failed"
        CHARGED = "charged", "Follow-up charge"

    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="payment_events")
    line = models.ForeignKey(
        "OrderLine", null=True, blank=True, on_delete=models.PROTECT, related_name="payment_events",
        help_text="The line a follow-up charge or a refund was for.",
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="payment_events")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    amount = MoneyField(default=Decimal("0.00"))
    gateway = models.CharField(max_length=20)
    reference = models.CharField(max_length=100, blank=True, help_text="PaymentIntent or refund id")
    message = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.get_kind_display()} ${self.amount} ({self.reference})"


class SandboxPartnerOrder(models.Model):
    """An order received by the built-in sandbox partner pharmacy (demo and tests only): what a
    real partner would keep on its side, so a repeated Idempotency-Key gets the same answer."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    idempotency_key = models.CharField(max_length=100)
    reference = models.CharField(max_length=40, blank=True)
    payload = models.JSONField(default=dict)
    steps_played = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "idempotency_key"], name="sandbox_order_idempotency_key_unique")
        ]

    def __str__(self):
        return f"sandbox {self.partner_id} {self.reference}"
