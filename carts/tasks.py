"""django-q2 tasks of carts. Each takes ids (or nothing), re-reads, calls one service, and is safe to run twice."""


def reopen_stale_checkouts():
    """Every 10 minutes: a cart left "checking out" by a checkout that died is open for edits again."""
    from .checkout import reopen_stale_checkouts as reopen

    return reopen()


def purge_expired_imports():
    """Every 15 minutes: uploaded refill lists nobody confirmed within their hour are deleted."""
    from .imports import purge_expired_imports as purge

    return purge()
