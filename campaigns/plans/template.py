"""Merge-field templates: ``Hi {{ lead.first_name | default:"there" }},``.

Subjects and bodies are written by customers, so they get a deliberately tiny language instead of
Django or Jinja templates: a ``{{ }}`` tag names one whitelisted field, optionally with a
``default`` fallback. There are no loops, no attribute access, no code: rendering can only ever
substitute a known value, which keeps user-authored content from reaching anything else.
"""

import difflib
import functools
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.plans.spec import CUSTOM_FIELD_PREFIX, MERGE_FIELDS


@dataclass(frozen=True)
class Field:
    path: str
    default: str | None


@dataclass(frozen=True)
class ParsedTemplate:
    parts: tuple[str | Field, ...]
    # Each problem names its position: 'at line 1, column 4: unknown merge field "x"'.
    problems: tuple[str, ...]


_MARK_RE = re.compile(r"\{\{|\}\}")
_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*")
_CUSTOM_RE = re.compile(re.escape(CUSTOM_FIELD_PREFIX) + r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_FILTER_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>.*)", re.S)
_DEFAULT_ARG_RE = re.compile(
    r"\s*:\s*(?:\"(?P<dq>(?:[^\"\\]|\\.)*)\"|'(?P<sq>(?:[^'\\]|\\.)*)')\s*", re.S
)
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
_NEWLINES_RE = re.compile(r"[\r\n]+")
# Enough to fix a template in a round or two; a body of nothing but broken tags must not turn
# into thousands of errors (and as many scans for their line numbers).
MAX_PROBLEMS = 10


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"at line {line}, column {column}"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_problem(path: str) -> str | None:
    if path in MERGE_FIELDS or _CUSTOM_RE.fullmatch(path):
        return None
    if path == CUSTOM_FIELD_PREFIX.rstrip("."):
        return f'"{path}" needs a key, like {CUSTOM_FIELD_PREFIX}industry'
    if path.startswith(CUSTOM_FIELD_PREFIX):
        return (
            f'unknown merge field "{_clip(path)}": a custom field is '
            f'{CUSTOM_FIELD_PREFIX}<key>, the key made of letters, digits, "_" or "-"'
        )
    message = f'unknown merge field "{_clip(path)}"'
    close = difflib.get_close_matches(path, MERGE_FIELDS, n=1, cutoff=0.6)
    if close:
        return f'{message} (did you mean "{close[0]}"?)'
    return (
        f"{message}; the merge fields are {', '.join(MERGE_FIELDS)} and {CUSTOM_FIELD_PREFIX}<key>"
    )


def _parse_field(inner: str) -> tuple[Field | None, str | None]:
    stripped = inner.strip()
    if not stripped:
        return None, 'empty merge field "{{ }}"'
    path_part, bar, filter_part = inner.partition("|")
    path = path_part.strip()
    if not _PATH_RE.fullmatch(path):
        return None, (
            f'cannot read "{{{{ {_clip(stripped)} }}}}": expected a merge field like '
            'lead.first_name, optionally followed by | default:"…"'
        )
    problem = _field_problem(path)
    if problem is not None:
        return None, problem
    if not bar:
        return Field(path=path, default=None), None
    filter_match = _FILTER_RE.fullmatch(filter_part.strip())
    if filter_match is None:
        return None, 'expected a filter after "|", like | default:"there"'
    if filter_match["name"] != "default":
        return None, (
            f'unknown filter "{_clip(filter_match["name"])}": the only filter is default:"…"'
        )
    arg_match = _DEFAULT_ARG_RE.fullmatch(filter_match["rest"])
    if arg_match is None:
        return None, 'default needs quoted text, like default:"there"'
    raw = arg_match["dq"] if arg_match["dq"] is not None else arg_match["sq"]
    return Field(path=path, default=_UNESCAPE_RE.sub(r"\1", raw)), None


@functools.lru_cache(maxsize=512)
def template_parse(text: str) -> ParsedTemplate:
    """Split a template into literal text and fields, collecting every problem found.

    Cached because the send path renders the same few templates thousands of times.
    """
    parts: list[str | Field] = []
    problems: list[str] = []
    cursor = 0  # start of the literal text not yet emitted
    scan = 0
    while len(problems) < MAX_PROBLEMS:
        mark = _MARK_RE.search(text, scan)
        if mark is None:
            break
        if mark.group() == "}}":
            # Most often a typo such as "{ lead.first_name }}"; keep scanning for more.
            problems.append(f'{_position(text, mark.start())}: "}}}}" without an opening "{{{{"')
            scan = mark.end()
            continue
        close = text.find("}}", mark.end())
        inner = text[mark.end() : close] if close != -1 else ""
        if close == -1 or "{{" in inner:
            # Anything after an unclosed tag would be misread, so stop here.
            problems.append(f'{_position(text, mark.start())}: "{{{{" is not closed with "}}}}"')
            break
        field, problem = _parse_field(inner)
        if problem is not None:
            problems.append(f"{_position(text, mark.start())}: {problem}")
        elif field is not None:
            if mark.start() > cursor:
                parts.append(text[cursor : mark.start()])
            parts.append(field)
            cursor = close + 2
        scan = close + 2
    if cursor < len(text):
        parts.append(text[cursor:])
    return ParsedTemplate(parts=tuple(parts), problems=tuple(problems))


def _as_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int too long to print
            return None
    return None  # missing, null, or a list/object that has no sensible text form


def template_render(
    parsed: ParsedTemplate,
    *,
    values: Mapping[str, object],
    custom: Mapping[str, object] | None,
    as_html: bool = False,
    single_line: bool = False,
) -> str:
    """Substitute fields. ``values`` maps merge-field paths; custom fields come from ``custom``.

    A missing or blank value renders as its default, or as nothing. In HTML every substituted
    value is escaped (and its line breaks become <br>); in a single-line template (a subject)
    line breaks in values become spaces, so a value can never start a new header.
    """
    out: list[str] = []
    for part in parsed.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if part.path.startswith(CUSTOM_FIELD_PREFIX):
            key = part.path[len(CUSTOM_FIELD_PREFIX) :]
            raw = custom.get(key) if isinstance(custom, Mapping) else None
        else:
            raw = values.get(part.path)
        text = _as_text(raw)
        if text is None or not text.strip():
            text = part.default if part.default is not None else (text or "")
        if single_line:
            text = _NEWLINES_RE.sub(" ", text)
        if as_html:
            text = html.escape(text, quote=True).replace("\r\n", "\n").replace("\n", "<br>\n")
        out.append(text)
    return "".join(out)
