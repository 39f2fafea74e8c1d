"""The signed prescription document, served to members of the clinic's organization only (the
file itself is never public: storage is private, and this view streams it)."""

from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET

from clinics.access import record_patient_access
from clinics.tenancy import clinic_required

from .selectors import prescription_get


def document_response(prescription) -> FileResponse:
    if not prescription.document:
        raise Http404
    response = FileResponse(prescription.document.open("rb"), content_type=prescription.document_content_type)
    response["Content-Disposition"] = f'inline; filename="prescription-{prescription.reference}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@clinic_required
@require_GET
def document(request, pk):
    prescription = prescription_get(clinic=request.clinic, pk=pk)
    if prescription is None:
        raise Http404
    record_patient_access(request, [prescription.patient_id])
    return document_response(prescription)
