"""CSV import of a refill list: parse → preview (every row ok or with its errors) → add the good
rows. Parsing resolves patients, products and prescribers in a fixed number of queries, then
checks every resolved row with the cart's own validation (``validate_drafts``): the preview shows
the same problems the cart would, a row is refused for what "Add to cart" refuses
(``BLOCKS_ADDING``), and a row the cart would flag is added and says so before it is."""

import csv
import io
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from catalog.models import Product
from clinics.audit import Action
from clinics.models import Clinic, Patient, Prescriber
from fizy.lib.http import parse_int
from fizy.lib.identifiers import CHART_ID_RE, CHART_ID_RULE
from fizy.lib.spreadsheet import csv_text

from prescriptions.models import Prescription
from prescriptions.selectors import pick_prescription, prescriptions_for_pairs
from prescriptions.services import prescription_record

from .models import Cart, CartLine, PendingImport
from .services import AddResult, LineInput, cart_add_lines
from .validation import Problem, blocks_adding, validate_drafts

MAX_ROWS = 1000

# Accepted header spellings, lower-cased, for each column.
COLUMNS = {
    "chart_id": {"chart_id", "chart id", "chart", "mrn", "patient chart id"},
    "product": {"product", "product sku", "sku", "product name", "product sku or name"},
    "quantity": {"quantity", "qty"},
    "sig": {"sig", "directions"},
    "prescriber_npi": {"prescriber_npi", "prescriber npi", "npi", "prescriber"},
    "days_supply": {"days_supply", "days supply", "days"},
    # optional: the pharmacy's Rx number of the prescription the row fills
    "rx_number": {"rx_number", "rx number", "rx", "rx #", "rx no", "rx_no"},
}
REQUIRED = ["chart_id", "product", "quantity", "sig", "prescriber_npi", "days_supply"]
SAMPLE_HEADER = ["chart_id", "product", "quantity", "sig", "prescriber_npi", "days_supply"]


class ImportFileError(Exception):
    """The file as a whole cannot be read; the message says how to fix it."""


@dataclass
class ImportRow:
    number: int  # the row's line number in the file, as a spreadsheet shows it
    raw: dict
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    patient: Patient | None = None
    product: Product | None = None
    prescriber: Prescriber | None = None
    quantity: int | None = None
    days_supply: int | None = None
    problems: list[Problem] = field(default_factory=list)  # what the cart's validation says of the line
    prescription: Prescription | None = None  # the prescription on file its Rx number names

    @property
    def ok(self) -> bool:
        """The row can be added (it may still be flagged)."""
        return not self.errors and not blocks_adding(self.problems)

    @property
    def flagged(self) -> list[Problem]:
        """The problems the line will show in the cart, once added."""
        return [p for p in self.problems if p.is_open] if self.ok else []

    @property
    def flag_severity(self) -> str:
        return "error" if any(p.is_error for p in self.flagged) else "warning"

    def as_line_input(self) -> LineInput:
        return LineInput(patient=self.patient, product=self.product, prescriber=self.prescriber,
                         quantity=self.quantity, sig=self.raw["sig"], days_supply=self.days_supply,
                         prescription=self.prescription)


def _header_map(fieldnames) -> dict[str, str]:
    mapping = {}
    for name in fieldnames or []:
        key = (name or "").strip().lower()
        for column, spellings in COLUMNS.items():
            if key in spellings and column not in mapping:
                mapping[column] = name
    missing = [c for c in REQUIRED if c not in mapping]
    if missing:
        raise ImportFileError(
            f"The file has no column for: {', '.join(missing)}. The first row must name the columns "
            f"{', '.join(SAMPLE_HEADER)} (download the sample to see the layout)."
        )
    return mapping


def _positive_int(text: str, what: str, row: ImportRow, *, maximum: int | None = None) -> int | None:
    text = (text or "").strip()
    if not text:
        row.errors.append(f"{what} is empty.")
        return None
    value = parse_int(text)
    if value is None:
        row.errors.append(f"{what} '{text}' is not a whole number.")
        return None
    if value < 1:
        row.errors.append(f"{what} must be at least 1 (got {value}).")
        return None
    if maximum is not None and value > maximum:
        row.errors.append(f"{what} {value} is more than {maximum}.")
        return None
    return value


