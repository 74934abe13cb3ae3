"""Tell a human reply from an auto-reply, an out-of-office or a bounce, and find return dates.

Order of evidence, strongest first:

1. A delivery report (``multipart/report; report-type=delivery-status``, or a mailer daemon
   with bounce wording) is a **bounce**.
2. Machine headers: RFC 3834 ``Auto-Submitted`` (anything but ``no``), ``X-Autoreply``,
   ``X-Autorespond``, ``Precedence: bulk/junk/auto_reply/list``, ``X-Auto-Response-Suppress``,
   an auto-reply subject prefix ("Automatic reply:", "Automatische Antwort:" ...), or another
   kind of ``multipart/report`` (a read receipt). With
   absence wording (or a stated return date) it is an **out_of_office**, else an
   **auto_reply**.
3. No machine signal but absence wording in the subject's own prefix, or near the top of a
   short new text: an **out_of_office** (some responders send no headers at all).
4. Anything else is **human**.

Wording is only looked for in what the sender wrote now: quoted history (``>`` lines, "On …
wrote:", Outlook's "-----Original Message-----" and "From: … Sent: …" blocks) is cut first, and
the subject is only read up to the original subject ("Re: …"), so a human reply that quotes an
out-of-office, or answers a campaign about vacations, stays human.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from messaging.inbound.parse import InboundEmail

HUMAN = "human"
AUTO_REPLY = "auto_reply"
OUT_OF_OFFICE = "out_of_office"
BOUNCE = "bounce"


@dataclass(frozen=True)
class Classification:
    kind: str
    return_date: datetime.date | None = None
    reasons: tuple[str, ...] = field(default=())


# --- quoted history ---------------------------------------------------------------------------

_CUT_PATTERNS = [
    # Gmail / Apple Mail / Thunderbird attributions; Gmail wraps long ones onto a second line.
    re.compile(r"^[ \t]*On\b[^\n]{0,300}(?:\n[^\n]{0,300})?\bwrote:[ \t]*$", re.M),
    re.compile(r"^[ \t]*Am\b[^\n]{0,300}(?:\n[^\n]{0,300})?\bschrieb\b[^\n]{0,200}:[ \t]*$", re.M),
    re.compile(r"^[ \t]*Le\b[^\n]{0,300}(?:\n[^\n]{0,300})?\ba écrit[ \t]*:[ \t]*$", re.M),
    re.compile(r"^[ \t]*El\b[^\n]{0,300}(?:\n[^\n]{0,300})?\bescribió[ \t]*:[ \t]*$", re.M),
    re.compile(
        r"^[ \t]*-{2,}[ \t]*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
        r"Mensaje original|Messaggio originale|Forwarded message|Weitergeleitete Nachricht)"
        r"[ \t]*-{2,}",
        re.M | re.I,
    ),
    # Outlook: a header block "From: … / Sent: …" (localised), often after a rule of underscores.
    re.compile(
        r"^[ \t]*\*?(?:From|Von|De|Van|Da)[ \t]*:\*?[^\n]*\n(?:[^\n]*\n){0,2}?"
        r"[ \t]*\*?(?:Sent|Date|Gesendet|Datum|Envoyé|Enviado|Fecha|Verzonden|Inviato)"
        r"[ \t]*:",
        re.M | re.I,
    ),
    re.compile(r"^[ \t]*_{10,}[ \t]*$", re.M),
]


def quoted_history_strip(*, text: str) -> str:
    """The part of a reply its sender just wrote: everything before the first quote marker,
    without ``>``-quoted lines (inline replies keep their new lines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cut = len(text)
    for pattern in _CUT_PATTERNS:
        match = pattern.search(text)
        if match and match.start() < cut:
            cut = match.start()
    kept = [line for line in text[:cut].split("\n") if not line.lstrip().startswith(">")]
    return "\n".join(kept).strip()


_REPLY_PREFIX = re.compile(
    r"^\s*(?:re|aw|antw|sv|vs|ref|rép|rif|r|rv|fw|fwd|wg|tr|enc)\s*(?:\[\d+\])?\s*:", re.I
)


def subject_own_part(*, subject: str) -> str:
    """What the responder put in front of the original subject.

    "Automatic reply: Quick question" gives "Automatic reply"; "Re: Quick question" gives "":
    the original subject is ours, so its words (say, a campaign about vacations) say nothing
    about the reply.
    """
    subject = subject.strip()
    if _REPLY_PREFIX.match(subject):
        return ""
    head, sep, _ = subject.partition(":")
    return head.strip() if sep else subject


# --- signals ----------------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto[ -]?reply|auto[ -]?response|automatic response|autoreply|"
    r"autoresponse|automatische antwort|automatische rückantwort|automatische ruckantwort|"
    r"réponse automatique|reponse automatique|respuesta automática|respuesta automatica|"
    r"risposta automatica|resposta automática|automatisch antwoord)\b",
    re.I,
)

