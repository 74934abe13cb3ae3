from django.urls import path

from analytics import views

urlpatterns = [
    path("", views.index, name="dashboard-index"),
    path("<slug:slug>/", views.tenant_page, name="dashboard-tenant"),
    path("<slug:slug>/data.json", views.tenant_data, name="dashboard-tenant-data"),
    path(
        "<slug:slug>/campaigns/<int:campaign_id>/",
        views.campaign_page,
        name="dashboard-campaign",
    ),
    path(
        "<slug:slug>/campaigns/<int:campaign_id>/data.json",
        views.campaign_data,
        name="dashboard-campaign-data",
    ),
]
