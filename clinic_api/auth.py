"""How the clinic API knows who calls: ``Authorization: Bearer fz_…`` (one clinic's API key),
the scope each endpoint needs, and a request budget per key."""

from __future__ import annotations

from django.conf import settings
from rest_framework import authentication, exceptions, permissions, throttling

from .errors import ApiError
from .keys import api_key_for_token, api_key_touch
from .models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``request.auth`` is the :class:`ApiKey`; ``request.user`` stays None (no user acts)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if not header:
            return None  # NotAuthenticated (401) follows from the permission check
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer fz_…'.")
        key = api_key_for_token(token.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("This API key is not valid or was revoked. Ask a clinic admin for a key.")
        api_key_touch(key=key)
        return (None, key)

    def authenticate_header(self, request):
        return f'{self.keyword} realm="fizy"'


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated("Send your clinic's API key: 'Authorization: Bearer fz_…'.")
        return True


class HasScope(permissions.BasePermission):
    """The key has the scope the view names for this method (``view.scopes[method]`` or ``view.scope``)."""

    def has_permission(self, request, view):
        scope = getattr(view, "scopes", {}).get(request.method) or view.scope
        if not request.auth.has_scope(scope):
            raise ApiError(403, "scope_missing", f"This API key lacks the '{scope}' scope. A clinic admin can create a key that has it.")
        return True


class ApiKeyThrottle(throttling.SimpleRateThrottle):
    """Requests per API key (``CLINIC_API_RATE``, e.g. "600/min"); counters in the default cache."""

    scope = "api_key"

    def get_rate(self):
        return settings.CLINIC_API_RATE

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
