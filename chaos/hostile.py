"""Bad and hostile input, sent over real HTTP to a running web process (case 8 of the chaos
suite; ``outreach/tenancy/tests/test_hostile_input.py`` runs the same against pytest's live
server).

Two tenants: the attacker A (its own API key, its own data) and the victim B, whose rows
carry a marker string. Every probe says what a safe answer is; the tally counts

- *accepted*: a hostile request the system took (a 2xx where a refusal was due, or a new
  event / suppression / enrollment it caused);
- *leaked*: a response carrying B's marker, or one that tells B's ids from ids that do not
  exist (another tenant's id must look exactly like a missing one: same status);
- *server errors*: any 5xx, or no answer at all;
- *unchecked*: a probe that could not be made or judged (a route whose ids it cannot fill,
  stored webhooks never normalised, a genuine control refused): the run fails on it, since a
  route left out would pass silently.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core import signing
from django.urls import URLPattern, URLResolver, get_resolver

from analytics.views import share_token_make
from campaigns.models import Enrollment, EnrollmentTransition, Lead
from messaging.emulator.twilio import signature_compute
from messaging.emulator.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, Signer
from messaging.models import InboundMessage, MessageEventKey, WebhookReceipt
from outreach.tenancy.models import Tenant, TenantAPIKey
from outreach.testing.world import World as TenantWorld
from outreach.testing.world import world_build as tenant_world_build
from suppression.models import PhoneSuppression, Suppression
from suppression.unsubscribe import unsubscribe_token_make

GHOST_ID = 987_654_321


@dataclass
class HostileWorld:
    attacker: TenantWorld
    victim: TenantWorld
    attacker_key: str
    victim_key: str
    attacker_signer: Signer
    victim_signer: Signer
    marker: str


def hostile_world_build() -> HostileWorld:
    """Two tenants with one row of every model; B's rows carry ``marker``."""
    from outreach.testing.factories import TenantFactory

    marker = f"victimmarker{secrets.token_hex(4)}"
    attacker_signer, victim_signer = Signer.from_setting(""), Signer.from_setting("")
    attacker = tenant_world_build(
        tenant=TenantFactory(webhook_public_key=attacker_signer.public_key)
    )
    victim = tenant_world_build(tenant=TenantFactory(webhook_public_key=victim_signer.public_key))
    address = f"{marker}@prospect.example.com"
    # A number that texts in: a forged STOP must not revoke its consent.
    phone = f"+1555{secrets.randbelow(10**7):07d}"
    Lead.objects.filter(pk=victim.lead.pk).update(
        email=address, first_name=marker, phone=phone, sms_consent=Lead.SmsConsent.GRANTED
    )
    victim.message.__class__.objects.filter(pk=victim.message.pk).update(to_email=address)
    victim.campaign.__class__.objects.filter(pk=victim.campaign.pk).update(name=marker)
    victim.identity.__class__.objects.filter(pk=victim.identity.pk).update(
        from_email=f"{marker}@sender.example.com", signature=marker
    )
    Suppression.objects.filter(pk=victim.suppression.pk).update(email=f"s-{address}")
    InboundMessage.objects.filter(pk=victim.inbound.pk).update(subject=marker)
    for world in (attacker, victim):
        world.lead.refresh_from_db()
        world.tenant.refresh_from_db()
    _, attacker_key = TenantAPIKey.objects.create_key(name="attacker", tenant=attacker.tenant)
    _, victim_key = TenantAPIKey.objects.create_key(name="victim", tenant=victim.tenant)
    return HostileWorld(
        attacker, victim, attacker_key, victim_key, attacker_signer, victim_signer, marker
    )


@dataclass
class Answer:
    status: int | None  # None: no answer (connection reset, timeout)
    body: bytes


