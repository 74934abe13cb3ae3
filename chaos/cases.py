"""The cases of the fault suite. Each builds its own tenant, breaks something while the
system works, lets it recover, and returns one row of the table from ground truth.

A case passes only with 0 duplicates and 0 lost. *Lost* is an expected send that the
provider never received and nothing will send: no pending action holds it (a cap legitimately
moves sends to the next day; those are shown as held) and no operator was told (a
``needs_review`` message is resolved by the runbook's step, ``review_as_operator``, before the
count, and shown in the notes).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import Error as DatabaseError
from django.db import connection

from chaos import world as w
from chaos.services import PrivatePostgres, PrivateRedis
from chaos.stack import ROOT, Stack, Timing
from chaos.storm import StormPoster
from messaging.emulator.webhooks import Signer
from messaging.models import Message


@dataclass
class Row:
    number: int
    fault: str
    load: str
    expected: int | None = None
    received: int | None = None
    duplicates: int = 0
    lost: int = 0
    events: str = "-"
    transitions: str = "-"
    passed: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, condition: bool, failure: str) -> None:
        if not condition:
            self.notes.append(f"FAILED: {failure}")


@dataclass
class Context:
    pg: PrivatePostgres
    redis: PrivateRedis
    stack: Stack
    timing: Timing
    short: bool
    root: Path
    rng: random.Random = field(default_factory=lambda: random.Random(13))

    @property
    def emulator(self):
        return self.stack.emulator

    def say(self, text: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def scale(self, short: int, full: int) -> int:
        return short if self.short else full


# --- waiting ---------------------------------------------------------------------------------


def _db(read: Callable[[], object]) -> object:
    """Read through an outage: a broken connection is dropped and the read tried later."""
    try:
        return read()
    except DatabaseError:
        connection.close()
        return None


def wait(
    ctx: Context,
    predicate: Callable[[], object],
    *,
    row: Row,
    timeout: float,
    what: str,
    progress: Callable[[], str] | None = None,
    every: float = 10.0,
    poll: float = 0.5,
) -> bool:
    """Poll ``predicate`` until it holds; a timeout fails ``row`` (a case never goes on
    as if what it waited for had happened) and returns False."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + every
    while time.monotonic() < deadline:
        if _db(predicate):
            return True
        restarted = ctx.stack.processes_restart_on_death()
        if restarted:
            ctx.say(f"supervisor: restarted {', '.join(restarted)} (it had exited)")
        if progress and time.monotonic() >= next_report:
            ctx.say(str(_db(progress)))
            next_report = time.monotonic() + every
        time.sleep(poll)
    ctx.say(f"timed out after {timeout:.0f}s waiting for {what}")
    row.check(False, f"timed out after {timeout:.0f}s waiting for {what}")
    return False


def settled(ctx: Context, world: w.World) -> bool:
    """Nothing left to do now: no claimed or due action, no send of unknown outcome, the
    provider has posted every event, and every stored webhook was normalised."""
    left = w.actions(world)
    if left["claimed"] or left["due"] or left["sends_soon"]:
        return False  # (a send retried after a backoff is soon; one held by a cap is not)
    if Message.objects.filter(tenant_id=world.tenant_id, status=Message.Status.SENDING).exists():
        return False
    if ctx.emulator.stats()["pending"]:
        return False
    return w.receipts_unprocessed(world) == 0


def progress_of(ctx: Context, world: w.World, expected: int) -> Callable[[], str]:
    def line() -> str:
        stats = ctx.emulator.stats()
        ledger = dict(w.ledger(world))
        return (
            f"provider accepted {stats['accepted']:,}/{expected:,}; ledger {ledger};"
            f" actions {w.actions(world)}"
        )

    return line


def settle_with_review(
    ctx: Context, world: w.World, expected: int, timeout: float, *, row: Row
) -> tuple[int, int]:
    """Wait until settled; then do the runbook's needs_review step, and settle again."""
    progress = progress_of(ctx, world, expected)

    def settle(what: str) -> bool:
        return wait(
            ctx, lambda: settled(ctx, world), row=row, timeout=timeout, what=what, progress=progress
        )

    settle("settling")
    sent, not_sent = w.review_as_operator(ctx.emulator, world)
    if sent or not_sent:
        ctx.say(f"operator: {sent} needs_review resolved as sent, {not_sent} as not sent")
        settle("the resends")
    return sent, not_sent


def sends_truth(
    ctx: Context, world: w.World, row: Row, expected_keys: set[tuple[str, str]]
) -> tuple[int, int]:
    """Fill expected / received / duplicates / lost from the provider's record; returns the
    sends still held by a pending action and the mails nobody expected. Also checks that no
    live enrollment is stranded (live, with nothing scheduled: it would never move again)."""
    got = w.received(ctx.emulator, world)
    held = w.actions(world)["later"]
    row.expected = len(expected_keys)
    row.received = sum(1 for key in expected_keys if got.get(key))
    row.duplicates = sum(count - 1 for count in got.values() if count > 1)
    unexpected = sum(count for key, count in got.items() if key not in expected_keys)
    row.lost = row.expected - row.received
    stranded = w.stranded(world)
    row.check(stranded == 0, f"{stranded} live enrollments with nothing scheduled (stuck)")
    row.check(unexpected == 0, f"{unexpected} mails nobody expected")
    return held, unexpected


