"""Preflight validation of a whole cart, before any card is authorized.

``validate_cart`` returns a list of :class:`Problem` values, each attached to the line and the
CartLine field it concerns (``patient``, ``product``, ``prescriber``, ``prescription``, ``quantity``,
``sig``, ``days_supply``, ``refills``, ``clinical_difference``; ``line_id=None, field="cart"`` for the
cart itself). Every message says what to do. Codes are the module-level constants below; templates,
tests and the API compare against them, never against messages.

Severity: errors block checkout; warnings never do. A warning whose code is in the line's
``acknowledged_warnings`` is still reported, with ``acknowledged=True``, so the page can show it
quietly.

Limits used (documented in docs/routing.md as well):

- quantity: at least 1 and at most the product's ``max_quantity_per_line``;
- days supply: required, 1 to 365 days (a prescription is not filled for more than a year);
- refills: at most 11 (a year of monthly fills); Schedule II: none (federal law); Schedule III–V:
  at most 5 (21 CFR 1306.22);
- SIG: at least 10 characters and 3 meaningful words once placeholder phrases ("as directed",
  "see notes", "n/a", "same as before"…) and filler words are set aside;
- clinical difference statement: at least 20 characters when the product requires one.

The prescription of record (prescriptions/): every line points to one. ``prescription_missing``,
``prescription_expired`` (past its expiry, or cancelled), ``refills_exhausted`` (no fill left; the
fix is to request a new prescription), ``prescription_mismatch`` (the line's product or SIG differs
from the prescription's, or it asks for more than the quantity per fill — less is a partial fill), ``controlled_refill_limit`` (a controlled product's
prescription carries more refills than its schedule allows in the patient's state, or is older
than its schedule's validity) are errors; ``refill_too_soon`` is a warning while less than
``settings.PRESCRIPTION_REFILL_TOO_SOON_SHARE`` of the last fill's days supply has passed since
that fill was *delivered* (it then replaces ``duplicate_therapy``, which counts from the order).

Fixes: each problem carries the fixes it can be given in one action (``Problem.fixes``, each a
:class:`Fix`): another prescriber of the organization licensed (and, for controlled products,
DEA-registered) in the patient's state; the SIG, days supply or clinical difference of the
patient's last order of the product; a quantity that fits the limit or the stock (naming the
pharmacy that can ship it); the missing patient field to type in; acknowledging a warning;
removing the line. They are computed from the same facts, in the same queries.

Queries: a fixed number whatever the cart size — the lines with patient, product and prescriber;
the licenses, in the patients' states, of the lines' prescribers and of the organization's active
prescribers (with the prescriber); their DEA registrations; routing (offerings, partner licenses,
rules), unless the caller passes the decisions it already has; the patients' latest received
order lines; the lines' prescriptions with the other prescriptions of their patients and products;
their last delivered fills. Everything else is checked in memory.

``validate_drafts`` runs the same checks on lines that are not in the cart yet (the add-line form,
the CSV import's preview), so that what the cart would flag is said before a line is added.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from clinics.models import DEARegistration, Patient, Prescriber, PrescriberLicense, date_of_birth_problem
from fulfillment.selectors import latest_lines_by_patient_product
from prescriptions.rules import rule_for
from prescriptions.selectors import PrescriptionFacts, pick_prescription, prescription_facts
from routing.engine import RoutingDecision, route_lines

from .models import Cart, CartLine

ERROR = "error"
WARNING = "warning"

# Problem codes (stable; shared with templates, tests and the API).
CART_EMPTY = "cart_empty"
PATIENT_DOB_MISSING = "patient_dob_missing"
PATIENT_DOB_INVALID = "patient_dob_invalid"
ADDRESS_INCOMPLETE = "address_incomplete"
PRODUCT_INACTIVE = "product_inactive"
PRESCRIBER_MISSING = "prescriber_missing"
PRESCRIBER_INACTIVE = "prescriber_inactive"
PRESCRIBER_NOT_LICENSED_IN_STATE = "prescriber_not_licensed_in_state"
PRESCRIBER_LICENSE_EXPIRED = "prescriber_license_expired"
DEA_REGISTRATION_REQUIRED = "dea_registration_required"
QUANTITY_INVALID = "quantity_invalid"
QUANTITY_OVER_MAX = "quantity_over_max"
SIG_MISSING = "sig_missing"
SIG_TOO_VAGUE = "sig_too_vague"
DAYS_SUPPLY_INVALID = "days_supply_invalid"
REFILLS_INVALID = "refills_invalid"
CLINICAL_DIFFERENCE_REQUIRED = "clinical_difference_required"
NO_ELIGIBLE_PARTNER = "no_eligible_partner"
OUT_OF_STOCK = "out_of_stock"
DUPLICATE_THERAPY = "duplicate_therapy"
# What a pharmacy reported on the order line this cart line re-orders: "pharmacy_" + its reason
# code (fulfillment.reasons), on the field it points at, until that field changes.
PHARMACY_PREFIX = "pharmacy_"

PRESCRIPTION_MISSING = "prescription_missing"
PRESCRIPTION_EXPIRED = "prescription_expired"
REFILLS_EXHAUSTED = "refills_exhausted"
REFILL_TOO_SOON = "refill_too_soon"
PRESCRIPTION_MISMATCH = "prescription_mismatch"
CONTROLLED_REFILL_LIMIT = "controlled_refill_limit"

# What the cart summary lists for each flagged line, next to the patient and product.
TITLES = {
    CART_EMPTY: "the cart is empty",
    PATIENT_DOB_MISSING: "date of birth missing",
    PATIENT_DOB_INVALID: "date of birth not valid",
    ADDRESS_INCOMPLETE: "shipping address incomplete",
    PRODUCT_INACTIVE: "product no longer offered",
    PRESCRIBER_MISSING: "no prescriber",
    PRESCRIBER_INACTIVE: "prescriber inactive",
    PRESCRIBER_NOT_LICENSED_IN_STATE: "prescriber not licensed in the patient's state",
    PRESCRIBER_LICENSE_EXPIRED: "prescriber's license expired",
    DEA_REGISTRATION_REQUIRED: "prescriber needs a DEA registration",
    QUANTITY_INVALID: "quantity missing",
    QUANTITY_OVER_MAX: "quantity over the limit",
    SIG_MISSING: "directions missing",
    SIG_TOO_VAGUE: "directions too vague",
    DAYS_SUPPLY_INVALID: "days supply missing or not valid",
    REFILLS_INVALID: "too many refills",
    CLINICAL_DIFFERENCE_REQUIRED: "clinical difference statement needed",
    NO_ELIGIBLE_PARTNER: "no pharmacy can fill it",
    OUT_OF_STOCK: "not enough in stock",
    DUPLICATE_THERAPY: "refill too soon (warning)",
    "pharmacy_sig_unclear": "the pharmacy found the directions unclear",
    "pharmacy_license_unverified": "the pharmacy could not verify the prescriber",
    "pharmacy_dob_mismatch": "the pharmacy's date of birth did not match",
    "pharmacy_prescription_needed": "the pharmacy needs a signed prescription",
    "pharmacy_clinical_question": "the pharmacist had a clinical question",
    "pharmacy_address_undeliverable": "the pharmacy could not deliver to the address",

    PRESCRIPTION_MISSING: "no prescription on file",
    PRESCRIPTION_EXPIRED: "prescription expired",
    REFILLS_EXHAUSTED: "no refills left: request a new prescription",
    REFILL_TOO_SOON: "refill too soon after the last delivery (warning)",
    PRESCRIPTION_MISMATCH: "differs from the prescription",
    CONTROLLED_REFILL_LIMIT: "controlled-substance refill limit",
}

MIN_DAYS_SUPPLY = 1
MAX_DAYS_SUPPLY = 365
MAX_REFILLS = 11
MAX_REFILLS_SCHEDULE_III_TO_V = 5
SIG_MIN_LENGTH = 10
SIG_MIN_WORDS = 3
CLINICAL_DIFFERENCE_MIN_LENGTH = 20
SIG_EXAMPLE = "e.g. 'Inject 0.25 mg subcutaneously once weekly'"

# Phrases that are not directions. Matched as whole words on the normalized SIG.
VAGUE_SIG_PHRASES = (
    "use as directed", "take as directed", "as directed", "ut dict", "ud",
    "see notes", "see note", "see chart", "see instructions", "refer to notes", "per instructions",
    "as instructed", "as discussed", "as before", "same as before", "same as last time", "same as last",
    "per md", "per doctor", "per provider", "n/a", "na", "none", "tbd", "prn", "as needed",
)
# Words that carry no direction by themselves.
SIG_FILLER_WORDS = frozenset(
    "a an the by your my his her their of to per please patient pt md dr doctor physician provider "
    "prescriber use take same".split()
)


# What a fix does (``Fix.action``).
SET_LINE_FIELD = "set"  # set a line field to ``value``; with ``value=""`` the coordinator types it
SET_PATIENT_FIELD = "patient"  # the coordinator types the patient's ``field``
ACKNOWLEDGE = "acknowledge"  # order anyway (a warning)
REMOVE_LINE = "remove"
USE_PRESCRIPTION = "use-prescription"  # point the line to the prescription ``value`` (its id)
RECORD_PRESCRIPTION = "record-prescription"  # record a prescription in the line's row (form in place)

# Codes a line cannot be added without (the add-line form and the CSV import alike): what only
# the line itself can say. Every other problem is shown before adding and fixed in the cart.
BLOCKS_ADDING = frozenset({"prescriber_missing", "quantity_invalid", "sig_missing", "days_supply_invalid"})
MAX_PRESCRIBER_FIXES = 3


@dataclass(frozen=True)
class Fix:
    """One action that resolves a problem: ``label`` says what it does, in the coordinator's words."""

    action: str
    label: str
    field: str = ""
    value: str = ""

    @property
    def needs_input(self) -> bool:
        return self.action == SET_PATIENT_FIELD or (self.action == SET_LINE_FIELD and self.value == "")


