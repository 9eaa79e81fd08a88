"""The one place where aiohttp and asyncio exceptions become shoal error kinds."""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from shoal.fetching.dns import LookupFailed, NameNotFound
from shoal.result import Error, ErrorKind, endpoint, endpoint_of

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_MAX_MESSAGE = 500


def _message(exc: BaseException, fallback: str) -> str:
    text = str(exc).strip() or fallback
    cause = exc.__cause__
    if isinstance(exc, aiohttp.ClientPayloadError) and isinstance(cause, HttpProcessingError):
        # aiohttp quotes its parser's error as a repr ("<ContentLengthError: 400,
        # message='Not enough data...'>"): keep the words only.
        text = text.replace(repr(cause), cause.message)
    return _clipped(text)


def undecodable(coding: str, reason: str) -> Error:
    """The error of a body whose content coding cannot be undone (``coding``: the
    Content-Encoding as sent; ``reason``: unknown, invalid, or cut short)."""
    return Error(
        ErrorKind.PROTOCOL,
        _clipped(f"cannot decode the body (Content-Encoding: {coding}): {reason}"),
    )


def classify(exc: BaseException) -> Error:
    """The error kind and message for an exception raised while making a request."""
    where = None
    if isinstance(exc, aiohttp.ClientConnectorError):
        # What the connection went to (a proxy's own key when the proxy could not be reached).
        where = endpoint(_secure(exc), exc.host, exc.port)
        cause = exc.os_error
        if isinstance(cause, NameNotFound | LookupFailed):  # the resolver's own words
            kind = ErrorKind.DNS if isinstance(cause, NameNotFound) else ErrorKind.CONNECT
            return Error(kind, cause.strerror or "DNS lookup failed", endpoint=where)
    if isinstance(exc, aiohttp.ClientSSLError):
        return Error(ErrorKind.TLS, _clipped(_tls_message(exc)), endpoint=where)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy's answer to CONNECT: the tunnel failed, so the host was not reached; the
        # error names the proxy, so the target's endpoint is not counted as unreachable.
        proxy = endpoint_of(exc.request_info.real_url)
        return Error(ErrorKind.CONNECT, _clipped(_proxy_message(exc)), endpoint=proxy)
    return Error(_kind(exc), _message(exc, type(exc).__name__), endpoint=where)


def _secure(exc: aiohttp.ClientConnectorError) -> bool:
    """Whether the failed connection was to speak TLS: its key (aiohttp's ``ConnectionKey``,
    the error's first argument) says so; ``exc.ssl`` is the TLS setting, set for http too."""
    key = exc.args[0] if exc.args else None
    return getattr(key, "is_ssl", False) is True


# -- TLS and proxy faults, in words that name the cause ------------------------------------

#: OpenSSL's certificate verification codes (``X509_V_ERR_*``), as a person says them.
_CERTIFICATE_FAULTS = {
    2: "was issued by an unknown CA (its issuer is not trusted)",
    9: "is not valid yet",
    10: "has expired",
    18: "is self-signed (it is its own issuer, and not trusted)",
    19: "chains to a self-signed root that is not trusted",
    20: "was issued by an unknown CA (its issuer is not trusted)",
    21: "was issued by an unknown CA (its issuer is not trusted)",
    23: "has been revoked",
    24: "was issued by a certificate that is not a CA",
    26: "is not meant for a TLS server",
    62: "is for another host name",
    64: "is for another IP address",
}

#: OpenSSL's reasons for a failed handshake (other than the certificate), grouped by cause.
_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "HTTP_REQUEST",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LAYER_FAILURE",
    }
)
_NO_COMMON_VERSION = frozenset(
    {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"}
)
_HANDSHAKE_CAUSES = {
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server refused the handshake",
    "NO_SHARED_CIPHER": "the server and shoal have no cipher in common",
    "NO_CIPHERS_AVAILABLE": "the server and shoal have no cipher in common",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server wants a client certificate",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the handshake",
    "TLSV1_UNRECOGNIZED_NAME": "the server does not serve this host name",
}


def _openssl_words(exc: BaseException) -> str:
    """OpenSSL's message without its codes: ``[SSL: X] words (_ssl.c:1006)`` -> ``words``."""
    text = str(exc.args[1]) if isinstance(exc, ssl.SSLError) and len(exc.args) > 1 else str(exc)
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    if text.endswith(")") and " (_ssl.c:" in text:
        text = text.rsplit(" (_ssl.c:", 1)[0]
    return text.strip().rstrip(".")


def _tls_message(exc: aiohttp.ClientSSLError) -> str:
    where = f"{exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        problem = exc.certificate_error
        if isinstance(problem, ssl.SSLCertVerificationError) and problem.verify_message:
            cause = _CERTIFICATE_FAULTS.get(problem.verify_code, "was not accepted")
            return (
                f"TLS certificate of {where} {cause} "
                f"(certificate verify failed: {problem.verify_message.rstrip('.')})"
            )
        return f"TLS certificate of {where} was not accepted ({_openssl_words(problem)})"
    cause_error = exc.os_error
    reason = getattr(cause_error, "reason", None) or ""
    if reason in _NOT_TLS:
        cause = "the server does not speak TLS on this port"
    elif reason in _NO_COMMON_VERSION:
        cause = "the server and shoal have no TLS version in common"
    else:
        cause = _HANDSHAKE_CAUSES.get(reason, "the handshake failed")
    words = _openssl_words(cause_error)
    return f"TLS handshake with {where} failed: {cause}" + (f" ({words})" if words else "")


def _proxy_message(exc: aiohttp.ClientHttpProxyError) -> str:
    proxy, target = exc.request_info.real_url, exc.request_info.url
    answer = f"{exc.status} {exc.message}".strip()
    return (
        f"proxy {proxy.host}:{proxy.port} refused the tunnel to {target.host}:{target.port} "
        f"(it answered CONNECT with {answer})"
    )


def _clipped(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


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
