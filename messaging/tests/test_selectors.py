"""Messaging selectors never return another tenant's rows."""

import pytest

from messaging.selectors import sender_identity_get, sender_identity_list
from outreach.common.errors import NotFound
from outreach.testing.factories import SenderIdentityFactory

pytestmark = pytest.mark.django_db


def test_sender_identity_selectors_are_scoped_to_the_tenant(tenant, other_tenant):
    mine = SenderIdentityFactory(tenant=tenant)
    theirs = SenderIdentityFactory(tenant=other_tenant)
    assert list(sender_identity_list(tenant_id=tenant.id)) == [mine]
    assert sender_identity_get(tenant_id=tenant.id, identity_id=mine.id) == mine
    with pytest.raises(NotFound):
        sender_identity_get(tenant_id=tenant.id, identity_id=theirs.id)
