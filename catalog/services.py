"""Writes to the partner configuration that are more than a form save."""

from django.db import transaction

from clinics.approvals import approval_request
from clinics.audit import Action, audit_record
from clinics.models import Approval

from .models import Partner


def partner_request_api_url_change(*, partner: Partner, url: str, actor) -> Approval:
    """Where a partner's orders (patients' data and the Bearer key) are sent changes only when a
    second integrations staff member approves (issue 14)."""
    return approval_request(
        kind=Approval.Kind.PARTNER_API_URL, obj=partner, actor=actor,
        summary=f"{partner.name}: order API URL {partner.api_base_url or '(none)'} → {url or '(none)'}",
        payload={"api_base_url": url, "previous": partner.api_base_url},
    )


def partner_set_api_url(*, partner: Partner, url: str, actor, approval: Approval | None = None) -> Partner:
    with transaction.atomic():
        partner = Partner.objects.select_for_update().get(pk=partner.pk)
        previous = partner.api_base_url
        partner.api_base_url = url
        partner.save(update_fields=["api_base_url"])
        audit_record(action=Action.PARTNER_API_URL_CHANGE, actor=actor, obj=partner,
                     detail={"from": previous, "to": url, "approval": approval.pk if approval else None,
                             "requested_by": approval.requested_by_id if approval else None})
    return partner


def apply_approved_api_url(*, approval: Approval, actor) -> str:
    partner = Partner.objects.get(pk=approval.object_id)
    url = approval.payload["api_base_url"]
    partner_set_api_url(partner=partner, url=url, actor=actor, approval=approval)
    return f"{partner.name}'s order API URL is now {url or '(none)'}."
