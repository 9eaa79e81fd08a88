"""The one place where aiohttp and asyncio exceptions become shoal error kinds."""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp

from shoal.result import Error, ErrorKind

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_MAX_MESSAGE = 500


def _message(exc: BaseException, fallback: str) -> str:
    text = str(exc).strip() or fallback
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def classify(exc: BaseException) -> Error:
    """The error kind and message for an exception raised while making a request."""
    kind = _kind(exc)
    host = exc.host if isinstance(exc, aiohttp.ClientConnectorError) else None
    return Error(kind, _message(exc, type(exc).__name__), host=host)


def _kind(exc: BaseException) -> ErrorKind:
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ErrorKind.TOO_MANY_REDIRECTS
    if isinstance(exc, aiohttp.NonHttpUrlRedirectClientError | aiohttp.NonHttpUrlClientError):
        return ErrorKind.UNSUPPORTED_SCHEME
    if isinstance(exc, aiohttp.InvalidURL):
        return ErrorKind.INVALID_URL
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        return ErrorKind.DNS
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return ErrorKind.TLS
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorKind.DNS if isinstance(exc.os_error, socket.gaierror) else ErrorKind.CONNECT
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return ErrorKind.RESET
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__
        if "not completed" in str(exc) or isinstance(cause, ConnectionResetError):
            return ErrorKind.RESET
        return ErrorKind.PROTOCOL
    if isinstance(exc, aiohttp.ClientResponseError):
        if "Got more than" in exc.message or "too long" in exc.message.lower():
            return ErrorKind.TOO_LARGE
        return ErrorKind.PROTOCOL
    if isinstance(exc, OSError):
        return ErrorKind.RESET if exc.errno in _RESET_ERRNOS else ErrorKind.CONNECT
    return ErrorKind.PROTOCOL