def read_refill_csv(text: str) -> list[dict]:
    """The file's refill rows as plain values (what a pending import keeps until it is
    confirmed): ``{"number": <line in the file>, "chart_id": ..., "product": ..., ...}``."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        mapping = _header_map(reader.fieldnames)
        records = []
        for i, record in enumerate(reader, start=2):
            if i - 1 > MAX_ROWS:
                raise ImportFileError(f"The file has more than {MAX_ROWS} rows; split it into smaller lists.")
            raw = {column: (record.get(source) or "").strip() for column, source in mapping.items()}
            if any(raw.values()):  # not a blank line
                records.append({"number": i, **raw})
    except csv.Error as exc:
        raise ImportFileError(f"The file cannot be read as CSV ({exc}). Save it from your spreadsheet as 'CSV UTF-8'.")
    if not records:
        raise ImportFileError("The file has a header row but no refill rows.")
    return records


def parse_refill_csv(*, clinic: Clinic, text: str) -> list[ImportRow]:
    return check_refill_rows(clinic=clinic, records=read_refill_csv(text))


def check_refill_rows(*, clinic: Clinic, records: list[dict]) -> list[ImportRow]:
    """Each row of :func:`read_refill_csv` resolved (patient, product, prescriber) and checked,
    with what is wrong in words. A fixed number of queries, whatever the number of rows."""
    rows = [ImportRow(number=record["number"], raw={c: str(record.get(c) or "") for c in COLUMNS})
            for record in records]

    org_id = clinic.organization_id
    # Chart ids are matched case-insensitively, as coordinators type them by hand.
    patients = {p.chart_id.lower(): p for p in Patient.objects.annotate(chart_lower=Lower("chart_id")).filter(
        organization_id=org_id, chart_lower__in={r.raw["chart_id"].lower() for r in rows})}
    prescribers = {p.npi: p for p in Prescriber.objects.filter(
        organization_id=org_id, npi__in={r.raw["prescriber_npi"] for r in rows})}
    products_by_sku, products_by_name = {}, {}
    names = {r.raw["product"].lower() for r in rows}
    product_q = Q(sku__in={r.raw["product"] for r in rows}) | Q(offerings__partner_sku__in={r.raw["product"] for r in rows})
    for name in names:
        product_q |= Q(name__iexact=name)
    for product in Product.objects.filter(product_q, active=True).prefetch_related("offerings").distinct():
        products_by_sku[product.sku.lower()] = product
        for offering in product.offerings.all():
            products_by_sku.setdefault(offering.partner_sku.lower(), product)
        products_by_name.setdefault(product.name.lower(), []).append(product)

    seen: dict[tuple[int, int], int] = {}
    for row in rows:
        raw = row.raw
        row.patient = patients.get(raw["chart_id"].lower())
        if not raw["chart_id"]:
            row.errors.append("Chart ID is empty.")
        elif not CHART_ID_RE.match(raw["chart_id"]):
            row.errors.append(f"Chart ID '{raw['chart_id']}': {CHART_ID_RULE}")
        elif row.patient is None:
            row.errors.append(f"No patient with chart ID {raw['chart_id']} in your organization; "
                              f"add the patient first or correct the chart ID.")
        key = raw["product"].lower()
        row.product = products_by_sku.get(key)
        if row.product is None:
            matches = products_by_name.get(key, [])
            if len(matches) == 1:
                row.product = matches[0]
            elif len(matches) > 1:
                row.errors.append(f"'{raw['product']}' matches {len(matches)} products "
                                  f"({', '.join(p.sku for p in matches)}); use the SKU instead.")
            elif not raw["product"]:
                row.errors.append("Product is empty.")
            else:
                row.errors.append(f"Unknown product '{raw['product']}'; use a Fizy SKU (e.g. FZ-SEMA-25) "
                                  f"or the exact product name.")
        row.quantity = _positive_int(raw["quantity"], "Quantity", row)
        row.days_supply = _positive_int(raw["days_supply"], "Days supply", row, maximum=365)
        if not raw["sig"]:
            row.errors.append("SIG (directions) is empty.")
        row.prescriber = prescribers.get(raw["prescriber_npi"])
        if not raw["prescriber_npi"]:
            row.errors.append("Prescriber NPI is empty.")
        elif row.prescriber is None:
            row.errors.append(f"No prescriber with NPI {raw['prescriber_npi']} in your organization.")
    _match_rx_numbers(org_id, rows)
    # The cart's own checks, on every row read without errors, in one pass.
    readable = [row for row in rows if not row.errors]
    for row, problems in zip(readable, validate_drafts([row.as_line_input() for row in readable], clinic=clinic)):
        row.problems = problems
    for row in rows:
        if row.ok:
            pair = (row.patient.pk, row.product.pk)
            if pair in seen:
                row.notes.append(f"Same patient and product as row {seen[pair]}: the quantities will be merged.")
            else:
                seen[pair] = row.number
    return rows


# Directions that fit each dosage form, for the sample file: (SIG, quantity, days supply).
SAMPLE_SIGS = {
    Product.DosageForm.INJECTABLE: ("Inject 0.25 mL subcutaneously once weekly", 1, 28),
    Product.DosageForm.CAPSULE: ("Take 1 capsule by mouth at bedtime", 30, 30),
    Product.DosageForm.TABLET: ("Take 1 tablet by mouth once daily", 30, 30),
    Product.DosageForm.TROCHE: ("Dissolve 1 troche under the tongue once daily", 30, 30),
    Product.DosageForm.CREAM: ("Apply 1 g to the inner forearm once daily at bedtime", 1, 30),
    Product.DosageForm.SPRAY: ("Spray 1 mL onto the scalp twice daily", 1, 30),
    Product.DosageForm.SUSPENSION: ("Take 5 mL by mouth once daily", 1, 30),
    Product.DosageForm.PELLET: ("Insert 1 pellet subcutaneously every 3 months", 1, 90),
}


def sample_row(product: Product) -> tuple[str, int, int]:
    """(SIG, quantity, days supply) that fit ``product``: its dosage form's directions, a
    quantity within its limit."""
    sig, quantity, days = SAMPLE_SIGS.get(product.dosage_form, ("Take 1 by mouth once daily", 1, 30))
    return sig, min(quantity, product.max_quantity_per_line), days


SAMPLE_ROWS = 3
SAMPLE_CANDIDATES = 12  # patients tried with a product of each form, in chart order
SAMPLE_PATIENTS = 200  # patients whose prescriptions on file are tried


def sample_csv(*, clinic: Clinic) -> str:
    """A sample file built from the clinic's own patients, prescribers and real SKUs, that the
    cart's own validation accepts as it is where the clinic's data allows: rows the cart does not
    hold yet; first the prescriptions on file (their directions, quantity per fill and
    prescriber), then a carried product of each dosage form with directions of that form, by a
    prescriber licensed in the patient's state. In a fixed number of queries."""
    patients = [p for p in Patient.objects.filter(organization_id=clinic.organization_id).order_by("chart_id")
                if p.date_of_birth and p.address_is_complete][:SAMPLE_PATIENTS]
    prescribers = list(Prescriber.objects.filter(organization_id=clinic.organization_id, active=True)
                       .prefetch_related("licenses").order_by("last_name", "first_name"))
    by_id = {pr.pk: pr for pr in prescribers}
    carried = list(Product.objects.filter(active=True, dea_schedule="", offerings__isnull=False).distinct().order_by("sku"))
    # One product per dosage form first (the SIGs show how each form reads), then the others.
    first_of_each_form = list({p.dosage_form: p for p in reversed(carried)}.values())[::-1]
    products = sorted(first_of_each_form, key=lambda p: p.sku) + [p for p in carried if p not in first_of_each_form]
    in_cart = set(CartLine.objects.filter(cart__clinic=clinic, cart__status=Cart.Status.OPEN)
                  .values_list("patient_id", "product_id"))
    pairs = [(pt.pk, pr.pk) for pt in patients for pr in products if (pt.pk, pr.pk) not in in_cart]
    on_file = prescriptions_for_pairs(clinic=clinic, pairs=pairs)

    def licensed_for(patient):
        return next((pr for pr in prescribers if any(l.state == patient.state and l.is_active() for l in pr.licenses.all())),
                    prescribers[0] if prescribers else None)

    patient_of = {pt.pk: pt for pt in patients}
    product_of = {pr.pk: pr for pr in products}
    candidates = []
    for (patient_id, product_id) in pairs:  # prescriptions on file first
        rx = pick_prescription(on_file.get((patient_id, product_id), []))
        if rx is not None and rx.is_usable() and rx.prescriber_id in by_id:
            candidates.append(LineInput(patient=patient_of[patient_id], product=product_of[product_id],
                                        prescriber=by_id[rx.prescriber_id], quantity=rx.quantity, sig=rx.sig,
                                        days_supply=rx.days_supply))
    for patient in patients[:SAMPLE_CANDIDATES]:
        prescriber = licensed_for(patient)
        for product in products:
            if (patient.pk, product.pk) in in_cart:
                continue
            sig, quantity, days = sample_row(product)
            candidates.append(LineInput(patient=patient, product=product, prescriber=prescriber, quantity=quantity,
                                        sig=sig, days_supply=days))
    checked = validate_drafts(candidates, clinic=clinic)
    chosen, used_patients, used_products = [], set(), set()
    # Rows the cart accepts first; where there are too few (a new clinic), rows all the same.
    for clean_only in (True, False):
        for item, problems in zip(candidates, checked):
            if len(chosen) == SAMPLE_ROWS:
                break
            if item.patient.pk in used_patients or item.product.pk in used_products:
                continue
            if clean_only and any(p.is_error for p in problems):
                continue
            chosen.append(item)
            used_patients.add(item.patient.pk)
            used_products.add(item.product.pk)
    # Written through the spreadsheet-safe writer: a value that would start a formula stays text.
    return csv_text(SAMPLE_HEADER, ([item.patient.chart_id, item.product.sku, item.quantity, item.sig,
                                     item.prescriber.npi if item.prescriber else "", item.days_supply]
                                    for item in chosen))


