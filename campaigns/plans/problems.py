"""Plan errors and the small helpers that word them consistently."""

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from campaigns.plans.spec import MAX_BODY_BYTES, MAX_NAME_LENGTH

Path = tuple[str | int, ...]

NAME_MESSAGE = (
    'expected a name made of letters, digits, "_" or "-", starting with a letter, '
    f"at most {MAX_NAME_LENGTH} characters"
)
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class PlanError:
    pointer: str  # RFC 6901; "" is the whole plan
    message: str

    def __str__(self) -> str:
        return f"{self.pointer}: {self.message}" if self.pointer else self.message


def json_pointer(path: Iterable[str | int]) -> str:
    tokens = []
    for token in path:
        # Pointers end up in API responses, which must be valid UTF-8.
        text = str(token).encode("utf-8", "replace").decode("utf-8")
        tokens.append(text.replace("~", "~0").replace("/", "~1"))
    return "".join("/" + token for token in tokens)


def show_value(value: object, limit: int = 60) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def did_you_mean(word: object, options: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def with_article(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def name_message(value: object) -> str:
    return f"{NAME_MESSAGE}, got {show_value(value)}"


def name_ok(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and _NAME_RE.fullmatch(value) is not None


def duration_message(problem: str, value: object) -> str:
    return f"{problem}, got {show_value(value)}"


def body_too_long(value: str) -> str | None:
    size = len(value.encode("utf-8"))
    if size <= MAX_BODY_BYTES:
        return None
    return f"too long: {size:,} bytes of UTF-8; at most 100 KB ({MAX_BODY_BYTES:,} bytes)"


def error_sort_key(error: PlanError) -> tuple[Any, ...]:
    """Order by pointer, array indexes numerically (/variants/2 before /variants/10)."""
    return tuple(
        (0, int(token), "") if token.isdigit() else (1, 0, token)
        for token in error.pointer.split("/")
    )
