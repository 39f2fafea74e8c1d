"""Patient notices run every minute: read new line events into notices, send what is due,
coordinators' alerts and digests."""

from django.db import migrations

from fizy.lib.schedules import DJANGO_Q_DEPENDENCY, periodic_schedule


class Migration(migrations.Migration):
    dependencies = [("notices", "0001_initial"), DJANGO_Q_DEPENDENCY]

    operations = [periodic_schedule(name="fizy: patient notices", func="notices.tasks.run_notices", minutes=1)]
