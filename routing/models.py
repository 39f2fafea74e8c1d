from django.core.exceptions import ValidationError
from django.db import models
from localflavor.us.us_states import STATE_CHOICES
from simple_history.models import HistoricalRecords

from catalog.models import Partner, Product
from clinics.models import Clinic, Organization


def validate_state_codes(value) -> None:
    """A JSON list of two-letter codes from localflavor's ``STATE_CHOICES`` (what Patient.state stores)."""
    if not isinstance(value, list):
        raise ValidationError("Ship-to states must be a list of two-letter state codes.")
    known = dict(STATE_CHOICES)
    unknown = [str(code) for code in value if code not in known]
    if unknown:
        raise ValidationError(
            "Unknown state code(s): %(codes)s. Use two-letter USPS codes such as CA or TX.",
            params={"codes": ", ".join(unknown)}, code="unknown_state",
        )


class RoutingRule(models.Model):
    """Send matching cart lines to one partner.

    Every condition is optional; a blank condition matches anything. Rules are tried by ascending
    ``priority`` (then id); the first matching rule whose partner is eligible for the line wins
    (see ``routing.engine``)."""

    name = models.CharField(max_length=200, help_text="Shown to staff and in routing reasons, e.g. “CA GLP-1 → Harbor”.")
    priority = models.PositiveIntegerField(default=100, db_index=True, help_text="Lower numbers are tried first.")
    active = models.BooleanField(default=True)
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_rules",
        help_text="Only lines for this product. Blank: any product.",
    )
    states = models.JSONField(
        "patient ship-to states", default=list, blank=True, validators=[validate_state_codes],
        help_text="Only patients shipping to one of these states. None selected: any state.",
    )
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_rules",
        help_text="Only carts of this organization's clinics. Blank: any organization.",
    )
    clinic = models.ForeignKey(
        Clinic, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_rules",
        help_text="Only this clinic's cart. Blank: any clinic.",
    )
    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="routing_rules", verbose_name="target partner"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Every save (the admin's too) keeps a before/after row: the object's History page in the admin.
    history = HistoricalRecords()

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        if isinstance(self.states, list):
            self.states = sorted({str(code).strip().upper() for code in self.states if str(code).strip()})
        if self.clinic_id and self.organization_id and self.clinic.organization_id != self.organization_id:
            raise ValidationError(
                {"clinic": f"{self.clinic.name} belongs to {self.clinic.organization.name}, not to "
                           f"{self.organization.name}. Pick a clinic of that organization or clear one of the two."}
            )
        if self.product_id and self.partner_id and not self.partner.offerings.filter(product_id=self.product_id).exists():
            raise ValidationError(
                {"partner": f"{self.partner.name} does not offer {self.product}. Add the offering first or pick "
                            "another partner; otherwise this rule can never apply."}
            )

    def matches(self, *, product_id: int, state: str, clinic_id: int | None, organization_id: int | None) -> bool:
        """Whether the line's facts meet every condition of the rule (eligibility is the engine's job)."""
        return (
            (self.product_id is None or self.product_id == product_id)
            and (not self.states or state in self.states)
            and (self.organization_id is None or self.organization_id == organization_id)
            and (self.clinic_id is None or self.clinic_id == clinic_id)
        )

    @property
    def conditions_summary(self) -> str:
        """One line for the admin list; reads related names, so select_related them."""
        parts = []
        if self.product_id:
            parts.append(f"product {self.product}")
        if self.states:
            parts.append("ships to " + ", ".join(self.states))
        if self.organization_id:
            parts.append(f"organization {self.organization.name}")
        if self.clinic_id:
            parts.append(f"clinic {self.clinic.name}")
        return "; ".join(parts) or "every line"
