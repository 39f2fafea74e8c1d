"""The payment sweeper runs every 10 minutes (django-q2 schedule, created here so every
deployment has it): captures at the safe age, follow-up charges, orphan authorizations."""

from django.db import migrations

NAME = "fizy: payment sweeper"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME, defaults={"func": "fulfillment.tasks.sweep_payments", "schedule_type": "I", "minutes": 10, "repeats": -1},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("fulfillment", "0004_money_per_line"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