# --- the uploaded file between preview and confirmation ---------------------------------------

def pending_import_save(*, clinic: Clinic, owner, records: list[dict]) -> PendingImport:
    """Keep an uploaded file's rows until its coordinator confirms or cancels (one pending file
    per coordinator and clinic: a new upload replaces the previous one)."""
    with transaction.atomic():
        PendingImport.objects.filter(owner=owner, clinic=clinic).delete()
        return PendingImport.objects.create(
            owner=owner, clinic=clinic, rows=records,
            expires_at=timezone.now() + timedelta(seconds=settings.CSV_IMPORT_PENDING_SECONDS),
        )


def pending_import_for(*, clinic: Clinic, owner) -> PendingImport | None:
    """The coordinator's pending file in this clinic, unless it expired."""
    return PendingImport.objects.filter(owner=owner, clinic=clinic, expires_at__gt=timezone.now()).first()


def pending_import_discard(*, clinic: Clinic, owner) -> int:
    """Forget the coordinator's pending file (confirmed or cancelled); how many rows were deleted."""
    return PendingImport.objects.filter(owner=owner, clinic=clinic).delete()[0]


def purge_expired_imports(*, now=None) -> int:
    """Delete every pending file past its expiry (a schedule runs this); how many."""
    return PendingImport.objects.filter(expires_at__lte=now or timezone.now()).delete()[0]


