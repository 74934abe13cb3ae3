"""Human, auto-reply, out-of-office or bounce, on real-looking mail; and return dates."""

import datetime

import pytest

from messaging.inbound.classify import (
    AUTO_REPLY,
    BOUNCE,
    HUMAN,
    OUT_OF_OFFICE,
    inbound_classify,
    quoted_history_strip,
    return_date_extract,
    subject_own_part,
)
from messaging.inbound.parse import inbound_email_parse, mime_parse
from messaging.tests.inbound_support import default_mode_post, fixture_bytes, raw_mode_post

RECEIVED = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


def _classify(raw: bytes):
    return inbound_classify(email=mime_parse(raw=raw), received_at=RECEIVED)


@pytest.mark.parametrize(
    ("fixture", "kind", "return_date"),
    [
        ("gmail_reply", HUMAN, None),
        ("outlook_reply", HUMAN, None),
        ("apple_mail_reply", HUMAN, None),
        ("human_quoting_ooo", HUMAN, None),
        ("unknown_reply", HUMAN, None),
        ("exchange_ooo", OUT_OF_OFFICE, datetime.date(2026, 12, 7)),
        ("gmail_vacation", OUT_OF_OFFICE, datetime.date(2026, 12, 7)),
        ("german_ooo", OUT_OF_OFFICE, datetime.date(2026, 12, 5)),
        # "jusqu'au 7 décembre inclus": absent on the 7th, back on the 8th.
        ("french_ooo", OUT_OF_OFFICE, datetime.date(2026, 12, 8)),
        ("spanish_ooo", OUT_OF_OFFICE, datetime.date(2026, 12, 11)),
        ("x_autoreply", AUTO_REPLY, None),
        ("dsn_bounce", BOUNCE, None),
    ],
)
def test_every_fixture_is_classified(fixture, kind, return_date):
    verdict = _classify(fixture_bytes(fixture))
    assert verdict.kind == kind, verdict.reasons
    assert verdict.return_date == return_date


@pytest.mark.parametrize("fixture", ["exchange_ooo", "german_ooo", "gmail_reply", "dsn_bounce"])
def test_default_mode_classifies_like_raw_mode(fixture):
    raw = fixture_bytes(fixture)
    body, content_type = raw_mode_post(raw)
    raw_email = inbound_email_parse(body=body, content_type=content_type)
    body, content_type = default_mode_post(raw)
    default_email = inbound_email_parse(body=body, content_type=content_type)
    raw_verdict = inbound_classify(email=raw_email, received_at=RECEIVED)
    default_verdict = inbound_classify(email=default_email, received_at=RECEIVED)
    if fixture == "dsn_bounce":
        # Default mode has no MIME structure left, but the daemon sender and the null
        # reverse-path still say what it is.
        assert default_verdict.kind == BOUNCE
    else:
        assert (default_verdict.kind, default_verdict.return_date) == (
            raw_verdict.kind,
            raw_verdict.return_date,
        )


def test_the_exchange_ooo_names_its_machine_headers():
    verdict = _classify(fixture_bytes("exchange_ooo"))
    assert "Auto-Submitted: auto-replied" in verdict.reasons
    assert "X-Auto-Response-Suppress: All" in verdict.reasons


def test_auto_submitted_no_is_a_human_message():
    raw = fixture_bytes("gmail_reply").replace(
        b"MIME-Version: 1.0\n", b"MIME-Version: 1.0\nAuto-Submitted: no\n", 1
    )
    assert _classify(raw).kind == HUMAN


@pytest.mark.parametrize(
    "header",
    [
        b"Auto-Submitted: auto-generated",
        b"X-Autorespond: Auto reply",
        b"Precedence: junk",
        b"Precedence: list",
        b"Precedence: auto_reply",
        b"X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply",
    ],
)
def test_each_machine_header_alone_makes_an_auto_reply(header):
    raw = fixture_bytes("gmail_reply").replace(b"MIME-Version: 1.0\n", header + b"\n", 1)
    assert _classify(raw).kind == AUTO_REPLY


def test_absence_wording_only_in_the_quote_keeps_an_html_only_reply_human():
    raw = (
        b"From: dana.reyes@northwind.example\r\n"
        b"To: reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example\r\n"
        b"Subject: Re: Out of office coverage for your SDRs\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<div>Sure, send me the deck.</div>"
        b"<blockquote>I am out of the office until December 7.</blockquote>"
    )
    assert _classify(raw).kind == HUMAN


def test_a_short_ooo_without_headers_is_recognised_by_its_wording():
    raw = (
        b"From: a@prospect.example\r\nTo: reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example\r\n"
        b"Subject: Re: Quick question\r\nDate: Tue, 1 Dec 2026 09:00:00 +0000\r\n\r\n"
        b"I am currently out of the office and will return on 12/07/2026.\r\n"
    )
    verdict = _classify(raw)
    assert verdict.kind == OUT_OF_OFFICE
    assert verdict.return_date == datetime.date(2026, 12, 7)


def test_a_long_human_reply_mentioning_leave_late_stays_human():
    body = (
        "Hi Sam,\n\n"
        + ("We looked at your proposal in detail and have a few questions. " * 12)
        + "\nI'll be on vacation next week, so let's aim for the week after.\n"
    )
    raw = (
        b"From: a@prospect.example\r\nTo: reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example\r\n"
        b"Subject: Re: Quick question\r\n\r\n" + body.encode()
    )
    assert _classify(raw).kind == HUMAN


def test_a_campaign_subject_about_vacations_does_not_make_replies_ooo():
    raw = (
        b"From: a@prospect.example\r\nTo: reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example\r\n"
        b"Subject: Re: Covering your team while they are out of office\r\n\r\n"
        b"Interesting, tell me more.\r\n"
    )
    assert _classify(raw).kind == HUMAN


