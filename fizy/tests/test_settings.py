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
    "STRIPE_SECRET_KEY": "sk_live_placeholder_for_the_check",
    "STRIPE_WEBHOOK_SECRET": "whsec_placeholder_for_the_check",
    "FIELD_ENCRYPTION_KEYS": "w8Jm9tQ1FzSbKQ3m0q3lqV0xYcKxJ6bL2D2m3nYqk2Y=",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "placeholder_auth_token_for_the_check",
    "TWILIO_FROM_NUMBER": "+15125550000",
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


def test_debug_off_without_an_encryption_key_refuses_to_start():
    result = _manage("check", env={**PROD_ENV, "FIELD_ENCRYPTION_KEYS": ""})
    assert result.returncode != 0 and "FIELD_ENCRYPTION_KEYS is empty" in result.stderr
    dev_key = _manage("check", env={**PROD_ENV, "FIELD_ENCRYPTION_KEYS": "lSsVEraUNGEYjZVa1f9U3f12fdx5KgzjoxDhvDbBdHI="})
    assert dev_key.returncode != 0 and "development key" in dev_key.stderr
    not_a_key = _manage("check", env={**PROD_ENV, "FIELD_ENCRYPTION_KEYS": "hunter2"})
    assert not_a_key.returncode != 0 and "not a Fernet key" in not_a_key.stderr


def test_the_demo_gets_a_development_key_without_configuration():
    result = _manage("shell", "-c", "from django.conf import settings; print(len(settings.FIELD_ENCRYPTION_KEYS))",
                     env={"DEBUG": "true"})
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "1", result.stderr


def test_check_deploy_is_clean_under_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_default_sqlite_path_is_in_the_project_directory():
    result = _manage("shell", "-c", "from django.conf import settings; print(settings.DATABASES['default']['NAME'])",
                     env={"DEBUG": "true"})
    assert result.stdout.strip().splitlines()[-1] == str(ROOT / "db.sqlite3"), result.stderr


def test_debug_off_without_a_stripe_key_refuses_to_start():
    env = {k: v for k, v in PROD_ENV.items() if k != "STRIPE_SECRET_KEY"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "the sandbox payment gateway (no STRIPE_SECRET_KEY is set) would be used" in result.stderr
    assert "no money would move" in result.stderr


def test_debug_off_with_sandbox_partners_refuses_to_start():
    result = _manage("check", env={**PROD_ENV, "SANDBOX_PARTNERS": "true"})
    assert result.returncode != 0 and "sandbox partner pharmacies" in result.stderr


def test_a_staging_server_may_allow_the_sandbox_explicitly():
    env = {k: v for k, v in PROD_ENV.items() if k != "STRIPE_SECRET_KEY"}
    result = _manage("check", env={**env, "FIZY_ALLOW_SANDBOX": "true"})
    assert result.returncode == 0, result.stderr


def test_check_deploy_flags_a_stripe_key_without_a_webhook_secret():
    env = {k: v for k, v in PROD_ENV.items() if k != "STRIPE_WEBHOOK_SECRET"}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "fizy.W001" in result.stderr + result.stdout and "STRIPE_WEBHOOK_SECRET" in result.stderr + result.stdout


def test_debug_off_without_twilio_refuses_to_start():
    env = {k: v for k, v in PROD_ENV.items() if not k.startswith("TWILIO_")}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "the sandbox SMS sender (no TWILIO_ACCOUNT_SID is set) would be used" in result.stderr


def test_production_keeps_prescription_documents_in_s3_private_and_encrypted():
    """With PRESCRIPTION_DOCUMENTS_BUCKET, documents go through django-storages and boto3 to an
    S3-compatible store (a local fake here), private and encrypted at rest, and read back."""
    from fizy.tests.fake_s3 import start_fake_s3

    s3, stop = start_fake_s3(access_key="AKIAFIZYTEST", buckets=("fizy-rx",))
    env = {**PROD_ENV, "PRESCRIPTION_DOCUMENTS_BUCKET": "fizy-rx", "AWS_S3_ENDPOINT_URL": s3.url,
           "AWS_S3_REGION_NAME": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIAFIZYTEST",
           "AWS_SECRET_ACCESS_KEY": "fake-secret-for-the-test"}
    script = ("from django.core.files.base import ContentFile; from django.core.files.storage import default_storage as s; "
              "name = s.save('prescriptions/2026/11/scan.pdf', ContentFile(b'%PDF-1.4 signed', name='scan.pdf')); "
              "print(type(s._wrapped).__name__, name, s.open(name).read().decode())")
    try:
        result = _manage("shell", "-c", script, env=env)
    finally:
        stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["S3Storage", "prescriptions/2026/11/scan.pdf", "%PDF-1.4", "signed"]
    stored = s3.objects("fizy-rx")["prescriptions/2026/11/scan.pdf"]
    assert stored.body == b"%PDF-1.4 signed"
    assert stored.headers["x-amz-acl"] == "private" and stored.headers["x-amz-server-side-encryption"] == "AES256"
