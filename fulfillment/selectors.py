"""Reads of submitted orders that pages and other apps need (the public read API of fulfillment)."""

from django.db.models import F, OuterRef, Subquery

from .models import OrderLine

# Lines that never reached the patient do not count as "what they last got".
NOT_RECEIVED = [OrderLine.Status.REJECTED, OrderLine.Status.CANCELLED, OrderLine.Status.FAILED]


def latest_lines_by_patient_product(*, patient_ids=None, clinic=None) -> dict[tuple[int, int], OrderLine]:
    """For each (patient, product) ordered, the most recent line that was not rejected, cancelled
    or failed, with its order's ``placed_at``: for the given patients, or for every patient the
    given clinic has ordered for. One query."""
    received = OrderLine.objects.exclude(status__in=NOT_RECEIVED)
    newest = (
        received.filter(patient_id=OuterRef("patient_id"), product_id=OuterRef("product_id"))
        .order_by("-order__placed_at", "-id")
        .values("id")[:1]
    )
    scope = received
    if patient_ids is not None:
        scope = scope.filter(patient_id__in=list(patient_ids))
    if clinic is not None:
        scope = scope.filter(order__clinic=clinic)
    lines = (
        scope.annotate(newest_id=Subquery(newest), placed_at=F("order__placed_at"))
        .filter(id=F("newest_id"))
        .select_related("patient", "product", "prescriber")
    )
    return {(line.patient_id, line.product_id): line for line in lines}
