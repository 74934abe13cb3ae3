from django.urls import path
from rest_framework.routers import SimpleRouter

from outreach.tenancy import api, operator_api

router = SimpleRouter()
router.register("audit-log", api.AuditLogViewSet, basename="audit-entry")

urlpatterns = [
    path("tenant/", api.TenantControlsView.as_view(), name="tenant-controls"),
    path("tenant/health/", api.TenantHealthView.as_view(), name="tenant-health"),
    path("tenant/pause/", api.TenantPauseView.as_view(), name="tenant-pause"),
    path("tenant/resume/", api.TenantResumeView.as_view(), name="tenant-resume"),
    path(
        "operator/kill-switches/",
        operator_api.KillSwitchesView.as_view(),
        name="operator-kill-switches",
    ),
    *router.urls,
]
