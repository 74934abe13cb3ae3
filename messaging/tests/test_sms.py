"""The SMS channel against the Twilio emulator: what Twilio receives, what comes back, what
the ledger, the suppression list and the enrollments say. Callbacks the emulator posts land in
a sink standing in for our server and are replayed into our endpoints (same transaction)."""

import datetime
import threading
import time
import uuid
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from campaigns.models import Enrollment, Lead, ScheduledAction
from campaigns.services.campaigns import campaign_version_check
from campaigns.tests.engine_support import (
    actions_make_due,
    enrollment_states,
    identity_all_day,
    pending_actions,
    sweep_inline,
    wait_until,
)
from messaging.emulator.twilio import signature_compute
from messaging.models import Message, MessageEvent, WebhookReceipt
from messaging.providers.base import Accepted, Permanent, Transient
from messaging.providers.twilio import OutboundSms, SmsCredentials, provider_sms_send
from messaging.services.ratelimit import KEY_PREFIX
from messaging.services.sms_events import sms_receipts_sweep
from messaging.tests.sms_support import (
    PLAN_ONE_SMS,
    PLAN_SMS_BRANCHES,
    PLAN_SMS_DELIVERY,
    SENDER_NUMBER,
    callbacks_replay,
    phones,
    receipts_process,
    sms_campaign,
    sms_messages,
    texts_per_number,
)
from outreach.tenancy import controls
from outreach.tenancy.models import Tenant
from suppression.models import PhoneSuppression
from suppression.services import phone_suppression_add

TOKEN = "emulator-twilio-auth-token"
ACCOUNT = "AC" + "0" * 32


@pytest.fixture
def sms_settings(settings, sendgrid_emulator, webhook_sink):
    """This process texts through the test emulator; Twilio's callbacks go to the sink."""
    settings.TWILIO_API_BASE = sendgrid_emulator.host
    settings.SEND_JITTER_SECONDS = 0
    settings.PUBLIC_BASE_URL = webhook_sink.url
    return sendgrid_emulator


def _credentials(emulator, token: str = TOKEN) -> SmsCredentials:
    return SmsCredentials(account_sid=ACCOUNT, auth_token=token, api_base=emulator.host)


def _sms(to: str, **fields) -> OutboundSms:
    return OutboundSms(
        message_public_id=uuid.uuid4(),
        to=to,
        body=fields.pop("body", "Hello"),
        status_callback=fields.pop("status_callback", ""),
        from_number=fields.pop("from_number", SENDER_NUMBER),
        **fields,
    )


# --- the emulator speaks Twilio ---------------------------------------------------------------


def test_the_official_client_sends_through_the_emulator_and_twilio_errors_come_back_typed(
    sendgrid_emulator,
):
    emulator = sendgrid_emulator
    credentials = _credentials(emulator)

    accepted = provider_sms_send(sms=_sms("+15551230100", body="Hi there"), credentials=credentials)
    assert isinstance(accepted, Accepted) and accepted.provider_message_id.startswith("SM")
    (sent,) = emulator.sms_messages(direction="outbound-api")
    assert (sent["to"], sent["from"], sent["body"], sent["sid"]) == (
        "+15551230100",
        SENDER_NUMBER,
        "Hi there",
        accepted.provider_message_id,
    )

    invalid = provider_sms_send(sms=_sms("+1555"), credentials=credentials)
    assert isinstance(invalid, Permanent) and invalid.reason == "twilio_21211"
    assert invalid.errors == ["21211: The 'To' number +1555 is not a valid phone number."]
    blocked = provider_sms_send(sms=_sms("+15005550004"), credentials=credentials)
    assert (blocked.status_code, blocked.reason) == (400, "twilio_21610")
    wrong = provider_sms_send(sms=_sms("+15551230100"), credentials=_credentials(emulator, "x"))
    assert (wrong.status_code, wrong.reason) == (401, "twilio_20003")

    emulator.sms_configure(rate_per_second=1)
    provider_sms_send(sms=_sms("+15551230101"), credentials=credentials)
    limited = provider_sms_send(sms=_sms("+15551230102"), credentials=credentials)
    assert isinstance(limited, Transient) and limited.reason == "rate_limited"
    assert limited.retry_after is not None  # from Retry-After
    assert len(emulator.sms_messages(direction="outbound-api")) == 2


def test_a_send_whose_answer_never_comes_may_have_been_delivered(sendgrid_emulator, settings):
    settings.TWILIO_TIMEOUT_SECONDS = 0.3
    sendgrid_emulator.sms_configure(latency_ms=1000)
    result = provider_sms_send(
        sms=_sms("+15551230100"), credentials=_credentials(sendgrid_emulator)
    )
    assert isinstance(result, Transient)
    assert (result.reason, result.maybe_delivered) == ("timeout", True)


def test_status_callbacks_are_signed_so_that_twilios_own_validator_accepts_them(
    sendgrid_emulator, webhook_sink
):
    url = f"{webhook_sink.url}/status/?message=abc"
    provider_sms_send(
        sms=_sms("+15551230113", status_callback=url), credentials=_credentials(sendgrid_emulator)
    )
    sendgrid_emulator.sms_wait_idle()
    posts = webhook_sink.wait_for(3)
    validator = RequestValidator(TOKEN)
    statuses = []
    for post in posts:
        params = dict(parse_qsl(post.body.decode()))
        assert validator.validate(url, params, post.headers["X-Twilio-Signature"])
        assert not validator.validate(url + "x", params, post.headers["X-Twilio-Signature"])
        statuses.append((params["MessageStatus"], params.get("ErrorCode")))
    # Posted by several threads with no delay between them: any order.
    assert sorted(statuses, key=str) == [("queued", None), ("sent", None), ("undelivered", "30003")]


