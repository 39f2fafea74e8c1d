"""The payment sweeper runs every 10 minutes: captures at the safe age, follow-up charges,
orphan authorizations released."""

from django.db import migrations

from fizy.lib.schedules import DJANGO_Q_DEPENDENCY, periodic_schedule


class Migration(migrations.Migration):
    dependencies = [("fulfillment", "0004_money_per_line"), DJANGO_Q_DEPENDENCY]

    operations = [
        periodic_schedule(name="fizy: payment sweeper", func="fulfillment.tasks.sweep_payments", minutes=10),
    ]
