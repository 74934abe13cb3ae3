"""Fixtures of the operations tests that send for real (defined in the engine's
``engine_support``, registered here)."""

from campaigns.tests.engine_support import engine_settings  # noqa: F401 (a pytest fixture)