# --- our endpoints ---------------------------------------------------------------------------


def _signed_post(client: Client, path: str, params: dict, *, base: str, token: str = TOKEN):
    signature = signature_compute(auth_token=token, url=base + path, params=params)
    return client.post(
        path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )


def _inbound(person: str, body: str, ours: str = SENDER_NUMBER) -> dict:
    sid = "SM" + uuid.uuid4().hex
    return {"MessageSid": sid, "AccountSid": ACCOUNT, "From": person, "To": ours, "Body": body}


@pytest.mark.django_db
@pytest.mark.parametrize("signature", ["wrong", "missing", "other-token"])
def test_a_badly_signed_callback_is_403_and_changes_nothing(tenant, settings, signature):
    settings.PUBLIC_BASE_URL = "http://testserver"
    lead = Lead.objects.create(
        tenant=tenant, email="p@prospect.example.com", phone="+15551230100", sms_consent="granted"
    )
    path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
    params = _inbound("+15551230100", "STOP")
    client = Client()
    if signature == "other-token":
        response = _signed_post(client, path, params, base="http://testserver", token="other")
    else:
        response = client.post(
            path,
            data=urlencode(params),
            content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": "c2lnbmF0dXJl"} if signature == "wrong" else {},
        )
    assert response.status_code == 403
    assert not WebhookReceipt.objects.exists()
    assert not PhoneSuppression.objects.exists()
    lead.refresh_from_db()
    assert lead.sms_consent == "granted"  # a forged STOP revokes nothing


@pytest.mark.django_db
def test_an_unknown_tenant_is_404(settings):
    settings.PUBLIC_BASE_URL = "http://testserver"
    path = f"/webhooks/twilio/status/{uuid.uuid4()}/"
    response = _signed_post(Client(), path, {"MessageSid": "SM1"}, base="http://testserver")
    assert response.status_code == 404
    assert not WebhookReceipt.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("word", ["STOP", "stopall", " Unsubscribe ", "CANCEL", "end", "QUIT"])
