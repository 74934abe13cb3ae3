"""``synthetic_load``: a data set of any size, consistent across every table, loaded fast.

What it builds: ``spec.tenants`` tenants whose sizes follow a power law (a few big, many
small; plans enterprise, standard and trial), each with sender identities and active
campaigns running ``data.PLAN``; ``spec.leads`` leads; and ``spec.months`` months of history.
Enrollments start over that time and each journey is played forward to now: the messages
sent; SendGrid's events (processed, deferred, delivered, machine and human opens, clicks, bot
clicks, bounces, unsubscribes, spam reports); replies (inbound messages and their ``reply``
events); the ``no_reply`` timeouts that fired (synthetic events); the transitions all of
these caused; the suppressions; and, for journeys still running, the one pending scheduled
action the engine would hold. About ``spec.events`` events in all.

The rows are those the services would have written: the same idempotency keys, triggers,
causes, stop reasons, status ranks and event keys (``outreach/tests/test_synthetic.py``
holds them to it). This module writes every app's tables itself because it is a test-data
tool: going through the services would take days at 50M events.

How it is fast: leads and each day's journeys (enrollments, messages, transitions, actions,
replies and the rare events a transition points at) are generated in Python and sent with
``COPY``; the bulk of the events (about 90%) is expanded inside PostgreSQL from one plan row
per message (``INSERT … SELECT`` over ``generate_series``) on a second connection, so Python
and PostgreSQL work at the same time. Where the role may (a superuser), the rows are written
with ``session_replication_role = replica``: no per-row foreign-key checks and no analytics
triggers, and each tenant's rollups are then counted set-based from its rows
(``analytics_tenant_rebuild``, tenants side by side); that halves the load's CPU. Otherwise
every row goes through the triggers and the rollups are brought up to date as the load goes
and at its end by ``analytics_refresh``. Either way the rollups equal a recount
(``outreach/tenancy/tests/test_load_synthetic.py``). Ids come from blocks reserved on each
table's own sequence, so a load can run beside real traffic.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import threading
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from django.utils.text import slugify
from psycopg import sql

from analytics.services.backfill import analytics_tenant_rebuild
from analytics.services.rollup import analytics_refresh, analytics_views_refresh
from campaigns.services.campaigns import (
    campaign_create,
    campaign_publish,
    campaign_status_set,
    campaign_version_add,
)
from messaging.models import SenderIdentity
from messaging.services.partitions import event_partitions_ensure
from outreach.common.errors import ApplicationError
from outreach.synthetic import data
from outreach.synthetic.journeys import (
    DAY,
    EVENTS_PER_MESSAGE,
    MESSAGES_PER_ENROLLMENT,
    CampaignRef,
    IdBlocks,
    Journeys,
    Leads,
    Progress,
    Seeds,
    SyntheticSpec,
    World,
    moment,
)
from outreach.synthetic.writes import (
    LEAD_COLUMNS,
    ChunkWriters,
    copy_rows,
    ids_reserve,
    session_tune,
    unchecked_allowed,
)
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import tenant_create

logger = logging.getLogger(__name__)

TENANT_SIZE_EXPONENT = 1.1


@dataclass
class SyntheticReport:
    tenant_sizes: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # True: written without per-row checks and triggers, rollups rebuilt set-based.
    unchecked: bool = False
    bytes_before: int = 0
    bytes_after: int = 0


class _NoProgress:
    def start(self, stage: str, total: int, unit: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


# --------------------------------------------------------------------------- checks


def synthetic_spec_check(*, spec: SyntheticSpec) -> None:
    """Refuse a spec that cannot make a sensible data set, naming the option at fault."""

    def bad(option: str, reason: str) -> ApplicationError:
        return ApplicationError(f"{option}: {reason}", extra={option: [reason]})

    if not 1 <= spec.tenants <= 1000:
        raise bad("--tenants", f"expected a whole number from 1 to 1000, got {spec.tenants}")
    if spec.leads < 10 * spec.tenants:
        raise bad(
            "--leads",
            f"expected at least 10 per tenant ({10 * spec.tenants} for {spec.tenants} tenants),"
            f" got {spec.leads}",
        )
    if spec.leads > 100_000_000:
        raise bad("--leads", f"expected at most 100000000, got {spec.leads}")
    if not spec.leads <= spec.events <= 200 * spec.leads:
        raise bad(
            "--events",
            f"expected from one to 200 per lead ({spec.leads} to {200 * spec.leads}),"
            f" got {spec.events}",
        )
    if not 1 <= spec.months <= 24:
        raise bad("--months", f"expected a whole number from 1 to 24, got {spec.months}")
    if not spec.prefix or slugify(spec.prefix) != spec.prefix or len(spec.prefix) > 40:
        raise bad(
            "--prefix",
            f"expected a slug of at most 40 lower-case letters, digits and hyphens,"
            f" got {spec.prefix!r}",
        )


def synthetic_database_check(*, spec: SyntheticSpec, allow_existing: bool) -> None:
    """A synthetic load is for a database of its own. Tenants it did not make are refused
    unless ``allow_existing``; its own tenants (same prefix) are refused always."""
    prefix = f"{spec.prefix}-"
    ours = Tenant.objects.filter(slug__startswith=prefix).count()
    if ours:
        raise ApplicationError(
            f"{ours} tenant(s) with the slug prefix '{prefix}' already exist: drop them (or the"
            " database) first, or pass another --prefix",
            code="exists",
        )
    real = Tenant.objects.exclude(slug__startswith=prefix).order_by("pk")
    count = real.count()
    if count and not allow_existing:
        example = real.values_list("slug", flat=True).first()
        raise ApplicationError(
            f"the database holds {count} real tenant(s) (e.g. '{example}'); load_synthetic"
            " fills an empty database, pass --allow-existing to add to this one anyway",
            code="refused",
        )


def tenant_sizes(*, tenants: int, leads: int) -> list[int]:
    """Leads per tenant, largest first: a power law, so a few tenants hold most leads."""
    weights = [1 / rank**TENANT_SIZE_EXPONENT for rank in range(1, tenants + 1)]
    total = sum(weights)
    sizes = [max(10, int(leads * weight / total)) for weight in weights]
    sizes[0] += leads - sum(sizes)
    return sizes


def tenant_plan_for(*, rank: int, tenants: int) -> str:
    """Plans by size: the biggest tenants are enterprise, the smallest quarter are trials."""
    if rank < max(1, tenants // 7):
        return Tenant.Plan.ENTERPRISE
    if tenants >= 4 and rank >= tenants - tenants // 4:
        return Tenant.Plan.TRIAL
    return Tenant.Plan.STANDARD


# --------------------------------------------------------------------------- the world


def _world_create(*, spec: SyntheticSpec, rank: int, size: int, rng: random.Random) -> World:
    slug = f"{spec.prefix}-{rank + 1:02d}"
    tenant = tenant_create(name=f"Synthetic {rank + 1:02d}", slug=slug).tenant
    zone = rng.choice([z for z, _, _ in data.ZONES])
    Tenant.objects.filter(pk=tenant.pk).update(
        plan=tenant_plan_for(rank=rank, tenants=spec.tenants),
        timezone=zone,
        postal_address=f"{rank + 1} Synthetic Way, Springfield",
    )
    identities = []
    for j in range(min(20, 2 + size // 25_000)):
        first, last = rng.choice(data.FIRST_NAMES), rng.choice(data.LAST_NAMES)
        identities.append(
            SenderIdentity(
                tenant=tenant,
                from_name=f"{first} {last}",
                from_email=f"{first}.{last}{j}@{slug}.example.com".lower(),
                owner_name=f"{first} {last}",
                signature=f"{first} {last}, {slug}",
                daily_cap=2000,
                hourly_cap=250,
                timezone=zone,
                domain_status=SenderIdentity.DomainStatus.VERIFIED,
            )
        )
    identities = SenderIdentity.objects.bulk_create(identities)
    campaigns = []
    for j in range(min(60, 3 + size // 10_000)):
        identity = identities[j % len(identities)]
        campaign = campaign_create(
            tenant_id=tenant.pk, name=f"Campaign {j + 1}", sender_identity_id=identity.pk
        )
        version = campaign_version_add(
            tenant_id=tenant.pk, campaign_id=campaign.pk, plan=data.PLAN
        ).version
        campaign_publish(tenant_id=tenant.pk, campaign_id=campaign.pk, version=version.version)
        campaign_status_set(tenant_id=tenant.pk, campaign_id=campaign.pk, action="activate")
        campaigns.append(CampaignRef(campaign.pk, version.pk, identity.pk, identity.from_email))
    return World(rank=rank, id=tenant.pk, slug=slug, size=size, campaigns=campaigns)


# --------------------------------------------------------------------------- helpers


def _conninfo() -> dict[str, Any]:
    params = connection.settings_dict
    info = {
        "dbname": params["NAME"],
        "user": params.get("USER") or None,
        "password": params.get("PASSWORD") or None,
        "host": params.get("HOST") or None,
        "port": params.get("PORT") or None,
    }
    return {key: value for key, value in info.items() if value}


# --------------------------------------------------------------------------- leads


def _companies(rng: random.Random, count: int) -> list[tuple[str, str]]:
    out = []
    for k in range(count):
        a, b = rng.sample(data.COMPANY_WORDS, 2)
        suffix = rng.choice(data.COMPANY_SUFFIXES)
        out.append((f"{a} {b} {suffix}", f"{a}{b}{k}.example".lower()))
    return out


def _leads_copy(
    *, cursor, worlds: list[World], leads: Leads, start: float, now: float, rng, progress
) -> None:
    zones, zone_weights = zip(*(((z, c), w) for z, c, w in data.ZONES), strict=True)
    cum = list(itertools.accumulate(zone_weights))
    next_id = leads.first_id
    for world in worlds:
        companies = _companies(rng, max(10, world.size // 12))
        rows = []
        for n in range(world.size):
            first, last = rng.choice(data.FIRST_NAMES), rng.choice(data.LAST_NAMES)
            company, domain = rng.choice(companies)
            zone, country = rng.choices(zones, cum_weights=cum)[0]
            email = f"{first}.{last}{n}@{domain}".lower()
            created = rng.uniform(start - 60 * DAY, now - DAY)
            r = rng.random()
            if r < 0.01:
                status, reason, validated = "invalid", "the mailbox does not exist", created + 60
            elif r < 0.05:
                status, reason, validated = "risky", "catch-all domain", created + 60
            elif r < 0.08:
                status, reason, validated = "unknown", "", None
            else:
                status, reason, validated = "valid", "", created + 60
            phone = ""
            if country in ("US", "CA") and rng.random() < 0.4:
                phone = f"+1{rng.randint(2, 9)}{rng.randrange(10**9):09d}"
            rows.append(
                (
                    next_id,
                    world.id,
                    email,
                    first,
                    last,
                    company,
                    rng.choice(data.TITLES),
                    zone,
                    country,
                    phone,
                    json.dumps(
                        {
                            "source": rng.choice(data.SOURCES),
                            "industry": rng.choice(data.INDUSTRIES),
                        }
                    ),
                    status,
                    reason,
                    False,
                    False,
                    moment(validated) if validated else None,
                    moment(created),
                    moment(created),
                )
            )
            leads.tenant_rank.append(world.rank)
            leads.created.append(created)
            leads.enrollable.append(status != "invalid")
            leads.enrollments_left.append(0)
            leads.busy_until.append(0.0)
            leads.email.append(email)
            leads.first_name.append(first)
            leads.company.append(company)
            next_id += 1
            if len(rows) == 20_000:
                copy_rows(cursor, "campaigns_lead", LEAD_COLUMNS, rows)
                progress.advance(len(rows))
                rows = []
        copy_rows(cursor, "campaigns_lead", LEAD_COLUMNS, rows)
        progress.advance(len(rows))


def _seeds_plan(
    *, spec: SyntheticSpec, worlds: list[World], leads: Leads, start: float, now: float, rng
) -> Seeds:
    days = math.ceil((now - start) / DAY) + 1
    seeds = Seeds(
        lead=[array("q") for _ in range(days)],
        at=[array("d") for _ in range(days)],
        campaign=[array("H") for _ in range(days)],
    )
    enrollable = sum(leads.enrollable)
    wanted = spec.events / EVENTS_PER_MESSAGE / MESSAGES_PER_ENROLLMENT
    per_lead = wanted / max(1, enrollable)
    whole, fraction = int(per_lead), per_lead - int(per_lead)
    for i, ok in enumerate(leads.enrollable):
        if not ok:
            continue  # invalid addresses are never enrolled
        campaigns = worlds[leads.tenant_rank[i]].campaigns
        count = min(len(campaigns), whole + (1 if rng.random() < fraction else 0))
        if not count:
            continue
        leads.enrollments_left[i] = min(255, count)
        offset = rng.randrange(len(campaigns))
        earliest = max(leads.created[i] + 60, start)
        for j in range(min(255, count)):
            at = rng.uniform(earliest, now - 120)
            day = int((at - start) // DAY)
            seeds.lead[day].append(i)
            seeds.at[day].append(at)
            seeds.campaign[day].append((offset + j) % len(campaigns))
            seeds.total += 1
    return seeds


# --------------------------------------------------------------------------- the load


def synthetic_load(
    *,
    spec: SyntheticSpec,
    allow_existing: bool = False,
    progress: Progress | None = None,
    views_refresh: bool = True,
    jobs: int = 3,
    checked: bool = False,
) -> SyntheticReport:
    """Build the data set ``spec`` describes (see the module docstring). Refuses bad specs
    and databases holding real tenants (``allow_existing`` to add to them anyway).
    ``views_refresh=False`` leaves the dashboard's daily views to beat (they cover every
    tenant, so on a big database the refresh is minutes). ``jobs`` connections write chunks
    of journeys at once. ``checked=True`` writes through the foreign-key checks and the
    analytics triggers even where the role could skip them (the slower way, which a role
    without the privilege always takes)."""
    synthetic_spec_check(spec=spec)
    synthetic_database_check(spec=spec, allow_existing=allow_existing)
    progress = progress or _NoProgress()
    started = time.monotonic()
    rng = random.Random(spec.seed)
    now = time.time()
    start = now - spec.months * 30 * DAY
    report = SyntheticReport(tenant_sizes=tenant_sizes(tenants=spec.tenants, leads=spec.leads))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        report.bytes_before = int(cursor.fetchone()[0])
    event_partitions_ensure(
        months_back=spec.months + 1, months_ahead=settings.EVENT_PARTITIONS_AHEAD_MONTHS
    )

    progress.start("tenants", spec.tenants, "tenant")
    worlds = []
    for rank, size in enumerate(report.tenant_sizes):
        worlds.append(_world_create(spec=spec, rank=rank, size=size, rng=rng))
        progress.advance(1)

    conninfo = _conninfo()
    leads = Leads()
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        report.unchecked = not checked and unchecked_allowed(conn)
        session_tune(conn, unchecked=report.unchecked)
        with conn.transaction(), conn.cursor() as cursor:
            leads.first_id = ids_reserve(cursor, "campaigns_lead", spec.leads)
        progress.start("leads", spec.leads, "lead")
        with conn.transaction(), conn.cursor() as cursor:
            _leads_copy(
                cursor=cursor,
                worlds=worlds,
                leads=leads,
                start=start,
                now=now,
                rng=rng,
                progress=progress,
            )
        seeds = _seeds_plan(spec=spec, worlds=worlds, leads=leads, start=start, now=now, rng=rng)
        with conn.transaction(), conn.cursor() as cursor:
            ids = IdBlocks(
                enrollment=ids_reserve(cursor, "campaigns_enrollment", seeds.total),
                message=ids_reserve(cursor, "messaging_message", 3 * seeds.total),
                inbound=ids_reserve(cursor, "messaging_inboundmessage", seeds.total),
                event=ids_reserve(cursor, "messaging_messageevent", 3 * seeds.total),
            )
        journeys = Journeys(
            spec=spec,
            worlds=worlds,
            leads=leads,
            ids=ids,
            total_seeds=seeds.total,
            now=now,
            rng=rng,
        )
        progress.start("events", spec.events, "event")
        writers = ChunkWriters(
            conninfo=conninfo,
            cutoff=moment(journeys.key_cutoff),
            progress=progress,
            jobs=jobs,
            unchecked=report.unchecked,
        )
        refresher = None if report.unchecked else _Refresher()
        writers.start()
        if refresher:
            refresher.start()
        try:
            for day in range(len(seeds.lead)):
                writers.submit(journeys.chunk(seeds, day))
        finally:
            writers.finish()
            if refresher:
                refresher.finish()
    # Statistics first: the rebuild's plans (hash joins over millions of rows) depend on them.
    _tables_analyze(SOURCE_TABLES)
    if report.unchecked:
        _analytics_rebuild(worlds=worlds, jobs=jobs, progress=progress)
    else:
        _analytics_drain()
    if views_refresh:
        analytics_views_refresh()
    _tables_analyze(ANALYTICS_TABLES)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        report.bytes_after = int(cursor.fetchone()[0])
    report.counts = {"tenants": spec.tenants, "leads": spec.leads, **journeys.counts}
    report.seconds = time.monotonic() - started
    logger.info("synthetic.loaded", extra={"counts": report.counts, "seconds": report.seconds})
    return report


SOURCE_TABLES = (
    "campaigns_lead",
    "campaigns_enrollment",
    "campaigns_enrollmenttransition",
    "campaigns_scheduledaction",
    "messaging_message",
    "messaging_messageevent",
    "messaging_messageeventkey",
    "messaging_inboundmessage",
    "suppression_suppression",
)
ANALYTICS_TABLES = ("analytics_hourlyrollup", "analytics_journeycount", "analytics_messagefirst")


def _tables_analyze(tables: tuple[str, ...]) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def _analytics_rebuild(*, worlds: list[World], jobs: int, progress: Progress) -> None:
    """Count each loaded tenant's rollups from its rows, ``jobs`` tenants at once, the
    biggest first so the last to finish is a small one."""
    progress.start("analytics", len(worlds), "tenant")

    def rebuild(world: World) -> None:
        try:
            analytics_tenant_rebuild(tenant_id=world.id)
        finally:
            connection.close()  # this thread's own connection
        progress.advance(1)

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="synthetic-rollup") as pool:
        list(pool.map(rebuild, sorted(worlds, key=lambda w: -w.size)))  # re-raises


class _Refresher(threading.Thread):
    """Applies the queued analytics deltas while the load runs, and vacuums the queues: a
    bulk load writes and deletes millions of delta rows, which would otherwise stay behind as
    dead space."""

    def __init__(self) -> None:
        super().__init__(name="synthetic-refresher", daemon=True)
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(20):
                analytics_refresh(budget_seconds=30)
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM analytics_hourlydelta, analytics_journeydelta")
        finally:
            connection.close()

    def finish(self) -> None:
        self.done.set()
        self.join()


def _analytics_drain() -> None:
    """Apply every delta the load queued (waiting while another refresher holds the lock)."""
    while True:
        analytics_refresh(budget_seconds=600)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM analytics_hourlydelta)"
                " OR EXISTS (SELECT 1 FROM analytics_journeydelta)"
            )
            if not cursor.fetchone()[0]:
                # The queues are empty now, but a load leaves their tables full of dead
                # space that every later scan of them would read: compact them (a moment).
                cursor.execute("VACUUM FULL analytics_hourlydelta, analytics_journeydelta")
                return
        time.sleep(0.5)
