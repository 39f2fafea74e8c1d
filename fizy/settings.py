"""Fizy settings. Every value comes from the environment (see .env.example)."""

import datetime
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from fizy.lib.encryption import check_keys as check_field_encryption_keys

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "dev-insecure-fizy-demo-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 50 characters when DEBUG is off "
        "(for example: python -c 'import secrets; print(secrets.token_urlsafe(64))')."
    )

# Partner API keys and webhook secrets are encrypted at rest with these Fernet keys (first one
# encrypts, all decrypt: rotation in fizy/lib/encryption.py). A development key only with DEBUG.
_DEV_FIELD_ENCRYPTION_KEY = "lSsVEraUNGEYjZVa1f9U3f12fdx5KgzjoxDhvDbBdHI="
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[_DEV_FIELD_ENCRYPTION_KEY] if DEBUG else [])
if not DEBUG and _DEV_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds the development key, which is public: generate a key of your own.")
check_field_encryption_keys(FIELD_ENCRYPTION_KEYS)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_htmx",
    "template_partials",
    "django_q",
    "localflavor",
    "phonenumber_field",
    "health_check",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "accounts",
    "clinics",
    "catalog",
    "routing",
    "prescriptions",
    "carts",
    "fulfillment",
    "notices",
    "clinic_api",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "fizy.apps.FizyConfig",  # project-wide commands (seed_demo, demo, check_money) and deployment checks
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "fizy.middleware.RefuseNulMiddleware",
    "fizy.middleware.AdminObjectIdMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.IdleSessionTimeout",
    "accounts.middleware.SecondFactorRequired",
    "clinics.access.PatientAccessMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",  # who made an admin change, for its history
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]
# History (django-simple-history) is a record, not an undo button: a revert would bypass the
# second-staff approval of a partner's API URL.
SIMPLE_HISTORY_REVERT_DISABLED = True

ROOT_URLCONF = "fizy.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "clinics.context_processors.clinic_switcher",
                "fulfillment.context_processors.attention_badge",
            ],
        },
    },
]

WSGI_APPLICATION = "fizy.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Persistent connections outside DEBUG: a new PostgreSQL connection per request costs more than
# a whole webhook event (docs/benchmarks.md). The health check replaces a connection the server dropped.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0 if DEBUG else 60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs the web server and the queue worker side by side on one file.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The front door (accounts/): django-axes counts failed logins and locks a login, and an address,
# after AXES_FAILURE_LIMIT failures for AXES_COOLOFF_MINUTES (a user admin can unlock sooner: delete
# the attempt in the admin's "Access attempts"). Staff and clinic admins must use a second factor
# (TOTP, django-otp). A session ends SESSION_IDLE_TIMEOUT seconds after the user's last action.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: a login from anywhere, an address for any login
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_CLIENT_IP_CALLABLE = "fizy.lib.http.client_address"
AXES_VERBOSE = False
# Behind this many proxies (load balancer, CDN), the client's address is the one they added to
# X-Forwarded-For; 0: the connection's own address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
OTP_TOTP_ISSUER = "Fizy"
SESSION_IDLE_TIMEOUT = env.int("SESSION_IDLE_TIMEOUT", default=30 * 60)
SESSION_COOKIE_AGE = SESSION_IDLE_TIMEOUT

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploaded files (a clinic's answers to a pharmacy's hold: signed prescriptions) go through
# Django's default storage. They are never served as public media: no MEDIA_URL route exists.
# Several web machines need shared storage here (a network volume or an object-storage backend).
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")

PHONENUMBER_DEFAULT_REGION = "US"

# Security: secure defaults whenever DEBUG is off; each can be relaxed through the environment
# (for example behind a TLS-terminating proxy on a private network).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# The load balancer asks /health/ over plain HTTP inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]

