"""Settings for the test suite: the real settings, with test-friendly environment defaults."""

import os

os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-" + "x" * 48)
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("Q_SYNC", "true")
os.environ.setdefault("PAYMENT_GATEWAY", "sandbox")
os.environ.setdefault("FIZY_ALLOW_SANDBOX", "true")
# A key for the tests only (never the demo's development key, which DEBUG=false refuses).
# FIZY_TEST_BROKER=orm|redis: tasks travel through that broker (fizy/tests/queue.py).
if os.environ.get("FIZY_TEST_BROKER", "").strip().lower() == "redis":
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
elif os.environ.get("FIZY_TEST_BROKER", "").strip().lower() == "orm":
    os.environ.pop("REDIS_URL", None)
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "ACIn4ry2zlt7bgM_YpZiUbr1fjG9jHHE8nGGz-6zkVU=")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
