from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.models import Product
from clinics.models import Clinic, Patient, Prescriber
from prescriptions.models import Prescription

ACTIVE_CART_STATUSES = ["open", "checking_out"]


class Cart(models.Model):
    """The clinic's shared cart. At most one is active (open or checking out) per clinic."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CHECKING_OUT = "checking_out", "Checking out"
        SUBMITTED = "submitted", "Submitted"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="carts")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    version = models.PositiveIntegerField(default=1, help_text="Bumped by every change to the cart's lines.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    checkout_started_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic"], condition=Q(status__in=ACTIVE_CART_STATUSES), name="one_active_cart_per_clinic",
                violation_error_message="This clinic already has an open cart.",
            ),
        ]

    def __str__(self):
        return f"Cart #{self.pk} of {self.clinic.name} ({self.get_status_display()}, v{self.version})"


class CartLine(models.Model):
    """One patient, one product, one prescriber: what a coordinator orders for a patient."""

    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="lines")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cart_lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="cart_lines")
    prescriber = models.ForeignKey(Prescriber, null=True, blank=True, on_delete=models.PROTECT, related_name="cart_lines")
    prescription = models.ForeignKey(
        Prescription, null=True, blank=True, on_delete=models.PROTECT, related_name="cart_lines",
        help_text="The prescription of record this line fills.",
    )
    quantity = models.PositiveIntegerField()
    sig = models.TextField("SIG (directions)", blank=True)
    days_supply = models.PositiveIntegerField(null=True, blank=True)
    refills = models.PositiveSmallIntegerField(default=0)
    clinical_difference = models.TextField(
        "clinical difference statement", blank=True,
        help_text="Why the patient needs the compounded form rather than the commercial product.",
    )
    notes = models.TextField(blank=True)
    acknowledged_warnings = models.JSONField(default=list, blank=True, help_text="Warning codes a coordinator accepted.")
    pharmacy_flag = models.JSONField(
        default=dict, blank=True,
        help_text="What a pharmacy reported when this line was re-ordered from a rejected one: the reason code, the "
                  "field it points at and that field's value then (carts.reorder). Flagged until the field changes.",
    )
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["patient__last_name", "patient__first_name", "patient_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["cart", "patient", "product"], name="cart_line_unique_patient_product"),
        ]

    def __str__(self):
        return f"{self.patient} — {self.product} × {self.quantity}"


class PendingImport(models.Model):
    """An uploaded refill list waiting for its coordinator to confirm it (the preview's rows, as
    plain values): kept here rather than in the session, deleted on confirm or cancel, and
    purged by a schedule once expired (``CSV_IMPORT_PENDING_SECONDS``, an hour by default)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    rows = models.JSONField(help_text="The file's rows: line number and the columns' text.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "clinic"], name="pending_import_owner_clinic")]

    def __str__(self):
        return f"Pending import #{self.pk} ({len(self.rows)} rows)"