# Content-Security-Policy (django-csp): scripts and styles come from our own static files only
# (no inline script, no inline event handler, no eval: HTMX is configured for it in base.html),
# plus Stripe.js and its frames on the Billing page.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", "https://js.stripe.com"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", "https://api.stripe.com"],
        "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}
# Permissions-Policy (django-permissions-policy): no page of Fizy uses these browser features.
PERMISSIONS_POLICY = {feature: [] for feature in (
    "accelerometer", "camera", "geolocation", "gyroscope", "magnetometer", "microphone", "usb")}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The clinic API (clinic_api/, docs/clinic-api.md): requests per API key, the largest body.
CLINIC_API_RATE = env.str("CLINIC_API_RATE", default="600/min")
CLINIC_API_MAX_BODY_BYTES = env.int("CLINIC_API_MAX_BODY_BYTES", default=512 * 1024)
# Outbound webhooks to the clinics: attempts per delivery, the first retry's wait (doubling), timeout.
CLINIC_WEBHOOK_MAX_ATTEMPTS = env.int("CLINIC_WEBHOOK_MAX_ATTEMPTS", default=8)
CLINIC_WEBHOOK_BACKOFF_SECONDS = env.float("CLINIC_WEBHOOK_BACKOFF_SECONDS", default=30.0)
CLINIC_WEBHOOK_TIMEOUT = env.float("CLINIC_WEBHOOK_TIMEOUT", default=10.0)
# Plain-http webhook URLs only for development (the demo); production clinics give https URLs.
CLINIC_WEBHOOK_ALLOW_HTTP = env.bool("CLINIC_WEBHOOK_ALLOW_HTTP", default=DEBUG)

SPECTACULAR_SETTINGS = {
    "TITLE": "Fizy clinic API",
    "DESCRIPTION": "Fill the clinic's cart from your EHR and follow every line. See docs/clinic-api.md.",
    "VERSION": "1.0.0",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "PREPROCESSING_HOOKS": ["clinic_api.schema.only_clinic_api"],
    # The docs page's JavaScript is served from our own static files (no CDN: offline and CSP).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Payments. Without a Stripe secret key the sandbox gateway is used (demo, tests).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # only for pointing the client at a fake server
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="stripe" if STRIPE_SECRET_KEY else "sandbox")

# Money after the order (fulfillment/settlement.py). A card authorization lasts about 7 days at
# Stripe; the accepted lines are captured at the latest CAPTURE_AFTER_HOURS after it, and lines
# answered later are charged by a follow-up payment on the clinic's saved card.
CAPTURE_AFTER = datetime.timedelta(hours=env.float("CAPTURE_AFTER_HOURS", default=5 * 24))
AUTHORIZATION_LIFE = datetime.timedelta(hours=env.float("AUTHORIZATION_LIFE_HOURS", default=7 * 24))
# A staff refund above this amount waits for a second staff member's approval.
REFUND_APPROVAL_ABOVE = env.float("REFUND_APPROVAL_ABOVE", default=500.0)

# Partner pharmacies: our calls to their order APIs.
PARTNER_CONNECT_TIMEOUT = env.float("PARTNER_CONNECT_TIMEOUT", default=5.0)
PARTNER_READ_TIMEOUT = env.float("PARTNER_READ_TIMEOUT", default=20.0)
PARTNER_DISPATCH_MAX_ATTEMPTS = env.int("PARTNER_DISPATCH_MAX_ATTEMPTS", default=5)
PARTNER_DISPATCH_BACKOFF_SECONDS = env.float("PARTNER_DISPATCH_BACKOFF_SECONDS", default=30.0)
# One call to a partner (request and whole answer) ends within this many seconds, whatever the
# partner does; it must be shorter than the queue's task timeout (Q_TIMEOUT), see fizy.E001.
PARTNER_ATTEMPT_DEADLINE = env.float("PARTNER_ATTEMPT_DEADLINE", default=30.0)
# A partner order still "queued" this long after it was due was lost by the queue (a worker died
# before taking it): the reclaimer queues it again. "sending" ones are reclaimed when their lease
# (the task timeout) has run out.
PARTNER_DISPATCH_STALE_SECONDS = env.int("PARTNER_DISPATCH_STALE_SECONDS", default=120)
# The watchdog (fulfillment/watchdog.py): how long a line may stay in a status before its next
# event is late — (days, business days only?) — unless staff set an expected time in the admin
# (per partner, or for every partner). A late line is "overdue": shown on Needs attention and in
# the admin, and polled where the partner offers a status call.
LINE_EXPECTED_TIMES = {
    "sent": (1, True),  # accepted (or refused) within 1 business day
    "accepted": (5, False),  # shipped within 5 days
    "compounding": (5, False),
    "shipped": (7, False),  # delivered within 7 days
}

