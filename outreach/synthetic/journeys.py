"""Journeys played forward: each enrollment from its start to now, as the engine runs it.

``Journeys.chunk`` turns one day of enrollment starts into the rows the services would have
written (see ``outreach.synthetic.load``): the enrollment in its current state, the messages
sent with their final status, the transitions, the pending action, replies and the rare
events a transition points at; the common events of each message are left as one plan row
that PostgreSQL expands (``writes.EXPAND``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import random
import uuid
from array import array
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from campaigns import plans
from campaigns.services.transitions import STOP_REASONS
from messaging.models import Message
from messaging.services.events import MESSAGE_STATUS_RANK
from outreach.synthetic import data
from suppression.models import Suppression

DAY = 86_400.0
# Mean events per message the data set aims at (processed, delivered, opens, clicks …), which
# sets how many enrollments the leads get; the open counts then absorb the difference.
EVENTS_PER_MESSAGE = 7.0
MESSAGES_PER_ENROLLMENT = 2.6


@dataclass(frozen=True)
class SyntheticSpec:
    tenants: int = 20
    leads: int = 1_000_000
    events: int = 50_000_000
    months: int = 6
    seed: int = 1
    prefix: str = "synthetic"


class Progress(Protocol):
    def start(self, stage: str, total: int, unit: str) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass(frozen=True)
class CampaignRef:
    id: int
    version_id: int
    identity_id: int
    from_email: str


@dataclass
class World:
    rank: int
    id: int
    slug: str
    size: int
    campaigns: list[CampaignRef]


REPLY_DOMAIN = "reply.synthetic.example.com"
BOUNCE_REASON = "550 5.1.1 The email account that you tried to reach does not exist."

_STATUS_OF_RANK = {rank: status for status, rank in MESSAGE_STATUS_RANK.items()}
_RANK = MESSAGE_STATUS_RANK
_SUPPRESSION_REASON = {
    "bounce": Suppression.Reason.HARD_BOUNCE,
    "unsubscribe": Suppression.Reason.UNSUBSCRIBE,
    "spamreport": Suppression.Reason.SPAM_REPORT,
}
_FATE_RANK = {
    "reply": _RANK[Message.Status.REPLIED],
    "bounce": _RANK[Message.Status.BOUNCED],
    "unsubscribe": _RANK[Message.Status.UNSUBSCRIBED],
    "spamreport": _RANK[Message.Status.COMPLAINED],
}


def moment(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def time_ordered_uuid(at: float, rng: random.Random) -> uuid.UUID:
    """A version 7 UUID for the instant ``at``, as ``messaging.models.message_public_id``
    makes them (reproducible from the seed)."""
    rand = rng.getrandbits(74)
    value = (int(at * 1000) & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64
    return uuid.UUID(int=value | 0b10 << 62 | (rand & ((1 << 62) - 1)))


def token(rng: random.Random, bits: int) -> str:
    return base64.urlsafe_b64encode(rng.getrandbits(bits).to_bytes(bits // 8, "big")).decode()


@dataclass
class Leads:
    first_id: int = 0
    tenant_rank: array = field(default_factory=lambda: array("H"))
    created: array = field(default_factory=lambda: array("d"))
    enrollable: bytearray = field(default_factory=bytearray)
    enrollments_left: array = field(default_factory=lambda: array("B"))
    busy_until: array = field(default_factory=lambda: array("d"))
    email: list[str] = field(default_factory=list)
    first_name: list[str] = field(default_factory=list)
    company: list[str] = field(default_factory=list)


@dataclass
class Seeds:
    """Enrollments to create, bucketed by the day they start: lead offset, start, campaign."""

    lead: list[array]
    at: list[array]
    campaign: list[array]
    total: int = 0


# --------------------------------------------------------------------------- journeys


@dataclass
class Chunk:
    enrollments: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    inbound: list = field(default_factory=list)
    transitions: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    events: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    suppressions: list = field(default_factory=list)
    plans: list = field(default_factory=list)
    bulk_events: int = 0


@dataclass
class IdBlocks:
    enrollment: int
    message: int
    inbound: int
    event: int


class Journeys:
    """Plays each enrollment forward from its start to ``now`` and writes what happened."""

    def __init__(
        self,
        *,
        spec: SyntheticSpec,
        worlds: list[World],
        leads: Leads,
        ids: IdBlocks,
        total_seeds: int,
        now: float,
        rng: random.Random,
    ) -> None:
        self.spec, self.worlds, self.leads, self.ids, self.now, self.rng = (
            spec,
            worlds,
            leads,
            ids,
            now,
            rng,
        )
        self.total_seeds = total_seeds
        self.key_cutoff = now - settings.EVENT_DEDUP_KEY_DAYS * DAY
        self.counts = dict.fromkeys(
            (
                "enrollments",
                "messages",
                "events",
                "transitions",
                "actions",
                "inbound",
                "suppressions",
            ),
            0,
        )
        self.steps = data.PLAN["steps"]

    # Events the data set still owes: opened messages get more opens while it owes many.
    def _extra_opens(self) -> int:
        done = max(1, self.counts["enrollments"])
        expected_messages = self.total_seeds * max(1.0, self.counts["messages"] / done)
        if self.counts["enrollments"] < 1000:
            expected_messages = self.total_seeds * MESSAGES_PER_ENROLLMENT
        rate = self.spec.events / max(1.0, expected_messages)
        owed = rate * self.counts["messages"] - self.counts["events"]
        return min(60, int(max(0.0, owed) * 0.2 + self.rng.random() * 2))

    def chunk(self, seeds: Seeds, day: int) -> Chunk:
        chunk = Chunk()
        order = sorted(range(len(seeds.lead[day])), key=seeds.at[day].__getitem__)
        for k in order:
            self._enrollment(chunk, seeds.lead[day][k], seeds.at[day][k], seeds.campaign[day][k])
        return chunk

    def _enrollment(self, chunk: Chunk, lead: int, started: float, campaign_index: int) -> None:
        rng, now = self.rng, self.now
        world = self.worlds[self.leads.tenant_rank[lead]]
        campaign = world.campaigns[campaign_index]
        eid = self.ids.enrollment
        self.ids.enrollment += 1
        self.leads.enrollments_left[lead] -= 1
        last_for_lead = self.leads.enrollments_left[lead] == 0
        r = rng.random()
        fate, fate_step = None, 0
        if r < 0.015:
            fate, fate_step = "bounce", 1
        elif r < 0.025:
            fate, fate_step = "unsubscribe", rng.choice((1, 2))
        elif r < 0.028:
            fate, fate_step = "spamreport", rng.choice((1, 2))
        elif r < 0.088:
            fate, fate_step = "reply", 1 if rng.random() < 0.6 else 2
        if fate in _SUPPRESSION_REASON and not last_for_lead:
            fate = None  # a suppressed address gets no later journeys: only the last may end so

        ctx = {
            "tenant": world.id,
            "eid": eid,
            "lead": lead,
            "campaign": campaign,
            "intro_subject": "",
            "intro_rfc": "",
        }
        entered = started
        state, step_name, step_seq, outcome, stop_reason = "active", "intro", 1, "", ""
        step_entered = updated = started
        finished: float | None = None
        for seq, name in enumerate(data.EMAIL_STEPS, start=1):
            step_name, step_seq, step_entered, updated = name, seq, entered, entered
            send_at = entered + rng.uniform(30, 3000)
            if send_at > now:
                self._action(
                    chunk, ctx, "send", name, seq, send_at, entered, priority=1 if seq == 1 else 0
                )
                break
            after_days = data.NO_REPLY_AFTER_DAYS.get(name)
            horizon = send_at + after_days * DAY if after_days else send_at + 1
            mid, fate_at, fate_event = self._message(
                chunk, ctx, name, seq, send_at, fate if fate_step == seq else None, horizon
            )
            if name == "breakup":
                moved = send_at + 0.5
                self._transition(
                    chunk, ctx, name, seq, "done", "sent",
                    "email sent; the step waits for nothing", mid, None, moved,
                )  # fmt: skip
                state, step_name, step_seq, outcome = "completed", "done", seq + 1, "no_response"
                step_entered = updated = finished = moved
                break
            if fate_at is not None:
                moved = fate_at + 2
                if fate == "reply":
                    self._transition(
                        chunk, ctx, name, seq, "replied", "reply",
                        f"human reply (inbound {fate_event}) to message {mid}", mid, None, moved,
                    )  # fmt: skip
                    state, step_name, step_seq, outcome = "completed", "replied", seq + 1, "replied"
                    step_entered = moved
                else:
                    self._transition(
                        chunk, ctx, name, seq, "", fate,
                        f"{fate} event {fate_event} on message {mid}", mid, fate_event, moved,
                    )  # fmt: skip
                    state, stop_reason = "stopped", STOP_REASONS[fate]
                finished = updated = moved
                break
            if horizon > now:
                self._action(
                    chunk, ctx, "timeout", name, seq, horizon, send_at,
                    key_suffix=":no_reply", payload={"trigger": "no_reply", "message_id": mid},
                )  # fmt: skip
                break
            fired = horizon + rng.uniform(0.5, 5)
            event_id = self._event(
                chunk,
                ctx,
                mid,
                "no_reply",
                fired,
                f"timeout:{eid}:{seq}:timeout:no_reply",
                raw={"after": f"{after_days}d", "step": name},
                synthetic=True,
            )
            next_step = data.EMAIL_STEPS[seq]
            self._transition(
                chunk, ctx, name, seq, next_step, "no_reply", f"no reply within {after_days}d",
                mid, event_id, fired,
            )  # fmt: skip
            entered = fired
        self.leads.busy_until[lead] = finished if finished is not None else math.inf
        chunk.enrollments.append(
            (
                eid,
                world.id,
                campaign.id,
                self.leads.first_id + lead,
                campaign.version_id,
                campaign.identity_id,
                state,
                step_name,
                step_seq,
                moment(step_entered),
                outcome,
                stop_reason,
                "",
                moment(started),
                moment(updated),
                moment(finished) if finished is not None else None,
            )
        )
        self.counts["enrollments"] += 1

    def _message(
        self,
        chunk: Chunk,
        ctx: dict,
        step: str,
        seq: int,
        sent: float,
        fate: str | None,
        horizon: float,
    ) -> tuple[int, float | None, int | None]:
        """One sent message and everything that happened to it up to now. Returns its id and,
        when its fate (reply, bounce …) happened, the time and the event (or inbound) id."""
        rng, now = self.rng, self.now
        lead = ctx["lead"]
        email = self.leads.email[lead]
        campaign: CampaignRef = ctx["campaign"]
        mid = self.ids.message
        self.ids.message += 1
        public_id = time_ordered_uuid(sent, rng)
        reply_token = f"{int(sent):08x}{token(rng, 96)}"
        provider_id = token(rng, 128)[:22]
        variant = plans.plan_pick_variant(step=self.steps[step], key=f"{ctx['eid']}:{step}")
        if step == "intro":
            subject = (
                f"Quick question, {self.leads.first_name[lead]}"
                if variant == "question"
                else f"{self.leads.company[lead]} + Outreach"
            )
        elif step == "follow_up":
            subject = f"Re: {ctx['intro_subject']}"
        else:
            subject = "Closing the loop"
        rfc = f"<{public_id}@{campaign.from_email.rpartition('@')[2]}>"
        if step == "intro":
            ctx["intro_subject"], ctx["intro_rfc"] = subject, rfc

        changes: list[tuple[float, int]] = []  # (time, rank) of events that may move status
        processed = sent + 2 <= now
        if processed:
            changes.append((sent + 2, _RANK[Message.Status.PROCESSED]))
        n_deferred = n_machine = n_bot = n_open = n_click = 0
        delivered = open_first = open_last = click_first = click_last = None
        fate_at: float | None = None
        if fate == "bounce":
            bounce_at = sent + rng.uniform(5, 60)
            if bounce_at <= now and self.leads.busy_until[lead] <= bounce_at:
                fate_at = bounce_at
            else:
                fate = None  # the address still works: an ordinary delivery
        if fate_at is None:
            if rng.random() < 0.04:
                n_deferred = sum(
                    1 for g in range(1, rng.randint(1, 3) + 1) if sent + g * 600 <= now
                )
                if n_deferred:
                    changes.append((sent + 600, _RANK[Message.Status.DEFERRED]))
            delivered_at = sent + n_deferred * 600 + rng.uniform(4, 40)
            if delivered_at <= now:
                delivered = delivered_at
                changes.append((delivered, _RANK[Message.Status.DELIVERED]))
        if delivered is not None:
            if rng.random() < 0.25:
                n_machine = sum(
                    1 for g in range(1, rng.randint(1, 2) + 1) if delivered + g * 41 <= now
                )
            if rng.random() < 0.03 and delivered + 3 <= now:
                n_bot = 1
            opened = fate in ("unsubscribe", "reply") or rng.random() < 0.42
            first = delivered + min(rng.expovariate(1 / (5 * 3600)), 2 * DAY)
            if opened and first <= now:
                open_first = first
                n_open = 1 + self._extra_opens()
                open_last = min(first + rng.uniform(0, 3 * DAY), now) if n_open > 1 else first
                changes.append((first, _RANK[Message.Status.OPENED]))
                click = first + rng.uniform(20, 1800)
                if rng.random() < 0.18 and click <= now:
                    click_first = click
                    n_click = 2 if rng.random() < 0.3 else 1
                    click_last = min(click + rng.uniform(0, DAY), now) if n_click > 1 else click
                    changes.append((click, _RANK[Message.Status.CLICKED]))
            if fate is not None and fate != "bounce":
                base = open_first or delivered
                if fate == "reply":
                    at = base + rng.uniform(600, 2 * DAY)
                elif fate == "unsubscribe":
                    at = base + rng.uniform(60, 1800)
                else:
                    at = delivered + rng.uniform(3600, 1.5 * DAY)
                latest = horizon - 600
                if at > latest:
                    at = delivered + (latest - delivered) * rng.uniform(0.2, 0.9)
                suppressing = fate != "reply"
                if at <= now and not (suppressing and self.leads.busy_until[lead] > at):
                    fate_at = at
        fate_event: int | None = None
        if fate_at is not None:
            changes.append((fate_at, _FATE_RANK[fate]))
            if fate == "reply":
                fate_event = self._reply(
                    chunk, ctx, mid, provider_id, subject, rfc, reply_token, fate_at
                )
            else:
                fate_event = self._fate_event(
                    chunk, ctx, mid, provider_id, public_id, fate, fate_at
                )
        rank, last_event = _RANK[Message.Status.ACCEPTED], None
        for at, event_rank in sorted(changes):
            if event_rank > rank:
                rank, last_event = event_rank, at
        error_code = error_message = ""
        if fate == "bounce" and fate_at is not None:
            error_code, error_message = "bounce:5.1.1", BOUNCE_REASON
        chunk.messages.append(
            (
                mid,
                ctx["tenant"],
                public_id,
                "email",
                campaign.identity_id,
                ctx["eid"],
                self.leads.first_id + lead,
                campaign.id,
                campaign.version_id,
                step,
                seq,
                variant,
                1,
                _STATUS_OF_RANK[rank],
                rank,
                email,
                subject,
                rfc,
                reply_token,
                provider_id,
                "",
                error_code,
                error_message,
                moment(sent),
                moment(last_event) if last_event else None,
                moment(sent - 0.4),
                moment(last_event or sent),
            )
        )
        self.counts["messages"] += 1
        bulk = int(processed) + n_deferred + (delivered is not None) + n_machine + n_bot
        bulk += n_open + n_click
        if bulk:
            chunk.plans.append(
                (
                    mid,
                    ctx["tenant"],
                    ctx["eid"],
                    email,
                    provider_id,
                    moment(sent),
                    processed,
                    n_deferred,
                    moment(delivered) if delivered else None,
                    n_machine,
                    n_bot,
                    n_open,
                    moment(open_first) if open_first else None,
                    moment(open_last) if open_last else None,
                    n_click,
                    moment(click_first) if click_first else None,
                    moment(click_last) if click_last else None,
                )
            )
            chunk.bulk_events += bulk
            self.counts["events"] += bulk
        return mid, fate_at, fate_event

    def _event(
        self,
        chunk: Chunk,
        ctx: dict,
        mid: int,
        event_type: str,
        at: float,
        key: str,
        *,
        raw: dict,
        synthetic: bool = False,
        provider_id: str = "",
        email: str = "",
    ) -> int:
        event_id = self.ids.event
        self.ids.event += 1
        received = at if synthetic else at + 3
        chunk.events.append(
            (
                event_id,
                ctx["tenant"],
                mid,
                ctx["eid"],
                event_type,
                moment(at),
                moment(received),
                key,
                provider_id,
                email,
                False,
                False,
                synthetic,
                json.dumps(raw),
            )
        )
        if received >= self.key_cutoff:
            chunk.keys.append((ctx["tenant"], key, moment(received)))
        self.counts["events"] += 1
        return event_id

    def _fate_event(self, chunk, ctx, mid, provider_id, public_id, fate, at) -> int:
        """A bounce, unsubscribe or spam report: its event (a transition points at it) and the
        suppression it adds."""
        email = self.leads.email[ctx["lead"]]
        key = token(self.rng, 128)[:22]
        raw = {
            "event": fate,
            "email": email,
            "timestamp": int(at),
            "sg_event_id": key,
            "sg_message_id": f"{provider_id}.filterdrecv-synthetic",
            "outreach_message_id": str(public_id),
        }
        if fate == "bounce":
            raw.update({"type": "bounce", "status": "5.1.1", "reason": BOUNCE_REASON})
        event_id = self._event(
            chunk, ctx, mid, fate, at, key, raw=raw, provider_id=provider_id, email=email
        )
        chunk.suppressions.append(
            (
                ctx["tenant"],
                Suppression.Scope.TENANT,
                email,
                _SUPPRESSION_REASON[fate],
                Suppression.Source.WEBHOOK,
                f"SendGrid {fate} {key}",
                moment(at + 2),
            )
        )
        self.counts["suppressions"] += 1
        return event_id

    def _reply(self, chunk, ctx, mid, provider_id, subject, rfc, reply_token, at) -> int:
        """A human reply: the inbound message and its ``reply`` event. Returns the inbound id
        (the transition's cause names it, as ``enrollment_reply_apply`` does)."""
        email = self.leads.email[ctx["lead"]]
        inbound_id = self.ids.inbound
        self.ids.inbound += 1
        header = (
            f"<{uuid.UUID(int=self.rng.getrandbits(128), version=4)}@{email.rpartition('@')[2]}>"
        )
        reply_subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        chunk.inbound.append(
            (
                inbound_id,
                ctx["tenant"],
                f"From: {email}\r\nSubject: {reply_subject}\r\n\r\nSounds good, let's talk.",
                email,
                f"reply+{reply_token}@{REPLY_DOMAIN}",
                reply_subject,
                header,
                rfc,
                rfc,
                mid,
                "human",
                moment(at),
                moment(at + 1),
            )
        )
        self.counts["inbound"] += 1
        self._event(
            chunk,
            ctx,
            mid,
            "reply",
            at,
            f"reply:{header}",
            raw={
                "inbound_message_id": inbound_id,
                "classification": "human",
                "from": email,
                "subject": reply_subject,
                "message_id": header,
            },
            provider_id=provider_id,
            email=email,
        )
        return inbound_id

    def _transition(
        self, chunk, ctx, from_step, from_seq, to_step, trigger, cause, mid, event_id, at
    ) -> None:
        chunk.transitions.append(
            (
                ctx["tenant"],
                ctx["eid"],
                from_step,
                from_seq,
                to_step,
                trigger,
                cause[:300],
                mid,
                event_id,
                moment(at),
            )
        )
        self.counts["transitions"] += 1

    def _action(
        self,
        chunk,
        ctx,
        kind,
        step,
        seq,
        due,
        created,
        *,
        priority: int = 1,
        key_suffix: str = "",
        payload: dict | None = None,
    ) -> None:
        chunk.actions.append(
            (
                ctx["tenant"],
                ctx["eid"],
                kind,
                step,
                seq,
                moment(due),
                "pending",
                priority,
                0,
                f"{ctx['eid']}:{seq}:{kind}{key_suffix}",
                json.dumps(payload or {}),
                "",
                moment(created),
                moment(created),
            )
        )
        self.counts["actions"] += 1
