from django.db import migrations

from fizy.lib.schedules import DJANGO_Q_DEPENDENCY, periodic_schedule


class Migration(migrations.Migration):
    dependencies = [DJANGO_Q_DEPENDENCY]

    operations = [
        periodic_schedule(name="Clear expired sessions", func="accounts.tasks.clear_expired_sessions", minutes=60),
    ]
