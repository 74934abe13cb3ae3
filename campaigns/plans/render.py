"""Turning a validated plan's email step into what one lead receives."""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.plans.template import ParsedTemplate, template_parse, template_render
from outreach.common.errors import ApplicationError

_LEAD_FIELDS = ("first_name", "last_name", "email", "company", "title")
_SENDER_FIELDS = ("from_name", "from_email", "signature")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None  # None when the variant has no HTML body


def _email_step(plan: object, step_name: str) -> dict:
    steps = plan.get("steps") if isinstance(plan, Mapping) else None
    step = steps.get(step_name) if isinstance(steps, Mapping) else None
    if not isinstance(step, Mapping):
        raise ApplicationError(
            f'The plan has no step named "{step_name}".',
            code="unknown_step",
            extra={"step": [f'no step named "{step_name}"']},
        )
    if step.get("type") != "email":
        raise ApplicationError(
            f'Step "{step_name}" is not an email step.',
            code="not_an_email_step",
            extra={"step": [f'"{step_name}" is {step.get("type")!r}, not an email step']},
        )
    return dict(step)


def _variants(step: Mapping, step_name: str | None) -> list[dict]:
    variants = step.get("variants") if isinstance(step, Mapping) else None
    usable = [v for v in variants if isinstance(v, Mapping)] if isinstance(variants, list) else []
    if not usable:
        where = f"/steps/{step_name}/variants" if step_name else "variants"
        raise ApplicationError(
            "The step has no variants.",
            code="invalid_plan",
            extra={where: ["needs at least one variant"]},
        )
    return [dict(v) for v in usable]


def template_parsed(text: object, pointer: str) -> ParsedTemplate:
    parsed = template_parse(text if isinstance(text, str) else "")
    if parsed.problems:
        raise ApplicationError(
            f"{pointer}: {parsed.problems[0]}",
            code="invalid_plan",
            extra={pointer: list(parsed.problems)},
        )
    return parsed


def merge_values(lead: Mapping, sender: Mapping, unsubscribe_url: str) -> dict[str, object]:
    values: dict[str, object] = {f"lead.{key}": lead.get(key) for key in _LEAD_FIELDS}
    values.update({f"sender.{key}": sender.get(key) for key in _SENDER_FIELDS})
    values["unsubscribe_url"] = unsubscribe_url
    return values


def merge_custom_fields(lead: Mapping) -> Mapping | None:
    # The Lead model calls them custom_fields; templates call them lead.custom.<key>.
    custom = lead.get("custom_fields", lead.get("custom"))
    return custom if isinstance(custom, Mapping) else None


def _subject(
    *,
    plan: Mapping,
    step_name: str,
    step: Mapping,
    variant: Mapping,
    pointer: str,
    values: Mapping[str, object],
    custom: Mapping | None,
    thread_subject: str | None,
    seen: frozenset[str] = frozenset(),
) -> str:
    if "subject" in variant:
        parsed = template_parsed(variant["subject"], pointer)
        return template_render(parsed, values=values, custom=custom, single_line=True).strip()
    thread = step.get("thread_with")
    if not isinstance(thread, str) or thread in seen or thread == step_name:
        raise ApplicationError(
            f'Step "{step_name}" has a variant without a subject and no thread to reply in.',
            code="invalid_plan",
            extra={pointer: ["missing"]},
        )
    if thread_subject is None:
        # Without the subject actually sent in the thread (a preview, say), use the thread
        # step's first variant as this lead would see it.
        thread_step = _email_step(plan, thread)
        thread_subject = _subject(
            plan=plan,
            step_name=thread,
            step=thread_step,
            variant=_variants(thread_step, thread)[0],
            pointer=f"/steps/{thread}/variants/0/subject",
            values=values,
            custom=custom,
            thread_subject=None,
            seen=seen | {step_name},
        )
    thread_subject = " ".join(thread_subject.split())
    if thread_subject.lower().startswith("re:"):
        return thread_subject
    return f"Re: {thread_subject}"


def plan_render_step(
    *,
    plan: Mapping,
    step_name: str,
    variant_name: str,
    lead: Mapping,
    sender: Mapping,
    unsubscribe_url: str,
    thread_subject: str | None = None,
) -> RenderedEmail:
    """Render one variant of an email step for one lead.

    ``lead`` has the Lead fields (first_name, last_name, email, company, title, custom_fields);
    ``sender`` has the SenderIdentity fields (from_name, from_email, signature). Missing values
    render as their ``default`` or as nothing. Values are HTML-escaped in the HTML body only.

    A variant without a subject replies in its ``thread_with`` thread: its subject is
    "Re: " + ``thread_subject`` (pass the subject the lead actually received there); when that is
    not given, the thread step's first variant is rendered for this lead instead.

    Raises ApplicationError for an unknown step or variant, a non-email step, or a template
    error (the plan should have been validated, so that last one means it was not).
    """
    step = _email_step(plan, step_name)
    variants = _variants(step, step_name)
    matching = [index for index, v in enumerate(variants) if v.get("name") == variant_name]
    if not matching:
        raise ApplicationError(
            f'Step "{step_name}" has no variant named "{variant_name}".',
            code="unknown_variant",
            extra={"variant": [f'no variant named "{variant_name}"']},
        )
    index = matching[0]
    variant = variants[index]
    values = merge_values(lead, sender, unsubscribe_url)
    custom = merge_custom_fields(lead)
    base = f"/steps/{step_name}/variants/{index}"

    subject = _subject(
        plan=plan,
        step_name=step_name,
        step=step,
        variant=variant,
        pointer=f"{base}/subject",
        values=values,
        custom=custom,
        thread_subject=thread_subject,
    )
    text = template_render(
        template_parsed(variant.get("text"), f"{base}/text"), values=values, custom=custom
    )
    html = None
    if isinstance(variant.get("html"), str):
        parsed_html = template_parsed(variant["html"], f"{base}/html")
        html = template_render(parsed_html, values=values, custom=custom, as_html=True)
    return RenderedEmail(subject=subject, text=text, html=html)


def plan_pick_variant(*, step: Mapping, key: str) -> str:
    """The name of the variant a key gets: weighted, and the same key always gets the same one.

    Use a key that is stable for one enrollment at one step, e.g. f"{enrollment_id}:{step_name}",
    so a retried send renders the same variant and different steps choose independently.
    """
    variants = _variants(step, None)
    weights = []
    for variant in variants:
        weight = variant.get("weight", 1)
        # A validated plan has positive integer weights; anything else counts as 1.
        ok = isinstance(weight, int) and not isinstance(weight, bool) and weight > 0
        weights.append(weight if ok else 1)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    # 64 bits modulo a total of at most 100,000: the bias is far below anything measurable.
    point = int.from_bytes(digest[:8], "big") % sum(weights)
    for variant, weight in zip(variants, weights, strict=True):
        if point < weight:
            return str(variant.get("name"))
        point -= weight
    raise AssertionError("unreachable: point < sum(weights)")
