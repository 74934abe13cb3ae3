"""Migration 0010: the revocations old STOPs wrote are re-tagged, so a START re-subscribes
their number without granting consent to leads that may never have given it."""

import importlib
import uuid
from urllib.parse import urlencode

import pytest
from django.db import connection

from campaigns.models import Lead
from messaging.models import WebhookReceipt
from messaging.services.sms_events import START_CONFIRMATION, sms_receipt_store
from suppression.models import PhoneSuppression
from suppression.services import phone_suppression_add

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("campaigns.migrations.0010_lead_sms_consent_legacy_stop")
NUMBER = "+15551230100"


def _run(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _text(tenant, body: str) -> str:
    params = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": NUMBER, "To": "+15550001000"}
    return sms_receipt_store(
        tenant_id=tenant.pk,
        kind=WebhookReceipt.Kind.SMS_INBOUND,
        body=urlencode({**params, "Body": body}).encode(),
        url="http://testserver/",
        headers={},
    ).answer


def test_old_stop_revocations_are_retagged_and_a_start_no_longer_grants_them(tenant):
    def lead(name: str, consent: str, source: str, phone: str = NUMBER) -> Lead:
        return Lead.objects.create(
            tenant=tenant,
            email=f"{name}@prospect.example.com",
            phone=phone,
            sms_consent=consent,
            sms_consent_source=source,
        )

    # What a STOP wrote before 65a59fb, whatever the lead's consent had been.
    was_unknown = lead("was-unknown", "revoked", "sms:STOP")
    was_crm = lead("was-crm", "revoked", "sms:STOP.")  # the text was "Stop."
    quit_elsewhere = lead("quit", "revoked", "sms:QUIT", phone="+15551230199")
    # Not a STOP's: left alone.
    tenants_own = lead("own", "revoked", "sms: keyword campaign")
    restarted = lead("restarted", "granted", "sms:START")
    untouched = {tenants_own.pk: ("revoked", "sms: keyword campaign")}
    untouched[restarted.pk] = ("granted", "sms:START")
    phone_suppression_add(tenant_id=tenant.pk, phone=NUMBER, reason="stop")

    def states() -> dict[int, tuple[str, str]]:
        rows = Lead.objects.values_list("pk", "sms_consent", "sms_consent_source")
        return {pk: (consent, source) for pk, consent, source in rows}

    _run(MIGRATION.FORWARD)
    assert states() == {
        was_unknown.pk: ("revoked", "legacy:sms:STOP"),
        was_crm.pk: ("revoked", "legacy:sms:STOP."),
        quit_elsewhere.pk: ("revoked", "legacy:sms:QUIT"),
        **untouched,
    }

    # The person may still re-subscribe the number; it gives none of them consent.
    assert _text(tenant, "START") == START_CONFIRMATION
    assert not PhoneSuppression.objects.filter(tenant=tenant, phone=NUMBER).exists()
    assert states()[was_unknown.pk] == ("revoked", "legacy:sms:STOP")
    assert states()[was_crm.pk] == ("revoked", "legacy:sms:STOP.")

    # A STOP from now on is restored by a START as before (a granted consent only).
    granted = lead("granted", "granted", "web_form")
    _text(tenant, "STOP")
    assert states()[granted.pk] == ("revoked", "sms:STOP")
    _text(tenant, "START")
    assert states()[granted.pk] == ("granted", "sms:START")
    assert states()[was_unknown.pk] == ("revoked", "legacy:sms:STOP")

    _run(MIGRATION.REVERSE)
    assert states()[was_unknown.pk] == ("revoked", "sms:STOP")
    assert states()[was_crm.pk] == ("revoked", "sms:STOP.")
    assert states()[quit_elsewhere.pk] == ("revoked", "sms:QUIT")
    assert {pk: states()[pk] for pk in untouched} == untouched
