"""API routes for inbound mail, under ``/api/v1/``."""

from django.urls import path

from messaging.inbound.views import InboundMessageDetailView, InboundMessageListView

urlpatterns = [
    path("inbound/", InboundMessageListView.as_view(), name="inbound-list"),
    path("inbound/<str:pk>/", InboundMessageDetailView.as_view(), name="inbound-detail"),
]
