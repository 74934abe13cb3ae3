from django.db import connection


def event_partitions_ensure(*, months_back: int = 1, months_ahead: int = 3) -> int:
    """Create any missing monthly partitions of the event table; returns how many were made.

    Idempotent (``to_regclass`` check per month); a concurrent run that loses the race to
    create the same partition fails only that run, and the next sweep finds nothing to do.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT messaging_ensure_event_partitions(%s, %s)", [months_back, months_ahead]
        )
        return int(cursor.fetchone()[0])
