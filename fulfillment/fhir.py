"""One order as a FHIR R4 Bundle (docs/fhir.md), built and validated with ``fhir.resources``
(its R4B models: R4B is R4 with errata, the same JSON for these resources).

Each order line is a MedicationRequest (the prescription of record behind it: its SIG as
``dosageInstruction``, its quantity per fill, days supply, refills and validity as
``dispenseRequest``, the partner pharmacy as ``dispenseRequest.performer``); each fill the line
used is a MedicationDispense. The patient, the prescriber and the pharmacy are included once.
Only what the order snapshotted is read, so the export says what was ordered.
"""

from __future__ import annotations

import datetime

from fhir.resources.R4B.bundle import Bundle

from prescriptions.models import Fill

from .models import Order, OrderLine

NPI = "http://hl7.org/fhir/sid/us-npi"
FIZY = "https://fizy.example/fhir"


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat()


def _patient(line: OrderLine) -> dict:
    snap = line.patient_snapshot or {}
    address = snap.get("address", {}) or {}
    return {
        "resourceType": "Patient", "id": f"patient-{line.patient_id}",
        "identifier": [{"system": f"{FIZY}/chart-id", "value": snap.get("chart_id") or str(line.patient_id)}],
        "name": [{"family": snap.get("last_name", ""), "given": [snap.get("first_name", "")]}],
        "birthDate": snap.get("date_of_birth") or None,
        "address": [{"line": [x for x in (address.get("line1"), address.get("line2")) if x],
                     "city": address.get("city") or None, "state": address.get("state") or None,
                     "postalCode": address.get("zip_code") or None}] if address else None,
    }


def _practitioner(line: OrderLine) -> dict:
    snap = line.prescriber_snapshot or {}
    return {"resourceType": "Practitioner", "id": f"practitioner-{line.prescriber_id}",
            "identifier": [{"system": NPI, "value": snap.get("npi", "")}] if snap.get("npi") else None,
            "name": [{"text": snap.get("name") or str(line.prescriber or "")}]}


def _pharmacy(line: OrderLine) -> dict:
    partner = line.partner_order.partner
    return {"resourceType": "Organization", "id": f"pharmacy-{partner.pk}", "name": partner.name,
            "type": [{"text": "503A compounding pharmacy"}]}


def _medication_request(line: OrderLine) -> dict:
    rx = line.prescription
    request = {
        "resourceType": "MedicationRequest", "id": f"line-{line.pk}",
        "identifier": [{"system": f"{FIZY}/order-line", "value": str(line.pk)}],
        "status": "active" if line.status not in ("rejected", "cancelled", "failed") else "stopped",
        "intent": "order",
        "medicationCodeableConcept": {"text": line.product_name,
                                      "coding": [{"system": f"{FIZY}/sku", "code": line.product.sku}]},
        "subject": {"reference": f"Patient/patient-{line.patient_id}"},
        "authoredOn": _iso(rx.written_on) if rx else _iso(line.order.placed_at),
        "dosageInstruction": [{"text": line.sig}],
        "dispenseRequest": {
            "quantity": {"value": line.quantity, "unit": line.product.unit},
            "expectedSupplyDuration": ({"value": line.days_supply, "unit": "days", "system": "http://unitsofmeasure.org",
                                        "code": "d"} if line.days_supply else None),
            "numberOfRepeatsAllowed": rx.refills_authorized if rx else line.refills,
            "validityPeriod": {"start": _iso(rx.written_on), "end": _iso(rx.expires_on)} if rx else None,
            "performer": {"reference": f"Organization/pharmacy-{line.partner_order.partner_id}"},
        },
        "groupIdentifier": {"system": f"{FIZY}/order", "value": line.order.number},
    }
    if line.prescriber_id:
        request["requester"] = {"reference": f"Practitioner/practitioner-{line.prescriber_id}"}
    if rx is not None:
        request["identifier"].append({"system": f"{FIZY}/prescription", "value": rx.reference})
        if rx.erx_message_id:
            request["identifier"].append({"system": f"{FIZY}/erx-message-id", "value": rx.erx_message_id})
    return request


def _medication_dispense(line: OrderLine, fill: Fill) -> dict:
    status = {"used": "completed" if fill.delivered_at else "in-progress", "given_back": "cancelled"}.get(
        fill.status, "preparation")
    return {
        "resourceType": "MedicationDispense", "id": f"fill-{fill.pk}", "status": status,
        "medicationCodeableConcept": {"text": line.product_name},
        "subject": {"reference": f"Patient/patient-{line.patient_id}"},
        "authorizingPrescription": [{"reference": f"MedicationRequest/line-{line.pk}"}],
        "performer": [{"actor": {"reference": f"Organization/pharmacy-{line.partner_order.partner_id}"}}],
        "quantity": {"value": line.quantity, "unit": line.product.unit},
        "daysSupply": ({"value": line.days_supply, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}
                       if line.days_supply else None),
        "whenPrepared": _iso(fill.used_at),
        "whenHandedOver": _iso(fill.delivered_at),
        "dosageInstruction": [{"text": line.sig}],
    }


def _prune(value):
    """Drop empty values: FHIR forbids empty elements."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (_prune(x) for x in value) if v not in (None, "", [], {})]
    return value


def order_fhir_bundle(*, order: Order) -> dict:
    """The order as a FHIR R4 ``collection`` Bundle (a dict ready for JSON), validated by
    ``fhir.resources`` (raises ``pydantic.ValidationError`` if it were not valid FHIR)."""
    lines = list(order.lines.select_related("product", "prescriber", "prescription", "partner_order__partner")
                 .order_by("pk"))
    fills = {f.order_line_id: f for f in Fill.objects.filter(order_line_id__in=[l.pk for l in lines])}
    resources, seen = [], set()
    for line in lines:
        for resource in (_patient(line), _practitioner(line) if line.prescriber_id else None, _pharmacy(line)):
            if resource and resource["id"] not in seen:
                seen.add(resource["id"])
                resources.append(resource)
        resources.append(_medication_request(line))
        if line.pk in fills:
            resources.append(_medication_dispense(line, fills[line.pk]))
    data = _prune({
        "resourceType": "Bundle", "id": f"order-{order.pk}", "type": "collection",
        "identifier": {"system": f"{FIZY}/order", "value": order.number},
        "timestamp": _iso(datetime.datetime.now(datetime.UTC)),
        "entry": [{"fullUrl": f"{FIZY}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    })
    bundle = Bundle.model_validate(data)
    return bundle.model_dump(mode="json", exclude_none=True)
