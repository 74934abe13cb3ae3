"""Suppression reads: the send-time check and the list, always tenant plus global."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from suppression.models import Suppression
from suppression.selectors import suppression_check, suppression_get, suppression_list
from suppression.services import suppression_add

pytestmark = pytest.mark.django_db


def test_check_sees_own_and_global_entries_in_one_query(tenant, other_tenant):
    suppression_add(tenant_id=tenant.pk, email="mine@x.test", reason="manual", source="api")
    suppression_add(tenant_id=None, email="everyone@x.test", reason="manual", source="admin")
    suppression_add(tenant_id=other_tenant.pk, email="theirs@x.test", reason="manual", source="api")
    with CaptureQueriesContext(connection) as queries:
        found = suppression_check(
            tenant_id=tenant.pk,
            emails=[" Mine@X.test", "everyone@x.test", "theirs@x.test", "free@x.test", ""],
        )
    assert found == {"mine@x.test", "everyone@x.test"}
    assert len(queries) == 1
    assert suppression_check(tenant_id=other_tenant.pk, emails=["mine@x.test"]) == set()
    assert suppression_check(tenant_id=tenant.pk, emails=[]) == set()


def test_list_filters_by_scope_reason_and_email(tenant, other_tenant):
    suppression_add(tenant_id=tenant.pk, email="a@x.test", reason="manual", source="api")
    suppression_add(tenant_id=tenant.pk, email="b@x.test", reason="hard_bounce", source="webhook")
    suppression_add(tenant_id=None, email="g@x.test", reason="spam_report", source="admin")
    suppression_add(tenant_id=other_tenant.pk, email="o@x.test", reason="manual", source="api")

    def emails(**filters):
        return [s.email for s in suppression_list(tenant_id=tenant.pk, **filters)]

    assert emails() == ["g@x.test", "b@x.test", "a@x.test"]
    assert emails(scope="tenant") == ["b@x.test", "a@x.test"]
    assert emails(scope="global") == ["g@x.test"]
    assert emails(reason="hard_bounce") == ["b@x.test"]
    assert emails(email=" A@X.test") == ["a@x.test"]
    assert emails(email="o@x.test") == []


def test_get_answers_none_for_another_tenants_entry(tenant, other_tenant):
    suppression_add(tenant_id=other_tenant.pk, email="o@x.test", reason="manual", source="api")
    theirs = Suppression.objects.get()
    assert suppression_get(tenant_id=tenant.pk, suppression_id=theirs.pk) is None
    assert suppression_get(tenant_id=other_tenant.pk, suppression_id=theirs.pk) == theirs