def test_stop_and_its_synonyms_suppress_the_number_at_once_and_confirm(tenant, settings, word):
    settings.PUBLIC_BASE_URL = "http://testserver"
    lead = Lead.objects.create(
        tenant=tenant, email="p@prospect.example.com", phone="+15551230100", sms_consent="granted"
    )
    path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
    response = _signed_post(
        Client(), path, _inbound("+15551230100", word), base="http://testserver"
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert b"<Message>You have successfully been unsubscribed." in response.content
    # At once: before any task ran.
    (entry,) = PhoneSuppression.objects.filter(tenant=tenant)
    assert (entry.phone, entry.reason) == ("+15551230100", "stop")
    lead.refresh_from_db()
    assert (lead.sms_consent, lead.sms_consent_source) == ("revoked", f"sms:{word.strip().upper()}")
    assert WebhookReceipt.objects.get().processed_at is None  # normalised later


@pytest.mark.django_db
def test_start_resubscribes_and_help_answers_with_the_tenants_help_text(tenant, settings):
    settings.PUBLIC_BASE_URL = "http://testserver"
    Tenant.objects.filter(pk=tenant.pk).update(sms_help_text="Acme sales: call 555-0100.")
    phone_suppression_add(tenant_id=tenant.pk, phone="+15551230100", reason="stop")
    path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
    client = Client()

    started = _signed_post(
        client, path, _inbound("+15551230100", "START"), base="http://testserver"
    )
    assert b"re-subscribed" in started.content
    assert not PhoneSuppression.objects.exists()
    helped = _signed_post(client, path, _inbound("+15551230100", "help"), base="http://testserver")
    assert b"<Message>Acme sales: call 555-0100.</Message>" in helped.content
    other = _signed_post(client, path, _inbound("+15551230100", "Sure!"), base="http://testserver")
    assert other.content.endswith(b"<Response/>")
    assert WebhookReceipt.objects.count() == 3


@pytest.mark.django_db
def test_start_gives_back_only_the_consent_a_stop_took(tenant, settings):
    """A START is no consent: it re-subscribes the number, and restores consent only on the
    leads whose consent that number's STOP revoked."""
    settings.PUBLIC_BASE_URL = "http://testserver"
    number = "+15551230100"
    leads = {
        consent: Lead.objects.create(
            tenant=tenant,
            email=f"{consent}@prospect.example.com",
            phone=number,
            sms_consent=consent,
            sms_consent_source="crm" if consent == "revoked" else "",
        )
        for consent in ("granted", "unknown", "revoked")
    }
    path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
    client = Client()

    def states() -> dict[str, tuple[str, str]]:
        return {
            consent: tuple(
                Lead.objects.filter(pk=lead.pk).values_list("sms_consent", "sms_consent_source")[0]
            )
            for consent, lead in leads.items()
        }

    _signed_post(client, path, _inbound(number, "Stop."), base="http://testserver")
    assert PhoneSuppression.objects.filter(tenant=tenant, phone=number).exists()
    assert states() == {
        "granted": ("revoked", "sms:STOP"),
        "unknown": ("unknown", ""),  # never consented: nothing to revoke
        "revoked": ("revoked", "crm"),  # revoked before, by the CRM: its record is kept
    }

    started = _signed_post(client, path, _inbound(number, "start"), base="http://testserver")
    assert b"re-subscribed" in started.content
    assert not PhoneSuppression.objects.filter(tenant=tenant, phone=number).exists()
    assert states() == {
        "granted": ("granted", "sms:START"),
        "unknown": ("unknown", ""),
        "revoked": ("revoked", "crm"),
    }
    assert Lead.objects.get(pk=leads["granted"].pk).sms_consent_at is not None


@pytest.mark.django_db
def test_start_leaves_an_operators_block_and_does_not_claim_a_resubscription(tenant, settings):
    """A number an operator blocked in the admin stays blocked when its owner texts START:
    nothing changes, the consent its STOP took stays revoked, and no answer says
    "re-subscribed". A STOP's or a carrier opt-out's suppression is lifted."""
    settings.PUBLIC_BASE_URL = "http://testserver"
    blocked, opted_out, carrier = "+15551230100", "+15551230101", "+15551230102"
    leads = [
        Lead.objects.create(
            tenant=tenant,
            email=f"{n}@prospect.example.com",
            phone=number,
            sms_consent="granted",
            sms_consent_source="web_form",
        )
        for n, number in enumerate((blocked, opted_out))
    ]
    phone_suppression_add(tenant_id=tenant.pk, phone=blocked, reason="manual", note="lawyer")
    phone_suppression_add(tenant_id=tenant.pk, phone=carrier, reason="carrier_opt_out")
    path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
    client = Client()
    for number in (blocked, opted_out):
        stopped = _signed_post(client, path, _inbound(number, "STOP"), base="http://testserver")
        assert b"unsubscribed" in stopped.content

    answers = {
        number: _signed_post(client, path, _inbound(number, "START"), base="http://testserver")
        for number in (blocked, opted_out, carrier)
    }

    assert answers[blocked].status_code == 200
    assert answers[blocked].content.endswith(b"<Response/>")
    assert b"re-subscribed" in answers[opted_out].content
    assert b"re-subscribed" in answers[carrier].content
    (entry,) = PhoneSuppression.objects.filter(tenant=tenant)
    assert (entry.phone, entry.reason, entry.note) == (blocked, "manual", "lawyer")
    states = [
        tuple(Lead.objects.filter(pk=lead.pk).values_list("sms_consent", "sms_consent_source")[0])
        for lead in leads
    ]
    assert states == [("revoked", "sms:STOP"), ("granted", "sms:START")]


@pytest.mark.django_db
def test_a_revocation_through_the_api_after_a_stop_is_not_undone_by_a_start(tenant, api, settings):
    """A CRM sync revoking a lead a STOP already revoked, without a source: the revocation is
    the tenant's now (source "api"), so the person's START re-subscribes the number but gives
    no consent back."""
    settings.PUBLIC_BASE_URL = "http://testserver"
    number = "+15551230100"
    lead = Lead.objects.create(
        tenant=tenant,
        email="p@prospect.example.com",
        phone=number,
        sms_consent="granted",
        sms_consent_source="web_form",
    )
    path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
    client = Client()
    _signed_post(client, path, _inbound(number, "STOP"), base="http://testserver")
    lead.refresh_from_db()
    assert (lead.sms_consent, lead.sms_consent_source) == ("revoked", "sms:STOP")

    revoked = api.patch(f"/api/v1/leads/{lead.pk}/", {"sms_consent": "revoked"}, format="json")
    assert revoked.status_code == 200
    assert revoked.json()["sms_consent_source"] == "api"

    started = _signed_post(client, path, _inbound(number, "START"), base="http://testserver")
    assert b"re-subscribed" in started.content
    assert not PhoneSuppression.objects.filter(tenant=tenant, phone=number).exists()
    lead.refresh_from_db()
    assert (lead.sms_consent, lead.sms_consent_source) == ("revoked", "api")


# --- STOP racing a send -----------------------------------------------------------------------


def _stop_from_another_thread(tenant, number: str, log: dict) -> threading.Thread:
    """A thread that texts STOP to our endpoint (its own database connection), recording when
    it posted and when the answer came."""

    def post() -> None:
        try:
            path = f"/webhooks/twilio/inbound/{tenant.public_id}/"
            log["posted"] = time.monotonic()
            response = _signed_post(
                Client(), path, _inbound(number, "STOP"), base=django_settings.PUBLIC_BASE_URL
            )
            log["answered"] = time.monotonic()
            log["status"], log["body"] = response.status_code, response.content
        finally:
            connection.close()

    return threading.Thread(target=post, name="stop-texter")


@pytest.mark.django_db(transaction=True)
def test_a_stop_arriving_while_its_number_is_being_texted_answers_after_twilio_did(
    tenant, sms_settings, monkeypatch, event_rows_cleanup
):
    """The send path holds the number's send lock from its checks until Twilio answered: a
    STOP posted meanwhile is stored (and confirmed) only after that answer, so the text that
    was already leaving is the last one."""
    from messaging.services import sending_sms

    emulator = sms_settings
    emulator.sms_configure(latency_ms=1500)  # Twilio takes 1.5 s to answer the send
    number = phones(150, 1)[0]
    (enrollment,) = sms_campaign(tenant, numbers=[number])
    answered: dict[str, float] = {}
    provider_send = sending_sms.provider_sms_send

    def timed_send(**kwargs):
        result = provider_send(**kwargs)
        answered[kwargs["sms"].to] = time.monotonic()
        return result

    monkeypatch.setattr(sending_sms, "provider_sms_send", timed_send)
    stop: dict = {}
    texter = _stop_from_another_thread(tenant, number, stop)

    def stop_once_twilio_has_the_text() -> None:
        wait_until(
            lambda: emulator.sms_messages(to=number, direction="outbound-api"),
            timeout=10,
            what="the text to reach Twilio",
        )
        texter.start()

    watcher = threading.Thread(target=stop_once_twilio_has_the_text)
    watcher.start()
    actions_make_due()
    sweep_inline()
    watcher.join(15)
    texter.join(15)

    assert stop["status"] == 200 and b"successfully been unsubscribed" in stop["body"]
    # Posted while the text was with Twilio; answered only once Twilio had answered the send.
    assert stop["posted"] < answered[number] <= stop["answered"]
    (message,) = sms_messages([enrollment])
    assert message.status == "accepted"
    assert PhoneSuppression.objects.filter(tenant=tenant, phone=number).exists()
    assert Lead.objects.get(pk=enrollment.lead_id).sms_consent == "revoked"
    assert texts_per_number(emulator) == {number: 1}


@pytest.mark.django_db(transaction=True)
def test_a_stop_committed_after_the_batch_read_the_lead_is_caught_by_the_suppression_check(
    tenant, sms_settings, monkeypatch, event_rows_cleanup
):
    """The batch read the lead (consent: granted) before a STOP committed: its consent check
    passes on what it read, and the suppression, read under the number's send lock, stops
    the text."""
    from messaging.services import sending_sms

    emulator = sms_settings
    number = phones(151, 1)[0]
    (enrollment,) = sms_campaign(tenant, numbers=[number])
    lock_many = sending_sms.phone_send_lock_many
    stop: dict = {}

    def stop_commits_first(*, phones: list[str]) -> set[str]:
        texter = _stop_from_another_thread(tenant, number, stop)
        texter.start()
        texter.join(15)  # committed before this batch takes the lock and reads suppressions
        return lock_many(phones=phones)

    monkeypatch.setattr(sending_sms, "phone_send_lock_many", stop_commits_first)
    actions_make_due()
    sweep_inline()

    assert stop["status"] == 200
    assert emulator.sms_messages(direction="outbound-api") == []
    assert not sms_messages([enrollment])
    enrollment.refresh_from_db()
    # Not "no SMS consent": the consent the batch read was still granted.
    assert (enrollment.state, enrollment.stop_reason) == ("stopped", "number opted out of SMS")
    assert Lead.objects.get(pk=enrollment.lead_id).sms_consent == "revoked"


# --- the send path ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_sms_step_texts_each_lead_once_and_delivery_reports_settle_the_ledger(
    tenant, sms_settings, webhook_sink
):
    emulator = sms_settings
    numbers = phones(123, 3)
    enrollments = sms_campaign(tenant, numbers=numbers)
    (action,) = pending_actions(enrollments[0])
    assert action.kind == "sms"
    actions_make_due()
    sweep_inline()

    assert texts_per_number(emulator) == {number: 1 for number in numbers}
    sent = emulator.sms_messages(to=numbers[0], direction="outbound-api")[0]
    lead = Lead.objects.get(pk=enrollments[0].lead_id)
    identity = enrollments[0].sender_identity
    assert sent["body"] == f"Hi {lead.first_name}, quick question from {identity.from_name}?"
    assert enrollment_states(enrollments) == {"completed": 3}
    messages = sms_messages(enrollments)
    assert {(m.status, m.to_phone in numbers, m.provider_message_id[:2]) for m in messages} == {
        ("accepted", True, "SM")
    }

    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 9, what="3 callbacks for each text")
    assert set(callbacks_replay(webhook_sink)) == {204}
    assert {m.status for m in sms_messages(enrollments)} == {"delivered"}
    events = MessageEvent.objects.filter(message__in=messages).values_list("event_type", flat=True)
    assert sorted(events) == sorted(["sms_queued", "sms_sent", "sms_delivered"] * 3)

    # Due again (a duplicated hint, a lost lease): the ledger says sent, nothing goes out.
    ScheduledAction.objects.all().delete()
    actions_make_due()
    sweep_inline()
    assert texts_per_number(emulator) == {number: 1 for number in numbers}


