"""Reading stored Inbound Parse requests: raw mode, default mode, charsets, delivery reports."""

import datetime
import json

import pytest

from messaging.inbound.parse import (
    InboundParseError,
    html_to_text,
    inbound_email_parse,
    inbound_form_parse,
    mime_parse,
)
from messaging.tests.inbound_support import (
    default_mode_post,
    fixture_bytes,
    multipart_encode,
    raw_mode_post,
)


def test_raw_mode_keeps_the_mime_message_byte_for_byte():
    raw = fixture_bytes("gmail_reply")
    body, content_type = raw_mode_post(raw)
    fields = inbound_form_parse(body=body, content_type=content_type)
    assert fields["email"].data == raw
    assert json.loads(fields["envelope"].data)["to"] == [
        "reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example"
    ]


def test_raw_mode_gives_addresses_ids_date_and_decoded_text():
    body, content_type = raw_mode_post(fixture_bytes("gmail_reply"))
    email = inbound_email_parse(body=body, content_type=content_type)
    assert email.mode == "raw"
    assert email.from_email == "dana.reyes@northwind.example"
    assert email.to == ("reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example",)
    assert email.envelope_to == ("reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example",)
    assert email.delivered_to == ("reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example",)
    assert email.subject == "Re: Quick question about Northwind's outbound"
    assert email.in_reply_to == ("<20261130141402.3f9a.sam@mail.acme-sales.example>",)
    assert email.message_id == "<CAJx9p2Vq7N3rT5uW8yZbCdEfGhIjKlMnOpQ@mail.gmail.com>"
    assert email.date == datetime.datetime(2026, 12, 1, 14, 31, tzinfo=datetime.UTC)
    # Quoted-printable and UTF-8 are decoded: the em dash and the wrapped line are whole.
    assert "Thanks for reaching out \u2014 timing is actually good." in email.text
    assert "Could you send over a couple of slots" in email.text
    assert "gmail_quote" in email.html


def test_reply_tokens_keep_their_case_and_domains_are_lowered():
    raw = fixture_bytes("gmail_reply").replace(
        b"To: Sam Carter <reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example>",
        b"To: Sam Carter <reply+k7Qm2Zp9Lx4Rt1Vb@REPLY.Acme-Sales.EXAMPLE>",
    )
    email = mime_parse(raw=raw)
    assert email.to == ("reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example",)


def test_encoded_words_and_legacy_charsets_are_decoded():
    email = mime_parse(raw=fixture_bytes("german_ooo"))
    assert email.subject == "Abwesenheitsnotiz: Kurze Frage zu Ihrem Vertrieb"
    assert "nicht im Büro" in email.text
    assert "Mit freundlichen Grüßen" in email.text
    assert email.from_email == "m.schneider@litware.example"


def test_outlook_folded_references_are_all_read_in_order():
    email = mime_parse(raw=fixture_bytes("outlook_reply"))
    assert email.references == (
        "<20261124100000.77aa.sam@mail.acme-sales.example>",
        "<20261127100000.88bb.sam@mail.acme-sales.example>",
    )
    assert email.from_email == "c.okafor@contoso-logistics.example"


def test_default_mode_decodes_text_with_the_declared_charset():
    raw = fixture_bytes("german_ooo")
    body, content_type = default_mode_post(raw, text_charset="iso-8859-1")
    email = inbound_email_parse(body=body, content_type=content_type)
    assert email.mode == "default"
    assert "nicht im Büro" in email.text
    assert email.subject == "Abwesenheitsnotiz: Kurze Frage zu Ihrem Vertrieb"
    assert email.from_email == "m.schneider@litware.example"
    assert email.envelope_to == ("reply+Dk8Jh5Gf2Sa9Lp6O@reply.acme-sales.example",)


def test_default_mode_keeps_threading_headers_and_a_reparsable_copy():
    raw = fixture_bytes("outlook_reply")
    body, content_type = default_mode_post(raw)
    email = inbound_email_parse(body=body, content_type=content_type)
    assert email.in_reply_to == ("<20261127100000.88bb.sam@mail.acme-sales.example>",)
    assert len(email.references) == 2
    # What is stored as raw_mime parses back to the same text, even though the original
    # was quoted-printable multipart/alternative.
    again = mime_parse(raw=email.raw_mime)
    assert again.text.strip() == email.text.strip()
    assert again.subject == email.subject


def test_a_delivery_report_exposes_the_returned_message_id_not_its_text_as_body():
    email = mime_parse(raw=fixture_bytes("dsn_bounce"))
    assert email.content_type == "multipart/report"
    assert email.report_type == "delivery-status"
    assert email.returned_message_ids == ("<20261130142000.dd44.sam@mail.acme-sales.example>",)
    assert "could not" in email.text
    assert "Would a" not in email.text


def test_a_null_reverse_path_in_the_envelope_is_kept_visible():
    body, content_type = raw_mode_post(fixture_bytes("dsn_bounce"))
    email = inbound_email_parse(body=body, content_type=content_type)
    assert email.envelope_from == "<>"


def test_html_only_mail_reads_as_text_with_blockquotes_quoted():
    text = html_to_text(
        html="<div>Yes please &amp; thanks</div><blockquote>Old <b>offer</b></blockquote>"
    )
    assert text.splitlines()[0] == "Yes please & thanks"
    assert "> Old offer" in text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{}", "application/json"),
        (b"not multipart at all", "multipart/form-data; boundary=abc"),
        (multipart_encode({"dkim": "x"})[0], None),
    ],
)
def test_requests_without_mail_are_parse_errors(body, content_type):
    if content_type is None:
        content_type = "multipart/form-data; boundary=" + body[2:].split(b"\r\n")[0].decode()
    with pytest.raises(InboundParseError):
        inbound_email_parse(body=body, content_type=content_type)


def test_malformed_headers_do_not_raise():
    raw = (
        b"From: =?bogus-charset?Q?J=FCrgen?= <<broken@@example\r\n"
        b"To: reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example\r\n"
        b"Date: not a date\r\n"
        b"In-Reply-To: garbage without brackets\r\n"
        b"Content-Type: text/plain; charset=x-unknown\r\n\r\n"
        b"Hello \xff\xfe there\r\n"
    )
    email = mime_parse(raw=raw)
    assert email.date is None
    assert email.in_reply_to == ()
    assert "Hello" in email.text
    assert email.to == ("reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example",)
