"""Unauthenticated provider callbacks under ``/webhooks/``: each view verifies its own caller."""

from django.urls import include, path

from messaging.webhooks.views import sendgrid_events

urlpatterns = [
    path(
        "sendgrid/events/<uuid:tenant_public_id>/",
        sendgrid_events,
        name="webhook-sendgrid-events",
    ),
    path("sendgrid/inbound/", include("messaging.inbound.webhook_urls")),
]
