"""The Inbound Parse endpoint, under ``/webhooks/sendgrid/inbound/``.

Two forms: the secret as the last path segment, or (for basic auth) no secret segment.
"""

from django.urls import path

from messaging.inbound.views import sendgrid_inbound

urlpatterns = [
    path(
        "<uuid:tenant_public_id>/<str:secret>/",
        sendgrid_inbound,
        name="webhook-sendgrid-inbound",
    ),
    path(
        "<uuid:tenant_public_id>/",
        sendgrid_inbound,
        name="webhook-sendgrid-inbound-basic",
    ),
]
