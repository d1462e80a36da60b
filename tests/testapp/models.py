"""Models with the primary keys and field types a real project has."""

import uuid

from django.db import models


class Gadget(models.Model):
    """UUID key; datetime, Decimal, UUID, JSON, file and bytes fields."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=50)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    made = models.DateTimeField(null=True)
    serial = models.UUIDField(null=True)
    specs = models.JSONField(default=dict)
    manual = models.FileField(blank=True)
    blob = models.BinaryField(null=True)


class Tag(models.Model):
    """Text key: spaces, unicode, slashes and long strings are all valid keys."""

    name = models.CharField(max_length=300, primary_key=True)
    color = models.CharField(max_length=20, default="")


class Stamped(models.Model):
    """A record with an auto_now field (its version is still the database's, not this field)."""

    title = models.CharField(max_length=50)
    updated = models.DateTimeField(auto_now=True)


class Unwatched(models.Model):
    """No resource names it: its saves are never broadcast."""

    title = models.CharField(max_length=50)


class Animal(models.Model):
    """A parent table of multi-table inheritance: a Resource watches it."""

    name = models.CharField(max_length=50)


class Cat(Animal):
    """A multi-table child no Resource names: its saves change the Animal table too."""

    indoor = models.BooleanField(default=True)
