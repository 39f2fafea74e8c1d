"""The settings refuse to run unsafely, and the production checklist is clean."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "-production-like-secret-key-with-enough-entropy-0123456789",
    "ALLOWED_HOSTS": "fizy.example.com",
    "DATABASE_URL": "sqlite:////tmp/fizy-deploy-check.sqlite3",
}


def _manage(*args, env):
    # Only the basics of the environment: none of the test suite's own settings variables.
    clean = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "fizy.settings"
    # Run from another directory: paths must resolve from the project, not the working directory.
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=clean, cwd="/",
                          capture_output=True, text=True, timeout=120)


def test_debug_off_without_secret_key_refuses_to_start(tmp_path):
    (tmp_path / "x").write_text("")
    result = _manage("check", env={"DEBUG": "false", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_under_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_default_sqlite_path_is_in_the_project_directory():
    result = _manage("shell", "-c", "from django.conf import settings; print(settings.DATABASES['default']['NAME'])",
                     env={"DEBUG": "true"})
    assert result.stdout.strip().splitlines()[-1] == str(ROOT / "db.sqlite3"), result.stderr
