"""Seed (or refresh) the demo tenant that ``make run`` shows: an AE, a dozen leads whose
addresses tell the SendGrid emulator how each one engages, and an active campaign with
branches on opens, clicks, replies and timeouts. Idempotent: run it again and it reuses
what exists, enrolling only leads not yet live in the campaign."""

import datetime
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from campaigns.models import Campaign, Lead
from campaigns.services import campaigns as campaign_services
from campaigns.services.enrollment import enrollments_create
from campaigns.services.leads import lead_bulk_create
from messaging.emulator.webhooks import Signer
from messaging.models import SenderIdentity
from messaging.services.identities import sender_identity_create
from outreach.common.errors import ApplicationError
from outreach.tenancy.controls import tenant_controls_update
from outreach.tenancy.models import Tenant, TenantAPIKey
from outreach.tenancy.services import tenant_create, tenant_webhook_urls

DEMO_SLUG = "demo"
PLAN_FILE = Path(__file__).resolve().parents[2] / "demo_plan.json"
SMS_PLAN_FILE = Path(__file__).resolve().parents[2] / "demo_sms_plan.json"
DEMO_SMS_NUMBER = "+15550001000"
# Texted by the SMS campaign. The number's last two digits script the Twilio emulator:
# 10 replies "Yes, tell me more", 11 texts STOP back.
DEMO_SMS_LEADS = [
    ("Hedy", "Lamarr", "Frequency Hopping Co", "hedy", "+15557770110"),
    ("Claude", "Shannon", "Information Theory Ltd", "claude", "+15557770111"),
]
# Real zones, one of which is in the daytime whenever the demo starts: SMS keeps quiet hours
# (08:00-21:00 in the lead's zone), and the demo should show a text at once.
_DAYTIME_ZONES = (
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Auckland",
    "Asia/Tokyo",
    "Asia/Kolkata",
)

# The local part's +tags script the emulator: +open, +click, +reply, +ooo, +bounce, …
DEMO_LEADS = [
    ("Ada", "Lovelace", "Analytical Engines", "ada+open+reply"),
    ("Grace", "Hopper", "Compilers Inc", "grace+open+click"),
    ("Alan", "Turing", "Bletchley Ltd", "alan+noopen"),
    ("Katherine", "Johnson", "Orbital Co", "katherine+open"),
    ("Edsger", "Dijkstra", "Shortest Path BV", "edsger+ooo"),
    ("Barbara", "Liskov", "Substitution LLC", "barbara+bounce"),
    ("Donald", "Knuth", "Typesetting Press", "donald+machineopen"),
    ("Margaret", "Hamilton", "Apollo Software", "margaret+open+unsub"),
    ("Linus", "Torvalds", "Kernel Works", "linus+spam"),
    ("Frances", "Allen", "Optimizers Group", "frances+reply"),
    ("Tim", "Berners-Lee", "Hypertext Org", "tim"),
    ("Radia", "Perlman", "Spanning Trees", "radia"),
]


