"""The audit trail: one row per write that changes a patient's order."""

from .models import AuditEntry


def _entry(*, action, actor=None, actor_label="", clinic=None, patient=None, obj=None, detail=None) -> AuditEntry:
    authed = getattr(actor, "is_authenticated", False)
    return AuditEntry(
        action=action,
        actor=actor if authed else None,
        actor_label=actor_label or ("" if authed else "system"),
        clinic=clinic,
        patient=patient,
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        detail=detail or {},
    )


def audit_record(**fields) -> AuditEntry:
    """Write one audit row (keywords: action, actor, actor_label, clinic, patient, obj, detail).

    Call inside the service's transaction so the row and the change commit together. Never put
    prescription text (SIG, notes) in ``detail``."""
    entry = _entry(**fields)
    entry.save()
    return entry


def audit_record_many(entries: list[dict]) -> None:
    """Bulk form of :func:`audit_record` for services that touch many lines at once."""
    AuditEntry.objects.bulk_create([_entry(**e) for e in entries])
