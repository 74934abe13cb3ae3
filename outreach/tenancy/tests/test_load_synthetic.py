"""``load_synthetic``: every generated row agrees with the others, and the rollups with a
recount of them (``test_load_synthetic_input.py``: what it refuses)."""

import datetime

import pytest
from django.conf import settings
from django.db import connection

from analytics.models import JourneyCount
from analytics.services.recount import journey_recount
from analytics.tests.support import recount_rows, rollup_rows
from campaigns.services.transitions import STOP_REASONS
from outreach.synthetic.load import SyntheticSpec, synthetic_load, tenant_sizes
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import tenant_delete

SPEC = SyntheticSpec(tenants=4, leads=600, events=12_000, months=2, seed=7, prefix="syntest")


@pytest.fixture(scope="module")
def loaded(django_db_setup, django_db_blocker):
    """One small load for the whole module (committed: the loader uses its own connections),
    deleted afterwards with ``tenant_delete``."""
    with django_db_blocker.unblock():
        report = synthetic_load(spec=SPEC, allow_existing=True)
        ids = list(Tenant.objects.filter(slug__startswith="syntest-").values_list("pk", flat=True))
        yield report, ids
        _loaded_tenants_delete(ids)


def _loaded_tenants_delete(ids: list[int]) -> None:
    for tenant_id in ids:
        tenant_delete(tenant_id=tenant_id)
    # The audit log outlives a deleted tenant by design and refuses deletes (a trigger): the
    # committed entries of a load are removed with triggers off, test-only, so later tests
    # start from an empty log.
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM tenancy_auditentry WHERE tenant_id = ANY(%s)", [ids])
        cursor.execute("SET session_replication_role = DEFAULT")


def rows(query: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params or [])
        return cursor.fetchall()


def value(query: str, params=None):
    return rows(query, params)[0][0]


pytestmark = pytest.mark.django_db


def test_tenants_are_a_few_big_and_many_small_with_every_lead_loaded(loaded):
    report, ids = loaded
    sizes = [
        value("SELECT count(*) FROM campaigns_lead WHERE tenant_id = %s", [tenant_id])
        for tenant_id in sorted(ids)
    ]
    assert sizes == tenant_sizes(tenants=4, leads=600) == report.tenant_sizes
    assert sizes[0] > 2 * sizes[-1]
    plans = list(Tenant.objects.filter(pk__in=ids).order_by("pk").values_list("plan", flat=True))
    assert plans[0] == Tenant.Plan.ENTERPRISE and plans[-1] == Tenant.Plan.TRIAL
    events = value("SELECT count(*) FROM messaging_messageevent WHERE tenant_id = ANY(%s)", [ids])
    assert events == report.counts["events"]
    assert 0.8 * SPEC.events < events < 1.2 * SPEC.events


def test_history_spans_the_months_and_nothing_lands_in_default_or_the_future(loaded):
    _, ids = loaded
    oldest, newest = rows(
        "SELECT min(occurred_at), max(occurred_at) FROM messaging_messageevent"
        " WHERE tenant_id = ANY(%s)",
        [ids],
    )[0]
    assert newest <= datetime.datetime.now(datetime.UTC)
    assert newest - oldest > datetime.timedelta(days=45)
    partitions = value(
        "SELECT count(DISTINCT tableoid) FROM messaging_messageevent WHERE tenant_id = ANY(%s)",
        [ids],
    )
    assert partitions >= 3
    assert value("SELECT count(*) FROM messaging_messageevent_default") == 0


def test_every_message_belongs_to_its_enrollment_and_steps_are_contiguous(loaded):
    _, ids = loaded
    mismatched = value(
        """
        SELECT count(*) FROM messaging_message m
        JOIN campaigns_enrollment e ON e.id = m.enrollment_id
        WHERE m.tenant_id = ANY(%s) AND (
            e.tenant_id <> m.tenant_id OR e.lead_id <> m.lead_id
            OR e.campaign_id <> m.campaign_id OR e.plan_version_id <> m.plan_version_id
            OR e.sender_identity_id <> m.sender_identity_id
            OR m.step <> (ARRAY['intro', 'follow_up', 'breakup'])[m.step_seq]
            OR m.to_email <> (SELECT email FROM campaigns_lead WHERE id = m.lead_id)
            OR m.sent_at < e.enrolled_at)
        """,
        [ids],
    )
    assert mismatched == 0
    gaps = value(
        """
        SELECT count(*) FROM (
            SELECT enrollment_id, count(*) AS n, max(step_seq) AS top
            FROM messaging_message WHERE tenant_id = ANY(%s) GROUP BY enrollment_id
        ) x WHERE n <> top
        """,
        [ids],
    )
    assert gaps == 0
    assert (
        value(
            "SELECT count(*) FROM campaigns_enrollment e JOIN campaigns_lead l ON l.id = e.lead_id"
            " WHERE e.tenant_id = ANY(%s) AND (e.enrolled_at < l.created_at"
            " OR l.validation_status = 'invalid')",
            [ids],
        )
        == 0
    )


