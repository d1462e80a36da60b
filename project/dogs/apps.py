from django.apps import AppConfig


class DogsConfig(AppConfig):
    name = "project.dogs"
    label = "dogs"
    default_auto_field = "django.db.models.BigAutoField"