# Partner webhooks (fulfillment/webhooks.py): the largest body read; how long refused requests'
# metadata is kept; the last day the pre-Standard-Webhooks X-Fizy-* signatures are accepted
# (docs/partner-api.md; empty: no longer accepted).
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=64 * 1024)
WEBHOOK_REFUSED_RETENTION_DAYS = env.int("WEBHOOK_REFUSED_RETENTION_DAYS", default=14)
# An uploaded refill list waits this long for its coordinator to confirm it, then is purged.
CSV_IMPORT_PENDING_SECONDS = env.int("CSV_IMPORT_PENDING_SECONDS", default=3600)
_legacy_until = env.str("WEBHOOK_LEGACY_SIGNATURES_UNTIL", default="2027-03-31").strip()
try:
    WEBHOOK_LEGACY_SIGNATURES_UNTIL = datetime.date.fromisoformat(_legacy_until) if _legacy_until else None
except ValueError:
    raise ImproperlyConfigured("WEBHOOK_LEGACY_SIGNATURES_UNTIL must be a date (YYYY-MM-DD) or empty.") from None

# The built-in sandbox partner pharmacy (the demo): on by default only with DEBUG. It answers our
# orders with signed webhooks sent to SANDBOX_WEBHOOK_BASE_URL, this site's own address.
SANDBOX_PARTNERS = env.bool("SANDBOX_PARTNERS", default=DEBUG)
SANDBOX_WEBHOOK_BASE_URL = env.str(
    "SANDBOX_WEBHOOK_BASE_URL", default="http://" + env.str("DEMO_ADDR", default="127.0.0.1:8000")
).rstrip("/")
# Seconds after an order until each of the sandbox pharmacy's 4 steps (fulfillment/sandbox.py).
SANDBOX_STEP_DELAYS = tuple(env.list("SANDBOX_STEP_DELAYS", cast=int, default=[15, 45, 90, 150]))

# Patient notices (notices/): order updates by text (through Twilio, or the sandbox sender that
# sends nothing) and email (Django's email framework), and the patients' tracking pages.
# SITE_URL is this site's public address, for the links in texts and emails and for checking the
# provider's signatures on its callbacks (they sign the exact URL they called).
SITE_URL = env.str("SITE_URL", default="http://" + env.str("DEMO_ADDR", default="127.0.0.1:8000")).rstrip("/")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_API_BASE = env.str("TWILIO_API_BASE", default="")  # only for pointing the client at a fake server
TWILIO_TIMEOUT = env.float("TWILIO_TIMEOUT", default=10.0)
SMS_BACKEND = env.str("SMS_BACKEND", default="twilio" if TWILIO_ACCOUNT_SID else "sandbox")
# Email: EMAIL_URL (smtp+tls://user:password@host:587); without it, files under var/mail with
# DEBUG (the demo; the Notices page shows them too), else SMTP on localhost.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = BASE_DIR / "var" / "mail"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Fizy order updates <updates@fizy.example>")
# Lines of one patient that reach a milestone within this many seconds share one notice.
NOTICE_BATCH_SECONDS = env.int("NOTICE_BATCH_SECONDS", default=60)
# The tracking page refreshes itself this often while something can still change.
TRACKING_POLL_SECONDS = env.int("TRACKING_POLL_SECONDS", default=15)