_ABSENCE = re.compile(
    "|".join(
        [
            # English
            r"\bout of (?:the )?office\b",
            r"\bout-of-office\b",
            r"\booo\b",
            r"\bon (?:annual |parental |maternity |paternity |sick |medical )?leave\b",
            r"\bon (?:vacation|holidays?|pto|sabbatical)\b",
            r"\baway from (?:the |my )?(?:office|desk|e-?mail)\b",
            r"\b(?:limited|no) access to (?:my )?e-?mail\b",
            r"\b(?:currently|presently) (?:away|travell?ing|out)\b",
            r"\bi am away\b|\bi['\u2019]m away\b",
            # German
            r"\babwesenheitsnotiz\b",
            r"\babwesend\b",
            r"\babwesenheit\b",
            r"\bnicht im büro\b",
            r"\bau(?:ß|ss)er haus\b",
            r"\b(?:im|in) urlaub\b",
            r"\burlaubsbedingt\b",
            r"\bnicht erreichbar\b",
            r"\belternzeit\b",
            # French
            r"\babsente? du bureau\b",
            r"\babsence du bureau\b",
            r"\bje suis (?:actuellement )?absente?\b",
            r"\bmessage d['\u2019]absence\b",
            r"\ben congés?\b",
            r"\ben vacances\b",
            r"\bhors du bureau\b",
            # Spanish
            r"\bfuera de (?:la )?oficina\b",
            r"\bde vacaciones\b",
            r"\bausente\b",
            r"\bestoy fuera\b",
            r"\bde permiso\b",
        ]
    ),
    re.I,
)

_PRECEDENCE_AUTO = {"bulk", "junk", "auto_reply", "list"}

_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery status notification|delivery (?:has )?failed|mail delivery failed|"
    r"returned mail|returned to sender|failure notice|delivery failure|non remis|"
    r"unzustellbar|nicht zustellbar|no se puede entregar|no entregado",
    re.I,
)

_DAEMON = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)

# Absence wording without any machine signal must sit near the top of a short text: a long
# human reply that mentions being away next week is still a human reply.
_WORDING_ONLY_WINDOW = 400
_WORDING_ONLY_MAX_TEXT = 2000


def _machine_signals(email: InboundEmail) -> list[str]:
    reasons: list[str] = []
    for value in email.header_values("Auto-Submitted"):
        if value.split(";")[0].strip().lower() not in ("", "no"):
            reasons.append(f"Auto-Submitted: {value.strip()}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autogenerated", "X-AutoReply-From"):
        for value in email.header_values(name):
            if value.strip().lower() not in ("no", "false", "0"):
                reasons.append(f"{name}: {value.strip()}")
    for value in email.header_values("Precedence"):
        if value.strip().lower() in _PRECEDENCE_AUTO:
            reasons.append(f"Precedence: {value.strip()}")
    for value in email.header_values("X-Auto-Response-Suppress"):
        if value.strip():
            reasons.append(f"X-Auto-Response-Suppress: {value.strip()}")
    if _AUTO_SUBJECT.match(email.subject):
        reasons.append("auto-reply subject")
    if email.content_type == "multipart/report" and email.report_type not in (
        "",
        "delivery-status",
    ):
        # Read receipts (disposition-notification) and abuse reports: machines, not people.
        reasons.append(f"multipart/report; report-type={email.report_type}")
    return reasons


def _bounce_signals(email: InboundEmail, machine: list[str]) -> list[str]:
    if email.content_type == "multipart/report" and email.report_type in (
        "delivery-status",
        "",
    ):
        return [f"multipart/report; report-type={email.report_type or '?'}"]
    from_daemon = bool(_DAEMON.match(email.from_email))
    bounce_subject = bool(_BOUNCE_SUBJECT.search(email.subject))
    if from_daemon and (bounce_subject or email.envelope_from == "<>"):
        return ["mailer daemon"]
    if bounce_subject and (machine or email.envelope_from == "<>"):
        return ["bounce subject"]
    return []


