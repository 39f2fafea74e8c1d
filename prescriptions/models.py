"""A prescription of record, and the fills ordered on it.

A cart line and an order line *point to* a prescription: the prescriber's order for one patient
and one product (directions, quantity per fill, days supply, refills authorized), with where it
came from — an e-prescription (message id and/or the pharmacy's Rx number), a signed document the
clinic uploaded, or written in Fizy by the prescriber with an attestation.

``fills_remaining`` counts the fills Fizy may still order on it: the original fill plus the
refills authorized, minus the fills used (a fill given back by a line rejected or cancelled
before shipping comes back). ``refills_remaining`` is what a pharmacist calls it: the refills
left after the original fill.
"""

import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from catalog.models import Product
from clinics.models import Clinic, Patient, Prescriber


class Prescription(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXHAUSTED = "exhausted", "No fills left"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    class Source(models.TextChoices):
        ERX = "erx", "E-prescription"
        DOCUMENT = "document", "Signed document"
        WRITTEN = "written", "Written in Fizy (attested)"
        ON_FILE = "on_file", "On file before Fizy tracked prescriptions"

    # The clinic that recorded it. Like the patient, it belongs to the organization: any of its
    # clinics may order on it.
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="prescriptions")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="prescriptions")
    prescriber = models.ForeignKey(Prescriber, on_delete=models.PROTECT, related_name="prescriptions")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="prescriptions")
    sig = models.TextField("SIG (directions)")
    quantity = models.PositiveIntegerField(help_text="Quantity per fill.")
    days_supply = models.PositiveIntegerField(help_text="Days one fill lasts.")
    refills_authorized = models.PositiveSmallIntegerField(default=0)
    fills_remaining = models.PositiveSmallIntegerField(
        help_text="Fills Fizy may still order: the original fill and the refills, minus those used.")
    written_on = models.DateField()
    expires_on = models.DateField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    erx_message_id = models.CharField("e-prescription message id", max_length=100, blank=True)
    rx_number = models.CharField("pharmacy Rx number", max_length=40, blank=True, db_index=True)
    document = models.FileField(upload_to="prescriptions/%Y/%m/", blank=True)
    document_content_type = models.CharField(max_length=40, blank=True)
    attested_name = models.CharField(max_length=200, blank=True, help_text="The prescriber's typed name.")
    attested_at = models.DateTimeField(null=True, blank=True)
    attested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-written_on", "-id"]
        indexes = [models.Index(fields=["patient", "product", "status"], name="rx_patient_product_status_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(fills_remaining__lte=F("refills_authorized") + 1),
                                   name="rx_fills_within_authorized"),
            models.CheckConstraint(condition=Q(expires_on__gte=F("written_on")), name="rx_expires_after_written"),
            models.CheckConstraint(
                condition=~Q(source="erx") | ~Q(erx_message_id="") | ~Q(rx_number=""), name="rx_erx_has_reference"),
            models.CheckConstraint(condition=~Q(source="document") | ~Q(document=""), name="rx_document_has_file"),
            models.CheckConstraint(
                condition=~Q(source="written") | (~Q(attested_name="") & Q(attested_at__isnull=False)),
                name="rx_written_is_attested"),
        ]

    def __str__(self):
        return f"Rx {self.reference} — {self.product} for {self.patient}"

    @property
    def reference(self) -> str:
        return self.rx_number or f"FZ-RX-{self.pk:06d}"

    @property
    def refills_remaining(self) -> int:
        return min(self.fills_remaining, self.refills_authorized)

    def is_expired(self, on: datetime.date | None = None) -> bool:
        return self.expires_on < (on or timezone.localdate())

    def effective_status(self, on: datetime.date | None = None) -> str:
        """The status as of ``on``: an active prescription past its expiry is expired."""
        if self.status == self.Status.ACTIVE and self.is_expired(on):
            return self.Status.EXPIRED
        return self.status

    def is_usable(self, on: datetime.date | None = None) -> bool:
        return self.effective_status(on) == self.Status.ACTIVE and self.fills_remaining > 0

    @property
    def source_label(self) -> str:
        if self.source == self.Source.ERX:
            refs = [r for r in (self.erx_message_id and f"message {self.erx_message_id}",
                                self.rx_number and f"Rx {self.rx_number}") if r]
            return f"E-prescription ({', '.join(refs)})"
        return self.get_source_display()


class Fill(models.Model):
    """One fill of a prescription: reserved while a checkout authorizes the payment, used by an
    order line once the order is placed, given back if that line is rejected or cancelled before
    it ships (or if the checkout fails). The order line is kept as a plain value: fulfillment
    sits above prescriptions."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved for a checkout"
        USED = "used", "Used by an order line"
        GIVEN_BACK = "given_back", "Given back"

    prescription = models.ForeignKey(Prescription, on_delete=models.CASCADE, related_name="fills")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RESERVED)
    hold = models.CharField(max_length=60, blank=True, db_index=True, help_text="The checkout that reserved it.")
    order_line_id = models.BigIntegerField(null=True, blank=True, unique=True)
    reserved_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    given_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["prescription_id", "reserved_at", "id"]
        indexes = [models.Index(fields=["prescription", "delivered_at"], name="fill_rx_delivered_idx")]

    def __str__(self):
        return f"Fill {self.pk} of Rx {self.prescription_id} ({self.status})"
