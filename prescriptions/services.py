"""Writes to prescriptions and their fills. Keyword-only services that own their transaction (or
say that they run in the caller's) and write the audit row with the change.

Fills move with a conditional update on the prescription row (``fills_remaining > 0``), in a fixed
order (by prescription id): two checkouts racing for a prescription's last fill cannot both get
it, and never wait on each other in a cycle.
"""

from __future__ import annotations

import datetime
from collections import Counter

from django.core.files.base import File
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from catalog.models import Product
from clinics.audit import Action, audit_record
from clinics.models import Clinic, Patient, Prescriber

from .documents import DocumentRejected, document_content_type, extension_for
from .models import Fill, Prescription
from .rules import default_expiry, rule_for

Source = Prescription.Source
Status = Prescription.Status


class PrescriptionError(Exception):
    """A prescription could not be recorded as given; the message says what to change."""


class FillsUnavailable(Exception):
    """Some prescriptions had no fill left to reserve (another order took the last one, or they
    expired or were cancelled): nothing was reserved. ``prescription_ids`` names them."""

    def __init__(self, prescription_ids: list[int]):
        self.prescription_ids = prescription_ids
        super().__init__(f"No fill left on prescription(s) {', '.join(map(str, prescription_ids))}.")


def prescription_record(
    *, clinic: Clinic, patient: Patient, prescriber: Prescriber, product: Product, sig: str, quantity: int,
    days_supply: int, refills_authorized: int, written_on: datetime.date, source: str, actor,
    erx_message_id: str = "", rx_number: str = "", document: File | None = None, attested_name: str = "",
    expires_on: datetime.date | None = None, fills_used: int = 0,
) -> Prescription:
    """Record a prescription of record for ``patient`` at ``clinic``, from one of three sources:
    an e-prescription reference (``erx_message_id`` and/or ``rx_number``), a signed ``document``
    (PDF/JPEG/PNG ≤ 10 MB), or written in Fizy and attested by the prescriber's typed name
    (``attested_name``; the time and the user are recorded). ``expires_on`` defaults by the
    product's schedule and the patient's state (prescriptions.rules). Audited."""
    if patient.organization_id != clinic.organization_id or prescriber.organization_id != clinic.organization_id:
        raise PrescriptionError("That patient or prescriber is not one of this clinic's.")
    sig = (sig or "").strip()
    if not sig:
        raise PrescriptionError("Write the directions (SIG) as the prescriber wrote them.")
    if not quantity or quantity < 1:
        raise PrescriptionError("Enter the quantity per fill (at least 1).")
    if not days_supply or not 1 <= days_supply <= 365:
        raise PrescriptionError("Enter the days one fill lasts, from 1 to 365.")
    today = timezone.localdate()
    if written_on > today:
        raise PrescriptionError("The date written cannot be in the future.")
    rule = rule_for(schedule=product.dea_schedule, state=patient.state)
    if refills_authorized < 0 or refills_authorized > rule.max_refills:
        what = f"{product.get_dea_schedule_display()} " if product.is_controlled else ""
        raise PrescriptionError(f"A {what}prescription may carry at most {rule.max_refills} refills"
                                f"{' in ' + patient.state if patient.state else ''}.")
    longest = default_expiry(written_on=written_on, schedule=product.dea_schedule, state=patient.state)
    expires_on = expires_on or longest
    if expires_on > longest or expires_on < written_on:
        raise PrescriptionError(f"This prescription can be valid until {longest:%b %d, %Y} at the latest.")
    rx = Prescription(
        clinic=clinic, patient=patient, prescriber=prescriber, product=product, sig=sig, quantity=quantity,
        days_supply=days_supply, refills_authorized=refills_authorized,
        fills_remaining=max(refills_authorized + 1 - fills_used, 0), written_on=written_on, expires_on=expires_on,
        source=source, erx_message_id=(erx_message_id or "").strip(), rx_number=(rx_number or "").strip(),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    if rx.fills_remaining == 0:
        rx.status = Status.EXHAUSTED
    if source == Source.ERX:
        if not (rx.erx_message_id or rx.rx_number):
            raise PrescriptionError("Give the e-prescription's message id or the pharmacy's Rx number.")
    elif source == Source.DOCUMENT:
        if document is None:
            raise PrescriptionError("Attach the signed prescription (PDF, JPEG or PNG).")
        try:
            rx.document_content_type = document_content_type(document)
        except DocumentRejected as exc:
            raise PrescriptionError(str(exc)) from exc
    elif source == Source.WRITTEN:
        typed = " ".join(attested_name.split()).casefold()
        if typed != f"{prescriber.first_name} {prescriber.last_name}".casefold():
            raise PrescriptionError(f"The prescriber types their full name ({prescriber.first_name} "
                                    f"{prescriber.last_name}) to attest that they wrote this prescription.")
        if not getattr(actor, "is_authenticated", False):
            raise PrescriptionError("A prescription written in Fizy needs the signed-in prescriber's attestation.")
        rx.attested_name, rx.attested_at, rx.attested_by = attested_name.strip(), timezone.now(), actor
    elif source != Source.ON_FILE:
        raise PrescriptionError(f"Unknown prescription source {source!r}.")
    with transaction.atomic():
        if source == Source.DOCUMENT:
            rx.document.save(f"rx-{patient.pk}-{product.pk}.{extension_for(rx.document_content_type)}", document,
                             save=False)
        rx.save()
        audit_record(action=Action.PRESCRIPTION_RECORD, actor=actor, clinic=clinic, patient=patient, obj=rx,
                     detail={"product": product.pk, "prescriber": prescriber.pk, "source": source,
                             "refills_authorized": refills_authorized, "written_on": written_on.isoformat(),
                             "expires_on": expires_on.isoformat(),
                             **({"attested_name": rx.attested_name} if rx.attested_name else {})})
    return rx


def _by_count(prescription_ids) -> dict[int, list[int]]:
    """{n: the prescriptions that need n fills} (a cart usually has one line per prescription)."""
    groups: dict[int, list[int]] = {}
    for pk, n in sorted(Counter(prescription_ids).items()):
        groups.setdefault(n, []).append(pk)
    return groups


def _take_fills(prescription_ids: list[int], today: datetime.date) -> list[int]:
    """Take one fill per id (an id twice: two fills) — all or nothing: returns the prescriptions
    that had too few (expired and cancelled ones too) and takes nothing then. The prescriptions
    are locked in id order; one SELECT and one UPDATE per group, whatever the number of lines."""
    groups = _by_count(prescription_ids)
    lost = []
    for n, ids in groups.items():
        able = set(Prescription.objects.select_for_update(no_key=True).filter(
            pk__in=ids, fills_remaining__gte=n, status=Status.ACTIVE, expires_on__gte=today,
        ).order_by("pk").values_list("pk", flat=True))
        lost += [pk for pk in ids if pk not in able]
    if lost:
        return sorted(lost)
    for n, ids in groups.items():
        Prescription.objects.filter(pk__in=ids).update(
            fills_remaining=F("fills_remaining") - n,
            status=Case(When(fills_remaining=n, then=Value(Status.EXHAUSTED)), default=F("status")),
        )
    return []


def _give_fills_back(prescription_ids: list[int]) -> None:
    """One fill back per id (never beyond the prescription's own count); an exhausted one is active again."""
    for n, ids in _by_count(prescription_ids).items():
        Prescription.objects.filter(pk__in=ids, fills_remaining__lte=F("refills_authorized") + 1 - n).update(
            fills_remaining=F("fills_remaining") + n,
            status=Case(When(status=Status.EXHAUSTED, then=Value(Status.ACTIVE)), default=F("status")),
        )


def fills_reserve(*, hold: str, prescription_ids: list[int]) -> list[Fill]:
    """Take one fill of each prescription for the checkout ``hold`` (in the caller's transaction,
    which must roll back if this raises). Raises FillsUnavailable naming every prescription that
    had none left — expired and cancelled ones too."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("fills_reserve must run inside the caller's transaction.")
    ids = sorted(prescription_ids)
    lost = _take_fills(ids, timezone.localdate())
    if lost:
        raise FillsUnavailable(lost)
    return Fill.objects.bulk_create([Fill(prescription_id=pk, hold=hold) for pk in ids])


def fills_release(*, hold: str) -> int:
    """Give back every fill still reserved for ``hold`` (a checkout that ended without an order).
    Safe to call twice. Returns how many came back."""
    with transaction.atomic():
        fills = list(Fill.objects.select_for_update().filter(hold=hold, status=Fill.Status.RESERVED)
                     .order_by("prescription_id", "pk").values_list("pk", "prescription_id"))
        if fills:
            _give_fills_back([prescription_id for _, prescription_id in fills])
            Fill.objects.filter(pk__in=[pk for pk, _ in fills]).update(
                status=Fill.Status.GIVEN_BACK, given_back_at=timezone.now())
    return len(fills)


def fills_use(*, hold: str, order_lines: dict[int, int]) -> int:
    """The order is placed: each fill reserved for ``hold`` is used by its order line
    (``order_lines``: prescription id → order line id). In the order's transaction; two queries
    whatever the number of lines."""
    now = timezone.now()
    fills = list(Fill.objects.filter(hold=hold, status=Fill.Status.RESERVED, prescription_id__in=order_lines))
    for fill in fills:
        fill.status, fill.used_at, fill.order_line_id = Fill.Status.USED, now, order_lines[fill.prescription_id]
    Fill.objects.bulk_update(fills, ["status", "used_at", "order_line_id"])
    return len(fills)


def fill_give_back(*, order_line_id: int) -> bool:
    """The order line was rejected or cancelled before it shipped: its fill comes back to the
    prescription (an exhausted one is active again). In the caller's transaction; once."""
    fill = Fill.objects.select_for_update().filter(order_line_id=order_line_id, status=Fill.Status.USED).first()
    if fill is None:
        return False
    _give_fills_back([fill.prescription_id])
    fill.status, fill.given_back_at = Fill.Status.GIVEN_BACK, timezone.now()
    fill.save(update_fields=["status", "given_back_at"])
    return True


def fill_mark_delivered(*, order_line_id: int, at: datetime.datetime) -> None:
    """The order line's fill reached the patient: ``refill_too_soon`` counts from here."""
    Fill.objects.filter(order_line_id=order_line_id, delivered_at__isnull=True).update(delivered_at=at)