JOURNEYS = """
SELECT e.id, e.state, e.current_step, e.step_seq, e.outcome, e.stop_reason,
       (SELECT count(*) FROM messaging_message m WHERE m.enrollment_id = e.id) AS messages,
       (SELECT count(*) FROM campaigns_enrollmenttransition t WHERE t.enrollment_id = e.id),
       (SELECT array_agg(t.trigger ORDER BY t.from_seq) FROM campaigns_enrollmenttransition t
        WHERE t.enrollment_id = e.id),
       (SELECT array_agg(a.kind) FROM campaigns_scheduledaction a WHERE a.enrollment_id = e.id
        AND a.status = 'pending' AND a.step_seq = e.step_seq),
       (SELECT count(*) FROM campaigns_scheduledaction a WHERE a.enrollment_id = e.id)
FROM campaigns_enrollment e WHERE e.tenant_id = ANY(%s)
"""


def test_states_transitions_and_pending_actions_tell_the_same_journey(loaded):
    _, ids = loaded
    seen = set()
    for eid, state, step, seq, outcome, reason, msgs, n_tr, triggers, kinds, n_act in rows(
        JOURNEYS, [ids]
    ):
        triggers = triggers or []
        seen.add((state, step))
        if state == "active":
            # One pending action: a send not made yet, or the timeout of the sent step.
            assert n_tr == seq - 1 and n_act == 1, eid
            assert kinds in (["send"], ["timeout"]), eid
            assert msgs == (seq - 1 if kinds == ["send"] else seq), eid
            assert all(t == "no_reply" for t in triggers), eid
        elif state == "completed":
            assert n_act == 0 and n_tr == seq - 1 == msgs, eid
            if step == "done":
                assert (seq, outcome, triggers) == (4, "no_response", ["no_reply"] * 2 + ["sent"])
            else:
                assert (step, outcome, triggers[-1]) == ("replied", "replied", "reply"), eid
        else:
            assert state == "stopped" and n_act == 0 and n_tr == seq == msgs, eid
            assert triggers[-1] in ("bounce", "unsubscribe", "spamreport"), eid
            assert reason == STOP_REASONS[triggers[-1]], eid
    assert {("active", "intro"), ("completed", "done"), ("completed", "replied")} <= seen
    assert any(state == "stopped" for state, _ in seen)
    # A timeout action names the message it waits on, as the engine's does.
    assert (
        value(
            """
        SELECT count(*) FROM campaigns_scheduledaction a
        JOIN messaging_message m ON m.id = (a.payload->>'message_id')::bigint
        WHERE a.tenant_id = ANY(%s) AND a.kind = 'timeout' AND (
            m.enrollment_id <> a.enrollment_id OR m.step_seq <> a.step_seq
            OR a.idempotency_key <> a.enrollment_id || ':' || a.step_seq || ':timeout:no_reply')
        """,
            [ids],
        )
        == 0
    )


def test_transitions_point_at_the_events_and_replies_that_caused_them(loaded):
    _, ids = loaded
    broken = value(
        """
        SELECT count(*) FROM campaigns_enrollmenttransition t
        LEFT JOIN messaging_messageevent ev ON ev.id = t.event_id
        WHERE t.tenant_id = ANY(%s) AND t.trigger <> 'sent' AND t.trigger <> 'reply' AND (
            ev.id IS NULL OR ev.message_id <> t.message_id OR ev.event_type <> t.trigger
            OR (t.trigger = 'no_reply') <> ev.is_synthetic
            OR (t.trigger = 'no_reply' AND ev.provider_event_id <> 'timeout:'
                || t.enrollment_id || ':' || t.from_seq || ':timeout:no_reply'))
        """,
        [ids],
    )
    assert broken == 0
    replies = rows(
        """
        SELECT t.message_id, i.id, ev.id FROM campaigns_enrollmenttransition t
        LEFT JOIN messaging_inboundmessage i ON i.matched_message_id = t.message_id
        LEFT JOIN messaging_messageevent ev ON ev.message_id = t.message_id
            AND ev.event_type = 'reply' AND (ev.raw->>'inbound_message_id')::bigint = i.id
        WHERE t.tenant_id = ANY(%s) AND t.trigger = 'reply'
        """,
        [ids],
    )
    assert replies and all(inbound and event for _, inbound, event in replies)
    # The reply came to the message's own reply address, as the inbound matcher needs.
    assert (
        value(
            """
        SELECT count(*) FROM messaging_inboundmessage i
        JOIN messaging_message m ON m.id = i.matched_message_id
        WHERE i.tenant_id = ANY(%s)
          AND i.to_email <> 'reply+' || m.reply_token || '@reply.synthetic.example.com'
        """,
            [ids],
        )
        == 0
    )


STATUS_OF_EVENTS = """
SELECT m.id, m.status, coalesce(max(CASE
        WHEN e.event_type = 'processed' THEN 20
        WHEN e.event_type = 'deferred' THEN 30
        WHEN e.event_type = 'delivered' OR e.is_machine_open OR e.is_bot_click THEN 40
        WHEN e.event_type = 'open' THEN 50
        WHEN e.event_type = 'click' THEN 60
        WHEN e.event_type = 'reply' THEN 70
        WHEN e.event_type = 'bounce' THEN 81
        WHEN e.event_type = 'unsubscribe' THEN 82
        WHEN e.event_type = 'spamreport' THEN 83
    END), 10) AS rank, m.status_rank
FROM messaging_message m
LEFT JOIN messaging_messageevent e ON e.message_id = m.id AND NOT e.is_synthetic
WHERE m.tenant_id = ANY(%s)
GROUP BY m.id
"""


