"""Creating a month's partition takes in the rows DEFAULT holds for that month.

``CREATE TABLE … PARTITION OF`` fails when DEFAULT already holds rows of the new range (they
would violate DEFAULT's new constraint), which would stop partitions being created at all
and send every later event to DEFAULT. Now such a month is created as a plain table, the
rows move into it (``DELETE … RETURNING`` feeding the insert, in the same transaction), and
it is attached: attaching scans DEFAULT for rows of its range, and there are none left. The
rows keep their ids; the analytics trigger (on the parent) does not see the move, so nothing
is counted twice.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION messaging_ensure_event_partitions(months_back int, months_ahead int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    month_start date;
    lo timestamptz;
    hi timestamptz;
    created int := 0;
    part_name text;
BEGIN
    FOR i IN -months_back..months_ahead LOOP
        month_start := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date;
        part_name := format('messaging_messageevent_%s', to_char(month_start, 'YYYY_MM'));
        lo := month_start::timestamp AT TIME ZONE 'UTC';
        hi := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        IF to_regclass(part_name) IS NULL THEN
            IF EXISTS (
                SELECT 1 FROM messaging_messageevent_default
                WHERE occurred_at >= lo AND occurred_at < hi
            ) THEN
                EXECUTE format(
                    'CREATE TABLE %I (LIKE messaging_messageevent INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                    part_name
                );
                EXECUTE format(
                    'WITH moved AS (DELETE FROM messaging_messageevent_default
                         WHERE occurred_at >= %L AND occurred_at < %L RETURNING *)
                     INSERT INTO %I SELECT * FROM moved',
                    lo, hi, part_name
                );
                EXECUTE format(
                    'ALTER TABLE messaging_messageevent ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                    part_name, lo, hi
                );
            ELSE
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF messaging_messageevent FOR VALUES FROM (%L) TO (%L)',
                    part_name, lo, hi
                );
            END IF;
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION messaging_ensure_event_partitions(months_back int, months_ahead int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    month_start date;
    created int := 0;
    part_name text;
BEGIN
    FOR i IN -months_back..months_ahead LOOP
        month_start := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date;
        part_name := format('messaging_messageevent_%s', to_char(month_start, 'YYYY_MM'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF messaging_messageevent
                     FOR VALUES FROM (%L) TO (%L)',
                part_name,
                (month_start::timestamp AT TIME ZONE 'UTC'),
                ((month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC')
            );
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("messaging", "0012_fewer_indexes")]

    operations = [migrations.RunSQL(FUNCTION, reverse_sql=PREVIOUS)]
