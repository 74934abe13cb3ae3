"""Plan validation: every kind of mistake is reported at its exact JSON pointer with a reason.

Most cases change one thing in a valid plan and assert that this one problem, and nothing else,
is reported: a validator that piles consequential errors on top of the real one is hard to use.
"""

import copy
import hashlib
import json
import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from campaigns.plans import (
    Duration,
    PlanError,
    plan_canonical_json,
    plan_checksum,
    plan_duration_parse,
    plan_schema,
    plan_validate,
    plan_validate_or_raise,
)
from campaigns.plans.problems import error_sort_key
from outreach.common.errors import ApplicationError, api_exception_handler

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plan-format.md"


def base_plan() -> dict:
    """A valid plan: A/B intro, branch on open vs no_open, a threaded bump, two endings."""
    return {
        "name": "Test plan",
        "start": "intro",
        "steps": {
            "intro": {
                "type": "email",
                "variants": [
                    {
                        "name": "a",
                        "weight": 1,
                        "subject": "Hi {{ lead.first_name }}",
                        "text": "Hello",
                    },
                    {
                        "name": "b",
                        "weight": 1,
                        "subject": "Hey",
                        "text": "Hello",
                        "html": "<p>Hi</p>",
                    },
                ],
                "on": {
                    "open": "pause",
                    "reply": "replied",
                    "no_open": {"after": "3 business_days", "to": "bump"},
                },
            },
            "pause": {"type": "wait", "duration": "1d", "next": "bump"},
            "bump": {
                "type": "email",
                "thread_with": "intro",
                "variants": [{"name": "main", "text": "Bump"}],
                "on": {"reply": "replied", "no_reply": {"after": "4d", "to": "done"}},
            },
            "replied": {"type": "end", "outcome": "replied"},
            "done": {"type": "end", "outcome": "no_response"},
        },
    }


def docs_examples() -> list[tuple[str, dict]]:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- plan-example: valid([^>]*)-->\n```json\n(.*?)\n```", text, re.S)
    return [(label.strip() or "example", json.loads(body)) for label, body in blocks]


def only_error(plan: object, **kwargs) -> PlanError:
    errors = plan_validate(plan=plan, **kwargs)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def pointers(plan: object, **kwargs) -> list[str]:
    return [error.pointer for error in plan_validate(plan=plan, **kwargs)]


def steps(plan: dict) -> dict:
    return plan["steps"]


# --- valid plans --------------------------------------------------------------------------------


def test_a_valid_plan_has_no_errors():
    assert plan_validate(plan=base_plan()) == []
    assert plan_validate_or_raise(plan=base_plan()) is None


def test_every_example_in_the_docs_validates_cleanly():
    examples = docs_examples()
    labels = [label for label, _ in examples]
    assert "worked-example" in labels
    for label, plan in examples:
        assert plan_validate(plan=plan) == [], label


def test_the_worked_example_has_what_the_docs_promise():
    plan = dict(docs_examples())["worked-example"]
    intro = plan["steps"]["intro"]
    assert [v["weight"] for v in intro["variants"]] == [50, 50]
    assert {"open", "no_open"} <= set(intro["on"])
    assert intro["on"]["no_open"]["after"] == "3 business_days"
    assert any(step.get("thread_with") for step in plan["steps"].values())
    assert {s["outcome"] for s in plan["steps"].values() if s["type"] == "end"} >= {
        "replied",
        "no_response",
    }


def test_the_published_schema_is_valid_draft_2020_12_and_accepts_the_docs_examples():
    schema = plan_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = Draft202012Validator(schema)
    for label, plan in docs_examples():
        assert list(validator.iter_errors(plan)) == [], label
    broken = base_plan()
    broken["colour"] = "red"
    assert list(validator.iter_errors(broken))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: steps(p)["bump"]["on"].update(open="pause"), id="loop-through-wait"),
        pytest.param(
            lambda p: steps(p)["intro"]["on"]["no_open"].update(to="intro"),
            id="loop-through-timeout",
        ),
        pytest.param(lambda p: steps(p)["intro"].update(count_machine_opens=True), id="machine"),
        pytest.param(lambda p: p.update({"$schema": "./schema.json"}), id="dollar-schema"),
        pytest.param(
            lambda p: steps(p)["bump"]["on"].update(
                no_open={"after": "1d", "to": "done"}, no_click={"after": "2d", "to": "done"}
            ),
            id="several-timeouts-one-handled",
        ),
        pytest.param(
            lambda p: steps(p)["bump"]["variants"][0].update(
                text="{{ lead.custom.industry }} {{ lead.custom.job-title | default:'you' }}"
            ),
            id="custom-fields",
        ),
        pytest.param(lambda p: steps(p)["intro"]["on"].update(bounce="done"), id="bounce-to-end"),
        pytest.param(
            lambda p: steps(p).update(
                bump={
                    "type": "email",
                    "variants": [{"name": "x", "subject": "s", "text": "t"}],
                    "next": "done",
                }
            ),
            id="email-with-next",
        ),
    ],
)
def test_valid_variations_pass(change: Callable[[dict], None]):
    plan = base_plan()
    change(plan)
    assert plan_validate(plan=plan) == []


