"""Database-level change capture on PostgreSQL, for resources with ``capture = "database"``.

A save through the ORM fires signals; ``QuerySet.update()``, ``bulk_create()``,
``bulk_update()``, a fast ``QuerySet.delete()`` and SQL from any other client do not.
For the tables of resources that opt in, a row trigger does on the database what
``broadcast`` does in Python: it versions the change (the same ``RecordVersion`` upsert),
logs its frame (built from the row as stored) in the change log, and sends a
``NOTIFY harper_resources``. Every server's hub listens, reads the new log rows and
dispatches them (``replay.py``). The signal receivers leave these tables alone, so a
``save()`` is sent once.

The triggers are installed (and refreshed) after every ``migrate`` on PostgreSQL, and by
``manage.py harper_capture``. On other databases nothing is captured outside ``save()``
and ``delete()``; system check ``harper_resources.W002`` says so, and
``harper_resources.broadcast_rows(model, pks)`` broadcasts rows a bulk operation changed.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, models

from . import protocol, tables, versions

#: The NOTIFY channel the triggers signal and the hubs listen on.
CHANNEL = "harper_resources"
_TRIGGER = "harper_resources_capture"


def supported(using: str) -> bool:
    """True if database ``using`` can capture changes (PostgreSQL)."""
    return bool(connections[using].vendor == "postgresql")


def captured(model: type[models.Model], using: str) -> bool:
    """True if the changes of ``model``'s table on ``using`` are captured by triggers."""
    return tables.is_captured(model) and supported(using)


def _literal(connection: Any, value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def trigger_sql(model: type[models.Model], connection: Any) -> list[str]:
    """The statements that (re)create the capture trigger of ``model``'s table."""
    from .changelog import _model as change_model
    from .models import RecordVersion

    qn, opts = connection.ops.quote_name, model._meta
    table = tables.table_name(model)
    prefix = protocol.record_group(table, "x")[:-1]  # "harper.<table part>."
    function = qn(f"harper_capture_{opts.db_table}"[:63])
    versions_table, change_table = qn(RecordVersion._meta.db_table), qn(change_model()._meta.db_table)
    pk = qn(opts.pk.column)

    def value(row: str) -> str:
        pairs = ", ".join(f"{_literal(connection, f.name)}, {row}.{qn(f.column)}" for f in tables.value_fields(model))
        return f"json_build_object({pairs})"

    body = f"""
DECLARE
  k text; skey text; grp text; v double precision; stamp double precision; frame text;
  gone boolean := TG_OP = 'DELETE';
BEGIN
  IF gone THEN k := OLD.{pk}::text; ELSE k := NEW.{pk}::text; END IF;
  IF k ~ '^[A-Za-z0-9.\\-]+$' AND length({_literal(connection, prefix)} || k) <= 99 THEN
    grp := {_literal(connection, prefix)} || k;
  ELSE
    grp := {_literal(connection, prefix)} || '_' || left(encode(sha256(convert_to(k, 'UTF8')), 'hex'), 40);
    IF length(grp) > 99 THEN
      grp := 'harper._' || encode(sha256(convert_to(grp, 'UTF8')), 'hex');
    END IF;
  END IF;
  IF length(k) <= {versions._MAX_KEY} THEN skey := k;
  ELSE skey := 'sha256:' || encode(sha256(convert_to(k, 'UTF8')), 'hex'); END IF;
  stamp := extract(epoch from clock_timestamp()) * 1000;
  INSERT INTO {versions_table} ("table", "key", "version", "deleted")
    VALUES ({_literal(connection, table)}, skey, stamp, gone)
    ON CONFLICT ("table", "key") DO UPDATE SET
      "version" = GREATEST(excluded."version", {versions_table}."version" + {versions.STEP}),
      "deleted" = excluded."deleted"
    RETURNING "version" INTO v;
  IF gone THEN
    frame := json_build_object('id', OLD.{pk}, 'localTime', stamp, 'version', v, 'type', 'delete')::text;
  ELSE
    frame := json_build_object('id', NEW.{pk}, 'localTime', stamp, 'value', {value("NEW")},
                               'version', v, 'type', 'put')::text;
  END IF;
  INSERT INTO {change_table} ("table", "record", "kind", "version", "frame")
    VALUES ({_literal(connection, table)}, grp, CASE WHEN gone THEN 'delete' ELSE 'put' END, v, frame);
  PERFORM pg_notify({_literal(connection, CHANNEL)}, '');
  RETURN NULL;
END
"""
    return [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $harper${body}$harper$",
        f"DROP TRIGGER IF EXISTS {_TRIGGER} ON {qn(opts.db_table)}",
        f"CREATE TRIGGER {_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {qn(opts.db_table)} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


def install(using: str) -> list[str]:
    """Create or refresh the capture triggers of every captured table on ``using``;
    returns the tables. Does nothing on a database that cannot capture."""
    if not supported(using):
        return []
    connection = connections[using]
    done = []
    with connection.cursor() as cursor:
        for model in sorted(tables.captured_tables(), key=lambda m: m._meta.label):
            for statement in trigger_sql(model, connection):
                cursor.execute(statement)
            done.append(model._meta.db_table)
    return done
