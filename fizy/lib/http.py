"""Reading a request body with a bound, for endpoints that anyone on the internet can reach."""

from __future__ import annotations


class BodyTooLarge(Exception):
    def __init__(self, size: int):
        super().__init__(f"body of {size} bytes")
        self.size = size


def read_body_at_most(request, limit: int) -> bytes:
    """The body of a Django ``HttpRequest``, refusing one over ``limit`` bytes without reading it
    whole: a declared Content-Length over the limit is refused before any byte is read, and at
    most ``limit`` + 1 bytes are ever read from the stream (whatever the header said). Raises
    :class:`BodyTooLarge` with the declared (or read) size."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        declared = 0
    if declared > limit:
        raise BodyTooLarge(declared)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge(max(declared, len(body)))
    return body


def client_address(request) -> str | None:
    """The address the request came from: the connection's (REMOTE_ADDR), or behind
    ``TRUSTED_PROXY_COUNT`` proxies the address the outermost of them added to X-Forwarded-For
    (what a client writes there itself comes first and is ignored)."""
    from django.conf import settings

    hops = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if hops > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR") or None