@pytest.mark.parametrize(
    "duration",
    [
        "30m",
        "4h",
        "3d",
        "1 business_day",
        "2 business_days",
        "1 business_days",
        "365d",
        "260 business_days",
        "525600m",
    ],
)
def test_valid_durations(duration: str):
    plan = base_plan()
    steps(plan)["pause"]["duration"] = duration
    steps(plan)["intro"]["on"]["no_open"]["after"] = duration
    assert plan_validate(plan=plan) == []


# --- one mistake, one error ---------------------------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict], None]:
    """A change that sets the value at a slash path (list indexes as digits)."""

    def change(plan: dict) -> None:
        *parents, last = path.split("/")
        node = plan
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def _delete(path: str) -> Callable[[dict], None]:
    def change(plan: dict) -> None:
        *parents, last = path.split("/")
        node = plan
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        del node[last]

    return change


SINGLE_MISTAKES = [
    ("unknown-top-level-key", _set("colour", "red"), "/colour", 'unknown key "colour"'),
    ("missing-start", _delete("start"), "/start", "missing: the name of the step"),
    (
        "start-not-a-step",
        _set("start", "intr"),
        "/start",
        'no step named "intr" (did you mean "intro"?)',
    ),
    ("start-not-a-string", _set("start", 3), "/start", "expected a string, got a number"),
    (
        "unknown-step-type",
        _set("steps/pause/type", "sleep"),
        "/steps/pause/type",
        'unknown step type "sleep"',
    ),
    (
        "step-type-not-a-string",
        _set("steps/pause/type", 3),
        "/steps/pause/type",
        "expected a step type (email, wait, end, sms), got a number",
    ),
    (
        "missing-step-type",
        _delete("steps/pause/type"),
        "/steps/pause/type",
        "missing: one of email, wait, end, sms",
    ),
    (
        "step-not-an-object",
        _set("steps/pause", "wait 1d"),
        "/steps/pause",
        "expected an object, got a string",
    ),
    (
        "unknown-key-in-step",
        _set("steps/intro/delay", "1d"),
        "/steps/intro/delay",
        'unknown key "delay"',
    ),
    (
        "misspelt-key-in-step",
        _set("steps/intro/varients", []),
        "/steps/intro/varients",
        '(did you mean "variants"?)',
    ),
    (
        "unknown-key-in-variant",
        _set("steps/intro/variants/0/body", "x"),
        "/steps/intro/variants/0/body",
        'unknown key "body"',
    ),
    (
        "end-with-next",
        _set("steps/done/next", "intro"),
        "/steps/done/next",
        'an end step finishes the journey: it takes no "next"',
    ),
    (
        "wait-with-on",
        _set("steps/pause/on", {"reply": "replied"}),
        "/steps/pause/on",
        "only email and SMS steps react to events",
    ),
    (
        "unknown-trigger",
        _set("steps/intro/on/opened", "pause"),
        "/steps/intro/on/opened",
        'unknown trigger "opened" (did you mean "open"?)',
    ),
    (
        "dangling-next",
        _set("steps/pause/next", "bmup"),
        "/steps/pause/next",
        'no step named "bmup" (did you mean "bump"?)',
    ),
    (
        "dangling-event-target",
        _set("steps/intro/on/reply", "replyed"),
        "/steps/intro/on/reply",
        'no step named "replyed"',
    ),
    (
        "dangling-timeout-target",
        _set("steps/intro/on/no_open/to", "nope"),
        "/steps/intro/on/no_open/to",
        'no step named "nope"',
    ),
    (
        "unreachable-step",
        _set("steps/old", {"type": "end", "outcome": "old"}),
        "/steps/old",
        'unreachable: no transition from the start step "intro" leads here',
    ),
    (
        "self-loop-without-wait",
        _set("steps/intro/on/click", "intro"),
        "/steps/intro/on/click",
        "loop with no wait: intro → intro",
    ),
    (
        "missing-weight",
        _delete("steps/intro/variants/1/weight"),
        "/steps/intro/variants/1/weight",
        "missing: every variant needs a weight when a step has more than one",
    ),
    (
        "zero-weight",
        _set("steps/intro/variants/0/weight", 0),
        "/steps/intro/variants/0/weight",
        "must be a positive whole number, got 0",
    ),
    (
        "negative-weight",
        _set("steps/intro/variants/0/weight", -3),
        "/steps/intro/variants/0/weight",
        "must be a positive whole number, got -3",
    ),
    (
        "fractional-weight",
        _set("steps/intro/variants/0/weight", 1.5),
        "/steps/intro/variants/0/weight",
        "expected a whole number, got a number",
    ),
    (
        "float-weight",
        _set("steps/intro/variants/0/weight", 2.0),
        "/steps/intro/variants/0/weight",
        "expected a whole number",
    ),
    (
        "boolean-weight",
        _set("steps/intro/variants/0/weight", True),
        "/steps/intro/variants/0/weight",
        "expected a whole number, got true/false",
    ),
    (
        "huge-weight",
        _set("steps/intro/variants/0/weight", 10**6),
        "/steps/intro/variants/0/weight",
        "at most 10,000",
    ),
    (
        "duplicate-variant-name",
        _set("steps/intro/variants/1/name", "a"),
        "/steps/intro/variants/1/name",
        'duplicate variant name "a" (also used by variant 0)',
    ),
    (
        "bad-variant-name",
        _set("steps/intro/variants/1/name", "B side"),
        "/steps/intro/variants/1/name",
        "expected a name made of letters",
    ),
    (
        "missing-variants",
        _delete("steps/bump/variants"),
        "/steps/bump/variants",
        "missing: a list of one or more variants",
    ),
    (
        "no-variants",
        _set("steps/bump/variants", []),
        "/steps/bump/variants",
        "needs at least one variant",
    ),
    (
        "empty-subject",
        _set("steps/intro/variants/0/subject", ""),
        "/steps/intro/variants/0/subject",
        "must not be empty",
    ),
    (
        "blank-text",
        _set("steps/intro/variants/0/text", " \n "),
        "/steps/intro/variants/0/text",
        "must not be empty",
    ),
    (
        "empty-html",
        _set("steps/intro/variants/1/html", ""),
        "/steps/intro/variants/1/html",
        "must not be empty",
    ),
    (
        "missing-text",
        _delete("steps/intro/variants/0/text"),
        "/steps/intro/variants/0/text",
        "missing: the plain-text body",
    ),
    (
        "missing-subject",
        _delete("steps/intro/variants/0/subject"),
        "/steps/intro/variants/0/subject",
        'missing: every variant needs a subject unless the step has "thread_with"',
    ),
    (
        "multi-line-subject",
        _set("steps/intro/variants/0/subject", "Hi\nthere"),
        "/steps/intro/variants/0/subject",
        "must be a single line",
    ),
    (
        "long-subject",
        _set("steps/intro/variants/0/subject", "x" * 301),
        "/steps/intro/variants/0/subject",
        "too long: 301 characters; at most 300",
    ),
    (
        "thread-with-wait-step",
        _set("steps/bump/thread_with", "pause"),
        "/steps/bump/thread_with",
        'thread_with must name an email step; "pause" is a wait step',
    ),
    (
        "thread-with-itself",
        _set("steps/bump/thread_with", "bump"),
        "/steps/bump/thread_with",
        "a step cannot thread with itself",
    ),
    (
        "thread-with-missing-step",
        _set("steps/bump/thread_with", "intr"),
        "/steps/bump/thread_with",
        'no step named "intr" (did you mean "intro"?)',
    ),
    (
        "unclosed-tag",
        _set("steps/intro/variants/0/text", "Hi {{ lead.first_name"),
        "/steps/intro/variants/0/text",
        'at line 1, column 4: "{{" is not closed with "}}"',
    ),
    (
        "unclosed-tag-position",
        _set(
            "steps/intro/variants/0/text",
            "Hello\n\nHi {{ lead.first_name }\nBye {{ sender.from_name }}",
        ),
        "/steps/intro/variants/0/text",
        'at line 3, column 4: "{{" is not closed',
    ),
    (
        "stray-close",
        _set("steps/intro/variants/0/subject", "Hi { lead.first_name }}"),
        "/steps/intro/variants/0/subject",
        'at line 1, column 22: "}}" without an opening "{{"',
    ),
    (
        "empty-tag",
        _set("steps/intro/variants/1/html", "<p>{{ }}</p>"),
        "/steps/intro/variants/1/html",
        'at line 1, column 4: empty merge field "{{ }}"',
    ),
    (
        "unreadable-tag",
        _set("steps/intro/variants/0/text", "{{ lead first_name }}"),
        "/steps/intro/variants/0/text",
        'cannot read "{{ lead first_name }}"',
    ),
    (
        "code-in-tag",
        _set("steps/intro/variants/0/text", "{{ lead.first_name() }}"),
        "/steps/intro/variants/0/text",
        "cannot read",
    ),
    (
        "unknown-filter",
        _set("steps/intro/variants/0/text", "{{ lead.first_name | upper }}"),
        "/steps/intro/variants/0/text",
        'unknown filter "upper": the only filter is default:"…"',
    ),
    (
        "unquoted-default",
        _set("steps/intro/variants/0/text", "{{ lead.first_name | default:there }}"),
        "/steps/intro/variants/0/text",
        'default needs quoted text, like default:"there"',
    ),
    (
        "unknown-merge-field",
        _set("steps/intro/variants/0/text", "Hi {{ lead.firstname }}"),
        "/steps/intro/variants/0/text",
        'at line 1, column 4: unknown merge field "lead.firstname" (did you mean "lead.first_name"?)',
    ),
    (
        "merge-field-not-offered",
        _set("steps/intro/variants/0/text", "{{ lead.fax }}"),
        "/steps/intro/variants/0/text",
        'unknown merge field "lead.fax"',
    ),
    (
        "dunder-merge-field",
        _set("steps/intro/variants/0/text", "{{ lead.__class__ }}"),
        "/steps/intro/variants/0/text",
        'unknown merge field "lead.__class__"',
    ),
    (
        "custom-without-key",
        _set("steps/intro/variants/0/text", "{{ lead.custom }}"),
        "/steps/intro/variants/0/text",
        '"lead.custom" needs a key',
    ),
    (
        "custom-nested",
        _set("steps/intro/variants/0/text", "{{ lead.custom.a.b }}"),
        "/steps/intro/variants/0/text",
        'unknown merge field "lead.custom.a.b"',
    ),
    (
        "template-error-in-subject",
        _set("steps/intro/variants/0/subject", "{{ sender.name }}"),
        "/steps/intro/variants/0/subject",
        'unknown merge field "sender.name"',
    ),
    (
        "timeout-without-after",
        _set("steps/intro/on/no_open", {"to": "bump"}),
        "/steps/intro/on/no_open/after",
        'missing: a timeout needs "after", a duration like "3d"',
    ),
    (
        "timeout-without-to",
        _set("steps/intro/on/no_open", {"after": "3d"}),
        "/steps/intro/on/no_open/to",
        'missing: a timeout needs "to"',
    ),
    (
        "timeout-as-a-step-name",
        _set("steps/bump/on/no_reply", "done"),
        "/steps/bump/on/no_reply",
        'a timeout needs a duration: write {"after": "3d", "to": "done"}',
    ),
    (
        "event-as-a-timeout",
        _set("steps/intro/on/open", {"after": "1d", "to": "pause"}),
        "/steps/intro/on/open",
        "an event trigger names the step to go to",
    ),
    (
        "end-without-outcome",
        _delete("steps/done/outcome"),
        "/steps/done/outcome",
        "missing: a label for how the journey ended",
    ),
    (
        "bad-outcome",
        _set("steps/done/outcome", "no response"),
        "/steps/done/outcome",
        "expected a name made of letters",
    ),
    (
        "wait-without-duration",
        _delete("steps/pause/duration"),
        "/steps/pause/duration",
        "missing: how long to wait",
    ),
    (
        "machine-opens-not-boolean",
        _set("steps/intro/count_machine_opens", "yes"),
        "/steps/intro/count_machine_opens",
        "expected true or false, got a string",
    ),
    (
        "email-with-next-and-on",
        _set("steps/bump/next", "done"),
        "/steps/bump/next",
        'an email step takes "next" (move on right after sending) or "on"',
    ),
    (
        "on-without-timeout",
        _set("steps/bump/on", {"reply": "done"}),
        "/steps/bump/on",
        "no timeout: a lead who never opens, clicks or replies would stay on this step forever",
    ),
    (
        "every-timeout-cancellable",
        _set("steps/bump/on", {"reply": "replied", "no_open": {"after": "1d", "to": "done"}}),
        "/steps/bump/on",
        'a lead who opens would stay on this step forever: that cancels the "no_open" timeout and no trigger handles it; add an "open" trigger',
    ),
    (
        "bounce-to-an-email",
        _set("steps/intro/on/bounce", "bump"),
        "/steps/intro/on/bounce",
        'a bounced address cannot be emailed again, so "bounce" must lead to an end step; "bump" is an email step',
    ),
    (
        "unsubscribe-to-a-wait",
        _set("steps/bump/on/unsubscribe", "pause"),
        "/steps/bump/on/unsubscribe",
        '"unsubscribe" must lead to an end step; "pause" is a wait step',
    ),
    (
        "too-many-variants",
        _set(
            "steps/bump/variants", [{"name": f"v{i}", "weight": 1, "text": "t"} for i in range(11)]
        ),
        "/steps/bump/variants",
        "too many variants: 11; a step has at most 10",
    ),
    (
        "body-over-100kb-of-utf8",
        _set("steps/intro/variants/0/text", "é" * 60_000),
        "/steps/intro/variants/0/text",
        "too long: 120,000 bytes of UTF-8; at most 100 KB",
    ),
    (
        "body-over-100k-characters",
        _set("steps/intro/variants/1/html", "x" * 102_401),
        "/steps/intro/variants/1/html",
        "too long: 102,401 bytes of UTF-8",
    ),
]


