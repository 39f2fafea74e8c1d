"""Reads of prescriptions, each in a fixed number of queries whatever the number of lines."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Max, Q
from django.utils import timezone

from .models import Fill, Prescription


def prescription_get(*, clinic, pk: int) -> Prescription | None:
    """Prescription ``pk`` of one of the clinic's patients, or None: like patients, prescriptions
    belong to the organization (any of its clinics may order on them); another's is never found."""
    return (Prescription.objects.select_related("patient", "prescriber", "product")
            .filter(pk=pk, clinic__organization_id=clinic.organization_id).first())


def pick_prescription(candidates: Iterable[Prescription], *, today: datetime.date | None = None) -> Prescription | None:
    """The prescription a new line should point to: a usable one (active, unexpired, with a fill
    left) first, the newest written first; else the newest of the others (so that the cart says
    why it cannot be used)."""
    today = today or timezone.localdate()
    ordered = sorted(candidates, key=lambda rx: (rx.is_usable(today), rx.written_on, rx.pk), reverse=True)
    return ordered[0] if ordered else None


def prescriptions_for_pairs(*, clinic, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], list[Prescription]]:
    """The organization's prescriptions (not cancelled) for each (patient id, product id), one query."""
    pairs = set(pairs)
    if not pairs:
        return {}
    found: dict[tuple[int, int], list[Prescription]] = {}
    rows = Prescription.objects.filter(
        clinic__organization_id=clinic.organization_id, patient_id__in={p for p, _ in pairs}, product_id__in={q for _, q in pairs},
    ).exclude(status=Prescription.Status.CANCELLED).select_related("prescriber")
    for rx in rows:
        if (rx.patient_id, rx.product_id) in pairs:
            found.setdefault((rx.patient_id, rx.product_id), []).append(rx)
    return found


@dataclass
class PrescriptionFacts:
    """What validation reads about the lines' prescriptions, fetched once for the cart."""

    by_id: dict[int, Prescription] = field(default_factory=dict)
    # (patient id, product id) → the clinic's prescriptions that could be used instead
    by_pair: dict[tuple[int, int], list[Prescription]] = field(default_factory=dict)
    # prescription id → when its last fill was delivered
    last_delivered: dict[int, datetime.datetime] = field(default_factory=dict)


def prescription_facts(*, clinic, prescription_ids: Iterable[int], pairs: Iterable[tuple[int, int]]) -> PrescriptionFacts:
    """The lines' prescriptions, the other prescriptions of their (patient, product) pairs, and the
    last delivered fill of each: two queries whatever the number of lines."""
    ids, pairs = set(prescription_ids), set(pairs)
    if not ids and not pairs:
        return PrescriptionFacts()
    facts = PrescriptionFacts()
    query = Q(pk__in=ids)
    if pairs:
        query |= Q(clinic__organization_id=clinic.organization_id, patient_id__in={p for p, _ in pairs}, product_id__in={q for _, q in pairs})
    for rx in Prescription.objects.filter(query).select_related("prescriber", "product"):
        if rx.pk in ids:
            facts.by_id[rx.pk] = rx
        if (rx.patient_id, rx.product_id) in pairs and rx.status != Prescription.Status.CANCELLED:
            facts.by_pair.setdefault((rx.patient_id, rx.product_id), []).append(rx)
    every = set(facts.by_id) | {rx.pk for rxs in facts.by_pair.values() for rx in rxs}
    if every:
        delivered = (Fill.objects.filter(prescription_id__in=every, delivered_at__isnull=False)
                     .exclude(status=Fill.Status.GIVEN_BACK)
                     .values("prescription_id").annotate(last=Max("delivered_at")).order_by()
                     .values_list("prescription_id", "last"))
        facts.last_delivered = dict(delivered)
    return facts
