"""Periodic django-q2 schedules, created by data migrations so every deployment (and the demo)
has them: ``operations = [periodic_schedule(name=..., func=..., minutes=10)]``."""

from django.db import migrations

# The django_q migration that a schedule's data migration must run after.
DJANGO_Q_DEPENDENCY = ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")


def periodic_schedule(*, name: str, func: str, minutes: int) -> migrations.RunPython:
    """A RunPython operation that creates (or updates) the schedule ``name`` running ``func``
    every ``minutes`` minutes, and removes it when migrated backwards."""

    def create(apps, schema_editor):
        apps.get_model("django_q", "Schedule").objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1},
        )

    def remove(apps, schema_editor):
        apps.get_model("django_q", "Schedule").objects.filter(name=name).delete()

    return migrations.RunPython(create, remove)