@pytest.mark.parametrize(
    ("change", "pointer", "text"),
    [
        pytest.param(change, pointer, text, id=name)
        for name, change, pointer, text in SINGLE_MISTAKES
    ],
)
def test_one_mistake_gives_one_error_at_its_pointer(change, pointer: str, text: str):
    plan = base_plan()
    change(plan)
    error = only_error(plan)
    assert error.pointer == pointer
    assert text in error.message
    assert str(error) == f"{pointer}: {error.message}"


@pytest.mark.parametrize(
    "duration",
    ["3 days", "0d", "3", "3 d", "1.5h", "3D", "-1d", "3d ", "3d\n", "2 business days", "03d", ""],
)
def test_bad_durations_are_reported_at_their_pointer(duration: str):
    plan = base_plan()
    steps(plan)["pause"]["duration"] = duration
    steps(plan)["intro"]["on"]["no_open"]["after"] = duration
    errors = plan_validate(plan=plan)
    expected = {"/steps/intro/on/no_open/after", "/steps/pause/duration"}
    assert {e.pointer for e in errors} == expected
    for error in errors:
        assert error.message.startswith('expected a duration like "3d"'), error
        assert error.message.endswith(f"got {json.dumps(duration)}")


@pytest.mark.parametrize(
    "duration",
    ["366d", "8761h", "525601m", "261 business_days", "9" * 5000 + "d"],
    ids=["366d", "8761h", "525601m", "261-business-days", "5000-digits"],
)
def test_durations_longer_than_a_year_are_refused(duration: str):
    plan = base_plan()
    steps(plan)["pause"]["duration"] = duration
    error = only_error(plan)
    assert error.pointer == "/steps/pause/duration"
    assert error.message.startswith("too long: a duration is at most 365 days")


