"""Reading what a request carries, safely: a body with a bound (for endpoints anyone on the
internet can reach), ids and numbers typed into a query or a form, NUL characters, and where a
``next`` parameter may send the user."""

from __future__ import annotations

from django.utils.http import url_has_allowed_host_and_scheme


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


# --- numbers, ids and text typed into a request ------------------------------------------------

# The largest value a PostgreSQL bigint (and so any id column) holds.
MAX_ID = 2**63 - 1
NUL_MESSAGE = ("The request contained a NUL character (\\0), which no field accepts. "
               "Remove it (it often comes from copying out of another program) and try again.")


def parse_int(value, *, default: int | None = None, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    """A whole number from request text, or ``default``: only ASCII digits with an optional
    leading minus count (``str.isdigit()`` also accepts '²' and '٣', which ``int()`` refuses or
    reads differently); a value outside [``minimum``, ``maximum``] is ``default`` too."""
    text = value.strip() if isinstance(value, str) else ""
    digits = text[1:] if text.startswith("-") else text
    if not digits or len(digits) > 19 or not (digits.isascii() and digits.isdigit()):
        return default
    number = int(text)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        return default
    return number


def parse_id(value) -> int | None:
    """A database id from request text ('12'), or None for anything that cannot be one."""
    return parse_int(value, minimum=1, maximum=MAX_ID)


def has_nul(text) -> bool:
    """Whether request text holds a NUL character, which PostgreSQL text columns refuse."""
    return isinstance(text, str) and "\x00" in text


def local_redirect_target(request, target, *, default: str = "/") -> str:
    """``target`` when it is a path on this site (``/orders/12``), otherwise ``default``: never
    another host, a scheme-relative ``//host`` or a bare word a redirect would read as a URL name."""
    target = target if isinstance(target, str) else ""
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return default
    return target
