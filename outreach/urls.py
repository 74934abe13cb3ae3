from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from outreach.metrics import metrics_view, readyz
from outreach.tenancy.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("outreach.api_urls")),
    path("webhooks/", include("outreach.webhook_urls")),
    path("u/", include("suppression.public_urls")),
    path("dashboard/", include("analytics.dashboard_urls")),
]
