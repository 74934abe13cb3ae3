"""Fixtures for messaging tests.

The SendGrid emulator fixtures (``sendgrid_emulator``, ``sendgrid_emulator_factory``,
``webhook_sink``) live in ``messaging/tests/emulator_fixtures.py`` and are loaded for the whole
project by ``pytest_plugins`` in the root ``conftest.py`` (pytest allows plugins only there);
their docstring is the contract.
"""

import pytest
import redis
from django.conf import settings

from messaging.services.ratelimit import KEY_PREFIX


@pytest.fixture
def redis_client() -> redis.Redis:
    """The capacity counters' Redis, emptied of them: sender ids repeat across test
    databases, and Redis outlives each one."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    keys = list(client.scan_iter(f"{KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)
    return client
