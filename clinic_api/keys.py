"""API keys: a clinic admin creates, lists and revokes them; a request's token is looked up here.

A token is ``fz_<prefix>_<secret>``: 8 random characters to find the row, then 40 more. Only
the SHA-256 of the whole token is stored; the token is shown once, when the key is created."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from clinics.audit import Action, audit_record
from clinics.models import Clinic, Membership

from .models import ApiKey, Scope

TOKEN_START = "fz_"
PREFIX_LENGTH = 8
ONLY_ADMINS = "Only a clinic admin can manage the clinic's API keys and webhooks."


class ApiKeyError(Exception):
    """A key cannot be created or revoked; the message says why."""


class NotClinicAdmin(ApiKeyError):
    pass


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    token: str  # shown once


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_clinic_admin(*, clinic: Clinic, user) -> bool:
    return Membership.objects.filter(user=user, clinic=clinic, role=Membership.Role.CLINIC_ADMIN).exists()


def require_clinic_admin(*, clinic: Clinic, actor) -> None:
    if not is_clinic_admin(clinic=clinic, user=actor):
        raise NotClinicAdmin(ONLY_ADMINS)


def api_key_create(*, clinic: Clinic, name: str, scopes: list[str], actor) -> NewKey:
    """A new key for ``clinic`` with ``scopes``; the returned token is never shown again."""
    require_clinic_admin(clinic=clinic, actor=actor)
    name = (name or "").strip()
    if not name:
        raise ApiKeyError("Name the key after the system that uses it, e.g. 'EHR sync'.")
    unknown = set(scopes) - set(Scope.values)
    if unknown or not scopes:
        raise ApiKeyError("Choose at least one of the scopes listed.")
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    token = f"{TOKEN_START}{prefix}_{secrets.token_urlsafe(30)}"
    try:
        with transaction.atomic():
            key = ApiKey.objects.create(clinic=clinic, name=name, prefix=prefix, hashed=hash_token(token),
                                        scopes=[s for s in Scope.values if s in scopes], created_by=actor)
            audit_record(action=Action.API_KEY_CREATE, actor=actor, clinic=clinic, obj=key,
                         detail={"name": name, "scopes": key.scopes, "prefix": prefix})
    except IntegrityError:
        raise ApiKeyError(f"This clinic already has a key named '{name}'. Choose another name.") from None
    return NewKey(key=key, token=token)


def api_key_revoke(*, key: ApiKey, actor) -> ApiKey:
    """Revoke a key at once: the next request with it is refused (401)."""
    require_clinic_admin(clinic=key.clinic, actor=actor)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is None:
            key.revoked_at, key.revoked_by = timezone.now(), actor
            key.save(update_fields=["revoked_at", "revoked_by"])
            audit_record(action=Action.API_KEY_REVOKE, actor=actor, clinic=key.clinic, obj=key,
                         detail={"name": key.name, "prefix": key.prefix})
    return key


def api_key_for_token(token: str) -> ApiKey | None:
    """The active key ``token`` belongs to, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_START):
        return None
    prefix = token[len(TOKEN_START):len(TOKEN_START) + PREFIX_LENGTH]
    key = ApiKey.objects.select_related("clinic__organization").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.hashed, hash_token(token)) or key.revoked_at is not None:
        return None
    return key


def api_key_touch(*, key: ApiKey) -> None:
    """Record the key's use (at most once a minute, to spare a write per request)."""
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


def clinic_api_keys(*, clinic: Clinic):
    return ApiKey.objects.filter(clinic=clinic).select_related("created_by", "revoked_by")
