import datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from localflavor.us.forms import USZipCodeField as USZipCodeFormField
from localflavor.us.models import USStateField, USZipCodeField
from phonenumber_field.modelfields import PhoneNumberField
from simple_history.models import HistoricalRecords

from fizy.lib.identifiers import CHART_ID_RULE, validate_chart_id, validate_dea, validate_npi
from fizy.lib.money import MoneyField, money

US_TIMEZONES = [
    ("America/New_York", "Eastern"),
    ("America/Chicago", "Central"),
    ("America/Denver", "Mountain"),
    ("America/Phoenix", "Mountain (Arizona)"),
    ("America/Los_Angeles", "Pacific"),
    ("America/Anchorage", "Alaska"),
    ("Pacific/Honolulu", "Hawaii"),
]


def validate_us_zip(value: str) -> None:
    """ZIP or ZIP+4, with localflavor's rule (its model field validates only in forms)."""
    USZipCodeFormField().clean(value)


class PostalAddress(models.Model):
    """A US shipping address. Fields may be blank while a record is being completed; the cart's
    validation reports what is missing (``address_incomplete``)."""

    address_line1 = models.CharField("address line 1", max_length=200, blank=True)
    address_line2 = models.CharField("address line 2", max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = USStateField(blank=True)
    zip_code = USZipCodeField("ZIP code", blank=True, validators=[validate_us_zip])

    REQUIRED_ADDRESS_FIELDS = ("address_line1", "city", "state", "zip_code")

    class Meta:
        abstract = True

    def missing_address_fields(self) -> list[str]:
        return [f for f in self.REQUIRED_ADDRESS_FIELDS if not getattr(self, f)]

    @property
    def address_is_complete(self) -> bool:
        return not self.missing_address_fields()

    def address_snapshot(self) -> dict:
        return {
            "line1": self.address_line1,
            "line2": self.address_line2,
            "city": self.city,
            "state": self.state,
            "zip": self.zip_code,
        }

    @property
    def address_one_line(self) -> str:
        street = ", ".join(p for p in (self.address_line1, self.address_line2) if p)
        return ", ".join(p for p in (street, self.city, f"{self.state} {self.zip_code}".strip()) if p)


class Organization(models.Model):
    """A cash-pay practice or telehealth brand; owns its patients and prescribers."""

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Fizy's disclosed platform fee, set by staff: its own line on the cart, the review, the order
    # and the receipt; drug prices stay pass-through.
    platform_fee_percent = models.DecimalField(
        "platform fee (% of drug cost)", max_digits=5, decimal_places=2, default=Decimal("0.00"),
        validators=[MinValueValidator(Decimal("0.00")), MaxValueValidator(Decimal("100.00"))],
    )
    platform_fee_fixed = MoneyField("platform fee per order ($)", default=Decimal("0.00"))

    # Every save (the admin's too) keeps a before/after row: the object's History page in the admin.
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        permissions = [("change_platform_fee", "Can set an organization's platform fee (finance)")]

    def __str__(self):
        return self.name

    def platform_fee(self, drug_cost: Decimal) -> Decimal:
        """The fee on an order whose drugs (with shipping) cost ``drug_cost``; none on an empty one."""
        if drug_cost <= 0:
            return Decimal("0.00")
        return money(drug_cost * self.platform_fee_percent / 100) + self.platform_fee_fixed


class Clinic(PostalAddress):
    """One location of an organization. Its postal address is the clinic's ship-to address."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="clinics")
    name = models.CharField(max_length=200)
    npi = models.CharField("NPI", max_length=10, validators=[validate_npi])
    dea_number = models.CharField(
        "DEA number", max_length=9, blank=True, validators=[validate_dea],
        help_text="Needed only for clinics that order controlled substances.",
    )
    billing_contact_name = models.CharField(max_length=200, blank=True)
    billing_email = models.EmailField(blank=True)
    billing_phone = PhoneNumberField(blank=True)
    timezone = models.CharField(max_length=40, choices=US_TIMEZONES, default="America/New_York")
    # Billing profile: the clinic's Stripe customer and saved default card, set up once by a clinic admin.
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    payment_method_id = models.CharField(max_length=100, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_exp = models.CharField("card expiry", max_length=7, blank=True, help_text="MM/YYYY")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="clinic_name_unique_per_org"),
        ]

    def __str__(self):
        return f"{self.name} ({self.organization.name})"

    def ship_to_snapshot(self) -> dict:
        """Who orders and where it ships, as an order keeps it."""
        return {"clinic": self.name, "npi": self.npi, "dea": self.dea_number, "address": self.address_snapshot()}


class Membership(models.Model):
    class Role(models.TextChoices):
        COORDINATOR = "coordinator", "Coordinator"
        CLINIC_ADMIN = "clinic_admin", "Clinic admin"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.COORDINATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    # Every save (the admin's too) keeps a before/after row: the object's History page in the admin.
    history = HistoricalRecords()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "clinic"], name="membership_unique")]

    def __str__(self):
        return f"{self.user} @ {self.clinic.name} ({self.get_role_display()})"


class Prescriber(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="prescribers")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    credentials = models.CharField(max_length=30, blank=True, help_text="MD, DO, NP, PA…")
    npi = models.CharField("NPI", max_length=10, validators=[validate_npi])
    dea_number = models.CharField("DEA number", max_length=9, blank=True, validators=[validate_dea])
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["last_name", "first_name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "npi"], name="prescriber_npi_unique_per_org"),
        ]

    def __str__(self):
        suffix = f", {self.credentials}" if self.credentials else ""
        return f"{self.first_name} {self.last_name}{suffix}"

    def snapshot(self, *, state: str) -> dict:
        """The prescriber as an order for a patient in ``state`` keeps them: the license and DEA
        registration valid there. Reads ``licenses`` and ``dea_registrations`` (prefetch them)."""
        license_ = next((c for c in self.licenses.all() if c.state == state and c.is_active()), None)
        dea = next((c for c in self.dea_registrations.all() if c.state == state and c.is_active()), None)
        return {
            "name": str(self), "npi": self.npi, "dea": dea.number if dea else self.dea_number,
            "license": {"state": license_.state, "number": license_.number} if license_ else {},
        }


class _StateCredential(models.Model):
    state = USStateField()
    number = models.CharField(max_length=40)
    expires_on = models.DateField()

    class Meta:
        abstract = True
        ordering = ["state", "-expires_on"]

    def is_active(self, on=None) -> bool:
        return self.expires_on >= (on or timezone.localdate())


class PrescriberLicense(_StateCredential):
    """A state license to practise; a prescriber may prescribe only for patients in such states."""

    prescriber = models.ForeignKey(Prescriber, on_delete=models.CASCADE, related_name="licenses")

    class Meta(_StateCredential.Meta):
        constraints = [
            models.UniqueConstraint(fields=["prescriber", "state", "number"], name="license_unique"),
        ]

    def __str__(self):
        return f"{self.state} license {self.number} (expires {self.expires_on:%Y-%m-%d})"


class DEARegistration(_StateCredential):
    """A DEA registration is per state; controlled products need one in the patient's state."""

    prescriber = models.ForeignKey(Prescriber, on_delete=models.CASCADE, related_name="dea_registrations")
    number = models.CharField(max_length=9, validators=[validate_dea])

    class Meta(_StateCredential.Meta):
        verbose_name = "DEA registration"
        constraints = [
            models.UniqueConstraint(fields=["prescriber", "state", "number"], name="dea_registration_unique"),
        ]

    def __str__(self):
        return f"{self.state} DEA {self.number} (expires {self.expires_on:%Y-%m-%d})"


EARLIEST_DATE_OF_BIRTH = datetime.date(1900, 1, 1)


def date_of_birth_problem(value: datetime.date | None, today: datetime.date | None = None) -> str | None:
    """Why ``value`` cannot be a living patient's date of birth (a sentence), or None when it can.
    The one rule shared by the patient forms (refused on save) and the cart's preflight
    (``patient_dob_invalid`` for a record saved before the rule)."""
    if value is None:
        return None
    today = today or timezone.localdate()
    if value > today:
        return f"The date of birth {value:%m/%d/%Y} is in the future. Enter the patient's real date of birth."
    if value < EARLIEST_DATE_OF_BIRTH:
        return f"The date of birth {value:%m/%d/%Y} is before 1900. Enter the patient's real date of birth."
    return None


def validate_date_of_birth(value: datetime.date | None) -> None:
    problem = date_of_birth_problem(value)
    if problem:
        raise ValidationError(problem, code="invalid_date_of_birth")


class ContactPreference(models.TextChoices):
    NONE = "", "No updates"
    SMS = "sms", "Text message"
    EMAIL = "email", "Email"
    SMS_AND_EMAIL = "sms_and_email", "Text and email"


class Patient(PostalAddress):
    """A patient of an organization; the postal address is where their medication ships."""

    ContactPreference = ContactPreference

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="patients")
    chart_id = models.CharField("chart ID", max_length=40, validators=[validate_chart_id], help_text=CHART_ID_RULE)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField(null=True, blank=True, validators=[validate_date_of_birth])
    phone = PhoneNumberField(blank=True)
    email = models.EmailField(blank=True)
    # Order updates to the patient (the notices app): by the channel they chose, only once they
    # agreed, and never after they asked to stop (by a STOP reply or through their clinic).
    contact_preference = models.CharField(
        "order updates by", max_length=20, choices=ContactPreference.choices, default=ContactPreference.NONE,
        blank=True,
    )
    notices_consent_at = models.DateTimeField(
        "agreed to order updates at", null=True, blank=True,
        help_text="When the patient agreed to receive order updates by text or email.",
    )
    notices_opted_out_at = models.DateTimeField(
        "asked to stop order updates at", null=True, blank=True,
        help_text="Set by a STOP reply or by the clinic; while set, the patient gets no order updates.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["last_name", "first_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "chart_id"], name="patient_chart_id_unique_per_org",
                violation_error_message="Another patient of this organization already has this chart ID.",
            ),
        ]
        indexes = [
            models.Index(Lower("last_name"), "organization", name="patient_last_name_idx"),
        ]

    def __str__(self):
        return f"{self.last_name}, {self.first_name} ({self.chart_id})"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def snapshot(self) -> dict:
        """The patient as an order keeps them, whatever changes on the record later."""
        return {
            "chart_id": self.chart_id, "first_name": self.first_name, "last_name": self.last_name,
            "name": self.full_name, "date_of_birth": self.date_of_birth.isoformat() if self.date_of_birth else "",
            "phone": str(self.phone or ""), "email": self.email, "address": self.address_snapshot(),
        }


