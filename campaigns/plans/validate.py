"""Strict validation of campaign plans.

Every problem is reported at once, each with the RFC 6901 JSON pointer of the offending value and
a reason a person can act on. A missing key is reported at the pointer where it belongs
(``/steps/intro/on/no_open/after``). Validation runs in stages: the input must be plain JSON of
sane size (structure.py), match the published JSON Schema (schema.json, reworded by
structure.py), and pass the rules a schema cannot express well: per-step rules and templates
(here) and the step graph (graph.py).
"""

import logging

from campaigns.plans.checksum import plan_canonical_json
from campaigns.plans.durations import duration_problem
from campaigns.plans.graph import graph_errors
from campaigns.plans.problems import (
    Path,
    PlanError,
    body_too_long,
    did_you_mean,
    duration_message,
    error_sort_key,
    json_pointer,
    json_type,
    name_message,
    name_ok,
    show_value,
)
from campaigns.plans.sms import SmsSegments, sms_template_segments
from campaigns.plans.spec import (
    EVENT_TRIGGERS,
    MAX_PLAN_BYTES,
    MAX_STEPS,
    SMS_TIMEOUT_TRIGGERS,
    TIMEOUT_EVENT,
    TIMEOUT_TRIGGERS,
)
from campaigns.plans.structure import schema_errors, shape_errors, too_large
from campaigns.plans.template import template_parse
from outreach.common.errors import ApplicationError

logger = logging.getLogger(__name__)

_BODY_FIELDS = ("text", "html")
_VERBS = {"open": "opens", "click": "clicks", "reply": "replies"}


def _template_errors(value: object, path: Path) -> list[PlanError]:
    if not isinstance(value, str):
        return []
    return [PlanError(json_pointer(path), problem) for problem in template_parse(value).problems]


def _email_errors(name: str, step: dict) -> list[PlanError]:
    errors: list[PlanError] = []
    base: Path = ("steps", name)

    variants = step.get("variants")
    seen: dict[str, int] = {}
    for index, variant in enumerate(variants if isinstance(variants, list) else []):
        if not isinstance(variant, dict):
            continue
        at: Path = (*base, "variants", index)
        variant_name = variant.get("name")
        if isinstance(variant_name, str):
            if not name_ok(variant_name):
                errors.append(PlanError(json_pointer((*at, "name")), name_message(variant_name)))
            elif variant_name in seen:
                errors.append(
                    PlanError(
                        json_pointer((*at, "name")),
                        f"duplicate variant name {show_value(variant_name)} "
                        f"(also used by variant {seen[variant_name]})",
                    )
                )
            else:
                seen[variant_name] = index
        for key in ("subject", *_BODY_FIELDS):
            text = variant.get(key)
            if not isinstance(text, str):
                continue
            if text and not text.strip():
                errors.append(PlanError(json_pointer((*at, key)), "must not be empty"))
            if key == "subject" and ("\n" in text or "\r" in text):
                errors.append(PlanError(json_pointer((*at, key)), "must be a single line"))
            if key in _BODY_FIELDS and (problem := body_too_long(text)):
                errors.append(PlanError(json_pointer((*at, key)), problem))
            errors.extend(_template_errors(text, (*at, key)))

    has_next, has_on = "next" in step, "on" in step
    on = step.get("on")
    if has_next and has_on:
        errors.append(
            PlanError(
                json_pointer((*base, "next")),
                'an email step takes "next" (move on right after sending) or "on" (wait for '
                "events and timeouts), not both; to move on after a delay while still reacting "
                'to events, use a timeout such as "no_reply": {"after": "3d", "to": "…"}',
            )
        )
    elif not has_next and not has_on:
        errors.append(
            PlanError(
                json_pointer(base),
                'nothing moves this step forward: add "next" (move on right after sending, '
                'e.g. to a wait or end step) or "on" with a timeout such as '
                '"no_reply": {"after": "3d", "to": "…"}',
            )
        )
    elif isinstance(on, dict):
        timeouts = [trigger for trigger in TIMEOUT_TRIGGERS if trigger in on]
        events = {trigger for trigger in EVENT_TRIGGERS if trigger in on}
        if not timeouts:
            errors.append(
                PlanError(
                    json_pointer((*base, "on")),
                    "no timeout: a lead who never opens, clicks or replies would stay on this "
                    'step forever; add "no_open", "no_click" or "no_reply" with "after" and "to"',
                )
            )
        elif not any(TIMEOUT_EVENT[timeout] in events for timeout in timeouts):
            # Each timeout is cancelled by its own event; if no trigger handles any of those
            # events, a lead who does all of them cancels every timeout and never moves on.
            awaited = [TIMEOUT_EVENT[timeout] for timeout in timeouts]
            cancelled = " and ".join(f'"{timeout}"' for timeout in timeouts)
            plural = "s" if len(timeouts) > 1 else ""
            article = "an" if awaited[0][0] in "aeiou" else "a"
            wanted = " or ".join(f'"{event}"' for event in awaited)
            errors.append(
                PlanError(
                    json_pointer((*base, "on")),
                    f"a lead who {' and '.join(_VERBS[event] for event in awaited)} would stay "
                    f"on this step forever: that cancels the {cancelled} timeout{plural} and no "
                    f"trigger handles it; add {article} {wanted} trigger",
                )
            )
        for timeout in timeouts:
            value = on[timeout]
            if isinstance(value, dict) and isinstance(value.get("after"), str):
                after = value["after"]
                if problem := duration_problem(after):
                    errors.append(
                        PlanError(
                            json_pointer((*base, "on", timeout, "after")),
                            duration_message(problem, after),
                        )
                    )
    return errors


