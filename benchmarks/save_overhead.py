"""save() cost with and without harper_resources broadcasting, in one process.

Prints one JSON line: median and p90 microseconds per save, with and without. Run by
benchmarks/run.py with the layer's environment (REDIS_URL or not); on its own:

    .venv/bin/python -m benchmarks.save_overhead                     # SQLite in /tmp
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python -m benchmarks.save_overhead

"With" includes everything broadcasting adds to a save: the version (an upsert in the
same transaction), reading the row back, encoding the frame and handing it over.
"""

from __future__ import annotations

import json
import os
import statistics
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models.signals import post_delete, post_save  # noqa: E402

from harper_resources import broadcast, capture, tables  # noqa: E402
from project.dogs.models import Dog  # noqa: E402


def measure(n: int) -> list[float]:
    dog, _ = Dog.objects.get_or_create(pk=1, defaults={"name": "Dog 1", "breed": "Beagle"})
    samples = []
    for age in range(n):
        dog.age = age
        start = time.perf_counter()
        dog.save()
        samples.append((time.perf_counter() - start) * 1e6)
    broadcast.flush(timeout=30)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_us": statistics.median(ordered), "p90_us": ordered[int(len(ordered) * 0.9)]}


def capture_trigger(enabled: bool) -> None:
    """Switch the PostgreSQL capture trigger of the dogs table (a no-op elsewhere)."""
    if capture.captured(Dog, "default"):
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER TABLE dogs_dog {'ENABLE' if enabled else 'DISABLE'} TRIGGER harper_resources_capture"
            )


def main() -> None:
    call_command("migrate", verbosity=0)
    measure(200)  # warm up: connections, the sender thread, caches
    rounds: dict[str, list[float]] = {"with": [], "without": []}
    captured = capture.captured(Dog, "default")
    if captured:  # PostgreSQL: the demo's dogs use the trigger; measure the signal path too
        rounds["with signals instead of the trigger"] = []
    for _ in range(3):  # interleaved, so drift hits every arm alike
        rounds["with"] += measure(500)
        post_save.disconnect(sender=Dog, dispatch_uid="harper_resources.post_save")
        post_delete.disconnect(sender=Dog, dispatch_uid="harper_resources.post_delete")
        capture_trigger(False)
        rounds["without"] += measure(500)
        post_save.connect(broadcast.on_post_save, sender=Dog, dispatch_uid="harper_resources.post_save")
        post_delete.connect(broadcast.on_post_delete, sender=Dog, dispatch_uid="harper_resources.post_delete")
        if captured:
            tables._captured.discard(Dog)
            rounds["with signals instead of the trigger"] += measure(500)
            tables._captured.add(Dog)
        capture_trigger(True)
    print(json.dumps({name: summary(samples) for name, samples in rounds.items()}))


if __name__ == "__main__":
    main()
