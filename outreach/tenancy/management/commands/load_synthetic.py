"""``manage.py load_synthetic --tenants 20 --leads 1000000 --events 50000000``

Fills a database with a synthetic data set for benchmarks and scale tests: tenants of very
different sizes, leads, campaigns, and ``--months`` of consistent history (enrollments,
messages, events, replies, transitions, suppressions, pending actions) through the analytics
triggers. See ``outreach.synthetic.load`` for what is generated and ``docs/scaling.md`` for
the time and disk it takes. Refuses a database that holds real tenants unless
``--allow-existing``; any bad argument exits non-zero with one line.
"""

import logging
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from outreach.common.errors import ApplicationError
from outreach.synthetic.load import SyntheticSpec, synthetic_load, synthetic_spec_check


class _Bars:
    """One tqdm bar per stage, shared by the loader's two threads."""

    def __init__(self, stream, disabled: bool) -> None:
        self.stream, self.disabled = stream, disabled
        self.bar: tqdm | None = None
        self.lock = threading.Lock()

    def start(self, stage: str, total: int, unit: str) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(
                total=total,
                desc=stage,
                unit=unit,
                unit_scale=True,
                file=self.stream,
                disable=self.disabled,
                dynamic_ncols=True,
            )

    def advance(self, n: int) -> None:
        with self.lock:
            if self.bar is not None and n:
                self.bar.update(n)

    def close(self) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.close()


def _whole(value: str) -> int:
    return int(value.replace("_", ""))


_whole.__name__ = "whole number"  # argparse names the type in its message


class Command(BaseCommand):
    help = (
        "Fill the database with a synthetic data set: tenants of power-law sizes, leads, "
        "campaigns and months of consistent history (messages, events, replies, transitions, "
        "suppressions, pending actions), through the analytics triggers."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str):
            # argparse would print the usage and the error on two lines; a script wants one.
            if parser.called_from_command_line:
                sys.stderr.write(f"load_synthetic: {message}\n")
                sys.exit(2)
            raise CommandError(f"load_synthetic: {message}")

        parser.error = error
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = SyntheticSpec()
        parser.add_argument("--tenants", type=_whole, default=defaults.tenants)
        parser.add_argument("--leads", type=_whole, default=defaults.leads)
        parser.add_argument(
            "--events", type=_whole, default=defaults.events, help="about this many events"
        )
        parser.add_argument(
            "--months", type=_whole, default=defaults.months, help="months of history"
        )
        parser.add_argument("--seed", type=_whole, default=defaults.seed)
        parser.add_argument(
            "--prefix", default=defaults.prefix, help="slug prefix of the synthetic tenants"
        )
        parser.add_argument(
            "--allow-existing",
            action="store_true",
            help="add to a database that already holds real tenants",
        )
        parser.add_argument(
            "--jobs",
            type=_whole,
            default=3,
            help="connections writing at once",
        )
        parser.add_argument(
            "--checked",
            action="store_true",
            help="write through the foreign-key checks and analytics triggers (slower; the"
            " way a role that is not a superuser always loads)",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        spec = SyntheticSpec(
            tenants=options["tenants"],
            leads=options["leads"],
            events=options["events"],
            months=options["months"],
            seed=options["seed"],
            prefix=options["prefix"],
        )
        bars = _Bars(self.stderr._out, disabled=options["no_progress"])
        if options["verbosity"] < 2:
            # Thousands of "campaign.created" lines would bury the progress bar.
            logging.disable(logging.INFO)
        try:
            synthetic_spec_check(spec=spec)
            if not 1 <= options["jobs"] <= 16:
                raise ApplicationError(f"--jobs: expected 1 to 16, got {options['jobs']}")
            report = synthetic_load(
                spec=spec,
                allow_existing=options["allow_existing"],
                progress=bars,
                jobs=options["jobs"],
                checked=options["checked"],
            )
        except ApplicationError as exc:
            raise CommandError(f"load_synthetic: {exc.message}") from None
        finally:
            bars.close()
            logging.disable(logging.NOTSET)
        counts = ", ".join(f"{value:,} {name}" for name, value in report.counts.items())
        added = (report.bytes_after - report.bytes_before) / 2**30
        self.stdout.write(
            f"load_synthetic: {counts} in {report.seconds / 60:.1f} min;"
            f" database +{added:.1f} GiB ({report.bytes_after / 2**30:.1f} GiB);"
            f" tenant sizes {report.tenant_sizes[0]:,} … {report.tenant_sizes[-1]:,} leads;"
            + (
                " rollups counted set-based after an unchecked write"
                if report.unchecked
                else " every row through the checks and triggers"
            )
        )
