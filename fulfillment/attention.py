"""The attention worklist: lines a coordinator (or pharmacy staff) must act on, open until resolved.

Items open and close with the line's status, decided by the state machine
(:func:`attention_after_status_change`, called in the change's transaction):

- a line becomes rejected, on hold or failed → an item for its clinic opens (one open item per
  line and audience; a hold that turns into a rejection closes the hold's item and opens one for
  the rejection);
- a held line moves on (the pharmacy released it) → its item resolves as "resumed"; a failed line
  sent again → "retried"; a held line cancelled → "closed".

People resolve the others: re-ordered into the cart (carts), rerouted to another pharmacy
(``fulfillment.reroute``), or dismissed with a reason. Answering a hold marks the item
"answered" (still open, waiting for the pharmacy; ``fulfillment.holds``); when the pharmacy then
moves the line on, the item resolves as answered. Staff items open when a partner reports on
a line we had marked failed (the partner has the order after all).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from clinics.audit import Action, audit_record

from .models import AttentionItem, Order, OrderLine, WebhookEvent

S = OrderLine.Status
Kind = AttentionItem.Kind
Resolution = AttentionItem.Resolution
Audience = AttentionItem.Audience
OPENS = {S.REJECTED: Kind.REJECTED, S.ON_HOLD: Kind.ON_HOLD, S.FAILED: Kind.FAILED}


class AttentionError(Exception):
    """An action on an item that cannot be done; the message says why."""


def _clinic_id(line: OrderLine) -> int:
    if OrderLine.order.is_cached(line):
        return line.order.clinic_id
    return Order.objects.filter(pk=line.order_id).values_list("clinic_id", flat=True).get()


def _open(*, line: OrderLine, audience: str, kind: str, reason_code: str = "", message: str = "",
          webhook_event: WebhookEvent | None = None) -> AttentionItem:
    return AttentionItem.objects.create(
        clinic_id=_clinic_id(line), line=line, audience=audience, kind=kind, reason_code=reason_code,
        message=message[:2000], webhook_event=webhook_event,
    )


def _resolve_open(*, line_id: int, audience: str, resolution: str, actor=None, actor_label: str = "", note: str = "",
                  **links) -> int:
    return AttentionItem.objects.filter(line_id=line_id, audience=audience, resolved_at__isnull=True).update(
        resolution=resolution, resolved_at=timezone.now(), resolved_by=actor if getattr(actor, "is_authenticated", False) else None,
        resolved_by_label=actor_label[:150], resolution_note=note[:2000], **links,
    )


def attention_after_status_change(*, line: OrderLine, from_status: str, to: str, reason: str, reason_code: str) -> None:
    """Open or close the line's clinic item for a status change (the state machine calls this in the
    change's transaction, with the line locked)."""
    if from_status in OPENS:
        if to == S.PENDING:
            resolution = Resolution.RETRIED
        elif to in (S.CANCELLED, S.REJECTED):
            resolution = Resolution.CLOSED
        else:
            resolution = Resolution.RESUMED
        note = f"The line became {S(to).label.lower()}."
        if resolution == Resolution.RESUMED:
            # An answered hold that the pharmacy moves on resolves as answered.
            AttentionItem.objects.filter(line_id=line.pk, audience=Audience.CLINIC, resolved_at__isnull=True,
                                         answered_at__isnull=False).update(
                resolution=Resolution.ANSWERED, resolved_at=timezone.now(), resolved_by_label="status", resolution_note=note)
        _resolve_open(line_id=line.pk, audience=Audience.CLINIC, resolution=resolution, actor_label="status", note=note)
    if to in OPENS:
        _open(line=line, audience=Audience.CLINIC, kind=OPENS[to], reason_code=reason_code, message=reason)


def attention_hold_for_staff(*, line: OrderLine, event: WebhookEvent, status: str) -> AttentionItem:
    """A partner reported ``status`` for a line we had marked failed: the partner has the order.
    Staff look at it (retrying the partner order replays the held events). One open staff item
    per line; a further event updates it. Call with the line locked."""
    message = (f"{event.partner_slug} reported '{status}' for this line, which dispatch had marked failed: the "
               "pharmacy has the order. Retry the partner order to record it as sent; the held events are then applied.")
    item = AttentionItem.objects.filter(line=line, audience=Audience.STAFF, resolved_at__isnull=True).first()
    if item is None:
        return _open(line=line, audience=Audience.STAFF, kind=Kind.LATE_ANSWER, message=message, webhook_event=event)
    item.webhook_event, item.message = event, message
    item.save(update_fields=["webhook_event", "message"])
    return item


def attention_resolve(*, line_id: int, resolution: str, actor, note: str = "", audience: str = Audience.CLINIC,
                      **links) -> int:
    """Resolve the line's open item (re-ordered, rerouted, retried…) in the caller's transaction.
    Returns how many items were resolved (0 or 1)."""
    return _resolve_open(line_id=line_id, audience=audience, resolution=resolution, actor=actor,
                         actor_label=getattr(actor, "username", "") or "system", note=note, **links)


def attention_dismiss(*, item: AttentionItem, actor, reason: str) -> AttentionItem:
    """A coordinator closes an item without re-ordering it (the clinic handled it otherwise)."""
    reason = (reason or "").strip()
    if not reason:
        raise AttentionError("Say why you dismiss this item (for example: \"patient stopped the therapy\").")
    with transaction.atomic():
        locked = (
            AttentionItem.objects.select_for_update(of=("self",), no_key=True)
            .select_related("line__patient", "clinic").get(pk=item.pk)
        )
        if locked.resolved_at is not None:
            raise AttentionError(f"This item was already resolved ({locked.get_resolution_display().lower()}).")
        _resolve_open(line_id=locked.line_id, audience=locked.audience, resolution=Resolution.DISMISSED, actor=actor,
                      actor_label=getattr(actor, "username", ""), note=reason)
        audit_record(action=Action.ATTENTION_RESOLVE, actor=actor, clinic=locked.clinic, patient=locked.line.patient,
                     obj=locked, detail={"resolution": Resolution.DISMISSED, "line_id": locked.line_id})
    item.refresh_from_db()
    return item
