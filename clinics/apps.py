from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _sync_role_groups(sender, using="default", **kwargs):
    # After the last app's permissions exist (auth creates them in its own post_migrate receiver,
    # app by app): once per migrate, and after a flush.
    # (post_migrate is sent only to apps that have models.)
    if sender is [config for config in apps.get_app_configs() if config.models_module is not None][-1]:
        from .roles import sync_role_groups

        sync_role_groups(using=using)


class ClinicsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'clinics'

    def ready(self):
        post_migrate.connect(_sync_role_groups, dispatch_uid="clinics.sync_role_groups")
