"""Values encrypted at rest: a model field stored as a Fernet token (the ``cryptography``
library), read back in clear by the code that needs it.

Keys: ``settings.FIELD_ENCRYPTION_KEYS`` (environment ``FIELD_ENCRYPTION_KEYS``, comma-separated
Fernet keys). The first key encrypts; every key in the list decrypts (``MultiFernet``), which is
what makes rotation possible without downtime:

1. Generate a key: ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.
2. Put it first, keep the old one after it: ``FIELD_ENCRYPTION_KEYS=<new>,<old>``; restart every
   process (web and workers). New writes use the new key; old values still open with the old one.
3. ``python manage.py rotate_encryption_keys``: re-encrypts every encrypted column with the new key.
4. Remove the old key from the list; restart.

With DEBUG on (the demo) and in the test settings a fixed development key is used when none is
set; with DEBUG off the settings refuse to start without a key of their own.

An encrypted column cannot be searched or filtered on (each token has its own random IV).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts with its version byte 0x80, base64url-encoded


class DecryptionError(ImproperlyConfigured):
    """A stored value opens with none of the configured keys (a key removed too early, or the
    wrong environment's keys)."""


def check_keys(keys: list[str]) -> None:
    """Raise ImproperlyConfigured with a readable reason unless ``keys`` are usable Fernet keys."""
    if not keys:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is empty: partner API keys and webhook secrets are encrypted at rest with it. "
            'Generate one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        )
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key number {position} is not a Fernet key (32 url-safe base64-encoded bytes)."
            ) from None


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    check_keys(list(keys))
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeEncodeError):
        raise DecryptionError(
            "A value encrypted at rest opens with none of the keys in FIELD_ENCRYPTION_KEYS "
            "(was an old key removed before `manage.py rotate_encryption_keys` ran?)."
        ) from None


def rotate(token: str) -> str:
    """The same value, encrypted again with the first key."""
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise DecryptionError("A stored value opens with none of the keys in FIELD_ENCRYPTION_KEYS.") from None


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token and read back in clear. An empty value is stored empty, so
    "not set" stays visible without a key. Never put one in a lookup: it cannot match."""

    description = "Text encrypted at rest (Fernet)"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)


def encrypted_fields(model) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
