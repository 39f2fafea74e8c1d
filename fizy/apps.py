from django.apps import AppConfig


class FizyConfig(AppConfig):
    """The project itself: management commands, template tags and the deployment checks."""

    name = "fizy"
    verbose_name = "Fizy"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .lib.admin import guard_admin_autocomplete

        guard_admin_autocomplete()  # a malformed key (?clinic=TX, clinic=%00) on an admin form is refused, not a 500