@pytest.mark.django_db
def test_replies_undelivered_and_silence_take_the_sms_steps_branches(
    tenant, sms_settings, webhook_sink
):
    emulator = sms_settings
    replier, unreachable, silent = phones(124, 1, "10") + phones(125, 1, "13") + phones(126, 1)
    enrollments = sms_campaign(
        tenant, numbers=[replier, unreachable, silent], plan=PLAN_SMS_BRANCHES
    )
    emulator.sms_register_number(
        SENDER_NUMBER, f"{webhook_sink.url}/webhooks/twilio/inbound/{tenant.public_id}/"
    )
    actions_make_due()
    sweep_inline()
    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 10, what="callbacks and the reply")
    callbacks_replay(webhook_sink)

    outcomes = {
        e.lead.phone: (e.state, e.outcome)
        for e in Enrollment.objects.filter(pk__in=[e.pk for e in enrollments]).select_related(
            "lead"
        )
    }
    assert outcomes[replier] == ("completed", "replied")
    assert outcomes[unreachable] == ("completed", "unreachable")
    assert outcomes[silent] == ("active", "")
    reply = MessageEvent.objects.get(event_type="sms_reply")
    assert reply.raw["Body"] == "Yes, tell me more"
    assert Message.objects.get(to_phone=replier).status == "replied"
    assert Message.objects.get(to_phone=unreachable).error_code == "twilio:30003"

    # A day of silence: the no_reply timeout fires.
    actions_make_due(kind="timeout")
    sweep_inline()
    silent_enrollment = Enrollment.objects.get(lead__phone=silent)
    assert (silent_enrollment.state, silent_enrollment.outcome) == ("completed", "no_response")


