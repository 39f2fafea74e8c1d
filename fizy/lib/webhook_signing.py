"""Signing and verifying webhooks the Standard Webhooks way (https://www.standardwebhooks.com),
through the ``standardwebhooks`` library.

A request carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``:
one or more space-separated ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``. A sender
in the middle of a secret rotation signs with both secrets; the receiver accepts any signature
made with any secret it holds. The timestamp must be within 5 minutes of the receiver's clock.

Secrets are ``whsec_`` followed by 24 to 64 random bytes in base64. A secret without that prefix
(one set before this scheme) is used as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64


class SecretFormatError(ValueError):
    pass


def generate_secret(nbytes: int = 32) -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def validate_secret(secret: str) -> None:
    """Raise SecretFormatError with a readable reason unless ``secret`` is a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretFormatError(f"A signing secret starts with {SECRET_PREFIX} followed by base64.")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError(f"The part after {SECRET_PREFIX} is not valid base64.") from None
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise SecretFormatError(f"A signing secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes; this one has {len(raw)}.")


def _webhook(secret: str) -> Webhook:
    return Webhook(secret if secret.startswith(SECRET_PREFIX) else secret.encode("utf-8"))


def sign_headers(*, secrets_: Iterable[str], body: bytes, msg_id: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with every secret given."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else int(timestamp)
    when = datetime.fromtimestamp(ts, tz=UTC)
    text = body.decode("utf-8")
    signatures = [_webhook(secret).sign(msg_id=msg_id, timestamp=when, data=text) for secret in secrets_ if secret]
    if not signatures:
        raise ValueError("at least one secret is needed to sign")
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: " ".join(signatures)}


def verify(*, secrets_: Iterable[str], body: bytes, headers: Mapping[str, str]) -> tuple[int | None, str]:
    """(index of the secret that verified, "") or (None, why not). Never raises for bad input.

    ``headers`` are matched case-insensitively. The library checks that the three headers are
    there, the timestamp's distance from our clock, and every ``v1`` signature in constant time."""
    wanted = {ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER}
    given = {k.lower(): v for k, v in headers.items() if k.lower() in wanted}
    if not all(given.get(h, "").strip() for h in wanted):
        return None, "missing webhook-id, webhook-timestamp or webhook-signature header"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the body is not UTF-8, so it cannot be verified"
    why = "no secret configured"
    for index, secret in enumerate(secrets_):
        if not secret:
            continue
        try:
            _webhook(secret).verify(text, given, json_parse=False)
            return index, ""
        except WebhookVerificationError as error:
            why = str(error) or "invalid signature"
        except (ValueError, TypeError, OverflowError, UnicodeError):
            # A signature list the library cannot split or decode ("v1" without a comma, bad base64).
            why = "malformed webhook-signature header"
    return None, why
