"""What a tenant reads: campaign, sender and account analytics from the rollups and views.

Every query is scoped by tenant first; another tenant's campaign or sender is "not found".
Figures are as of ``FillState.filled_through`` (seconds behind the ledger), reported as
``as_of`` so a reader knows how fresh they are.
"""

import datetime
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from psycopg import sql

from analytics.models import (
    COUNTERS,
    CampaignDailyStats,
    FillState,
    JourneyCount,
    SenderDailyStats,
    TenantDailyStats,
)
from campaigns import selectors_campaigns
from campaigns.models import Campaign, CampaignPlanVersion
from messaging.selectors import sender_identity_get
from messaging.services.ratelimit import identity_capacity_get
from outreach.common.errors import ApplicationError
from outreach.tenancy.models import Tenant

# Gmail's and Yahoo's bulk-sender rules (February 2024): keep the spam rate reported in
# Postmaster Tools below 0.3 %, and aim under 0.1 %.
SPAM_RATE_LIMIT = 0.003
SPAM_RATE_WARN = 0.001
# Bounce rates above 2 % hurt sender reputation with every mailbox provider; 5 % is a stop.
BOUNCE_RATE_WARN = 0.02
BOUNCE_RATE_LIMIT = 0.05

BUCKETS = ("hour", "day")
MAX_RANGE = {"hour": datetime.timedelta(days=31), "day": datetime.timedelta(days=731)}
DEFAULT_RANGE = {"hour": datetime.timedelta(days=2), "day": datetime.timedelta(days=30)}

Counts = dict[str, int]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rates(counts: Counts) -> dict[str, float | None]:
    """Rates over sent and over delivered. ``unique_*`` are messages, so a lead who opens five
    times counts once; bounce and complaint rates are the ones mailbox providers watch."""
    sent, delivered = counts["sent"], counts["delivered"]
    return {
        "delivery_rate": _ratio(delivered, sent),
        "open_rate": _ratio(counts["unique_opens"], delivered),
        "open_rate_over_sent": _ratio(counts["unique_opens"], sent),
        "click_rate": _ratio(counts["unique_clicks"], delivered),
        "click_rate_over_sent": _ratio(counts["unique_clicks"], sent),
        "reply_rate": _ratio(counts["unique_replies"], sent),
        "reply_rate_over_delivered": _ratio(counts["unique_replies"], delivered),
        "bounce_rate": _ratio(counts["hard_bounces"] + counts["blocked_bounces"], sent),
        "spam_rate": _ratio(counts["spam_reports"], delivered),
        "unsubscribe_rate": _ratio(counts["unsubscribes"], delivered),
    }


def _zero() -> Counts:
    return dict.fromkeys(COUNTERS, 0)


def _add(into: Counts, row: dict[str, Any]) -> None:
    for name in COUNTERS:
        into[name] += int(row[name] or 0)


def _with_rates(counts: Counts) -> dict[str, Any]:
    return {**counts, "rates": rates(counts)}


def with_rates(row: dict[str, Any] | None) -> dict[str, Any]:
    """A row of counters (or nothing yet: zeros) with its rates."""
    counts = _zero()
    if row:
        _add(counts, row)
    return _with_rates(counts)


def as_of() -> datetime.datetime | None:
    state = FillState.objects.filter(name="hourly").first()
    return state.filled_through if state else None


