"""Print the demo campaign's progress every few seconds: what was sent, what came back, and
where each lead stands. The ``demo`` process of the Procfile, so ``make run`` shows the
campaign running without opening a browser."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Sum
from django.utils import timezone

from analytics.models import FillState, HourlyRollup
from analytics.views import share_url_build
from campaigns.models import Campaign, Enrollment
from messaging.models import InboundMessage, Message, MessageEvent
from outreach.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Show the demo campaign's sends, events and enrollment states as they change."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", default="demo", help="tenant slug (default: demo)")
        parser.add_argument("--every", type=float, default=10.0, help="seconds between lines")
        parser.add_argument("--once", action="store_true", help="print one line and exit")

    def handle(self, *args, tenant: str, every: float, once: bool, **options) -> None:
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"demo_watch: no tenant with slug {tenant!r} (run seed_demo)")
        self.stdout.write(
            f"[demo] dashboard (fills as the campaign runs): "
            f"{share_url_build(tenant=found, base_url=settings.PUBLIC_BASE_URL)}"
        )
        while True:
            self.stdout.write(self._line(found.pk))
            self.stdout.flush()
            if once:
                return
            time.sleep(every)

    def _line(self, tenant_id: int) -> str:
        campaigns = Campaign.objects.for_tenant(tenant_id).count()
        states = dict(
            Enrollment.objects.for_tenant(tenant_id)
            .values_list("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        steps = dict(
            Enrollment.objects.for_tenant(tenant_id)
            .filter(state__in=["active", "paused"])
            .values_list("current_step")
            .annotate(n=Count("id"))
            .values_list("current_step", "n")
        )
        messages = dict(
            Message.objects.for_tenant(tenant_id)
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        events = dict(
            MessageEvent.objects.filter(tenant_id=tenant_id)
            .values_list("event_type")
            .annotate(n=Count("id"))
            .values_list("event_type", "n")
        )
        replies = InboundMessage.objects.for_tenant(tenant_id).count()
        rolled = HourlyRollup.objects.filter(tenant_id=tenant_id).aggregate(
            sent=Sum("sent"),
            opened=Sum("unique_opens"),
            replied=Sum("unique_replies"),
            texted=Sum("sms_sent"),
            text_replies=Sum("sms_replies"),
        )
        fill = FillState.objects.filter(name="hourly").first()
        lag = (
            f"{(timezone.now() - fill.filled_through).total_seconds():.0f}s behind"
            if fill and fill.filled_through
            else "not rolled up yet"
        )

        def fmt(data: dict) -> str:
            return " ".join(f"{k}={v}" for k, v in sorted(data.items())) or "-"

        texts = dict(
            Message.objects.for_tenant(tenant_id)
            .filter(channel=Message.Channel.SMS)
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        texts_in = [
            f"{event.raw.get('From', '?')}: {event.raw.get('Body', '')!r}"
            for event in MessageEvent.objects.filter(
                tenant_id=tenant_id,
                event_type__in=["sms_reply", "sms_stop", "sms_start", "sms_help"],
            ).order_by("id")[:5]
        ]
        return (
            f"[demo] campaigns={campaigns} | enrollments: {fmt(states)} | live at step: "
            f"{fmt(steps)} | messages: {fmt(messages)} | events: {fmt(events)} | "
            f"inbound replies={replies} | texts: {fmt(texts)} | texts in: "
            f"{', '.join(texts_in) or '-'} | dashboard: sent={rolled['sent'] or 0} "
            f"opened={rolled['opened'] or 0} replied={rolled['replied'] or 0} "
            f"texted={rolled['texted'] or 0} text_replies={rolled['text_replies'] or 0} ({lag})"
        )
