"""Run the whole demo: migrate, seed, start the django-q2 worker, then serve the site."""

import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, seed demo data, start the queue worker and the web server (Ctrl-C stops both)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("DEMO_ADDR", "127.0.0.1:8000"))

    def handle(self, *args, addr, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("seed_demo", stdout=self.stdout)
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