class AuditEntry(models.Model):
    """Who did what to which patient's order, in which clinic, and when.

    Written in the same transaction as the change. ``detail`` holds identifiers and field names,
    never prescription text (SIG, notes)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True, help_text="Who, when no user (a partner, the system).")
    clinic = models.ForeignKey(Clinic, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=40, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        who = self.actor or self.actor_label or "system"
        return f"{self.at:%Y-%m-%d %H:%M} {who} {self.action}"


class Approval(models.Model):
    """A change that needs a second Fizy staff member (issue 14): a partner's API URL, a large
    refund. It takes effect only when another staff member with the right role approves it (it is
    then applied by the same service that makes the change); it may be declined instead. The
    services are in ``clinics/approvals.py``."""

    class Kind(models.TextChoices):
        PARTNER_API_URL = "partner.api_url", "Partner order API URL change"
        LINE_REFUND = "order_line.refund", "Refund of an order line"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        APPROVED = "approved", "Approved and applied"
        DECLINED = "declined", "Declined"
        FAILED = "failed", "Approved, but could not be applied"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    summary = models.CharField(max_length=300, help_text="What will change, in words.")
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=40)
    payload = models.JSONField(default=dict, blank=True, help_text="What the change applies (never a secret).")
    clinic = models.ForeignKey(Clinic, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=300, blank=True)
    result = models.CharField(max_length=300, blank=True, help_text="What applying it did, or why it could not.")

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [
            ("approve_partner_api_url", "Can approve another staff member's partner API URL change (integrations)"),
            ("approve_line_refund", "Can approve another staff member's large refund (finance)"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_type", "object_id"], condition=Q(status="pending"),
                                    name="approval_one_pending_per_object"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk}: {self.summary}"


class PatientAccess(models.Model):
    """One patient shown to someone on one page: who (a user, or an API key's name), in which
    clinic, on which page (the URL's name), when. Reads of patient data are logged here (writes
    are in :class:`AuditEntry`); the rows of one request are written together in one INSERT by
    ``clinics.access.PatientAccessMiddleware``. Ids only: no name, no prescription text."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    actor_label = models.CharField(max_length=150, blank=True, help_text="Who, when no user (an API key's name).")
    clinic = models.ForeignKey(Clinic, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    patient = models.ForeignKey(Patient, null=True, on_delete=models.SET_NULL, related_name="accesses")
    page = models.CharField(max_length=120, help_text="The name of the URL the patient was shown on.")
    method = models.CharField(max_length=8, default="GET")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "patient access"
        verbose_name_plural = "patient accesses"
        indexes = [models.Index(fields=["patient", "-at"], name="patient_access_patient_at")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.user or self.actor_label} saw patient {self.patient_id} on {self.page}"
