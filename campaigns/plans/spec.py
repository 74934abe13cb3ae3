"""The vocabulary and limits of the plan format (docs/plan-format.md is the prose version)."""

STEP_TYPES = ("email", "wait", "end", "sms")

EVENT_TRIGGERS = ("delivered", "open", "click", "reply", "bounce", "unsubscribe")
TIMEOUT_TRIGGERS = ("no_open", "no_click", "no_reply")
# What an SMS step may branch on: the carrier's delivery report, a reply, silence.
SMS_EVENT_TRIGGERS = ("delivered", "undelivered", "reply")
SMS_TIMEOUT_TRIGGERS = ("no_reply",)
SMS_TRIGGERS = SMS_EVENT_TRIGGERS + SMS_TIMEOUT_TRIGGERS
TRIGGERS = EVENT_TRIGGERS + TIMEOUT_TRIGGERS

# The event whose arrival cancels each timeout.
TIMEOUT_EVENT = {"no_open": "open", "no_click": "click", "no_reply": "reply"}

MERGE_FIELDS = (
    "lead.first_name",
    "lead.last_name",
    "lead.email",
    "lead.company",
    "lead.title",
    "lead.phone",
    "sender.from_name",
    "sender.from_email",
    "sender.signature",
    "unsubscribe_url",
)
CUSTOM_FIELD_PREFIX = "lead.custom."

MAX_STEPS = 100
MAX_VARIANTS = 10
MAX_WEIGHT = 10_000
MAX_NAME_LENGTH = 64
MAX_SUBJECT_LENGTH = 300
MAX_BODY_BYTES = 100 * 1024
MAX_SMS_BODY_LENGTH = 1600
# Past this many segments a text is refused by some carriers and costs as much as several:
# validation and preview warn.
SMS_SEGMENT_WARNING = 3
MAX_PLAN_BYTES = 2 * 1024 * 1024
# A valid plan is at most 5 levels deep; anything far deeper is garbage, and walking it
# recursively could exhaust the stack.
MAX_DEPTH = 32