def test_a_duration_that_is_not_a_string():
    plan = base_plan()
    steps(plan)["pause"]["duration"] = 3
    error = only_error(plan)
    assert (error.pointer, error.message) == (
        "/steps/pause/duration",
        "expected a string, got a number",
    )


@pytest.mark.parametrize("plan", [None, [], "plan", 3, True, 1.5])
def test_not_an_object(plan: object):
    error = only_error(plan)
    assert error.pointer == ""
    assert error.message.startswith('expected a JSON object with "start" and "steps", got ')
    assert str(error) == error.message


def test_missing_steps_and_empty_steps():
    plan = base_plan()
    del plan["steps"]
    assert [str(e) for e in plan_validate(plan=plan)] == [
        '/start: no step named "intro"',
        "/steps: missing: an object of named steps",
    ]
    plan["steps"] = {}
    assert [str(e) for e in plan_validate(plan=plan)] == [
        '/start: no step named "intro"',
        "/steps: needs at least one step",
    ]
    plan["steps"] = []
    assert pointers(plan) == ["/start", "/steps"]


def test_a_template_reports_at_most_ten_problems():
    plan = base_plan()
    steps(plan)["intro"]["variants"][0]["text"] = "}}" * 50_000
    errors = plan_validate(plan=plan)
    assert [e.pointer for e in errors] == ["/steps/intro/variants/0/text"] * 10
    assert errors[0].message == 'at line 1, column 1: "}}" without an opening "{{"'


