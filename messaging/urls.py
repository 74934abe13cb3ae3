from rest_framework.routers import SimpleRouter

from messaging.api.identities import SenderIdentityViewSet

router = SimpleRouter()
router.register("sender-identities", SenderIdentityViewSet, basename="sender-identity")

urlpatterns: list = [
    *router.urls,
]
