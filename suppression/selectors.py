"""Suppression reads. The send path calls ``suppression_check`` right before each send."""

from django.db.models import QuerySet

from suppression.models import Suppression
from suppression.services import email_normalise, suppression_hashes


def suppression_check(*, tenant_id: int, emails: list[str]) -> set[str]:
    """The addresses among ``emails`` that must not be mailed (tenant or global scope).

    One query; the result holds normalised (stripped, lower-case) addresses, including
    those suppressed only as a hash after an erasure. The tenant's scope and the global one
    are two branches of a ``UNION ALL``, each an index lookup per address on
    ``(tenant_id, email)``: as one ``tenant_id = X OR tenant_id IS NULL`` condition no index
    matched it, and PostgreSQL read every tenant's suppressions.
    """
    wanted = {email_normalise(email) for email in emails if email}
    if not wanted:
        return set()
    # An address erased on request is kept only as its hash (suppression_keep_as_hash).
    hashes = {digest: email for email in wanted for digest in suppression_hashes(email)}
    candidates = [*wanted, *hashes]
    own = Suppression.objects.filter(tenant_id=tenant_id, email__in=candidates)
    platform = Suppression.objects.filter(tenant__isnull=True, email__in=candidates)
    found = own.values_list("email", flat=True).union(
        platform.values_list("email", flat=True), all=True
    )
    return {hashes.get(email, email) for email in found}


def suppression_list(
    *,
    tenant_id: int,
    email: str | None = None,
    reason: str | None = None,
    scope: str | None = None,
) -> QuerySet[Suppression]:
    """A tenant's suppressions and the global ones, newest first, optionally filtered."""
    queryset = Suppression.objects.applicable_to(tenant_id)
    if email:
        queryset = queryset.filter(email=email_normalise(email))
    if reason:
        queryset = queryset.filter(reason=reason)
    if scope == Suppression.Scope.TENANT:
        queryset = queryset.filter(tenant_id=tenant_id)
    elif scope == Suppression.Scope.GLOBAL:
        queryset = queryset.filter(tenant__isnull=True)
    return queryset.order_by("-id")


def suppression_get(*, tenant_id: int, suppression_id: int) -> Suppression | None:
    return Suppression.objects.applicable_to(tenant_id).filter(pk=suppression_id).first()


def phone_suppression_check(*, tenant_id: int, phones: list[str]) -> set[str]:
    """The numbers among ``phones`` this tenant must not text (one query)."""
    from suppression.models import PhoneSuppression

    wanted = sorted({phone for phone in phones if phone})
    if not wanted:
        return set()
    return set(
        PhoneSuppression.objects.filter(tenant_id=tenant_id, phone__in=wanted).values_list(
            "phone", flat=True
        )
    )
