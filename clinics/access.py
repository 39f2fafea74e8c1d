"""The PHI access log: which patients each request showed, to whom, in which clinic, on which page.

A view (or an admin page) calls :func:`record_patient_access` with the patients it shows; the
ids are collected on the request, and :class:`PatientAccessMiddleware` writes them all in one
``INSERT`` when the response is ready — one query per request, however many patients a page
shows. A request that failed (5xx) showed nothing and writes nothing."""

from __future__ import annotations

from collections.abc import Iterable

from .models import Patient, PatientAccess

REQUEST_ATTRIBUTE = "_patients_shown"


def record_patient_access(request, patients: Iterable[Patient | int | None]) -> None:
    """Note that this request shows ``patients`` (Patient objects or ids; None is skipped)."""
    shown = request.__dict__.setdefault(REQUEST_ATTRIBUTE, {})
    for patient in patients:
        pk = patient.pk if isinstance(patient, Patient) else patient
        if pk is not None:
            shown[pk] = None


def patients_shown(request) -> list[int]:
    return list(getattr(request, REQUEST_ATTRIBUTE, {}))


def _actor(request):
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user, ""
    return None, getattr(request, "access_actor_label", "") or "anonymous"


def write_patient_access(request, *, method: str | None = None) -> int:
    """Write this request's accesses in one INSERT; returns how many rows (0 writes nothing)."""
    shown = patients_shown(request)
    if not shown:
        return 0
    user, label = _actor(request)
    clinic = getattr(request, "clinic", None)
    match = getattr(request, "resolver_match", None)
    page = (match.view_name if match else request.path)[:120]
    PatientAccess.objects.bulk_create([
        PatientAccess(user=user, actor_label=label, clinic=clinic, patient_id=pk, page=page,
                      method=(method or request.method or "")[:8])
        for pk in shown
    ])
    return len(shown)


class PatientAccessMiddleware:
    """Writes each request's patient accesses once, after the view (see the module's doc)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code < 500:
            write_patient_access(request)
        return response


class PatientAccessAdminMixin:
    """For a ModelAdmin whose pages show patients: the change list records the patients of the
    rows it shows, the change page those of its object (``patients_of``: the row's
    ``patient_id`` by default; a Patient shows itself; an order, the patients of its lines).
    ``list_shows_patients = False`` for a change list that names no patient (orders, carts)."""

    list_shows_patients = True

    def patients_of(self, obj) -> Iterable[int]:
        return [obj.pk] if isinstance(obj, Patient) else [getattr(obj, "patient_id", None)]

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if changelist is not None and self.list_shows_patients:
            record_patient_access(request, (pk for obj in changelist.result_list for pk in self.patients_of(obj)))
        return response

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        response = super().changeform_view(request, object_id, form_url, extra_context)
        original = (getattr(response, "context_data", None) or {}).get("original")
        if original is not None:
            record_patient_access(request, self.patients_of(original))
        return response


def lines_patients(obj) -> list[int]:
    """The patients of an object's lines (an order's, a partner order's, a cart's): one query."""
    return list(obj.lines.values_list("patient_id", flat=True).distinct())


def patient_history(*, patient: Patient, limit: int = 500) -> list[dict]:
    """Everyone who saw or changed ``patient``'s record, newest first: the access log's rows
    (``seen``) and the audit trail's (``changed``), merged. Two queries."""
    from .models import AuditEntry

    seen = [{"at": a.at, "kind": "seen", "who": a.user or a.actor_label, "clinic": a.clinic, "what": a.page,
             "method": a.method}
            for a in PatientAccess.objects.filter(patient=patient).select_related("user", "clinic")[:limit]]
    changed = [{"at": e.at, "kind": "changed", "who": e.actor or e.actor_label or "system", "clinic": e.clinic,
                "what": e.action, "method": ""}
               for e in AuditEntry.objects.filter(patient=patient).select_related("actor", "clinic")[:limit]]
    return sorted(seen + changed, key=lambda row: row["at"], reverse=True)[:limit]
