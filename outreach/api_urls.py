"""The versioned REST API: each app contributes its routes here."""

from django.urls import include, path

urlpatterns = [
    path("", include("campaigns.urls")),
    path("", include("messaging.urls")),
    path("", include("messaging.inbound.urls")),
    path("", include("suppression.urls")),
    path("", include("analytics.urls")),
    path("", include("outreach.tenancy.urls")),
]
