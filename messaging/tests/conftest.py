"""Fixtures for messaging tests.

The SendGrid emulator fixtures (``sendgrid_emulator``, ``sendgrid_emulator_factory``,
``webhook_sink``) live in ``messaging/tests/emulator_fixtures.py`` and are loaded for the whole
project by ``pytest_plugins`` in the root ``conftest.py`` (pytest allows plugins only there);
their docstring is the contract.
"""
