"""Run the whole demo: start from a fresh demo database, migrate, seed, start the django-q2
worker, then serve the site. ``KEEP_DEMO_DATA=1`` keeps the database of the last run instead."""

import os
from pathlib import Path
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from clinics.models import Organization
from fizy import demo_data


def keep_demo_data() -> bool:
    return os.environ.get("KEEP_DEMO_DATA", "").strip().lower() in {"1", "true", "yes"}


class Command(BaseCommand):
    help = ("Start from a fresh demo database (unless KEEP_DEMO_DATA=1), migrate, seed demo data, start the "
            "queue worker and the web server (Ctrl-C stops both).")

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("DEMO_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--prepare-only", action="store_true",
                            help="reset, migrate and seed the demo database, then stop (serve nothing)")

    def handle(self, *args, addr, prepare_only=False, **options):
        self.reset()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if keep_demo_data() and Organization.objects.exists():
            self.stdout.write(f"Kept as it was: the same logins (password for all: {demo_data.PASSWORD}).")
        else:
            call_command("seed_demo", stdout=self.stdout)
        if prepare_only:
            return
        worker = subprocess.Popen([sys.executable, str(settings.BASE_DIR / "manage.py"), "qcluster"])
        self.stdout.write(self.style.SUCCESS(f"\nFizy demo: http://{addr}/  (staff admin: http://{addr}/admin/)"))
        self.stdout.write("Queue worker started (django-q2, ORM broker). Press Ctrl-C to stop.\n")
        try:
            call_command("runserver", addr, use_reloader=False)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()

    def reset(self) -> None:
        """A fresh demo each run: the refill day starts again (20 patients due, an empty cart).
        The SQLite file is removed; another database is emptied only with DEBUG on."""
        if keep_demo_data():
            self.stdout.write("KEEP_DEMO_DATA=1: keeping the demo database of the last run.")
            return
        db = settings.DATABASES["default"]
        if db["ENGINE"] == "django.db.backends.sqlite3":
            connection.close()
            path = Path(str(db["NAME"]))
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
            self.stdout.write(f"Fresh demo database: {path.name} (KEEP_DEMO_DATA=1 keeps the last one).")
        elif settings.DEBUG:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("flush", interactive=False, verbosity=0)
            self.stdout.write("Fresh demo database: emptied (KEEP_DEMO_DATA=1 keeps the last one).")
        else:
            raise CommandError("The demo resets its database: run it with DEBUG=true, or KEEP_DEMO_DATA=1 to keep it.")
