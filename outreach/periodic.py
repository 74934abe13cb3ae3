"""The project's periodic tasks, registered in django-celery-beat by ``periodic_tasks_sync``.

Each app lists its own in ``<app>/periodic.py`` as ``PERIODIC_TASKS``. Every task listed must
be safe when beat fires it twice (or two beats run): they are all database-guarded sweeps.
"""

from dataclasses import dataclass
from importlib import import_module

from django.apps import apps


@dataclass(frozen=True)
class Periodic:
    name: str
    task: str
    every_seconds: float
    queue: str = "maintenance"
    expires_seconds: float | None = None


def periodic_tasks_all() -> list[Periodic]:
    found: list[Periodic] = []
    for config in apps.get_app_configs():
        try:
            module = import_module(f"{config.name}.periodic")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.periodic":
                raise
            continue
        found.extend(getattr(module, "PERIODIC_TASKS", []))
    return found
