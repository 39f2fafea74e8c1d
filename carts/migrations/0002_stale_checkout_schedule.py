"""Carts left "checking out" by a checkout that died are reopened every 10 minutes (django-q2 schedule)."""

from django.db import migrations

NAME = "fizy: reopen stale checkouts"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME, defaults={"func": "carts.tasks.reopen_stale_checkouts", "schedule_type": "I", "minutes": 10, "repeats": -1},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("carts", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
