"""The errors of the wire transport, in the kinds and words of the aiohttp transport's
(:mod:`shoal.fetching.failures`), so a record does not depend on the transport."""

from __future__ import annotations

import errno
import socket
import ssl

from shoal.errors import Error, ErrorKind
from shoal.fetching import failures
from shoal.fetching.dns import LookupFailed, NameNotFound
from shoal.fetching.transport import TransportFailure
from shoal.result import endpoint

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class Disconnected(TransportFailure):
    """The connection closed before the response's headers were in; ``early``: before any
    byte of the response arrived (a reused connection may then be resent)."""

    def __init__(self, error: Error, *, early: bool) -> None:
        super().__init__(error)
        self.early = early


def tls_shown(tls: ssl.SSLContext | bool) -> str:
    """The TLS setting as aiohttp's connect error shows it."""
    return "default" if tls is True else str(tls)


def connect_failed(
    exc: OSError, *, secure: bool, host: str, port: int, tls: ssl.SSLContext | bool
) -> Error:
    """A failure to open a connection to ``host:port`` (lookup, TCP or TLS)."""
    where = endpoint(secure, host, port)
    if isinstance(exc, NameNotFound | LookupFailed):  # the resolver's own words
        kind = ErrorKind.DNS if isinstance(exc, NameNotFound) else ErrorKind.CONNECT
        return Error(kind, exc.strerror or "DNS lookup failed", endpoint=where)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Error(ErrorKind.TLS, _tls_message(exc, host, port), endpoint=where)
    strerror = exc.strerror if exc.strerror is not None else str(exc)
    text = f"Cannot connect to host {host}:{port} ssl:{tls_shown(tls)} [{strerror}]"
    dns = isinstance(exc, socket.gaierror) or (
        exc.errno is not None and exc.errno in (socket.EAI_NONAME, socket.EAI_AGAIN)
    )
    return Error(ErrorKind.DNS if dns else ErrorKind.CONNECT, text[:500], endpoint=where)


def _tls_message(exc: OSError, host: str, port: int) -> str:
    """In the words of :func:`shoal.fetching.failures.classify` (its tables of causes)."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_message:
            cause = failures._CERTIFICATE_FAULTS.get(exc.verify_code, "was not accepted")
            return (
                f"TLS certificate of {where} {cause} "
                f"(certificate verify failed: {exc.verify_message.rstrip('.')})"
            )[:500]
        words = failures._openssl_words(exc)
        return f"TLS certificate of {where} was not accepted ({words})"[:500]
    reason = getattr(exc, "reason", None) or ""
    if reason in failures._NOT_TLS:
        cause = "the server does not speak TLS on this port"
    elif reason in failures._NO_COMMON_VERSION:
        cause = "the server and shoal have no TLS version in common"
    else:
        cause = failures._HANDSHAKE_CAUSES.get(reason, "the handshake failed")
    words = failures._openssl_words(exc)
    text = f"TLS handshake with {where} failed: {cause}" + (f" ({words})" if words else "")
    return text[:500]


def lost(exc: BaseException | None, *, early: bool) -> Disconnected:
    """The connection closed (``exc``: why, if the socket said) before the headers."""
    if isinstance(exc, OSError):
        kind = ErrorKind.RESET if exc.errno in _RESET_ERRNOS else ErrorKind.CONNECT
        return Disconnected(Error(kind, str(exc)[:500]), early=early)
    return Disconnected(Error(ErrorKind.RESET, "Server disconnected"), early=early)


def cut_short(received: int, expected: int | None) -> TransportFailure:
    """The connection closed before the body's end (``expected``: its Content-Length)."""
    if expected is None:
        why = "Not enough data to satisfy transfer length header."
    else:
        why = (
            "Not enough data to satisfy content length header "
            f"(received {received} of {expected} bytes)."
        )
    return TransportFailure(Error(ErrorKind.RESET, f"Response payload is not completed: {why}"))


def invalid(reason: str) -> TransportFailure:
    """A response shoal cannot parse."""
    return TransportFailure(Error(ErrorKind.PROTOCOL, f"invalid HTTP response: {reason}"[:500]))


def too_large(what: str, limit: int) -> TransportFailure:
    return TransportFailure(
        Error(ErrorKind.TOO_LARGE, f"Got more than {limit} bytes when reading {what}.")
    )


def read_timeout() -> TransportFailure:
    return TransportFailure(Error(ErrorKind.TIMEOUT, "Timeout on reading data from socket"))


def unsupported(what: str) -> TransportFailure:
    """A request the wire transport does not send yet (the aiohttp transport does)."""
    return TransportFailure(
        Error(ErrorKind.PROTOCOL, f"the wire transport does not support {what} yet")
    )