def _step_errors(name: str, step: dict, sms_enabled: bool) -> list[PlanError]:
    kind = step.get("type")
    base: Path = ("steps", name)
    if kind == "email":
        return _email_errors(name, step)
    if kind == "wait":
        duration = step.get("duration")
        if isinstance(duration, str) and (problem := duration_problem(duration)):
            return [
                PlanError(json_pointer((*base, "duration")), duration_message(problem, duration))
            ]
    elif kind == "end":
        outcome = step.get("outcome")
        if isinstance(outcome, str) and not name_ok(outcome):
            return [PlanError(json_pointer((*base, "outcome")), name_message(outcome))]
    elif kind == "sms":
        if not sms_enabled:
            return [PlanError(json_pointer((*base, "type")), "sms steps are not enabled yet")]
        return _sms_errors(name, step)
    return []


def _sms_errors(name: str, step: dict) -> list[PlanError]:
    base: Path = ("steps", name)
    errors: list[PlanError] = []
    body = step.get("body")
    if isinstance(body, str) and body and not body.strip():
        errors.append(PlanError(json_pointer((*base, "body")), "must not be empty"))
    errors.extend(_template_errors(body, (*base, "body")))
    has_next, has_on = "next" in step, "on" in step
    on = step.get("on")
    if has_next and has_on:
        errors.append(
            PlanError(
                json_pointer((*base, "next")),
                'an SMS step takes "next" (move on right after sending) or "on" (wait for '
                "delivery, a reply or a timeout), not both; to move on after a delay while still "
                'reacting to a reply, use "no_reply": {"after": "1d", "to": "…"}',
            )
        )
    elif not has_next and not has_on:
        errors.append(
            PlanError(
                json_pointer(base),
                'nothing moves this step forward: add "next" (move on right after sending) or '
                '"on" with a timeout such as "no_reply": {"after": "1d", "to": "…"}',
            )
        )
    elif isinstance(on, dict):
        timeouts = [trigger for trigger in SMS_TIMEOUT_TRIGGERS if trigger in on]
        if not timeouts:
            errors.append(
                PlanError(
                    json_pointer((*base, "on")),
                    "no timeout: a lead who never replies would stay on this step forever; add "
                    '"no_reply" with "after" and "to"',
                )
            )
        elif "reply" not in on:
            errors.append(
                PlanError(
                    json_pointer((*base, "on")),
                    "a lead who replies would stay on this step forever: that cancels the "
                    '"no_reply" timeout and no trigger handles it; add a "reply" trigger',
                )
            )
        for timeout in timeouts:
            value = on[timeout]
            if isinstance(value, dict) and isinstance(value.get("after"), str):
                after = value["after"]
                if problem := duration_problem(after):
                    errors.append(
                        PlanError(
                            json_pointer((*base, "on", timeout, "after")),
                            duration_message(problem, after),
                        )
                    )
    return errors


