from django.core.management.base import BaseCommand, CommandError

from messaging.services.tenant_secrets import tenant_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every tenant's SendGrid API key under the newest key of "
        "OUTREACH_ENCRYPTION_KEYS. Idempotent; changes nothing if any key cannot be decrypted."
    )

    def handle(self, *args, **options) -> None:
        report = tenant_secrets_rotate()
        if report.undecryptable:
            names = ", ".join(report.undecryptable)
            raise CommandError(
                f"cannot decrypt the SendGrid key of {len(report.undecryptable)} tenant(s) "
                f"with any key in OUTREACH_ENCRYPTION_KEYS: {names}; nothing was changed"
            )
        self.stdout.write(
            f"re-encrypted {report.rotated}, already current {report.already_current}, "
            f"without a key {report.without_key}"
        )
