"""The app's own table: the stored version of every record a Resource streams."""

from __future__ import annotations

from django.db import models


class RecordVersion(models.Model):
    """The version of a record's last committed change (``put`` or ``delete``).

    Written in the same transaction as the change, so versions of one record increase in
    commit order whatever process or machine wrote them; read with the record so a first
    ``put`` carries the version of the state it shows. A ``delete`` keeps its row (a
    tombstone) so a re-created record continues from it.
    """

    table = models.CharField(max_length=100)
    key = models.CharField(max_length=255)
    version = models.FloatField()
    deleted = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["table", "key"], name="harper_record_version_unique")]

    def __str__(self) -> str:
        return f"{self.table} {self.key} @ {self.version}"