def _semantic_errors(plan: dict, sms_enabled: bool) -> list[PlanError]:
    errors: list[PlanError] = []
    steps = plan.get("steps")
    steps = steps if isinstance(steps, dict) else {}
    start = plan.get("start")
    if isinstance(start, str) and start not in steps:
        message = f"no step named {show_value(start)}{did_you_mean(start, steps)}"
        errors.append(PlanError("/start", message))
    for name, step in steps.items():
        if not name_ok(name):
            errors.append(PlanError(json_pointer(("steps", name)), name_message(name)))
        if isinstance(step, dict):
            errors.extend(_step_errors(name, step, sms_enabled))
    errors.extend(graph_errors(plan, steps))
    return errors


def _validate(plan: object, sms_enabled: bool) -> list[PlanError]:
    if not isinstance(plan, dict):
        message = f'expected a JSON object with "start" and "steps", got {json_type(plan)}'
        return [PlanError("", message)]
    shape = shape_errors(plan)
    if shape:
        return shape
    if len(plan_canonical_json(plan=plan)) > MAX_PLAN_BYTES:
        return [too_large()]

    steps = plan.get("steps")
    muted: set[str] = set()
    if not sms_enabled and isinstance(steps, dict):
        # A disabled sms step gets one clear error, not a list of its missing keys.
        muted = {n for n, s in steps.items() if isinstance(s, dict) and s.get("type") == "sms"}
    errors = schema_errors(plan, muted)
    if isinstance(steps, dict) and len(steps) > MAX_STEPS:
        return errors  # the graph checks are quadratic; the step count error says enough
    errors.extend(_semantic_errors(plan, sms_enabled))
    return errors


def plan_validate(*, plan: object, sms_enabled: bool = False) -> list[PlanError]:
    """Every problem with ``plan``, sorted by pointer; an empty list means the plan is valid.

    Never raises, whatever it is given: a plan is user input, and a crash here would turn a
    bad request into a 500.
    """
    try:
        errors = _validate(plan, sms_enabled)
    except Exception:
        logger.exception("plan.validate_failed")
        errors = [PlanError("", "the plan could not be checked because of an internal error")]
    # Duplicates come from the schema and a Python check saying the same thing. The sort is
    # stable, so problems at one pointer keep the order they were found in (template positions).
    return sorted(dict.fromkeys(errors), key=error_sort_key)


def plan_sms_segments(*, plan: object) -> dict[str, SmsSegments]:
    """The encoding, characters and segments of every SMS step's body, by the body's JSON
    pointer: its fixed text, merge fields counted as their defaults (the preview counts a
    lead's real text). A body that does not parse is left out. Never raises."""
    counts: dict[str, SmsSegments] = {}
    steps = plan.get("steps") if isinstance(plan, dict) else None
    for name, step in steps.items() if isinstance(steps, dict) else ():
        if not isinstance(step, dict) or step.get("type") != "sms":
            continue
        body = step.get("body")
        counted = sms_template_segments(body=body) if isinstance(body, str) else None
        if counted is not None:
            counts[json_pointer(("steps", name, "body"))] = counted
    return dict(sorted(counts.items()))


def plan_warnings(
    *, plan: object, sms_segments: dict[str, SmsSegments] | None = None
) -> list[PlanError]:
    """What a valid plan may still want changed: SMS bodies past the segment warning (their
    fixed text alone; the preview counts a lead's real text). ``sms_segments``: the plan's
    counts when the caller has them already (``plan_sms_segments``). Never raises."""
    if sms_segments is None:
        sms_segments = plan_sms_segments(plan=plan)
    warnings = [
        PlanError(pointer, counted.warning)
        for pointer, counted in sms_segments.items()
        if counted.warning
    ]
    return sorted(warnings, key=error_sort_key)


def plan_validate_or_raise(*, plan: object, sms_enabled: bool = False) -> None:
    """Raise ApplicationError(code="invalid_plan", extra={pointer: [reasons]}) for an invalid plan."""
    errors = plan_validate(plan=plan, sms_enabled=sms_enabled)
    if not errors:
        return
    fields: dict[str, list[str]] = {}
    for error in errors:
        fields.setdefault(error.pointer, []).append(error.message)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise ApplicationError(
        f"The plan is invalid: {errors[0]}{more}", code="invalid_plan", extra=fields
    )
