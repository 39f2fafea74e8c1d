"""The staff roles (clinics/roles.py) as Django groups; the demo's all-permissions group goes."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_role_groups(apps, schema_editor):
    from clinics.roles import sync_role_groups

    # Permissions are normally created after the whole migrate run; create those of the apps
    # migrated so far now, so that the groups get them on an existing database too.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    sync_role_groups(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("clinics", "0004_patient_notice_consent"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="organization",
            options={"ordering": ["name"], "permissions": [("change_platform_fee", "Can set an organization's platform fee (finance)")]},
        ),
        migrations.RunPython(create_role_groups, migrations.RunPython.noop),
    ]
