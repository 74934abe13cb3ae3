"""Adds a plan version from its own process, for concurrency tests.

Usage: ``python -m campaigns.tests.version_add_worker <tenant_id> <campaign_id> <plan.json>
<go-file>``. Prints ``ready`` once Django is up, waits until ``go-file`` exists so that all
workers call the service at the same moment, then prints the outcome as JSON.
"""

import json
import os
import pathlib
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")
django.setup()

from campaigns.services.campaigns import campaign_version_add  # noqa: E402


def main() -> None:
    tenant_id, campaign_id = int(sys.argv[1]), int(sys.argv[2])
    plan = json.loads(pathlib.Path(sys.argv[3]).read_text())
    go = pathlib.Path(sys.argv[4])
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    added = campaign_version_add(tenant_id=tenant_id, campaign_id=campaign_id, plan=plan)
    print(json.dumps({"version": added.version.version, "created": added.created}), flush=True)


if __name__ == "__main__":
    main()
