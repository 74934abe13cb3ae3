"""Turn a stored Inbound Parse request into one email we can reason about.

SendGrid posts ``multipart/form-data``: either the full MIME message in the ``email`` field
(raw mode, preferred) or pre-split fields (default mode: ``headers``, ``text``, ``html``,
``charsets``, ``envelope`` ...). Both come out as an ``InboundEmail``.

The stored body is parsed with the standard ``email`` package rather than Django's
MultiPartParser: it works on stored bytes outside a request, has no per-field memory limit (a
25 MB ``email`` field is legal) and never drops a part because of its filename. The lenient
``compat32`` policy is used throughout and header values are decoded by hand, because mail in
the wild carries malformed headers that the strict policy raises on when they are read.
"""

from __future__ import annotations

import datetime
import html as html_lib
import json
import re
from dataclasses import dataclass, field, replace
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from html.parser import HTMLParser


class InboundParseError(ValueError):
    """The stored request is not an Inbound Parse post we can read (not a bug: bad input)."""


@dataclass(frozen=True)
class FormField:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str = ""


@dataclass(frozen=True)
class InboundEmail:
    """One inbound email, whichever Inbound Parse mode delivered it.

    Addresses are addr-specs with lower-cased domains; message ids keep their angle brackets
    (``<local@domain>``), the form they take in ``In-Reply-To`` and SendGrid's ``smtp-id``.
    """

    mode: str
    headers: tuple[tuple[str, str], ...]
    from_email: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    delivered_to: tuple[str, ...] = ()
    envelope_to: tuple[str, ...] = ()
    envelope_from: str = ""
    subject: str = ""
    message_id: str = ""
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    date: datetime.datetime | None = None
    text: str = ""
    html: str = ""
    content_type: str = "text/plain"
    report_type: str = ""
    returned_message_ids: tuple[str, ...] = field(default=())
    raw_mime: str = ""

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def header(self, name: str) -> str:
        values = self.header_values(name)
        return values[0] if values else ""

    @property
    def body_text(self) -> str:
        """The plain-text body, or the HTML body rendered as text when there is no text part."""
        if self.text.strip():
            return self.text
        return html_to_text(html=self.html)


_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def inbound_form_parse(*, body: bytes, content_type: str) -> dict[str, FormField]:
    """Split a ``multipart/form-data`` body into its fields (the first of each name wins)."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary" not in (
        content_type.lower()
    ):
        raise InboundParseError("expected multipart/form-data with a boundary")
    try:
        prefix = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    except UnicodeEncodeError as exc:
        raise InboundParseError("content type is not ASCII") from exc
    container = BytesParser(policy=policy.compat32).parsebytes(prefix + body)
    if not container.is_multipart():
        raise InboundParseError("multipart body has no parts")
    fields: dict[str, FormField] = {}
    for part in container.get_payload():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        name = collapse_rfc2231_value(name)
        if name in fields:
            continue
        fields[name] = FormField(
            name=name,
            data=_part_bytes(part),
            filename=part.get_filename(),
            content_type=part.get("Content-Type", ""),
        )
    if not fields:
        raise InboundParseError("multipart body has no named fields")
    return fields


def inbound_email_parse(*, body: bytes, content_type: str) -> InboundEmail:
    """Parse a stored Inbound Parse request (raw or default mode) into an ``InboundEmail``."""
    fields = inbound_form_parse(body=body, content_type=content_type)
    charsets = _charsets(fields)
    envelope_to, envelope_from = _envelope(fields, charsets)
    if "email" in fields:
        return _from_raw(fields["email"].data, envelope_to=envelope_to, envelope_from=envelope_from)
    if "headers" in fields:
        return _from_default(fields, charsets, envelope_to=envelope_to, envelope_from=envelope_from)
    raise InboundParseError("neither an 'email' (raw mode) nor a 'headers' field is present")


def mime_parse(*, raw: bytes | str) -> InboundEmail:
    """Parse one RFC 5322 message (what raw mode carries, and what we store as ``raw_mime``)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogateescape")
    return _from_raw(raw, envelope_to=(), envelope_from="")


def _part_bytes(part: Message) -> bytes:
    if part.is_multipart() or part.get_content_maintype() == "message":
        # A form field declared as a message: keep it as the bytes of that message.
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else part
        return inner.as_bytes()
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate, errors="replace")
        except LookupError:
            continue
    return data.decode("utf-8", errors="replace")


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; nothing meaningful is lost by dropping it.
    return text.replace("\x00", "")


