"""Rendering plan emails for a lead, and picking A/B variants."""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.plans import RenderedEmail, plan_pick_variant, plan_render_step, plan_validate
from outreach.common.errors import ApplicationError

SENDER = {
    "from_name": "Jo Seller",
    "from_email": "jo@vendor.example",
    "signature": "Jo\nHead of Sales",
}
UNSUBSCRIBE = "https://links.example/u/abc?t=1&x=2"
ROOT = Path(__file__).resolve().parents[2]


def plan_with(**variant: str) -> dict:
    """A valid one-email plan whose only variant is ``variant``."""
    plan = {
        "start": "intro",
        "steps": {
            "intro": {
                "type": "email",
                "variants": [{"name": "main", "subject": "Hello", "text": "Hi", **variant}],
                "next": "done",
            },
            "done": {"type": "end", "outcome": "sent"},
        },
    }
    assert plan_validate(plan=plan) == []
    return plan


def render(
    plan: dict, lead: dict | None = None, step: str = "intro", variant: str = "main", **kwargs
) -> RenderedEmail:
    return plan_render_step(
        plan=plan,
        step_name=step,
        variant_name=variant,
        lead=lead if lead is not None else {},
        sender=SENDER,
        unsubscribe_url=UNSUBSCRIBE,
        **kwargs,
    )


def test_every_merge_field_renders():
    plan = plan_with(
        subject="{{ lead.first_name }} at {{ lead.company }}",
        text=(
            "{{lead.first_name}} {{ lead.last_name }} <{{ lead.email }}>, {{ lead.title }}\n"
            "{{ sender.from_name }} <{{ sender.from_email }}>\n{{ sender.signature }}\n"
            "{{ unsubscribe_url }}"
        ),
    )
    lead = {
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "ann@acme.example",
        "company": "Acme",
        "title": "CTO",
    }
    rendered = render(plan, lead)
    assert rendered.subject == "Ann at Acme"
    assert rendered.text == (
        "Ann Lee <ann@acme.example>, CTO\n"
        "Jo Seller <jo@vendor.example>\nJo\nHead of Sales\n"
        "https://links.example/u/abc?t=1&x=2"
    )
    assert rendered.html is None


def test_missing_values_render_empty_or_their_default():
    plan = plan_with(
        subject="Hi {{ lead.first_name }}",
        text=(
            'Hi {{ lead.first_name | default:"there" }}, '
            "{{ lead.company | default:'your team' }}|{{ lead.title }}|"
            '{{ lead.last_name | default:"say \\"hi\\"" }}'
        ),
    )
    rendered = render(plan, {"first_name": "  ", "company": None})
    assert rendered.subject == "Hi"  # trailing space of the empty value trimmed
    assert rendered.text == 'Hi there, your team||say "hi"'
    assert render(plan, {"first_name": "Ann", "company": "Acme"}).text.startswith("Hi Ann, Acme|")


def test_custom_fields_from_either_key_and_of_any_scalar_type():
    plan = plan_with(
        text=(
            "{{ lead.custom.industry }}/{{ lead.custom.seats }}/{{ lead.custom.paid }}/"
            '{{ lead.custom.tags | default:"none" }}/{{ lead.custom.missing | default:"?" }}/'
            "{{ lead.custom.job-title }}"
        )
    )
    custom = {"industry": "Fintech", "seats": 40, "paid": True, "tags": ["a"], "job-title": "VP"}
    expected = "Fintech/40/true/none/?/VP"
    assert render(plan, {"custom_fields": custom}).text == expected
    assert render(plan, {"custom": custom}).text == expected
    assert render(plan, {}).text == "///none/?/"


