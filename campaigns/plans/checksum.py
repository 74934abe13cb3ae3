"""Plan checksums: a version is identified by the SHA-256 of its canonical JSON."""

import hashlib
import json

from outreach.common.errors import ApplicationError


def plan_canonical_json(*, plan: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal plans give equal bytes whatever their key order."""
    try:
        text = json.dumps(
            plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        raise ApplicationError(
            "The plan is not a JSON document.", code="invalid_plan", extra={"": [str(exc)[:200]]}
        ) from exc


def plan_checksum(*, plan: object) -> str:
    """SHA-256 hex digest of the plan's canonical JSON."""
    return hashlib.sha256(plan_canonical_json(plan=plan)).hexdigest()
