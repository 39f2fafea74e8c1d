"""A clinic admin's choices for the notices: settings and message templates (audited)."""

from __future__ import annotations

from django.db import transaction

from clinics.audit import Action, audit_record
from clinics.models import Clinic, Membership

from .models import NoticeSettings, NoticeTemplate
from .wording import template_problems

SETTINGS_FIELDS = ("patient_phone", "quiet_hours_start", "quiet_hours_end", "digest_hour", "show_products_on_page",
                   "products_in_messages", "link_valid_days")


class NoticeSettingsError(Exception):
    """The change cannot be saved; the message says why."""


def can_manage(membership: Membership | None) -> bool:
    return membership is not None and membership.role == Membership.Role.CLINIC_ADMIN


@transaction.atomic
def notice_settings_update(*, clinic: Clinic, actor, **changes) -> NoticeSettings:
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise NoticeSettingsError(f"These settings cannot be changed here: {', '.join(sorted(unknown))}.")
    current, _ = NoticeSettings.objects.select_for_update().get_or_create(clinic=clinic)
    changed = [name for name, value in changes.items() if getattr(current, name) != value]
    for name in changed:
        setattr(current, name, changes[name])
    if changed:
        current.full_clean()
        current.save()
        audit_record(action=Action.NOTICE_SETTINGS_CHANGE, actor=actor, clinic=clinic, obj=current,
                     detail={"fields": changed})
    return current


@transaction.atomic
def notice_template_save(*, clinic: Clinic, actor, milestone: str, channel: str, subject: str, body: str) -> NoticeTemplate:
    problems = template_problems(channel=channel, subject=subject, body=body)
    if problems:
        raise NoticeSettingsError(" ".join(problems))
    template, _ = NoticeTemplate.objects.update_or_create(
        clinic=clinic, milestone=milestone, channel=channel,
        defaults={"subject": subject.strip(), "body": body.strip(), "updated_by": actor},
    )
    audit_record(action=Action.NOTICE_TEMPLATE_CHANGE, actor=actor, clinic=clinic, obj=template,
                 detail={"milestone": milestone, "channel": channel, "change": "saved"})
    return template


@transaction.atomic
def notice_template_reset(*, clinic: Clinic, actor, milestone: str, channel: str) -> bool:
    """Back to the default wording. True when the clinic had its own."""
    deleted, _ = NoticeTemplate.objects.filter(clinic=clinic, milestone=milestone, channel=channel).delete()
    if deleted:
        audit_record(action=Action.NOTICE_TEMPLATE_CHANGE, actor=actor, clinic=clinic,
                     detail={"milestone": milestone, "channel": channel, "change": "reset to default"})
    return bool(deleted)
