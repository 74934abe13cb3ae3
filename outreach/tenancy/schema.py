"""OpenAPI description of the tenant API-key authentication (drf-spectacular extension)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TenantAPIKeyScheme(OpenApiAuthenticationExtension):
    target_class = "outreach.tenancy.auth.TenantAPIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`, the key printed once by `manage.py tenant_create`.",
        }