def inbound_classify(*, email: InboundEmail, received_at: datetime.datetime) -> Classification:
    """Classify an inbound email; an out-of-office also gets its return date when it states one.

    ``received_at`` anchors relative dates ("back on Monday") when the mail has no usable
    ``Date`` header.
    """
    machine = _machine_signals(email)
    bounce = _bounce_signals(email, machine)
    if bounce:
        return Classification(kind=BOUNCE, reasons=tuple(bounce))

    new_text = quoted_history_strip(text=email.body_text)
    own_subject = subject_own_part(subject=email.subject)
    sent = email.date or received_at
    search_text = f"{own_subject}\n{new_text}"
    return_date = return_date_extract(text=search_text, sent_on=sent.date())

    subject_absence = bool(_ABSENCE.search(own_subject))
    body_absence = _ABSENCE.search(new_text)
    if machine:
        if subject_absence or body_absence or return_date:
            reasons = (*machine, "absence wording" if (subject_absence or body_absence) else "")
            return Classification(
                kind=OUT_OF_OFFICE,
                return_date=return_date,
                reasons=tuple(r for r in reasons if r),
            )
        return Classification(kind=AUTO_REPLY, reasons=tuple(machine))
    if subject_absence:
        return Classification(
            kind=OUT_OF_OFFICE, return_date=return_date, reasons=("absence wording in subject",)
        )
    if (
        body_absence
        and body_absence.start() < _WORDING_ONLY_WINDOW
        and len(new_text) <= _WORDING_ONLY_MAX_TEXT
    ):
        return Classification(
            kind=OUT_OF_OFFICE, return_date=return_date, reasons=("absence wording in text",)
        )
    return Classification(kind=HUMAN)


# --- return dates -----------------------------------------------------------------------------

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    [
        "january jan januar jän jänner janvier janv enero ene",
        "february feb februar februari février fevrier févr fevr febrero",
        "march mar märz maerz mär mrz mars marzo",
        "april apr avril avr abril abr",
        "may mai mayo",
        "june jun juni juin junio",
        "july jul juli juillet juil julio",
        "august aug août aout agosto",
        "september sep sept septembre septiembre setiembre",
        "october oct oktober okt octobre octubre",
        "november nov novembre noviembre",
        "december dec dezember dez décembre decembre déc diciembre dic",
    ],
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _number

_MONTH_RE = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th|er|\.|º|°)?"

_ISO_DATE = re.compile(r"\b(?P<year>\d{4})-(?P<num_a>\d{1,2})-(?P<num_b>\d{1,2})\b")
_DATE_PATTERNS = [
    # "December 7", "Monday, Dec. 7th, 2026", "December 1-7"
    re.compile(
        rf"\b(?P<month>{_MONTH_RE})\.?\s+(?:\d{{1,2}}{_ORD}\s*[-\u2013]\s*)?"
        rf"(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<year>\d{{4}}))?",
        re.I,
    ),
    # "7 December", "5. Dezember", "7th of December 2026", "1er décembre", "7 de diciembre de 2026"
    re.compile(
        rf"\b(?P<day>\d{{1,2}}){_ORD}\s*(?:of\s+|de\s+)?(?P<month>{_MONTH_RE})\b\.?"
        rf"(?:,?\s+(?:de\s+)?(?P<year>\d{{4}}))?",
        re.I,
    ),
    _ISO_DATE,
    # 12/07/2026, 12/7, 05.12.2026, 5.12.
    re.compile(r"\b(?P<num_a>\d{1,2})/(?P<num_b>\d{1,2})(?:/(?P<year>\d{2,4}))?\b"),
    re.compile(r"\b(?P<num_a>\d{1,2})\.(?P<num_b>\d{1,2})\.(?P<year>\d{2,4})?"),
]

_WEEKDAYS: dict[str, int] = {}
for _number, _names in enumerate(
    [
        "monday montag lundi lunes",
        "tuesday dienstag mardi martes",
        "wednesday mittwoch mercredi miércoles miercoles",
        "thursday donnerstag jeudi jueves",
        "friday freitag vendredi viernes",
        "saturday samstag sonnabend samedi sábado sabado",
        "sunday sonntag dimanche domingo",
    ]
):
    for _name in _names.split():
        _WEEKDAYS[_name] = _number
_WEEKDAY_RE = re.compile(
    r"\b(?P<weekday>" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")\b", re.I
)
_TOMORROW_RE = re.compile(r"\b(?:tomorrow|demain|mañana|manana)\b", re.I)

# Words that put a date in "when I am back" position. Strong ones name the return or the end
# of the absence; weak ones ("from", "ab") may also start it.
_STRONG_CONTEXT = re.compile(
    r"\b(?:back|return|returning|returns|until|till|til|through|thru|resume|reachable again|"
    r"available again|in the office on|zurück|zurueck|wieder|bis|retour|de retour|reviens|"
    r"reviendrai|rentre|rentrerai|jusqu|hasta|regreso|regresaré|regresare|regresa|volveré|"
    r"volvere|vuelta|de vuelta|reincorporo|reincorporaré)",
    re.I,
)
_WEAK_CONTEXT = re.compile(r"\b(?:from|starting|ab|à partir|a partir|dès|desde)\b", re.I)
_INCLUSIVE = re.compile(
    r"\b(?:through|thru|inclusive|einschließlich|einschliesslich|inclus|inclusivement|"
    r"inclusive)\b",
    re.I,
)
_DAY_FIRST_HINT = re.compile(
    r"\b(?:bis|zurück|wieder|büro|jusqu|retour|bureau|hasta|regres|vuelta|oficina|ab dem|"
    r"urlaub|congé|vacaciones)",
    re.I,
)

