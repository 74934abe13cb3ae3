"""Bad and hostile input over real HTTP (case 8 of the chaos suite, ``chaos/hostile.py``):
forged, replayed, stale and mutated webhook signatures (SendGrid and Twilio), huge and deeply
nested bodies, malformed Inbound Parse mail, forged unsubscribe tokens, and every API and
dashboard route with another tenant's ids. Nothing is accepted, nothing leaks, nothing answers
5xx."""

import pytest
from django.db import connection

from chaos.hostile import hostile_run, hostile_world_build

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_hostile_input_is_refused_without_leaks_or_server_errors(live_server):
    world = hostile_world_build()
    try:
        tally = hostile_run(base_url=live_server.url, world=world, long_token=240)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM messaging_messageevent WHERE tenant_id = ANY(%s)",
                [[world.attacker.tenant.pk, world.victim.tenant.pk]],
            )
    assert tally.failures == [], "\n".join(f[:300] for f in tally.failures)
    assert (tally.accepted, tally.leaked, tally.server_errors, tally.effects) == (0, 0, 0, 0)
    assert tally.unchecked == 0  # every route probed, every control answered
    assert tally.requests > 300  # every API route was probed, twice per method
    assert tally.by_kind["api-cross-tenant"] > 200
    assert tally.by_kind["dashboard-cross-tenant"] >= 8  # both campaign routes, both tenant ones
    assert sum(n for kind, n in tally.by_kind.items() if kind.startswith("twilio:")) >= 20
