"""``manage.py messages_reconcile [--tenant demo] [--older-than-minutes 5] [--dry-run]``

Settle messages whose send outcome is unknown (``sending`` after a crash or a timeout, or
``needs_review``) from the webhook events that prove SendGrid had them; see
``messaging.services.review.message_reconcile``. Never sends anything. Idempotent: a settled
message is skipped. Progress bar on stderr, one summary line on stdout.
"""

import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from messaging.selectors import (
    message_orphan_events_find,
    messages_needs_review,
    messages_stuck_sending,
)
from messaging.services.review import message_reconcile
from outreach.common.commands import tenant_resolve
from outreach.tenancy.audit import actor_for_cli

BATCH = 500


class Command(BaseCommand):
    help = "Reconcile sending / needs_review messages from webhook events (never resends)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="slug or id (default: every tenant)")
        parser.add_argument(
            "--older-than-minutes",
            type=int,
            default=5,
            help="only messages sending for longer than this (default 5)",
        )
        parser.add_argument("--actor", help="who you are, for the audit log (default: OS user)")
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        if options["older_than_minutes"] < 0:
            raise CommandError("--older-than-minutes must be 0 or more")
        tenant_id = tenant_resolve(options["tenant"]).pk if options["tenant"] else None
        older = datetime.timedelta(minutes=options["older_than_minutes"])
        ids = sorted(
            set(
                messages_stuck_sending(tenant_id=tenant_id, older_than=older).values_list(
                    "tenant_id", "id"
                )
            )
            | set(messages_needs_review(tenant_id=tenant_id).values_list("tenant_id", "id"))
        )
        outcomes = {"reconciled": 0, "no_evidence": 0, "settled": 0}
        actor = actor_for_cli(actor=options["actor"])
        with tqdm(
            total=len(ids),
            unit="message",
            disable=options["no_progress"] or None,
            file=self.stderr._out,
        ) as bar:
            for start in range(0, len(ids), BATCH):
                batch = ids[start : start + BATCH]
                # The orphan events of a whole batch in one scan (per tenant), not one each.
                orphans: dict[int, list] = {}
                for owner in {owner for owner, _ in batch}:
                    orphans |= message_orphan_events_find(
                        tenant_id=owner, message_ids=[pk for t, pk in batch if t == owner]
                    )
                for owner, message_id in batch:
                    outcome = message_reconcile(
                        tenant_id=owner,
                        message_id=message_id,
                        dry_run=options["dry_run"],
                        actor=actor,
                        orphans=orphans.get(message_id, []),
                    )
                    outcomes[outcome] += 1
                    bar.update(1)
        prefix = "dry run: would reconcile" if options["dry_run"] else "reconciled"
        self.stdout.write(
            f"{prefix} {outcomes['reconciled']} of {len(ids)} messages with an unknown outcome; "
            f"{outcomes['no_evidence']} have no webhook event yet (left for review), "
            f"{outcomes['settled']} settled meanwhile"
        )