@pytest.mark.parametrize(
    ("subject", "own"),
    [
        ("Automatic reply: Quick question", "Automatic reply"),
        ("Re: Quick question", ""),
        ("AW: Kurze Frage", ""),
        ("Out of Office (back Dec 7): Re: Quick question", "Out of Office (back Dec 7)"),
        ("I'm away until Monday", "I'm away until Monday"),
    ],
)
def test_subject_own_part(subject, own):
    assert subject_own_part(subject=subject) == own


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "Sounds good.\n\nOn Mon, Nov 30, 2026 at 9:14 AM Sam <\nsam@a.example> wrote:\n> hi",
            "Sounds good.",
        ),
        (
            "Ja, gerne.\n\nAm 30.11.2026 um 09:14 schrieb Sam <sam@a.example>:\n> Hallo",
            "Ja, gerne.",
        ),
        ("Avec plaisir.\n\nLe lun. 30 nov. 2026, Sam <s@a.example> a écrit :\n> Bonjour", None),
        ("Claro.\n\nEl lun, 30 nov 2026, Sam (<s@a.example>) escribió:\n> Hola", "Claro."),
        ("Yes.\n\n-----Original Message-----\nFrom: Sam\nSent: Monday\n\nOld", "Yes."),
        ("Yes.\n\n________________________________\nFrom: Sam\nSent: Monday\nOld", "Yes."),
        ("Ok.\n\nFrom: Sam Carter <s@a.example>\nSent: 27 November 2026 10:00\nOld", "Ok."),
        ("Gerne.\n\nVon: Sam Carter\nGesendet: Montag, 30. November 2026\nAlt", "Gerne."),
        ("Inline:\n> your question\nmy answer\n> other\nsecond answer", None),
    ],
)
def test_quoted_history_is_cut(text, kept):
    stripped = quoted_history_strip(text=text)
    if kept is not None:
        assert stripped == kept
    else:
        assert ">" not in stripped
        assert "Bonjour" not in stripped


@pytest.mark.parametrize(
    ("text", "sent_on", "expected"),
    [
        ("I will be back on Monday, December 7.", "2026-11-30", "2026-12-07"),
        ("I will return on 12/07/2026.", "2026-11-30", "2026-12-07"),
        ("Out of office until 7 December.", "2026-11-30", "2026-12-07"),
        ("Ich bin bis zum 5. Dezember nicht im Büro.", "2026-11-26", "2026-12-05"),
        ("Je suis absent jusqu'au 7 décembre.", "2026-11-30", "2026-12-07"),
        ("Je suis absente jusqu\u2019au 7 décembre inclus.", "2026-11-30", "2026-12-08"),
        ("Estoy fuera de la oficina hasta el 7 de diciembre.", "2026-11-30", "2026-12-07"),
        ("Back on 2026-12-07 (Monday 07 December 2026).", "2026-11-30", "2026-12-07"),
        ("Ab dem 07.12.2026 bin ich wieder erreichbar.", "2026-11-30", "2026-12-07"),
        ("I'm out through Friday Dec 4th.", "2026-11-30", "2026-12-05"),
        ("I'm away until Jan 4 with limited access.", "2026-12-21", "2027-01-04"),
        ("Back on Monday.", "2026-12-02", "2026-12-07"),
        ("Back on Monday.", "2026-12-07", "2026-12-14"),
        ("I'm out today, back tomorrow.", "2026-12-01", "2026-12-02"),
        ("Away from Dec 1 to Dec 9, back on Dec 10.", "2026-11-30", "2026-12-10"),
        ("Bin im Urlaub, zurück am 5.1.", "2026-12-20", "2027-01-05"),
        ("I am out of the office with limited access to email.", "2026-11-30", None),
        ("Back on 12/07/2024.", "2026-11-30", None),  # a stale responder
        ("Thanks, we got your request #48213 on 11/30.", "2026-11-30", None),
    ],
)
def test_return_date_extraction(text, sent_on, expected):
    result = return_date_extract(text=text, sent_on=datetime.date.fromisoformat(sent_on))
    assert result == (datetime.date.fromisoformat(expected) if expected else None)


def test_relative_dates_are_anchored_on_the_message_date_not_the_receipt():
    raw = (
        b"From: a@prospect.example\r\nTo: reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example\r\n"
        b"Subject: Automatic reply: Quick question\r\nAuto-Submitted: auto-replied\r\n"
        b"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\n"
        b"I'm away and will be back on Monday.\r\n"
    )
    verdict = inbound_classify(email=mime_parse(raw=raw), received_at=RECEIVED)
    assert verdict.kind == OUT_OF_OFFICE
    assert verdict.return_date == datetime.date(2026, 11, 30)


def test_a_read_receipt_is_an_auto_reply_not_a_human_answer():
    raw = (
        b"From: Dana Reyes <dana.reyes@northwind.example>\r\n"
        b"To: reply+k7Qm2Zp9Lx4Rt1Vb@reply.acme-sales.example\r\n"
        b"Subject: Read: Quick question about Northwind's outbound\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="b1"\r\n'
        b"\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Your message was read on Tuesday, December 1, 2026 9:40:12 AM (UTC-05:00).\r\n"
        b"\r\n--b1\r\nContent-Type: message/disposition-notification\r\n\r\n"
        b"Final-Recipient: rfc822;dana.reyes@northwind.example\r\n"
        b"Disposition: automatic-action/MDN-sent-automatically; displayed\r\n"
        b"\r\n--b1--\r\n"
    )
    verdict = _classify(raw)
    assert verdict.kind == AUTO_REPLY
    assert verdict.reasons == ("multipart/report; report-type=disposition-notification",)
