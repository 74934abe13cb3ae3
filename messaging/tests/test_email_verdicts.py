"""Remote email validation through the adapter against the SendGrid emulator, with caching."""

import datetime
import logging

import pytest
from django.utils import timezone

from campaigns.models import Lead
from messaging.models import EmailVerdict
from messaging.services.email_verdicts import email_verdict_get

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator(sendgrid_emulator, settings):
    """The shared emulator (reset for this test), as the provider the adapter calls."""
    settings.SENDGRID_API_HOST = sendgrid_emulator.host
    settings.SENDGRID_API_KEY = ""
    settings.SENDGRID_TIMEOUT_SECONDS = 5
    return sendgrid_emulator


def _provider_calls(caplog) -> int:
    return sum(1 for record in caplog.records if record.getMessage() == "provider.validate")


@pytest.mark.parametrize(
    ("email", "status", "reason"),
    [
        ("jane.doe@acme.com", Lead.Validation.VALID, ""),
        ("info@acme.com", Lead.Validation.RISKY, "role address"),
        ("jane+bounce@acme.com", Lead.Validation.INVALID, "the address has bounced before"),
        ("jane@acme.invalid", Lead.Validation.INVALID, "the domain has no MX or A record"),
    ],
)
def test_sendgrid_verdicts_map_to_lead_statuses(tenant, emulator, email, status, reason):
    verdict = email_verdict_get(tenant_id=tenant.id, email=email, use_provider=True)

    assert verdict.status == status
    assert reason in verdict.reason
    assert verdict.source == "sendgrid"
    assert verdict.from_cache is False
    assert verdict.score is not None
    row = EmailVerdict.objects.for_tenant(tenant.id).get(email=email)
    assert (row.verdict, row.source) == (status, "sendgrid")


def test_a_typo_suggestion_is_kept(tenant, emulator):
    verdict = email_verdict_get(tenant_id=tenant.id, email="jane@gmial.com", use_provider=True)

    assert verdict.suggestion == "gmail.com"


def test_second_call_is_answered_from_the_cache(tenant, emulator, caplog):
    caplog.set_level(logging.INFO)
    first = email_verdict_get(tenant_id=tenant.id, email="Jane.Doe@Acme.com", use_provider=True)
    assert _provider_calls(caplog) == 1

    second = email_verdict_get(tenant_id=tenant.id, email="jane.doe@acme.com", use_provider=True)

    assert _provider_calls(caplog) == 1
    assert second.from_cache is True
    assert (second.status, second.score) == (first.status, first.score)
    assert EmailVerdict.objects.for_tenant(tenant.id).count() == 1


def test_a_stale_verdict_is_checked_again(tenant, emulator, settings, caplog):
    caplog.set_level(logging.INFO)
    email_verdict_get(tenant_id=tenant.id, email="jane.doe@acme.com", use_provider=True)
    settings.EMAIL_VERDICT_MAX_AGE_DAYS = 30
    EmailVerdict.objects.for_tenant(tenant.id).update(
        checked_at=timezone.now() - datetime.timedelta(days=31)
    )

    verdict = email_verdict_get(tenant_id=tenant.id, email="jane.doe@acme.com", use_provider=True)

    assert _provider_calls(caplog) == 2
    assert verdict.from_cache is False
    row = EmailVerdict.objects.for_tenant(tenant.id).get()
    assert row.checked_at > timezone.now() - datetime.timedelta(minutes=1)


def test_cache_is_per_tenant(tenant, other_tenant, emulator, caplog):
    caplog.set_level(logging.INFO)
    email_verdict_get(tenant_id=tenant.id, email="jane.doe@acme.com", use_provider=True)

    verdict = email_verdict_get(
        tenant_id=other_tenant.id, email="jane.doe@acme.com", use_provider=True
    )

    assert verdict.from_cache is False
    assert _provider_calls(caplog) == 2
    assert EmailVerdict.objects.for_tenant(other_tenant.id).count() == 1


def test_without_the_provider_nothing_is_called(tenant, emulator, caplog):
    caplog.set_level(logging.INFO)

    verdict = email_verdict_get(tenant_id=tenant.id, email="jane.doe@acme.com", use_provider=False)

    assert verdict.status == Lead.Validation.UNKNOWN
    assert _provider_calls(caplog) == 0
    assert not EmailVerdict.objects.exists()


@pytest.mark.parametrize(
    "fault",
    [{"fault_500_share": 1.0}, {"fault_429_share": 1.0}, {"api_keys": ["another-key"]}],
    ids=["500", "429", "401"],
)
def test_provider_failure_gives_unknown_and_caches_nothing(tenant, emulator, fault):
    emulator.configure(**fault)

    verdict = email_verdict_get(tenant_id=tenant.id, email="jane.doe@acme.com", use_provider=True)

    assert verdict.status == Lead.Validation.UNKNOWN
    assert "email validation unavailable" in verdict.reason
    assert not EmailVerdict.objects.exists()


def test_provider_failure_keeps_a_local_verdict(tenant, emulator):
    EmailVerdict.objects.create(
        tenant=tenant, email="info@acme.com", verdict="risky", source="local", checks={}
    )
    emulator.configure(fault_500_share=1.0)

    verdict = email_verdict_get(tenant_id=tenant.id, email="info@acme.com", use_provider=True)

    assert (verdict.status, verdict.source) == ("risky", "local")


def test_network_failure_gives_unknown(tenant, settings, db):
    settings.SENDGRID_API_HOST = "http://sendgrid-emulator.invalid:8025"

    verdict = email_verdict_get(tenant_id=tenant.id, email="jane.doe@acme.com", use_provider=True)

    assert verdict.status == Lead.Validation.UNKNOWN
    assert "connection_error" in verdict.reason
