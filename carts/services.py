"""Writes to the clinic's shared cart. Each service locks the cart row first (so concurrent
coordinators are serialised per cart, never per line), writes an audit row in the same
transaction and bumps the cart's version."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import F

from catalog.models import Product
from clinics.audit import Action, audit_record, audit_record_many
from clinics.models import Clinic, Patient, Prescriber

from prescriptions.models import Prescription
from prescriptions.selectors import pick_prescription, prescriptions_for_pairs

from .models import ACTIVE_CART_STATUSES, Cart, CartLine
from .validation import validate_cart

# Fields a coordinator may change on a line (the line form's fields too); prescription text is
# never copied into the audit.
EDITABLE_FIELDS = ["prescriber", "quantity", "sig", "days_supply", "refills", "clinical_difference", "notes"]


# How a merge into an existing line is audited, for each way lines come into the cart.
MERGED = {
    Action.CART_ADD: Action.CART_ADD_MERGE,
    Action.CART_REFILL: Action.CART_REFILL_MERGE,
    Action.CART_IMPORT: Action.CART_IMPORT_MERGE,
    Action.CART_REORDER: Action.CART_REORDER_MERGE,
}


class CartError(Exception):
    """A cart write was refused; the message tells the coordinator what to do."""


class CartLocked(CartError):
    pass


@dataclass
class LineInput:
    """One line to add: what a coordinator typed, or what a refill or a CSV row copies."""

    patient: Patient
    product: Product
    prescriber: Prescriber | None
    quantity: int
    sig: str = ""
    days_supply: int | None = None
    refills: int = 0
    clinical_difference: str = ""
    notes: str = ""
    prescription: Prescription | None = None  # None: the patient's prescription on file is picked


@dataclass
class AddResult:
    created: list[CartLine] = field(default_factory=list)
    merged: list[tuple[CartLine, int]] = field(default_factory=list)  # (line, quantity before)

    def messages(self) -> list[str]:
        out = []
        if self.created:
            n = len(self.created)
            out.append(f"Added {n} line{'s' if n != 1 else ''} to the cart.")
        for line, before in self.merged:
            out.append(
                f"{line.patient.full_name} already had {line.product.name} in the cart: quantity is now "
                f"{line.quantity} (was {before}). Check that the SIG still fits."
            )
        return out


def cart_get_active(*, clinic: Clinic) -> Cart:
    """The clinic's active cart (open or checking out), opening an empty one if there is none.
    The cart shares the caller's ``clinic`` object (and what it has loaded, e.g. its organization)."""
    cart = Cart.objects.filter(clinic=clinic, status__in=ACTIVE_CART_STATUSES).first()
    if cart is None:
        try:
            with transaction.atomic():
                cart = Cart.objects.create(clinic=clinic)
        except IntegrityError:  # another coordinator opened it a moment ago
            cart = Cart.objects.get(clinic=clinic, status__in=ACTIVE_CART_STATUSES)
    cart.clinic = clinic
    return cart


def _lock_open_cart(clinic: Clinic) -> Cart:
    """Inside a transaction: the clinic's open cart, row-locked. Refuses while a checkout runs."""
    cart = cart_get_active(clinic=clinic)
    cart = Cart.objects.select_for_update().get(pk=cart.pk)
    if cart.status != Cart.Status.OPEN:
        raise CartLocked(
            "The cart is being checked out right now, so it cannot be changed. "
            "Wait a moment: if the payment is declined the cart comes back unchanged."
        )
    return cart


def _check_same_organization(clinic: Clinic, item: LineInput) -> None:
    if item.patient.organization_id != clinic.organization_id:
        raise CartError("That patient is not one of this clinic's patients.")
    if item.prescriber is not None and item.prescriber.organization_id != clinic.organization_id:
        raise CartError("That prescriber does not belong to this clinic's organization.")


def _bump(cart: Cart) -> None:
    Cart.objects.filter(pk=cart.pk).update(version=F("version") + 1)
    cart.refresh_from_db(fields=["version", "updated_at"])


