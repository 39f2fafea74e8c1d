"""Errors a developer can act on: every 4xx answer of the clinic API is

    {"code": "...", "message": "...", "field": "..." | null, "errors": [{"code", "message", "field"}, ...]}

``code`` is stable (the first error's; each error has its own), ``message`` says what to do,
``field`` names the request field (``lines[3].quantity``) or is null."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

# DRF's own exceptions, by class: the code and message we answer with.
CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "invalid_api_key",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_body",
}


class ApiError(exceptions.APIException):
    """An error with its code and field: ``raise ApiError(400, "unknown_field", "…", field="x")``;
    ``errors`` for several at once."""

    def __init__(self, status_code: int, code: str, message: str, *, field: str | None = None,
                 errors: list[dict] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.errors = errors or [error(code, message, field)]


def error(code: str, message: str, field: str | None = None) -> dict:
    return {"code": code, "message": str(message), "field": field}


def body(errors: list[dict]) -> dict:
    return {**errors[0], "errors": errors}


def _flatten(detail, field: str | None = None) -> list[dict]:
    """DRF's nested validation detail as a flat list of errors with dotted field paths."""
    if isinstance(detail, dict):
        out = []
        for name, value in detail.items():
            if isinstance(name, int) or str(name).isdigit():  # a list's items, by index
                path = f"{field}[{name}]" if field else f"[{name}]"
            else:
                name = None if name == "non_field_errors" else str(name)
                path = name if field is None else (f"{field}.{name}" if name else field)
            out += _flatten(value, path)
        return out
    if isinstance(detail, list):
        if all(not isinstance(d, dict | list) for d in detail):
            return [error(getattr(d, "code", None) or "invalid", d, field) for d in detail]
        out = []
        for index, value in enumerate(detail):
            out += _flatten(value, f"{field}[{index}]" if field else f"[{index}]")
        return out
    return [error(getattr(detail, "code", None) or "invalid", detail, field)]


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("No such object here (or it belongs to another clinic).")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: a 500, logged by Django
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, ApiError):
        errors = exc.errors
    elif isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail) or [error("invalid", "The request is not valid.")]
    else:
        code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), None) or getattr(exc, "default_code", "error")
        errors = [error(code, exc.detail if isinstance(exc.detail, str) else exc.default_detail)]
    return Response(body(errors), status=exc.status_code or status.HTTP_400_BAD_REQUEST, headers=headers)
