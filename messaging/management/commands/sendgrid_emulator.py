"""``manage.py sendgrid_emulator --port 8025``: the local SendGrid the product uses by default.

Every option also reads ``SENDGRID_EMULATOR_<OPTION>`` from the environment; ``--help`` lists
them. The emulator itself lives in ``messaging.emulator`` and does not need Django.
"""

from django.core.management.base import BaseCommand, CommandError

from messaging.emulator.app import emulator_run
from messaging.emulator.config import EmulatorConfig, add_arguments, config_from_options


class Command(BaseCommand):
    help = "Run the local SendGrid-compatible emulator (mail send, webhooks, inbound replies)."

    def add_arguments(self, parser) -> None:
        add_arguments(parser)

    def handle(self, *args, **options) -> None:
        names = {field for field in EmulatorConfig.__dataclass_fields__}
        try:
            config = config_from_options({k: v for k, v in options.items() if k in names})
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            emulator_run(config)
        except (OSError, ValueError) as exc:
            raise CommandError(f"sendgrid emulator: {exc}") from exc
