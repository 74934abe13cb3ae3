"""``manage.py leads_import --tenant SLUG leads.csv``: bulk-import leads from a CSV file.

The first row names the columns. Columns named like lead fields (``email``, ``first_name``,
``company``… case-insensitive) fill those fields; every other column goes into
``custom_fields`` under its header name. Rows go in batches, each in its own transaction, so
an interrupted import can simply be run again: rows already imported are skipped as
"already exists". Rows are numbered as a spreadsheet shows them (the header is row 1).

Every rejected row is written with its reasons to a report file (``--rejects``, by default
``<file>.rejects.csv`` beside the CSV) whenever there is one, also when the import stops.
``--dry-run`` checks every row (validation, duplicates, the lead quota) in one transaction
rolled back at the end, so it reports what the real run would, duplicates across batches
and the quota over all of them included: nothing is stored. Over the tenant's lead quota
the import stops with one line; the batches before it are kept and a second run skips them.
"""

import csv
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework import serializers
from tqdm import tqdm

from campaigns.models import Lead
from campaigns.serializers import LeadInputSerializer
from campaigns.services.leads import LEAD_INPUT_FIELDS, lead_bulk_create, leads_dry_run
from outreach.common.errors import errors_flatten as flatten_errors
from outreach.tenancy.models import Tenant
from outreach.tenancy.quotas import QuotaExceeded

COLUMN_FIELDS = frozenset(LEAD_INPUT_FIELDS) - {"custom_fields"}
# Lead columns we fill ourselves: a CSV exported from another system often carries them.
IGNORED_COLUMNS = frozenset(
    {f.name for f in Lead._meta.concrete_fields} - set(LEAD_INPUT_FIELDS) | {"tenant_id"}
)

# One huge cell (a pasted document) should be a rejected row, not a crash.
csv.field_size_limit(1 << 20)


@dataclass
class Rejected:
    row: int
    reasons: list[str]


@dataclass
class Summary:
    imported: int = 0
    skipped: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Import leads from a CSV file with a header row. Lead-field columns fill the lead; "
        "other columns go into custom_fields. Prints a summary of rejected rows (row numbers "
        "as a spreadsheet shows them, header = row 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="CSV file, UTF-8 (a byte-order mark is fine).")
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument(
            "--delimiter", default=",", help="Field separator (default ','; use ';' or '\\t')."
        )
        parser.add_argument(
            "--rejects",
            metavar="PATH",
            help="Where to write the rejected rows (default: <file>.rejects.csv, if any).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check every row; store nothing."
        )
        parser.add_argument("--show", type=int, default=100, help="Rejected rows to print.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant with the slug '{options['tenant']}'")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        delimiter = options["delimiter"].replace("\\t", "\t")
        if len(delimiter) != 1:
            raise CommandError("--delimiter must be a single character")
        path = Path(options["path"])
        rejects = Path(options["rejects"] or f"{path}.rejects.csv")
        total = _count_lines(path)
        dry_run = options["dry_run"]

        try:
            with (
                path.open(newline="", encoding="utf-8-sig") as handle,
                leads_dry_run() if dry_run else nullcontext(),
            ):
                reader = csv.reader(handle, delimiter=delimiter)
                columns = _header(next(reader, None), path)
                ignored = [name for name in columns if name in IGNORED_COLUMNS]
                if ignored:
                    self.stderr.write(f"ignoring columns set by the import: {', '.join(ignored)}")
                summary = self._import(
                    tenant_id=tenant.pk,
                    records=_records(reader, columns),
                    batch_size=options["batch_size"],
                    dry_run=options["dry_run"],
                    progress=tqdm(
                        total=max(total - 1, 0),
                        unit="rows",
                        desc=f"importing {path.name}",
                        disable=True if options["no_progress"] else None,
                        file=sys.stderr,
                    ),
                )
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except csv.Error as exc:
            raise CommandError(f"{path} is not a readable CSV file: {exc}") from None

        except QuotaExceeded as exc:
            rejected = sorted(exc.summary.rejected, key=lambda item: item.row)
            if rejected:
                _write_rejects(rejects, rejected)
                self.stderr.write(f"rows rejected before it and their reasons: {rejects}")
            if dry_run:
                raise CommandError(
                    f"dry run: would stop: {exc.message} "
                    f"(would import {exc.summary.imported} leads before it)"
                ) from None
            raise CommandError(
                f"stopped: {exc.message} (imported {exc.summary.imported} leads before it)"
            ) from None

        self._report(summary, show=options["show"], dry_run=dry_run)
        if summary.rejected:
            _write_rejects(rejects, summary.rejected)
            self.stdout.write(f"rejected rows and their reasons: {rejects}")

    def _import(
        self,
        *,
        tenant_id: int,
        records: Iterator[tuple[int, dict[str, Any] | list[str]]],
        batch_size: int,
        progress: tqdm,
        dry_run: bool = False,
    ) -> Summary:
        summary = Summary()
        row_serializer = LeadInputSerializer()
        batch: list[tuple[int, dict[str, Any]]] = []

        def flush() -> None:
            if not batch:
                return
            try:
                result = lead_bulk_create(tenant_id=tenant_id, rows=batch, dry_run=dry_run)
            except QuotaExceeded as exc:
                # What was done before it, and the batch's own invalid rows: the rejects
                # file is written all the same.
                for row, errors in getattr(exc, "row_errors", {}).items():
                    summary.rejected.append(Rejected(row, _reasons(errors)))
                exc.summary = summary
                raise
            summary.imported += len(result.created)
            summary.skipped += sum(1 for skip in result.skipped if skip.duplicate_of is None)
            for skip in result.skipped:
                if skip.duplicate_of is not None:
                    summary.rejected.append(
                        Rejected(skip.index, [f"email: same address as row {skip.duplicate_of}"])
                    )
            for row, errors in result.errors.items():
                summary.rejected.append(Rejected(row, _reasons(errors)))
            progress.update(len(batch))
            batch.clear()

        with progress:
            for row, data in records:
                if isinstance(data, list):  # the record could not be mapped: reasons
                    summary.rejected.append(Rejected(row, data))
                    progress.update(1)
                    continue
                try:
                    batch.append((row, row_serializer.row_validate(data)))
                except serializers.ValidationError as exc:
                    summary.rejected.append(Rejected(row, _reasons(exc.detail)))
                    progress.update(1)
                if len(batch) >= batch_size:
                    flush()
            flush()
        summary.rejected.sort(key=lambda rejected: rejected.row)
        return summary

    def _report(self, summary: Summary, *, show: int, dry_run: bool = False) -> None:
        verb = "dry run: would import" if dry_run else "imported"
        self.stdout.write(
            f"{verb} {summary.imported} leads, skipped {summary.skipped} already present, "
            f"rejected {len(summary.rejected)} rows"
        )
        for rejected in summary.rejected[:show]:
            self.stdout.write(f"  row {rejected.row}: {'; '.join(rejected.reasons)}")
        if len(summary.rejected) > show:
            self.stdout.write(
                f"  … and {len(summary.rejected) - show} more rejected rows (see --rejects)"
            )


