from django.urls import path
from rest_framework.routers import SimpleRouter

from messaging.api.capacity import SenderIdentityCapacityView
from messaging.api.identities import SenderIdentityViewSet

router = SimpleRouter()
router.register("sender-identities", SenderIdentityViewSet, basename="sender-identity")

urlpatterns: list = [
    path(
        "sender-identities/<int:pk>/capacity/",
        SenderIdentityCapacityView.as_view(),
        name="sender-identity-capacity",
    ),
    *router.urls,
]