@pytest.mark.django_db
def test_a_delivery_report_takes_the_delivered_branch_and_a_failed_one_the_undelivered(
    tenant, sms_settings, webhook_sink
):
    emulator = sms_settings
    delivered, failed = phones(133, 1) + phones(134, 1, "14")  # 14: Twilio reports failed
    enrollments = sms_campaign(tenant, numbers=[delivered, failed], plan=PLAN_SMS_DELIVERY)
    actions_make_due()
    sweep_inline()
    assert enrollment_states(enrollments) == {"active": 2}  # waiting for the reports
    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 6, what="3 callbacks for each text")
    assert set(callbacks_replay(webhook_sink)) == {204}

    outcomes = {
        e.lead.phone: (e.state, e.outcome)
        for e in Enrollment.objects.filter(pk__in=[e.pk for e in enrollments]).select_related(
            "lead"
        )
    }
    assert outcomes == {delivered: ("completed", "landed"), failed: ("completed", "unreachable")}
    by_phone = {m.to_phone: m for m in sms_messages(enrollments)}
    assert (by_phone[delivered].status, by_phone[delivered].error_code) == ("delivered", "")
    assert (by_phone[failed].status, by_phone[failed].error_code) == (
        "undelivered",
        "twilio:30006",
    )
    failure = MessageEvent.objects.get(message=by_phone[failed], event_type="sms_failed")
    assert failure.raw["ErrorCode"] == "30006"
    # The no_reply timeout was cancelled by the branch taken.
    assert not ScheduledAction.objects.filter(enrollment__in=[e.pk for e in enrollments])


@pytest.mark.django_db
def test_the_sweep_normalises_a_receipt_whose_hint_was_lost(
    tenant, sms_settings, webhook_sink, settings
):
    emulator = sms_settings
    (enrollment,) = sms_campaign(tenant, numbers=phones(135, 1))
    actions_make_due()
    sweep_inline()
    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 3, what="the callbacks")
    # Stored and answered; the hints are lost (they go out on commit, which never comes here).
    assert set(callbacks_replay(webhook_sink, process=False)) == {204}
    (message,) = sms_messages([enrollment])
    receipts = WebhookReceipt.objects.filter(kind="sms_status")
    assert receipts.count() == 3 and not receipts.exclude(processed_at=None).exists()

    assert sms_receipts_sweep() == 0  # still within the grace period: a hint may yet come
    assert message.status == "accepted" and not MessageEvent.objects.filter(message=message)

    aged = timezone.now() - datetime.timedelta(seconds=settings.WEBHOOK_RECEIPT_GRACE_SECONDS + 1)
    receipts.update(received_at=aged)
    assert sms_receipts_sweep() == 3
    message.refresh_from_db()
    assert message.status == "delivered"
    assert sorted(
        MessageEvent.objects.filter(message=message).values_list("event_type", flat=True)
    ) == ["sms_delivered", "sms_queued", "sms_sent"]
    assert not receipts.filter(processed_at=None).exists()
    assert sms_receipts_sweep() == 0  # done once


@pytest.mark.django_db
def test_a_429_reschedules_the_text_no_earlier_than_retry_after_and_it_goes_once(
    tenant, sms_settings
):
    emulator = sms_settings
    # Retry-After longer than our own first backoff (30 s), so honouring it shows.
    emulator.sms_configure(fault_429_share=1.0, retry_after_seconds=120)
    number = phones(136, 1)[0]
    (enrollment,) = sms_campaign(tenant, numbers=[number])
    actions_make_due()
    before = timezone.now()
    sweep_inline()

    assert emulator.sms_messages(direction="outbound-api") == []
    (action,) = pending_actions(enrollment, kind="sms")
    assert action.last_error == "provider transient error: rate_limited"
    assert action.due_at >= before + datetime.timedelta(seconds=119)  # Retry-After: 120
    (first,) = sms_messages([enrollment])
    assert (first.attempt, first.status, first.error_code) == (
        1,
        "failed",
        "transient:rate_limited",
    )
    sweep_inline()  # not due yet: nothing happens
    assert len(sms_messages([enrollment])) == 1

    emulator.sms_configure(fault_429_share=0.0)
    actions_make_due()
    sweep_inline()
    actions_make_due()
    sweep_inline()  # a duplicated run finds the step sent
    assert texts_per_number(emulator) == {number: 1}
    assert [(m.attempt, m.status) for m in sms_messages([enrollment])] == [
        (1, "failed"),
        (2, "accepted"),
    ]
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.outcome) == ("completed", "texted")


@pytest.mark.django_db
def test_no_text_without_consent_or_to_a_suppressed_number(tenant, sms_settings):
    emulator = sms_settings
    consenting, suppressed = phones(127, 2)
    enrollments = sms_campaign(tenant, numbers=[consenting, suppressed])
    unconsented = sms_campaign(tenant, numbers=phones(128, 1), consent="unknown")
    phone_suppression_add(tenant_id=tenant.pk, phone=suppressed, reason="stop")
    actions_make_due()
    sweep_inline()

    assert texts_per_number(emulator) == {consenting: 1}
    stopped = {
        e.lead.phone: e.stop_reason
        for e in Enrollment.objects.filter(state="stopped").select_related("lead")
    }
    assert stopped == {
        suppressed: "number opted out of SMS",
        unconsented[0].lead.phone: "no SMS consent",
    }
    assert not sms_messages([*enrollments, *unconsented][1:])


SERVICE_SID = "MG" + "ab" * 16


