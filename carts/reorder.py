"""Re-order: a line a pharmacy rejected (or that could not be sent) goes back into the clinic's
open cart in one click, with what the pharmacy reported already flagged on the field it concerns.

The order line is read through fulfillment's selector and its attention item resolved through
fulfillment's service; fulfillment never learns about carts (it keeps the cart line's id as a
plain value). What the reason code points at comes from ``fulfillment.reasons``: the cart line
remembers the code, the field and that field's value (``CartLine.pharmacy_flag``), and
validation flags the field until it changes (``carts.validation._check_pharmacy_flag``).
"""

from __future__ import annotations

from django.db import transaction

from clinics.audit import Action, audit_record
from clinics.models import Clinic
from fulfillment.attention import attention_resolve
from fulfillment.models import AttentionItem, OrderLine
from fulfillment.reasons import reason_for
from fulfillment.selectors import order_line_for_clinic

from .models import CartLine
from .services import AddResult, CartError, LineInput, cart_add_lines

REORDERABLE = frozenset({OrderLine.Status.REJECTED, OrderLine.Status.FAILED})
# An item resolved like this already put the line somewhere: never twice.
DONE = (AttentionItem.Resolution.REORDERED, AttentionItem.Resolution.REROUTED)


def flag_value(line, field: str) -> str:
    """The value of the flagged ``field`` of a cart line, as compared to tell whether it changed."""
    if field == "prescriber":
        return str(line.prescriber_id or "")
    if field == "patient":
        patient = line.patient
        parts = [patient.date_of_birth or "", *(getattr(patient, name) for name in patient.REQUIRED_ADDRESS_FIELDS)]
        return "|".join(str(part) for part in parts)
    return str(getattr(line, field, "") or "")


def cart_reorder_line(*, clinic: Clinic, order_line_id: int, actor) -> tuple[CartLine, AddResult]:
    """Put the clinic's order line ``order_line_id`` back into its open cart (merged into the
    patient's line of that product if there is one), flag what the pharmacy reported, and resolve
    the line's attention item as re-ordered. Raises CartError (another clinic's line is "not
    found", like a line that does not exist)."""
    line = order_line_for_clinic(clinic=clinic, line_pk=order_line_id)
    if line is None:
        raise CartError("That order line is not one of this clinic's.")
    if line.status not in REORDERABLE:
        raise CartError(f"{line.product_name} for {line.patient.full_name} is {line.get_status_display().lower()}: "
                        "only a rejected or unsent line can be ordered again.")
    reason = reason_for(line.reason_code) if line.reason_code else None
    with transaction.atomic():
        locked = OrderLine.objects.select_for_update(no_key=True).get(pk=line.pk)
        if locked.status not in REORDERABLE:
            raise CartError(f"{line.product_name} for {line.patient.full_name} changed meanwhile; look at the order.")
        if AttentionItem.objects.filter(line=locked, resolution__in=DONE).exists():
            raise CartError(f"{line.product_name} for {line.patient.full_name} was already re-ordered or sent to "
                            "another pharmacy.")
        result = cart_add_lines(
            clinic=clinic, actor=actor, action=Action.CART_REORDER,
            items=[LineInput(patient=line.patient, product=line.product, prescriber=line.prescriber,
                             quantity=line.quantity, sig=line.sig, days_supply=line.days_supply, refills=line.refills,
                             clinical_difference=line.clinical_difference)],
        )
        cart_line = (result.created or [merged for merged, _ in result.merged])[0]
        flag = {}
        if reason is not None and reason.cart_field:
            cart_line = CartLine.objects.select_related("patient", "prescriber").get(pk=cart_line.pk)
            flag = {
                "reason_code": reason.code, "field": reason.cart_field, "severity": reason.flag_severity,
                "label": reason.label, "todo": reason.todo, "message": (line.status_reason or "")[:500],
                "partner": line.partner_order.partner.name, "order_number": line.order.number,
                "order_line_id": line.pk, "value": flag_value(cart_line, reason.cart_field),
            }
            CartLine.objects.filter(pk=cart_line.pk).update(pharmacy_flag=flag)
            cart_line.pharmacy_flag = flag
        attention_resolve(line_id=line.pk, resolution=AttentionItem.Resolution.REORDERED, actor=actor,
                          note=f"Back in the cart{' with the ' + reason.cart_field.replace('_', ' ') + ' flagged' if flag else ''}.",
                          cart_line_id=cart_line.pk)
        audit_record(action=Action.ATTENTION_RESOLVE, actor=actor, clinic=clinic, patient=line.patient, obj=line,
                     detail={"resolution": AttentionItem.Resolution.REORDERED, "cart_line_id": cart_line.pk,
                             "flag": flag.get("reason_code", "")})
    return cart_line, result
