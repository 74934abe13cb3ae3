"""``manage.py sending_kill_switch engage --reason "provider incident" [--channel email]``

The platform-wide stop for sending (every tenant). ``engage`` holds every due send of the
channel from the next batch on (within ``CONTROLS_CACHE_SECONDS`` in every worker);
``release`` makes the held sends due at once; ``status`` shows the switches. Audited.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outreach.common.errors import ApplicationError
from outreach.tenancy.audit import actor_for_cli
from outreach.tenancy.controls import kill_switch_set
from outreach.tenancy.models import KillSwitch


class Command(BaseCommand):
    help = "Engage, release or show the platform-wide sending kill switch (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["engage", "release", "status"])
        parser.add_argument(
            "--channel", default="all", choices=KillSwitch.Channel.values, help="default: all"
        )
        parser.add_argument("--reason", default="", help="why (required to engage or release)")
        parser.add_argument("--actor", help="who you are (default: the OS user)")

    def handle(self, *args, **options) -> None:
        if options["action"] == "status":
            engaged = dict(KillSwitch.objects.filter(engaged=True).values_list("channel", "reason"))
            states = [
                f"{channel}: "
                + (f"ENGAGED ({engaged[channel]})" if channel in engaged else "released")
                for channel in KillSwitch.Channel.values
            ]
            self.stdout.write("; ".join(states))
            return
        engage = options["action"] == "engage"
        try:
            switch = kill_switch_set(
                channel=options["channel"],
                engaged=engage,
                actor=actor_for_cli(actor=options["actor"]),
                reason=options["reason"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        state = "ENGAGED: sends are held" if switch.engaged else "released: sends go out"
        self.stdout.write(f"kill switch {switch.channel}: {state}")
