"""A coordinator cancels a line before it ships.

Before the order reached the pharmacy (still pending) the line is cancelled here. After, the
partner is asked through its order API; the line becomes cancelled when the partner confirms
(at once, or later with a ``cancelled`` webhook). Either way the state machine makes the change,
so a captured line is refunded once, and its stock and prescription fill come back. After
shipment only Fizy's finance staff can refund a line (``settlement.order_line_refund`` with
``finance=True`` and a reason).
"""

from __future__ import annotations

from django.db import transaction

from clinics.audit import Action, audit_record

from .models import LineEvent, OrderLine, PartnerOrder
from .partners import PartnerClient, PartnerError
from .status import line_apply_status

S = OrderLine.Status
CANCELLABLE = frozenset({S.PENDING, S.SENT, S.ACCEPTED, S.COMPOUNDING, S.ON_HOLD})


class CancellationError(Exception):
    """The line cannot be cancelled now; the message says why and what to do."""


def line_request_cancellation(*, line: OrderLine, actor, reason: str) -> str:
    """Cancel ``line`` (a coordinator's request). Returns "cancelled" or "requested" (the partner
    confirms later). Raises CancellationError with a readable message otherwise."""
    reason = (reason or "").strip() or "Cancelled by the clinic."
    line = OrderLine.objects.select_related("order__clinic", "patient", "partner_order__partner").get(pk=line.pk)
    if line.status not in CANCELLABLE:
        raise CancellationError(
            f"{line.product_name} is {line.get_status_display().lower()}: it can no longer be cancelled. "
            + ("Contact Fizy support for a refund." if line.status in (S.SHIPPED, S.DELIVERED) else "")
        )
    who = getattr(actor, "username", "")
    partner_order = line.partner_order
    if line.status == S.PENDING:
        if partner_order.status == PartnerOrder.Status.SENDING:
            raise CancellationError("The order is being sent to the pharmacy right now; try again in a minute.")
        line_apply_status(line=line, to=S.CANCELLED, source=LineEvent.Source.CLINIC, actor=actor, actor_label=who,
                          reason=reason)
        return "cancelled"
    try:
        answer = PartnerClient(partner_order.partner).cancel_line(
            reference=partner_order.partner_reference, line_id=line.pk, idempotency_key=f"fizy-line-{line.pk}-cancel",
            reason=reason,
        )
    except PartnerError as exc:
        raise CancellationError(exc.reason) from exc
    if answer == "cancelled":
        line_apply_status(line=line, to=S.CANCELLED, source=LineEvent.Source.CLINIC, actor=actor, actor_label=who,
                          reason=f"{reason} (confirmed by {partner_order.partner.name})")
    else:
        with transaction.atomic():
            audit_record(action=Action.LINE_CANCEL_REQUESTED, actor=actor, clinic=line.order.clinic,
                         patient=line.patient, obj=line, detail={"order_id": line.order_id})
    return answer
