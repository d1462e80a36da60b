"""The exceptions harper_resources raises, in one place."""

from __future__ import annotations


class HarperResourcesError(Exception):
    """Base class of every error this app raises on purpose."""


class CloseConnection(HarperResourcesError):
    """Raise inside a resource to close its socket with ``code`` and a short ``reason``.

    The reason is sent to the client as is, so it must not carry internals.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class NotLoggedIn(CloseConnection):
    """The connection has no authenticated user and the resource needs one (close 3000)."""

    def __init__(self, reason: str = "Must login") -> None:
        super().__init__(3000, reason)


class Forbidden(CloseConnection):
    """The user may not read this resource (close 3003)."""

    def __init__(self, reason: str = "Unauthorized access to resource") -> None:
        super().__init__(3003, reason)


class ResourceNotFound(CloseConnection):
    """No resource answers at this path, or the id can never name a record (close 4404)."""

    def __init__(self, reason: str = "No resource at this path") -> None:
        super().__init__(4404, reason)


class BadRequest(CloseConnection):
    """A subscription option in the URL is not valid, e.g. ``?since=abc`` (close 4400)."""

    def __init__(self, reason: str = "Bad subscription option") -> None:
        super().__init__(4400, reason)


class NotAcceptable(CloseConnection):
    """The client asked for a wire format this server cannot write, e.g. MessagePack
    without the ``msgpack`` package (close 4406; an HTTP view answers 406)."""

    def __init__(self, reason: str = "Format not available") -> None:
        super().__init__(4406, reason)


class InvalidStream(HarperResourcesError):
    """``connect()`` returned something that is not an async iterable (closes 1011)."""