def events_truth(ctx: Context, world: w.World, row: Row, *, produced: int | None = None) -> None:
    stats = ctx.emulator.stats()
    if produced is None:
        produced = stats.get("events_planned", 0) - stats.get("events_unroutable", 0)
    truth = w.events(world)
    row.events = f"{produced:,} / {truth.distinct:,}"
    if truth.duplicates:
        row.events += f" ({truth.duplicates} dup)"
    row.check(truth.duplicates == 0, f"{truth.duplicates} events stored twice")
    row.check(truth.distinct == produced, f"{produced - truth.distinct} events never stored")
    given_up = stats.get("events_posts_given_up", 0)
    row.check(given_up == 0, f"the provider gave up on {given_up} webhook posts")


def transitions_truth(world: w.World, row: Row) -> w.TransitionTruth:
    truth = w.transitions(world)
    row.transitions = truth.per_entry
    row.check(truth.rows == truth.step_entries, "a step entry was left twice")
    row.check(truth.missing == 0, f"{truth.missing} enrollments skipped a step entry")
    return truth


def emails_for(case: str, count: int, tag: Callable[[int], str] = lambda i: "") -> list[str]:
    out = []
    for i in range(count):
        suffix = tag(i)
        out.append(f"{case}{i}{'+' + suffix if suffix else ''}@prospect.example.com")
    return out


def one_step_keys(emails: list[str], step: str = "intro") -> set[tuple[str, str]]:
    return {(email.lower(), step) for email in emails}


def fresh_emulator(ctx: Context, **config) -> None:
    """Back to the start-up state (counters per case), then this case's options."""
    ctx.emulator.reset()
    if config:
        ctx.emulator.configure(**config)


# --- 1. SIGKILL of workers in a loop during a send wave -----------------------------------------


def case_worker_sigkill(ctx: Context) -> Row:
    n = ctx.scale(2_000, 20_000)
    # CI's wave lasts seconds: kills come faster there so that a few land in it.
    low, high = (1.0, 2.0) if ctx.short else (2.0, 5.0)
    down = (0.2, 0.8) if ctx.short else (0.3, 2.0)
    most = 5 if ctx.short else None  # each kill slows the wave: CI's run stops at five
    row = Row(
        1,
        f"SIGKILL a worker every {low:g}-{high:g} s during the wave"
        + (f" (at most {most})" if most else ""),
        f"{n:,} sends, 2 workers",
    )
    fresh_emulator(ctx)
    emails = emails_for("kill", n)
    world = w.world_build(
        name="sigkill",
        plan=w.PLAN_ONE_EMAIL,
        emails=emails,
        webhook_public_key=ctx.emulator.public_key,
    )
    ctx.say(f"case 1: {n:,} enrolled; releasing the wave")
    w.world_release(world)
    progress = progress_of(ctx, world, n)
    kills: list[tuple[str, int]] = []  # (worker, mails accepted when it was killed)
    next_kill: float | None = None  # the first kill lands as soon as the first mail is out
    deadline = time.monotonic() + (240 if ctx.short else 600)
    next_report = time.monotonic() + 10
    while time.monotonic() < deadline:
        accepted = ctx.emulator.stats()["accepted"]
        left = _db(lambda: w.actions(world)) or {"claimed": 1}
        if accepted >= n * 0.97 or not (left["claimed"] or left["due"] or left["sends_soon"]):
            break  # the wave is over: what is left waits for its reconcile grace or review
        if next_kill is None and accepted:
            next_kill = time.monotonic()
        # A kill while the wave stalls (the last kill's sends waiting out their lease)
        # proves nothing more and only slows the run: kill again once mail moves again.
        moved_on = not kills or accepted > kills[-1][1]
        more = most is None or len(kills) < most
        if next_kill is not None and time.monotonic() >= next_kill and moved_on and more:
            victim = ctx.stack.kill_random_worker(ctx.rng, ctx.rng.uniform(*down))
            kills.append((victim, accepted))
            next_kill = time.monotonic() + ctx.rng.uniform(low, high)
        if time.monotonic() >= next_report:
            ctx.say(f"{_db(progress)}; {len(kills)} kills")
            next_report = time.monotonic() + 10
        time.sleep(0.2)
    else:
        row.check(False, "the wave was still going when the case's time ran out")
    ctx.say(f"case 1: {len(kills)} SIGKILLs; waiting for leases, reconcile and review")
    # The fault must have happened, mid-wave, more than once (every kill above came while
    # sends were still due or claimed, and before 97% of them were out).
    row.check(len(kills) >= 3, f"only {len(kills)} SIGKILLs landed during the wave (want 3)")
    sent, not_sent = settle_with_review(ctx, world, n, timeout=300, row=row)
    held, _ = sends_truth(ctx, world, row, one_step_keys(emails))
    row.lost += held
    events_truth(ctx, world, row)
    transitions_truth(world, row)
    states = w.enrollment_states(world)
    row.check(states == Counter({"completed": n}), f"enrollment states {dict(states)}")
    at = ", ".join(f"{accepted:,}" for _, accepted in kills)
    row.notes.append(
        f"{len(kills)} SIGKILLs (mails out at each: {at or 'none'});"
        f" needs_review {sent + not_sent} (operator: {sent} had been"
        f" sent, {not_sent} had not and were sent once)"
    )
    return row