@dataclass
class Tally:
    requests: int = 0
    accepted: int = 0
    leaked: int = 0
    server_errors: int = 0
    effects: int = 0
    unchecked: int = 0
    by_kind: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        groups: Counter = Counter()
        for kind, n in self.by_kind.items():
            groups[re.split(r"[:-]", kind, maxsplit=1)[0]] += n
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(groups.items()))
        codes = ", ".join(
            f"{'closed mid-upload' if code == 0 else code}: {n}"
            for code, n in sorted(self.statuses.items(), key=str)
        )
        return (
            f"{self.requests} requests ({kinds}; {len(self.by_kind)} kinds); answers {codes}; accepted {self.accepted},"
            f" leaked {self.leaked}, 5xx {self.server_errors}, side effects {self.effects},"
            f" unchecked {self.unchecked}"
        )

    def effect(self, failure: str) -> None:
        self.effects += 1
        self.failures.append(failure)

    def not_checked(self, failure: str) -> None:
        self.unchecked += 1
        self.failures.append(failure)


class Prober:
    def __init__(self, base_url: str, world: HostileWorld, tally: Tally):
        self.url = urlsplit(base_url)
        self.world = world
        self.tally = tally

    def send(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        safe: tuple[int, ...] = (400, 403, 404, 405, 413, 414, 431),
        check_marker: bool = True,
        control: bool = False,
    ) -> Answer:
        """One probe; ``safe`` are the answers that are right for it. A ``control`` is a
        genuine request the probes around it are measured against: refused, they prove
        nothing, and the run is unchecked rather than passed."""
        headers = dict(headers or {})
        if key:
            headers["Authorization"] = f"Api-Key {key}"
        connection = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)
        try:
            # A server may answer a body it refuses (413) before reading it, then close:
            # the upload fails, and the answer is still there to read.
            with contextlib.suppress(OSError):
                connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = Answer(response.status, response.read())
        except (OSError, http.client.HTTPException):
            answer = Answer(None, b"")
        finally:
            connection.close()
        if answer.status is None and body is not None and len(body) > (1 << 20):
            # Closed mid-upload without an answer we could read: refused, not a failure.
            answer = Answer(0, b"")
        tally = self.tally
        tally.requests += 1
        tally.by_kind[kind] += 1
        tally.statuses[answer.status] += 1
        label = f"{kind}: {method} {path[:90]} -> {answer.status}"
        if answer.status == 0:
            pass  # the connection closed on an oversized upload: a refusal
        elif answer.status is None or answer.status >= 500:
            tally.server_errors += 1
            tally.failures.append(label)
        elif answer.status not in safe and control:
            tally.not_checked(label + " (a genuine control, refused)")
        elif answer.status not in safe:
            tally.accepted += 1
            tally.failures.append(label)
        if check_marker and self.world.marker.encode() in answer.body.lower():
            tally.leaked += 1
            tally.failures.append(label + " (leaked the victim's data)")
        return answer

    def leak_if_different(self, label: str, victims: Answer, ghosts: Answer) -> None:
        """Another tenant's id must answer exactly as an id that does not exist."""
        if victims.status != ghosts.status:
            self.tally.leaked += 1
            self.tally.failures.append(
                f"{label}: victim's id -> {victims.status}, missing id -> {ghosts.status}"
            )


# --- the API with another tenant's ids --------------------------------------------------------


def _routes(prefix: str = "api/v1/") -> list[str]:
    """Every route under ``prefix`` with a path parameter, as a template (``<pk>``...)."""
    found: list[str] = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            text = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, text)
            elif isinstance(pattern, URLPattern):
                found.append(text)

    walk(get_resolver().url_patterns, "")
    routes = []
    for text in found:
        if not text.startswith(prefix):
            continue
        path = text.replace("^", "").replace("$", "")
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", path)
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", path)
        if "<" in path:
            routes.append("/" + path)
    return sorted(set(routes))


_ID_OF = {
    "leads": lambda w: w.lead.pk,
    "campaigns": lambda w: w.campaign.pk,
    "sender-identities": lambda w: w.identity.pk,
    "suppressions": lambda w: w.suppression.pk,
    "inbound": lambda w: w.inbound.pk,
    "audit-log": lambda w: w.audit.pk,
}


