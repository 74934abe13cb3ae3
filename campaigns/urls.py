from django.urls import path
from rest_framework.routers import SimpleRouter

from campaigns.api import campaigns as campaign_api
from campaigns.api import enrollments as enrollment_api
from campaigns.api.timeline import LeadTimelineView
from campaigns.views import LeadViewSet

router = SimpleRouter()
router.register("leads", LeadViewSet, basename="lead")
router.register("campaigns", campaign_api.CampaignViewSet, basename="campaign")

# Ids are matched loosely and checked by the views, so a malformed id is a JSON 404.
campaign_urlpatterns = [
    path(
        "campaigns/<str:pk>/versions/",
        campaign_api.CampaignVersionsView.as_view(),
        name="campaign-versions",
    ),
    path(
        "campaigns/<str:pk>/versions/validate/",
        campaign_api.CampaignVersionValidateView.as_view(),
        name="campaign-version-validate",
    ),
    path(
        "campaigns/<str:pk>/versions/<str:version>/publish/",
        campaign_api.CampaignPublishView.as_view(),
        name="campaign-version-publish",
    ),
    path(
        "campaigns/<str:pk>/activate/",
        campaign_api.CampaignActivateView.as_view(),
        name="campaign-activate",
    ),
    path(
        "campaigns/<str:pk>/pause/", campaign_api.CampaignPauseView.as_view(), name="campaign-pause"
    ),
    path(
        "campaigns/<str:pk>/resume/",
        campaign_api.CampaignResumeView.as_view(),
        name="campaign-resume",
    ),
    path(
        "campaigns/<str:pk>/archive/",
        campaign_api.CampaignArchiveView.as_view(),
        name="campaign-archive",
    ),
    path(
        "campaigns/<str:pk>/preview/",
        campaign_api.CampaignPreviewView.as_view(),
        name="campaign-preview",
    ),
    path(
        "campaigns/<str:pk>/enroll/",
        enrollment_api.CampaignEnrollView.as_view(),
        name="campaign-enroll",
    ),
    path(
        "campaigns/<str:pk>/enrollments/",
        enrollment_api.CampaignEnrollmentsView.as_view(),
        name="campaign-enrollments",
    ),
    path(
        "campaigns/<str:pk>/migrate/",
        enrollment_api.CampaignMigrateView.as_view(),
        name="campaign-migrate",
    ),
]

urlpatterns = [
    *campaign_urlpatterns,
    path("leads/<str:pk>/timeline/", LeadTimelineView.as_view(), name="lead-timeline"),
    *router.urls,
]
