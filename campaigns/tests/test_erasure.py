"""Erasure on request (``lead_erase``) reaching every copy of the address, and nothing else:
webhook bodies not linked to any stored event, replies not parsed yet, and other people's
addresses that merely contain the erased one."""

import hashlib
import hmac
import json
import uuid

import pytest
from django.utils import timezone

from analytics.models import JourneyCount
from analytics.services.rollup import analytics_refresh
from campaigns.models import Enrollment, EnrollmentTransition
from campaigns.services.erasure import lead_erase
from campaigns.tests.engine_support import PLAN_ONE_EMAIL
from messaging.models import InboundMessage, Message, MessageEvent, WebhookReceipt
from messaging.services.erasure import RECEIPT_ERASED, address_pattern, address_pattern_bytes
from messaging.services.inbound import inbound_receipt_process
from messaging.services.receipts import webhook_receipt_create, webhook_receipt_normalise
from messaging.tests.inbound_support import TOKENS, raw_mode_post, sent_message
from outreach.testing.factories import LeadFactory, SenderIdentityFactory, campaign_with_plan
from suppression.models import Suppression
from suppression.selectors import suppression_check

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
        f"Message-ID: <{uuid.uuid4().hex}@mail.example>\r\n\r\n{text}\r\n"
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


# --- what an erasure keeps: a keyed hash; and what it also cleans ------------------------------


