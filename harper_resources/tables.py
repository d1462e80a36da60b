"""Which models are record tables, and how a record becomes a frame.

A model becomes a table when a ``Resource`` subclass names it as ``model``. The app
imports every installed app's ``resources`` and ``consumers`` modules at start-up (``AppConfig.ready``), so
a process that only saves records (a management command, a script) broadcasts too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, models, router
from django.db.models.manager import BaseManager

from . import protocol

_tables: set[type[models.Model]] = set()
_captured: set[type[models.Model]] = set()
_watchers: list[Callable[[type[models.Model]], None]] = []
# Per table, the secret-looking fields some Resource lists in ``fields`` explicitly.
_exposed: dict[type[models.Model], set[str]] = {}

#: Field names that look like secrets: ``password``, ``passwd``, ``secret``, ``token``,
#: ``api_key``, alone or at the end of a name (``reset_token``, ``client_secret``).
SECRET_NAME = re.compile(r"(?:^|_)(?:password|passwd|secret|token|api_key)\Z", re.IGNORECASE)


def register(model: type[models.Model], capture: str = "signals", fields: Iterable[str] | None = None) -> None:
    """Make ``model`` (and so its concrete model) a table whose changes are broadcast;
    ``capture="database"`` asks for database-level capture where the database can;
    ``fields``, a Resource's explicit field list, lets the secret-looking fields it
    names into the table's value."""
    table = model._meta.concrete_model or model
    _tables.add(table)
    if capture == "database":
        _captured.add(table)
    listed = {name for name in fields or () if SECRET_NAME.search(name)}
    if listed:
        _exposed.setdefault(table, set()).update(listed)
    _value_fields.clear()
    for watcher in _watchers:
        watcher(table)


def registered() -> set[type[models.Model]]:
    """Every table registered so far."""
    return set(_tables)


def watch(watcher: Callable[[type[models.Model]], None]) -> None:
    """Call ``watcher(table)`` for every table: those registered so far at once, later
    ones when they are registered. Needs the app registry's models to be loaded."""
    _watchers.append(watcher)
    for table in list(_tables):
        watcher(table)


def inheritors(table: type[models.Model]) -> set[type[models.Model]]:
    """``table`` and every installed model that inherits from it (proxies, multi-table
    children): the senders of the saves and deletes of its records."""
    from django.apps import apps

    return {table} | {
        model
        for model in apps.get_models()
        if model._meta.concrete_model is table or table in model._meta.get_parent_list()
    }


def is_captured(model: type[models.Model]) -> bool:
    """True if a Resource asked for ``model``'s table to be captured by the database."""
    return (model._meta.concrete_model or model) in _captured


def captured_tables() -> set[type[models.Model]]:
    """The tables Resources asked to capture by the database."""
    return set(_captured)


def is_table(model: type[models.Model]) -> bool:
    """True if saves and deletes of ``model`` are broadcast."""
    concrete = model._meta.concrete_model
    return concrete in _tables


def tables_of(model: type[models.Model]) -> list[type[models.Model]]:
    """The tables a save of ``model`` changes: its concrete model and, for a multi-table
    child, each concrete parent, where a Resource names them (child first)."""
    concrete = model._meta.concrete_model or model
    candidates = [concrete, *concrete._meta.get_parent_list()]
    return [candidate for candidate in candidates if candidate in _tables]


def table_name(model: type[models.Model]) -> str:
    """The table's name in group names: ``app_label.model_name`` of the concrete model."""
    return (model._meta.concrete_model or model)._meta.label_lower


