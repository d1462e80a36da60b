"""The change log: every committed change of a record, kept for a while.

``write()`` runs in the changing transaction, right after the version is assigned, so
a change is in the log exactly when it is committed. The log answers:

- resumes: ``latest_since()`` — per record, its newest change after a version;
- ``previous()`` — a record's (or a table's) last changes;
- catch-up: ``read_after()`` — rows a server has not seen yet, for changes whose
  broadcast never arrived (the hub's replay loop);
- ``horizon()`` — the newest version pruning has removed: a resume from before it
  cannot be answered from the log, and gets a ``reset``.

``prune()`` enforces ``LOG_RETENTION`` and ``LOG_MAX_CHANGES``; the hubs run it now and
then, never a save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import connections

from . import protocol
from .conf import settings

if TYPE_CHECKING:
    from .models import Change

#: The ``RecordVersion`` row that holds the log's horizon.
HORIZON_TABLE, HORIZON_KEY = "harper_resources.log", "horizon"


class Entry(NamedTuple):
    """One logged change: its row id, table, record (group name), version and encoded frame."""

    id: int
    table: str
    record: str
    version: float
    frame: str


def _model() -> type[Change]:
    from .models import Change

    return Change


_insert_sql: dict[str, str] = {}


def write(using: str, table: str, record: str, kind: str, version: float, frame: str) -> None:
    """Log one change (inside the changing transaction)."""
    connection = connections[using]
    sql = _insert_sql.get(connection.vendor)
    if sql is None:
        qn, meta = connection.ops.quote_name, _model()._meta
        names = ("table", "record", "kind", "version", "frame")
        columns = ", ".join(qn(meta.get_field(name).column) for name in names)  # type: ignore[union-attr,arg-type]
        sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s, %s)"
        _insert_sql[connection.vendor] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, [table, record, kind, version, frame])


def _entries(rows: Any) -> list[Entry]:
    return [Entry(*row) for row in rows.values_list("id", "table", "record", "version", "frame")]


def latest_since(using: str, table: str, record: str | None, since: float) -> list[Entry]:
    """For each record of ``table`` (or only ``record``) changed after ``since``, its
    newest change, oldest first: one query that reads only those rows."""
    from django.db.models import Exists, OuterRef

    model = _model()
    changes = model._default_manager.using(using).filter(table=table, version__gt=since)
    if record is not None:
        changes = changes.filter(record=record)
    newer = model._default_manager.using(using).filter(record=OuterRef("record"), version__gt=OuterRef("version"))
    return _entries(changes.filter(~Exists(newer)).order_by("version", "id"))


def previous(using: str, table: str, record: str | None, count: int) -> list[Entry]:
    """The last ``count`` changes of ``record`` (or of the whole ``table``), oldest first."""
    changes = _model()._default_manager.using(using).filter(table=table)
    if record is not None:
        changes = changes.filter(record=record)
    return list(reversed(_entries(changes.order_by("-version", "-id")[:count])))


def read_after(using: str, last_id: int, missing: list[int]) -> list[Entry]:
    """Rows with an id above ``last_id``, or among ``missing`` (ids a slower
    transaction took earlier and may have committed since), in id order."""
    from django.db.models import Q

    condition = Q(id__gt=last_id)
    if missing:
        condition |= Q(id__in=missing)
    return _entries(_model()._default_manager.using(using).filter(condition).order_by("id"))


def newest_id_before(using: str, version: float) -> int:
    """The id of the newest row whose version is older than ``version`` (0 if none):
    where catch-up starts. Rows after it are read again, so a change committed while
    catch-up was starting is not passed over."""
    rows = _model()._default_manager.using(using).filter(version__lt=version).order_by("-id")
    newest = rows.values_list("id", flat=True).first()
    return int(newest or 0)


def horizon(using: str) -> float:
    """The newest version pruning has removed (0 if nothing was pruned)."""
    from .models import RecordVersion

    value = (
        RecordVersion._default_manager.using(using)
        .filter(table=HORIZON_TABLE, key=HORIZON_KEY)
        .values_list("version", flat=True)
        .first()
    )
    return float(value or 0.0)


def prune(using: str, now: float | None = None) -> int:
    """Drop changes older than ``LOG_RETENTION`` and beyond ``LOG_MAX_CHANGES`` (and the
    tombstones of records deleted before the new horizon); returns how many changes."""
    from django.db import transaction
    from django.db.models import Max

    from .models import RecordVersion

    changes = _model()._default_manager.using(using)
    cutoff = (protocol.now_ms() if now is None else now) - settings.LOG_RETENTION * 1000.0
    over = changes.order_by("-id").values_list("id", flat=True)[settings.LOG_MAX_CHANGES : settings.LOG_MAX_CHANGES + 1]
    first_kept_id = next(iter(over), None)
    doomed = changes.filter(version__lt=cutoff)
    if first_kept_id is not None:
        doomed = changes.filter(version__lt=cutoff) | changes.filter(id__lte=first_kept_id)
    with transaction.atomic(using=using):
        newest_dropped = doomed.aggregate(newest=Max("version"))["newest"]
        if newest_dropped is None:
            return 0
        removed, _ = doomed.delete()
        versions = RecordVersion._default_manager.using(using)
        versions.filter(deleted=True, version__lte=newest_dropped).delete()
        current = horizon(using)
        if newest_dropped > current:
            versions.update_or_create(table=HORIZON_TABLE, key=HORIZON_KEY, defaults={"version": newest_dropped})
    return removed