def _fill(route: str, world: TenantWorld | None) -> str | None:
    """The route with the ids of ``world`` (None: ids that exist nowhere)."""
    parts = route.strip("/").split("/")
    resource = parts[3] if parts[2] == "analytics" else parts[2]
    pick = _ID_OF.get(resource)
    if pick is None:
        return None
    path = route.replace("<pk>", str(pick(world) if world else GHOST_ID))
    path = path.replace("<version>", str(world.version.version if world else 7))
    return None if "<" in path else path


_BODIES = {
    "GET": None,
    "DELETE": None,
    "POST": b'{"reason": "probe", "lead_ids": [1], "plan": {}, "step_map": {}}',
    "PATCH": b'{"name": "probe", "first_name": "probe"}',
    "PUT": b'{"name": "probe"}',
}


def _api_cross_tenant(prober: Prober, world: HostileWorld) -> None:
    for route in _routes():
        victims_path, ghost_path = _fill(route, world.victim), _fill(route, None)
        if victims_path is None or ghost_path is None:
            prober.tally.not_checked(f"route not probed (unknown id kind): {route}")
            continue
        for method, body in _BODIES.items():
            headers = {"Content-Type": "application/json"} if body else {}
            victims = prober.send(
                "api-cross-tenant", method, victims_path, body=body, headers=headers,
                key=world.attacker_key,
            )  # fmt: skip
            ghosts = prober.send(
                "api-cross-tenant", method, ghost_path, body=body, headers=headers,
                key=world.attacker_key,
            )  # fmt: skip
            prober.leak_if_different(f"{method} {route}", victims, ghosts)
    a, b = world.attacker, world.victim
    # Writes that name another tenant's rows inside a body of the attacker's own resources.
    json_headers = {"Content-Type": "application/json"}
    # Enrolling is a bulk call: each row is enrolled or skipped with a reason, so another
    # tenant's lead must come back exactly as a lead that does not exist, and stay out.
    enroll = f"/api/v1/campaigns/{a.campaign.pk}/enroll/"
    answers = [
        prober.send(
            "api-foreign-ids-in-body",
            "POST",
            enroll,
            body=json.dumps({"lead_ids": [lead_id]}).encode(),
            headers=json_headers,
            key=world.attacker_key,
            safe=(200, 400, 404),
        )
        for lead_id in (b.lead.pk, GHOST_ID)
    ]
    prober.leak_if_different("POST enroll", *answers)
    if answers[0].body.replace(str(b.lead.pk).encode(), b"ID") != answers[1].body.replace(
        str(GHOST_ID).encode(), b"ID"
    ):
        prober.tally.leaked += 1
        prober.tally.failures.append("enroll: another tenant's lead answered unlike a missing one")
    if Enrollment.objects.filter(lead_id=b.lead.pk, campaign_id=a.campaign.pk).exists():
        prober.tally.effect("enroll: another tenant's lead was enrolled")
    probes = [
        ("/api/v1/campaigns/", {"name": "x", "sender_identity_id": b.identity.pk}),
        ("/api/v1/campaigns/", {"name": "x", "sender_identity": b.identity.pk}),
        (f"/api/v1/campaigns/{a.campaign.pk}/migrate/",
         {"to_version": b.version.pk, "step_map": {"intro": "intro"}, "dry_run": False}),
    ]  # fmt: skip
    for path, payload in probes:
        prober.send(
            "api-foreign-ids-in-body", "POST", path, body=json.dumps(payload).encode(),
            headers=json_headers, key=world.attacker_key, safe=(400, 404, 409, 422),
        )  # fmt: skip
    # Lists and the attacker's own views never show the victim's rows.
    for path in (
        "/api/v1/leads/", "/api/v1/campaigns/", "/api/v1/sender-identities/",
        "/api/v1/suppressions/", "/api/v1/inbound/", "/api/v1/audit-log/",
        "/api/v1/tenant/", "/api/v1/tenant/health/", "/api/v1/analytics/tenant/",
        f"/api/v1/leads/?email={b.lead.email}", f"/api/v1/inbound/?message={b.message.pk}",
    ):  # fmt: skip
        prober.send("api-lists", "GET", path, key=world.attacker_key, safe=(200, 400, 403))
    # No key, a wrong key, a revoked-looking key: nothing but 401/403.
    for key in (None, "not-a-key", world.victim_key[:-2] + "xx"):
        prober.send(
            "api-authentication", "GET", f"/api/v1/leads/{b.lead.pk}/", key=key, safe=(401, 403)
        )
    # Bodies too large or too deep for any parser.
    huge = b'{"email": "' + b"a" * (20 << 20) + b'"}'
    deep = b"[" * 100_000 + b"]" * 100_000
    for name, payload in (("huge", huge), ("deep", deep), ("not json", b"\xff\xfe{")):
        prober.send(
            f"api-body-{name}", "POST", "/api/v1/leads/", body=payload,
            headers=json_headers, key=world.attacker_key,
        )  # fmt: skip
    # The dashboard of another tenant without its share token.
    for path in (f"/dashboard/{b.tenant.slug}/data.json", f"/dashboard/{b.tenant.slug}/"):
        prober.send("dashboard", "GET", path, safe=(302, 403, 404))
        prober.send(
            "dashboard", "GET", f"{path}?share={signing.dumps({'t': b.tenant.pk})}",
            safe=(302, 403, 404),
        )  # fmt: skip


