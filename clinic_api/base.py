"""What every clinic API endpoint shares: the key's authentication, scope and budget, a body size
limit (413), unknown fields refused, the audit label of the key around the service calls, and
replaying the first answer to a request retried with the same ``Idempotency-Key``."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from clinics.access import record_patient_access
from clinics.audit import Action, acting_as, audit_record

from .auth import ApiKeyAuthentication, ApiKeyThrottle, HasApiKey, HasScope
from .errors import ApiError, error, exception_handler
from .models import ApiKey, IdempotentRequest

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Answers worth replaying: not a conflict or a rate limit (a retry should try again then).
NOT_KEPT = {409, 429}


class MoneyJSONEncoder(JSONEncoder):
    """Amounts as strings ("320.00"), never floats."""

    def default(self, obj):
        if isinstance(obj, Decimal):
            return str(obj)
        return super().default(obj)


class ApiJSONRenderer(JSONRenderer):
    encoder_class = MoneyJSONEncoder


class ClinicApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey, HasScope]
    throttle_classes = [ApiKeyThrottle]
    parser_classes = [JSONParser]
    renderer_classes = [ApiJSONRenderer]
    scope: str = ""
    scopes: dict[str, str] = {}
    max_body_bytes: int | None = None  # CLINIC_API_MAX_BODY_BYTES unless the view needs more

    def get_exception_handler(self):
        return exception_handler

    @property
    def key(self) -> ApiKey:
        return self.request.auth

    @property
    def clinic(self):
        return self.request.auth.clinic

    def initial(self, request, *args, **kwargs):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        limit = self.max_body_bytes or settings.CLINIC_API_MAX_BODY_BYTES
        if declared > limit:
            raise ApiError(413, "body_too_large", f"The body is larger than {limit} bytes: send less per request.")
        super().initial(request, *args, **kwargs)
        # Audit rows written by the services during this request name the key.
        self._acting = acting_as(request.auth.audit_label)
        self._acting.__enter__()

    def finalize_response(self, request, response, *args, **kwargs):
        acting = getattr(self, "_acting", None)
        if acting is not None:
            self._acting = None
            acting.__exit__(None, None, None)
        return super().finalize_response(request, response, *args, **kwargs)

    def shown(self, patients) -> None:
        """The PHI access log (clinics.access): this answer shows these patients, to the key's name."""
        django_request = self.request._request
        django_request.access_actor_label = self.key.audit_label
        django_request.clinic = self.clinic
        record_patient_access(django_request, patients)

    def audit_read(self, *, obj=None, patient=None, detail=None) -> None:
        """Reads of patient data are audited as the key's name."""
        audit_record(action=Action.API_READ, clinic=self.clinic, patient=patient, obj=obj,
                     detail={"path": self.request.path, **(detail or {})})

    def data_object(self) -> dict:
        data = self.request.data
        if not isinstance(data, dict):
            raise ApiError(400, "malformed_body", "The body must be a JSON object.")
        return data

    def idempotent(self, handler) -> Response:
        """Run ``handler`` once per ``Idempotency-Key``: a retry with the same key and body gets the
        first answer (with ``Idempotent-Replayed: true``) and changes nothing; the same key with
        another body gets 422. Requests of one API key with a key wait for each other."""
        idem = self.request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if not idem:
            return handler()
        if len(idem) > 200:
            raise ApiError(400, "idempotency_key_invalid", "An Idempotency-Key is at most 200 characters.",
                           field=IDEMPOTENCY_HEADER)
        digest = hashlib.sha256(
            f"{self.request.method} {self.request.path}\n".encode() + json.dumps(self.request.data, sort_keys=True).encode()
        ).hexdigest()
        with transaction.atomic():
            ApiKey.objects.select_for_update().filter(pk=self.key.pk).first()
            kept = IdempotentRequest.objects.filter(api_key=self.key, key=idem).first()
            if kept is not None:
                if kept.request_hash != digest:
                    raise ApiError(422, "idempotency_key_reused",
                                   "This Idempotency-Key was used for another request. Use a new key for a new request.",
                                   field=IDEMPOTENCY_HEADER)
                return Response(kept.response, status=kept.status_code, headers={"Idempotent-Replayed": "true"})
            response = handler()
            if response.status_code < 500 and response.status_code not in NOT_KEPT:
                try:
                    with transaction.atomic():
                        IdempotentRequest.objects.create(
                            api_key=self.key, key=idem, request_hash=digest, status_code=response.status_code,
                            response=json.loads(json.dumps(response.data, cls=MoneyJSONEncoder)))
                except IntegrityError:
                    pass
            return response


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (a typo must not be silently ignored)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [serializers.ErrorDetail(f"Unknown field '{name}'. Known fields: {', '.join(self.fields)}.",
                                                    code="unknown_field")] for name in unknown})
        return super().to_internal_value(data)


def form_errors(form, *, prefix: str = "") -> list[dict]:
    """A Django form's errors as API errors, with each error's code (``required``, ``invalid``…)."""
    out = []
    for name, errors in form.errors.as_data().items():
        field = None if name == "__all__" else f"{prefix}{name}"
        out += [error(e.code or "invalid", " ".join(e.messages), field) for e in errors]
    return out