# --- 2. Redis restarted during the wave ----------------------------------------------------------


def _zone_at_noon() -> str:
    """A fixed-offset zone where it is about noon now: a day's cap cannot reset mid-run."""
    hour = dt.datetime.now(dt.UTC).hour
    offset = (12 - hour + 11) % 24 - 11
    return f"Etc/GMT{-offset:+d}"


def case_redis_restart(ctx: Context) -> Row:
    n = ctx.scale(800, 5_000)
    cap = ctx.scale(500, 3_000)
    ceiling = cap - math.floor(cap * 0.2)  # first touches leave the follow-up reserve alone
    row = Row(
        2,
        "Redis killed and restarted empty mid-wave (broker, hints and cap counters lost)",
        f"{n:,} leads, daily cap {cap:,} ({ceiling:,} first touches)",
    )
    fresh_emulator(ctx)
    emails = emails_for("redis", n)
    world = w.world_build(
        name="redis",
        plan=w.PLAN_ONE_EMAIL,
        emails=emails,
        webhook_public_key=ctx.emulator.public_key,
        identity={"daily_cap": cap, "hourly_cap": cap, "timezone": _zone_at_noon()},
    )
    w.world_release(world)
    progress = progress_of(ctx, world, ceiling)
    if not wait(
        ctx,
        lambda: ctx.emulator.stats()["accepted"] >= ceiling * 0.25,
        row=row,
        timeout=180,
        what="the wave",
        progress=progress,
        poll=0.02,  # the wave takes seconds: the kill must land well before the cap
    ):
        return row
    before = ctx.emulator.stats()["accepted"]
    ctx.say(f"case 2: {before:,} sent; killing Redis")
    ctx.redis.restart(down_seconds=ctx.scale(2, 3))
    ctx.say("case 2: Redis is back, empty")
    # The fault must come before the cap is reached, or it tests nothing about the cap.
    row.check(before < ceiling, f"Redis restarted only after the cap ({before:,} >= {ceiling:,})")
    wait(
        ctx,
        lambda: settled(ctx, world),
        row=row,
        timeout=300,
        what="recovery",
        progress=progress,
    )
    sent, not_sent = w.review_as_operator(ctx.emulator, world)
    if sent or not_sent:
        wait(
            ctx,
            lambda: settled(ctx, world),
            row=row,
            timeout=120,
            what="resends",
            progress=progress,
        )
    held, _ = sends_truth(ctx, world, row, one_step_keys(emails))
    # Past the cap the rest wait for tomorrow: held by a pending action, not lost.
    row.lost -= held
    row.expected = ceiling
    row.check(row.received <= ceiling, f"cap exceeded: {row.received:,} sent > {ceiling:,}")
    row.check(row.received == ceiling, f"{ceiling - row.received} sends under the cap missing")
    events_truth(ctx, world, row)
    transitions_truth(world, row)
    left = w.actions(world)
    row.check(left["claimed"] == 0 and left["due"] == 0, f"stuck actions {left}")
    row.notes.append(
        f"{before:,} sent before the restart; {held:,} held for the next day by the cap;"
        f" needs_review {sent + not_sent}"
    )
    return row


# --- 3. PostgreSQL restarted during the wave and during a webhook storm ------------------------


def case_postgres_restart(ctx: Context) -> Row:
    n = ctx.scale(600, 4_000)
    row = Row(
        3,
        "PostgreSQL crashed (immediate stop) and restarted: mid-wave, then mid-webhook storm",
        f"{n:,} sends; events re-posted (30% of batches twice, reordered)",
    )
    fresh_emulator(ctx, webhook_duplicate_share=0.3, webhook_reorder=True)
    emails = emails_for("pg", n, lambda i: "open+click" if i % 3 == 0 else "")
    world = w.world_build(
        name="postgres",
        plan=w.PLAN_ONE_EMAIL,
        emails=emails,
        webhook_public_key=ctx.emulator.public_key,
    )
    w.world_release(world)
    progress = progress_of(ctx, world, n)
    if not wait(
        ctx,
        lambda: ctx.emulator.stats()["accepted"] >= n * 0.35,
        row=row,
        timeout=180,
        what="the wave",
        progress=progress,
        poll=0.02,
    ):
        return row
    mid_wave = ctx.emulator.stats()["accepted"]
    ctx.say(f"case 3: crashing PostgreSQL mid-wave ({mid_wave:,} of {n:,} sent)")
    ctx.pg.restart(down_seconds=ctx.scale(2, 4))
    connection.close()
    # Each crash must land in what it is about: sends still to go, posts still to come.
    row.check(mid_wave < n, f"the first crash came after the wave ({mid_wave:,} of {n:,} sent)")
    if not wait(
        ctx,
        lambda: ctx.emulator.stats().get("events_posted", 0) >= n,
        row=row,
        timeout=240,
        what="the webhook storm",
        progress=progress,
    ):
        return row
    stored_before = _db(lambda: w.events(world).rows) or 0
    to_post = ctx.emulator.stats()["pending"]
    ctx.say(
        f"case 3: crashing PostgreSQL mid-storm ({stored_before:,} events stored,"
        f" {to_post:,} webhook items still queued at the provider)"
    )
    crash_at = time.time()
    ctx.pg.restart(down_seconds=ctx.scale(2, 4))
    connection.close()
    row.check(to_post > 0, "the second crash came after the webhook storm (nothing queued)")
    sent, not_sent = settle_with_review(ctx, world, n, timeout=300, row=row)
    (accepted_before,) = w._one(
        "SELECT count(*) FROM messaging_webhookreceipt WHERE tenant_id = %s"
        " AND received_at < to_timestamp(%s)",
        [world.tenant_id, crash_at],
    )
    held, _ = sends_truth(ctx, world, row, one_step_keys(emails))
    row.lost += held
    events_truth(ctx, world, row)
    transitions_truth(world, row)
    row.check(w.receipts_unprocessed(world) == 0, "webhook receipts left unprocessed")
    stats = ctx.emulator.stats()
    failed_posts = stats.get("events_posts_failed", 0)
    row.notes.append(
        f"first crash at {mid_wave:,}/{n:,} sent, second with {to_post:,} webhook items still queued;"
        f" {accepted_before:,} webhook posts stored before the second crash, all processed"
        f" after it; {failed_posts} posts refused during the outages and retried by the"
        f" provider; needs_review {sent + not_sent} (operator: {sent} sent, {not_sent} not)"
    )
    return row


