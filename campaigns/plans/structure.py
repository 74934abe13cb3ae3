"""Stages 1 and 2 of validation: is it JSON at all, and does it have the plan's structure."""

import math

from jsonschema import ValidationError

from campaigns.plans.durations import DURATION_SHAPE_MESSAGE
from campaigns.plans.problems import (
    Path,
    PlanError,
    body_too_long,
    did_you_mean,
    duration_message,
    json_pointer,
    json_type,
    name_message,
    show_value,
    with_article,
)
from campaigns.plans.schema import plan_schema_validator
from campaigns.plans.spec import (
    MAX_DEPTH,
    MAX_PLAN_BYTES,
    MAX_STEPS,
    MAX_VARIANTS,
    SMS_TRIGGERS,
    STEP_TYPES,
    TIMEOUT_TRIGGERS,
    TRIGGERS,
)

# Bigger numbers have no meaning in a plan, and printing them can fail.
MAX_NUMBER = 10**15
MAX_SHAPE_ERRORS = 50


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character, which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it contains a lone surrogate)"
    return None


def shape_errors(plan: object) -> list[PlanError]:
    """Refuse anything JSON could not have produced, without recursion and with a size guard.

    Everything after this stage may then assume plain JSON values of sane size and depth.
    """
    errors: list[PlanError] = []
    budget = 2 * MAX_PLAN_BYTES  # rough count; the exact size is measured once this passes
    size = 0
    stack: list[tuple[object, Path]] = [(plan, ())]
    while stack and len(errors) < MAX_SHAPE_ERRORS:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return [
                PlanError(json_pointer(path), f"nested too deeply (more than {MAX_DEPTH} levels)")
            ]
        if isinstance(value, dict):
            size += 2 + 4 * len(value)
            if size > budget:
                break
            for key, item in value.items():
                if not isinstance(key, str):
                    errors.append(
                        PlanError(json_pointer(path), f"keys must be strings, got {json_type(key)}")
                    )
                    continue
                problem = _text_problem(key)
                if problem is not None:
                    errors.append(PlanError(json_pointer((*path, key)), f"this key {problem}"))
                    continue
                size += len(key)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            size += 2 + len(value)
            if size > budget:
                break
            stack.extend((item, (*path, index)) for index, item in enumerate(value))
        elif isinstance(value, str):
            size += 2 + len(value)
            problem = _text_problem(value)
            if problem is not None:
                errors.append(PlanError(json_pointer(path), f"this text {problem}"))
        elif value is None or isinstance(value, bool):
            size += 5
        elif isinstance(value, int):
            size += 8
            if abs(value) > MAX_NUMBER:
                errors.append(PlanError(json_pointer(path), "number too large"))
        elif isinstance(value, float):
            size += 8
            if not math.isfinite(value):
                errors.append(PlanError(json_pointer(path), "expected a finite number"))
        else:
            errors.append(
                PlanError(json_pointer(path), f"not a JSON value: {type(value).__name__}")
            )
        if size > budget:
            break
    if size > budget:
        return [too_large()]
    return errors


def too_large() -> PlanError:
    return PlanError("", f"the plan is too large: at most {MAX_PLAN_BYTES // (1024 * 1024)} MB")


# The JSON Schema stage: jsonschema's own messages are written for schema authors, so each
# kind of failure is reworded here for the person who wrote the plan.


def _context(path: Path) -> str:
    if path == ():
        return "plan"
    if path[0] != "steps":
        return "other"
    if len(path) == 2:
        return "step"
    if len(path) == 4 and path[2] == "variants":
        return "variant"
    if len(path) == 3 and path[2] == "on":
        return "on"
    if len(path) == 4 and path[2] == "on":
        return "timeout" if path[3] in TIMEOUT_TRIGGERS else "event"
    return "other"


_MISSING_HINTS = {
    ("plan", "start"): "the name of the step every enrollment begins with",
    ("plan", "steps"): "an object of named steps",
    ("step", "type"): "one of " + ", ".join(STEP_TYPES),
    ("step", "variants"): "a list of one or more variants (name, subject, text)",
    ("step", "duration"): 'how long to wait, a duration like "3d"',
    ("step", "next"): "the name of the step to go to next",
    ("step", "outcome"): 'a label for how the journey ended, like "replied"',
    ("step", "body"): "the text of the message",
    ("variant", "name"): "every variant needs a name",
    ("variant", "text"): "the plain-text body",
    ("variant", "weight"): "every variant needs a weight when a step has more than one",
    ("variant", "subject"): 'every variant needs a subject unless the step has "thread_with"',
    ("timeout", "after"): 'a timeout needs "after", a duration like "3d"',
    ("timeout", "to"): 'a timeout needs "to", the step to go to when the time is up',
}

_TYPE_NAMES = {
    "string": "a string",
    "object": "an object",
    "array": "a list",
    "integer": "a whole number",
    "boolean": "true or false",
}


