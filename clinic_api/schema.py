"""The OpenAPI schema (drf-spectacular) describes the clinic API only, not the partners' webhooks."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


def only_clinic_api(endpoints, **kwargs):
    from .base import ClinicApiView

    return [(path, regex, method, callback) for path, regex, method, callback in endpoints
            if issubclass(getattr(callback, "cls", object), ClinicApiView)]


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "clinic_api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer fz_… (a clinic's API key)"}
