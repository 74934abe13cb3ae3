"""The one-click unsubscribe page (RFC 8058), reached from ``List-Unsubscribe`` and the footer.

``POST`` with ``List-Unsubscribe=One-Click`` (multipart or form-encoded) unsubscribes and
answers 200 — never a redirect, never a cookie. ``GET`` only shows a page with a button that
makes that POST: link scanners prefetch every URL in a mail, so a GET must change nothing.
A token that is not ours (tampered, truncated, for a tenant that no longer exists) is a 404.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from outreach.tenancy.models import Tenant
from suppression.services import suppression_one_click_apply
from suppression.unsubscribe import UnsubscribeClaim, unsubscribe_token_read

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def _mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'*' * max(len(local) - 1, 2)}@{domain}"


def _page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _is_one_click(request: HttpRequest) -> bool:
    if request.POST.get(ONE_CLICK_FIELD, "").strip() == ONE_CLICK_VALUE:
        return True
    if request.content_type == "multipart/form-data":
        return False  # parsed above; the raw stream is consumed
    # A client that sends the body with another content type still meant the same thing.
    return request.body.strip() == f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}".encode()


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe_one_click(request: HttpRequest, token: str) -> HttpResponse:
    claim: UnsubscribeClaim | None = unsubscribe_token_read(token=token)
    tenant = Tenant.objects.filter(pk=claim.tenant_id).only("id", "name").first() if claim else None
    if claim is None or tenant is None:
        return _page(request, "suppression/unsubscribe_invalid.html", {}, status=404)
    context = {"tenant_name": tenant.name, "masked_email": _mask(claim.email)}
    if request.method != "POST":
        return _page(request, "suppression/unsubscribe_confirm.html", context)
    if not _is_one_click(request):
        # Not the RFC 8058 body: change nothing and offer the button again.
        return _page(request, "suppression/unsubscribe_confirm.html", context, status=400)
    suppression_one_click_apply(
        tenant_id=tenant.pk,
        email=claim.email,
        message_public_id=str(claim.message_public_id or ""),
    )
    return _page(request, "suppression/unsubscribe_done.html", context)
