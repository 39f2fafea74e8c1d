"""Refunds Fizy's finance staff make after a line shipped (issue 11): with a reason, once, through
``settlement.order_line_refund``; one above ``REFUND_APPROVAL_ABOVE`` waits for a second finance
staff member's approval (issue 14) and is made when approved."""

from decimal import Decimal

from django.conf import settings

from clinics.approvals import approval_request
from clinics.models import Approval
from fizy.lib.money import money

from .models import OrderLine, PaymentEvent
from .settlement import PaymentServiceError, order_line_refund

S = OrderLine.Status
AFTER_SHIPMENT = frozenset({S.SHIPPED, S.DELIVERED})


def refund_approval_above() -> Decimal:
    return money(Decimal(str(settings.REFUND_APPROVAL_ABOVE)))


def line_refund_by_finance(*, line: OrderLine, reason: str, actor) -> PaymentEvent | Approval:
    """Refund what a shipped or delivered line was charged. Returns the refund event, or the
    approval it waits for when the amount is above the set limit."""
    line = OrderLine.objects.select_related("order__clinic", "patient").get(pk=line.pk)
    if not reason.strip():
        raise PaymentServiceError("A refund of a shipped line needs a reason.")
    if line.status not in AFTER_SHIPMENT:
        raise PaymentServiceError(
            f"Line {line.pk} is {line.get_status_display().lower()}, not shipped: a line is cancelled before it ships "
            "(and refunded then by itself)."
        )
    amount = line.amount_charged - line.amount_refunded
    if line.amount_refunded > 0 or amount <= 0:
        raise PaymentServiceError(f"Line {line.pk} has nothing left to refund (charged ${line.amount_charged:,}, "
                                  f"refunded ${line.amount_refunded:,}).")
    if amount > refund_approval_above():
        return approval_request(
            kind=Approval.Kind.LINE_REFUND, obj=line, actor=actor, clinic=line.order.clinic, patient=line.patient,
            summary=f"Refund ${amount:,} for {line.order.number} line {line.pk} ({line.product_name}): {reason.strip()}",
            payload={"line_id": line.pk, "amount": str(amount), "reason": reason.strip()},
        )
    return order_line_refund(line=line, actor=actor, reason=reason, finance=True)


def apply_approved_refund(*, approval: Approval, actor) -> str:
    line = OrderLine.objects.get(pk=approval.payload["line_id"])
    event = order_line_refund(line=line, actor=actor, finance=True,
                              reason=f"{approval.payload['reason']} (approval #{approval.pk})")
    if event is None:
        return "Nothing was left to refund."
    return f"Refunded ${event.amount:,} for line {line.pk}."