def cart_add_lines(*, clinic: Clinic, items: list[LineInput], actor, action: Action = Action.CART_ADD) -> AddResult:
    """Add lines to the clinic's open cart. A patient who already has the product in the cart gets
    the quantity merged into that line (also when one batch holds the same pair twice).
    ``action`` says how they came (added, refilled, imported) in the audit trail."""
    for item in items:
        _check_same_organization(clinic, item)
        if item.quantity < 1:
            raise CartError(f"Quantity for {item.patient.full_name} must be at least 1.")
    result = AddResult()
    if not items:
        return result
    with transaction.atomic():
        cart = _lock_open_cart(clinic)
        existing = {
            (line.patient_id, line.product_id): line
            for line in CartLine.objects.filter(
                cart=cart, patient_id__in={i.patient.pk for i in items}, product_id__in={i.product.pk for i in items}
            )
        }
        to_create: dict[tuple[int, int], CartLine] = {}
        merged: dict[tuple[int, int], tuple[CartLine, int]] = {}
        on_file = prescriptions_for_pairs(clinic=clinic, pairs={
            (i.patient.pk, i.product.pk) for i in items if i.prescription is None})
        for item in items:
            key = (item.patient.pk, item.product.pk)
            prescription = item.prescription or pick_prescription(on_file.get(key, []))
            if prescription is not None and (prescription.patient_id, prescription.product_id) != key:
                raise CartError(f"That prescription is not {item.patient.full_name}'s for {item.product.name}.")
            line = existing.get(key) or to_create.get(key)
            if line is None:
                to_create[key] = CartLine(
                    cart=cart, patient=item.patient, product=item.product, prescriber=item.prescriber,
                    prescription=prescription,
                    quantity=item.quantity, sig=item.sig.strip(), days_supply=item.days_supply, refills=item.refills,
                    clinical_difference=item.clinical_difference.strip(), notes=item.notes.strip(),
                    added_by=actor, updated_by=actor,
                )
                continue
            if key in existing and key not in merged:
                merged[key] = (line, line.quantity)
            line.quantity += item.quantity
            line.updated_by = actor
            if not line.sig and item.sig:
                line.sig = item.sig.strip()
            if line.prescriber_id is None and item.prescriber is not None:
                line.prescriber = item.prescriber
            if line.prescription_id is None and prescription is not None:
                line.prescription = prescription
        created = CartLine.objects.bulk_create(list(to_create.values()))
        if merged:
            CartLine.objects.bulk_update(
                [line for line, _ in merged.values()],
                ["quantity", "sig", "prescriber", "prescription", "updated_by", "updated_at"],
            )
        _bump(cart)
        audit_record_many(
            [dict(action=action, actor=actor, clinic=clinic, patient=line.patient, obj=line,
                  detail={"cart": cart.pk, "product": line.product_id, "quantity": line.quantity})
             for line in created]
            + [dict(action=MERGED[action], actor=actor, clinic=clinic, patient=line.patient, obj=line,
                    detail={"cart": cart.pk, "product": line.product_id, "quantity_before": before,
                            "quantity": line.quantity})
               for line, before in merged.values()]
        )
    result.created = created
    result.merged = list(merged.values())
    return result


