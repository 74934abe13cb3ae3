"""Fixtures of the engine proof tests (defined in ``engine_support``, registered here)."""

from campaigns.tests.engine_support import (  # noqa: F401 (pytest fixtures)
    engine_settings,
    engine_worker,
    events_cleanup,
)
