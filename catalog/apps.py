from django.apps import AppConfig


class CatalogConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'catalog'

    def ready(self):
        from clinics.approvals import register_applier
        from clinics.models import Approval

        from .services import apply_approved_api_url

        register_applier(Approval.Kind.PARTNER_API_URL, apply_approved_api_url)