@pytest.mark.django_db
def test_a_text_through_a_messaging_service_counts_on_the_service_and_its_replies_find_it(
    tenant, sms_settings, webhook_sink
):
    """An identity with a Messaging Service and no number: Twilio picks the sender from the
    service's pool. Its per-second capacity is counted on the MG SID, and a reply to the
    pool's number comes back to that text, though another sender texted the person since."""
    emulator = sms_settings
    person = phones(140, 1)[0]
    service_identity = identity_all_day(
        tenant, sms_from_number="", sms_messaging_service_sid=SERVICE_SID, sms_per_second=5
    )
    (through_service,) = sms_campaign(
        tenant,
        numbers=[person],
        plan=PLAN_SMS_BRANCHES,
        identity=service_identity,
        label="service",
    )
    actions_make_due()
    sweep_inline()
    (record,) = emulator.sms_messages(to=person, direction="outbound-api")
    assert record["messaging_service_sid"] == SERVICE_SID
    pool_number = record["from"]
    assert pool_number.startswith("+1555") and pool_number != SENDER_NUMBER
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    assert list(client.scan_iter(f"{KEY_PREFIX}sms:n:{SERVICE_SID}:*"))  # this second's bucket

    # Later, the tenant's own number texts the same person from another campaign.
    (through_number,) = sms_campaign(
        tenant, numbers=[person], plan=PLAN_SMS_BRANCHES, label="number"
    )
    actions_make_due(enrollment_ids=[through_number.pk])
    sweep_inline()
    assert len(emulator.sms_messages(to=person, direction="outbound-api")) == 2
    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 6, what="the status callbacks")

    # The person answers the text that came from the service's number.
    inbound_url = f"{webhook_sink.url}/webhooks/twilio/inbound/{tenant.public_id}/"
    emulator.sms_register_number(pool_number, inbound_url)
    emulator.sms_inbound(person=person, to=pool_number, body="Sure, call me")
    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 7, what="the reply")
    assert set(callbacks_replay(webhook_sink)) == {200, 204}

    reply = MessageEvent.objects.get(event_type="sms_reply")
    assert reply.raw["MessagingServiceSid"] == SERVICE_SID
    assert reply.message_id == sms_messages([through_service])[0].pk
    outcomes = {
        e.pk: (e.state, e.outcome)
        for e in Enrollment.objects.filter(pk__in=[through_service.pk, through_number.pk])
    }
    assert outcomes == {
        through_service.pk: ("completed", "replied"),
        through_number.pk: ("active", ""),
    }


@pytest.mark.django_db
def test_the_per_second_cap_of_a_number_sends_one_and_holds_the_rest(tenant, sms_settings):
    emulator = sms_settings
    numbers = phones(141, 3)
    identity = identity_all_day(tenant, sms_from_number="+15550001141", sms_per_second=1)
    enrollments = sms_campaign(tenant, numbers=numbers, identity=identity)
    actions_make_due()
    before = timezone.now()
    sweep_inline()  # one batch, within one second (else a second text may go: that is fine)

    sent = texts_per_number(emulator)
    held = [a for e in enrollments for a in pending_actions(e, kind="sms")]
    assert len(sent) + len(held) == 3 and set(sent.values()) == {1}
    assert len(sent) == 1 or (timezone.now() - before).total_seconds() >= 1
    assert held and {a.last_error for a in held} == {"no capacity: sms_number_second full"}
    # Held to the next second, not to some later window.
    assert all(a.due_at <= timezone.now() + datetime.timedelta(seconds=2) for a in held)
    assert {m.status for m in sms_messages(enrollments)} == {"accepted"}  # no ledger for held

    def all_sent() -> bool:
        actions_make_due(kind="sms")
        sweep_inline()
        return len(texts_per_number(emulator)) == 3

    wait_until(all_sent, timeout=15, what="the held texts to go out in the next seconds")
    assert set(texts_per_number(emulator).values()) == {1}


@pytest.mark.django_db
def test_the_daily_sms_cap_holds_the_rest_until_the_identitys_next_day(tenant, sms_settings):
    from messaging.services.capacity import identity_day_window

    emulator = sms_settings
    numbers = phones(142, 4)
    identity = identity_all_day(
        tenant,
        sms_from_number="+15550001142",
        sms_per_second=1000,
        sms_daily_cap=2,
        timezone="Asia/Tokyo",
    )
    enrollments = sms_campaign(tenant, numbers=numbers, identity=identity)
    actions_make_due()
    sweep_inline()

    assert sum(texts_per_number(emulator).values()) == 2
    held = [a for e in enrollments for a in pending_actions(e, kind="sms")]
    assert len(held) == 2
    assert {a.last_error for a in held} == {"no capacity: sms_identity_day full"}
    next_day = identity_day_window(identity=identity, now=timezone.now()).ends_at
    for action in held:
        # Not before midnight in Tokyo, and then at the first moment quiet hours allow in the
        # lead's own zone (theirs is noon now: the identity's midnight may fall in their night).
        assert next_day <= action.due_at < next_day + datetime.timedelta(days=1)
        lead = Enrollment.objects.get(pk=action.enrollment_id).lead
        local = action.due_at.astimezone(ZoneInfo(lead.timezone))
        assert datetime.time(8, 0) <= local.time() < datetime.time(21, 0)

    actions_make_due()
    sweep_inline()  # the same day: still full, nothing more goes out
    assert sum(texts_per_number(emulator).values()) == 2


