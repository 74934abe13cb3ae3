"""Tenant isolation over the whole API: as tenant B, every route given tenant A's ids is a 404
on every method, lists never show A's rows, and A's rows are unchanged afterwards.

The matrix is built from the URL configuration, so a new route with an id in its path fails
``test_every_route_with_an_id_is_in_the_matrix`` until it is given an id here.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.regex_helper import normalize

from outreach.testing.world import World, world_build

pytestmark = pytest.mark.django_db

# The first path segment of a route → the object of tenant A whose id goes in ``pk``.
RESOURCE_IDS = {
    "leads": lambda w: w.lead.id,
    "sender-identities": lambda w: w.identity.id,
    "campaigns": lambda w: w.campaign.id,
    "inbound": lambda w: w.inbound.id,
    "suppressions": lambda w: w.suppression.id,
    "audit-log": lambda w: w.audit.id,
}
# Other path parameters, by name.
EXTRA_PARAMS = {"version": lambda w: w.version.version}
LISTS = {
    "/api/v1/leads/": lambda w: w.lead.id,
    "/api/v1/sender-identities/": lambda w: w.identity.id,
    "/api/v1/campaigns/": lambda w: w.campaign.id,
    "/api/v1/inbound/": lambda w: w.inbound.id,
    "/api/v1/suppressions/": lambda w: w.suppression.id,
    "/api/v1/audit-log/": lambda w: w.audit.id,
}


def _resource(template: str) -> str:
    """The route's object: its first path segment (``/api/v1/analytics/<object>/…`` the second)."""
    segments = template.split("/")
    return segments[4] if segments[3] == "analytics" else segments[3]


def _api_routes() -> list[tuple[str, list[str], object]]:
    """(path template with %(name)s placeholders, parameter names, view callback)."""
    routes = []

    def walk(patterns, prefix_regex: str) -> None:
        for pattern in patterns:
            regex = prefix_regex + pattern.pattern.regex.pattern.lstrip("^")
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, regex.rstrip("$"))
            elif isinstance(pattern, URLPattern):
                template, params = normalize(regex.rstrip("$").replace("\\Z", ""))[0]
                if template.startswith("api/v1/"):
                    routes.append(("/" + template, params, pattern.callback))

    walk(get_resolver().url_patterns, "")
    return routes


def _methods(callback) -> list[str]:
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(actions)
    view = callback.cls
    return sorted(
        m for m in view.http_method_names if hasattr(view, m) and m not in {"head", "options"}
    )


def _cases() -> list[tuple[str, list[str], str]]:
    cases = []
    for template, params, callback in _api_routes():
        if params:
            for method in _methods(callback):
                cases.append((template, params, method))
    return cases


def _fill(template: str, params: list[str], world: World) -> str:
    resource = _resource(template)
    values = {}
    for name in params:
        values[name] = RESOURCE_IDS[resource](world) if name == "pk" else EXTRA_PARAMS[name](world)
    return template % values


@pytest.fixture
def worlds(tenant, other_tenant):
    return world_build(tenant=tenant), world_build(tenant=other_tenant)


def test_every_route_with_an_id_is_in_the_matrix():
    unknown = []
    for template, params, _ in _api_routes():
        if not params:
            continue
        resource = _resource(template)
        extra = [name for name in params if name != "pk" and name not in EXTRA_PARAMS]
        if resource not in RESOURCE_IDS or "pk" not in params or extra:
            unknown.append(template)
    assert not unknown, f"give these routes ids in the cross-tenant matrix: {unknown}"


@pytest.mark.parametrize(
    ("template", "params", "method"),
    _cases(),
    ids=[f"{method.upper()} {template}" for template, _, method in _cases()],
)
def test_another_tenants_ids_are_404_on_every_method(
    api_client_for, worlds, template, params, method
):
    tenant_a, tenant_b = worlds
    url = _fill(template, params, tenant_a)
    as_b = api_client_for(tenant_b.tenant)
    response = getattr(as_b, method)(url, {}, format="json")
    assert response.status_code == 404, (url, response.status_code, response.content[:300])
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    ("template", "params"),
    sorted({(t, tuple(p)) for t, p, m in _cases() if m == "get"}),
)
def test_the_same_get_as_the_owner_is_not_a_404(api_client_for, worlds, template, params):
    """Keeps the matrix honest: the ids used above do exist for their owner."""
    tenant_a, _ = worlds
    url = _fill(template, list(params), tenant_a)
    response = api_client_for(tenant_a.tenant).get(url)
    assert response.status_code in {200, 400}, (url, response.content[:300])


def test_another_tenants_rows_survive_its_attempts(api_client_for, worlds):
    tenant_a, tenant_b = worlds
    as_b = api_client_for(tenant_b.tenant)
    lead, identity = tenant_a.lead, tenant_a.identity
    as_b.patch(f"/api/v1/leads/{lead.id}/", {"first_name": "Hacked"}, format="json")
    as_b.delete(f"/api/v1/leads/{lead.id}/")
    as_b.patch(f"/api/v1/sender-identities/{identity.id}/", {"paused": True}, format="json")
    as_b.delete(f"/api/v1/sender-identities/{identity.id}/")
    lead.refresh_from_db()
    identity.refresh_from_db()
    assert lead.first_name != "Hacked"
    assert identity.paused is False


@pytest.mark.parametrize("url", sorted(LISTS))
def test_lists_show_only_the_callers_rows(api_client_for, worlds, url):
    tenant_a, tenant_b = worlds
    response = api_client_for(tenant_b.tenant).get(url)
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert LISTS[url](tenant_a) not in ids
    assert LISTS[url](tenant_b) in ids


def test_filtering_by_another_tenants_email_finds_nothing(api_client_for, worlds):
    tenant_a, tenant_b = worlds
    response = api_client_for(tenant_b.tenant).get("/api/v1/leads/", {"email": tenant_a.lead.email})
    assert response.json()["results"] == []


def test_a_lead_email_taken_in_another_tenant_is_free_here(api_client_for, worlds):
    tenant_a, tenant_b = worlds
    response = api_client_for(tenant_b.tenant).post(
        "/api/v1/leads/", {"email": tenant_a.lead.email}, format="json"
    )
    assert response.status_code == 201


def test_bulk_create_never_reports_another_tenants_lead_as_existing(api_client_for, worlds):
    tenant_a, tenant_b = worlds
    response = api_client_for(tenant_b.tenant).post(
        "/api/v1/leads/bulk/", {"items": [{"email": tenant_a.lead.email}]}, format="json"
    )
    body = response.json()
    assert body["created_count"] == 1
    assert body["skipped"] == []
