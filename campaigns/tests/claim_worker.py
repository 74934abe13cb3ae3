"""A sweeper in its own process, for concurrency tests: claims due actions until none are
left and prints the ``[id, attempt]`` pairs it claimed as JSON on stdout."""

import json
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")
django.setup()

from campaigns.services import scheduler  # noqa: E402


def main() -> None:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    # Start together (after the slow Django start-up), so the sweepers really overlap.
    start_at = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    time.sleep(max(0.0, start_at - time.time()))
    claimed: list[list[int]] = []
    while True:
        batch = scheduler.scheduled_actions_claim(limit=limit)
        if not batch:
            break
        claimed.extend([a.id, a.attempt] for a in batch)
    json.dump(claimed, sys.stdout)


if __name__ == "__main__":
    main()