def test_the_erased_address_is_kept_as_a_keyed_hash_that_still_stops_sends(tenant, settings):
    settings.SUPPRESSION_HASH_KEYS = ["key-one"]
    lead = LeadFactory(tenant=tenant, email=ANN)
    report = lead_erase(tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:dpo", reason="r")
    (stored,) = Suppression.objects.filter(tenant=tenant).values_list("email", flat=True)
    keyed = hmac.new(b"key-one", ANN.encode(), hashlib.sha256).hexdigest()
    assert stored == f"hmac-sha256:{keyed}" == report.suppression_hash
    # Guessing the address and hashing it, as one could an unsalted SHA-256, finds nothing.
    assert hashlib.sha256(ANN.encode()).hexdigest() not in stored
    assert suppression_check(tenant_id=tenant.pk, emails=["Ann@X.com"]) == {ANN}
    # Rotated: a new key first, the old one kept, the entry still stops the send.
    settings.SUPPRESSION_HASH_KEYS = ["key-two", "key-one"]
    assert suppression_check(tenant_id=tenant.pk, emails=[ANN]) == {ANN}
    settings.SUPPRESSION_HASH_KEYS = ["key-two"]  # the entry was made with another key
    assert suppression_check(tenant_id=tenant.pk, emails=[ANN]) == set()


def test_an_early_unsalted_hash_still_stops_sends(tenant):
    Suppression.objects.create(
        tenant=tenant,
        email="sha256:" + hashlib.sha256(ANN.encode()).hexdigest(),
        reason="manual",
        source="admin",
    )
    assert suppression_check(tenant_id=tenant.pk, emails=[ANN]) == {ANN}


def test_erasure_cleans_enrollment_reasons_transition_causes_and_the_journey_counts(tenant):
    identity = SenderIdentityFactory(tenant=tenant)
    lead = LeadFactory(tenant=tenant, email=ANN)
    campaign = campaign_with_plan(tenant=tenant, plan=PLAN_ONE_EMAIL, identity=identity)
    refusal = "permanent: 550 5.1.1 <ann@x.com>: no such user (cc joann@x.com)"
    enrollment = Enrollment.objects.create(
        tenant=tenant,
        campaign=campaign,
        lead=lead,
        plan_version=campaign.current_version,
        sender_identity=identity,
        current_step="intro",
        step_seq=1,
        state=Enrollment.State.FAILED,
        stop_reason=refusal[:200],
        last_error=refusal,
    )
    EnrollmentTransition.objects.create(
        tenant=tenant,
        enrollment=enrollment,
        from_step="intro",
        from_seq=1,
        to_step="",
        trigger="bounce",
        cause="bounced: ann@x.com",
    )
    analytics_refresh()
    assert JourneyCount.objects.filter(tenant=tenant, reason__contains=ANN).exists()

    report = lead_erase(tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:dpo", reason="r")
    analytics_refresh()

    placeholder = f"erased-{lead.pk}@erased.invalid"
    enrollment.refresh_from_db()
    for text in (
        enrollment.stop_reason,
        enrollment.last_error,
        EnrollmentTransition.objects.get(enrollment=enrollment).cause,
    ):
        assert not address_pattern(ANN).search(text) and placeholder in text
    assert "joann@x.com" in enrollment.last_error
    assert report.enrollment_texts >= 2
    buckets = list(JourneyCount.objects.filter(tenant=tenant).values_list("reason", "enrollments"))
    assert not [reason for reason, _ in buckets if address_pattern(ANN).search(reason)]
    assert sum(count for _, count in buckets) == 1  # the enrollment is still counted once


def test_a_global_suppression_is_platform_owned_kept_and_reported(tenant):
    lead = LeadFactory(tenant=tenant, email=ANN)
    Suppression.objects.create(
        tenant=None, scope="global", email=ANN, reason="spam_report", source="admin"
    )
    report = lead_erase(tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:dpo", reason="r")
    assert Suppression.objects.filter(tenant=None, email=ANN).exists()
    assert report.global_suppressions_kept == 1
    assert "global suppression list, which is platform-owned and was kept" in report.summary()


# --- mail still on its way after the erasure writes nothing personal back ----------------------


def _bounce(message: Message, email: str, key: str) -> dict:
    return {
        "email": email,
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": f"550 5.1.1 <{email}>: user unknown",
        "sg_event_id": key,
        "sg_message_id": f"{message.provider_message_id}.filter0001",
        "timestamp": int(timezone.now().timestamp()),
        "outreach_message_id": str(message.public_id),
        "ip": "203.0.113.9",
    }


def _normalise(tenant, events: list[dict]) -> WebhookReceipt:
    receipt_id = webhook_receipt_create(
        tenant_id=tenant.pk, kind="events", body=json.dumps(events).encode(), headers={}
    )
    webhook_receipt_normalise(receipt_id=receipt_id)
    return WebhookReceipt.objects.get(pk=receipt_id)


def test_events_arriving_after_the_erasure_store_no_personal_data(tenant, event_rows_cleanup):
    lead = LeadFactory(tenant=tenant, email=ANN)
    hers = sent_message(tenant, lead=lead)
    his = sent_message(tenant, lead=LeadFactory(tenant=tenant, email="joann@x.com"))
    report = lead_erase(tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:dpo", reason="r")
    open_event = {**_bounce(hers, ANN, "late-open"), "event": "open", "useragent": "Mail/1.0"}
    late = [_bounce(hers, ANN, "late-bounce"), open_event, _bounce(his, "joann@x.com", "his")]

    receipt = _normalise(tenant, late)

    pattern = address_pattern_bytes(ANN)
    assert not pattern.search(bytes(receipt.body))
    assert b"joann@x.com" in bytes(receipt.body)
    for event in MessageEvent.objects.filter(message_id=hers.pk):
        assert (event.email, event.raw) == ("", {"erased": True})
    assert MessageEvent.objects.get(message_id=his.pk).email == "joann@x.com"
    hers.refresh_from_db()
    assert hers.status == "bounced"  # the ledger still moves
    assert not pattern.search(hers.error_message.encode())
    tenant_entries = set(Suppression.objects.filter(tenant=tenant).values_list("email", flat=True))
    assert tenant_entries == {report.suppression_hash, "joann@x.com"}  # only the hash for her

    # SendGrid delivers the same batch again: every event is known, the body is cleaned too.
    again = _normalise(tenant, late)
    assert not pattern.search(bytes(again.body))
    assert MessageEvent.objects.filter(message_id=hers.pk).count() == 2


def test_replies_arriving_after_the_erasure_store_no_personal_data(tenant):
    lead = LeadFactory(tenant=tenant, email=ANN)
    hers = sent_message(tenant, lead=lead, reply_token=TOKENS["gmail_reply"])
    lead_erase(tenant_id=tenant.pk, lead_id=lead.pk, actor="cli:dpo", reason="r")
    placeholder = f"erased-{lead.pk}@erased.invalid"
    replies = {
        # to her message's reply address
        "matched": _mail("Ann <ann@x.com>", "Thanks, Ann").replace(
            b"To: ae@sender.example.com",
            f"To: reply+{TOKENS['gmail_reply']}@reply.acme-sales.example".encode(),
        ),
        # a new mail of hers, matching no message of ours
        "unmatched": _mail("Ann <ann@x.com>", "Me again, Ann"),
    }
    for name, raw in replies.items():
        body, content_type = raw_mode_post(raw)
        receipt = WebhookReceipt.objects.create(
            tenant=tenant, kind="inbound", body=body, content_type=content_type
        )
        inbound_receipt_process(tenant_id=tenant.pk, receipt_id=receipt.pk)
        receipt.refresh_from_db()
        assert (bytes(receipt.body), receipt.last_error) == (b"", RECEIPT_ERASED), name
        (inbound,) = InboundMessage.objects.filter(receipt=receipt)
        assert (inbound.raw_mime, inbound.subject) == ("", ""), name
        assert inbound.from_email in (placeholder, ""), name
        assert inbound.matched_message_id == (hers.pk if name == "matched" else None), name
    (event,) = MessageEvent.objects.filter(message_id=hers.pk, event_type="reply")
    assert ANN not in json.dumps(event.raw) and event.email == ""
