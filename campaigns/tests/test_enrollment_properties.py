"""Property-based proof of the enrollment state machine (case 7 of the chaos suite).

Hypothesis drives three enrollments of one campaign through random sequences of what can
happen to them — time passing (sends, timeouts, resumes come due), provider events (open,
click, delivered, bounce, unsubscribe, machine opens) and their re-deliveries, a Celery hint
delivered twice or lost, out-of-office pauses, campaign pause and resume, and migration to a
new plan version with a random step map — through the real services against the real
database and the SendGrid emulator. After every step the invariants hold:

1. each step entry is left at most once, and none is skipped: transitions of an enrollment
   run from_seq 1..k with no hole, k = step_seq - 1 or step_seq;
2. step_seq never goes back; a finished enrollment never changes again;
3. a finished enrollment holds no scheduled action; a live one always holds one (nothing is
   stranded: every step of these plans has a timeout or a send pending);
4. exactly once at the provider: for each lead, the emulator received as many mails as the
   ledger holds accepted messages, one per step entry at most;
5. after a bounce or unsubscribe is stored, that lead never receives another mail.

``CHAOS_HYPOTHESIS_EXAMPLES`` sets how many sequences run (the chaos suite runs more);
``CHAOS_REPORT`` names a file to write the figures to.
"""

import datetime
import json
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from campaigns.models import Enrollment, EnrollmentTransition, ScheduledAction
from campaigns.services import campaigns as campaign_services
from campaigns.services import engine, scheduler
from campaigns.services.transitions import enrollment_pause
from campaigns.tests.engine_support import (
    actions_make_due,
    campaign_enrolled,
    events_store,
    inline_dispatch,
)
from messaging.models import Message
from messaging.tests.webhook_support import sg_event
from outreach.testing.factories import TenantFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("CHAOS_HYPOTHESIS_EXAMPLES", "15"))
FIGURES: Counter = Counter()
RULES: Counter = Counter()


def _email(subject: str, **extra) -> dict:
    return {
        "type": "email",
        "variants": [{"name": "main", "subject": subject, "text": "Hi.\n\n{{ unsubscribe_url }}"}],
        **extra,
    }


def plan_version(number: int) -> dict:
    """Every email step has a timeout, so a live enrollment always has an action pending."""
    nudge = "nudge" if number % 2 else "bump"
    return {
        "name": f"Properties v{number}",
        "start": "intro",
        "steps": {
            "intro": _email(
                "Hello",
                on={
                    "open": "follow_up",
                    "click": "follow_up",
                    "bounce": "bounced",
                    "no_open": {"after": "3d", "to": nudge},
                },
            ),
            "follow_up": _email(
                "Following up",
                thread_with="intro",
                on={"reply": "replied", "no_reply": {"after": "4d", "to": "quiet"}},
            ),
            nudge: _email(
                "Bumping",
                thread_with="intro",
                on={"open": "follow_up", "no_open": {"after": "2d", "to": "quiet"}},
            ),
            "quiet": {"type": "end", "outcome": "no_response"},
            "bounced": {"type": "end", "outcome": "bounced"},
            "replied": {"type": "end", "outcome": "replied"},
        },
    }


LIVE = (Enrollment.State.ACTIVE, Enrollment.State.PAUSED)
EVENTS = ("open", "click", "delivered", "bounce", "unsubscribe", "machine_open", "processed")


def _sweep(*, twice: bool = False, lost: bool = False) -> None:
    """The real sweep; its batches run here, once, twice (a re-delivered hint) or never (a
    hint lost with the broker: the lease expires and a later sweep hands the rows out again)."""
    batches: list = []
    scheduler.scheduled_actions_sweep(dispatch=lambda k, items: batches.append((k, items)))
    if lost:
        ScheduledAction.objects.filter(status="claimed").update(
            lease_expires_at=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        )
        return
    for kind, items in batches:
        inline_dispatch(kind, items)
        if twice:
            inline_dispatch(kind, items)