def test_a_loop_of_emails_with_no_wait_names_the_loop():
    plan = {
        "start": "a",
        "steps": {
            "a": {
                "type": "email",
                "variants": [{"name": "x", "subject": "s", "text": "t"}],
                "next": "b",
            },
            "b": {
                "type": "email",
                "variants": [{"name": "x", "subject": "s", "text": "t"}],
                "on": {"delivered": "a", "open": "done", "no_open": {"after": "1d", "to": "done"}},
            },
            "done": {"type": "end", "outcome": "done"},
        },
    }
    error = only_error(plan)
    assert error.pointer == "/steps/a/next"
    assert error.message.startswith("loop with no wait: a → b → a;")


def test_a_step_from_which_no_end_can_be_reached():
    plan = {
        "start": "a",
        "steps": {
            "a": {
                "type": "email",
                "variants": [{"name": "x", "subject": "s", "text": "t"}],
                "next": "w",
            },
            "w": {"type": "wait", "duration": "7d", "next": "a"},
        },
    }
    errors = plan_validate(plan=plan)
    assert [e.pointer for e in errors] == ["/steps/a", "/steps/w"]
    assert all("no path from this step reaches an end step" in e.message for e in errors)


def test_thread_with_a_step_that_does_not_always_run_before():
    plan = base_plan()
    steps(plan)["intro"]["on"]["open"] = "nudge"
    steps(plan)["nudge"] = {
        "type": "email",
        "thread_with": "intro",
        "variants": [{"name": "main", "text": "Nudge"}],
        "on": {"reply": "replied", "no_reply": {"after": "2d", "to": "pause"}},
    }
    steps(plan)["bump"]["thread_with"] = "nudge"
    error = only_error(plan)
    assert error.pointer == "/steps/bump/thread_with"
    assert error.message.startswith(
        '"nudge" does not always run before this step: a lead can get here by intro → bump '
        "without it"
    )
    steps(plan)["bump"]["thread_with"] = "intro"
    assert plan_validate(plan=plan) == []


