"""Why things fail: the kinds of a failed request, and the exceptions shoal raises.

A failed URL is never an exception: it is a :class:`shoal.Result` whose ``error`` (an
:class:`Error` of an :class:`ErrorKind`) says what went wrong. Only faults that end the whole
run raise, and they all derive from :class:`ShoalError`. This module imports nothing of
shoal's: every part may use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorKind(enum.StrEnum):
    """The fixed set of reasons a request can fail. The value is what the record holds."""

    INVALID_URL = "invalid_url"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    RESET = "reset"
    PROTOCOL = "protocol"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    HTTP_STATUS = "http_status"
    HANDLER = "handler"
    #: A mapped coroutine raised, or returned what cannot be recorded (``shoal.map``).
    TASK = "task"
    #: A mapped item that cannot be journalled, or whose key or group cannot be had.
    INVALID_ITEM = "invalid_item"
    ROBOTS = "robots"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Error:
    """Why a request failed: a kind from :class:`ErrorKind` and a human-readable message."""

    kind: ErrorKind
    message: str
    #: Set by a handler's ``Rejected(..., retry=True)``: retry under the policy first.
    retry: bool = False
    #: For ``dns`` and ``connect``: the endpoint that could not be reached, as
    #: :func:`shoal.result.endpoint` names it (after a redirect, the hop's, not the one the
    #: request named; the proxy's, when the proxy failed). Not part of the record.
    endpoint: str | None = None

    def to_record(self) -> dict[str, str]:
        return {"kind": self.kind.value, "message": self.message}


class ShoalError(Exception):
    """Base class of every fault that ends a run."""


class ConfigError(ShoalError, ValueError):
    """An option or configuration value is invalid.

    ``option`` names the offending setting (for the command line, the option's name), so the
    message can point the user at it.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class JournalError(ShoalError):
    """The journal cannot be used: it belongs to another job, or it is unreadable."""


class SettingsMismatch(JournalError):
    """A worker's settings differ from those of the shared job it joins: ``differences``
    holds each differing setting's path (``politeness.per_second``), this worker's value
    and the job's."""

    def __init__(self, job: str, differences: tuple[tuple[str, object, object], ...]) -> None:
        shown = "; ".join(
            f"{path} is {mine!r} here, {theirs!r} in the job" for path, mine, theirs in differences
        )
        super().__init__(
            f"this worker's settings differ from job {job!r}'s ({shown}): every worker of a"
            " job applies the job's settings"
        )
        self.job = job
        self.differences = differences


class OutputError(ShoalError):
    """An output cannot be written (disk full, read-only path, file size limit).

    Everything committed before the fault stays in the journal; a later run resumes.
    """


class Rejected(Exception):
    """Raised by a response handler to mark a response as failed.

    The result gets the error kind ``handler`` with this message. With ``retry=True`` the
    request is retried under the engine's retry policy first.
    """

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
