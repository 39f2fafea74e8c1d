"""``make demo`` twice in a row: each run starts the refill day again (``manage.py demo``
resets the SQLite demo database unless KEEP_DEMO_DATA=1)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What a coordinator's refill day leaves behind: every due patient ordered today.
REFILL_DAY_DONE = (
    "from django.utils import timezone; from fulfillment.models import Order; "
    "Order.objects.update(placed_at=timezone.now())"
)
COUNT_DUE = (
    "from carts.selectors import refills_due; from clinics.models import Clinic, Membership; "
    "print('due', len(refills_due(clinic=Clinic.objects.get(name='Bloom Wellness — Austin')))); "
    "print('admins', sorted(set(Membership.objects.filter(role='clinic_admin').values_list('clinic__name', flat=True))))"
)


def manage(tmp_path, *args, keep=False):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "DEBUG": "true",
           "DJANGO_SETTINGS_MODULE": "fizy.settings"}
    env.pop("KEEP_DEMO_DATA", None)
    if keep:
        env["KEEP_DEMO_DATA"] = "1"
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout



def test_each_demo_run_starts_the_refill_day_again(tmp_path):
    manage(tmp_path, "demo", "--prepare-only")
    first = manage(tmp_path, "shell", "-c", COUNT_DUE)
    assert "due 20" in first
    assert "Bloom Wellness — Austin" in first and "Vitalis Telehealth — Miami" in first  # a clinic admin each

    manage(tmp_path, "shell", "-c", REFILL_DAY_DONE)
    assert "due 0" in manage(tmp_path, "shell", "-c", COUNT_DUE)
    kept = manage(tmp_path, "demo", "--prepare-only", keep=True)
    assert "keeping the demo database" in kept
    assert "due 0" in manage(tmp_path, "shell", "-c", COUNT_DUE)

    again = manage(tmp_path, "demo", "--prepare-only")
    assert "Fresh demo database" in again and "vitalis.admin" in again
    assert "due 20" in manage(tmp_path, "shell", "-c", COUNT_DUE)
