"""Public, unauthenticated pages served from the root: ``/u/<token>/`` (one-click unsubscribe)."""

from django.urls import path

from suppression.public_views import unsubscribe_one_click

urlpatterns = [
    path("<str:token>/", unsubscribe_one_click, name="unsubscribe-one-click"),
]