def _type_message(context: str, expected: object, instance: object) -> str:
    if context == "plan":
        return f'expected a JSON object with "start" and "steps", got {json_type(instance)}'
    if context == "timeout" and isinstance(instance, str):
        return f'a timeout needs a duration: write {{"after": "3d", "to": {show_value(instance)}}}'
    if context == "event" and isinstance(instance, dict):
        return (
            'an event trigger names the step to go to, like "open": "next_step"; only '
            + ", ".join(TIMEOUT_TRIGGERS)
            + ' take {"after": …, "to": …}'
        )
    names = [expected] if isinstance(expected, str) else list(expected or [])
    wanted = " or ".join(_TYPE_NAMES.get(str(name), str(name)) for name in names)
    return f"expected {wanted}, got {json_type(instance)}"


def _unknown_key_message(
    context: str, key: str, allowed: list[str], instance: dict, step_type: object = None
) -> str:
    if context == "on":
        triggers = SMS_TRIGGERS if step_type == "sms" else TRIGGERS
        what = "an SMS step's triggers" if step_type == "sms" else "the triggers"
        return (
            f"unknown trigger {show_value(key)}{did_you_mean(key, triggers)}; {what} are "
            + ", ".join(triggers)
        )
    if context == "timeout" and key == "next":
        return 'a timeout names its target with "to", not "next"'
    if context == "step":
        kind = str(instance.get("type"))
        if kind == "end" and key in ("next", "on"):
            return f'an end step finishes the journey: it takes no "{key}"'
        if kind == "wait" and key == "on":
            return (
                f'only email and SMS steps react to events; to wait for one, put a timeout such as "no_reply": '
                f'{{"after": "3d", "to": "…"}} in the email step\'s "on" instead of a {kind} step'
            )
        return (
            f"unknown key {show_value(key)}{did_you_mean(key, allowed)}; {with_article(kind)} step takes "
            + ", ".join(allowed)
        )
    return (
        f"unknown key {show_value(key)}{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}"
    )


def _describe(error: ValidationError, plan: dict) -> list[PlanError]:
    path: Path = tuple(error.absolute_path)
    keyword = error.validator
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    context = _context(path)

    if "propertyNames" in error.absolute_schema_path:
        # The instance is the offending key itself (a step name).
        return [PlanError(json_pointer((*path, str(instance))), name_message(instance))]
    if keyword == "required":
        if not isinstance(instance, dict):
            return []
        return [
            PlanError(
                json_pointer((*path, key)),
                "missing" + (f": {hint}" if (hint := _MISSING_HINTS.get((context, key))) else ""),
            )
            for key in error.validator_value
            if key not in instance
        ]
    if keyword == "additionalProperties":
        if not isinstance(instance, dict):
            return []
        allowed = list(schema.get("properties", {}))
        step_type = None
        if context == "on":
            steps = plan.get("steps")
            step = steps.get(path[1]) if isinstance(steps, dict) else None
            step_type = step.get("type") if isinstance(step, dict) else None
        return [
            PlanError(
                json_pointer((*path, key)),
                _unknown_key_message(context, key, allowed, instance, step_type),
            )
            for key in instance
            if key not in allowed
        ]

    if keyword == "type":
        message = _type_message(context, error.validator_value, instance)
    elif keyword == "enum" and path[-1:] == ("type",) and not isinstance(instance, str):
        message = f"expected a step type ({', '.join(STEP_TYPES)}), got {json_type(instance)}"
    elif keyword == "enum" and path[-1:] == ("type",):
        message = (
            f"unknown step type {show_value(instance)}{did_you_mean(instance, STEP_TYPES)}; "
            f"the step types are {', '.join(STEP_TYPES)}"
        )
    elif keyword == "pattern" and isinstance(instance, str):
        if path[-1:] in (("after",), ("duration",)):
            message = duration_message(DURATION_SHAPE_MESSAGE, instance)
        else:
            message = name_message(instance)
    elif keyword == "minLength":
        message = "must not be empty"
    elif keyword == "maxLength" and isinstance(instance, str):
        if path[-1:] in (("text",), ("html",)):
            message = body_too_long(instance) or "too long"
        elif schema.get("pattern"):
            message = name_message(instance)
        else:
            message = f"too long: {len(instance):,} characters; at most {error.validator_value:,}"
    elif keyword == "minimum":
        message = f"must be a positive whole number, got {show_value(instance)}"
    elif keyword == "maximum":
        message = f"at most {error.validator_value:,}, got {show_value(instance)}"
    elif keyword == "minItems":
        message = "needs at least one variant"
    elif keyword == "maxItems" and isinstance(instance, list):
        message = f"too many variants: {len(instance)}; a step has at most {MAX_VARIANTS}"
    elif keyword == "minProperties":
        message = "needs at least one step"
    elif keyword == "maxProperties" and isinstance(instance, dict):
        message = f"too many steps: {len(instance)}; a plan has at most {MAX_STEPS}"
    elif keyword == "const":
        message = f"expected {show_value(error.validator_value)}"
    else:
        message = f"invalid ({keyword})"
    return [PlanError(json_pointer(path), message)]


def schema_errors(plan: dict, muted_steps: set[str]) -> list[PlanError]:
    errors: list[PlanError] = []
    for error in plan_schema_validator().iter_errors(plan):
        path = tuple(error.absolute_path)
        if len(path) >= 2 and path[0] == "steps" and path[1] in muted_steps:
            continue
        errors.extend(_describe(error, plan))
    return errors
