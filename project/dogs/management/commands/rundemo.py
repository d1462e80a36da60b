"""``manage.py rundemo``: migrate, add sample dogs and an admin user, then serve the demo."""

import os

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from project.dogs.models import Dog

SAMPLE_DOGS = [
    {"id": 341, "name": "Rex", "breed": "Beagle", "age": 3},
    {"id": 342, "name": "Luna", "breed": "Border Collie", "age": 5},
    {"id": 343, "name": "Biscuit", "breed": "Dachshund", "age": 2},
]


class Command(BaseCommand):
    help = "Migrate, add sample dogs and an admin user (if missing), then run the demo server."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="where to listen")
        parser.add_argument("--no-serve", action="store_true", help="prepare the database only")

    def handle(self, *args, addrport, no_serve, **options):
        if os.environ.get("RUN_MAIN") == "true":
            # runserver's autoreloader runs this command again in its child: serve only.
            call_command("runserver", addrport)
            return
        call_command("migrate", interactive=False, verbosity=0)
        for dog in SAMPLE_DOGS:
            Dog.objects.get_or_create(id=dog["id"], defaults=dog)
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "admin")
        User = get_user_model()
        if not User.objects.filter(username=username).exists():
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"Created the admin user {username!r} with password {password!r}.")
        host = addrport if ":" in addrport else f"127.0.0.1:{addrport}"
        self.stdout.write(
            f"\nDog profile: http://{host}/dogs/341/   Admin: http://{host}/admin/ "
            f"(log in as {username!r}; the password is {password!r} unless you set DJANGO_SUPERUSER_PASSWORD)\n"
        )
        if not no_serve:
            call_command("runserver", addrport)
