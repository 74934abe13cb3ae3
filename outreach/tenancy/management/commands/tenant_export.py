"""``manage.py tenant_export --tenant demo --output demo.zip``

Everything a tenant owns as a zip of JSON Lines files, one per table (secrets left out; see
``outreach.tenancy.export``). The zip is written next to its destination and renamed into
place when complete, so an interrupted export never leaves a half file, and running it again
simply replaces it. ``--dry-run`` counts the rows and writes nothing.
"""

import os
import tempfile
import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from outreach.common.commands import tenant_resolve
from outreach.tenancy.export import export_rows, export_tables


class Command(BaseCommand):
    help = "Export a tenant's data as a zip of JSON Lines files (one per table)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="slug or id")
        parser.add_argument("--output", help="the zip to write (required unless --dry-run)")
        parser.add_argument("--dry-run", action="store_true", help="count rows, write nothing")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        tenant = tenant_resolve(options["tenant"])
        tables = export_tables()
        counts = {table.name: table.queryset(tenant.pk).count() for table in tables}
        total = sum(counts.values())
        if options["dry_run"]:
            listed = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
            self.stdout.write(f"dry run: {tenant.slug} has {total} rows to export ({listed})")
            return
        if not options["output"]:
            raise CommandError("--output: name the zip file to write")
        output = Path(options["output"]).resolve()
        if output.is_dir():
            raise CommandError(f"--output: {output} is a directory; name a .zip file")
        if not output.parent.is_dir():
            raise CommandError(f"--output: the folder {output.parent} does not exist")
        try:
            handle, temporary = tempfile.mkstemp(
                prefix=f".{output.name}.", suffix=".partial", dir=output.parent
            )
        except OSError as exc:
            raise CommandError(
                f"--output: cannot write in {output.parent}: {exc.strerror}"
            ) from None
        os.close(handle)
        try:
            with (
                zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive,
                tqdm(
                    total=total,
                    unit="row",
                    disable=options["no_progress"] or None,
                    file=self.stderr._out,
                ) as bar,
            ):
                for table in tables:
                    with archive.open(f"{table.name}.jsonl", "w") as member:
                        for line in export_rows(table, tenant_id=tenant.pk):
                            member.write(line.encode())
                            bar.update(1)
            os.replace(temporary, output)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.stdout.write(
            f"exported {tenant.slug}: {total} rows in {len(tables)} tables to {output}"
        )
