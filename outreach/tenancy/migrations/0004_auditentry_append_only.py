"""The audit log is append-only: a trigger refuses UPDATE and DELETE of its rows, whatever
the client (the ORM, the admin, psql). TRUNCATE is left to the table's owner (tests flush
tables with it)."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION tenancy_auditentry_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % of audit entry % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER auditentry_append_only
    BEFORE UPDATE OR DELETE ON tenancy_auditentry
    FOR EACH ROW EXECUTE FUNCTION tenancy_auditentry_refuse_change();
"""

REVERSE = """
DROP TRIGGER IF EXISTS auditentry_append_only ON tenancy_auditentry;
DROP FUNCTION IF EXISTS tenancy_auditentry_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0003_tenant_flags_quotas_audit_killswitch")]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE)]
