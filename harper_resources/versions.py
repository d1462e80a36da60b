"""Record versions: assigned where commit order is known (the database), read back with
the record.

``assign()`` runs inside the transaction that changed the record. It upserts the
record's ``RecordVersion`` row, which locks that row until the transaction ends, so two
transactions changing one record get their versions in commit order on every database
and from every process or machine, even with skewed clocks: a version is the current
time in ms, or one microsecond past the stored version when that is later.

``stored()`` reads versions for records already read; ``snapshot()`` makes the two reads
one consistent view (REPEATABLE READ on PostgreSQL; a single read transaction elsewhere).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from . import protocol

if TYPE_CHECKING:
    from .models import RecordVersion

#: Added to a stored version that is not older than the clock (ms): one microsecond.
STEP = 0.001
_MAX_KEY = 255


def stored_key(key: str) -> str:
    """The ``RecordVersion.key`` of a record key: the key itself, or for keys too long
    for the column a ``sha256:`` digest."""
    if len(key) <= _MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _model() -> type[RecordVersion]:
    from .models import RecordVersion

    return RecordVersion


_UPSERT = (
    "INSERT INTO {t} ({table}, {key}, {version}, {deleted}) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT ({table}, {key}) DO UPDATE SET "
    "{version} = CASE WHEN excluded.{version} > {t}.{version} THEN excluded.{version} "
    "ELSE {t}.{version} + %s END, {deleted} = excluded.{deleted} "
    "RETURNING {version}"
)
_upsert_sql: dict[str, str] = {}


def _upsert(using: str) -> str | None:
    """The upsert statement for this connection's vendor, None where the generic path runs."""
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    sql = _upsert_sql.get(connection.vendor)
    if sql is None:
        qn = connection.ops.quote_name
        meta = _model()._meta
        sql = _upsert_sql[connection.vendor] = _UPSERT.format(
            t=qn(meta.db_table),
            table=qn(meta.get_field("table").column),
            key=qn(meta.get_field("key").column),
            version=qn(meta.get_field("version").column),
            deleted=qn(meta.get_field("deleted").column),
        )
    return sql


def assign(using: str, table: str, key: str, *, deleted: bool = False) -> float:
    """The version of a change of record ``key`` of ``table``, stored with it.

    Call inside the changing transaction (the caller's ``atomic`` block): the row stays
    locked until it commits, so a later committer gets a greater version. Raises the
    database's error if the table is missing (migrations not applied).
    """
    now = protocol.now_ms()
    skey = stored_key(key)
    sql = _upsert(using)
    if sql is not None:
        with connections[using].cursor() as cursor:
            cursor.execute(sql, [table, skey, now, deleted, STEP])
            row = cursor.fetchone()
        return float(row[0])
    model = _model()
    current = model._default_manager.using(using).select_for_update().filter(table=table, key=skey).first()
    if current is None:
        model._default_manager.using(using).create(table=table, key=skey, version=now, deleted=deleted)
        return now
    version = float(max(now, current.version + STEP))
    model._default_manager.using(using).filter(pk=current.pk).update(version=version, deleted=deleted)
    return version


def mark_deleted(using: str, table: str, key: str) -> None:
    """Flag the stored state of ``key`` as deleted (its version stays)."""
    _model()._default_manager.using(using).filter(table=table, key=stored_key(key)).update(deleted=True)


#: Keys per query of ``stored`` (well under every database's limit of parameters).
_CHUNK = 500
_select_sql: dict[tuple[str, str], str] = {}


def _select(using: str, where: str) -> str:
    """``SELECT key, version`` of the version table ``WHERE where`` (``{table}``, ``{key}``
    and ``{version}`` name the columns), built once per database vendor: the first read
    of every connection runs these, and raw SQL skips the ORM's query compiling."""
    connection = connections[using]
    sql = _select_sql.get((connection.vendor, where))
    if sql is None:
        qn = connection.ops.quote_name
        meta = _model()._meta
        columns = {name: qn(meta.get_field(name).column) for name in ("table", "key", "version")}  # type: ignore[union-attr,arg-type]
        sql = f"SELECT {columns['key']}, {columns['version']} FROM {qn(meta.db_table)} WHERE " + where.format(**columns)
        _select_sql[(connection.vendor, where)] = sql
    return sql


def _rows(using: str, where: str, params: list[Any]) -> list[tuple[str, float]]:
    with connections[using].cursor() as cursor:
        cursor.execute(_select(using, where), params)
        return [(skey, float(version)) for skey, version in cursor.fetchall()]


def stored(using: str, table: str, keys: Iterable[str]) -> dict[str, float]:
    """The stored version of each of ``keys`` that has one (records never changed since
    the app was installed have none: their version is 0)."""
    by_stored = {stored_key(key): key for key in keys}
    wanted = list(by_stored)
    found: dict[str, float] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        where = "{table} = %s AND {key} IN (" + ", ".join(["%s"] * len(chunk)) + ")"
        for skey, version in _rows(using, where, [table, *chunk]):
            found[by_stored[skey]] = version
    return found


def of(using: str, table: str, key: str) -> float | None:
    """The stored version of record ``key`` of ``table`` (deleted or not), None if it has
    none. One query."""
    rows = _rows(using, "{table} = %s AND {key} = %s", [table, stored_key(key)])
    return rows[0][1] if rows else None


def recent(using: str, table: str, key: str | None, after: float) -> dict[str, float]:
    """Stored versions, deleted records included: of ``key`` whatever its age, or of the
    records of ``table`` changed after version ``after``. Keys too long for the column
    are left out (their stored form is a digest)."""
    if key is not None:
        rows = _rows(using, "{table} = %s AND {key} = %s", [table, stored_key(key)])
    else:
        rows = _rows(using, "{table} = %s AND {version} > %s", [table, after])
    return {skey: version for skey, version in rows if not skey.startswith("sha256:")}


@contextlib.contextmanager
def snapshot(using: str) -> Iterator[None]:
    """Run the enclosed reads on one consistent view of the database.

    On PostgreSQL (outside another transaction) a REPEATABLE READ transaction; on other
    databases, and inside a caller's transaction, one transaction as it is (SQLite's
    read transactions already see one state).
    """
    connection = connections[using]
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=using):
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield
