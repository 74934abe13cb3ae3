"""API authentication: ``Authorization: Api-Key <prefix>.<secret>`` names exactly one tenant;
the operator routes (``/api/v1/operator/``) take a signed-in Django staff user instead."""

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from .models import Tenant, TenantAPIKey

KEYWORD = "Api-Key"


class TenantAPIKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, TenantAPIKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        if keyword.lower() != KEYWORD.lower() or not key.strip():
            raise exceptions.AuthenticationFailed("Expected 'Authorization: Api-Key <key>'.")
        try:
            api_key = TenantAPIKey.objects.get_from_key(key.strip())
        except TenantAPIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.") from None
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("API key has expired.")
        request.tenant = api_key.tenant
        return (None, api_key)

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class IsTenant(permissions.BasePermission):
    """Every API view requires a tenant API key (401 without one)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(getattr(request, "tenant", None), Tenant)


class IsStaffOperator(permissions.BasePermission):
    """Operator routes: an active Django staff user (the admin's session) holding the model
    permission the view names for the request's method (``view.operator_permissions``).

    A tenant API key is no operator: these views authenticate sessions only, so a request
    carrying one is simply not signed in (403, as DRF answers without a challenge header)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            return False
        safe = request.method in permissions.SAFE_METHODS
        needed = view.operator_permissions["read" if safe else "write"]
        return user.has_perm(needed)