# --- the dashboard with another tenant's ids ---------------------------------------------------


def _dashboard_cross_tenant(prober: Prober, world: HostileWorld) -> None:
    """Every dashboard route with a parameter, opened with the attacker's own genuine share
    link: its own rows answer (the control), the victim's campaign answers exactly like one
    that does not exist, and the victim's pages send it to sign in."""
    a, b = world.attacker, world.victim
    share = f"?share={share_token_make(tenant=a.tenant)}"
    for route in _routes("dashboard/"):
        params = set(re.findall(r"<(\w+)>", route))
        if params - {"slug", "campaign_id"} or "slug" not in params:
            prober.tally.not_checked(f"dashboard route not probed (unknown parameter): {route}")
            continue

        def fill(route: str, slug: str, campaign_id: int) -> str:
            return route.replace("<slug>", slug).replace("<campaign_id>", str(campaign_id))

        own = fill(route, a.tenant.slug, a.campaign.pk)
        prober.send("dashboard-cross-tenant", "GET", own + share, safe=(200,), control=True)
        # The victim's slug with the attacker's link: not theirs to see.
        prober.send(
            "dashboard-cross-tenant", "GET", fill(route, b.tenant.slug, b.campaign.pk) + share,
            safe=(302, 404),
        )  # fmt: skip
        if "campaign_id" in params:
            victims = prober.send(
                "dashboard-cross-tenant", "GET", fill(route, a.tenant.slug, b.campaign.pk) + share,
                safe=(404,),
            )  # fmt: skip
            ghosts = prober.send(
                "dashboard-cross-tenant", "GET", fill(route, a.tenant.slug, GHOST_ID) + share,
                safe=(404,),
            )  # fmt: skip
            prober.leak_if_different(f"GET {route}", victims, ghosts)


# --- the Event Webhook ------------------------------------------------------------------------


def _event(world: TenantWorld, **extra: Any) -> dict:
    return {
        "event": "bounce",
        "type": "bounce",
        "email": world.lead.email,
        "timestamp": int(time.time()),
        "sg_event_id": f"hostile-{uuid.uuid4().hex}",
        "sg_message_id": f"{world.message.provider_message_id}.filter-1.0",
        "outreach_message_id": str(world.message.public_id),
        **extra,
    }


def _signed(signer: Signer, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: signer.sign(stamp, body),
    }


