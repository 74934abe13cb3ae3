"""Production: every secret comes from the environment, or the process refuses to start."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import ENCRYPTION_KEYS, PUBLIC_BASE_URL, SECRET_KEY, SUPPRESSION_HASH_KEYS, env_bool

DEBUG = False

_missing = [
    name
    for name, value in (
        ("DJANGO_SECRET_KEY", SECRET_KEY),
        ("OUTREACH_ENCRYPTION_KEYS", ENCRYPTION_KEYS),
        ("OUTREACH_SUPPRESSION_HASH_KEYS", SUPPRESSION_HASH_KEYS),
    )
    if not value
]
if _missing:
    raise ImproperlyConfigured(f"missing required setting(s): {', '.join(_missing)}")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Health checks and scrapes come over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# /metrics answers only with METRICS_TOKEN or from METRICS_ALLOWED_NETWORKS.
METRICS_REQUIRE_PROTECTION = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL] if PUBLIC_BASE_URL.startswith("https://") else []
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
