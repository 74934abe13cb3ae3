"""SMS capacity: the identity's SMS day survives Redis losing its counters."""

import datetime as dt

import pytest
from django.utils import timezone

from messaging.models import Message
from messaging.services.capacity import identity_day_window
from messaging.services.ratelimit import KEY_PREFIX
from messaging.services.sms_capacity import SMS_IDENTITY_DAY, sms_capacity_acquire
from messaging.tests.webhook_support import message_make
from outreach.testing.factories import SenderIdentityFactory

pytestmark = pytest.mark.django_db


def _text(tenant, identity, *, status: str = "accepted", channel: str = "sms") -> Message:
    return message_make(
        tenant, sender_identity=identity, status=status, channel=channel, to_phone="+15551230100"
    )


def test_an_sms_day_lost_with_redis_is_seeded_from_the_ledger(tenant, redis_client):
    """Redis restarted empty mid-day: counting the identity's texts from zero would let it
    send its whole daily cap a second time."""
    now = timezone.now()
    identity = SenderIdentityFactory(
        tenant=tenant,
        timezone="America/New_York",
        sms_from_number="+15550001000",
        sms_per_second=1000,
        sms_daily_cap=5,
    )
    other_identity = SenderIdentityFactory(tenant=tenant, sms_from_number="+15550001001")
    for status in ("sending", "accepted", "delivered", "failed"):
        _text(tenant, identity, status=status)  # three count: a failed text gave its place back
    _text(tenant, identity, channel="email")  # email counts on its own counters
    _text(tenant, other_identity)
    yesterday = _text(tenant, identity)
    Message.objects.filter(tenant=tenant).update(created_at=now)
    Message.objects.filter(pk=yesterday.pk).update(created_at=now - dt.timedelta(days=2))

    def take(n: int):
        return sms_capacity_acquire(
            tenant_id=tenant.pk, identity=identity, now=now, grant_id=f"test:{n}"
        )

    assert take(1).granted and take(2).granted
    refused = take(3)
    assert not refused.granted and refused.blocked_by == (SMS_IDENTITY_DAY,)
    assert refused.retry_at > now

    # Redis loses everything again once the two taken above are in the ledger: still five.
    for _ in range(2):
        _text(tenant, identity)
    Message.objects.filter(tenant=tenant).exclude(pk=yesterday.pk).update(created_at=now)
    redis_client.delete(*redis_client.scan_iter(f"{KEY_PREFIX}*"))
    assert take(4).blocked_by == (SMS_IDENTITY_DAY,)
    day = identity_day_window(identity=identity, now=now)
    assert redis_client.get(f"{KEY_PREFIX}sms:i:{identity.pk}:d:{day.label}") == "5"
