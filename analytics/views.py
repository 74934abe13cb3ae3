"""The analytics dashboard: server-rendered pages whose charts refresh themselves.

Who may look: staff signed in to the admin (any tenant), or anyone holding a share link for
one tenant (``analytics_dashboard_link``; signed, read-only, expires). The pages embed their
first figures, so they show numbers even before the script runs, then poll ``data.json``.
"""

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from analytics import selectors
from campaigns.models import Campaign
from messaging.models import SenderIdentity
from outreach.common.errors import NotFound
from outreach.tenancy.flags import tenant_flags_of
from outreach.tenancy.models import Tenant

SHARE_SALT = "analytics.dashboard"
SHARE_MAX_AGE_SECONDS = 7 * 24 * 3600


def share_token_make(*, tenant: Tenant) -> str:
    return signing.TimestampSigner(salt=SHARE_SALT).sign(tenant.public_id.hex)


def share_url_build(*, tenant: Tenant, base_url: str) -> str:
    path = reverse("dashboard-tenant", kwargs={"slug": tenant.slug})
    return f"{base_url.rstrip('/')}{path}?share={share_token_make(tenant=tenant)}"


def _tenant_for(request: HttpRequest, slug: str) -> Tenant | None:
    """The tenant the visitor may see, or None (then they are sent to sign in)."""
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise Http404("No such tenant.")
    if request.user.is_authenticated and request.user.is_staff:
        return tenant
    token = request.GET.get("share", "")
    try:
        value = signing.TimestampSigner(salt=SHARE_SALT).unsign(
            token, max_age=SHARE_MAX_AGE_SECONDS
        )
    except signing.BadSignature:
        return None
    return tenant if value == tenant.public_id.hex else None


def _guarded(view):
    def wrapper(request: HttpRequest, slug: str, **kwargs: Any) -> HttpResponse:
        tenant = _tenant_for(request, slug)
        if tenant is None:
            return redirect_to_login(request.get_full_path(), login_url=reverse("admin:login"))
        if not tenant_flags_of(tenant=tenant).analytics:
            return HttpResponseForbidden("Analytics are not enabled for this account.")
        try:
            return view(request, tenant, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from None

    return wrapper


def _share(request: HttpRequest) -> str:
    token = request.GET.get("share")
    return f"?share={token}" if token else ""


def _json(data: Any) -> JsonResponse:
    return JsonResponse(data, json_dumps_params={"separators": (",", ":")})


def index(request: HttpRequest) -> HttpResponse:
    if not (request.user.is_authenticated and request.user.is_staff):
        return redirect_to_login(request.get_full_path(), login_url=reverse("admin:login"))
    return render(request, "analytics/index.html", {"tenants": Tenant.objects.order_by("name")})


def _tenant_data(tenant: Tenant) -> dict[str, Any]:
    campaigns = list(Campaign.objects.for_tenant(tenant.pk).order_by("-created_at")[:50])
    daily = {row["campaign_id"]: row for row in selectors.campaign_totals(tenant_id=tenant.pk)}
    senders = list(SenderIdentity.objects.for_tenant(tenant.pk).order_by("from_email")[:50])
    sender_rows = {
        row["sender_identity_id"]: row for row in selectors.sender_totals(tenant_id=tenant.pk)
    }
    return {
        "account": selectors.tenant_analytics(tenant_id=tenant.pk),
        "campaigns": [
            {
                "id": c.pk,
                "name": c.name,
                "status": c.status,
                **selectors.with_rates(daily.get(c.pk)),
            }
            for c in campaigns
        ],
        "senders": [
            {
                "id": s.pk,
                "from_email": s.from_email,
                "owner_name": s.owner_name,
                **selectors.sender_health(sender_rows.get(s.pk)),
            }
            for s in senders
        ],
    }


@_guarded
def tenant_page(request: HttpRequest, tenant: Tenant) -> HttpResponse:
    return render(
        request,
        "analytics/tenant.html",
        {"tenant": tenant, "data": _tenant_data(tenant), "share": _share(request)},
    )


@_guarded
def tenant_data(request: HttpRequest, tenant: Tenant) -> HttpResponse:
    return _json(_tenant_data(tenant))


def _campaign_data(tenant: Tenant, campaign_id: int) -> dict[str, Any]:
    return {
        "analytics": selectors.campaign_analytics(tenant_id=tenant.pk, campaign_id=campaign_id),
        "hourly": selectors.campaign_timeseries(
            tenant_id=tenant.pk, campaign_id=campaign_id, bucket="hour"
        ),
    }


@_guarded
def campaign_page(request: HttpRequest, tenant: Tenant, campaign_id: int) -> HttpResponse:
    return render(
        request,
        "analytics/campaign.html",
        {
            "tenant": tenant,
            "data": _campaign_data(tenant, campaign_id),
            "share": _share(request),
        },
    )


@_guarded
def campaign_data(request: HttpRequest, tenant: Tenant, campaign_id: int) -> HttpResponse:
    return _json(_campaign_data(tenant, campaign_id))
