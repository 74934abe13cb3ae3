"""SMS steps: rendering the body for one lead, and how many segments it costs.

A text message travels in 140-byte segments. Text written only with the GSM 03.38 alphabet
(GSM-7) fits 160 characters in one segment, or 153 per segment once split (the rest is the
concatenation header); the extension characters (``^{}\\[~]|€`` and form feed) take two
places each. One character outside it (an emoji, a curly quote, most accented letters)
switches the whole message to UCS-2: 70 UTF-16 code units in one segment, 67 per segment
once split (an emoji is two units). A character is never cut in two at a segment boundary:
a two-place character that does not fit opens the next segment, leaving a place unused.
Carriers bill each segment, so validation and preview show the count.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.plans.render import merge_custom_fields, merge_values, template_parsed
from campaigns.plans.spec import SMS_SEGMENT_WARNING
from campaigns.plans.template import Field, template_parse, template_render
from outreach.common.errors import ApplicationError

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsSegments:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # places used: GSM-7 septets (extensions count 2) or UTF-16 code units
    segments: int

    @property
    def warning(self) -> str | None:
        if self.segments <= SMS_SEGMENT_WARNING:
            return None
        return (
            f"{self.segments} segments ({self.encoding}, {self.characters} characters): "
            f"texts over {SMS_SEGMENT_WARNING} segments cost as much as {self.segments} "
            "messages and some carriers refuse them"
        )


def sms_segments_count(*, text: str) -> SmsSegments:
    """The encoding a carrier would use for ``text`` and how many segments it takes."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        # An extension character is an escape and its code: never split between segments.
        widths = [2 if char in GSM7_EXTENSION else 1 for char in text]
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        # A character outside the Basic Multilingual Plane (an emoji) is a surrogate pair:
        # two UTF-16 code units that stay in one segment.
        widths = [2 if ord(char) > 0xFFFF else 1 for char in text]
        single, multi, encoding = 70, 67, "UCS-2"
    places = sum(widths)
    if places <= single:
        return SmsSegments(encoding=encoding, characters=places, segments=1 if places else 0)
    segments, used = 1, 0
    for width in widths:
        if used + width > multi:  # this character opens the next segment
            segments, used = segments + 1, 0
        used += width
    return SmsSegments(encoding=encoding, characters=places, segments=segments)


def sms_template_segments(*, body: str) -> SmsSegments | None:
    """The segments of a body template before merge fields are filled in: its fixed text,
    each field counted as its default (or nothing). None when the template does not parse.
    The real count depends on the lead; the preview shows it."""
    parsed = template_parse(body)
    if parsed.problems:
        return None
    fixed = "".join(
        part if isinstance(part, str) else (part.default or "")
        for part in parsed.parts
        if isinstance(part, str | Field)
    )
    return sms_segments_count(text=fixed)


def plan_render_sms(*, plan: Mapping, step_name: str, lead: Mapping, sender: Mapping) -> str:
    """The text one lead receives at an SMS step (merge fields as in email, never escaped;
    ``lead.phone`` is the lead's number). Raises ApplicationError for a step that is not an
    SMS step or a body that does not parse."""
    steps = plan.get("steps") if isinstance(plan, Mapping) else None
    step = steps.get(step_name) if isinstance(steps, Mapping) else None
    if not isinstance(step, Mapping) or step.get("type") != "sms":
        raise ApplicationError(
            f'Step "{step_name}" is not an SMS step.',
            code="not_an_sms_step",
            extra={"step": [f'"{step_name}" is not an SMS step']},
        )
    values = merge_values(lead, sender, "")
    values["lead.phone"] = lead.get("phone")
    parsed = template_parsed(step.get("body"), f"/steps/{step_name}/body")
    return template_render(parsed, values=values, custom=merge_custom_fields(lead)).strip()