@pytest.mark.django_db
def test_a_carrier_opt_out_answer_suppresses_the_number_and_stops_the_journey(tenant, sms_settings):
    (enrollment,) = sms_campaign(tenant, numbers=["+15005550004"])
    actions_make_due()
    sweep_inline()
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.stop_reason) == (
        "stopped",
        "number opted out of SMS (Twilio 21610)",
    )
    assert PhoneSuppression.objects.get().reason == "carrier_opt_out"
    assert sms_messages([enrollment])[0].error_code == "permanent:21610"


@pytest.mark.django_db
def test_quiet_hours_hold_a_text_until_eight_in_the_leads_morning(tenant, sms_settings):
    from campaigns.tests.engine_support import zone_at_local_hour

    emulator = sms_settings
    zone = zone_at_local_hour(22)  # 10 p.m. for the lead; the sender's window is all day
    (enrollment,) = sms_campaign(tenant, numbers=phones(129, 1), timezone=zone)
    actions_make_due()
    sweep_inline()

    assert emulator.sms_messages() == []
    (action,) = pending_actions(enrollment)
    assert action.last_error == "quiet hours for SMS (08:00-21:00 in the lead's time)"
    local_due = action.due_at.astimezone(ZoneInfo(zone))
    assert (local_due.hour, local_due.minute) == (8, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("switch", ["kill_switch", "flag"])
def test_the_sms_kill_switch_and_the_tenant_flag_hold_texts_without_losing_them(
    tenant, sms_settings, switch
):
    emulator = sms_settings
    (enrollment,) = sms_campaign(tenant, numbers=phones(130, 1))
    if switch == "kill_switch":
        controls.kill_switch_set(channel="sms", engaged=True, actor="test", reason="carrier issue")
    else:
        Tenant.objects.filter(pk=tenant.pk).update(sms_enabled=False)
    actions_make_due()
    sweep_inline()
    assert emulator.sms_messages() == []
    (action,) = pending_actions(enrollment)
    expected = "kill switch engaged (sms)" if switch == "kill_switch" else "SMS is disabled"
    assert action.last_error.startswith(expected)

    if switch == "kill_switch":
        controls.kill_switch_set(channel="sms", engaged=False, actor="test", reason="fixed")
    else:
        Tenant.objects.filter(pk=tenant.pk).update(sms_enabled=True)
    actions_make_due()
    sweep_inline()
    assert len(emulator.sms_messages()) == 1


@pytest.mark.django_db
def test_a_text_without_an_answer_waits_for_callbacks_instead_of_being_resent(
    tenant, sms_settings, settings, webhook_sink
):
    emulator = sms_settings
    settings.TWILIO_TIMEOUT_SECONDS = 0.3
    emulator.sms_configure(latency_ms=1000)  # Twilio takes the text but answers too late
    (enrollment,) = sms_campaign(tenant, numbers=phones(131, 1))
    actions_make_due()
    sweep_inline()
    emulator.sms_configure(latency_ms=0)
    (message,) = sms_messages([enrollment])
    assert (message.status, message.error_code) == ("sending", "unknown:timeout")

    actions_make_due()
    sweep_inline()  # within the grace period: held, not sent again
    assert len(emulator.sms_messages(direction="outbound-api")) == 1

    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 3, what="the callbacks")
    callbacks_replay(webhook_sink)  # they carry our id: the row is reconciled
    message.refresh_from_db()
    assert message.status == "delivered" and message.provider_message_id.startswith("SM")
    settings.SEND_RECONCILE_GRACE_SECONDS = 0
    actions_make_due()
    sweep_inline()
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.outcome) == ("completed", "texted")
    assert len(emulator.sms_messages(direction="outbound-api")) == 1


@pytest.mark.django_db
def test_a_receipt_is_normalised_once_however_often_it_is_processed(
    tenant, sms_settings, webhook_sink
):
    emulator = sms_settings
    (enrollment,) = sms_campaign(tenant, numbers=phones(132, 1))
    actions_make_due()
    sweep_inline()
    emulator.sms_wait_idle()
    wait_until(lambda: len(webhook_sink.requests) >= 3, what="the callbacks")
    twice = list(webhook_sink.requests) * 2  # Twilio retried every callback
    webhook_sink.requests[:] = twice
    callbacks_replay(webhook_sink)
    assert WebhookReceipt.objects.count() == 6
    assert MessageEvent.objects.filter(message__enrollment=enrollment).count() == 3
    assert receipts_process() == 0


