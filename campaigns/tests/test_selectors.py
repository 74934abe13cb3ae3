"""Lead selectors: filters, and never another tenant's rows."""

import datetime

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Lead
from campaigns.selectors import lead_get, lead_list
from outreach.common.errors import NotFound
from outreach.testing.factories import LeadFactory

pytestmark = pytest.mark.django_db


def test_lead_get_is_scoped_to_the_tenant(tenant, other_tenant):
    theirs = LeadFactory(tenant=other_tenant)
    mine = LeadFactory(tenant=tenant)
    assert lead_get(tenant_id=tenant.id, lead_id=mine.id) == mine
    with pytest.raises(NotFound):
        lead_get(tenant_id=tenant.id, lead_id=theirs.id)


def test_lead_list_never_returns_another_tenants_rows(tenant, other_tenant):
    mine = LeadFactory(tenant=tenant, email="same@example.com", company="Acme")
    LeadFactory(tenant=other_tenant, email="same@example.com", company="Acme")
    assert list(lead_list(tenant_id=tenant.id)) == [mine]
    assert list(lead_list(tenant_id=tenant.id, email="same@example.com")) == [mine]
    assert list(lead_list(tenant_id=tenant.id, company="Acme", q="acme")) == [mine]


def test_lead_list_filters_combine(tenant):
    now = timezone.now()
    a = LeadFactory(tenant=tenant, email="ann@acme.com", company="Acme", first_name="Ann")
    b = LeadFactory(tenant=tenant, email="bob@acme.com", company="Acme", first_name="Bob")
    c = LeadFactory(tenant=tenant, email="cy@initech.com", company="Initech", first_name="Cy")
    Lead.objects.filter(pk=a.pk).update(created_at=now - datetime.timedelta(days=10))
    Lead.objects.filter(pk=c.pk).update(validation_status="risky")

    def ids(**filters) -> set[int]:
        return set(lead_list(tenant_id=tenant.id, **filters).values_list("id", flat=True))

    assert ids(company="Acme") == {a.id, b.id}
    assert ids(company="Acme", created_after=now - datetime.timedelta(days=1)) == {b.id}
    assert ids(created_before=now - datetime.timedelta(days=1)) == {a.id}
    assert ids(validation_status="risky") == {c.id}
    assert ids(q="bob acme") == {b.id}
    assert ids(q="ACME") == {a.id, b.id}
    assert ids(email=" ANN@ACME.COM ") == {a.id}
    assert ids(email="not an email") == set()


def test_lead_search_matches_any_part_of_a_name_or_company_in_any_case(tenant):
    jo = LeadFactory(tenant=tenant, first_name="Jo", last_name="Thompson", company="Ünter GmbH")
    LeadFactory(tenant=tenant, first_name="Ann", last_name="Lee", company="Acme")

    def ids(q: str) -> set[int]:
        return set(lead_list(tenant_id=tenant.id, q=q).values_list("id", flat=True))

    assert ids("MPSO") == {jo.id}
    assert ids("ünter") == ids("ÜNTER") == {jo.id}
    assert ids("jo gmbh") == {jo.id}
    assert ids("100%") == ids("jo_") == set()  # LIKE wildcards are matched literally
    lead = Lead.objects.get(pk=jo.pk)
    lead.company = "Initech"
    lead.save()
    assert ids("initech") == {jo.id}  # search_text follows every change


def test_lead_search_can_read_the_tenant_trigram_index(tenant):
    """A word search can find its matches through the trigram index of search_text (which
    also holds tenant_id). Which plan wins depends on the tenant's size (a small tenant's
    leads are cheaper to filter), so the other indexes are set aside here, in a rolled-back
    transaction, to show the query is one the index answers."""
    LeadFactory(tenant=tenant, last_name="Thompson")
    queryset = lead_list(tenant_id=tenant.id, q="thomp son")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending
        cursor.execute("ALTER TABLE campaigns_lead DROP CONSTRAINT lead_email_unique_per_tenant")
        cursor.execute(
            "DROP INDEX lead_tenant_company_idx, lead_tenant_created_idx, lead_tenant_id_idx"
        )
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    assert "Bitmap Index Scan on lead_search_trgm_idx" in plan
    condition = next(line for line in plan.splitlines() if "Index Cond" in line)
    assert "%thomp%" in condition and "%son%" in condition
