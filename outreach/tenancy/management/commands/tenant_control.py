"""``manage.py tenant_control --tenant demo --pause --reason "customer asked"``

Pause or resume a tenant, turn its feature flags on or off, set its quotas, all audited with
the reason and the operator (``--actor``, default the OS user). Prints one line.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outreach.common.commands import tenant_resolve
from outreach.common.errors import ApplicationError
from outreach.tenancy.audit import actor_for_cli
from outreach.tenancy.controls import QUOTA_COLUMNS, tenant_controls_update
from outreach.tenancy.flags import FLAG_FIELDS, flag_parse
from outreach.tenancy.models import Tenant

_ON = {"on", "true", "yes", "1"}
_OFF = {"off", "false", "no", "0"}


def _pair(value: str, option: str) -> tuple[str, str]:
    name, sep, setting = value.partition("=")
    if not sep or not name.strip() or not setting.strip():
        raise CommandError(f"{option}: expected NAME=VALUE, got {value!r}")
    return name.strip(), setting.strip().lower()


class Command(BaseCommand):
    help = "Change a tenant's status, feature flags or quotas (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="slug or id")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--pause", action="store_true", help="hold every send")
        state.add_argument("--resume", action="store_true", help="send again")
        parser.add_argument(
            "--flag",
            action="append",
            default=[],
            metavar="NAME=on|off",
            help=f"feature flag ({', '.join(flag.value for flag in FLAG_FIELDS)}); repeatable",
        )
        parser.add_argument(
            "--quota",
            action="append",
            default=[],
            metavar="NAME=N|none",
            help=f"quota ({', '.join(QUOTA_COLUMNS)}); 'none' lifts it; repeatable",
        )
        parser.add_argument("--reason", required=True, help="why (kept in the audit log)")
        parser.add_argument("--actor", help="who you are (default: the OS user)")
        parser.add_argument("--dry-run", action="store_true", help="show, change nothing")

    def handle(self, *args, **options) -> None:
        tenant = tenant_resolve(options["tenant"])
        changes = self._changes(options)
        if not changes:
            raise CommandError("nothing to change: give --pause, --resume, --flag or --quota")
        if not options["reason"].strip():
            raise CommandError("--reason: say why (the next operator reads it)")
        current = {key: getattr(tenant, key) for key in changes}
        differs = {key: value for key, value in changes.items() if current[key] != value}
        summary = ", ".join(f"{key} {current[key]} → {value}" for key, value in differs.items())
        try:
            # A dry run goes through the same checks (and rolls back), so it refuses
            # exactly what the real run would.
            tenant_controls_update(
                tenant_id=tenant.pk,
                changes=changes,
                actor=actor_for_cli(actor=options["actor"]),
                reason=options["reason"],
                dry_run=options["dry_run"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        if options["dry_run"]:
            self.stdout.write(f"dry run: tenant {tenant.slug}: {summary or 'nothing would change'}")
            return
        self.stdout.write(f"tenant {tenant.slug}: {summary or 'already so, nothing changed'}")

    def _changes(self, options: dict) -> dict:
        changes: dict = {}
        if options["pause"]:
            changes["status"] = Tenant.Status.PAUSED
        if options["resume"]:
            changes["status"] = Tenant.Status.ACTIVE
        for value in options["flag"]:
            name, setting = _pair(value, "--flag")
            try:
                flag = flag_parse(name)
            except ApplicationError as exc:
                raise CommandError(f"--flag: {exc.message}") from None
            if setting not in _ON | _OFF:
                raise CommandError(f"--flag {name}: expected on or off, got {setting!r}")
            changes[FLAG_FIELDS[flag]] = setting in _ON
        for value in options["quota"]:
            name, setting = _pair(value, "--quota")
            if name not in QUOTA_COLUMNS:
                raise CommandError(f"--quota: unknown quota {name!r} ({', '.join(QUOTA_COLUMNS)})")
            if setting == "none":
                changes[name] = None
            elif setting.isdigit():
                changes[name] = int(setting)
            else:
                raise CommandError(f"--quota {name}: expected a whole number or none")
        return changes