def test_values_are_escaped_in_html_but_not_in_text():
    plan = plan_with(
        text="Hi {{ lead.first_name }} from {{ lead.company }}\n{{ sender.signature }}",
        html=(
            '<p class="x">Hi {{ lead.first_name }} from {{ lead.company | default:"<none>" }}</p>'
            '<p>{{ sender.signature }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
        ),
    )
    lead = {"first_name": "<script>alert('x')</script>", "company": 'Smith & "Sons"'}
    rendered = render(plan, lead)
    assert rendered.text == (
        "Hi <script>alert('x')</script> from Smith & \"Sons\"\nJo\nHead of Sales"
    )
    assert rendered.html == (
        '<p class="x">Hi &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; from '
        "Smith &amp; &quot;Sons&quot;</p><p>Jo<br>\nHead of Sales</p>"
        '<a href="https://links.example/u/abc?t=1&amp;x=2">Unsubscribe</a>'
    )
    # Defaults are values too.
    assert "from &lt;none&gt;</p>" in render(plan, {}).html


def test_a_value_can_never_break_the_subject_line():
    plan = plan_with(subject="Hello {{ lead.company }}!")
    rendered = render(plan, {"company": "Acme\r\nBcc: victim@example.com"})
    assert rendered.subject == "Hello Acme Bcc: victim@example.com!"
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_values_are_never_rendered_twice():
    plan = plan_with(text="Hi {{ lead.first_name }}")
    rendered = render(plan, {"first_name": "{{ sender.from_email }}"})
    assert rendered.text == "Hi {{ sender.from_email }}"


def threaded_plan() -> dict:
    plan = {
        "start": "intro",
        "steps": {
            "intro": {
                "type": "email",
                "variants": [
                    {
                        "name": "a",
                        "weight": 1,
                        "subject": "Quick question, {{ lead.first_name }}",
                        "text": "A",
                    },
                    {"name": "b", "weight": 1, "subject": "Another idea", "text": "B"},
                ],
                "next": "bump",
            },
            "bump": {
                "type": "email",
                "thread_with": "intro",
                "variants": [{"name": "main", "text": "Bump"}],
                "next": "again",
            },
            "again": {
                "type": "email",
                "thread_with": "bump",
                "variants": [
                    {"name": "main", "weight": 1, "text": "Again"},
                    {"name": "fresh", "weight": 1, "subject": "New subject", "text": "Fresh"},
                ],
                "next": "done",
            },
            "done": {"type": "end", "outcome": "sent"},
        },
    }
    assert plan_validate(plan=plan) == []
    return plan


def test_a_threaded_step_without_subject_replies_to_the_subject_the_lead_received():
    plan = threaded_plan()
    lead = {"first_name": "Ann"}
    rendered = render(plan, lead, step="bump", thread_subject="Another idea")
    assert rendered.subject == "Re: Another idea"
    assert rendered.text == "Bump"
    # Already a reply: no "Re: Re:".
    assert render(plan, lead, step="again", thread_subject="Re: Another idea").subject == (
        "Re: Another idea"
    )
    assert render(plan, lead, step="again", variant="fresh").subject == "New subject"


def test_without_the_thread_subject_the_thread_steps_first_variant_is_used():
    plan = threaded_plan()
    lead = {"first_name": "Ann"}
    assert render(plan, lead, step="bump").subject == "Re: Quick question, Ann"
    assert render(plan, lead, step="again").subject == "Re: Quick question, Ann"


@pytest.mark.parametrize(
    ("step", "variant", "code"),
    [
        ("nope", "main", "unknown_step"),
        ("intro", "nope", "unknown_variant"),
        ("done", "main", "not_an_email_step"),
    ],
)
def test_rendering_something_that_is_not_there(step: str, variant: str, code: str):
    with pytest.raises(ApplicationError) as caught:
        render(threaded_plan(), step=step, variant=variant)
    assert caught.value.code == code


def test_rendering_an_unvalidated_plan_with_a_bad_template_is_refused():
    plan = plan_with()
    plan["steps"]["intro"]["variants"][0]["text"] = "Hi {{ lead.__class__ }}"
    with pytest.raises(ApplicationError) as caught:
        render(plan)
    assert caught.value.code == "invalid_plan"
    assert list(caught.value.extra) == ["/steps/intro/variants/0/text"]


