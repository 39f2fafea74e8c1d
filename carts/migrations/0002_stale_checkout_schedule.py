"""Carts left "checking out" by a checkout that died are reopened every 10 minutes."""

from django.db import migrations

from fizy.lib.schedules import DJANGO_Q_DEPENDENCY, periodic_schedule


class Migration(migrations.Migration):
    dependencies = [("carts", "0001_initial"), DJANGO_Q_DEPENDENCY]

    operations = [
        periodic_schedule(name="fizy: reopen stale checkouts", func="carts.tasks.reopen_stale_checkouts", minutes=10),
    ]
