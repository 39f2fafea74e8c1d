"""Signed prescription documents: what may be uploaded (PDF, JPEG or PNG, at most 10 MB, the
type told by the file's own first bytes, never by its name or the browser's word), and the
short-lived signed link that lets the partner pharmacy a line was routed to fetch it.

Files go through Django's storage API (``STORAGES["default"]``): local files in the demo,
S3-compatible storage through ``django-storages`` in production (see fizy/settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
SIGNATURES = (
    (b"%PDF-", "application/pdf", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
)
LINK_SALT = "prescriptions.document-link"


class DocumentRejected(ValueError):
    """The upload is not a prescription document Fizy accepts; the message says why."""


def document_content_type(upload) -> str:
    """The content type of ``upload`` (a Django UploadedFile or File) told by its first bytes.
    Raises DocumentRejected for a file that is too large, empty, or not a PDF, JPEG or PNG."""
    size = getattr(upload, "size", None)
    if size is not None and size > MAX_DOCUMENT_BYTES:
        raise DocumentRejected(f"The document is {size / 1024 / 1024:.1f} MB; the limit is 10 MB.")
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    if not head:
        raise DocumentRejected("The document is empty.")
    for magic, content_type, _ in SIGNATURES:
        if head.startswith(magic):
            return content_type
    raise DocumentRejected("The document must be a PDF, JPEG or PNG file (this one is none of them).")


def extension_for(content_type: str) -> str:
    return next(ext for _, ctype, ext in SIGNATURES if ctype == content_type)


@dataclass(frozen=True)
class DocumentGrant:
    prescription_id: int
    order_line_id: int
    partner_id: int


def document_link_token(*, prescription_id: int, order_line_id: int, partner_id: int) -> str:
    """A signed, timestamped token naming the prescription, the order line and the partner the
    line was routed to (``settings.PRESCRIPTION_DOCUMENT_LINK_MAX_AGE`` seconds of life)."""
    return signing.dumps({"rx": prescription_id, "line": order_line_id, "partner": partner_id}, salt=LINK_SALT,
                         compress=True)


def document_link_verify(token: str) -> DocumentGrant | None:
    """The grant of a valid, unexpired token; None otherwise (tampered, expired, malformed)."""
    try:
        data = signing.loads(token, salt=LINK_SALT, max_age=settings.PRESCRIPTION_DOCUMENT_LINK_MAX_AGE)
        return DocumentGrant(prescription_id=int(data["rx"]), order_line_id=int(data["line"]),
                             partner_id=int(data["partner"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