def test_an_email_step_with_neither_next_nor_on():
    plan = base_plan()
    del steps(plan)["bump"]["on"]
    errors = plan_validate(plan=plan)
    # "done" was only reachable through bump's timeout, so it is unreachable now too.
    assert [e.pointer for e in errors] == ["/steps/bump", "/steps/done"]
    assert errors[0].message.startswith("nothing moves this step forward")


def test_several_cancellable_timeouts_name_every_event():
    plan = base_plan()
    steps(plan)["bump"]["on"] = {
        "reply": "replied",
        "no_open": {"after": "1d", "to": "done"},
        "no_click": {"after": "2d", "to": "done"},
    }
    error = only_error(plan)
    assert error.message.startswith("a lead who opens and clicks would stay on this step forever")
    assert error.message.endswith('add an "open" or "click" trigger')


def test_sms_steps_are_refused_unless_enabled():
    plan = base_plan()
    steps(plan)["text"] = {"type": "sms", "body": "Hi {{ lead.first_name }}", "next": "bump"}
    steps(plan)["pause"]["next"] = "text"
    error = only_error(plan)
    assert (error.pointer, error.message) == ("/steps/text/type", "sms steps are not enabled yet")
    assert plan_validate(plan=plan, sms_enabled=True) == []

    del steps(plan)["text"]["body"]
    # Disabled: one clear error, not a list of what the sms step lacks.
    assert [str(e) for e in plan_validate(plan=plan)] == [
        "/steps/text/type: sms steps are not enabled yet"
    ]
    error = only_error(plan, sms_enabled=True)
    assert error.pointer == "/steps/text/body"
    assert error.message.startswith("missing")

    steps(plan)["text"]["body"] = "{{ lead.firstname }}"
    assert pointers(plan, sms_enabled=True) == ["/steps/text/body"]


def test_too_many_steps():
    plan = {"start": "s0", "steps": {f"s{i}": {"type": "end", "outcome": "x"} for i in range(101)}}
    error = only_error(plan)
    assert (error.pointer, error.message) == (
        "/steps",
        "too many steps: 101; a plan has at most 100",
    )