def test_the_docs_worked_example_renders_every_variant():
    from campaigns.tests.test_plan_validation import docs_examples

    plan = dict(docs_examples())["worked-example"]
    lead = {"first_name": "Ann", "company": "Acme", "custom_fields": {"peer_company": "Globex"}}
    subjects = {}
    for name, step in plan["steps"].items():
        if step["type"] != "email":
            continue
        for variant in step["variants"]:
            rendered = render(plan, lead, step=name, variant=variant["name"])
            subjects[name, variant["name"]] = rendered.subject
            assert "{{" not in rendered.text and "Ann" in rendered.text
    assert subjects == {
        ("intro", "question"): "Quick question, Ann",
        ("intro", "peer"): "How Globex books more demos",
        ("follow_up", "main"): "Re: Quick question, Ann",
        ("bump", "main"): "Re: Quick question, Ann",
        ("breakup", "main"): "Closing the loop",
    }


# --- variants -----------------------------------------------------------------------------------


def test_the_same_key_always_gets_the_same_variant():
    step = {
        "variants": [
            {"name": "a", "weight": 1},
            {"name": "b", "weight": 1},
            {"name": "c", "weight": 1},
        ]
    }
    picks = {f"{i}:intro": plan_pick_variant(step=step, key=f"{i}:intro") for i in range(500)}
    for key, variant in picks.items():
        assert plan_pick_variant(step=step, key=key) == variant
    assert set(picks.values()) == {"a", "b", "c"}


def test_the_choice_is_stable_across_processes_and_releases():
    """Guards against a switch to hash() (randomised per process) or any change of scheme:
    a retried send must render the variant the first attempt recorded."""
    step = {"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]}
    expected = ["b", "a", "a", "a", "b", "a", "a", "b"]
    assert [plan_pick_variant(step=step, key=f"{i}:intro") for i in range(1, 9)] == expected
    code = (
        "import django, json; django.setup();"
        "from campaigns.plans import plan_pick_variant;"
        f"step = json.loads({json.dumps(json.dumps(step))});"
        "print(json.dumps([plan_pick_variant(step=step, key=f'{i}:intro') for i in range(1, 9)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "outreach.settings.dev",
            "PYTHONHASHSEED": "12345",
        },
    )
    assert json.loads(result.stdout) == expected


@pytest.mark.parametrize("weights", [(70, 20, 10), (1, 1), (1, 3), (5, 5, 5, 5)])
def test_the_distribution_follows_the_weights(weights: tuple[int, ...]):
    step = {"variants": [{"name": f"v{i}", "weight": w} for i, w in enumerate(weights)]}
    counts = collections.Counter(
        plan_pick_variant(step=step, key=f"{n}:intro") for n in range(10_000)
    )
    total = sum(weights)
    for i, weight in enumerate(weights):
        share = counts[f"v{i}"] / 10_000
        assert abs(share - weight / total) < 0.02, (weights, counts)


def test_a_single_variant_needs_no_weight():
    step = {"variants": [{"name": "only", "subject": "s", "text": "t"}]}
    assert {plan_pick_variant(step=step, key=str(n)) for n in range(50)} == {"only"}


def test_steps_choose_independently_when_the_key_names_the_step():
    step = {"variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    pairs = collections.Counter(
        (
            plan_pick_variant(step=step, key=f"{n}:intro"),
            plan_pick_variant(step=step, key=f"{n}:bump"),
        )
        for n in range(4_000)
    )
    assert len(pairs) == 4
    assert min(pairs.values()) > 800


def test_a_step_without_variants_cannot_pick():
    with pytest.raises(ApplicationError) as caught:
        plan_pick_variant(step={"type": "wait"}, key="1:x")
    assert caught.value.code == "invalid_plan"
