from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from localflavor.us.models import USStateField
from simple_history.models import HistoricalRecords

from fizy.lib.encryption import EncryptedTextField
from fizy.lib.money import MoneyField



class Partner(models.Model):
    """A 503A compounding pharmacy we route orders to."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(unique=True, help_text="Used in the partner's webhook URL.")
    active = models.BooleanField(default=True)
    legitscript_id = models.CharField("LegitScript certification ID", max_length=60, blank=True)
    api_base_url = models.URLField("order API base URL", blank=True)
    # Credentials: encrypted at rest, write-only in the admin, never in the history tables.
    api_key = EncryptedTextField("order API key", blank=True, help_text="The Bearer key the partner issued to us.")
    webhook_secret = EncryptedTextField(
        "webhook signing secret", blank=True,
        help_text="The partner signs its status webhooks with it (Standard Webhooks, whsec_…).",
    )
    webhook_secret_next = EncryptedTextField(
        "next webhook signing secret", blank=True,
        help_text="During a rotation: events signed with this secret are accepted too, until it becomes the current one.",
    )
    api_key_changed_at = models.DateTimeField("API key changed", null=True, blank=True, editable=False)
    webhook_secret_changed_at = models.DateTimeField("webhook secret changed", null=True, blank=True, editable=False)
    webhook_secret_next_changed_at = models.DateTimeField("next webhook secret changed", null=True, blank=True, editable=False)
    support_email = models.EmailField(blank=True)
    support_phone = models.CharField(max_length=40, blank=True)
    # What the partner's API offers beyond taking orders (docs/partner-api.md).
    order_lookup = models.BooleanField(
        "offers an order lookup", default=False,
        help_text="GET {API}/orders?idempotency_key=… says whether it received an order. Asked before a "
                  "dispatch that may have reached the partner is declared failed.",
    )
    status_api = models.BooleanField(
        "offers a status call", default=False,
        help_text="GET {API}/orders/{reference} gives each line's status: overdue lines are polled.",
    )
    sends_webhooks = models.BooleanField(
        default=True, help_text="Off: the partner sends no status webhooks, so every open line is polled (needs the status call).",
    )
    poll_minutes = models.PositiveIntegerField(
        "poll every (minutes)", default=15, validators=[MinValueValidator(1)],
        help_text="How often open lines are polled when the partner sends no webhooks, and overdue lines otherwise.",
    )

    CREDENTIAL_FIELDS = ("api_key", "webhook_secret", "webhook_secret_next")

    # Every save keeps a before/after row (the partner's History in the admin); the credentials
    # never go there, only when each was last changed.
    history = HistoricalRecords(excluded_fields=list(CREDENTIAL_FIELDS))

    class Meta:
        ordering = ["name"]
        permissions = [("change_partner_credentials", "Can set a partner's API key and webhook secrets")]

    def __str__(self):
        return self.name

    def set_credential(self, field: str, value: str) -> None:
        """Set one credential and note when (the note, not the secret, is what history shows)."""
        if field not in self.CREDENTIAL_FIELDS:
            raise ValueError(f"{field} is not a partner credential")
        setattr(self, field, value)
        setattr(self, f"{field}_changed_at", timezone.now())

    @property
    def webhook_secrets(self) -> list[str]:
        """The secrets a webhook may be signed with: the current one, then the next one."""
        return [s for s in (self.webhook_secret, self.webhook_secret_next) if s]


class PartnerStateLicense(models.Model):
    """A pharmacy license (resident or non-resident) allowing the partner to ship into a state."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="state_licenses")
    state = USStateField()
    license_number = models.CharField(max_length=40, blank=True)
    expires_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["state"]
        constraints = [models.UniqueConstraint(fields=["partner", "state"], name="partner_state_unique")]

    def __str__(self):
        return f"{self.partner.name} — {self.state}"

    def is_active(self, on=None) -> bool:
        return self.expires_on is None or self.expires_on >= (on or timezone.localdate())


class Product(models.Model):
    class DosageForm(models.TextChoices):
        INJECTABLE = "injectable", "Injectable solution"
        CAPSULE = "capsule", "Capsule"
        TABLET = "tablet", "Tablet"
        TROCHE = "troche", "Troche"
        CREAM = "cream", "Cream"
        SPRAY = "spray", "Nasal spray"
        SUSPENSION = "suspension", "Oral suspension"
        PELLET = "pellet", "Pellet"

    class Schedule(models.TextChoices):
        NONE = "", "Not controlled"
        II = "II", "Schedule II"
        III = "III", "Schedule III"
        IV = "IV", "Schedule IV"
        V = "V", "Schedule V"

    sku = models.CharField("Fizy SKU", max_length=40, unique=True)
    name = models.CharField(max_length=200)
    strength = models.CharField(max_length=100, help_text="e.g. 2.5 mg/mL")
    dosage_form = models.CharField(max_length=20, choices=DosageForm.choices)
    unit = models.CharField(max_length=30, default="unit", help_text="What one quantity is: vial, capsule, tube…")
    dea_schedule = models.CharField("DEA schedule", max_length=3, choices=Schedule.choices, blank=True, default="")
    max_quantity_per_line = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    requires_clinical_difference = models.BooleanField(
        default=False,
        help_text="The prescriber must state the clinical difference from the commercial product (e.g. compounded semaglutide).",
    )
    active = models.BooleanField(default=True)

    # Every save (the admin's too) keeps a before/after row: the object's History page in the admin.
    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "strength"]

    def __str__(self):
        return f"{self.name} {self.strength} ({self.get_dosage_form_display()})"

    @property
    def is_controlled(self) -> bool:
        return bool(self.dea_schedule)


class Offering(models.Model):
    """What a partner charges for a product, and how many it has in stock."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="offerings")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="offerings")
    partner_sku = models.CharField("partner SKU", max_length=60)
    unit_price = MoneyField()
    shipping_fee = MoneyField(default=Decimal("0.00"))
    stock_quantity = models.PositiveIntegerField(default=0)
    stock_reported_at = models.DateTimeField(
        null=True, blank=True, help_text="When the partner last reported its stock (a signed stock event)."
    )
    active = models.BooleanField(default=True)

    # Every save (the admin's too) keeps a before/after row: the object's History page in the admin.
    history = HistoricalRecords()

    class Meta:
        ordering = ["product__name", "partner__name"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "product"], name="offering_partner_product_unique"),
            models.UniqueConstraint(fields=["partner", "partner_sku"], name="offering_partner_sku_unique"),
        ]

    def __str__(self):
        return f"{self.partner.name}: {self.product} @ ${self.unit_price}"