def test_a_plan_over_two_megabytes_is_refused_whole():
    plan = base_plan()
    for i in range(25):
        steps(plan)[f"big{i}"] = {
            "type": "email",
            "variants": [{"name": "x", "subject": "s", "text": "y" * 100_000}],
            "next": "done",
        }
    error = only_error(plan)
    assert (error.pointer, error.message) == ("", "the plan is too large: at most 2 MB")


def test_step_names_are_escaped_in_pointers():
    plan = base_plan()
    steps(plan)["a/b~c"] = steps(plan).pop("done")
    steps(plan)["bump"]["on"]["no_reply"]["to"] = "a/b~c"
    error = only_error(plan)
    assert error.pointer == "/steps/a~1b~0c"
    assert error.message.startswith('expected a name made of letters, digits, "_" or "-"')


def test_all_errors_are_reported_sorted_by_pointer():
    plan = base_plan()
    plan["colour"] = "red"
    steps(plan)["pause"]["duration"] = "3 days"
    del steps(plan)["done"]["outcome"]
    variants = [{"name": f"v{i}", "weight": 1, "subject": "s", "text": "t"} for i in range(12)]
    variants[2]["weight"] = 0
    variants[10]["weight"] = 0
    steps(plan)["intro"]["variants"] = variants
    assert pointers(plan) == [
        "/colour",
        "/steps/done/outcome",
        "/steps/intro/variants",
        "/steps/intro/variants/2/weight",
        "/steps/intro/variants/10/weight",
        "/steps/pause/duration",
    ]


# --- garbage ------------------------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "not a JSON value: set"),
        ((1, 2), "not a JSON value: tuple"),
        (b"bytes", "not a JSON value: bytes"),
        (Opaque(), "not a JSON value: Opaque"),
        (math.nan, "expected a finite number"),
        (math.inf, "expected a finite number"),
        (10**5000, "number too large"),
        ("a\x00b", "this text contains a NUL character, which cannot be stored"),
        ("\ud800", "this text is not valid Unicode (it contains a lone surrogate)"),
    ],
    ids=["set", "tuple", "bytes", "object", "nan", "inf", "huge-int", "nul", "surrogate"],
)
def test_values_json_cannot_hold_are_refused(value: object, message: str):
    plan = base_plan()
    steps(plan)["pause"]["description"] = value
    error = only_error(plan)
    assert (error.pointer, error.message) == ("/steps/pause/description", message)


def test_keys_json_cannot_hold_are_refused():
    plan = base_plan()
    steps(plan)["pause"][7] = "x"
    steps(plan)["bump"]["\udcff"] = "x"
    assert [str(e) for e in plan_validate(plan=plan)] == [
        "/steps/bump/?: this key is not valid Unicode (it contains a lone surrogate)",
        "/steps/pause: keys must be strings, got a number",
    ]


def test_deep_and_self_containing_structures_are_refused():
    deep: list = []
    node = deep
    for _ in range(10_000):
        node.append([])
        node = node[0]
    error = only_error({"start": "a", "steps": deep})
    assert error.message == "nested too deeply (more than 32 levels)"

    loop: dict = {"start": "a"}
    loop["steps"] = loop
    assert only_error(loop).message == "nested too deeply (more than 32 levels)"


def test_validate_or_raise_gives_the_api_every_pointer_and_reason():
    plan = base_plan()
    plan["start"] = "intr"
    steps(plan)["pause"]["duration"] = "soon"
    with pytest.raises(ApplicationError) as caught:
        plan_validate_or_raise(plan=plan)
    exc = caught.value
    assert exc.code == "invalid_plan"
    assert exc.message == (
        'The plan is invalid: /start: no step named "intr" (did you mean "intro"?) (and 1 more)'
    )
    assert list(exc.extra) == ["/start", "/steps/pause/duration"]
    assert exc.extra["/steps/pause/duration"][0].startswith('expected a duration like "3d"')

    response = api_exception_handler(exc, {})
    assert response.status_code == 400
    assert response.data["error"]["code"] == "invalid_plan"
    assert response.data["error"]["fields"] == exc.extra


# --- fuzzing ------------------------------------------------------------------------------------

_WORDS = [
    "start", "steps", "type", "email", "wait", "end", "sms", "variants", "name", "weight",
    "subject", "text", "html", "next", "on", "after", "to", "duration", "outcome", "thread_with",
    "count_machine_opens", "open", "no_open", "reply", "no_reply", "click", "bounce", "intro",
    "pause", "bump", "done", "3d", "2 business_days", "{{ lead.first_name }}", "{{", "}}", "",
    "a/b", "~", "é",
]  # fmt: skip


