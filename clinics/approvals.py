"""Second-staff approval (issue 14): a partner's API URL change and a large refund do not take
effect when one staff member asks for them; they wait as an ``Approval`` until a different staff
member with the right role approves (then the change is applied by the same service that makes
it) or declines. Every step is audited.

The apps that own the changes register how each kind is applied (``register_applier`` from their
``AppConfig.ready``), so this module, low in the house, never imports them."""

from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from .audit import Action, audit_record
from .models import Approval

# Who may approve (or decline) each kind: a permission of the role that owns the change.
PERMISSION = {
    Approval.Kind.PARTNER_API_URL: "clinics.approve_partner_api_url",
    Approval.Kind.LINE_REFUND: "clinics.approve_line_refund",
}

# kind -> applier(approval=..., actor=...) -> a sentence saying what was done
_APPLIERS: dict[str, Callable[..., str]] = {}


class ApprovalError(Exception):
    """Said to the staff member, as is."""


def register_applier(kind: str, applier: Callable[..., str]) -> None:
    _APPLIERS[Approval.Kind(kind)] = applier


def can_decide(user, approval: Approval) -> bool:
    return user.has_perm(PERMISSION[approval.kind])


def approval_request(*, kind: str, obj, summary: str, payload: dict, actor, clinic=None, patient=None) -> Approval:
    """Record a change that waits for a second staff member. One pending request per object and
    kind: a second one is refused until the first is decided."""
    try:
        with transaction.atomic():
            approval = Approval.objects.create(
                kind=kind, summary=summary[:300], object_type=obj._meta.label, object_id=str(obj.pk),
                payload=payload, clinic=clinic, requested_by=actor,
            )
            audit_record(action=Action.APPROVAL_REQUESTED, actor=actor, clinic=clinic, patient=patient, obj=approval,
                         detail={"kind": kind, "object": f"{obj._meta.label}:{obj.pk}", "summary": approval.summary})
    except IntegrityError:
        raise ApprovalError(f"A {Approval.Kind(kind).label.lower()} for this already waits for approval: "
                            "another staff member approves or declines it first.") from None
    return approval


def _check(approval: Approval, actor) -> None:
    if not can_decide(actor, approval):
        raise ApprovalError(f"Approval #{approval.pk}: your role cannot decide a {approval.get_kind_display().lower()}.")
    if approval.status != Approval.Status.PENDING:
        raise ApprovalError(f"Approval #{approval.pk} was already decided ({approval.get_status_display().lower()}).")


def _claim(approval: Approval, actor, status: str, note: str = "") -> bool:
    now = timezone.now()
    claimed = (Approval.objects.filter(pk=approval.pk, status=Approval.Status.PENDING)
               .update(status=status, decided_by=actor, decided_at=now, decision_note=note[:300]))
    approval.status, approval.decided_by, approval.decided_at, approval.decision_note = status, actor, now, note[:300]
    return bool(claimed)


def approval_approve(*, approval: Approval, actor) -> Approval:
    """A second staff member approves: the change is applied now, through its own service. The
    one who asked can never approve their own request."""
    approval = Approval.objects.get(pk=approval.pk)
    if approval.requested_by_id == actor.pk:
        raise ApprovalError(f"Approval #{approval.pk}: you asked for this change; another staff member must approve it.")
    _check(approval, actor)
    with transaction.atomic():
        if not _claim(approval, actor, Approval.Status.APPROVED):
            raise ApprovalError(f"Approval #{approval.pk} was already decided.")
        audit_record(action=Action.APPROVAL_APPROVED, actor=actor, clinic=approval.clinic, obj=approval,
                     detail={"kind": approval.kind, "requested_by": approval.requested_by_id})
    # Applied after the claim commits (a refund calls the payment gateway: no row lock held then).
    try:
        result = _APPLIERS[approval.kind](approval=approval, actor=actor)
    except Exception as error:  # noqa: BLE001 — whatever went wrong, the approval says so and stays visible
        Approval.objects.filter(pk=approval.pk).update(status=Approval.Status.FAILED, result=str(error)[:300])
        audit_record(action=Action.APPROVAL_FAILED, actor=actor, clinic=approval.clinic, obj=approval,
                     detail={"kind": approval.kind, "error": str(error)[:300]})
        raise ApprovalError(f"Approval #{approval.pk} was approved but could not be applied: {error}") from error
    Approval.objects.filter(pk=approval.pk).update(result=result[:300])
    approval.result = result[:300]
    return approval


def approval_decline(*, approval: Approval, actor, note: str = "") -> Approval:
    """Nothing changes; the request is closed (its requester may withdraw it this way too)."""
    approval = Approval.objects.get(pk=approval.pk)
    _check(approval, actor)
    with transaction.atomic():
        if not _claim(approval, actor, Approval.Status.DECLINED, note):
            raise ApprovalError(f"Approval #{approval.pk} was already decided.")
        audit_record(action=Action.APPROVAL_DECLINED, actor=actor, clinic=approval.clinic, obj=approval,
                     detail={"kind": approval.kind, "requested_by": approval.requested_by_id, "note": note[:300]})
    return approval
