"""QuantSaaS settings: one module, driven by environment variables.

Defaults are safe for production (DEBUG off, secure cookies, no fixed secret).
With no DATABASE_URL or REDIS_URL the product runs embedded: SQLite under var/,
an in-process channel layer and Celery tasks executed in-process. See
docs/configuration.md for every variable.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, Literal

import environ
from django.core.exceptions import ImproperlyConfigured

from quantsaas.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env.smart_cast = False

# Writable state of a development instance: SQLite, dev secret key, demo logins, beat schedule.
# Overridable so tests (and a second checkout) can run an embedded instance elsewhere.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))).resolve()

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("QUANTSAAS_TESTING", default=False)


def _secret_key() -> str:
    """Production must supply SECRET_KEY; development gets a random key kept in var/."""
    key: str = env.str("SECRET_KEY", default="")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    VAR_DIR.mkdir(exist_ok=True)
    key_file = VAR_DIR / "dev-secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Links in emails (invitations, billing) use this; by default the address `make run`
# serves on, PORT included, so a link in a development email opens the running server.
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{env.int('PORT', default=8000)}").rstrip(
    "/"
)

# --- topology: embedded unless both real services are configured -------------------------
DATABASE_URL = env.str("DATABASE_URL", default="")
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED = not (DATABASE_URL and REDIS_URL)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.sites",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "quantsaas",
    "accounts",
    "billing",
    "marketdata",
    "analytics",
    "alerts",
]

MIDDLEWARE = [
    # Health endpoints answer before anything else can fail (hosts, sessions, DB).
    "quantsaas.health.HealthCheckMiddleware",
    # The request id for every line a request logs (echoed as X-Request-ID), then the
    # request metrics; both see every answer below, 429s and 404s included.
    "quantsaas.logs.RequestLogMiddleware",
    "quantsaas.metrics.web.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "quantsaas.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Compresses what the app renders (API pages are large and repetitive); after WhiteNoise,
    # which serves its own precompressed static files. Django pads gzip output against BREACH.
    "django.middleware.gzip.GZipMiddleware",
    # API calls that have not proved who they are: limited per address before any
    # database work (sessions included), so it sits above the session middleware.
    "accounts.middleware.UnauthenticatedApiLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # /admin/ only for staff whose session passed TOTP (set up first if they have none).
    "accounts.middleware.StaffMfaMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, and sync-only: under ASGI, Django runs every middleware above the lowest
    # sync-only one synchronously in one thread. Below it they would run in async mode,
    # each hopping to a thread and back for its request and response hooks.
    "accounts.middleware.CurrentOrganizationMiddleware",
]

ROOT_URLCONF = "quantsaas.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "quantsaas.asgi.application"

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
                "accounts.context_processors.organization",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
        "DB_POOL", default=True
    ):
        # Under ASGI every request runs in a fresh thread context, so persistent
        # connections (CONN_MAX_AGE) never get reused: a pool does.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        # With the pool, Django checks each connection as it is handed out (one empty
        # round trip): after a database restart no request gets a dead pooled connection.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
            # How long a request waits for a connection. Short: while PostgreSQL is down
            # the pool cannot open one, and the API answers 503 rather than hang.
            "timeout": env.float("DB_POOL_TIMEOUT", default=2.0),
        }
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "quantsaas.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Outage bounds (docs/operations.md): connecting gives up after DB_CONNECT_TIMEOUT
    # seconds; DB_STATEMENT_TIMEOUT_MS (0: none) caps every statement of this process, and
    # the Procfile sets it for the web process, whose API reads are small.
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    _db_options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=2))
    _statement_ms = env.int("DB_STATEMENT_TIMEOUT_MS", default=0)
    if _statement_ms:
        _db_options["options"] = f"-c statement_timeout={_statement_ms}"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache, channels, celery ------------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "quantsaas.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "qs",
            "OPTIONS": {
                "pool_class": "quantsaas.cache.SharedConnectionPool",
                # An unreachable Redis costs a request a second at most, then the caller's
                # fallback (docs/operations.md) answers.
                "socket_connect_timeout": env.float("REDIS_CONNECT_TIMEOUT", default=1.0),
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout, the same 5 s channels-redis
                # blocks in BZPOPMIN: a message popped as the client gives up would be lost.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": "qs:ch",
                "capacity": 1000,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# /readyz shows its per-check report only to staff sessions and callers sending this
# token as X-Readyz-Token (monitoring); anonymous callers get the status alone.
READYZ_TOKEN = env.str("READYZ_TOKEN", default="")
# API request bodies above these sizes answer 413 before they are read (quantsaas.body_limit).
API_BODY_LIMIT_BYTES = env.int("API_BODY_LIMIT_BYTES", default=1024 * 1024)
API_BATCH_BODY_LIMIT_BYTES = env.int("API_BATCH_BODY_LIMIT_BYTES", default=8 * 1024 * 1024)
# While Redis is unreachable each web process limits API requests to the plan's limit
# divided by this (billing/ratelimit.py): the total stays near the plan's limit.
RATE_LIMIT_OUTAGE_PROCESSES = env.int("RATE_LIMIT_OUTAGE_PROCESSES", default=2)

# Trades the feed writer holds while PostgreSQL is unreachable; beyond this the oldest
# are dropped, their time ranges recorded in Redis and backfilled from REST later.
FEED_WRITER_MAX_BUFFERED = env.int("FEED_WRITER_MAX_BUFFERED", default=500_000)

# The stream's per-channel history (marketdata/streaming/store.py): the live path between
# the feed and the web processes, resume after a reconnect, and the delayed plans' replay.
# Kept for the longest plan delay (free: 900 s) plus a minute; the length cap is a memory
# guard for very busy channels (about 200 B per one-trade message; see docs/streaming.md).
STREAM_REPLAY_SECONDS = env.int("STREAM_REPLAY_SECONDS", default=960)
STREAM_REPLAY_MAXLEN = env.int("STREAM_REPLAY_MAXLEN", default=300_000)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
# Embedded mode has no worker: tasks run in the calling process.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, Any] = {}
CELERY_BEAT_SCHEDULE["billing-subscriptions-reconcile"] = {
    "task": "billing.tasks.subscriptions_reconcile",
    "schedule": 60 * 60,
}
CELERY_BEAT_SCHEDULE["billing-usage-rollup"] = {
    "task": "billing.tasks.usage_rollup",
    "schedule": 5 * 60,
}
CELERY_BEAT_SCHEDULE["billing-webhook-events-prune"] = {
    "task": "billing.tasks.webhook_events_prune_task",
    "schedule": 24 * 60 * 60,
}
CELERY_BEAT_SCHEDULE["marketdata-candles-finalize"] = {
    "task": "marketdata.tasks.candles_finalize",
    "schedule": 60,
}
CELERY_BEAT_SCHEDULE["marketdata-retention"] = {
    "task": "marketdata.tasks.marketdata_retention",
    "schedule": 60 * 60,
}
CELERY_BEAT_SCHEDULE["analytics-backtests-abandoned"] = {
    "task": "analytics.tasks.backtests_abandoned_sweep",
    "schedule": 60,
}
CELERY_BEAT_SCHEDULE["analytics-live-retention"] = {
    "task": "analytics.tasks.live_analytics_retention",
    "schedule": 60 * 60,
}
CELERY_BEAT_SCHEDULE["alerts-firings-prune"] = {
    "task": "alerts.tasks.alert_firings_prune",
    "schedule": 60 * 60,
}
# Alert webhooks go to customers' URLs from our workers: https to public addresses only,
# unless this is set (development and tests, whose receivers listen on 127.0.0.1).
ALERTS_WEBHOOK_ALLOW_PRIVATE = env.bool("ALERTS_WEBHOOK_ALLOW_PRIVATE", default=DEBUG or TESTING)
# Days of history kept (0: forever). Trades and the live OFI seconds and VPIN buckets
# derived from them are kept forever by default: the enterprise plan's history is
# unlimited. Book snapshots are periodic samples, kept a month.
MARKETDATA_TRADE_RETENTION_DAYS = env.int("MARKETDATA_TRADE_RETENTION_DAYS", default=0)
MARKETDATA_BOOK_RETENTION_DAYS = env.int("MARKETDATA_BOOK_RETENTION_DAYS", default=30)
ANALYTICS_LIVE_RETENTION_DAYS = env.int("ANALYTICS_LIVE_RETENTION_DAYS", default=0)
# Each backtest runs in a child process with these limits (analytics/backtest_process.py);
# a running job without a heartbeat for BACKTEST_STALE_SECONDS lost its worker.
BACKTEST_CPU_SECONDS = env.int("BACKTEST_CPU_SECONDS", default=120)
BACKTEST_MEMORY_MB = env.int("BACKTEST_MEMORY_MB", default=1024)
BACKTEST_HEARTBEAT_SECONDS = env.float("BACKTEST_HEARTBEAT_SECONDS", default=5.0)
BACKTEST_STALE_SECONDS = env.int("BACKTEST_STALE_SECONDS", default=60)

# --- auth and accounts ------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing cost is irrelevant to what tests check; this keeps the suite fast.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

SITE_ID = 1
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[QuantSaaS] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
ACCOUNT_RATE_LIMITS: Literal[False] | dict[str, str] = False if TESTING else {}
# Two-factor sign-in (allauth.mfa): TOTP apps and recovery codes, for every user;
# required for staff before /admin/ (accounts.middleware.StaffMfaMiddleware).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "QuantSaaS"
INVITATION_MAX_AGE_DAYS = env.int("INVITATION_MAX_AGE_DAYS", default=7)
# Organizations a user may create or own (docs/decisions.md): free ones, and all together.
ACCOUNTS_FREE_ORGANIZATIONS_PER_USER = env.int("ACCOUNTS_FREE_ORGANIZATIONS_PER_USER", default=2)
ACCOUNTS_ORGANIZATIONS_PER_USER = env.int("ACCOUNTS_ORGANIZATIONS_PER_USER", default=20)
# Invitation emails (accounts.services.invitations): anti-spam limits, counted in Redis.
INVITATIONS_PER_INVITER_PER_HOUR = env.int("INVITATIONS_PER_INVITER_PER_HOUR", default=20)
INVITATIONS_PER_ORGANIZATION_PER_DAY = env.int("INVITATIONS_PER_ORGANIZATION_PER_DAY", default=50)
# API calls per client address and minute that are anonymous or carry a bad key.
API_UNAUTHENTICATED_PER_MINUTE = env.int("API_UNAUTHENTICATED_PER_MINUTE", default=60)

# --- email ------------------------------------------------------------------------------
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:  # e.g. smtp+tls://user:password@smtp.example.com:587
    _email = env.email_url_config(EMAIL_URL)
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email.get("EMAIL_HOST", "")
    EMAIL_PORT = _email.get("EMAIL_PORT", 25)
    EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
elif env.str("EMAIL_FILE_PATH", default=""):  # one file per message; browser tests read it
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH")
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="QuantSaaS <no-reply@quantsaas.test>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- stripe -----------------------------------------------------------------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # tests point this at a local fake
STRIPE_API_VERSION = "2026-10-28.endive"
# Stripe price ids per plan code; a Plan's own stripe_price_id (admin) wins over these.
BILLING_STRIPE_PRICES = {
    "pro": env.str("STRIPE_PRICE_PRO", default=""),
    "enterprise": env.str("STRIPE_PRICE_ENTERPRISE", default=""),
}
# How long a past_due subscription keeps its plan while Stripe retries the card.
BILLING_PAST_DUE_GRACE_DAYS = env.int("BILLING_PAST_DUE_GRACE_DAYS", default=7)
BILLING_ENTITLEMENTS_CACHE_SECONDS = env.int("BILLING_ENTITLEMENTS_CACHE_SECONDS", default=60)
BILLING_ENTITLEMENTS_LOCAL_SECONDS = env.float("BILLING_ENTITLEMENTS_LOCAL_SECONDS", default=1.0)
# Stripe webhook deliveries: verified events kept 90 days, refused ones (bad signature,
# duplicates) 7; refused deliveries allowed per sending address and minute.
BILLING_WEBHOOK_RETENTION_DAYS = env.int("BILLING_WEBHOOK_RETENTION_DAYS", default=90)
BILLING_WEBHOOK_REFUSED_RETENTION_DAYS = env.int(
    "BILLING_WEBHOOK_REFUSED_RETENTION_DAYS", default=7
)
BILLING_WEBHOOK_REFUSED_PER_MINUTE = env.int("BILLING_WEBHOOK_REFUSED_PER_MINUTE", default=30)

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["quantsaas.api.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "quantsaas.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "QuantSaaS API",
    "DESCRIPTION": (
        "Crypto market data and quant analytics. Authenticate programs with an API key: "
        "`Authorization: Bearer qs_...` or `X-API-Key: qs_...`. Timestamps are integer "
        "milliseconds since the Unix epoch (UTC). Every error has the shape "
        '`{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "BacktestStatusEnum": "analytics.models.Backtest.Status",
        "ApiKeyStatusEnum": ["active", "revoked", "expired"],
    },
    # The docs page's JavaScript is served from our static files, not a CDN (strict CSP).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "quantsaas.api.schema.response_headers_hook",
    ],
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- static files, i18n -----------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
WHITENOISE_USE_FINDERS = DEBUG or TESTING
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- security ---------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
if TESTING:
    # The test client speaks plain HTTP; the production values are checked in
    # tests/test_deploy_check.py by running `check --deploy` in a subprocess.
    SECURE_SSL_REDIRECT = False
    SESSION_COOKIE_SECURE = False
    CSRF_COOKIE_SECURE = False

# LOG_FORMAT=json: one JSON object per line in every process (quantsaas/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = logging_config(
    json_format=LOG_FORMAT == "json", level=env.str("LOG_LEVEL", default="INFO")
)
# Celery would replace the root logger's handlers with its own format; with JSON logs the
# worker keeps the one above (task id and name are added to each line).
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
if LOG_FORMAT == "json":
    logging.captureWarnings(True)  # Python warnings become JSON lines too, not raw stderr

# Prometheus: web processes serve /metrics to staff sessions and to this bearer token;
# the feed runner and the Celery worker serve it on METRICS_PORT when set (docs/operations.md).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_PORT = int(env.str("METRICS_PORT", default="") or 0)