def test_a_message_status_is_the_highest_its_events_reached(loaded):
    _, ids = loaded
    wrong = [(mid, status, rank) for mid, status, rank, stored in rows(STATUS_OF_EVENTS, [ids])
             if rank != stored]  # fmt: skip
    assert wrong == []
    assert (
        value(
            "SELECT count(*) FROM messaging_messageevent e JOIN messaging_message m"
            " ON m.id = e.message_id WHERE e.tenant_id = ANY(%s)"
            " AND (e.occurred_at < m.sent_at OR e.tenant_id <> m.tenant_id)",
            [ids],
        )
        == 0
    )


def test_suppressions_are_exactly_the_addresses_that_bounced_complained_or_unsubscribed(loaded):
    _, ids = loaded
    stopped = set(
        rows(
            """
            SELECT e.tenant_id, l.email FROM campaigns_enrollmenttransition t
            JOIN campaigns_enrollment e ON e.id = t.enrollment_id
            JOIN campaigns_lead l ON l.id = e.lead_id
            WHERE t.tenant_id = ANY(%s) AND t.trigger IN ('bounce', 'unsubscribe', 'spamreport')
            """,
            [ids],
        )
    )
    suppressed = set(
        rows(
            "SELECT tenant_id, email FROM suppression_suppression WHERE tenant_id = ANY(%s)", [ids]
        )
    )
    assert stopped and stopped == suppressed
    # Nothing was started or sent to an address after it was suppressed.
    assert (
        value(
            """
        SELECT count(*) FROM suppression_suppression s
        JOIN campaigns_lead l ON l.tenant_id = s.tenant_id AND l.email = s.email
        JOIN campaigns_enrollment e ON e.lead_id = l.id
        WHERE s.tenant_id = ANY(%s) AND (e.enrolled_at > s.created_at OR EXISTS (
            SELECT 1 FROM messaging_message m WHERE m.enrollment_id = e.id
            AND m.sent_at > s.created_at))
        """,
            [ids],
        )
        == 0
    )


def test_dedup_keys_cover_the_recent_events_only(loaded):
    _, ids = loaded
    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
        days=settings.EVENT_DEDUP_KEY_DAYS
    )
    missing = value(
        """
        SELECT count(*) FROM messaging_messageevent e
        WHERE e.tenant_id = ANY(%s) AND e.received_at >= %s AND NOT EXISTS (
            SELECT 1 FROM messaging_messageeventkey k
            WHERE k.tenant_id = e.tenant_id AND k.provider_event_id = e.provider_event_id)
        """,
        [ids, cutoff + datetime.timedelta(minutes=5)],
    )
    assert missing == 0
    assert (
        value(
            "SELECT count(*) FROM messaging_messageeventkey WHERE tenant_id = ANY(%s)"
            " AND first_seen_at < %s",
            [ids, cutoff - datetime.timedelta(minutes=5)],
        )
        == 0
    )


def _analytics_match_the_recount(ids: list[int]) -> None:
    for tenant_id in ids:
        rollup = rollup_rows(tenant_id)
        assert rollup and rollup == recount_rows(tenant_id)
        journeys = {
            (j.campaign_id, j.plan_version_id, j.step, j.state, j.reason): j.enrollments
            for j in JourneyCount.objects.filter(tenant_id=tenant_id, enrollments__gt=0)
        }
        expected = {
            (r["campaign_id"], r["plan_version_id"], r["step"], r["state"], r["reason"]): r[
                "enrollments"
            ]
            for r in journey_recount(tenant_id=tenant_id)
        }
        assert journeys == expected


def test_analytics_rollups_equal_the_recount_of_the_loaded_rows(loaded):
    report, ids = loaded
    assert report.unchecked  # a superuser's load: rollups counted set-based afterwards
    _analytics_match_the_recount(ids)


@pytest.fixture(scope="module")
def loaded_checked(django_db_setup, django_db_blocker):
    """A load as a role without the privilege makes it (``--checked``)."""
    spec = SyntheticSpec(tenants=2, leads=200, events=3_000, months=2, seed=7, prefix="synchk")
    with django_db_blocker.unblock():
        report = synthetic_load(spec=spec, allow_existing=True, checked=True, views_refresh=False)
        ids = list(Tenant.objects.filter(slug__startswith="synchk-").values_list("pk", flat=True))
        yield report, ids
        _loaded_tenants_delete(ids)


def test_a_load_through_the_checks_and_triggers_gives_rollups_equal_to_the_recount(
    loaded_checked,
):
    """Every row through the foreign-key checks and the analytics triggers."""
    report, ids = loaded_checked
    assert not report.unchecked
    assert report.counts["events"] > 2_000
    _analytics_match_the_recount(ids)