def _count_lines(path: Path) -> int:
    """Lines in the file, for the progress bar (quoted multi-line cells make it approximate)."""
    try:
        with path.open("rb") as raw:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: raw.read(1 << 20), b""))
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{path} is a directory, not a CSV file") from None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def _header(cells: list[str] | None, path: Path) -> list[str]:
    """Column keys: lead fields by their (lower-case) name, custom columns as written."""
    if not cells or not any(cell.strip() for cell in cells):
        raise CommandError(f"{path} has no header row (expected columns such as 'email')")
    columns: list[str] = []
    for position, cell in enumerate(cells, start=1):
        name = cell.strip()
        if not name:
            raise CommandError(f"bad header in {path}: column {position} has no name")
        key = name.lower() if name.lower() in COLUMN_FIELDS | IGNORED_COLUMNS else name
        if key in columns:
            raise CommandError(f"bad header in {path}: column '{name}' appears twice")
        columns.append(key)
    if "email" not in columns:
        raise CommandError(f"bad header in {path}: no 'email' column (found: {', '.join(columns)})")
    return columns


def _records(reader: Any, columns: list[str]) -> Iterator[tuple[int, dict[str, Any] | list[str]]]:
    """(row number, lead data) per record; blank lines are skipped, and a record with more
    cells than the header yields its reasons instead of data."""
    for row, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            yield row, [f"has {len(cells)} cells but the header names {len(columns)} columns"]
            continue
        data: dict[str, Any] = {}
        custom: dict[str, str] = {}
        for key, value in zip(columns, cells, strict=False):
            value = value.strip()
            if key in IGNORED_COLUMNS or not value:
                continue
            if key in COLUMN_FIELDS:
                data[key] = value
            else:
                custom[key] = value
        if custom:
            data["custom_fields"] = custom
        data.setdefault("email", "")
        yield row, data


def _reasons(detail: Any) -> list[str]:
    return [
        f"{path}: {reason}" for path, items in flatten_errors(detail).items() for reason in items
    ]


def _write_rejects(path: Path, rejected: list[Rejected]) -> None:
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "reason"])
            for item in rejected:
                writer.writerow([item.row, "; ".join(item.reasons)])
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