_CONTEXT_BEFORE = 60
_CONTEXT_AFTER = 16
_LATEST_RETURN = datetime.timedelta(days=400)


@dataclass(frozen=True)
class _Candidate:
    date: datetime.date
    score: int
    position: int


def _resolve_year(month: int, day: int, year: str | None, sent_on: datetime.date) -> datetime.date:
    if year:
        value = int(year)
        if value < 100:
            value += 2000
        return datetime.date(value, month, day)
    candidate = datetime.date(sent_on.year, month, day)
    if candidate < sent_on:
        candidate = datetime.date(sent_on.year + 1, month, day)
    return candidate


def _context_score(text: str, start: int, end: int) -> tuple[int, bool]:
    before = text[max(0, start - _CONTEXT_BEFORE) : start]
    # Only the clause the date sits in: a full stop or line break starts a new thought.
    before = re.split(r"[.!?;\n]\s", before)[-1]
    after = text[end : end + _CONTEXT_AFTER]
    inclusive = bool(_INCLUSIVE.search(before) or _INCLUSIVE.match(after.lstrip(" ,(")))
    if _STRONG_CONTEXT.search(before):
        return 2, inclusive
    if _WEAK_CONTEXT.search(before):
        return 1, inclusive
    return 0, inclusive


def return_date_extract(*, text: str, sent_on: datetime.date) -> datetime.date | None:
    """The first day the sender says they are back, from an out-of-office text.

    Dates without a year are the next such day on or after ``sent_on`` (the message's own
    date). "until/bis/jusqu'au/hasta X" gives X; "through X" (inclusive) gives the day after.
    A bare weekday ("back on Monday") is the next one after ``sent_on``. Numeric dates are
    month-first in English (12/07 is December 7) and day-first in German, French and Spanish
    text. Only dates that words place in return position ("back", "until", "bis", "retour",
    "hasta", ...) count; of those the latest wins. Dates in the past or more than about a year
    ahead are not return dates: ``None``.
    """
    day_first = bool(_DAY_FIRST_HINT.search(text))
    candidates: list[_Candidate] = []
    taken: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(s <= match.start() < e for s, e in taken):
                continue
            groups = match.groupdict()
            try:
                if groups.get("month"):
                    month = _MONTHS[groups["month"].lower()]
                    day = int(groups["day"])
                else:
                    a, b = int(groups["num_a"]), int(groups["num_b"])
                    if pattern is _ISO_DATE:
                        month, day = a, b
                    elif a > 12:
                        day, month = a, b
                    elif b > 12 or not day_first:
                        month, day = a, b
                    else:
                        day, month = a, b
                date = _resolve_year(month, day, groups.get("year"), sent_on)
            except (ValueError, KeyError):
                continue
            taken.append((match.start(), match.end()))
            score, inclusive = _context_score(text, match.start(), match.end())
            if inclusive:
                date += datetime.timedelta(days=1)
            candidates.append(_Candidate(date=date, score=score, position=match.start()))

    if not candidates:
        for match in _WEEKDAY_RE.finditer(text):
            score, inclusive = _context_score(text, match.start(), match.end())
            if score == 0:
                continue
            weekday = _WEEKDAYS[match.group("weekday").lower()]
            ahead = (weekday - sent_on.weekday() - 1) % 7 + 1
            date = sent_on + datetime.timedelta(days=ahead + (1 if inclusive else 0))
            candidates.append(_Candidate(date=date, score=score, position=match.start()))
        for match in _TOMORROW_RE.finditer(text):
            score, _ = _context_score(text, match.start(), match.end())
            if score:
                candidates.append(
                    _Candidate(
                        date=sent_on + datetime.timedelta(days=1),
                        score=score,
                        position=match.start(),
                    )
                )

    # A date only counts when words put it in "when I am back" position: an auto-reply that
    # merely mentions a date (a ticket opened on 11/30) states no return.
    plausible = [
        c for c in candidates if c.score > 0 and sent_on <= c.date <= sent_on + _LATEST_RETURN
    ]
    if not plausible:
        return None
    best_score = max(c.score for c in plausible)
    return max((c for c in plausible if c.score == best_score), key=lambda c: c.date).date
