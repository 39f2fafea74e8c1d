from django.apps import AppConfig


class FulfillmentConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'fulfillment'

    def ready(self):
        from clinics.approvals import register_applier
        from clinics.models import Approval

        from .finance import apply_approved_refund

        register_applier(Approval.Kind.LINE_REFUND, apply_approved_refund)
