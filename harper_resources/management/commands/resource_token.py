"""``manage.py resource_token <username> [--expires SECONDS]``: print a Bearer token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from harper_resources import tokens


class Command(BaseCommand):
    help = (
        "Print a signed token for Authorization: Bearer <token> on resource sockets. It expires after "
        "--expires seconds, and a change of the user's password revokes it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--expires",
            type=int,
            default=tokens.DEFAULT_EXPIRES,
            help="lifetime in seconds (default: %(default)s)",
        )

    def handle(self, *args: Any, username: str, expires: int, **options: Any) -> None:
        if expires < 1:
            raise CommandError("--expires must be at least 1 second")
        model = get_user_model()
        try:
            user = model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        self.stdout.write(tokens.make_token(user, expires))