class EnrollmentMachine(RuleBasedStateMachine):
    def __init__(self, emulator):
        super().__init__()
        self.emulator = emulator
        emulator.clear_messages()
        self.tenant = TenantFactory()
        self.version_number = 1
        self.campaign, self.enrollments = campaign_enrolled(
            self.tenant,
            plan=plan_version(1),
            emails=[f"prop{i}-{self.tenant.pk}@prospect.example.com" for i in range(3)],
        )
        self.seen: dict[int, tuple[int, str]] = {}
        self.stopped_mail: dict[str, int] = {}  # lead -> mails received when it was stopped
        self.stored: list[tuple[int, dict]] = []
        FIGURES["sequences"] += 1

    def _enrollment(self, index: int) -> Enrollment:
        return Enrollment.objects.select_related("lead").get(pk=self.enrollments[index].pk)

    def _note(self, name: str) -> None:
        RULES[name] += 1
        FIGURES["steps"] += 1

    # --- what can happen ------------------------------------------------------------------

    @rule(kind=st.sampled_from(["send", "timeout", "resume", None]), twice=st.booleans())
    def time_passes(self, kind, twice):
        """Actions (of one kind, or all) come due and a sweep runs them."""
        actions_make_due(kind=kind, enrollment_ids=[e.pk for e in self.enrollments])
        _sweep(twice=twice)
        self._note(f"time passes ({kind or 'all'}{', hint twice' if twice else ''})")

    @rule()
    def hint_lost(self):
        actions_make_due(enrollment_ids=[e.pk for e in self.enrollments])
        _sweep(lost=True)
        _sweep()
        self._note("hint lost, lease expires")

    def _sent_anything(self) -> bool:
        return Message.objects.filter(
            enrollment_id__in=[e.pk for e in self.enrollments], status_rank__gte=10
        ).exists()

    @precondition(_sent_anything)
    @rule(index=st.integers(0, 2), kind=st.sampled_from(EVENTS))
    def provider_event(self, index, kind):
        message = (
            Message.objects.filter(enrollment_id=self.enrollments[index].pk, status_rank__gte=10)
            .order_by("-step_seq")
            .first()
        )
        if message is None:
            return
        fields = {}
        if kind == "machine_open":
            kind, fields = "open", {"sg_machine_open": True}
        if kind == "bounce":
            fields = {"type": "bounce", "status": "5.1.1"}
        if kind == "click":
            fields = {"url": "https://x.example.com", "useragent": "Mozilla/5.0"}
        event = sg_event(message, kind, at=message.sent_at.timestamp() + 120, **fields)
        events_store(self.tenant, [event])
        self.stored.append((index, event))
        if kind in ("bounce", "unsubscribe"):
            lead = message.to_email.lower()
            self.stopped_mail.setdefault(lead, self._received(lead))
        self._note(f"event {kind}{' (machine)' if fields.get('sg_machine_open') else ''}")

    @precondition(lambda self: bool(self.stored))
    @rule(data=st.data())
    def event_redelivered(self, data):
        _, event = data.draw(st.sampled_from(self.stored))
        events_store(self.tenant, [dict(event)])
        self._note("event re-delivered")

    @rule(index=st.integers(0, 2), days=st.integers(1, 5))
    def out_of_office(self, index, days):
        enrollment = engine.enrollment_locked(enrollment_id=self.enrollments[index].pk)
        until = enrollment.updated_at + datetime.timedelta(days=days)
        enrollment_pause(enrollment=enrollment, until=until, reason="out of office (property)")
        self._note("out of office")

    @rule(action=st.sampled_from(["pause", "resume"]))
    def campaign_control(self, action):
        try:
            campaign_services.campaign_status_set(
                tenant_id=self.tenant.pk, campaign_id=self.campaign.pk, action=action
            )
        except Exception as exc:  # pausing a paused campaign is refused: not a failure
            if "ApplicationError" not in type(exc).__name__:
                raise
            return
        self._note(f"campaign {action}")

    @rule(data=st.data())
    def migrate(self, data):
        self.version_number += 1
        plan = plan_version(self.version_number)
        added = campaign_services.campaign_version_add(
            tenant_id=self.tenant.pk, campaign_id=self.campaign.pk, plan=plan
        )
        campaign_services.campaign_publish(
            tenant_id=self.tenant.pk, campaign_id=self.campaign.pk, version=added.version.version
        )
        steps = sorted(plan["steps"])
        live_steps = set(
            Enrollment.objects.filter(
                pk__in=[e.pk for e in self.enrollments], state__in=LIVE
            ).values_list("current_step", flat=True)
        )
        step_map = {
            step: (
                step
                if step in plan["steps"] and data.draw(st.booleans())
                else data.draw(st.sampled_from(steps))
            )
            for step in live_steps
        }
        campaign_services.enrollments_migrate(
            tenant_id=self.tenant.pk,
            campaign_id=self.campaign.pk,
            to_version_id=added.version.pk,
            step_map=step_map,
            dry_run=False,
        )
        self._note("migrate")

    # --- what must always hold ---------------------------------------------------------------

    def _received(self, lead: str) -> int:
        return len(self.emulator.messages(to=lead))

    @invariant()
    def step_entries_left_once_and_none_skipped(self):
        for enrollment in Enrollment.objects.filter(pk__in=[e.pk for e in self.enrollments]):
            seqs = sorted(
                EnrollmentTransition.objects.filter(enrollment=enrollment).values_list(
                    "from_seq", flat=True
                )
            )
            assert seqs == list(range(1, len(seqs) + 1)), (enrollment, seqs)
            assert len(seqs) in (enrollment.step_seq - 1, enrollment.step_seq), (enrollment, seqs)
            before = self.seen.get(enrollment.pk)
            if before is not None:
                assert enrollment.step_seq >= before[0], "step_seq went back"
                if before[1] not in LIVE:
                    assert (enrollment.step_seq, enrollment.state) == before, "finished moved"
            self.seen[enrollment.pk] = (enrollment.step_seq, enrollment.state)
            FIGURES["checks"] += 2

    @invariant()
    def scheduled_work_matches_state(self):
        for enrollment in Enrollment.objects.filter(pk__in=[e.pk for e in self.enrollments]):
            held = ScheduledAction.objects.filter(enrollment=enrollment).count()
            if enrollment.state in LIVE:
                assert held >= 1, f"{enrollment} is live with nothing scheduled"
            else:
                assert held == 0, f"{enrollment} is finished with {held} actions"
            FIGURES["checks"] += 1

    @invariant()
    def exactly_once_at_the_provider(self):
        for enrollment in Enrollment.objects.filter(
            pk__in=[e.pk for e in self.enrollments]
        ).select_related("lead"):
            lead = enrollment.lead.email.lower()
            accepted = list(
                Message.objects.filter(enrollment=enrollment, status_rank__gte=10).values_list(
                    "step_seq", flat=True
                )
            )
            assert len(accepted) == len(set(accepted)), f"two sends for one step entry {accepted}"
            received = self._received(lead)
            assert received == len(accepted), f"{lead}: provider {received}, ledger {accepted}"
            if lead in self.stopped_mail:
                assert received == self.stopped_mail[lead], f"{lead} mailed after it stopped"
            FIGURES["duplicate_sends"] += len(accepted) - len(set(accepted))
            FIGURES["checks"] += 3


def test_random_sequences_keep_the_enrollment_invariants(tenant, sendgrid_emulator, settings_):
    def factory():
        return EnrollmentMachine(sendgrid_emulator)

    run_state_machine_as_test(
        factory,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
            database=None,
        ),
    )
    report = os.environ.get("CHAOS_REPORT")
    if report:
        with open(report, "w") as out:
            json.dump({**FIGURES, "rules": dict(RULES)}, out)
    assert FIGURES["sequences"] >= EXAMPLES  # the machine really ran
    assert RULES["migrate"] and RULES["time passes (all)"], RULES


@pytest.fixture
def settings_(settings, sendgrid_emulator):
    settings.SENDGRID_API_HOST = sendgrid_emulator.host
    settings.SEND_JITTER_SECONDS = 0
    return settings
