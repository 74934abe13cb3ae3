"""Matching a reply to our message: token first, then threading headers, always per tenant."""

import pytest

from messaging.inbound.match import inbound_message_match, reply_tokens_find
from messaging.inbound.parse import inbound_email_parse, mime_parse
from messaging.tests.inbound_support import TOKENS, fixture_bytes, raw_mode_post, sent_message

pytestmark = pytest.mark.django_db


def _match(tenant, raw: bytes, **post):
    body, content_type = raw_mode_post(raw, **post)
    email = inbound_email_parse(body=body, content_type=content_type)
    return inbound_message_match(tenant_id=tenant.pk, email=email)


def test_the_reply_token_finds_the_exact_message(tenant):
    ours = sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    # Another message of the same thread must not win over the token.
    sent_message(tenant, rfc_message_id="<20261130141402.3f9a.sam@mail.acme-sales.example>")
    found = _match(tenant, fixture_bytes("gmail_reply"))
    assert found.message == ours
    assert found.method == "token"


def test_the_envelope_token_wins_when_headers_name_another(tenant):
    envelope_msg = sent_message(tenant)
    header_msg = sent_message(tenant, reply_token=TOKENS["gmail_reply"])
    envelope = f'{{"to": ["reply+{envelope_msg.reply_token}@reply.acme-sales.example"]}}'
    found = _match(tenant, fixture_bytes("gmail_reply"), envelope=envelope)
    assert found.message == envelope_msg
    assert found.message != header_msg


def test_tokens_are_read_from_to_cc_and_delivered_to(tenant):
    raw = (
        b"From: a@prospect.example\r\nTo: someone@else.example\r\n"
        b"Cc: Sam <reply+AbCdEfGh12345678@reply.acme-sales.example>\r\n"
        b"Delivered-To: reply+ZyXwVuTs87654321@reply.acme-sales.example\r\n"
        b"Subject: Re: hi\r\n\r\nok\r\n"
    )
    assert reply_tokens_find(email=mime_parse(raw=raw)) == ["ZyXwVuTs87654321", "AbCdEfGh12345678"]


def test_in_reply_to_matches_our_message_id(tenant):
    ours = sent_message(tenant, rfc_message_id="<20261130141402.3f9a.sam@mail.acme-sales.example>")
    found = _match(tenant, fixture_bytes("gmail_reply"))  # its token is unknown here
    assert found.message == ours
    assert found.method == "in_reply_to"


def test_in_reply_to_matches_sendgrids_smtp_id(tenant):
    smtp_id = "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>"
    ours = sent_message(tenant, smtp_id=smtp_id)
    raw = (
        b"From: a@prospect.example\r\nTo: sam@acme-sales.example\r\n"
        b"In-Reply-To: " + smtp_id.encode() + b"\r\nSubject: Re: hi\r\n\r\nok\r\n"
    )
    found = _match(tenant, raw)
    assert found.message == ours
    assert found.method == "in_reply_to"


def test_stored_ids_without_angle_brackets_still_match(tenant):
    ours = sent_message(tenant, rfc_message_id="20261130141402.3f9a.sam@mail.acme-sales.example")
    assert _match(tenant, fixture_bytes("gmail_reply")).message == ours


def test_references_match_the_newest_of_our_messages_first(tenant):
    first = sent_message(tenant, rfc_message_id="<20261124100000.77aa.sam@mail.acme-sales.example>")
    raw = fixture_bytes("outlook_reply").replace(b"In-Reply-To:", b"X-Old-In-Reply-To:")
    found = _match(tenant, raw)
    assert found.message == first
    assert found.method == "references"
    follow_up = sent_message(
        tenant, rfc_message_id="<20261127100000.88bb.sam@mail.acme-sales.example>"
    )
    assert _match(tenant, raw).message == follow_up


def test_a_bounce_matches_through_the_returned_message(tenant):
    ours = sent_message(tenant, rfc_message_id="<20261130142000.dd44.sam@mail.acme-sales.example>")
    found = _match(tenant, fixture_bytes("dsn_bounce"))
    assert found.message == ours
    assert found.method == "returned_message"


def test_unknown_mail_matches_nothing(tenant):
    sent_message(tenant)
    assert _match(tenant, fixture_bytes("unknown_reply")) is None


def test_another_tenants_token_and_ids_do_not_match(tenant, other_tenant):
    sent_message(
        other_tenant,
        reply_token=TOKENS["gmail_reply"],
        rfc_message_id="<20261130141402.3f9a.sam@mail.acme-sales.example>",
    )
    assert _match(tenant, fixture_bytes("gmail_reply")) is None
    assert _match(other_tenant, fixture_bytes("gmail_reply")).method == "token"
