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


class Change(models.Model):
    """One committed change of a record, as its subscribers received it: the change log.

    Written in the changing transaction, beside the version. It answers resumes
    (``?since=``), ``?previousCount=``, and catch-up after a lost broadcast (a channel
    layer that was down, a writer killed after its commit). Kept for
    ``HARPER_RESOURCES_LOG_RETENTION`` seconds and at most ``LOG_MAX_CHANGES`` rows.
    """

    table = models.CharField(max_length=100)
    #: The record's group name (``protocol.record_group``): short and unique per record.
    record = models.CharField(max_length=100)
    kind = models.CharField(max_length=10)
    version = models.FloatField()
    frame = models.TextField()

    class Meta:
        indexes = [
            models.Index(fields=["record", "version"], name="harper_change_record"),
            models.Index(fields=["table", "version"], name="harper_change_table"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.record} @ {self.version}"