def cart_update_line(*, line: CartLine, actor, **changes) -> CartLine:
    """Change a line in place. Only the keys of EDITABLE_FIELDS may change."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise CartError(f"These fields cannot be changed on a cart line: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        cart = _lock_open_cart(line.cart.clinic)
        line = (CartLine.objects.select_for_update(of=("self",)).select_related("patient", "product", "cart__clinic")
                .get(pk=line.pk))
        if line.cart_id != cart.pk:
            raise CartError("That line is no longer in the cart.")
        if "prescriber" in changes and changes["prescriber"] is not None:
            if changes["prescriber"].organization_id != cart.clinic.organization_id:
                raise CartError("That prescriber does not belong to this clinic's organization.")
        if "quantity" in changes and (changes["quantity"] is None or changes["quantity"] < 1):
            raise CartError("Quantity must be at least 1.")
        changed = []
        for name, value in changes.items():
            if isinstance(value, str):
                value = value.strip()
            current = getattr(line, name)
            if (current.pk if hasattr(current, "pk") else current) != (value.pk if hasattr(value, "pk") else value):
                setattr(line, name, value)
                changed.append(name)
        if not changed:
            return line
        line.updated_by = actor
        line.save(update_fields=[*changed, "updated_by", "updated_at"])
        _bump(cart)
        audit_record(action=Action.CART_CHANGE, actor=actor, clinic=cart.clinic, patient=line.patient, obj=line,
                     detail={"cart": cart.pk, "fields": changed})
    return line


def cart_acknowledge_warning(*, line: CartLine, code: str, actor) -> CartLine:
    """Record that a coordinator has seen a warning (e.g. duplicate therapy) and orders anyway."""
    with transaction.atomic():
        cart = _lock_open_cart(line.cart.clinic)
        line = CartLine.objects.select_related("patient").filter(pk=line.pk, cart=cart).first()
        if line is None:
            raise CartError("That line is no longer in the cart.")
        _acknowledge(cart, {line: [code]}, actor)
    return line


def cart_acknowledge_warnings(*, clinic: Clinic, actor) -> int:
    """Acknowledge every warning of the cart nobody has acknowledged yet, at once (the cart
    summary's one button). Returns how many were acknowledged."""
    with transaction.atomic():
        cart = _lock_open_cart(clinic)
        cart.clinic = clinic
        lines = {line.pk: line for line in cart.lines.select_related("patient", "product", "prescriber")}
        wanted: dict[CartLine, list[str]] = defaultdict(list)
        for problem in validate_cart(cart, lines=list(lines.values())):
            if problem.is_warning and not problem.acknowledged:
                wanted[lines[problem.line_id]].append(problem.code)
        return _acknowledge(cart, wanted, actor)


def _acknowledge(cart: Cart, wanted: dict[CartLine, list[str]], actor) -> int:
    """Inside the cart's lock: add the warning codes to each line's acknowledged ones, audited."""
    changed, entries = [], []
    for line, codes in wanted.items():
        new = [code for code in dict.fromkeys(codes) if code not in line.acknowledged_warnings]
        if not new:
            continue
        line.acknowledged_warnings = [*line.acknowledged_warnings, *new]
        line.updated_by = actor
        changed.append(line)
        entries += [dict(action=Action.CART_ACKNOWLEDGE, actor=actor, clinic=cart.clinic, patient=line.patient, obj=line,
                         detail={"cart": cart.pk, "warning": code}) for code in new]
    if changed:
        CartLine.objects.bulk_update(changed, ["acknowledged_warnings", "updated_by", "updated_at"])
        _bump(cart)
        audit_record_many(entries)
    return len(entries)


def cart_remove_line(*, line: CartLine, actor) -> None:
    with transaction.atomic():
        cart = _lock_open_cart(line.cart.clinic)
        line = CartLine.objects.select_related("patient").filter(pk=line.pk, cart=cart).first()
        if line is None:
            return  # already removed by a colleague: the outcome the coordinator wanted
        audit_record(action=Action.CART_REMOVE, actor=actor, clinic=cart.clinic, patient=line.patient, obj=line,
                     detail={"cart": cart.pk, "product": line.product_id, "quantity": line.quantity})
        line.delete()
        _bump(cart)


def cart_line_set_prescription(*, line: CartLine, prescription: Prescription, actor) -> CartLine:
    """Point ``line`` to ``prescription`` (one of the clinic's, for the line's patient and product). Audited."""
    with transaction.atomic():
        cart = _lock_open_cart(line.cart.clinic)
        line = (CartLine.objects.select_for_update(of=("self",)).select_related("patient", "product")
                .filter(pk=line.pk, cart=cart).first())
        if line is None:
            raise CartError("That line is no longer in the cart.")
        if prescription.patient_id != line.patient_id or prescription.product_id != line.product_id:
            raise CartError(f"That prescription is not {line.patient.full_name}'s for {line.product.name}.")
        if line.prescription_id == prescription.pk:
            return line
        line.prescription, line.updated_by = prescription, actor
        line.save(update_fields=["prescription", "updated_by", "updated_at"])
        _bump(cart)
        audit_record(action=Action.CART_CHANGE, actor=actor, clinic=cart.clinic, patient=line.patient, obj=line,
                     detail={"cart": cart.pk, "fields": ["prescription"], "prescription": prescription.pk})
    return line
