"""``python -m messaging.emulator [options]``: the emulator without Django's start-up."""

import argparse
import sys

from .app import emulator_run
from .config import add_arguments, config_from_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m messaging.emulator", description="Local SendGrid-compatible emulator."
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        print(f"sendgrid-emulator: {exc}", file=sys.stderr)
        return 2
    try:
        emulator_run(config)
    except (OSError, ValueError) as exc:
        print(f"sendgrid-emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
