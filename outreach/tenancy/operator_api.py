"""``/api/v1/operator/``: the platform operator's controls over HTTP (the kill switch).

Interfaces only, like the admin actions and ``manage.py sending_kill_switch``: they call the
same audited service (``controls.kill_switch_set``). Who may call them: a Django staff user
signed in to the admin (the session cookie, and the CSRF token on writes), holding
``tenancy.view_killswitch`` to read and ``tenancy.operate_killswitch`` to change. A tenant's
API key is not accepted here (403): the kill switch stops every tenant.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from outreach.common.serializers import ErrorSerializer
from outreach.tenancy import controls, selectors
from outreach.tenancy.audit import actor_for_operator_api
from outreach.tenancy.auth import IsStaffOperator
from outreach.tenancy.serializers import (
    KillSwitchChangeSerializer,
    KillSwitchListSerializer,
    KillSwitchSerializer,
)

TAGS = ["operator"]
ERRORS = {
    403: OpenApiResponse(
        ErrorSerializer,
        description="Not a signed-in staff user with the permission (a tenant API key is "
        "refused too), or the CSRF token is missing.",
    ),
}


class KillSwitchesView(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsStaffOperator]
    operator_permissions = {
        "read": "tenancy.view_killswitch",
        "write": "tenancy.operate_killswitch",
    }

    @extend_schema(
        summary="The platform kill switches",
        description="Each channel's switch (all, email, sms) as stored now, with its latest "
        "changes from the audit log. For staff signed in to the admin with "
        "`tenancy.view_killswitch`.",
        tags=TAGS,
        responses={200: KillSwitchListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(KillSwitchListSerializer({"results": selectors.kill_switch_list()}).data)

    @extend_schema(
        summary="Engage or release a kill switch",
        description="Engaging holds every due send of the channel (`all`: every channel, "
        "every tenant) from the next batch on, within `CONTROLS_CACHE_SECONDS` in every "
        "worker; releasing makes the held sends due at once. Nothing is dropped. The reason "
        "is required and written to the audit log with who, when, and the values before "
        "and after. Repeating a change is harmless (no second entry). For staff signed in "
        "to the admin with `tenancy.operate_killswitch`, sending the CSRF token.",
        tags=TAGS,
        request=KillSwitchChangeSerializer,
        examples=[
            OpenApiExample(
                "Engage for email",
                value={"channel": "email", "engaged": True, "reason": "SendGrid incident 42"},
                request_only=True,
            )
        ],
        responses={
            200: KillSwitchSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Invalid input, with field paths."),
            **ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        body = KillSwitchChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        change = body.validated_data
        controls.kill_switch_set(
            channel=change["channel"],
            engaged=change["engaged"],
            actor=actor_for_operator_api(username=request.user.get_username()),
            reason=change["reason"],
        )
        return Response(
            KillSwitchSerializer(selectors.kill_switch_get(channel=change["channel"])).data
        )