def _random_json(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                1,
                2**70,
                1.5,
                -0.0,
                rng.choice(_WORDS),
                rng.choice(_WORDS) * 3,
            ]
        )
    if roll < 0.7:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(_WORDS): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _mutate(rng: random.Random, plan: dict) -> dict:
    plan = copy.deepcopy(plan)
    for _ in range(rng.randint(1, 4)):
        node: object = plan
        while True:
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            containers = [(k, v) for k, v in children if isinstance(v, dict | list)]
            if not children:
                break
            key, child = rng.choice(children)
            if containers and rng.random() < 0.7:
                key, child = rng.choice(containers)
                node = child
                continue
            action = rng.random()
            if isinstance(node, dict) and action < 0.3:
                del node[key]
            elif isinstance(node, dict) and action < 0.5:
                node[rng.choice(_WORDS)] = _random_json(rng)
            else:
                node[key] = _random_json(rng)
            break
    return plan


def _check_outcome(plan: object) -> None:
    errors = plan_validate(plan=plan)
    assert isinstance(errors, list)
    assert errors == sorted(errors, key=error_sort_key)
    for error in errors:
        assert isinstance(error, PlanError)
        assert error.pointer == "" or error.pointer.startswith("/")
        assert error.message and "internal error" not in error.message, error
    try:
        plan_validate_or_raise(plan=plan)
    except ApplicationError as exc:
        assert errors
        json.dumps(exc.extra)  # the API can serialise it
        exc.message.encode("utf-8")
    else:
        assert not errors


def test_random_json_never_crashes_validation():
    rng = random.Random(20240604)
    for _ in range(400):
        _check_outcome(_random_json(rng))
        _check_outcome({"start": rng.choice(_WORDS), "steps": _random_json(rng)})


def test_mutated_valid_plans_never_crash_validation():
    rng = random.Random(4)
    worked = dict(docs_examples())["worked-example"]
    for index in range(250):
        _check_outcome(_mutate(rng, worked if index % 2 else base_plan()))


# --- checksum and durations ---------------------------------------------------------------------


def test_checksum_ignores_key_order_and_whitespace():
    plan = base_plan()
    reordered = json.loads(json.dumps(plan, sort_keys=True, indent=4))
    reversed_keys = json.loads(json.dumps(plan), object_pairs_hook=lambda pairs: dict(pairs[::-1]))
    assert list(reversed_keys) != list(plan)
    assert (
        plan_checksum(plan=plan)
        == plan_checksum(plan=reordered)
        == plan_checksum(plan=reversed_keys)
    )


def test_checksum_is_sha256_of_the_canonical_json():
    plan = {"steps": {"b": {"outcome": "é", "type": "end"}}, "start": "b"}
    canonical = '{"start":"b","steps":{"b":{"outcome":"é","type":"end"}}}'.encode()
    assert plan_canonical_json(plan=plan) == canonical
    assert plan_checksum(plan=plan) == hashlib.sha256(canonical).hexdigest()
    assert len(plan_checksum(plan=plan)) == 64


def test_checksum_changes_with_the_content():
    plan = base_plan()
    changed = base_plan()
    steps(changed)["pause"]["duration"] = "2d"
    assert plan_checksum(plan=plan) != plan_checksum(plan=changed)


def test_checksum_of_something_that_is_not_json_is_an_application_error():
    with pytest.raises(ApplicationError) as caught:
        plan_checksum(plan={"a": {1, 2}})
    assert caught.value.code == "invalid_plan"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", Duration(30, "minutes")),
        ("4h", Duration(4, "hours")),
        ("3d", Duration(3, "days")),
        ("1 business_day", Duration(1, "business_days")),
        ("2 business_days", Duration(2, "business_days")),
    ],
)
def test_duration_parse(text: str, expected: Duration):
    assert plan_duration_parse(text=text) == expected


def test_duration_parse_refuses_what_validation_refuses():
    for text in ["3 days", "0d", "400d"]:
        with pytest.raises(ApplicationError) as caught:
            plan_duration_parse(text=text)
        assert caught.value.code == "invalid_duration"
    assert Duration(90, "minutes").fixed_timedelta().total_seconds() == 5400
    assert Duration(2, "business_days").fixed_timedelta() is None
