"""Erasure on request (``lead_erase``) reaching every copy of the address, and nothing else:
webhook bodies not linked to any stored event, replies not parsed yet, and other people's
addresses that merely contain the erased one."""

import json

import pytest
from django.utils import timezone

from campaigns.services.erasure import lead_erase
from messaging.models import Message, MessageEvent, WebhookReceipt
from messaging.services.erasure import RECEIPT_ERASED, address_pattern_bytes
from messaging.tests.inbound_support import raw_mode_post
from outreach.testing.factories import LeadFactory, SenderIdentityFactory

pytestmark = pytest.mark.django_db

ANN = "ann@x.com"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b'{"email": "ann@x.com"}', True),
        (b"From: Ann <ANN@X.COM>", True),
        (b'"reason": "550 \\u003cann@x.com\\u003e unknown"', True),  # JSON-escaped < and >
        (b'"note": "line\\nann@x.com"', True),  # after a JSON newline escape
        (b"To: =3Cann@x.com=3E", True),  # quoted-printable < and >
        (b"write to ann@x.com.", True),  # a full stop ends it
        (b"mailto:ann@x.com?subject=hi", True),
        (b'{"email": "joann@x.com"}', False),
        (b'{"email": "ann@x.com.au"}', False),
        (b"o'ann@x.com", False),  # the apostrophe belongs to that address
        (b'"\\/ann@x.com"', False),  # a JSON-escaped "/" belongs to it too
        (b"ann@x.com-mail.example", False),
    ],
)
def test_the_address_pattern_matches_whole_addresses_only(text, found):
    assert bool(address_pattern_bytes(ANN).search(text)) is found


def _events(*emails: str, reason: str = "") -> bytes:
    return json.dumps(
        [
            {"email": email, "event": "bounce", "sg_event_id": f"e-{email}", "reason": reason}
            for email in emails
        ]
    ).encode()


def _mail(sender: str, text: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: ae@sender.example.com\r\nSubject: Re: hello\r\n"
        f"Message-ID: <{sender}-1@mail.example>\r\n\r\n{text}\r\n"
    ).encode()


def test_erasure_reaches_every_receipt_holding_the_address_and_no_other_address(tenant):
    identity = SenderIdentityFactory(tenant=tenant)
    lead = LeadFactory(tenant=tenant, email=ANN)
    LeadFactory(tenant=tenant, email="joann@x.com")
    message = Message.objects.create(
        tenant=tenant, sender_identity=identity, lead=lead, to_email=ANN, subject="Hi Ann"
    )

    def receipt(kind: str, body: bytes, **fields) -> WebhookReceipt:
        return WebhookReceipt.objects.create(tenant=tenant, kind=kind, body=body, **fields)

    now = timezone.now()
    shared = _events(ANN, "joann@x.com", "ann@x.com.au")
    linked = receipt("events", shared, processed_at=now)  # its events are stored
    MessageEvent.objects.create(
        tenant=tenant,
        message=message,
        event_type="bounce",
        occurred_at=now,
        received_at=now,
        provider_event_id="e-ann",
        email=ANN,
        receipt_id=linked.pk,
        raw={"email": ANN},
    )
    backlog = receipt("events", shared)  # not normalised yet
    duplicate = receipt("events", shared, processed_at=now)  # every event known already
    failed = receipt(
        "events",
        _events("joann@x.com", reason="550 \\u003cann@x.com\\u003e unknown"),
        attempts=5,
        last_error="boom",
    )
    post, content_type = raw_mode_post(_mail("Ann <ann@x.com>", "Please stop. Ann"))
    her_reply = receipt("inbound", post, content_type=content_type)  # not parsed yet
    post, content_type = raw_mode_post(
        _mail("bob@y.example", "Remove ann@x.com, keep joann@x.com. Bob")
    )
    his_reply = receipt("inbound", post, content_type=content_type)

    lead_erase(tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:dpo", reason="request #1")

    pattern = address_pattern_bytes(ANN)
    bodies = {r.pk: bytes(r.body) for r in WebhookReceipt.objects.filter(tenant=tenant)}
    assert [pk for pk, body in bodies.items() if pattern.search(body)] == []
    for kept in (linked, backlog, duplicate):
        assert b'"joann@x.com"' in bodies[kept.pk]
        assert b'"ann@x.com.au"' in bodies[kept.pk]
        assert f"erased-{lead.pk}@erased.invalid".encode() in bodies[kept.pk]
        json.loads(bodies[kept.pk])  # still a valid body to process
    assert b"joann@x.com" in bodies[failed.pk]
    her_reply.refresh_from_db()
    assert (bytes(her_reply.body), her_reply.last_error) == (b"", RECEIPT_ERASED)
    assert her_reply.processed_at is not None  # nothing will parse it again
    his_reply.refresh_from_db()
    assert b"bob@y.example" in bodies[his_reply.pk] and b"joann@x.com" in bodies[his_reply.pk]
    assert his_reply.processed_at is None  # processed as usual later, without her address
