"""Reading campaigns, their plan versions and enrollments. Scoped by ``tenant_id`` first."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from campaigns import plans
from campaigns.models import Campaign, CampaignPlanVersion, Enrollment, Lead
from campaigns.services import engine
from outreach.common.errors import ApplicationError, NotFound

# Previews are never sent, so they carry a link that unsubscribes no one.
PREVIEW_UNSUBSCRIBE_URL = f"{settings.PUBLIC_BASE_URL}/unsubscribe/preview"


def campaign_get(*, tenant_id: int, campaign_id: int) -> Campaign:
    """The tenant's campaign, or ``NotFound`` (another tenant's id looks like a missing one)."""
    campaign = (
        Campaign.objects.for_tenant(tenant_id)
        .select_related("current_version", "sender_identity")
        .filter(pk=campaign_id)
        .first()
    )
    if campaign is None:
        raise NotFound("Campaign not found.")
    return campaign


def campaign_list(*, tenant_id: int, status: str | None = None) -> QuerySet[Campaign]:
    queryset = Campaign.objects.for_tenant(tenant_id).select_related("current_version")
    if status:
        queryset = queryset.filter(status=status)
    return queryset


def campaign_version_list(*, tenant_id: int, campaign_id: int) -> QuerySet[CampaignPlanVersion]:
    campaign_get(tenant_id=tenant_id, campaign_id=campaign_id)
    return CampaignPlanVersion.objects.for_tenant(tenant_id).filter(campaign_id=campaign_id)


def campaign_version_get(*, tenant_id: int, campaign_id: int, version: int) -> CampaignPlanVersion:
    found = (
        CampaignPlanVersion.objects.for_tenant(tenant_id)
        .filter(campaign_id=campaign_id, version=version)
        .first()
    )
    if found is None:
        raise NotFound(f"Campaign has no version {version}.")
    return found


def enrollment_list(
    *, tenant_id: int, campaign_id: int, state: str | None = None
) -> QuerySet[Enrollment]:
    campaign_get(tenant_id=tenant_id, campaign_id=campaign_id)
    queryset = (
        Enrollment.objects.for_tenant(tenant_id)
        .filter(campaign_id=campaign_id)
        .select_related("lead", "plan_version")
    )
    if state:
        queryset = queryset.filter(state=state)
    return queryset


def campaign_version_in_body(
    *, tenant_id: int, campaign_id: int, version: int, field: str
) -> CampaignPlanVersion:
    """A version number the caller sent in a body or query: unknown is a 400 on ``field``
    (the campaign itself was found; it is the number that is wrong)."""
    found = (
        CampaignPlanVersion.objects.for_tenant(tenant_id)
        .filter(campaign_id=campaign_id, version=version)
        .first()
    )
    if found is None:
        raise ApplicationError(
            f"the campaign has no version {version}",
            code="invalid",
            extra={field: [f"This campaign has no version {version}."]},
        )
    return found


@dataclass(frozen=True)
class PreviewVariant:
    name: str
    weight: int | None
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class PreviewSms:
    to: str
    body: str
    encoding: str
    characters: int
    segments: int
    warning: str | None


@dataclass(frozen=True)
class PreviewStep:
    step: str
    thread_with: str | None
    variants: list[PreviewVariant]
    type: str = "email"
    sms: PreviewSms | None = None


@dataclass(frozen=True)
class Preview:
    campaign_id: int
    version: int
    lead_id: int
    steps: list[PreviewStep]


def lead_merge_fields(*, lead: Lead) -> dict:
    """A lead as the renderer takes it (templates say ``lead.first_name``, ``lead.custom.<key>``)."""
    return {
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "email": lead.email,
        "company": lead.company,
        "title": lead.title,
        "custom_fields": lead.custom_fields or {},
    }


def plan_step_order(*, plan: dict) -> list[str]:
    """Step names in reading order: breadth-first from ``start`` along ``next`` and ``on``
    targets, then any step not reached that way. (Stored plans are ``jsonb``, which does not
    keep the author's key order.)"""
    steps = engine.plan_steps(plan)
    order: list[str] = []
    queue = [plan.get("start")]
    while queue:
        name = queue.pop(0)
        if not isinstance(name, str) or name not in steps or name in order:
            continue
        order.append(name)
        step = steps[name]
        queue.append(step.get("next"))
        queue.extend(edge.target for edge in engine.step_edges(step))
    order.extend(sorted(name for name in steps if name not in order))
    return order


def campaign_preview(
    *, tenant_id: int, campaign_id: int, lead_id: int, version: int | None = None
) -> Preview:
    """Every email step of a plan version, each variant, rendered for one lead; every SMS
    step's text with its encoding and segment count.

    Without ``version`` the published one is shown, or the latest if none is published yet.
    A threaded follow-up without its own subject shows an empty subject: the real one is
    "Re: " plus whatever its thread actually sent.
    """
    campaign = campaign_get(tenant_id=tenant_id, campaign_id=campaign_id)
    lead = Lead.objects.for_tenant(tenant_id).filter(pk=lead_id).first()
    if lead is None:
        raise ApplicationError(
            "no such lead", code="invalid", extra={"lead_id": ["No lead with this id."]}
        )
    if version is not None:
        plan_version = campaign_version_in_body(
            tenant_id=tenant_id, campaign_id=campaign.pk, version=version, field="version"
        )
    else:
        plan_version = campaign.current_version or (
            CampaignPlanVersion.objects.filter(campaign_id=campaign.pk).order_by("-version").first()
        )
        if plan_version is None:
            raise ApplicationError("the campaign has no plan version yet", code="no_version")
    identity = campaign.sender_identity
    sender = {
        "from_name": identity.from_name,
        "from_email": identity.from_email,
        "signature": identity.signature,
    }
    lead_fields = lead_merge_fields(lead=lead)
    plan = plan_version.plan
    steps: list[PreviewStep] = []
    for name in plan_step_order(plan=plan):
        step = engine.step_get(plan, name)
        if step.get("type") == "sms":
            body = plans.plan_render_sms(
                plan=plan, step_name=name, lead={**lead_fields, "phone": lead.phone}, sender=sender
            )
            counted = plans.sms_segments_count(text=body)
            sms = PreviewSms(
                to=lead.phone,
                body=body,
                encoding=counted.encoding,
                characters=counted.characters,
                segments=counted.segments,
                warning=counted.warning,
            )
            steps.append(PreviewStep(step=name, thread_with=None, variants=[], type="sms", sms=sms))
            continue
        if step.get("type") != "email":
            continue
        variants = []
        for variant in step.get("variants") or []:
            rendered = plans.plan_render_step(
                plan=plan,
                step_name=name,
                variant_name=variant["name"],
                lead=lead_fields,
                sender=sender,
                unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL,
            )
            variants.append(
                PreviewVariant(
                    name=variant["name"],
                    weight=variant.get("weight"),
                    subject=rendered.subject,
                    text=rendered.text,
                    html=rendered.html,
                )
            )
        steps.append(PreviewStep(step=name, thread_with=step.get("thread_with"), variants=variants))
    return Preview(
        campaign_id=campaign.pk, version=plan_version.version, lead_id=lead.pk, steps=steps
    )