def _webhooks(prober: Prober, world: HostileWorld) -> None:
    b = world.victim
    url = f"/webhooks/sendgrid/events/{b.tenant.public_id}/"
    body = json.dumps([_event(b)]).encode()
    stranger = Signer.from_setting("")
    now = int(time.time())
    refused = (400, 403, 404, 413)
    cases: list[tuple[str, str, bytes, dict]] = [
        ("forged signature", url, body, _signed(stranger, body)),
        ("the attacker's own key", url, body, _signed(world.attacker_signer, body)),
        ("no signature", url, body, {"Content-Type": "application/json"}),
        ("garbage signature", url, body,
         {**_signed(b_signer := world.victim_signer, body), SIGNATURE_HEADER: "AAAA"}),
        ("stale timestamp (1 h)", url, body, _signed(b_signer, body, now - 3600)),
        ("future timestamp (1 h)", url, body, _signed(b_signer, body, now + 3600)),
        ("mutated body", url, body.replace(b"bounce", b"bounc3", 1), _signed(b_signer, body)),
        ("signature of another timestamp", url, body,
         {**_signed(b_signer, body, now - 5), TIMESTAMP_HEADER: str(now)}),
        ("unknown tenant", f"/webhooks/sendgrid/events/{uuid.uuid4()}/", body,
         _signed(b_signer, body)),
        ("another tenant's URL", f"/webhooks/sendgrid/events/{world.attacker.tenant.public_id}/",
         body, _signed(b_signer, body)),
    ]  # fmt: skip
    tenants = (world.attacker.tenant, b.tenant)
    _normalised(prober, *tenants)  # what the worlds left; from here on, only the probes count
    before = _stored(*tenants)
    for name, path, payload, headers in cases:
        prober.send(f"webhook: {name}", "POST", path, body=payload, headers=headers, safe=refused)
    # Bodies the parser must refuse even when properly signed (signed: the key leaked).
    bad_bodies = {
        "huge (6 MB)": b'[{"event":"open","x":"' + b"a" * (6 << 20) + b'"}]',
        "deeply nested": b"[" * 100_000 + b"]" * 100_000,
        "nested objects": b'[{"a":' * 50_000 + b"1" + b"}]" * 50_000,
        "NaN": b'[{"event":"open","timestamp":NaN}]',
        "not an array": b'{"event":"open"}',
        "not JSON": b"\x00\x01\x02",
        "invalid UTF-8": b'[{"event":"\xff\xfe"}]',
    }
    for name, payload in bad_bodies.items():
        prober.send(
            f"webhook: {name}", "POST", url, body=payload, headers=_signed(b_signer, payload),
            safe=refused,
        )  # fmt: skip
    # Had one been taken, its events would be stored only once it is normalised.
    _normalised(prober, *tenants)
    if _stored(*tenants) != before:
        prober.tally.effect(f"a refused webhook stored something: {before} -> {_stored(*tenants)}")
    # A replay of a genuine delivery is SendGrid re-delivering: accepted, and changes nothing.
    genuine = json.dumps([_event(b, event="delivered", type=None)]).encode()
    headers = _signed(b_signer, genuine)
    _replayed(prober, "webhook", url, genuine, headers, b.tenant)


def _stored(*tenants: Tenant) -> tuple[int, int]:
    """(webhook receipts, event keys) of the tenants: a refused request adds to neither."""
    return (
        WebhookReceipt.objects.filter(tenant__in=tenants).count(),
        MessageEventKey.objects.filter(tenant__in=tenants).count(),
    )


def _replayed(
    prober: Prober, name: str, path: str, body: bytes, headers: dict[str, str], tenant: Tenant
) -> None:
    """A genuine callback stores exactly one event (the control: without it the replays
    prove nothing); posted three times more, it is accepted each time (providers re-deliver)
    and stores nothing more."""
    keys = MessageEventKey.objects.filter(tenant=tenant)
    first = keys.count()
    prober.send(f"{name}: genuine (control)", "POST", path, body=body, headers=headers,
                safe=(200, 204), control=True)  # fmt: skip
    _normalised(prober, tenant)
    once = keys.count()
    if once != first + 1:
        prober.tally.not_checked(f"{name}: the genuine control stored {once - first} events, not 1")
    for _ in range(3):
        prober.send(f"{name}: replayed", "POST", path, body=body, headers=headers,
                    safe=(200, 204))  # fmt: skip
    _normalised(prober, tenant)
    if keys.count() != once:
        prober.tally.effect(f"{name}: a replay stored {keys.count() - once} events more")


