"""Why a partner pharmacy holds or rejects a line: the reason codes of the partner protocol
(``docs/partner-api.md``), in plain words for coordinators, with what the clinic can do about each.

A code is a stable string shared by the protocol, the database, templates and tests. For each:

- ``label``: what happened, in the coordinator's words;
- ``todo``: what the clinic should do next;
- ``partner_side``: the problem is the pharmacy's, not the order's (stock, capability, capacity):
  a rejected line is rerouted to the next eligible partner automatically;
- ``cart_field`` and ``flag_severity``: when the line is re-ordered into the cart, the field the
  problem points at is flagged (``error``: blocks checkout until that field is changed;
  ``warning``: shown until changed or acknowledged, for problems the clinic may settle outside
  Fizy — a call to the pharmacy, a corrected record).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class ReasonCode(models.TextChoices):
    SIG_UNCLEAR = "sig_unclear", "Directions (SIG) unclear"
    LICENSE_UNVERIFIED = "license_unverified", "Prescriber's license not verified"
    DOB_MISMATCH = "dob_mismatch", "Date of birth does not match"
    PRESCRIPTION_NEEDED = "prescription_needed", "Signed prescription needed"
    CLINICAL_QUESTION = "clinical_question", "Pharmacist's clinical question"
    OUT_OF_STOCK = "out_of_stock", "Out of stock at the pharmacy"
    CANNOT_COMPOUND = "cannot_compound", "The pharmacy cannot compound it"
    CAPACITY = "capacity", "The pharmacy is at capacity"
    ADDRESS_UNDELIVERABLE = "address_undeliverable", "Shipping address undeliverable"
    OTHER = "other", "Other"


@dataclass(frozen=True)
class Reason:
    code: str
    label: str
    todo: str
    partner_side: bool = False
    cart_field: str = ""
    flag_severity: str = "warning"


_REASONS = [
    Reason(ReasonCode.SIG_UNCLEAR, ReasonCode.SIG_UNCLEAR.label,
           "Rewrite the directions so dose, route and frequency are explicit, then order the line again.",
           cart_field="sig", flag_severity="error"),
    Reason(ReasonCode.LICENSE_UNVERIFIED, ReasonCode.LICENSE_UNVERIFIED.label,
           "Choose another prescriber licensed in the patient's state, or update the prescriber's license, then order again.",
           cart_field="prescriber", flag_severity="error"),
    Reason(ReasonCode.DOB_MISMATCH, ReasonCode.DOB_MISMATCH.label,
           "Check the patient's date of birth against the prescription and correct it.",
           cart_field="patient"),
    Reason(ReasonCode.PRESCRIPTION_NEEDED, ReasonCode.PRESCRIPTION_NEEDED.label,
           "Send the pharmacy the signed prescription (answer the hold with the file).",
           cart_field="prescriber"),
    Reason(ReasonCode.CLINICAL_QUESTION, ReasonCode.CLINICAL_QUESTION.label,
           "Have the prescriber answer the pharmacist's question.",
           cart_field="clinical_difference"),
    Reason(ReasonCode.OUT_OF_STOCK, ReasonCode.OUT_OF_STOCK.label,
           "Nothing to do: Fizy sends the line to the next eligible pharmacy.", partner_side=True),
    Reason(ReasonCode.CANNOT_COMPOUND, ReasonCode.CANNOT_COMPOUND.label,
           "Nothing to do: Fizy sends the line to the next eligible pharmacy.", partner_side=True),
    Reason(ReasonCode.CAPACITY, ReasonCode.CAPACITY.label,
           "Nothing to do: Fizy sends the line to the next eligible pharmacy.", partner_side=True),
    Reason(ReasonCode.ADDRESS_UNDELIVERABLE, ReasonCode.ADDRESS_UNDELIVERABLE.label,
           "Correct the patient's shipping address, then order the line again.",
           cart_field="patient", flag_severity="error"),
    Reason(ReasonCode.OTHER, ReasonCode.OTHER.label,
           "Read the pharmacy's message; answer it, re-order the line or send it to another pharmacy."),
]
REASONS: dict[str, Reason] = {reason.code: reason for reason in _REASONS}
PARTNER_SIDE = frozenset(code for code, reason in REASONS.items() if reason.partner_side)


def reason_for(code: str) -> Reason:
    """The reason for ``code``; an unknown or blank code reads as ``other``."""
    return REASONS.get(code) or REASONS[ReasonCode.OTHER]
