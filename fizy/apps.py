from django.apps import AppConfig


class FizyConfig(AppConfig):
    """The project itself: management commands, template tags and the deployment checks."""

    name = "fizy"
    verbose_name = "Fizy"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .lib.admin import guard_admin_initial_data

        guard_admin_initial_data()  # a malformed ?fk= on an admin "add" page is dropped, not a 500