# --- 4. The provider fails ---------------------------------------------------------------------


def case_provider_faults(ctx: Context) -> Row:
    n = ctx.scale(600, 3_000)
    timeout = ctx.timing.provider_timeout_seconds
    faults = {
        "fault_429_share": 0.08,
        "fault_retry_after": 2,
        "fault_500_share": 0.08,
        "fault_timeout_share": 0.05,
        "fault_timeout_seconds": timeout + 3,
        "fault_drop_share": 0.04,
        "fault_reset_share": 0.03,
    }
    row = Row(
        4,
        "provider: 429 + Retry-After 8%, 500 8%, accepted but answered after the timeout 5%,"
        " accepted then hung up 4%, hung up before accepting 3%",
        f"{n:,} sends",
    )
    fresh_emulator(ctx, **faults)
    emails = emails_for("provider", n)
    world = w.world_build(
        name="provider",
        plan=w.PLAN_ONE_EMAIL,
        emails=emails,
        webhook_public_key=ctx.emulator.public_key,
    )
    w.world_release(world)
    progress = progress_of(ctx, world, n)
    if not wait(
        ctx,
        lambda: ctx.emulator.stats()["accepted"] >= n * 0.5,
        row=row,
        timeout=180,
        what="half the wave under faults",
        progress=progress,
    ):
        return row
    stats = ctx.emulator.stats()
    ctx.emulator.configure(**{k: 0 for k in faults if k.endswith("share")})
    ctx.say(f"case 4: provider healthy again after {stats['faults']}")
    sent, not_sent = settle_with_review(ctx, world, n, timeout=300, row=row)
    held, _ = sends_truth(ctx, world, row, one_step_keys(emails))
    row.lost += held
    events_truth(ctx, world, row)
    transitions_truth(world, row)
    final = ctx.emulator.stats()  # requests in flight at the switch may have faulted since
    # Every mail the provider took without our learning it (the emulator names them):
    # reconciled from its events — sent once, never resent.
    taken = [
        public_id for kind, public_id in final["faulted_messages"] if kind in ("timeout", "drop")
    ]
    (reconciled, early) = w._one(
        "SELECT count(*) FILTER (WHERE status_rank >= 10),"
        "       count(*) FILTER (WHERE status_rank >= 10 AND error_code NOT LIKE 'unknown:%%')"
        " FROM messaging_message WHERE tenant_id = %s AND public_id::text = ANY(%s)",
        [world.tenant_id, taken],
    )
    transient = Counter(
        dict(
            w._all(
                "SELECT error_code, count(*) FROM messaging_message WHERE tenant_id = %s"
                " AND error_code LIKE 'transient:%%'"
                " AND error_code <> 'transient:operator_not_sent' GROUP BY error_code",
                [world.tenant_id],
            )
        )
    )
    retried = sum(transient.values())
    states = w.enrollment_states(world)
    row.check(states == Counter({"completed": n}), f"enrollment states {dict(states)}")
    # Every configured fault must have fired: the emulator counts the ones after a request
    # was read; 429 and 500 answers show in our ledger as the transient error they caused.
    fired = {
        "429": transient["transient:rate_limited"],
        "500": transient["transient:server_error"],
        **{kind: final["faults"].get(kind, 0) for kind in ("timeout", "drop", "reset")},
    }
    silent = [kind for kind, count in fired.items() if not count]
    row.check(not silent, f"configured faults that never fired: {', '.join(silent)}")
    unknown = len(taken)
    row.check(
        reconciled == unknown,
        f"{unknown - reconciled} sends the provider took were not reconciled from events",
    )
    # A connection closed before the provider took the mail is indistinguishable from one
    # it took: each becomes needs_review, and the provider has none of them.
    resets = final["faults"].get("reset", 0)
    row.check(
        sent + not_sent == resets and sent == 0,
        f"{resets} lost before acceptance, but needs_review {sent + not_sent}"
        f" ({sent} of them at the provider)",
    )
    row.notes.append(
        f"faults fired {fired};"
        f" {final['rejected'] - resets} answered 429/500 → {retried} transient"
        f" attempts retried later;"
        f" {unknown} accepted without our knowing → {reconciled} reconciled from events"
        f" ({early} of them before our call had even given up);"
        f" {resets} lost before acceptance → needs_review {sent + not_sent}"
        f" (operator: {not_sent} not sent, sent once; {sent} sent)"
    )
    return row


