"""API authentication: ``Authorization: Api-Key <prefix>.<secret>`` names exactly one tenant."""

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