def _match_rx_numbers(org_id: int, rows: list[ImportRow]) -> None:
    """Rows with an Rx number point to that prescription on file (one query); an Rx number not on
    file yet is recorded as an e-prescription reference when the rows are added."""
    numbers = {r.raw.get("rx_number", "").strip() for r in rows} - {""}
    if not numbers:
        return
    on_file: dict[str, list[Prescription]] = {}
    for rx in Prescription.objects.filter(clinic__organization_id=org_id, rx_number__in=numbers):
        on_file.setdefault(rx.rx_number, []).append(rx)
    for row in rows:
        number = row.raw.get("rx_number", "").strip()
        if not number or row.errors:
            continue
        found = on_file.get(number, [])
        mine = [rx for rx in found if (rx.patient_id, rx.product_id) == (row.patient.pk, row.product.pk)]
        if mine:
            row.prescription = max(mine, key=lambda rx: (rx.written_on, rx.pk))
        elif found:
            row.errors.append(f"Rx {number} on file is for another patient or product; check the Rx number.")
        else:
            row.notes.append(f"Rx {number} is not on file yet: it is recorded as an e-prescription reference "
                             "(today, no refills) when the row is added.")


def import_add_rows(*, clinic: Clinic, rows: list[ImportRow], actor) -> AddResult:
    """Add the checked rows to the cart, recording first the prescriptions their new Rx numbers
    name (e-prescription references, audited), in one transaction."""
    with transaction.atomic():
        for row in rows:
            number = row.raw.get("rx_number", "").strip()
            if number and row.prescription is None:
                row.prescription = prescription_record(
                    clinic=clinic, patient=row.patient, prescriber=row.prescriber, product=row.product,
                    sig=row.raw["sig"], quantity=row.quantity, days_supply=row.days_supply or 30,
                    refills_authorized=0, written_on=timezone.localdate(), source=Prescription.Source.ERX,
                    rx_number=number, actor=actor)
        return cart_add_lines(clinic=clinic, actor=actor, action=Action.CART_IMPORT,
                              items=[r.as_line_input() for r in rows])
