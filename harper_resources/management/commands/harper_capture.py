"""``manage.py harper_capture``: (re)install the PostgreSQL capture triggers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from harper_resources import capture


class Command(BaseCommand):
    help = (
        "Create or refresh the triggers that capture changes made outside save() for Resources with "
        'capture = "database" (PostgreSQL only; migrate runs this too).'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the database alias (default: %(default)s)")

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        if not capture.supported(database):
            self.stderr.write(f"{database}: not PostgreSQL; only save() and delete() are broadcast there.")
            return
        for table in capture.install(database):
            self.stdout.write(f"capturing {table}")
