from django.apps import AppConfig


class ClinicApiConfig(AppConfig):
    name = "clinic_api"
    verbose_name = "Clinic API"

    def ready(self):
        from . import schema  # noqa: F401 — registers the API key scheme with drf-spectacular
