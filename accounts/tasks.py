"""Periodic upkeep of logins (a django-q2 schedule, accounts/migrations)."""

from importlib import import_module

from django.conf import settings


def clear_expired_sessions() -> None:
    """Delete the sessions that ended (idle past SESSION_IDLE_TIMEOUT): Django keeps their rows
    until something deletes them."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
