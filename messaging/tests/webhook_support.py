"""What Event Webhook tests share: a real P-256 key pair, signed posts, messages, events."""

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from messaging.models import Message
from outreach.tenancy.models import Tenant
from outreach.testing.factories import LeadFactory, SenderIdentityFactory


@dataclass
class SigningKey:
    private: ec.EllipticCurvePrivateKey
    public_b64: str

    def sign(self, timestamp: str, body: bytes) -> str:
        der = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()


def signing_key_new() -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(private, base64.b64encode(der).decode())


def tenant_with_key(tenant: Tenant) -> SigningKey:
    key = signing_key_new()
    tenant.webhook_public_key = key.public_b64
    tenant.save(update_fields=["webhook_public_key"])
    return key


def events_url(tenant: Tenant) -> str:
    return f"/webhooks/sendgrid/events/{tenant.public_id}/"


def signed_headers(key: SigningKey, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    return {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": key.sign(timestamp, body),
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
    }


def post_signed(client, tenant: Tenant, key: SigningKey, events: Any, **extra):
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return client.post(
        events_url(tenant),
        data=body,
        content_type="application/json",
        **signed_headers(key, body),
        **extra,
    )


def message_make(tenant: Tenant, **fields) -> Message:
    identity = fields.pop("sender_identity", None) or SenderIdentityFactory(tenant=tenant)
    lead = fields.pop("lead", None) or LeadFactory(tenant=tenant)
    defaults = {
        "tenant": tenant,
        "sender_identity": identity,
        "lead": lead,
        "to_email": lead.email,
        "subject": "Quick question",
        "status": Message.Status.ACCEPTED,
        "status_rank": 10,
        "provider_message_id": uuid.uuid4().hex[:22],
    }
    defaults.update(fields)
    return Message.objects.create(**defaults)


CAMPAIGN_PLAN = {
    "name": "Webhook tests",
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [{"name": "a", "subject": "Hi", "text": "Hello"}],
            "on": {"open": "done"},
        },
        "done": {"type": "end", "outcome": "opened"},
    },
}


def campaign_message_make(tenant: Tenant, **fields) -> Message:
    """``message_make`` for a message an enrollment sent (step ``intro``, entry 1)."""
    from campaigns.models import Enrollment
    from outreach.testing.factories import campaign_with_plan

    identity = SenderIdentityFactory(tenant=tenant)
    lead = fields.pop("lead", None) or LeadFactory(tenant=tenant)
    campaign = campaign_with_plan(tenant=tenant, plan=CAMPAIGN_PLAN, identity=identity)
    enrollment = Enrollment.objects.create(
        tenant=tenant,
        campaign=campaign,
        lead=lead,
        plan_version=campaign.current_version,
        sender_identity=identity,
        current_step="intro",
        step_seq=1,
    )
    defaults = {
        "sender_identity": identity,
        "enrollment": enrollment,
        "campaign": campaign,
        "plan_version": campaign.current_version,
        "step": "intro",
        "step_seq": 1,
    }
    defaults.update(fields)
    return message_make(tenant, lead=lead, **defaults)


_counter = iter(range(10**9))


def sg_event(message: Message | None, event: str, *, at: float | None = None, **fields) -> dict:
    """A SendGrid event as the Event Webhook posts it (custom args merged at the top level)."""
    n = next(_counter)
    body: dict[str, Any] = {
        "event": event,
        "timestamp": int(at if at is not None else time.time()),
        "sg_event_id": base64.urlsafe_b64encode(f"{event}-{n}-{uuid.uuid4()}".encode())
        .decode()
        .rstrip("="),
    }
    if message is not None:
        body.update(
            {
                "email": message.to_email,
                "sg_message_id": f"{message.provider_message_id}.filterdrecv-1-{n}.0",
                "smtp-id": f"<{message.provider_message_id}@ismtpd0001p1iad1.sendgrid.net>",
                "outreach_message_id": str(message.public_id),
            }
        )
    body.update(fields)
    return body