class Command(BaseCommand):
    help = "Create or refresh the demo tenant, its campaign and leads, and the emulator's routes."

    def handle(self, *args, **options) -> None:
        var = Path(settings.BASE_DIR) / "var"
        var.mkdir(exist_ok=True)
        signer = Signer.from_setting(str(var / "emulator-signing-key.pem"))
        try:
            # Each step is its own (durable) service transaction; a re-run picks up where a
            # failed one stopped.
            tenant, api_key = self._tenant(signer.public_key)
            identity = self._identity(tenant)
            self._leads(tenant)
            campaign = self._campaign(tenant, identity)
            result = enrollments_create(
                tenant_id=tenant.pk,
                campaign_id=campaign.pk,
                emails=[f"{row[3]}@prospects.example.com" for row in DEMO_LEADS],
            )
            sms_campaign = self._sms_campaign(tenant, identity)
            enrollments_create(
                tenant_id=tenant.pk,
                campaign_id=sms_campaign.pk,
                emails=[f"{row[3]}@prospects.example.com" for row in DEMO_SMS_LEADS],
            )
        except ApplicationError as exc:
            raise CommandError(f"seed_demo: {exc.message}") from exc
        self._admin_user()
        urls = tenant_webhook_urls(tenant=tenant)
        (var / "emulator-tenants.json").write_text(
            json.dumps(
                [
                    {
                        "tenant": str(tenant.public_id),
                        "events_url": urls["events"],
                        "inbound_url": urls["inbound"],
                        "inbound_secret": tenant.inbound_secret,
                        "sms_url": urls["sms_inbound"],
                        "sms_numbers": [DEMO_SMS_NUMBER],
                    }
                ],
                indent=2,
            )
        )
        base = settings.PUBLIC_BASE_URL
        summary = {
            "tenant": {"id": tenant.pk, "slug": tenant.slug, "public_id": str(tenant.public_id)},
            "api_key": api_key,
            "campaign_id": campaign.pk,
            "sms_campaign_id": sms_campaign.pk,
            "enrolled_now": len(result.enrolled),
            "admin": f"{base}/admin/ (user admin, password {DEMO_ADMIN_PASSWORD})",
            "api_docs": f"{base}/api/docs/",
            "emulator_mail": "http://127.0.0.1:8025/",
            "webhooks": urls,
        }
        self.stdout.write(json.dumps(summary, indent=2))

    def _tenant(self, public_key: str) -> tuple[Tenant, str]:
        tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
        if tenant is None:
            created = tenant_create(
                name="Demo Co", slug=DEMO_SLUG, webhook_public_key=public_key, api_key_name="demo"
            )
            return created.tenant, created.key
        if tenant.webhook_public_key != public_key:
            tenant.webhook_public_key = public_key
            tenant.save(update_fields=["webhook_public_key", "updated_at"])
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
        _, key = TenantAPIKey.objects.create_key(name=f"demo-{stamp}", tenant=tenant)
        return tenant, key

    def _identity(self, tenant: Tenant) -> SenderIdentity:
        if not tenant.sms_enabled:
            tenant_controls_update(
                tenant_id=tenant.pk,
                changes={"sms_enabled": True},
                actor="seed_demo",
                reason="the demo shows the SMS channel",
            )
        identity = (
            SenderIdentity.objects.for_tenant(tenant.pk)
            .filter(from_email="ae@demo-outreach.example.com")
            .first()
        )
        if identity is not None:
            if identity.sms_from_number != DEMO_SMS_NUMBER:
                identity.sms_from_number = DEMO_SMS_NUMBER
                identity.save(update_fields=["sms_from_number", "updated_at"])
            return identity
        return sender_identity_create(
            tenant_id=tenant.pk,
            data={
                "from_name": "Dana Demo",
                "from_email": "ae@demo-outreach.example.com",
                "reply_to": "ae@demo-outreach.example.com",
                "signature": "Dana Demo\nAccount Executive, Demo Co",
                "owner_name": "Dana Demo",
                "daily_cap": 500,
                "hourly_cap": 200,
                # Open around the clock so the demo sends whenever it is started.
                "window_days": [0, 1, 2, 3, 4, 5, 6],
                "window_start": "00:00",
                "window_end": "23:59",
                "timezone": "UTC",
                "sms_from_number": DEMO_SMS_NUMBER,
            },
        )

    def _leads(self, tenant: Tenant) -> None:
        rows = [
            (
                index,
                {
                    "email": f"{local}@prospects.example.com",
                    "first_name": first,
                    "last_name": last,
                    "company": company,
                    "timezone": "UTC",
                },
            )
            for index, (first, last, company, local) in enumerate(DEMO_LEADS)
        ]
        lead_bulk_create(tenant_id=tenant.pk, rows=rows)
        now = datetime.datetime.now(datetime.UTC)
        zone = next(
            (z for z in _DAYTIME_ZONES if 9 <= now.astimezone(ZoneInfo(z)).hour < 20),
            "UTC",
        )
        lead_bulk_create(
            tenant_id=tenant.pk,
            rows=[
                (
                    index,
                    {
                        "email": f"{local}@prospects.example.com",
                        "first_name": first,
                        "last_name": last,
                        "company": company,
                        "timezone": zone,
                        "phone": phone,
                    },
                )
                for index, (first, last, company, local, phone) in enumerate(DEMO_SMS_LEADS)
            ],
        )
        # Consent recorded with its source and time, as a form would (no consent, no text).
        Lead.objects.for_tenant(tenant.pk).filter(
            phone__in=[row[4] for row in DEMO_SMS_LEADS], sms_consent=Lead.SmsConsent.UNKNOWN
        ).update(
            sms_consent=Lead.SmsConsent.GRANTED,
            sms_consent_source="demo signup form",
            sms_consent_at=now,
        )

    def _sms_campaign(self, tenant: Tenant, identity: SenderIdentity) -> Campaign:
        plan = json.loads(SMS_PLAN_FILE.read_text())
        campaign = Campaign.objects.for_tenant(tenant.pk).filter(name="Demo texts").first()
        if campaign is None:
            campaign = campaign_services.campaign_create(
                tenant_id=tenant.pk, name="Demo texts", sender_identity_id=identity.pk
            )
        added = campaign_services.campaign_version_add(
            tenant_id=tenant.pk, campaign_id=campaign.pk, plan=plan
        )
        campaign_services.campaign_publish(
            tenant_id=tenant.pk, campaign_id=campaign.pk, version=added.version.version
        )
        campaign.refresh_from_db()
        if campaign.status != Campaign.Status.ACTIVE:
            campaign_services.campaign_status_set(
                tenant_id=tenant.pk, campaign_id=campaign.pk, action="activate"
            )
        campaign.refresh_from_db()
        return campaign

    def _campaign(self, tenant: Tenant, identity: SenderIdentity) -> Campaign:
        plan = json.loads(PLAN_FILE.read_text())
        campaign = Campaign.objects.for_tenant(tenant.pk).filter(name="Demo sequence").first()
        if campaign is None:
            campaign = campaign_services.campaign_create(
                tenant_id=tenant.pk, name="Demo sequence", sender_identity_id=identity.pk
            )
        added = campaign_services.campaign_version_add(
            tenant_id=tenant.pk, campaign_id=campaign.pk, plan=plan
        )
        campaign_services.campaign_publish(
            tenant_id=tenant.pk, campaign_id=campaign.pk, version=added.version.version
        )
        campaign.refresh_from_db()
        if campaign.status != Campaign.Status.ACTIVE:
            campaign_services.campaign_status_set(
                tenant_id=tenant.pk, campaign_id=campaign.pk, action="activate"
            )
        campaign.refresh_from_db()
        return campaign

    def _admin_user(self) -> None:
        if not settings.DEBUG:
            return
        user_model = get_user_model()
        user = user_model.objects.filter(username="admin").first()
        if user is None:
            user_model.objects.create_superuser(
                "admin", "admin@demo-outreach.example.com", DEMO_ADMIN_PASSWORD
            )


# Development only (created when DEBUG is on): the admin login of the local demo.
DEMO_ADMIN_PASSWORD = "outreach-demo"  # noqa: S105
