"""Campaign plans: the versioned JSON document that says what a campaign does.

The format is described in docs/plan-format.md and published as schema.json next to this file.
"""

from campaigns.plans.checksum import plan_canonical_json, plan_checksum
from campaigns.plans.durations import Duration, plan_duration_parse
from campaigns.plans.render import RenderedEmail, plan_pick_variant, plan_render_step
from campaigns.plans.schema import plan_schema
from campaigns.plans.sms import (
    SmsSegments,
    plan_render_sms,
    sms_segments_count,
    sms_template_segments,
)
from campaigns.plans.spec import (
    EVENT_TRIGGERS,
    MERGE_FIELDS,
    STEP_TYPES,
    TIMEOUT_EVENT,
    TIMEOUT_TRIGGERS,
)
from campaigns.plans.validate import (
    PlanError,
    plan_sms_segments,
    plan_validate,
    plan_validate_or_raise,
    plan_warnings,
)

__all__ = [
    "EVENT_TRIGGERS",
    "MERGE_FIELDS",
    "STEP_TYPES",
    "TIMEOUT_EVENT",
    "TIMEOUT_TRIGGERS",
    "Duration",
    "PlanError",
    "RenderedEmail",
    "SmsSegments",
    "plan_canonical_json",
    "plan_checksum",
    "plan_duration_parse",
    "plan_pick_variant",
    "plan_render_sms",
    "plan_render_step",
    "plan_schema",
    "plan_sms_segments",
    "plan_validate",
    "plan_validate_or_raise",
    "plan_warnings",
    "sms_segments_count",
    "sms_template_segments",
]
