"""Plans and set-up shared by the campaign API, migration and timeline tests."""

import copy

from rest_framework.test import APIClient

from campaigns.models import Campaign
from messaging.models import SenderIdentity
from outreach.tenancy.models import Tenant
from outreach.testing.factories import SenderIdentityFactory

PLAN = {
    "start": "intro",
    "steps": {
        "intro": {
            "type": "email",
            "variants": [
                {
                    "name": "a",
                    "weight": 1,
                    "subject": "Hi {{ lead.first_name }}",
                    "text": "Hello {{ lead.first_name }} at {{ lead.company }}.\n{{ sender.signature }}",
                    "html": "<p>Hello {{ lead.first_name }} at {{ lead.company }}</p>",
                },
                {
                    "name": "b",
                    "weight": 1,
                    "subject": "A question for {{ lead.company }}",
                    "text": 'Your plan: {{ lead.custom.plan | default:"none" }}. {{ unsubscribe_url }}',
                },
            ],
            "on": {"reply": "done", "no_reply": {"after": "3d", "to": "wait"}},
        },
        "wait": {"type": "wait", "duration": "2 business_days", "next": "follow_up"},
        "follow_up": {
            "type": "email",
            "thread_with": "intro",
            "variants": [{"name": "a", "text": "Just following up, {{ lead.first_name }}."}],
            "next": "done",
        },
        "done": {"type": "end", "outcome": "finished"},
    },
}


def plan_v2() -> dict:
    """PLAN with the wait step renamed to ``nudge`` and a new intro text."""
    plan = copy.deepcopy(PLAN)
    steps = plan["steps"]
    steps["nudge"] = steps.pop("wait")
    steps["nudge"]["duration"] = "1d"
    steps["intro"]["on"]["no_reply"]["to"] = "nudge"
    steps["intro"]["variants"][0]["text"] = "Hello again {{ lead.first_name }}."
    return plan


def identity_for(tenant: Tenant, **kwargs) -> SenderIdentity:
    kwargs.setdefault("signature", "-- Sam, Outreach Inc")
    return SenderIdentityFactory(tenant=tenant, **kwargs)


def campaign_live(api: APIClient, tenant: Tenant, plan: dict | None = None) -> dict:
    """A campaign created, given ``plan`` as version 1, published and activated via the API."""
    identity = identity_for(tenant)
    response = api.post(
        "/api/v1/campaigns/",
        {"name": "Q3 outbound", "sender_identity_id": identity.pk},
        format="json",
    )
    assert response.status_code == 201, response.json()
    campaign = response.json()
    base = f"/api/v1/campaigns/{campaign['id']}"
    response = api.post(f"{base}/versions/", {"plan": plan or PLAN}, format="json")
    assert response.status_code == 201, response.json()
    assert api.post(f"{base}/versions/1/publish/").status_code == 200
    response = api.post(f"{base}/activate/")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == Campaign.Status.ACTIVE
    return response.json()
