"""What Inbound Parse tests share: fixture mail, SendGrid-shaped posts, our sent messages."""

import json
import os
import uuid
from email import message_from_bytes, policy
from pathlib import Path

from messaging.models import Message
from outreach.tenancy.models import Tenant
from outreach.testing.factories import LeadFactory, SenderIdentityFactory

FIXTURES = Path(__file__).parent / "fixtures" / "inbound"

# The reply token each fixture was sent to (its To: reply+<token>@reply.acme-sales.example).
TOKENS = {
    "gmail_reply": "k7Qm2Zp9Lx4Rt1Vb",
    "outlook_reply": "Hc3Nw8Yq5Ej0Ua6S",
    "apple_mail_reply": "Pd2Fg7Jk4Ls9Mn1Q",
    "exchange_ooo": "Wr5Tz8Xc1Vb4Nm7K",
    "gmail_vacation": "Ay6Bs3Dc9Ef2Gh5J",
    "x_autoreply": "Qz1Wx4Ec7Rv0Tb3Y",
    "german_ooo": "Dk8Jh5Gf2Sa9Lp6O",
    "french_ooo": "Fr4Ab7Cd0Ef3Gh6I",
    "spanish_ooo": "Es1Ij4Kl7Mn0Op3Q",
    "dsn_bounce": "Bn9Vc6Xz3Lk0Jh7G",
    "human_quoting_ooo": "Hq2Wo5Oo8Ff1Ii4C",
    "unknown_reply": "Un0Kn3Ow5Nt7Ok9N",
}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def multipart_encode(fields: dict[str, bytes | str]) -> tuple[bytes, str]:
    """``multipart/form-data`` as SendGrid posts it (CRLF, one part per field)."""
    boundary = "xYzZY" + os.urandom(8).hex()
    parts = []
    for name, value in fields.items():
        data = value if isinstance(value, bytes) else value.encode("utf-8")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def _envelope_of(raw: bytes) -> str:
    parsed = message_from_bytes(raw, policy=policy.default)
    to = [a.addr_spec for a in parsed["To"].addresses] if parsed["To"] else []
    sender = parsed["From"].addresses[0].addr_spec if parsed["From"] else ""
    if parsed.get("Return-Path", "").strip() == "<>":
        sender = ""
    return json.dumps({"to": to, "from": sender})


def raw_mode_post(raw: bytes, *, envelope: str | None = None) -> tuple[bytes, str]:
    """The raw-mode form: the whole MIME message in ``email`` plus SendGrid's side fields."""
    parsed = message_from_bytes(raw, policy=policy.default)
    return multipart_encode(
        {
            "headers": b"",  # never sent in raw mode; an empty field must not confuse us
            "dkim": "{@northwind.example : pass}",
            "email": raw,
            "to": str(parsed.get("To", "")),
            "from": str(parsed.get("From", "")),
            "subject": str(parsed.get("Subject", "")),
            "sender_ip": "209.85.167.41",
            "envelope": envelope if envelope is not None else _envelope_of(raw),
            "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}),
            "SPF": "pass",
        }
    )


def default_mode_post(raw: bytes, *, text_charset: str = "utf-8") -> tuple[bytes, str]:
    """The default-mode form SendGrid builds from ``raw``: the header block, decoded bodies
    re-encoded in ``text_charset`` (declared in ``charsets``), and the envelope."""
    parsed = message_from_bytes(raw, policy=policy.default)
    header_block = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    text = text_part.get_content() if text_part else ""
    html = html_part.get_content() if html_part else ""
    fields: dict[str, bytes | str] = {
        "headers": header_block,
        "dkim": "{@northwind.example : pass}",
        "to": str(parsed.get("To", "")),
        "from": str(parsed.get("From", "")),
        "subject": str(parsed.get("Subject", "")),
        "text": text.encode(text_charset, errors="replace"),
        "sender_ip": "209.85.167.41",
        "envelope": _envelope_of(raw),
        "attachments": "0",
        "charsets": json.dumps(
            {
                "to": "UTF-8",
                "html": text_charset,
                "subject": "UTF-8",
                "from": "UTF-8",
                "text": text_charset,
            }
        ),
        "SPF": "pass",
    }
    if html:
        fields["html"] = html.encode(text_charset, errors="replace")
    return multipart_encode(fields)


def inbound_url(tenant: Tenant, secret: str | None = None) -> str:
    secret = tenant.inbound_secret if secret is None else secret
    return f"/webhooks/sendgrid/inbound/{tenant.public_id}/{secret}/"


def sent_message(tenant: Tenant, **fields) -> Message:
    """One message of ours, as the send path leaves it (accepted, with its own ids)."""
    identity = fields.pop("sender_identity", None) or SenderIdentityFactory(tenant=tenant)
    lead = fields.pop("lead", None) or LeadFactory(tenant=tenant)
    public_id = uuid.uuid4()
    defaults = {
        "tenant": tenant,
        "public_id": public_id,
        "sender_identity": identity,
        "lead": lead,
        "to_email": lead.email,
        "subject": "Quick question",
        "status": Message.Status.DELIVERED,
        "status_rank": 40,
        "rfc_message_id": f"<{public_id}@acme-sales.example>",
        "smtp_id": f"<{uuid.uuid4().hex[:22]}@ismtpd0039p1iad1.sendgrid.net>",
        "provider_message_id": uuid.uuid4().hex[:22],
    }
    defaults.update(fields)
    return Message.objects.create(**defaults)