def _normalised(prober: Prober, *tenants: Tenant, timeout: float = 60.0) -> None:
    """Normalise every stored webhook of the tenants, whatever its kind (a worker does it in
    a deployment; this process too, in case none runs, which is equally safe: a receipt is
    claimed once). Not done in ``timeout``: the checks that follow would prove nothing."""
    from messaging.services.inbound import inbound_receipt_process
    from messaging.services.receipts import webhook_receipt_normalise
    from messaging.services.sms_events import sms_receipt_process

    deadline = time.monotonic() + timeout
    crashed: set[int] = set()
    while True:
        pending = list(
            WebhookReceipt.objects.filter(tenant__in=tenants, processed_at__isnull=True)
            .exclude(pk__in=crashed)
            .values_list("pk", "kind", "tenant_id")
        )
        if not pending:
            return
        if time.monotonic() > deadline:
            prober.tally.not_checked(f"{len(pending)} stored webhooks never normalised")
            return
        for receipt_id, kind, tenant_id in pending:
            try:
                if kind == WebhookReceipt.Kind.EVENTS:
                    webhook_receipt_normalise(receipt_id=receipt_id)
                elif kind == WebhookReceipt.Kind.INBOUND:
                    inbound_receipt_process(tenant_id=tenant_id, receipt_id=receipt_id)
                else:
                    sms_receipt_process(receipt_id=receipt_id)
            except Exception as exc:  # a worker would crash on it too: a server error
                crashed.add(receipt_id)
                prober.tally.server_errors += 1
                prober.tally.failures.append(
                    f"{kind} receipt {receipt_id} crashed its processing: {type(exc).__name__}"
                )
        time.sleep(0.2)


# --- Twilio's callbacks -------------------------------------------------------------------------


def _twilio(prober: Prober, world: HostileWorld) -> None:
    """Status callbacks and inbound texts: Twilio signs the URL (query included) and the
    form parameters with our account's auth token, and has no timestamp, so a signature
    made for another request (another tenant's URL, other parameters) is the stale one."""
    a, b = world.attacker, world.victim
    token = settings.TWILIO_AUTH_TOKEN
    base = f"{prober.url.scheme}://{prober.url.netloc}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    refused = (400, 403, 404, 413)

    def path_of(kind: str, tenant: Tenant, query: str = "") -> str:
        return f"/webhooks/twilio/{kind}/{tenant.public_id}/{query}"

    def signed(path: str, params: dict[str, str], key: str = token) -> dict[str, str]:
        signature = signature_compute(auth_token=key, url=base + path, params=params)
        return {**form, "X-Twilio-Signature": signature}

    def sid() -> str:
        return "SM" + uuid.uuid4().hex

    ours = "+15550000001"
    # A STOP from the victim's lead (it would revoke its consent) and a report that the
    # victim's message was not delivered (it would mark it so).
    stop = {"MessageSid": sid(), "From": b.lead.phone, "To": ours, "Body": "STOP"}
    stop_earlier = {**stop, "MessageSid": sid(), "Body": "Thanks"}
    report = {"MessageSid": sid(), "MessageStatus": "undelivered", "To": b.lead.phone}
    report_earlier = {**report, "MessageStatus": "delivered"}
    query = f"?message={b.message.public_id}"
    nobody = Tenant(public_id=uuid.uuid4())  # never saved: a URL of no tenant
    cases: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
    for kind, params, earlier, url in (
        ("inbound", stop, stop_earlier, path_of("inbound", b.tenant)),
        ("status", report, report_earlier, path_of("status", b.tenant, query)),
    ):
        cases += [
            (f"{kind} forged (another auth token)", url, params, signed(url, params, "x" * 32)),
            (f"{kind} no signature", url, params, form),
            (f"{kind} garbage signature", url, params, {**form, "X-Twilio-Signature": "AAAA"}),
            (f"{kind} stale signature (an earlier callback's)", url, params,
             signed(url, {**earlier, "MessageSid": params["MessageSid"]})),
            (f"{kind} mutated body", url, params, signed(url, earlier)),
            (f"{kind} another tenant's URL", url, params,
             signed(path_of(kind, a.tenant, query if kind == "status" else ""), params)),
            (f"{kind} unknown tenant", path_of(kind, nobody), params,
             signed(path_of(kind, nobody), params)),
        ]  # fmt: skip
    cases.append(
        ("status mutated URL (another message)", path_of("status", b.tenant, query), report,
         signed(path_of("status", b.tenant, f"?message={a.message.public_id}"), report))
    )  # fmt: skip
    huge = {**stop, "Body": "A" * (70 << 10)}
    cases.append(("inbound huge (70 KB)", path_of("inbound", b.tenant), huge,
                  signed(path_of("inbound", b.tenant), huge)))  # fmt: skip
    tenants = (a.tenant, b.tenant)
    _normalised(prober, *tenants)
    before = _stored(*tenants)
    opted_out = PhoneSuppression.objects.filter(tenant=b.tenant).count()
    status = type(b.message).objects.filter(pk=b.message.pk).values_list("status", flat=True)
    status_before = status.get()
    for name, path, params, headers in cases:
        body = urlencode(params).encode()
        prober.send(f"twilio: {name}", "POST", path, body=body, headers=headers, safe=refused)
    _normalised(prober, *tenants)
    if _stored(*tenants) != before:
        prober.tally.effect(f"a refused Twilio callback stored something: {before}")
    if PhoneSuppression.objects.filter(tenant=b.tenant).count() != opted_out:
        prober.tally.effect("a forged STOP suppressed the victim's number")
    if Lead.objects.filter(pk=b.lead.pk, sms_consent=Lead.SmsConsent.GRANTED).count() != 1:
        prober.tally.effect("a forged STOP revoked the victim's consent")
    if status.get() != status_before:
        prober.tally.effect("a forged status callback changed the victim's message")
    # Twilio re-posts a callback whose answer it did not get: accepted, stored once.
    text = {"MessageSid": sid(), "From": "+15550000099", "To": ours, "Body": "Sure, call me"}
    url = path_of("inbound", b.tenant)
    _replayed(prober, "twilio", url, urlencode(text).encode(), signed(url, text), b.tenant)


