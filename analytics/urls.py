from django.urls import path

from analytics import api

# Ids are matched loosely and checked by the views, so a malformed id is a JSON 404.
urlpatterns = [
    path(
        "analytics/campaigns/<str:pk>/",
        api.CampaignAnalyticsView.as_view(),
        name="analytics-campaign",
    ),
    path(
        "analytics/campaigns/<str:pk>/timeseries/",
        api.CampaignTimeseriesView.as_view(),
        name="analytics-campaign-timeseries",
    ),
    path(
        "analytics/sender-identities/<str:pk>/",
        api.SenderIdentityAnalyticsView.as_view(),
        name="analytics-sender-identity",
    ),
    path("analytics/tenant/", api.TenantAnalyticsView.as_view(), name="analytics-tenant"),
]
