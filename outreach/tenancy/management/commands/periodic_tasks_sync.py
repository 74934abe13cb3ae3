from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from outreach.periodic import periodic_tasks_all


class Command(BaseCommand):
    help = "Register (or update) the project's periodic tasks in django-celery-beat. Idempotent."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            for item in periodic_tasks_all():
                # Sub-second sweeps use microseconds so beat's interval is exact.
                if float(item.every_seconds).is_integer():
                    every, period = int(item.every_seconds), IntervalSchedule.SECONDS
                else:
                    every, period = (
                        int(item.every_seconds * 1_000_000),
                        IntervalSchedule.MICROSECONDS,
                    )
                schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
                _, created = PeriodicTask.objects.update_or_create(
                    name=item.name,
                    defaults={
                        "task": item.task,
                        "interval": schedule,
                        "queue": item.queue,
                        "expire_seconds": item.expires_seconds,
                        "enabled": True,
                    },
                )
                verb = "registered" if created else "up to date"
                self.stdout.write(f"{item.name}: {item.task} every {item.every_seconds}s ({verb})")