@pytest.mark.django_db
def test_validation_counts_segments_and_the_preview_shows_the_leads_text(tenant, api):
    Tenant.objects.filter(pk=tenant.pk).update(sms_enabled=True)
    from outreach.testing.factories import campaign_with_plan

    long_plan = {
        **PLAN_ONE_SMS,
        "steps": {
            **PLAN_ONE_SMS["steps"],
            "text": {"type": "sms", "body": "Ünïcode ✓ " * 30, "next": "done"},
        },
    }
    campaign = campaign_with_plan(tenant=tenant, plan=PLAN_ONE_SMS)
    checked = campaign_version_check(
        tenant_id=tenant.pk, campaign_id=campaign.pk, plan=PLAN_ONE_SMS
    )
    assert checked.warnings == []
    # Every SMS step is counted, not only those past the warning: its fixed text (merge
    # fields without a default count as nothing).
    fixed = "Hi , quick question from ?"
    short = api.post(
        f"/api/v1/campaigns/{campaign.pk}/versions/validate/",
        {"plan": PLAN_ONE_SMS},
        format="json",
    )
    assert short.status_code == 200, short.json()
    assert short.json() == {
        "valid": True,
        "warnings": {},
        "sms_segments": {
            "/steps/text/body": {"encoding": "GSM-7", "characters": len(fixed), "segments": 1}
        },
    }
    response = api.post(
        f"/api/v1/campaigns/{campaign.pk}/versions/validate/", {"plan": long_plan}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["warnings"] == {
        "/steps/text/body": [
            "5 segments (UCS-2, 300 characters): texts over 3 segments cost as much as 5 "
            "messages and some carriers refuse them"
        ]
    }
    assert response.json()["sms_segments"] == {
        "/steps/text/body": {"encoding": "UCS-2", "characters": 300, "segments": 5}
    }
    lead = Lead.objects.create(
        tenant=tenant, email="ann@prospect.example.com", first_name="Ann", phone="+15551230100"
    )
    preview = api.get(f"/api/v1/campaigns/{campaign.pk}/preview/?lead_id={lead.pk}").json()
    (text,) = [step for step in preview["steps"] if step["type"] == "sms"]
    assert text["sms"]["to"] == "+15551230100"
    assert text["sms"]["body"].startswith("Hi Ann, quick question from ")
    body = text["sms"]["body"]
    assert {k: v for k, v in text["sms"].items() if k not in ("to", "body")} == {
        "encoding": "GSM-7",
        "characters": len(body),
        "segments": 1,
        "warning": None,
    }

    # The lead's own text decides: an emoji in a merge field switches it to UCS-2.
    Lead.objects.filter(pk=lead.pk).update(first_name="Ann 😀" + "x" * 60)
    preview = api.get(f"/api/v1/campaigns/{campaign.pk}/preview/?lead_id={lead.pk}").json()
    (text,) = [step for step in preview["steps"] if step["type"] == "sms"]
    body = text["sms"]["body"]
    assert (text["sms"]["encoding"], text["sms"]["characters"], text["sms"]["segments"]) == (
        "UCS-2",
        len(body.encode("utf-16-le")) // 2,
        2,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "clock",
    [
        datetime.datetime(2027, 3, 14, 6, 45, tzinfo=datetime.UTC),  # 01:45 EST
        datetime.datetime(2027, 3, 14, 7, 0, tzinfo=datetime.UTC),  # 02:00 EST is 03:00 EDT
        datetime.datetime(2027, 3, 14, 7, 30, tzinfo=datetime.UTC),  # "02:30" is 03:30 EDT
    ],
    ids=["before-the-jump", "at-the-jump", "after-the-jump"],
)
def test_a_text_due_in_the_night_new_york_springs_forward_waits_for_eight_edt(
    tenant, sms_settings, monkeypatch, clock
):
    """The send path's own clock at the DST change of 2027-03-14 in New York: nothing is
    texted, and the action waits for 08:00 EDT, 12:00 UTC (not 13:00, 08:00 EST)."""
    from types import SimpleNamespace

    from messaging.services import sending_sms

    emulator = sms_settings
    (enrollment,) = sms_campaign(tenant, numbers=phones(137, 1), timezone="America/New_York")
    actions_make_due()
    # The send path reads the time once per batch (``timezone.now()``): that is the clock
    # set here; the database's own clock only decides what is due.
    monkeypatch.setattr(sending_sms, "timezone", SimpleNamespace(now=lambda: clock))
    sweep_inline()

    assert emulator.sms_messages() == []
    assert not sms_messages([enrollment])
    (action,) = pending_actions(enrollment, kind="sms")
    assert action.last_error == "quiet hours for SMS (08:00-21:00 in the lead's time)"
    assert action.due_at == datetime.datetime(2027, 3, 14, 12, 0, tzinfo=datetime.UTC)
    local = action.due_at.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute, local.tzname()) == (8, 0, "EDT")


def test_quiet_hours_follow_the_leads_zone_across_the_dst_change(settings):
    """2027-03-14: New York springs forward. 08:00 is 13:00 UTC on the Saturday, 12:00 UTC on
    the Sunday; a text due at 21:30 on Saturday waits for Sunday 08:00 EDT."""
    from campaigns.services import timing
    from messaging.models import SenderIdentity

    settings.SEND_JITTER_SECONDS = 0
    identity = SenderIdentity(
        timezone="UTC",
        window_days=[0, 1, 2, 3, 4, 5, 6],
        window_start=datetime.time(0, 0),
        window_end=datetime.time(23, 59),
    )
    context = timing.LeadTiming(timezone="America/New_York", country="", identity=identity)
    utc = datetime.UTC
    saturday_night = datetime.datetime(2027, 3, 14, 2, 30, tzinfo=utc)  # Sat 21:30 EST
    assert not timing.sms_window_open(context=context, at=saturday_night)
    assert timing.sms_send_time_next(
        context=context, earliest=saturday_night, jitter_key="k"
    ) == datetime.datetime(2027, 3, 14, 12, 0, tzinfo=utc)
    saturday_morning = datetime.datetime(2027, 3, 13, 12, 30, tzinfo=utc)  # Sat 07:30 EST
    assert timing.sms_send_time_next(
        context=context, earliest=saturday_morning, jitter_key="k"
    ) == datetime.datetime(2027, 3, 13, 13, 0, tzinfo=utc)
    # The autumn change: 2027-11-07, 20:59 EST is inside, 21:00 EST is not.
    assert timing.sms_window_open(
        context=context, at=datetime.datetime(2027, 11, 8, 1, 59, tzinfo=utc)
    )
    assert not timing.sms_window_open(
        context=context, at=datetime.datetime(2027, 11, 8, 2, 0, tzinfo=utc)
    )