REMOVE = Fix(REMOVE_LINE, "Remove line")


@dataclass(frozen=True)
class Problem:
    line_id: int | None
    field: str
    code: str
    message: str
    severity: str  # ERROR or WARNING
    acknowledged: bool = False
    fixes: tuple[Fix, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    @property
    def title(self) -> str:
        return TITLES.get(self.code, self.code)

    @property
    def is_open(self) -> bool:
        """Still to be dealt with: an error, or a warning nobody acknowledged."""
        return self.is_error or not self.acknowledged

    @property
    def is_warning(self) -> bool:
        return self.severity == WARNING


@dataclass(frozen=True)
class _Facts:
    """What the checks read, fetched once for the whole cart."""

    today: datetime.date
    licenses: dict[tuple[int, str], list[PrescriberLicense]]
    dea_registrations: dict[tuple[int, str], list[DEARegistration]]
    decisions: dict[int, RoutingDecision]
    latest: dict[tuple[int, int], object]  # (patient, product) → OrderLine with placed_at
    # state → [(prescriber, active license)] of the organization's active prescribers, by name
    licensed: dict[str, list[tuple[Prescriber, PrescriberLicense]]]
    prescriptions: PrescriptionFacts = dataclasses.field(default_factory=PrescriptionFacts)

    def prescribers_for(self, state: str, *, controlled: bool) -> list[tuple[Prescriber, PrescriberLicense]]:
        """Active prescribers with an active license in ``state`` (and an active DEA registration
        there for a controlled product)."""
        return [
            (prescriber, lic) for prescriber, lic in self.licensed.get(state, [])
            if not controlled or any(reg.is_active(self.today) for reg in self.dea_registrations.get((prescriber.pk, state), []))
        ]


def _problem(line, field: str, code: str, message: str, severity: str = ERROR, fixes=()) -> Problem:
    return Problem(line_id=line.pk, field=field, code=code, message=message, severity=severity, fixes=tuple(fixes))


def _prescriber_fixes(line, facts: _Facts) -> list[Fix]:
    state = line.patient.state
    candidates = facts.prescribers_for(state, controlled=line.product.is_controlled)
    return [
        Fix(SET_LINE_FIELD, f"Use {prescriber} ({state} license to {lic.expires_on:%b %d, %Y})", "prescriber", str(prescriber.pk))
        for prescriber, lic in candidates if prescriber.pk != line.prescriber_id
    ][:MAX_PRESCRIBER_FIXES]


def _last_order_fix(line, facts: _Facts, field: str, label: str) -> list[Fix]:
    """The value of ``field`` on the patient's last order of this product, when it is usable."""
    previous = facts.latest.get((line.patient_id, line.product_id))
    value = getattr(previous, field, None) if previous is not None else None
    if value in (None, "") or value == getattr(line, field):
        return []
    if field == "sig" and sig_vagueness(value):
        return []
    shown = str(value) if len(str(value)) <= 60 else str(value)[:57] + "…"
    return [Fix(SET_LINE_FIELD, f"{label}: “{shown}”", field, str(value))]


def _type_it(field: str, label: str) -> Fix:
    return Fix(SET_LINE_FIELD, label, field, "")


def _newest(credentials) -> object | None:
    return max(credentials, key=lambda c: c.expires_on, default=None)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- checks, one concern each; each yields the problems of one line ------------------------------


def _check_patient(line, facts: _Facts) -> Iterator[Problem]:
    patient = line.patient
    dob_fix = Fix(SET_PATIENT_FIELD, "Date of birth", "date_of_birth")
    if patient.date_of_birth is None:
        yield _problem(line, "patient", PATIENT_DOB_MISSING,
                       f"Add {patient.full_name}'s date of birth to the patient record; the pharmacy needs it to "
                       "identify the patient.", fixes=[dob_fix])
    else:
        why = date_of_birth_problem(patient.date_of_birth, facts.today)
        if why:
            yield _problem(line, "patient", PATIENT_DOB_INVALID, f"{patient.full_name}: {why}", fixes=[dob_fix])
    missing = patient.missing_address_fields()
    if missing:
        labels = [str(Patient._meta.get_field(name).verbose_name) for name in missing]
        yield _problem(line, "patient", ADDRESS_INCOMPLETE,
                       f"{patient.full_name}'s shipping address is missing the {', '.join(labels)}. Complete the "
                       "patient's address so the order can ship.",
                       fixes=[Fix(SET_PATIENT_FIELD, label.capitalize(), name) for name, label in zip(missing, labels)])


def _check_product(line, facts: _Facts) -> Iterator[Problem]:
    if not line.product.active:
        yield _problem(line, "product", PRODUCT_INACTIVE,
                       f"{line.product} is no longer offered. Remove this line or choose another product.",
                       fixes=[REMOVE])


def _check_prescriber(line, facts: _Facts) -> Iterator[Problem]:
    prescriber, product, state = line.prescriber, line.product, line.patient.state
    if prescriber is None:
        yield _problem(line, "prescriber", PRESCRIBER_MISSING, "Choose the prescriber for this line.",
                       fixes=_prescriber_fixes(line, facts) if state else [])
        return
    if not prescriber.active:
        yield _problem(line, "prescriber", PRESCRIBER_INACTIVE,
                       f"{prescriber} is marked inactive. Choose an active prescriber.",
                       fixes=_prescriber_fixes(line, facts) if state else [])
    if not state:
        return  # address_incomplete already asks for the state; licenses are checked once it is known
    licenses = facts.licenses.get((prescriber.pk, state), [])
    if not licenses:
        yield _problem(line, "prescriber", PRESCRIBER_NOT_LICENSED_IN_STATE,
                       f"{prescriber} has no license in {state}, where {line.patient.full_name}'s order ships. "
                       f"Choose a prescriber licensed in {state}.", fixes=_prescriber_fixes(line, facts))
    elif not any(lic.is_active(facts.today) for lic in licenses):
        newest = _newest(licenses)
        yield _problem(line, "prescriber", PRESCRIBER_LICENSE_EXPIRED,
                       f"{prescriber}'s {state} license {newest.number} expired on {newest.expires_on:%b %d, %Y}. "
                       f"Choose another prescriber licensed in {state} (a renewed license is recorded by Fizy "
                       "operations).", fixes=_prescriber_fixes(line, facts))
    if product.is_controlled:
        registrations = facts.dea_registrations.get((prescriber.pk, state), [])
        if not any(reg.is_active(facts.today) for reg in registrations):
            newest = _newest(registrations)
            why = (f"their {state} registration {newest.number} expired on {newest.expires_on:%b %d, %Y}"
                   if newest else f"they have none in {state}")
            yield _problem(line, "prescriber", DEA_REGISTRATION_REQUIRED,
                           f"{product.name} is a {product.get_dea_schedule_display()} controlled substance: "
                           f"{prescriber} needs an active DEA registration in {state}, and {why}. Choose a "
                           "prescriber who has one.", fixes=_prescriber_fixes(line, facts))


def _check_quantity(line, facts: _Facts) -> Iterator[Problem]:
    product = line.product
    if line.quantity is None or line.quantity < 1:
        yield _problem(line, "quantity", QUANTITY_INVALID, f"Enter a quantity of at least 1 {product.unit}.",
                       fixes=[_type_it("quantity", "Quantity")])
    elif line.quantity > product.max_quantity_per_line:
        limit = product.max_quantity_per_line
        yield _problem(line, "quantity", QUANTITY_OVER_MAX,
                       f"{line.quantity} is over the limit of {_plural(limit, product.unit)} "
                       f"of {product.name} per line. Reduce the quantity to {limit} or fewer.",
                       fixes=[Fix(SET_LINE_FIELD, f"Set quantity to {limit}", "quantity", str(limit))])


def _normalize_sig(sig: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9/]+", " ", sig.lower()).split())


def sig_vagueness(sig: str) -> str | None:
    """Why a SIG is not usable directions (a phrase to quote), or None when it is specific enough."""
    normalized = _normalize_sig(sig)
    remaining = f" {normalized} "
    found = None
    for phrase in VAGUE_SIG_PHRASES:
        if f" {phrase} " in remaining:
            found = found or phrase
            remaining = remaining.replace(f" {phrase} ", " ")
    content = [word for word in remaining.split() if word not in SIG_FILLER_WORDS]
    if len(content) >= SIG_MIN_WORDS and len(sig.strip()) >= SIG_MIN_LENGTH:
        return None
    return f"'{found}' is not directions" if found else "they are too short"


def _check_sig(line, facts: _Facts) -> Iterator[Problem]:
    fixes = [*_last_order_fix(line, facts, "sig", "Last order's directions"), _type_it("sig", "Directions")]
    if not line.sig.strip():
        yield _problem(line, "sig", SIG_MISSING, f"Add directions (SIG), {SIG_EXAMPLE}.", fixes=fixes)
        return
    why = sig_vagueness(line.sig)
    if why:
        yield _problem(line, "sig", SIG_TOO_VAGUE,
                       f"The directions are too vague for the pharmacy ({why}). Write the dose, route and "
                       f"frequency, {SIG_EXAMPLE}.", fixes=fixes)


def _check_days_supply(line, facts: _Facts) -> Iterator[Problem]:
    days = line.days_supply
    if days is None or not MIN_DAYS_SUPPLY <= days <= MAX_DAYS_SUPPLY:
        told = "is missing" if days is None else f"of {days} is not valid"
        yield _problem(line, "days_supply", DAYS_SUPPLY_INVALID,
                       f"The days supply {told}. Enter how many days this fill lasts, from {MIN_DAYS_SUPPLY} "
                       f"to {MAX_DAYS_SUPPLY}.",
                       fixes=[*_last_order_fix(line, facts, "days_supply", "Last order's days supply"),
                              _type_it("days_supply", "Days supply")])


def _max_refills(product) -> int:
    if product.dea_schedule == product.Schedule.II:
        return 0
    if product.is_controlled:
        return MAX_REFILLS_SCHEDULE_III_TO_V
    return MAX_REFILLS


def _check_refills(line, facts: _Facts) -> Iterator[Problem]:
    limit = _max_refills(line.product)
    if line.refills > limit:
        if limit == 0:
            rule = f"{line.product.name} is Schedule II and cannot be refilled. Set refills to 0 and write a new prescription for each fill."
        elif line.product.is_controlled:
            rule = (f"{line.product.name} is {line.product.get_dea_schedule_display()}: at most {limit} refills. "
                    f"Set refills to {limit} or fewer.")
        else:
            rule = f"At most {limit} refills are allowed. Set refills to {limit} or fewer."
        yield _problem(line, "refills", REFILLS_INVALID, f"{_plural(line.refills, 'refill')} requested. {rule}",
                       fixes=[Fix(SET_LINE_FIELD, f"Set refills to {limit}", "refills", str(limit))])


def _check_clinical_difference(line, facts: _Facts) -> Iterator[Problem]:
    if line.product.requires_clinical_difference and len(line.clinical_difference.strip()) < CLINICAL_DIFFERENCE_MIN_LENGTH:
        yield _problem(line, "clinical_difference", CLINICAL_DIFFERENCE_REQUIRED,
                       f"{line.product.name} needs the prescriber's clinical difference statement: explain why "
                       f"{line.patient.full_name} needs the compounded form rather than the commercial product "
                       f"(at least {CLINICAL_DIFFERENCE_MIN_LENGTH} characters).",
                       fixes=[*_last_order_fix(line, facts, "clinical_difference", "Last order's statement"),
                              _type_it("clinical_difference", "Clinical difference statement")])


def _check_routing(line, facts: _Facts) -> Iterator[Problem]:
    decision = facts.decisions.get(line.pk)
    if decision is None or decision.routed or not line.patient.state:
        return  # no state: address_incomplete asks for it
    product, state = line.product, line.patient.state
    if decision.available_stock is not None:
        available = decision.available_stock
        if available:
            who = decision.stock_partner.name if decision.stock_partner else "a pharmacy"
            yield _problem(line, "quantity", OUT_OF_STOCK,
                           f"Only {_plural(available, product.unit)} of {product.name} are in stock at pharmacies "
                           f"that ship to {state}. Reduce the quantity to {available} or fewer, or order the rest later.",
                           fixes=[Fix(SET_LINE_FIELD, f"Set quantity to {available} ({who} ships that to {state})",
                                      "quantity", str(available)), REMOVE])
        else:
            yield _problem(line, "quantity", OUT_OF_STOCK,
                           f"{product.name} is out of stock at every pharmacy that ships to {state}. Remove this "
                           "line or order it later.", fixes=[REMOVE])
        return
    why = "; ".join(decision.ineligible) or f"no partner pharmacy carries {product}"
    yield _problem(line, "product", NO_ELIGIBLE_PARTNER,
                   f"No partner pharmacy can fill this line: {why}. Choose another product, or ask Fizy "
                   f"operations to add a pharmacy that ships {product.name} to {state}.", fixes=[REMOVE])


# Pharmacies' "refill too soon" rule: reordering once three quarters of the supply is used is a
# normal refill (it ships before the patient runs out); earlier than that looks like a duplicate.
REFILL_TOO_SOON_FRACTION = 0.25


def _check_duplicate_therapy(line, facts: _Facts) -> Iterator[Problem]:
    previous = facts.latest.get((line.patient_id, line.product_id))
    if previous is None or not previous.days_supply:
        return
    rx = _prescription_of(line, facts)
    if rx is not None and rx.pk in facts.prescriptions.last_delivered:
        return  # refill_too_soon judges it from the delivery of the prescription's last fill
    received_on = timezone.localdate(previous.placed_at)
    remaining = (received_on + datetime.timedelta(days=previous.days_supply) - facts.today).days
    if remaining > previous.days_supply * REFILL_TOO_SOON_FRACTION:
        yield _problem(line, "product", DUPLICATE_THERAPY,
                       f"{line.patient.full_name} was sent {line.product.name} on {received_on:%b %d, %Y} for "
                       f"{previous.days_supply} days; {_plural(remaining, 'day')} of that supply remain. Remove "
                       "this line, or acknowledge the warning if the early refill is intended.",
                       severity=WARNING, fixes=[Fix(ACKNOWLEDGE, "Order anyway"), REMOVE])


def _check_pharmacy_flag(line, facts: _Facts) -> Iterator[Problem]:
    """A line re-ordered from a rejected one: what the pharmacy reported stays flagged on its field
    until that field changes (an error blocks checkout; a warning may be acknowledged)."""
    from .reorder import flag_value

    flag = line.pharmacy_flag or {}
    field = flag.get("field")
    if not field or flag_value(line, field) != flag.get("value"):
        return
    said = f" (“{flag['message']}”)" if flag.get("message") else ""
    message = (f"{flag.get('partner', 'The pharmacy')} rejected this line in order {flag.get('order_number', '')}: "
               f"{flag.get('label', '').lower()}{said}. {flag.get('todo', '')}")
    severity = ERROR if flag.get("severity") == ERROR else WARNING
    if field == "sig":
        fixes = [_type_it("sig", "Directions")]
    elif field == "prescriber":
        fixes = _prescriber_fixes(line, facts) if line.patient.state else []
    elif field == "clinical_difference":
        fixes = [_type_it("clinical_difference", "Clinical difference statement")]
    elif flag.get("reason_code") == "dob_mismatch":
        fixes = [Fix(SET_PATIENT_FIELD, "Date of birth", "date_of_birth")]
    else:
        fixes = [Fix(SET_PATIENT_FIELD, "Address", "address_line1")]
    if severity == WARNING:
        fixes = [*fixes, Fix(ACKNOWLEDGE, "Checked, order as is")]
    yield _problem(line, field, PHARMACY_PREFIX + flag.get("reason_code", "other"), message, severity, fixes)

# --- the prescription of record ---------------------------------------------------------------

def _prescription_of(line, facts: _Facts):
    """The line's prescription; for a line not in the cart yet (the add form, the CSV preview),
    the one adding it will pick."""
    if line.prescription_id:
        return facts.prescriptions.by_id.get(line.prescription_id)
    if line.pk is not None and line.pk < 0:
        return pick_prescription(facts.prescriptions.by_pair.get((line.patient_id, line.product_id), []),
                                 today=facts.today)
    return None


def _other_prescriptions(line, rx, facts: _Facts) -> list[Fix]:
    usable = [other for other in facts.prescriptions.by_pair.get((line.patient_id, line.product_id), [])
              if other.is_usable(facts.today) and (rx is None or other.pk != rx.pk)]
    best = pick_prescription(usable, today=facts.today)
    if best is None:
        return []
    return [Fix(USE_PRESCRIPTION, f"Use Rx {best.reference} (written {best.written_on:%b %d, %Y}, "
                                  f"{_plural(best.fills_remaining, 'fill')} left)", "prescription", str(best.pk))]


def refills_exhausted_problem(line, rx) -> Problem:
    """The problem of a line whose prescription has no fill left (also when another order took
    the last one while this cart was being checked out)."""
    return _problem(line, "prescription", REFILLS_EXHAUSTED,
                    f"Rx {rx.reference} for {line.product.name} has no fills left (all {rx.refills_authorized + 1} "
                    f"authorized fills are used). Request a new prescription from {rx.prescriber}.",
                    fixes=[Fix(RECORD_PRESCRIPTION, "Request a new prescription", "prescription")])


def _check_prescription(line, facts: _Facts) -> Iterator[Problem]:
    rx = _prescription_of(line, facts)
    record = Fix(RECORD_PRESCRIPTION, "Record the prescription", "prescription")
    if rx is None:
        yield _problem(line, "prescription", PRESCRIPTION_MISSING,
                       f"No prescription of record for {line.product.name} for {line.patient.full_name}. Record it "
                       "(e-prescription reference, signed document, or written by the prescriber) or pick one on file.",
                       fixes=[*_other_prescriptions(line, None, facts), record])
        return
    status = rx.effective_status(facts.today)
    if status in (rx.Status.EXPIRED, rx.Status.CANCELLED):
        why = f"expired on {rx.expires_on:%b %d, %Y}" if status == rx.Status.EXPIRED else "was cancelled"
        yield _problem(line, "prescription", PRESCRIPTION_EXPIRED,
                       f"Rx {rx.reference} for {line.product.name} {why}. Request a new prescription from "
                       f"{rx.prescriber}.",
                       fixes=[*_other_prescriptions(line, rx, facts),
                              Fix(RECORD_PRESCRIPTION, "Request a new prescription", "prescription")])
        return
    if rx.fills_remaining <= 0:
        problem = refills_exhausted_problem(line, rx)
        yield dataclasses.replace(problem, fixes=(*_other_prescriptions(line, rx, facts), *problem.fixes))
        return
    product = line.product
    if product.is_controlled:
        rule = rule_for(schedule=product.dea_schedule, state=line.patient.state)
        if rx.refills_authorized > rule.max_refills:
            yield _problem(line, "prescription", CONTROLLED_REFILL_LIMIT,
                           f"{product.name} is {product.get_dea_schedule_display()}: a prescription may carry at most "
                           f"{_plural(rule.max_refills, 'refill')}, and Rx {rx.reference} carries "
                           f"{rx.refills_authorized}. Request a new prescription within the limit.",
                           fixes=[Fix(RECORD_PRESCRIPTION, "Request a new prescription", "prescription")])
        elif (facts.today - rx.written_on).days > rule.valid_days:
            yield _problem(line, "prescription", CONTROLLED_REFILL_LIMIT,
                           f"{product.name} is {product.get_dea_schedule_display()}: it cannot be refilled more than "
                           f"{rule.valid_days} days after it was written ({rx.written_on:%b %d, %Y}). Request a new "
                           "prescription.", fixes=[Fix(RECORD_PRESCRIPTION, "Request a new prescription", "prescription")])
    if rx.product_id != line.product_id:
        yield _problem(line, "product", PRESCRIPTION_MISMATCH,
                       f"Rx {rx.reference} is for {rx.product.name}, "
                       f"not {product.name}. Pick a prescription for {product.name}, or record one.",
                       fixes=[*_other_prescriptions(line, rx, facts), record])
        return
    if line.quantity and line.quantity > rx.quantity:  # less is a partial fill; more was never prescribed
        yield _problem(line, "quantity", PRESCRIPTION_MISMATCH,
                       f"The prescription (Rx {rx.reference}) is for {_plural(rx.quantity, product.unit)} per fill, "
                       f"this line asks for {line.quantity}. Order what was prescribed, or record the updated "
                       "prescription.",
                       fixes=[Fix(SET_LINE_FIELD, f"Set quantity to {rx.quantity} (as prescribed)", "quantity",
                                  str(rx.quantity)), record])
    if line.sig.strip() and _normalize_sig(line.sig) != _normalize_sig(rx.sig):
        shown = rx.sig if len(rx.sig) <= 60 else rx.sig[:57] + "…"
        yield _problem(line, "sig", PRESCRIPTION_MISMATCH,
                       f"The directions differ from the prescription's (Rx {rx.reference}: “{shown}”). Use the "
                       "prescribed directions, or record the updated prescription.",
                       fixes=[Fix(SET_LINE_FIELD, "Use the prescribed directions", "sig", rx.sig), record])
    delivered = facts.prescriptions.last_delivered.get(rx.pk)
    if delivered is not None and rx.days_supply:
        delivered_on = timezone.localdate(delivered)
        passed = (facts.today - delivered_on).days
        share = settings.PRESCRIPTION_REFILL_TOO_SOON_SHARE
        if passed < rx.days_supply * share:
            yield _problem(line, "prescription", REFILL_TOO_SOON,
                           f"{line.patient.full_name}'s last fill of {product.name} was delivered on "
                           f"{delivered_on:%b %d, %Y}: {_plural(passed, 'day')} of its {rx.days_supply}-day supply have "
                           f"passed (a refill is due once {round(share * 100)}% have). Remove this line, or acknowledge "
                           "the warning if the early refill is intended.",
                           severity=WARNING, fixes=[Fix(ACKNOWLEDGE, "Order anyway"), REMOVE])


CHECKS = (
    _check_pharmacy_flag,
    _check_patient,
    _check_product,
    _check_prescriber,
    _check_quantity,
    _check_sig,
    _check_days_supply,
    _check_refills,
    _check_clinical_difference,
    _check_routing,
    _check_duplicate_therapy,
    _check_prescription,
)


def _fetch_facts(lines: list, *, clinic, today: datetime.date, decisions) -> _Facts:
    prescriber_ids = {line.prescriber_id for line in lines if line.prescriber_id}
    states = {line.patient.state for line in lines if line.patient.state}
    org_prescribers = Q(prescriber__organization_id=clinic.organization_id, prescriber__active=True)
    licenses, registrations = defaultdict(list), defaultdict(list)
    licensed: dict[str, list] = defaultdict(list)
    if states:
        # The lines' own prescribers and every candidate for a fix, in one query.
        found = (PrescriberLicense.objects.filter(Q(prescriber_id__in=prescriber_ids) | org_prescribers, state__in=states)
                 .select_related("prescriber").order_by("prescriber__last_name", "prescriber__first_name", "-expires_on"))
        for lic in found:
            licenses[(lic.prescriber_id, lic.state)].append(lic)
            prescriber = lic.prescriber
            if (prescriber.active and prescriber.organization_id == clinic.organization_id and lic.is_active(today)
                    and all(p.pk != prescriber.pk for p, _ in licensed[lic.state])):
                licensed[lic.state].append((prescriber, lic))
        if any(line.product.is_controlled for line in lines):
            for reg in DEARegistration.objects.filter(Q(prescriber_id__in=prescriber_ids) | org_prescribers,
                                                      state__in=states):
                registrations[(reg.prescriber_id, reg.state)].append(reg)
    if decisions is None:
        decisions = route_lines(lines, clinic=clinic, today=today)
    return _Facts(
        today=today,
        licenses=licenses,
        dea_registrations=registrations,
        decisions=decisions,
        latest=latest_lines_by_patient_product(patient_ids={line.patient_id for line in lines}),
        licensed=licensed,
        prescriptions=prescription_facts(
            clinic=clinic, prescription_ids={line.prescription_id for line in lines if line.prescription_id},
            pairs={(line.patient_id, line.product_id) for line in lines}),
    )


def _with_acknowledgement(problem: Problem, line) -> Problem:
    if problem.is_warning and problem.code in (line.acknowledged_warnings or []):
        return dataclasses.replace(problem, acknowledged=True)
    return problem


def validate_cart(
    cart, *, today: datetime.date | None = None, decisions: dict[int, RoutingDecision] | None = None,
    lines: list | None = None,
) -> list[Problem]:
    """Every problem of the cart, in line order.

    ``decisions``: the result of ``route_lines`` when the caller already routed the
    cart (saves the routing queries); otherwise the cart is routed here. ``lines``: the cart's lines
    when the caller already fetched them *with* ``select_related("patient", "product", "prescriber")``
    (saves one query); otherwise they are fetched here."""
    today = today or timezone.localdate()
    if lines is None:
        lines = cart.lines.select_related("patient", "product", "prescriber")
    lines = list(lines)
    if not lines:
        return [Problem(None, "cart", CART_EMPTY, "The cart is empty. Add a line for each patient to order for.", ERROR)]
    return _validate(lines, clinic=cart.clinic, today=today, decisions=decisions)


def _validate(lines: list, *, clinic, today: datetime.date, decisions=None) -> list[Problem]:
    facts = _fetch_facts(lines, clinic=clinic, today=today, decisions=decisions)
    return [_with_acknowledgement(problem, line) for line in lines for check in CHECKS for problem in check(line, facts)]


def validate_drafts(drafts: list, *, clinic, today: datetime.date | None = None) -> list[list[Problem]]:
    """The problems the cart would show for each of ``drafts`` (unsaved CartLine-like objects with
    patient, product and prescriber set), in the same order, with the same checks and queries.
    A draft for a patient and product already in the cart is checked with the merged quantity."""
    if not drafts:
        return []
    keys = {(d.patient.pk, d.product.pk) for d in drafts}
    in_cart = {
        (line.patient_id, line.product_id): line.quantity
        for line in CartLine.objects.filter(cart__clinic=clinic, cart__status=Cart.Status.OPEN,
                                            patient_id__in={k[0] for k in keys}, product_id__in={k[1] for k in keys})
    }
    checked = [
        # Negative ids: routing and the problems are keyed by line id, and drafts have none yet.
        CartLine(pk=-(index + 1), patient=d.patient, product=d.product, prescriber=d.prescriber,
                 quantity=d.quantity + in_cart.get((d.patient.pk, d.product.pk), 0) if d.quantity else d.quantity,
                 sig=d.sig or "", days_supply=d.days_supply, refills=d.refills or 0,
                 clinical_difference=d.clinical_difference or "")
        for index, d in enumerate(drafts)
    ]
    by_line = problems_by_line(_validate(checked, clinic=clinic, today=today or timezone.localdate()))
    return [[dataclasses.replace(p, line_id=None) for p in by_line.get(line.pk, [])] for line in checked]


def blocks_adding(problems: Iterable[Problem]) -> list[Problem]:
    """The problems a line cannot be added with (see ``BLOCKS_ADDING``)."""
    return [p for p in problems if p.code in BLOCKS_ADDING]


def problems_by_line(problems: Iterable[Problem]) -> dict[int | None, list[Problem]]:
    """Problems grouped by line id (``None``: the cart's own), each group in reported order."""
    grouped: dict[int | None, list[Problem]] = defaultdict(list)
    for problem in problems:
        grouped[problem.line_id].append(problem)
    return dict(grouped)


def problems_by_field(problems: Iterable[Problem]) -> dict[str, list[Problem]]:
    """One line's problems grouped by field, for rendering each beside its input."""
    grouped: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        grouped[problem.field].append(problem)
    return dict(grouped)


def has_blocking_errors(
    problems: Iterable[Problem], *, acknowledged: Collection[tuple[int | None, str]] = (), warnings_block: bool = False
) -> bool:
    """Whether checkout must stay disabled.

    Errors always block. Warnings do not — unless ``warnings_block=True`` (a stricter policy the
    cart page may choose), in which case a warning blocks until it is acknowledged, either on its
    line (``Problem.acknowledged``) or in ``acknowledged``: ``(line_id, code)`` pairs the user just
    acknowledged and that are not saved yet."""
    for problem in problems:
        if problem.is_error:
            return True
        if warnings_block and not (problem.acknowledged or (problem.line_id, problem.code) in acknowledged):
            return True
    return False


@dataclass(frozen=True)
class ProblemCounts:
    errors: int
    warnings: int
    acknowledged_warnings: int
    lines_with_errors: int


def count_problems(problems: Iterable[Problem]) -> ProblemCounts:
    """The summary counts the cart page shows above the lines."""
    problems = list(problems)
    return ProblemCounts(
        errors=sum(p.is_error for p in problems),
        warnings=sum(p.is_warning and not p.acknowledged for p in problems),
        acknowledged_warnings=sum(p.is_warning and p.acknowledged for p in problems),
        lines_with_errors=len({p.line_id for p in problems if p.is_error}),
    )
