from django.db import migrations

from fizy.lib.schedules import DJANGO_Q_DEPENDENCY, periodic_schedule


class Migration(migrations.Migration):
    dependencies = [("clinic_api", "0001_initial"), DJANGO_Q_DEPENDENCY]

    operations = [periodic_schedule(name="fizy: clinic webhooks", func="clinic_api.tasks.run_webhooks", minutes=1)]
