"""The iotiam error hierarchy: one root, a few families, no transport knowledge.

Adapters map each family to their own vocabulary (HTTP status + problem type in
``api/problems.py``, a one-line message and exit code in the CLI).
"""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger("iotiam")


class IamError(Exception):
    """Root of every error iotiam raises on purpose."""

    #: short stable slug, becomes the problem type URN suffix
    kind = "error"
    title = "iotiam error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def diagnostics(self) -> str:
        """A one-line human explanation, suitable for a CLI or a log."""
        return self.detail


class InvalidInput(IamError):
    """The caller sent something malformed or not allowed."""

    kind = "invalid-input"
    title = "Invalid input"


class PayloadTooLarge(InvalidInput):
    """The request body is larger than this endpoint accepts."""

    kind = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(InvalidInput):
    """The request body is of a media type this endpoint does not read."""

    kind = "unsupported-media-type"
    title = "Unsupported media type"


class NotFound(IamError):
    """The object does not exist, or the caller may not know that it does."""

    kind = "not-found"
    title = "Not found"


class Conflict(IamError):
    """The request contradicts current state (duplicate, final state, wrong transition)."""

    kind = "conflict"
    title = "Conflict"


class IdNotAvailable(Conflict):
    """An id or name is taken; by whom is not said (G9, docs/tenancy.md).

    Ids are unique across the installation, so a tenant cannot take one another tenant
    holds. The answer is the same whoever holds it (the caller's own tenant or another),
    and names neither the holder nor its org unit.
    """

    def __init__(self, what: str, value: str) -> None:
        super().__init__(f"{what} {value!r} is not available: ids are unique across the "
                         "whole installation; choose another")
        #: what kind of id ("device id", "policy name" ...) and the one asked for, for a
        #: caller that tries another (never the message text, which is for people)
        self.what = what
        self.value = value


class Unauthenticated(IamError):
    """No valid credentials were presented."""

    kind = "unauthenticated"
    title = "Authentication required"


class Forbidden(IamError):
    """The caller is known but its role does not allow the action."""

    kind = "forbidden"
    title = "Forbidden"


class TooManyRequests(IamError):
    """A bounded resource (e.g. the queue of held enrollments) is full for this caller."""

    kind = "too-many-requests"
    title = "Too many requests"


class InternalError(IamError):
    """A bug met while answering one request: that request fails, its neighbours go on."""

    kind = "internal"
    title = "Internal error"


def contained(error: Exception, what: str) -> IamError:
    """The error to answer one request of a batch with (G12): its own ``IamError``, or for
    anything else (a bug) an ``InternalError``, logged here with its traceback."""
    if isinstance(error, IamError):
        return error
    _log.error("%s failed; only it is refused", what, exc_info=error)
    return InternalError(f"internal error while answering {what}; the error was logged")


class SetupError(IamError):
    """Local setup is missing or broken (no data directory, wrong passphrase)."""

    kind = "setup"
    title = "Setup error"


class StreamUnavailable(IamError):
    """The event stream (NATS JetStream) cannot take events now: try again later."""

    kind = "stream-unavailable"
    title = "Event stream unavailable"