def _charsets(fields: dict[str, FormField]) -> dict[str, str]:
    raw = fields.get("charsets")
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw.data.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): str(v) for k, v in parsed.items() if isinstance(v, str)}


def _field_text(fields: dict[str, FormField], name: str, charsets: dict[str, str]) -> str:
    item = fields.get(name)
    if item is None:
        return ""
    charset = charsets.get(name)
    if not charset and item.content_type:
        match = re.search(r'charset="?([^";\s]+)', item.content_type, re.IGNORECASE)
        charset = match.group(1) if match else None
    return _clean(_decode_bytes(item.data, charset))


def _envelope(
    fields: dict[str, FormField], charsets: dict[str, str]
) -> tuple[tuple[str, ...], str]:
    text = _field_text(fields, "envelope", charsets)
    if not text:
        return (), ""
    try:
        data = json.loads(text)
    except ValueError:
        return (), ""
    if not isinstance(data, dict):
        return (), ""
    to = data.get("to") or []
    if isinstance(to, str):
        to = [to]
    # A null reverse-path is how delivery reports travel: keep it visible as "<>".
    sender = str(data.get("from") or "").strip()
    sender = "<>" if sender in ("", "<>") else _address_normalise(sender.strip("<>"))
    return _addresses([str(a) for a in to]), sender


