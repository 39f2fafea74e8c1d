"""Patients: the coordinator's search-as-you-type and the quick "new patient" form's service."""

from django.db import transaction
from django.db.models import Q, QuerySet

from fizy.lib.dates import parse_us_or_iso_date

from .audit import Action, audit_record
from .models import Clinic, Patient

SEARCH_LIMIT = 12


def patient_search(*, clinic: Clinic, query: str, limit: int = SEARCH_LIMIT) -> QuerySet[Patient]:
    """Patients of the clinic's organization matching a name, a chart id or a date of birth."""
    query = (query or "").strip()
    patients = Patient.objects.filter(organization_id=clinic.organization_id)
    if not query:
        return patients.none()
    dob = parse_us_or_iso_date(query)
    if dob:
        return patients.filter(date_of_birth=dob)[:limit]
    condition = Q()
    for term in query.replace(",", " ").split():
        condition &= Q(first_name__icontains=term) | Q(last_name__icontains=term) | Q(chart_id__icontains=term)
    return patients.filter(condition).order_by("last_name", "first_name")[:limit]


class PatientError(Exception):
    """A patient could not be saved; the message says what to fix."""


@transaction.atomic
def patient_create(*, clinic: Clinic, actor, **fields) -> Patient:
    """Create a patient of the clinic's organization (from the cart's quick form)."""
    patient = Patient(organization_id=clinic.organization_id, **fields)
    if Patient.objects.filter(organization_id=clinic.organization_id, chart_id=patient.chart_id).exists():
        raise PatientError(f"Chart ID {patient.chart_id} already belongs to another patient; search for them instead.")
    patient.full_clean()
    patient.save()
    audit_record(action=Action.PATIENT_CREATE, actor=actor, clinic=clinic, patient=patient, obj=patient)
    return patient


PATIENT_FIX_FIELDS = ("date_of_birth", "phone", "address_line1", "address_line2", "city", "state", "zip_code")


@transaction.atomic
def patient_update(*, patient: Patient, clinic: Clinic, actor, **changes) -> Patient:
    """Change a patient's details (from the cart, when preflight found them incomplete)."""
    if patient.organization_id != clinic.organization_id:
        raise PatientError("That patient is not one of this clinic's patients.")
    unknown = set(changes) - set(PATIENT_FIX_FIELDS)
    if unknown:
        raise PatientError(f"These patient fields cannot be changed here: {', '.join(sorted(unknown))}.")
    changed = [name for name, value in changes.items() if getattr(patient, name) != value]
    for name in changed:
        setattr(patient, name, changes[name])
    if changed:
        patient.full_clean()
        patient.save(update_fields=[*changed, "updated_at"])
        audit_record(action=Action.PATIENT_CHANGE, actor=actor, clinic=clinic, patient=patient, obj=patient,
                     detail={"fields": changed})
    return patient
