"""Settings shared by every environment, read from the environment (12-factor).

Local defaults work on a developer machine with PostgreSQL and Redis on 127.0.0.1 and no
configuration at all; ``outreach.settings.production`` refuses to start without its secrets.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url

from outreach.queues import celery_routing

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_networks(name: str) -> list[str]:
    """Comma-separated CIDRs, each checked now: a typo refuses to start with one line
    (``SystemExit`` prints just it) rather than failing every request that reads it."""
    networks = env_list(name)
    for value in networks:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SystemExit(
                f"{name}: {value!r} is not a network; expected CIDRs such as 10.0.0.0/8, "
                "comma-separated"
            ) from None
    return networks


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

# Where tenants' mail clients and SendGrid reach us: unsubscribe links and webhook URLs.
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# Fernet keys for secrets at rest (tenant SendGrid API keys). Comma-separated; the first
# encrypts, all decrypt, so a key is rotated by prepending a new one.
ENCRYPTION_KEYS = env_list("OUTREACH_ENCRYPTION_KEYS")

# HMAC keys of the suppressions an erasure keeps (suppression.services.suppression_hash):
# without the key, the stored hash of an erased address cannot be confirmed by guessing
# addresses. Comma-separated; the first hashes new entries, all are matched at send time, so
# a key is rotated by prepending a new one (never drop one while entries hashed with it
# remain, or those people could be mailed again).
SUPPRESSION_HASH_KEYS = env_list("OUTREACH_SUPPRESSION_HASH_KEYS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "django_celery_beat",
    "django_pgviews",
    "outreach.tenancy",
    "campaigns",
    "messaging",
    "suppression",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, the dashboard and its chart library) straight from gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "outreach.urls"
WSGI_APPLICATION = "outreach.wsgi.application"
ASGI_APPLICATION = "outreach.asgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/outreach"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
# Parallel test runs (CI, several developers on one machine) each get their own database.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("OUTREACH_TEST_DB") or None}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError("Outreach runs on PostgreSQL only: set DATABASE_URL to a postgres:// URL")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# analytics.apps creates the materialized views after migrate, once their tables exist.
MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Without ``collectstatic`` (make run, tests) WhiteNoise serves from the apps' static folders.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)

# Bodies above this are refused with 413 before they are parsed (bulk lead imports of 10,000
# rows fit comfortably; webhooks have their own, larger limit in messaging).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", 16 * 1024 * 1024))
DATA_UPLOAD_MAX_NUMBER_FIELDS = 20_000

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# /metrics (outreach.metrics): a bearer token and/or the networks a scraper comes from.
# Production refuses to serve metrics with neither set.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Behind a proxy or load balancer REMOTE_ADDR is the proxy's address, so only the token
# protects /metrics there (docs/operations.md).
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS")
METRICS_REQUIRE_PROTECTION = env_bool("METRICS_REQUIRE_PROTECTION", False)
# /readyz fails when beat's every-second sweep last ran longer ago than this.
READINESS_BEAT_MAX_AGE_SECONDS = int(os.environ.get("READINESS_BEAT_MAX_AGE_SECONDS", "30"))

# Sending capacity (messaging.services.ratelimit). The global bucket protects the provider
# account as a whole; 0 lifts it. First touches may use at most (1 - ratio) of each capped
# window so follow-ups always find room.
SEND_GLOBAL_PER_SECOND = int(os.environ.get("SEND_GLOBAL_PER_SECOND", "10000"))
SEND_FOLLOWUP_RESERVE_RATIO = float(os.environ.get("SEND_FOLLOWUP_RESERVE_RATIO", "0.2"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["outreach.tenancy.auth.TenantAPIKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["outreach.tenancy.auth.IsTenant"],
    "DEFAULT_PARSER_CLASSES": ["outreach.common.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "outreach.common.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "outreach.common.pagination.IdCursorPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Outreach API",
    "DESCRIPTION": (
        "Multi-tenant sales-outreach campaigns. Authenticate with `Authorization: Api-Key <key>` "
        "(the key printed once by `manage.py tenant_create`)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The ApiKeyAuth security scheme comes from outreach.tenancy.schema (one per operation).
}

# Celery: messages are hints (ids only, JSON), results are never stored, and every task name
# is explicit so a refactor never orphans queued messages.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
# Each queue has its own exchange and routing key (outreach.queues explains why).
_ROUTING = celery_routing()
CELERY_TASK_QUEUES = _ROUTING["task_queues"]
CELERY_TASK_ROUTES = _ROUTING["task_routes"]
CELERY_TASK_DEFAULT_QUEUE = _ROUTING["task_default_queue"]
CELERY_TASK_DEFAULT_EXCHANGE = _ROUTING["task_default_exchange"]
CELERY_TASK_DEFAULT_EXCHANGE_TYPE = _ROUTING["task_default_exchange_type"]
CELERY_TASK_DEFAULT_ROUTING_KEY = _ROUTING["task_default_routing_key"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the database connection before and after every task unless
# this is set; a fresh Postgres backend per task costs a connect plus a cold catalog cache.
# Reuse a worker's connection for this many tasks (DB_CONN_MAX_AGE still bounds its age).
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "200"))

# SendGrid. With no API key configured, the local emulator is the provider: the product runs
# and is tested offline. A real key (and host https://api.sendgrid.com) is one setting away.
SENDGRID_API_KEY = os.environ.get("SENDGRID_API_KEY", "")
SENDGRID_API_HOST = os.environ.get(
    "SENDGRID_API_HOST",
    "https://api.sendgrid.com" if SENDGRID_API_KEY else "http://127.0.0.1:8025",
)
SENDGRID_TIMEOUT_SECONDS = float(os.environ.get("SENDGRID_TIMEOUT_SECONDS", "10"))
SENDGRID_EMULATOR_KEY = "emulator-local-key"
# Twilio (SMS). Like SendGrid: with no account configured, the local emulator (the same
# process as the SendGrid one, under /2010-04-01/) is the provider and signs its callbacks
# with its own auth token. A real account is TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN.
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_EMULATOR_ACCOUNT_SID = "AC" + "0" * 32
TWILIO_EMULATOR_AUTH_TOKEN = "emulator-twilio-auth-token"  # noqa: S105 - a public dev value
TWILIO_AUTH_TOKEN = os.environ.get(
    "TWILIO_AUTH_TOKEN", "" if TWILIO_ACCOUNT_SID else TWILIO_EMULATOR_AUTH_TOKEN
)
TWILIO_API_BASE = os.environ.get(
    "TWILIO_API_BASE",
    "https://api.twilio.com" if TWILIO_ACCOUNT_SID else "http://127.0.0.1:8025",
)
TWILIO_TIMEOUT_SECONDS = float(os.environ.get("TWILIO_TIMEOUT_SECONDS", "10"))
# Twilio posts form bodies of a few KB; anything far larger is not Twilio.
TWILIO_WEBHOOK_MAX_BODY_BYTES = int(os.environ.get("TWILIO_WEBHOOK_MAX_BODY_BYTES", 64 << 10))
# SendGrid Email Validation verdicts are cached per tenant and address this long.
EMAIL_VERDICT_MAX_AGE_DAYS = int(os.environ.get("EMAIL_VERDICT_MAX_AGE_DAYS", "30"))

# Event Webhook (messaging.webhooks). SendGrid batches are ≤768 KB; the freshness window is
# lenient because SendGrid retries for 24 h and dedup on sg_event_id is the replay defence.
# Unsigned posts (a tenant with no verification key) are refused unless explicitly allowed.
SENDGRID_WEBHOOK_MAX_BODY_BYTES = int(os.environ.get("SENDGRID_WEBHOOK_MAX_BODY_BYTES", 5 << 20))
SENDGRID_WEBHOOK_MAX_AGE_SECONDS = int(os.environ.get("SENDGRID_WEBHOOK_MAX_AGE_SECONDS", "600"))
SENDGRID_WEBHOOK_MAX_FUTURE_SECONDS = int(
    os.environ.get("SENDGRID_WEBHOOK_MAX_FUTURE_SECONDS", "300")
)
SENDGRID_WEBHOOK_ALLOW_UNSIGNED = env_bool("SENDGRID_WEBHOOK_ALLOW_UNSIGNED", False)
# Receipts still unprocessed after the grace period are re-processed by the sweeper; one that
# fails this many times stops being retried and raises a tenant alert.
WEBHOOK_RECEIPT_GRACE_SECONDS = int(os.environ.get("WEBHOOK_RECEIPT_GRACE_SECONDS", "60"))
WEBHOOK_RECEIPT_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_RECEIPT_MAX_ATTEMPTS", "25"))
# A click this soon after the message was sent is a link scanner, not a human.
EVENT_BOT_CLICK_SECONDS = int(os.environ.get("EVENT_BOT_CLICK_SECONDS", "10"))
# Blocked (soft) bounces suppress an address once this many arrive within the window.
SUPPRESSION_SOFT_BOUNCE_THRESHOLD = int(os.environ.get("SUPPRESSION_SOFT_BOUNCE_THRESHOLD", "3"))
SUPPRESSION_SOFT_BOUNCE_WINDOW_DAYS = int(
    os.environ.get("SUPPRESSION_SOFT_BOUNCE_WINDOW_DAYS", "7")
)
# Event storage (messaging.services.partitions): monthly partitions exist this many months
# ahead, so an insert never lands in the DEFAULT partition. Raw events are kept, per tenant
# plan, for the current month and this many whole months before it; older partitions no plan
# needs any more are detached and dropped (the analytics rollups are kept). Format of the
# variable: "trial=3,standard=12,enterprise=24".
EVENT_PARTITIONS_AHEAD_MONTHS = int(os.environ.get("EVENT_PARTITIONS_AHEAD_MONTHS", "3"))
EVENT_RETENTION_MONTHS = {
    plan: int(months)
    for plan, _, months in (
        item.partition("=")
        for item in os.environ.get(
            "EVENT_RETENTION_MONTHS", "trial=3,standard=12,enterprise=24"
        ).split(",")
    )
}
# Dedup keys of provider event ids: SendGrid retries for 24 hours; keys live far longer.
EVENT_DEDUP_KEY_DAYS = int(os.environ.get("EVENT_DEDUP_KEY_DAYS", "30"))

# The campaign engine. A send is spread over up to SEND_JITTER_SECONDS inside the window so a
# campaign does not fire in one burst.
SEND_JITTER_SECONDS = int(os.environ.get("SEND_JITTER_SECONDS", "300"))
# How long a message may stay `sending` with an unknown outcome (a crash or a timeout after
# the provider call) before it is marked for review instead of waiting for webhook events.
SEND_RECONCILE_GRACE_SECONDS = int(os.environ.get("SEND_RECONCILE_GRACE_SECONDS", "900"))
# Provider calls of one send batch run on this many threads, each with its own kept-alive
# connection (each waits on the network).
SEND_THREADS = int(os.environ.get("SEND_THREADS", "8"))
# Actions per send hint and batch: a batch has a fixed cost (its queries, one hint), and 100
# measured faster than 50 while 200 was no faster (docs/benchmarks.md, Sending).
SEND_BATCH_SIZE = int(os.environ.get("SEND_BATCH_SIZE", "100"))
# Replies come back to reply+<token>@INBOUND_REPLY_DOMAIN (an Inbound Parse domain) so each
# one is matched to the exact message it answers. Empty: use the identity's own reply-to and
# match by In-Reply-To only.
INBOUND_REPLY_DOMAIN = os.environ.get("INBOUND_REPLY_DOMAIN", "")
# Inbound Parse (messaging.inbound): SendGrid keeps messages under 30 MB. The tenant's inbound
# secret may come as the URL's last segment or as the basic-auth password (False: URL only).
INBOUND_PARSE_MAX_BODY_BYTES = int(os.environ.get("INBOUND_PARSE_MAX_BODY_BYTES", 30 << 20))
INBOUND_PARSE_BASIC_AUTH = env_bool("INBOUND_PARSE_BASIC_AUTH", True)
SEND_MAX_TRANSIENT_RETRIES = int(os.environ.get("SEND_MAX_TRANSIENT_RETRIES", "5"))
# A transient provider error (429, 5xx, nothing sent) retries after this, doubled per attempt
# (a later Retry-After / X-RateLimit-Reset wins).
SEND_RETRY_BACKOFF_SECONDS = float(os.environ.get("SEND_RETRY_BACKOFF_SECONDS", "30"))
# How long a claimed scheduled action belongs to the worker it was handed to: after that a
# sweep returns it to pending (the worker died, or its hint was lost with the broker).
SCHEDULED_ACTION_LEASE_SECONDS = int(os.environ.get("SCHEDULED_ACTION_LEASE_SECONDS", "300"))
# Feature flags and the sending kill switch are cached per process this long: a change takes
# effect in every worker within it (at once in the process that made it).
FEATURE_FLAGS_CACHE_SECONDS = float(os.environ.get("FEATURE_FLAGS_CACHE_SECONDS", "5"))
CONTROLS_CACHE_SECONDS = float(os.environ.get("CONTROLS_CACHE_SECONDS", "1"))
# Rechecks of paused tenants, campaigns and identities (their actions wait, they are not lost).
SEND_PAUSED_RECHECK_SECONDS = int(os.environ.get("SEND_PAUSED_RECHECK_SECONDS", "600"))
# An out-of-office reply without a stated return date pauses the enrollment this long.
OOO_DEFAULT_PAUSE_DAYS = int(os.environ.get("OOO_DEFAULT_PAUSE_DAYS", "7"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kv": {"()": "outreach.common.logging.KeyValueFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "kv"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