def header_decode(value: str) -> str:
    """Decode RFC 2047 encoded words and unfold; never raises on malformed input."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", value)
    try:
        return str(make_header(decode_header(unfolded))).strip()
    except (ValueError, LookupError, UnicodeError, TypeError):
        return unfolded.strip()


def _header_items(message: Message) -> tuple[tuple[str, str], ...]:
    items = []
    for key, value in message.items():
        items.append((key, _clean(header_decode(str(value)))))
    return tuple(items)


def _address_normalise(addr: str) -> str:
    # Domains are case-insensitive, local parts are not: a reply token keeps its case.
    local, at, domain = addr.strip().rpartition("@")
    return f"{local}@{domain.lower()}" if at and local else ""


def _addresses(values: list[str]) -> tuple[str, ...]:
    found: list[str] = []
    for _, addr in getaddresses(values):
        addr = _address_normalise(addr)
        if addr and addr not in found:
            found.append(addr)
    return tuple(found)


def _ids(values: list[str]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        for item in _MESSAGE_ID.findall(value):
            if item not in found:
                found.append(item)
    return tuple(found)


def _date(value: str) -> datetime.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).strip().lower()
    return disposition.startswith("attachment")


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return _clean(_decode_bytes(data, part.get_content_charset()))


def _bodies(message: Message) -> tuple[str, str]:
    """The first inline text/plain and text/html parts, never descending into an attached
    message (a bounce carries the original mail, whose text is not the new text)."""
    text = ""
    html = ""
    stack = [message]
    while stack:
        part = stack.pop(0)
        if part.is_multipart():
            if part.get_content_maintype() == "message":
                continue
            children = part.get_payload()
            stack[0:0] = children if isinstance(children, list) else []
            continue
        if _is_attachment(part):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and not text:
            text = _part_text(part)
        elif ctype == "text/html" and not html:
            html = _part_text(part)
    return text, html


def _returned_message_ids(message: Message) -> tuple[str, ...]:
    """Message-IDs of the original mail a delivery report carries back to us."""
    found: list[str] = []
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                found.extend(_ids([str(inner.get("Message-ID", ""))]))
        elif ctype in ("text/rfc822-headers", "message/global-headers"):
            headers = BytesParser(policy=policy.compat32).parsebytes(
                part.get_payload(decode=True) or b"", headersonly=True
            )
            found.extend(_ids([str(headers.get("Message-ID", ""))]))
    return tuple(dict.fromkeys(found))


def _common(
    message: Message,
    *,
    mode: str,
    text: str,
    html: str,
    raw_mime: str,
    envelope_to: tuple[str, ...],
    envelope_from: str,
) -> InboundEmail:
    headers = _header_items(message)

    def values(name: str) -> list[str]:
        return [v for k, v in headers if k.lower() == name.lower()]

    from_values = values("From")
    from_addresses = _addresses(from_values)
    content_type = message.get_content_type()
    report_type = (message.get_param("report-type") or "") if content_type else ""
    if isinstance(report_type, tuple):
        report_type = collapse_rfc2231_value(report_type)
    return InboundEmail(
        mode=mode,
        headers=headers,
        from_email=from_addresses[0] if from_addresses else "",
        to=_addresses(values("To")),
        cc=_addresses(values("Cc")),
        delivered_to=_addresses(values("Delivered-To") + values("X-Original-To")),
        envelope_to=envelope_to,
        envelope_from=envelope_from,
        subject=(values("Subject") or [""])[0],
        message_id=(_ids(values("Message-ID")) or ("",))[0],
        in_reply_to=_ids(values("In-Reply-To")),
        references=_ids(values("References")),
        date=_date((values("Date") or [""])[0]),
        text=text,
        html=html,
        content_type=content_type,
        report_type=str(report_type).lower(),
        returned_message_ids=_returned_message_ids(message) if message.is_multipart() else (),
        raw_mime=raw_mime,
    )


def _from_raw(raw: bytes, *, envelope_to: tuple[str, ...], envelope_from: str) -> InboundEmail:
    message = BytesParser(policy=policy.compat32).parsebytes(raw)
    text, html = _bodies(message)
    return _common(
        message,
        mode="raw",
        text=text,
        html=html,
        raw_mime=_clean(raw.decode("utf-8", errors="replace")),
        envelope_to=envelope_to,
        envelope_from=envelope_from,
    )


_CONTENT_HEADERS = {"content-type", "content-transfer-encoding", "mime-version"}


def _default_raw_mime(headers_text: str, text: str) -> str:
    """A readable, re-parsable message for default mode: the original headers (minus the
    content ones, which described the original encoding) and the decoded text as UTF-8."""
    lines: list[str] = []
    keep = False
    for line in headers_text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        if line[:1] in (" ", "\t"):
            if keep:
                lines.append(line)
            continue
        name = line.split(":", 1)[0].strip().lower()
        keep = name not in _CONTENT_HEADERS
        if keep:
            lines.append(line)
    lines += [
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return "\r\n".join(lines) + "\r\n\r\n" + text


def _from_default(
    fields: dict[str, FormField],
    charsets: dict[str, str],
    *,
    envelope_to: tuple[str, ...],
    envelope_from: str,
) -> InboundEmail:
    headers_text = _field_text(fields, "headers", charsets)
    message = BytesParser(policy=policy.compat32).parsebytes(
        headers_text.encode("utf-8", errors="replace") + b"\r\n\r\n", headersonly=True
    )
    text = _field_text(fields, "text", charsets)
    html = _field_text(fields, "html", charsets)
    parsed = _common(
        message,
        mode="default",
        text=text,
        html=html,
        raw_mime=_default_raw_mime(headers_text, text or html_to_text(html=html)),
        envelope_to=envelope_to,
        envelope_from=envelope_from,
    )
    # Default mode pre-decodes the subject and addresses; prefer them when headers lack them.
    subject = parsed.subject or _field_text(fields, "subject", charsets).strip()
    from_email = (
        parsed.from_email or (_addresses([_field_text(fields, "from", charsets)]) or ("",))[0]
    )
    to = parsed.to or _addresses([_field_text(fields, "to", charsets)])
    cc = parsed.cc or _addresses([_field_text(fields, "cc", charsets)])
    return replace(parsed, subject=subject, from_email=from_email, to=to, cc=cc)


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"}
    _SKIP = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.segments: list[tuple[str, int]] = []
        self._skip = 0
        self._quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        if tag in self._BLOCK or tag == "blockquote":
            self.segments.append(("\n", self._quote))
        if tag == "blockquote":
            self._quote += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        if tag == "blockquote" and self._quote:
            self._quote -= 1
        if tag in self._BLOCK or tag == "blockquote":
            self.segments.append(("\n", self._quote))

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.segments.append((data, self._quote))

    def text(self) -> str:
        """Lines inside ``<blockquote>`` come out ``>``-quoted, like plain-text replies."""
        lines: list[str] = []
        current: list[str] = []
        quoted = False
        for data, depth in self.segments:
            pieces = data.split("\n")
            for index, piece in enumerate(pieces):
                if index:
                    lines.append(("> " if quoted else "") + "".join(current).strip())
                    current, quoted = [], False
                if piece.strip() and not "".join(current).strip():
                    quoted = depth > 0
                current.append(piece)
        lines.append(("> " if quoted else "") + "".join(current).strip())
        return "\n".join(lines)


def html_to_text(*, html: str) -> str:
    """Plain text of an HTML body; ``<blockquote>`` content comes out ``>``-quoted."""
    if not html:
        return ""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except (AssertionError, ValueError):
        return html_lib.unescape(re.sub(r"<[^>]+>", " ", html))
    text = re.sub(r"[ \t\xa0]+", " ", extractor.text().replace("\xa0", " "))
    text = re.sub(r" ?\n ?", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