def _rows(query: str | sql.Composable, params: dict) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        columns = [c.name for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


_SUMS = sql.SQL(", ").join(
    sql.SQL("sum({c})::bigint AS {c}").format(c=sql.Identifier(c)) for c in COUNTERS
)


def _campaign_buckets(*, tenant_id: int, campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's counters per version, step and variant (its hours summed)."""
    return _rows(
        sql.SQL(
            """
            SELECT plan_version_id, step, variant, {sums}
            FROM analytics_hourlyrollup
            WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s
            GROUP BY plan_version_id, step, variant
            """
        ).format(sums=_SUMS),
        {"tenant": tenant_id, "campaign": campaign_id},
    )


def _plan_graph(plan: dict, *, per_step: dict[str, Counts], here: dict[str, dict]) -> dict:
    """The plan as nodes and edges, laid out left to right by distance from the start step,
    with each step's counts on its node (what the dashboard draws)."""
    steps: dict[str, dict] = plan.get("steps", {})
    edges = []
    for name, step in steps.items():
        if step.get("next"):
            edges.append({"from": name, "to": step["next"], "label": "next"})
        for trigger, target in (step.get("on") or {}).items():
            to = target.get("to") if isinstance(target, dict) else target
            after = target.get("after") if isinstance(target, dict) else None
            label = f"{trigger} {after}" if after else trigger
            edges.append({"from": name, "to": to, "label": label})
    depth = {plan.get("start"): 0}
    frontier = [plan.get("start")]
    while frontier:
        nxt = []
        for name in frontier:
            for edge in edges:
                if edge["from"] == name and edge["to"] in steps and edge["to"] not in depth:
                    depth[edge["to"]] = depth[name] + 1
                    nxt.append(edge["to"])
        frontier = nxt
    for name in steps:
        depth.setdefault(name, max(depth.values(), default=0) + 1)
    rows: dict[int, int] = defaultdict(int)
    nodes = []
    for name in sorted(steps, key=lambda n: (depth[n], list(steps).index(n))):
        counts = per_step.get(name, _zero())
        nodes.append(
            {
                "name": name,
                "type": steps[name].get("type", ""),
                "column": depth[name],
                "row": rows[depth[name]],
                "sent": counts["sent"],
                "delivered": counts["delivered"],
                "unique_opens": counts["unique_opens"],
                "unique_clicks": counts["unique_clicks"],
                "unique_replies": counts["unique_replies"],
                "sms_sent": counts["sms_sent"],
                "sms_delivered": counts["sms_delivered"],
                "sms_undelivered": counts["sms_undelivered"],
                "sms_replies": counts["sms_replies"],
                "sms_opt_outs": counts["sms_opt_outs"],
                "here": here.get(name, {}).get("active", 0) + here.get(name, {}).get("paused", 0),
                "finished": sum(
                    n
                    for state, n in here.get(name, {}).items()
                    if state not in ("active", "paused")
                ),
            }
        )
        rows[depth[name]] += 1
    return {"nodes": nodes, "edges": edges}


def campaign_analytics(*, tenant_id: int, campaign_id: int) -> dict[str, Any]:
    """Totals, per plan version, per step and per variant, the funnel, where enrollments
    are now and why they stopped, and the plan drawn with its counts."""
    campaign: Campaign = selectors_campaigns.campaign_get(
        tenant_id=tenant_id, campaign_id=campaign_id
    )
    buckets = _campaign_buckets(tenant_id=tenant_id, campaign_id=campaign_id)
    totals, per_version, per_step, per_variant = _zero(), {}, {}, {}
    for row in buckets:
        _add(totals, row)
        _add(per_version.setdefault(row["plan_version_id"], _zero()), row)
        if row["step"]:
            _add(per_step.setdefault(row["step"], _zero()), row)
            _add(per_variant.setdefault((row["step"], row["variant"]), _zero()), row)

    journey_rows = JourneyCount.objects.filter(
        tenant_id=tenant_id, campaign_id=campaign_id, enrollments__gt=0
    ).values("plan_version_id", "step", "state", "reason", "enrollments")
    states: Counts = defaultdict(int)
    here: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    stop_reasons: Counts = defaultdict(int)
    enrolled_per_version: Counts = defaultdict(int)
    for j in journey_rows:
        states[j["state"]] += j["enrollments"]
        here[j["step"]][j["state"]] += j["enrollments"]
        enrolled_per_version[j["plan_version_id"]] += j["enrollments"]
        if j["state"] in ("stopped", "failed", "completed") and j["reason"]:
            stop_reasons[f"{j['state']}: {j['reason']}"] += j["enrollments"]

    versions = {
        v.pk: v
        for v in CampaignPlanVersion.objects.filter(tenant_id=tenant_id, campaign_id=campaign_id)
    }
    plan = campaign.current_version.plan if campaign.current_version_id else {"steps": {}}
    step_order = list(plan.get("steps", {}))
    step_names = sorted(
        per_step, key=lambda s: (step_order.index(s) if s in step_order else 999, s)
    )
    enrolled = sum(states.values())
    return {
        "campaign": {"id": campaign.pk, "name": campaign.name, "status": campaign.status},
        "as_of": as_of(),
        "totals": {**_with_rates(totals), "enrolled": enrolled or totals["enrolled"]},
        "versions": [
            {
                "plan_version_id": version_id,
                "version": versions[version_id].version if version_id in versions else None,
                "enrollments": enrolled_per_version.get(version_id, 0),
                **_with_rates(counts),
            }
            for version_id, counts in sorted(per_version.items())
            if version_id
        ],
        "steps": [
            {
                "step": name,
                "now_here": here.get(name, {}).get("active", 0)
                + here.get(name, {}).get("paused", 0),
                **_with_rates(per_step[name]),
            }
            for name in step_names
        ],
        "variants": [
            {"step": step, "variant": variant, **_with_rates(counts)}
            for (step, variant), counts in sorted(
                per_variant.items(),
                key=lambda kv: (
                    step_order.index(kv[0][0]) if kv[0][0] in step_order else 999,
                    kv[0],
                ),
            )
        ],
        "funnel": [
            {"stage": "enrolled", "count": enrolled},
            {"stage": "sent", "count": totals["sent"]},
            {"stage": "delivered", "count": totals["delivered"]},
            {"stage": "opened", "count": totals["unique_opens"]},
            {"stage": "clicked", "count": totals["unique_clicks"]},
            {"stage": "replied", "count": totals["unique_replies"]},
        ],
        "journey": {
            "states": dict(sorted(states.items())),
            "by_step": {step: dict(sorted(s.items())) for step, s in sorted(here.items())},
            "reasons": dict(sorted(stop_reasons.items(), key=lambda kv: -kv[1])),
        },
        "plan_graph": _plan_graph(plan, per_step=per_step, here=here),
    }


def _range(
    *, bucket: str, since: datetime.datetime | None, until: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    if bucket not in BUCKETS:
        raise ApplicationError(
            "bucket must be hour or day.", code="invalid", extra={"bucket": ["hour or day"]}
        )
    until = until or timezone.now()
    since = since or until - DEFAULT_RANGE[bucket]
    if since >= until:
        raise ApplicationError("from must be before to.", extra={"from": ["must be before `to`"]})
    if until - since > MAX_RANGE[bucket]:
        days = MAX_RANGE[bucket].days
        raise ApplicationError(
            f"The range is too long for {bucket} buckets (at most {days} days).",
            extra={"from": [f"at most {days} days before `to` with bucket={bucket}"]},
        )
    return since, until


def campaign_timeseries(
    *,
    tenant_id: int,
    campaign_id: int,
    bucket: str,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Every counter per hour or per day of the tenant's time zone, gaps filled with zeros."""
    selectors_campaigns.campaign_get(tenant_id=tenant_id, campaign_id=campaign_id)
    since, until = _range(bucket=bucket, since=since, until=until)
    tz = Tenant.objects.values_list("timezone", flat=True).get(pk=tenant_id)
    rows = _rows(
        sql.SQL(
            """
            WITH slots AS (
                -- Stepped in local time, so days stay days across daylight-saving changes.
                SELECT local AT TIME ZONE %(tz)s AS start
                FROM generate_series(
                    date_trunc(%(bucket)s, %(since)s::timestamptz AT TIME ZONE %(tz)s),
                    %(until)s::timestamptz AT TIME ZONE %(tz)s - interval '1 microsecond',
                    CASE WHEN %(bucket)s = 'hour' THEN interval '1 hour' ELSE interval '1 day' END
                ) AS local
            ), data AS (
                SELECT date_trunc(%(bucket)s, hour, %(tz)s) AS start, {sums}
                FROM analytics_hourlyrollup
                WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s
                  AND hour >= date_trunc(%(bucket)s, %(since)s::timestamptz, %(tz)s)
                  AND hour < %(until)s
                GROUP BY 1
            )
            SELECT slots.start, {values}
            FROM slots LEFT JOIN data USING (start)
            ORDER BY slots.start
            """
        ).format(
            sums=_SUMS,
            values=sql.SQL(", ").join(
                sql.SQL("coalesce(data.{c}, 0) AS {c}").format(c=sql.Identifier(c))
                for c in COUNTERS
            ),
        ),
        {
            "bucket": bucket,
            "since": since,
            "until": until,
            "tz": tz,
            "tenant": tenant_id,
            "campaign": campaign_id,
        },
    )
    zone = ZoneInfo(tz)
    return {
        "campaign_id": campaign_id,
        "bucket": bucket,
        "timezone": tz,
        "from": since,
        "to": until,
        "as_of": as_of(),
        "points": [
            {"start": row.pop("start").astimezone(zone), **{c: int(row[c]) for c in COUNTERS}}
            for row in rows
        ],
    }


def _daily(rows) -> tuple[Counts, list[dict[str, Any]]]:
    totals = _zero()
    days = []
    for row in rows:
        _add(totals, row)
        days.append({"day": row["day"], **{c: row[c] for c in COUNTERS}})
    return totals, days


def _health(value: float | None, *, warn: float, limit: float) -> str:
    if value is None:
        return "no_data"
    return "over_limit" if value >= limit else "warning" if value >= warn else "ok"


def sender_analytics(*, tenant_id: int, sender_identity_id: int, days: int = 30) -> dict[str, Any]:
    """An AE's sender identity: volume, caps used today, and the bounce and complaint rates
    mailbox providers judge it by, against their thresholds."""
    identity = sender_identity_get(tenant_id=tenant_id, identity_id=sender_identity_id)
    zone = ZoneInfo(identity.timezone or "UTC")
    today = timezone.now().astimezone(zone).date()
    rows = (
        SenderDailyStats.objects.filter(
            tenant_id=tenant_id,
            sender_identity_id=identity.pk,
            day__gt=today - datetime.timedelta(days=days),
        )
        .order_by("day")
        .values("day", *COUNTERS)
    )
    totals, by_day = _daily(rows)
    capacity = identity_capacity_get(tenant_id=tenant_id, identity=identity, now=timezone.now())
    figures = rates(totals)
    return {
        "sender_identity": {
            "id": identity.pk,
            "from_email": identity.from_email,
            "owner_name": identity.owner_name,
            "timezone": str(zone.key),
        },
        "as_of": FillState.objects.filter(name="views")
        .values_list("filled_through", flat=True)
        .first(),
        "days": days,
        "totals": {**totals, "rates": figures},
        "caps": {
            "daily_cap": identity.daily_cap,
            "hourly_cap": identity.hourly_cap,
            "today_ceiling": capacity.today_ceiling,
            "sent_today": capacity.sent_today,
            "used_today": _ratio(capacity.sent_today, capacity.today_ceiling),
            "warmup_day": capacity.warmup_day,
        },
        "deliverability": {
            "spam_rate": figures["spam_rate"],
            "spam_rate_warn": SPAM_RATE_WARN,
            "spam_rate_limit": SPAM_RATE_LIMIT,
            "spam_status": _health(
                figures["spam_rate"], warn=SPAM_RATE_WARN, limit=SPAM_RATE_LIMIT
            ),
            "bounce_rate": figures["bounce_rate"],
            "bounce_rate_warn": BOUNCE_RATE_WARN,
            "bounce_rate_limit": BOUNCE_RATE_LIMIT,
            "bounce_status": _health(
                figures["bounce_rate"], warn=BOUNCE_RATE_WARN, limit=BOUNCE_RATE_LIMIT
            ),
        },
        "by_day": by_day,
    }


def campaign_totals(*, tenant_id: int) -> list[dict[str, Any]]:
    """Every campaign of the tenant with its all-time counters (from the daily view)."""
    return list(
        CampaignDailyStats.objects.filter(tenant_id=tenant_id)
        .values("campaign_id")
        .annotate(**{c: Sum(c) for c in COUNTERS})
        .order_by("campaign_id")
    )


def sender_totals(*, tenant_id: int, days: int = 30) -> list[dict[str, Any]]:
    """Every sender identity of the tenant with its counters over the last ``days`` days."""
    since = timezone.now().date() - datetime.timedelta(days=days)
    return list(
        SenderDailyStats.objects.filter(tenant_id=tenant_id, day__gt=since)
        .values("sender_identity_id")
        .annotate(**{c: Sum(c) for c in COUNTERS})
        .order_by("sender_identity_id")
    )


def sender_health(row: dict[str, Any] | None) -> dict[str, Any]:
    """Sent, and spam and bounce rates with their status against the providers' limits."""
    counts = with_rates(row)
    figures = counts["rates"]
    return {
        "sent": counts["sent"],
        "spam_rate": figures["spam_rate"],
        "spam_status": _health(figures["spam_rate"], warn=SPAM_RATE_WARN, limit=SPAM_RATE_LIMIT),
        "bounce_rate": figures["bounce_rate"],
        "bounce_status": _health(
            figures["bounce_rate"], warn=BOUNCE_RATE_WARN, limit=BOUNCE_RATE_LIMIT
        ),
    }


def tenant_analytics(
    *, tenant_id: int, since: datetime.date | None = None, until: datetime.date | None = None
) -> dict[str, Any]:
    """The account by day (days of the tenant's time zone, ``until`` inclusive)."""
    tenant = Tenant.objects.get(pk=tenant_id)
    today = timezone.now().astimezone(ZoneInfo(tenant.timezone)).date()
    until = until or today
    since = since or until - datetime.timedelta(days=29)
    if since > until:
        raise ApplicationError("from must not be after to.", extra={"from": ["after `to`"]})
    if (until - since).days > 730:
        raise ApplicationError(
            "The range is too long (at most 731 days).", extra={"from": ["at most 731 days"]}
        )
    rows = (
        TenantDailyStats.objects.filter(tenant_id=tenant_id, day__gte=since, day__lte=until)
        .order_by("day")
        .values("day", *COUNTERS)
    )
    totals, found = _daily(rows)
    by_date = {row["day"]: row for row in found}
    by_day = [
        by_date.get(day, {"day": day, **_zero()})
        for day in (since + datetime.timedelta(days=n) for n in range((until - since).days + 1))
    ]
    return {
        "tenant": {"id": tenant.pk, "name": tenant.name, "timezone": tenant.timezone},
        "as_of": FillState.objects.filter(name="views")
        .values_list("filled_through", flat=True)
        .first(),
        "from": since,
        "to": until,
        "totals": {**totals, "rates": rates(totals)},
        "by_day": by_day,
    }