# --- Inbound Parse ----------------------------------------------------------------------------


def _multipart(fields: dict[str, str | bytes], boundary: str = "hostileboundary") -> bytes:
    out = b""
    for name, value in fields.items():
        data = value.encode() if isinstance(value, str) else value
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def _inbound(prober: Prober, world: HostileWorld) -> None:
    from messaging.services.inbound import inbound_receipt_process

    b, a = world.victim, world.attacker
    base = f"/webhooks/sendgrid/inbound/{b.tenant.public_id}/"
    form = {"Content-Type": "multipart/form-data; boundary=hostileboundary"}
    reply = _multipart(
        {
            "email": f"From: {b.lead.email}\r\nTo: x@y\r\nSubject: Re\r\n\r\nSTOP",
            "from": b.lead.email,
            "to": "x@y",
        }
    )
    before = _stored(a.tenant, b.tenant)
    for name, path, headers in (
        ("wrong secret", f"{base}{'x' * 32}/", form),
        ("the attacker's secret", f"{base}{a.tenant.inbound_secret}/", form),
        ("no secret", base, form),
        ("basic auth with the attacker's secret", base,
         {**form, "Authorization": "Basic "
          + base64.b64encode(f"u:{a.tenant.inbound_secret}".encode()).decode()}),
    ):  # fmt: skip
        prober.send(f"inbound: {name}", "POST", path, body=reply, headers=headers, safe=(404,))
    own = f"{base}{b.tenant.inbound_secret}/"
    for name, payload, headers in (
        ("not multipart", b"email=hello", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("no boundary", reply, {"Content-Type": "multipart/form-data"}),
        ("huge (31 MB)", b"x" * (31 << 20), form),
        ("empty", b"", form),
    ):
        prober.send(f"inbound: {name}", "POST", own, body=payload, headers=headers)
    if _stored(a.tenant, b.tenant) != before:
        prober.tally.effect("a refused Inbound Parse post was stored")
    # Malformed mail with the right secret is stored (Inbound Parse must get its 2xx) and then
    # processed without effect on any journey.
    transitions_before = EnrollmentTransition.objects.filter(tenant=b.tenant).count()
    receipts_before = set(
        WebhookReceipt.objects.filter(tenant=b.tenant, kind="inbound").values_list("pk", flat=True)
    )
    malformed = {
        "truncated multipart": reply[: len(reply) // 2],
        "MIME garbage": _multipart({"email": b"\xff\xfe\x00garbage\r\n\r\n\x00"}),
        "no email field": _multipart({"from": "x@y"}),
        "headers only": _multipart({"email": "Subject: " + "A" * 100_000}),
        "nested multiparts": _multipart(
            {"email": "Content-Type: multipart/mixed; boundary=a\r\n\r\n" + "--a\r\n" * 5_000}
        ),
    }
    for name, payload in malformed.items():
        prober.send(f"inbound: {name}", "POST", own, body=payload, headers=form,
                    safe=(200, 400, 413))  # fmt: skip
    for receipt in WebhookReceipt.objects.filter(tenant=b.tenant, kind="inbound").exclude(
        pk__in=receipts_before
    ):
        try:
            inbound_receipt_process(tenant_id=b.tenant.pk, receipt_id=receipt.pk)
        except Exception as exc:  # the worker would crash on it: count as a server error
            prober.tally.server_errors += 1
            prober.tally.failures.append(f"inbound processing crashed: {type(exc).__name__}")
    if EnrollmentTransition.objects.filter(tenant=b.tenant).count() != transitions_before:
        prober.tally.effect("malformed inbound mail moved a journey")


# --- Unsubscribe tokens -----------------------------------------------------------------------


def _unsubscribe(prober: Prober, world: HostileWorld, long_token: int) -> None:
    a, b = world.attacker, world.victim
    one_click = {"Content-Type": "application/x-www-form-urlencoded"}
    form = b"List-Unsubscribe=One-Click"
    genuine = unsubscribe_token_make(
        tenant_id=a.tenant.pk, email=a.lead.email, message_public_id=a.message.public_id
    )
    salt = "outreach.suppression.unsubscribe.one-click.v1"
    payload, _, signature = genuine.rpartition(":")
    forged = {
        "random": secrets.token_urlsafe(40),
        "another deployment's key": signing.dumps(
            [b.tenant.pk, "", b.lead.email], salt=salt, key="not-our-secret-key" * 3
        ),
        "unsigned payload": base64.urlsafe_b64encode(
            json.dumps([b.tenant.pk, "", b.lead.email]).encode()
        ).decode(),
        "tampered signature": f"{payload}:{signature[:-3]}abc",
        "another salt": signing.dumps([b.tenant.pk, "", b.lead.email], salt="other"),
        "truncated": genuine[: len(genuine) // 2],
        "huge": "a" * long_token,
        "non-ASCII": "ü" * 50,
    }
    before = Suppression.objects.filter(tenant=b.tenant).count()
    for name, token in forged.items():
        path = f"/u/{token}/"
        if not path.isascii():
            path = "/u/" + token.encode().hex() + "/"
        prober.send(f"unsubscribe: {name}", "POST", path, body=form, headers=one_click,
                    safe=(400, 404, 414))  # fmt: skip
    # A genuine token of A, for A's own lead: it works (control), and only inside A.
    prober.send("unsubscribe: genuine (control)", "POST", f"/u/{genuine}/", body=form,
                headers=one_click, safe=(200,), control=True)  # fmt: skip
    if Suppression.objects.filter(tenant=b.tenant).count() != before:
        prober.tally.effect("an unsubscribe token changed another tenant")
    if Enrollment.objects.filter(tenant=b.tenant).exclude(state="active").exists():
        prober.tally.effect("the victim's enrollment was stopped")


def hostile_run(*, base_url: str, world: HostileWorld, long_token: int = 10_000) -> Tally:
    """``long_token``: the length of the oversized unsubscribe token (Django's test server
    answers a path segment longer than the file system allows with a 500 of its own, from
    its static-file handler; gunicorn serves the product only)."""
    tally = Tally()
    prober = Prober(base_url, world, tally)
    _api_cross_tenant(prober, world)
    _dashboard_cross_tenant(prober, world)
    _webhooks(prober, world)
    _twilio(prober, world)
    _inbound(prober, world)
    _unsubscribe(prober, world, long_token)
    return tally
