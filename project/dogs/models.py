from django.db import models


class Dog(models.Model):
    """A dog of the demo: each record is live at /dog/<id> over a WebSocket."""

    name = models.CharField(max_length=100)
    breed = models.CharField(max_length=100, blank=True)
    age = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name
