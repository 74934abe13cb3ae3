"""Unauthenticated provider callbacks under ``/webhooks/``: each view verifies its own caller."""

from django.urls import include, path

from messaging.webhooks.twilio_views import twilio_inbound, twilio_status
from messaging.webhooks.views import sendgrid_events

urlpatterns = [
    path(
        "sendgrid/events/<uuid:tenant_public_id>/",
        sendgrid_events,
        name="webhook-sendgrid-events",
    ),
    path("sendgrid/inbound/", include("messaging.inbound.webhook_urls")),
    path("twilio/status/<uuid:tenant_public_id>/", twilio_status, name="webhook-twilio-status"),
    path("twilio/inbound/<uuid:tenant_public_id>/", twilio_inbound, name="webhook-twilio-inbound"),
]