def parse_pk(model: type[models.Model], raw: Any) -> Any:
    """The primary key ``raw`` (text from a URL) stands for.

    Raises ``ValueError`` when ``raw`` can never be a primary key of ``model``
    ("abc" for an integer key, say).
    """
    field = model._meta.pk
    try:
        value = field.to_python(raw)
        # to_python accepts some values that the database would refuse (overflowing
        # integers, over-long text): get_prep_value and validators catch them.
        field.get_prep_value(value)
        field.run_validators(value)
    except (ValidationError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{raw!r} is not a valid primary key of {model._meta.label}") from exc
    if value is None or value == "":
        raise ValueError(f"{raw!r} is not a valid primary key of {model._meta.label}")
    return value


def key(pk: Any) -> str:
    """Canonical text of a primary key, the same for the URL's id and the saved instance."""
    return str(pk)


def secret_fields(model: type[models.Model]) -> list[str]:
    """The names of ``model``'s concrete fields that look like secrets (``SECRET_NAME``)."""
    return [field.name for field in model._meta.concrete_fields if SECRET_NAME.search(field.name)]


def exposed_fields(model: type[models.Model]) -> set[str]:
    """The secret-looking fields of ``model``'s table that some Resource lists in ``fields``."""
    return set(_exposed.get(model._meta.concrete_model or model, ()))


_value_fields: dict[type[models.Model], list[Any]] = {}


def value_fields(model: type[models.Model]) -> list[Any]:
    """The fields of the table's canonical ``value``: every concrete field but those that
    look like secrets, unless a Resource of the table lists them in ``fields``."""
    found = _value_fields.get(model)
    if found is None:
        exposed = _exposed.get(model._meta.concrete_model or model, set())
        found = _value_fields[model] = [
            field
            for field in model._meta.concrete_fields
            if not SECRET_NAME.search(field.name) or field.name in exposed
        ]
    return found


def record_value(instance: models.Model) -> dict[str, Any]:
    """The record as the ``value`` of a ``put`` frame (the table's canonical value, which
    every subscriber's own ``fields``/``exclude``/``serialize`` start from): each field of
    ``value_fields`` by name (a foreign key as the related primary key), the primary key
    included."""
    return {field.name: field.value_from_object(instance) for field in value_fields(type(instance))}


class _RowReader:
    """One model's read-by-key: its SQL and the converters the ORM would apply to each
    column (JSON, decimals and datetimes on SQLite, ...), worked out once per vendor."""

    def __init__(self, model: type[models.Model], connection: Any) -> None:
        from django.db.models.sql import Query

        qn, opts = connection.ops.quote_name, model._meta
        fields = opts.concrete_fields
        self.model = model
        self.attnames = [field.attname for field in fields]
        columns = ", ".join(qn(field.column) for field in fields)
        self.sql = f"SELECT {columns} FROM {qn(opts.db_table)} WHERE {qn(opts.pk.column)} = %s"
        compiler = connection.ops.compiler("SQLCompiler")(Query(model), connection, None)
        self.converters = list(compiler.get_converters([field.get_col(opts.db_table) for field in fields]).items())

    def read(self, pk: Any, using: str, connection: Any, for_update: bool = False) -> models.Model | None:
        with connection.cursor() as cursor:
            sql = self.sql + " FOR UPDATE" if for_update else self.sql
            cursor.execute(sql, [self.model._meta.pk.get_db_prep_value(pk, connection)])
            row = cursor.fetchone()
        if row is None:
            return None
        if self.converters:
            values = list(row)
            for position, (converters, expression) in self.converters:
                value = values[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                values[position] = value
            row = values
        return self.model.from_db(using, self.attnames, row)


_row_readers: dict[tuple[type[models.Model], str], _RowReader] = {}


def read_row(model: type[models.Model], pk: Any, using: str, *, for_update: bool = False) -> models.Model | None:
    """The stored row of record ``pk`` as a ``model`` instance (None if there is none),
    read with one plain SELECT: this runs on every save, and building the query through
    the ORM would cost more than running it. ``for_update`` locks the row until the
    transaction ends, where the database can (``select_for_update``)."""
    if model._meta.parents:  # a multi-table child's fields live in several tables
        rows = model._base_manager.using(using)
        return (rows.select_for_update() if for_update else rows).filter(pk=pk).first()
    connection = connections[using]
    reader = _row_readers.get((model, connection.vendor))
    if reader is None:
        reader = _row_readers[(model, connection.vendor)] = _RowReader(model, connection)
    return reader.read(pk, using, connection, for_update and connection.features.has_select_for_update)


def plain_manager(model: type[models.Model]) -> bool:
    """True if ``model``'s default manager returns every row (its ``get_queryset`` is
    Django's own), so a row read by key is what that manager would return."""
    return type(model._default_manager).get_queryset is BaseManager.get_queryset


def read_default(model: type[models.Model], pk: Any) -> models.Model | None:
    """``model._default_manager.filter(pk=pk).first()``: by ``read_row`` (one plain
    SELECT) when that manager returns every row, else through the ORM."""
    if not plain_manager(model):
        return model._default_manager.filter(pk=pk).first()
    return read_row(model, pk, router.db_for_read(model))


def put_frame(instance: models.Model, version: float) -> str:
    """The encoded ``put`` frame of ``instance``'s state, stored at ``version``."""
    return protocol.put_frame(instance.pk, record_value(instance), version)