# --- 5. Two beats and two sweepers --------------------------------------------------------------

PLAN_BRANCHES = {
    "name": "Branches",
    "start": "intro",
    "steps": {
        "intro": w.email_step(
            "Quick question", on={"open": "follow_up", "no_open": {"after": "1m", "to": "nudge"}}
        ),
        "follow_up": w.email_step("Glad you looked", thread_with="intro", next="done"),
        "nudge": w.email_step("Bumping this", thread_with="intro", next="done"),
        "done": {"type": "end", "outcome": "sent"},
    },
}


def _post(ctx: Context, path: str, body: bytes, headers: dict[str, str]) -> int | str:
    request = urllib.request.Request(ctx.stack.web_url + path, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__


def _receipts_post(ctx: Context, world: w.World, count: int) -> Counter:
    """``count`` replies by Inbound Parse, texts and Twilio status reports each, from people
    and for texts no journey knows (stored, then normalised once, moving nothing): work for
    the inbound and SMS receipt sweeps to race the hinted tasks over. Returns the answers."""
    from django.conf import settings

    from messaging.emulator.twilio import signature_compute

    tenant = world.tenant
    answers: Counter = Counter()
    boundary = "chaosboundary"
    for i in range(count):
        mail = (
            f"From: stranger{i}@elsewhere.example.com\r\nTo: ae@beats.sender.example.com\r\n"
            f"Subject: Question {i}\r\nMessage-ID: <beats-{i}-{tenant.public_id}@elsewhere>\r\n"
            f"\r\nWho gave you my address?"
        )
        fields = {"email": mail, "from": f"stranger{i}@elsewhere.example.com", "to": "ae@x"}
        body = (
            "".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                for k, v in fields.items()
            )
            + f"--{boundary}--\r\n"
        )
        path = f"/webhooks/sendgrid/inbound/{tenant.public_id}/{tenant.inbound_secret}/"
        content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        answers[_post(ctx, path, body.encode(), content_type)] += 1
        for kind, params in (
            ("inbound", {"MessageSid": f"SMbeatsin{i}", "From": f"+1555010{i:04d}",
                         "To": "+15550000001", "Body": "Who is this?"}),
            ("status", {"MessageSid": f"SMbeatsst{i}", "MessageStatus": "delivered",
                        "To": f"+1555020{i:04d}"}),
        ):  # fmt: skip
            path = f"/webhooks/twilio/{kind}/{tenant.public_id}/"
            signature = signature_compute(
                auth_token=settings.TWILIO_AUTH_TOKEN, url=ctx.stack.web_url + path, params=params
            )
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            }
            answers[_post(ctx, path, urllib.parse.urlencode(params).encode(), headers)] += 1
    return answers


