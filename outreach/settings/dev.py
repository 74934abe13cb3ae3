"""Local development and tests: safe defaults, nothing to configure."""

from .base import *  # noqa: F403
from .base import ENCRYPTION_KEYS, SUPPRESSION_HASH_KEYS, env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = SECRET_KEY or "dev-only-insecure-secret-key-never-use-in-production"  # noqa: F405
# A fixed key so a developer's encrypted rows survive restarts; production must set its own.
ENCRYPTION_KEYS = ENCRYPTION_KEYS or ["ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM="]
SUPPRESSION_HASH_KEYS = SUPPRESSION_HASH_KEYS or ["dev-only-suppression-hash-key"]

import os  # noqa: E402

INBOUND_REPLY_DOMAIN = os.environ.get("INBOUND_REPLY_DOMAIN", "reply.demo-outreach.example.com")
# Spread a campaign's first touches over 20 s instead of 5 minutes, so the demo moves fast.
SEND_JITTER_SECONDS = int(os.environ.get("SEND_JITTER_SECONDS", "20"))
# No collectstatic here: WhiteNoise serves straight from the apps' static folders.
STATIC_ROOT = None
