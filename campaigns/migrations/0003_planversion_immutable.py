"""A published plan is a contract with every enrollment pinned to it: the database refuses
any change to a version's plan document or checksum (only ``published_at`` may be set)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION campaigns_planversion_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.plan IS DISTINCT FROM OLD.plan
       OR NEW.checksum IS DISTINCT FROM OLD.checksum
       OR NEW.version IS DISTINCT FROM OLD.version
       OR NEW.campaign_id IS DISTINCT FROM OLD.campaign_id THEN
        RAISE EXCEPTION 'campaign plan version % is immutable', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER campaigns_planversion_immutable
    BEFORE UPDATE ON campaigns_campaignplanversion
    FOR EACH ROW EXECUTE FUNCTION campaigns_planversion_immutable();
"""

DROP = """
DROP TRIGGER IF EXISTS campaigns_planversion_immutable ON campaigns_campaignplanversion;
DROP FUNCTION IF EXISTS campaigns_planversion_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0002_initial")]

    operations = [migrations.RunSQL(CREATE, reverse_sql=DROP)]