# Prescriptions (prescriptions/). Signed documents are stored through Django's storage API: local
# files under MEDIA_ROOT in the demo; S3-compatible storage (django-storages) when
# PRESCRIPTION_DOCUMENTS_BUCKET is set (credentials from the usual AWS_* variables or the
# machine's role; AWS_S3_ENDPOINT_URL for another S3-compatible service). Documents are never
# public: clinics and partners get them through Fizy's own views.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
MEDIA_URL = "/media/"  # never served as-is: see prescriptions/views.py
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if env.str("PRESCRIPTION_DOCUMENTS_BUCKET", default=""):
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": env.str("PRESCRIPTION_DOCUMENTS_BUCKET"),
        "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
        "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
        "default_acl": "private", "querystring_auth": True, "file_overwrite": False,
        "object_parameters": {"ServerSideEncryption": "AES256"},
    }}
# How long a partner's signed link to a prescription document works (seconds).
PRESCRIPTION_DOCUMENT_LINK_MAX_AGE = env.int("PRESCRIPTION_DOCUMENT_LINK_MAX_AGE", default=24 * 3600)
# refill_too_soon: a warning while less than this share of the last fill's days supply has passed
# since that fill was delivered.
PRESCRIPTION_REFILL_TOO_SOON_SHARE = env.float("PRESCRIPTION_REFILL_TOO_SOON_SHARE", default=0.5)
# States whose prescription rules differ from the defaults (prescriptions/rules.py), as JSON:
# {"TX": {"II": {"valid_days": 21}}}.
PRESCRIPTION_STATE_RULES = env.json("PRESCRIPTION_STATE_RULES", default={})

# The cache holds rate-limit counters (the tracking page). With several web workers or machines
# set CACHE_URL to a shared cache (redis://host:6379/1) so the limits hold across them.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# Production fails closed: with DEBUG off, the sandbox payment gateway and sandbox partners (which
# move no money and ship nothing) refuse to start unless explicitly allowed.
FIZY_ALLOW_SANDBOX = env.bool("FIZY_ALLOW_SANDBOX", default=DEBUG)
if not DEBUG and not FIZY_ALLOW_SANDBOX:
    _sandboxes = [name for name, on in (("the sandbox payment gateway (no STRIPE_SECRET_KEY is set)",
                                         PAYMENT_GATEWAY == "sandbox"),
                                        ("the sandbox partner pharmacies (SANDBOX_PARTNERS)", SANDBOX_PARTNERS),
                                        ("the sandbox SMS sender (no TWILIO_ACCOUNT_SID is set)", SMS_BACKEND == "sandbox"))
                  if on]
    if _sandboxes:
        raise ImproperlyConfigured(
            f"DEBUG is off but {' and '.join(_sandboxes)} would be used: no money would move and nothing would ship. "
            "Set STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET) and the TWILIO_* variables and turn SANDBOX_PARTNERS off, or set "
            "FIZY_ALLOW_SANDBOX=true for a staging server that must not charge cards."
        )

# Background work: django-q2. ORM broker on the default database unless REDIS_URL is set.
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="fizy"),  # a queue of its own per deployment (or test run)
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=60),
    "retry": env.int("Q_RETRY", default=90),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "save_limit": 1000,
    "catch_up": False,
    "sync": env.bool("Q_SYNC", default=False),
    "poll": 0.5,
}
if env.str("REDIS_URL", default=""):
    Q_CLUSTER["redis"] = env.str("REDIS_URL")
else:
    Q_CLUSTER["orm"] = "default"

# /health/ fails when the oldest task waiting in the queue has waited longer than this.
HEALTH_QUEUE_MAX_AGE_SECONDS = env.int("HEALTH_QUEUE_MAX_AGE_SECONDS", default=300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