def case_two_beats(ctx: Context) -> Row:
    n = ctx.scale(300, 2_000)
    replies = ctx.scale(50, 200)
    row = Row(
        5,
        "two beat processes + two sweeper processes running the receipt, action and rollup sweeps",
        f"{n:,} leads x 2 emails; half open, half time out (no_open after 1m"
        + (", brought forward)" if ctx.short else ")")
        + f"; {replies} inbound mails, {replies} texts, {replies} text status reports",
    )
    fresh_emulator(ctx)
    extra = [ctx.stack.beat_add(), ctx.stack.sweeper_add(), ctx.stack.sweeper_add()]
    try:
        emails = emails_for("beats", n, lambda i: "open" if i % 2 == 0 else "")
        world = w.world_build(
            name="beats",
            plan=PLAN_BRANCHES,
            emails=emails,
            webhook_public_key=ctx.emulator.public_key,
        )
        w.world_release(world)
        answers = _receipts_post(ctx, world, replies)
        row.check(set(answers) <= {200, 204}, f"inbound and Twilio posts answered {dict(answers)}")
        progress = progress_of(ctx, world, 2 * n)
        if ctx.short:
            # CI's version does not wait the minute: once every opener's follow-up is out,
            # the timeouts come due now (Postgres owns time; this is the only time travel).
            openers = n // 2 + n % 2
            if not wait(
                ctx,
                row=row,
                predicate=lambda: (
                    Message.objects.filter(
                        tenant_id=world.tenant_id, step="follow_up", status_rank__gte=10
                    ).count()
                    >= openers
                ),
                timeout=120,
                what="the openers' follow-ups",
                progress=progress,
            ):
                return row
            w._one(
                "WITH moved AS (UPDATE campaigns_scheduledaction SET due_at = now()"
                " WHERE tenant_id = %s AND kind = 'timeout' AND status = 'pending'"
                " RETURNING 1) SELECT count(*) FROM moved",
                [world.tenant_id],
            )

        def done() -> bool:
            states = w.enrollment_states(world)
            return (
                states.get("completed", 0) == n and settled(ctx, world) and w.deltas_pending() == 0
            )

        wait(ctx, done, row=row, timeout=300, what="every journey", progress=progress)
    finally:
        for child in extra:
            child.stop()
            for group in (ctx.stack.beats, ctx.stack.extras):
                if child in group:
                    group.remove(child)
    expected = {(e.lower(), "intro") for e in emails}
    expected |= {(e.lower(), "follow_up" if i % 2 == 0 else "nudge") for i, e in enumerate(emails)}
    held, _ = sends_truth(ctx, world, row, expected)
    row.lost += held
    events_truth(ctx, world, row)
    truth = transitions_truth(world, row)
    timeouts = w.events(world).synthetic
    row.check(truth.by_trigger.get("open") == n // 2 + n % 2, f"opens moved {truth.by_trigger}")
    row.check(truth.by_trigger.get("no_open") == n // 2, f"timeouts moved {truth.by_trigger}")
    row.check(timeouts == n // 2, f"{timeouts} timeout events for {n // 2} timeouts")
    same, detail = w.rollups_match_recount(world)
    row.check(same, f"rollups differ from the recount: {detail}")
    # Each stored reply and Twilio callback normalised exactly once, whoever got to it.
    inbound, inbound_receipts, sms_events, sms_keys = w._one(
        """
        SELECT (SELECT count(*) FROM messaging_inboundmessage WHERE tenant_id = %(t)s),
               (SELECT count(DISTINCT receipt_id) FROM messaging_inboundmessage
                WHERE tenant_id = %(t)s),
               (SELECT count(*) FROM messaging_messageevent
                WHERE tenant_id = %(t)s AND provider_event_id LIKE 'twilio:%%'),
               (SELECT count(DISTINCT provider_event_id) FROM messaging_messageevent
                WHERE tenant_id = %(t)s AND provider_event_id LIKE 'twilio:%%')
        """,
        {"t": world.tenant_id},
    )
    row.check(
        inbound == inbound_receipts == replies,
        f"{inbound} inbound messages from {inbound_receipts} receipts for {replies} mails",
    )
    row.check(
        sms_events == sms_keys == 2 * replies,
        f"{sms_events} Twilio events ({sms_keys} distinct) for {2 * replies} callbacks",
    )
    row.notes.append(
        f"transitions {dict(truth.by_trigger)}; {timeouts} timeouts fired once each;"
        f" {inbound} inbound mails and {sms_events} Twilio callbacks recorded once each;"
        f" rollups = recount ({detail})"
    )
    return row


# --- 6. Webhook storm --------------------------------------------------------------------------

PLAN_ENGAGE = {
    "name": "Engagement",
    "start": "intro",
    "steps": {
        "intro": w.email_step(
            "Quick question",
            on={
                "open": "engaged",
                "bounce": "bounced",
                "no_open": {"after": "3d", "to": "nudge"},
            },
        ),
        "nudge": w.email_step("Bumping this", next="done"),
        "engaged": {"type": "end", "outcome": "engaged"},
        "bounced": {"type": "end", "outcome": "bounced"},
        "done": {"type": "end", "outcome": "sent"},
    },
}


def _storm_events(messages: list[Message], rng: random.Random) -> tuple[list[dict], set[int]]:
    """SendGrid-shaped events for the messages; returns them and the ids of the messages
    whose enrollment must move (a human open, a bounce or an unsubscribe)."""
    events: list[dict] = []
    movers: set[int] = set()
    serial = 0

    def event(message: Message, kind: str, at: float, **extra) -> dict:
        nonlocal serial
        serial += 1
        return {
            "event": kind,
            "email": message.to_email,
            "timestamp": int(at),
            "sg_event_id": f"chaos-{message.pk}-{serial}-{rng.getrandbits(40):x}",
            "sg_message_id": f"{message.provider_message_id}.filterdrecv-chaos-{serial}.0",
            "smtp-id": f"<{message.provider_message_id}@ismtpd0001p1iad1.sendgrid.net>",
            "outreach_message_id": str(message.public_id),
            **extra,
        }

    for index, message in enumerate(messages):
        t0 = message.sent_at.timestamp()
        events.append(event(message, "processed", t0 + 1))
        if rng.random() < 0.3:
            events.append(event(message, "deferred", t0 + 5, attempt="1", response="4.2.1"))
        if index % 33 == 0:
            events.append(event(message, "bounce", t0 + 20, type="bounce", status="5.1.1"))
            movers.add(message.pk)
            continue
        events.append(event(message, "delivered", t0 + 10))
        opens = rng.choice((0, 0, 1, 2, 3, 4, 5, 5))
        for k in range(opens):
            events.append(event(message, "open", t0 + 300 + 60 * k, sg_machine_open=False))
        if opens:
            movers.add(message.pk)
            if rng.random() < 0.25:
                events.append(
                    event(
                        message,
                        "click",
                        t0 + 400,
                        url="https://x.example.com",
                        useragent="Mozilla/5.0",
                    )
                )
            if rng.random() < 0.01:
                events.append(event(message, "unsubscribe", t0 + 500))
    return events, movers


def case_webhook_storm(ctx: Context) -> Row:
    messages_wanted = ctx.scale(600, 10_000)
    row = Row(
        6,
        "webhook storm: each event delivered 1-50 times, shuffled; the events of 10% of the"
        " mails 2-6 hours late",
        f"{messages_wanted:,} messages",
    )
    # The provider takes the mail and posts nothing: this case's events are its own storm.
    fresh_emulator(ctx, events_url_template="")
    signer = Signer.from_setting("")
    emails = emails_for("storm", messages_wanted)
    world = w.world_build(
        name="storm", plan=PLAN_ENGAGE, emails=emails, webhook_public_key=signer.public_key
    )
    w.world_release(world)
    if not wait(
        ctx,
        lambda: settled(ctx, world) and w.ledger(world).get("accepted", 0) == messages_wanted,
        row=row,
        timeout=300,
        what="the sends the storm is about",
        progress=progress_of(ctx, world, messages_wanted),
    ):
        return row
    rng = random.Random(6)
    # The events are dated after their mail's send, and never in the future: every mail is
    # moved back to have been sent 15 minutes ago, and a tenth of them 2-6 hours ago. Those
    # are the late ones: all their events come last, hours after they happened (SendGrid
    # retrying an endpoint that was down).
    ids = sorted(Message.objects.filter(tenant_id=world.tenant_id).values_list("pk", flat=True))
    late_ids = set(rng.sample(ids, len(ids) // 10))
    back = [rng.uniform(2 * 3600, 6 * 3600) if pk in late_ids else 900.0 for pk in ids]
    w._one(
        "WITH moved AS (UPDATE messaging_message m"
        " SET sent_at = m.sent_at - make_interval(secs => s.back),"
        "     created_at = m.created_at - make_interval(secs => s.back)"
        " FROM unnest(%s::bigint[], %s::float8[]) AS s(id, back)"
        " WHERE m.tenant_id = %s AND m.id = s.id RETURNING 1) SELECT count(*) FROM moved",
        [ids, back, world.tenant_id],
    )
    messages = list(
        Message.objects.filter(tenant_id=world.tenant_id)
        .order_by("pk")
        .only("pk", "to_email", "sent_at", "provider_message_id", "public_id")
    )
    unique, movers = _storm_events(messages, rng)
    late = {str(m.public_id) for m in messages if m.pk in late_ids}
    on_time: list[dict] = []
    hours_late: list[dict] = []
    deliveries = 0
    for event in unique:
        roll = rng.random()
        copies = 1 if roll < 0.6 else rng.randint(2, 5) if roll < 0.85 else rng.randint(6, 50)
        is_late = event["outreach_message_id"] in late
        (hours_late if is_late else on_time).extend([event] * copies)
        deliveries += copies
    sent = {str(m.public_id): m.sent_at.timestamp() for m in messages}
    early = sum(1 for e in unique if e["timestamp"] < sent[e["outreach_message_id"]])
    row.check(early == 0, f"{early} events dated before their mail was sent")
    rng.shuffle(on_time)
    rng.shuffle(hours_late)
    row.load = (
        f"{len(unique):,} events for {len(messages):,} messages, {deliveries:,} deliveries"
        f" in batches of 500 ({sum(e['outreach_message_id'] in late for e in unique):,}"
        " events late)"
    )
    ctx.say(f"case 6: posting {deliveries:,} deliveries of {len(unique):,} events")
    poster = StormPoster(
        url=f"{ctx.stack.web_url}/webhooks/sendgrid/events/{world.tenant.public_id}/",
        signer=signer,
    )
    started = time.monotonic()
    for stream in (on_time, hours_late):
        poster.post_all([stream[i : i + 500] for i in range(0, len(stream), 500)])
    posting = time.monotonic() - started
    ctx.say(f"case 6: posted in {posting:.0f}s, statuses {dict(poster.statuses)}")

    def done() -> bool:
        return w.receipts_unprocessed(world) == 0 and w.deltas_pending() == 0

    wait(
        ctx,
        done,
        row=row,
        timeout=600,
        what="normalisation",
        progress=lambda: f"receipts unprocessed {w.receipts_unprocessed(world):,}",
    )
    ingest = time.monotonic() - started
    row.expected = row.received = len(messages)
    events_truth(ctx, world, row, produced=len(unique))
    row.check(poster.given_up == 0, f"{poster.given_up} batches never accepted")
    truth = transitions_truth(world, row)
    row.check(w.stranded(world) == 0, "live enrollments with nothing scheduled (stuck)")
    moved = set(
        Message.objects.filter(
            tenant_id=world.tenant_id,
            enrollment__transitions__from_seq=1,
        ).values_list("pk", flat=True)
    )
    row.check(
        moved == movers,
        f"{len(movers - moved)} should have moved, {len(moved - movers)} moved wrongly",
    )
    same, detail = w.rollups_match_recount(world)
    row.check(same, f"rollups differ from the recount: {detail}")
    row.notes.append(
        f"{dict(poster.statuses)} answers; posted in {posting:.0f}s, all normalised after"
        f" {ingest:.0f}s; {len(movers):,} journeys moved once each"
        f" ({dict(truth.by_trigger)}); rollups = recount ({detail})"
    )
    return row


# --- 7 and 8: pytest ---------------------------------------------------------------------------


def _pytest(
    ctx: Context, test: str, report: Path, extra_env: dict[str, str], *, timeout: float
) -> tuple[int, str]:
    """Run one test file on the private stores; (exit status, output). Past ``timeout`` the
    test is killed and the status is None."""
    env = dict(ctx.stack.env)
    # Its own database on the private cluster: pytest-django's test_<name>, which the run
    # made as a copy of its freshly migrated database (reused: not migrated again).
    env.update(
        {
            "DATABASE_URL": ctx.pg.url.rsplit("/", 1)[0] + "/outreach_chaos_tests",
            "REDIS_URL": ctx.redis.url[:-1] + "1",
            "CELERY_BROKER_URL": ctx.redis.url[:-1] + "1",
            "CHAOS_REPORT": str(report),
            "DJANGO_DEBUG": "1",
            **extra_env,
        }
    )
    env.pop("SENDGRID_API_HOST", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--reuse-db", test],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or b""
        return None, output.decode(errors="replace") if isinstance(output, bytes) else output
    return result.returncode, (result.stdout + result.stderr)


def case_state_machine(ctx: Context) -> Row:
    examples = ctx.scale(15, 100)
    row = Row(
        7,
        "property-based: random event/timeout/pause/resume/migrate/send sequences",
        f"hypothesis state machine, {examples} sequences",
    )
    report = ctx.root / "case7.json"
    # Bounded well inside the run's own deadline (CI's run has 3 minutes for everything).
    timeout = ctx.scale(100, 480)
    code, output = _pytest(
        ctx,
        "campaigns/tests/test_enrollment_properties.py",
        report,
        {"CHAOS_HYPOTHESIS_EXAMPLES": str(examples)},
        timeout=timeout,
    )
    figures = json.loads(report.read_text()) if report.exists() else {}
    row.transitions = f"{figures.get('steps', 0):,} steps, {figures.get('checks', 0):,} checks"
    row.check(code is not None, f"the property test ran past its {timeout} s bound")
    row.check(code in (0, None), "invariant broken:\n" + output[-3000:])
    row.duplicates = figures.get("duplicate_sends", 0)
    row.notes.append(
        f"{figures.get('sequences', 0)} sequences, {figures.get('steps', 0):,} rules applied,"
        f" invariants checked after each; rules seen {figures.get('rules', {})}"
    )
    return row


def case_hostile_input(ctx: Context) -> Row:
    from chaos.hostile import hostile_run, hostile_world_build

    row = Row(8, "bad and hostile input against gunicorn", "")
    fresh_emulator(ctx)
    world = hostile_world_build()
    tally = hostile_run(base_url=ctx.stack.web_url, world=world)
    row.load = f"{tally.requests:,} requests in {len(tally.by_kind)} kinds"
    row.notes.append(tally.summary())
    row.check(
        tally.accepted == 0, f"{tally.accepted} hostile requests accepted: {tally.failures[:5]}"
    )
    row.check(tally.leaked == 0, f"{tally.leaked} responses leaked another tenant's data")
    row.check(tally.server_errors == 0, f"{tally.server_errors} answers 5xx: {tally.failures[:5]}")
    row.check(tally.effects == 0, f"{tally.effects} side effects: {tally.failures[:5]}")
    row.check(tally.unchecked == 0, f"{tally.unchecked} probes unchecked: {tally.failures[:5]}")
    row.events = f"{tally.server_errors} 5xx"
    row.duplicates = 0
    row.lost = 0
    return row


CASES: dict[int, Callable[[Context], Row]] = {
    1: case_worker_sigkill,
    2: case_redis_restart,
    3: case_postgres_restart,
    4: case_provider_faults,
    5: case_two_beats,
    6: case_webhook_storm,
    7: case_state_machine,
    8: case_hostile_input,
}


def case_run(ctx: Context, number: int) -> Row:
    started = time.monotonic()
    restarts_before = len(ctx.stack.restarts)
    print(f"\n== case {number} ==", flush=True)
    try:
        row = CASES[number](ctx)
    except Exception as exc:  # a case that crashes is a failed case, the others still run
        import traceback

        traceback.print_exc()
        row = Row(number, CASES[number].__name__, "")
        row.notes.append(f"FAILED: the case crashed: {type(exc).__name__}: {exc}")
        connection.close()
    late = ctx.stack.processes_restart_on_death()  # died after the case's last wait
    if late:
        ctx.say(f"supervisor: restarted {', '.join(late)} (it had exited)")
    restarted = ctx.stack.restarts[restarts_before:]
    if restarted:
        row.notes.append(f"supervisor restarted (had exited): {', '.join(restarted)}")
    # Every process must ride out every fault: a worker or beat that exits when Redis or
    # PostgreSQL goes away stops sending wherever nothing restarts it. The supervisor's
    # restart only lets the other cases run. (Case 1 restarts its own kills.)
    row.check(not restarted, f"processes exited: {', '.join(restarted)} (see logs/)")
    row.passed = (
        row.duplicates == 0 and row.lost == 0 and not any(n.startswith("FAILED") for n in row.notes)
    )
    row.seconds = time.monotonic() - started
    return row
