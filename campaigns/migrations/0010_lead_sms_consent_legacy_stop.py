"""Re-tag the STOP revocations stored before START learned to tell them apart.

Until commit 65a59fb a STOP revoked the consent of every lead with the number, `unknown` or
already revoked (by the CRM, say) included, and stamped them all with the STOP's source
(``sms:`` and the text as sent, upper-cased: ``sms:STOP``, ``sms:QUIT``, ``sms:STOP.`` …).
A START now gives consent back to the leads whose source is a STOP's, so it would grant
consent to leads that never gave it. The consent each had before the STOP was overwritten,
so no row can be told apart: every revocation a STOP wrote (the pattern below, nothing a
tenant's own source matches unless it copied ours) moves to ``legacy:<source>``, outside the
set a START restores. A START still re-subscribes their number; texting them again needs
consent recorded through the API. That includes the leads a STOP revoked after 65a59fb and
before this migration, whose consent was granted: the price of not guessing.

One UPDATE filtered on the source: a single pass over the leads, no index needed.
"""

from django.db import migrations

FORWARD = """
UPDATE campaigns_lead
SET sms_consent_source = 'legacy:' || sms_consent_source
WHERE sms_consent = 'revoked'
  AND sms_consent_source ~ '^sms:(STOP|STOPALL|UNSUBSCRIBE|CANCEL|END|QUIT)[.!]*$'
"""

REVERSE = """
UPDATE campaigns_lead
SET sms_consent_source = substr(sms_consent_source, length('legacy:') + 1)
WHERE sms_consent_source LIKE 'legacy:sms:%'
"""


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0009_lead_tenant_id_idx")]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE, elidable=True)]
