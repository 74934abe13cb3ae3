"""``manage.py webhook_receipts_reprocess --since 2026-11-01 [--until ...] [--tenant demo]``

Re-normalise the stored webhook receipts (Event Webhook and Inbound Parse) received in a
time range: after a normalisation fix, for receipts that failed too often, or for inbound
mail stored while a tenant's inbound phase was off. Idempotent: events are deduplicated on
their provider ids and a reply is recorded once, so a second run adds nothing. Receipts
whose body an erasure removed are skipped; inbound mail of a tenant whose inbound phase is
still off stays stored and is counted as held, not processed. Progress bar on stderr, one
summary line on stdout.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from messaging.models import WebhookReceipt
from messaging.services.erasure import RECEIPT_ERASED
from messaging.services.receipts import webhook_receipt_reprocess
from outreach.common.commands import moment_parse, tenant_resolve


class Command(BaseCommand):
    help = "Process the webhook receipts of a time range again (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="received from (date or ISO time, UTC)")
        parser.add_argument("--until", help="received before (default: now)")
        parser.add_argument("--tenant", help="slug or id (default: every tenant)")
        parser.add_argument(
            "--kind",
            choices=["events", "inbound", "sms_status", "sms_inbound", "all"],
            default="all",
            help="default: all",
        )
        parser.add_argument(
            "--unprocessed-only", action="store_true", help="only receipts never processed"
        )
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        since = moment_parse(options["since"], option="--since")
        until = (
            moment_parse(options["until"], option="--until") if options["until"] else timezone.now()
        )
        if since >= until:
            raise CommandError(f"--since ({since:%Y-%m-%d %H:%M}) must be before --until")
        receipts = WebhookReceipt.objects.filter(received_at__gte=since, received_at__lt=until)
        tenant = tenant_resolve(options["tenant"]) if options["tenant"] else None
        if tenant is not None:
            receipts = receipts.filter(tenant_id=tenant.pk)
        if options["kind"] != "all":
            receipts = receipts.filter(kind=options["kind"])
        if options["unprocessed_only"]:
            receipts = receipts.filter(processed_at__isnull=True)
        erased = receipts.filter(last_error=RECEIPT_ERASED).count()
        receipts = receipts.exclude(last_error=RECEIPT_ERASED)
        ids = list(receipts.order_by("received_at", "id").values_list("id", "tenant_id"))
        scope = f"{len(ids)} receipts received {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
        skipped = f"; {erased} erased on request skipped" if erased else ""
        if options["dry_run"]:
            self.stdout.write(f"dry run: would re-process {scope}{skipped}")
            return
        outcomes = dict.fromkeys(("processed", "held", "erased", "busy", "not_found", "failed"), 0)
        with tqdm(
            total=len(ids),
            unit="receipt",
            disable=options["no_progress"] or None,
            file=self.stderr._out,
        ) as bar:
            for receipt_id, tenant_id in ids:
                try:
                    outcome = webhook_receipt_reprocess(receipt_id=receipt_id, tenant_id=tenant_id)
                except Exception as exc:  # recorded on the receipt; the run goes on
                    outcome = "failed"
                    self.stderr.write(f"receipt {receipt_id}: {type(exc).__name__}: {exc}")
                outcomes[outcome] += 1
                bar.update(1)
        erased += outcomes["erased"]  # erased while this run went on
        skipped = f"; {erased} erased on request skipped" if erased else ""
        held = (
            f"{outcomes['held']} held (inbound is off for its tenant), " if outcomes["held"] else ""
        )
        self.stdout.write(
            f"re-processed {outcomes['processed']} of {scope}; {outcomes['busy']} busy "
            f"(another worker had them), {held}{outcomes['failed']} failed{skipped}"
        )
        if outcomes["failed"]:
            raise CommandError(f"{outcomes['failed']} receipts failed: see their last_error")
