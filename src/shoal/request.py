"""What a user asks for: a :class:`Request`, how its URL is checked, and how it is keyed.

The key is what deduplicates a job: the user's ``id`` when given, otherwise the method, the
normalised URL and the body. The spec is the compact form a request takes in the journal.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

import orjson
from yarl import URL

from shoal.errors import Error, ErrorKind

SCHEMES = frozenset({"http", "https"})
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_MAX_URL_CHARS = 16_384
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to make. Only ``url`` is required.

    ``id`` is the deduplication key when given; ``meta`` is any JSON value, echoed into the
    record untouched.
    """

    url: str
    _: KW_ONLY
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    body: str | bytes | None = None
    id: str | None = None
    meta: Any = None

    def is_plain(self) -> bool:
        """True when the URL alone describes the request."""
        return (
            self.method == "GET"
            and not self.headers
            and self.body is None
            and self.id is None
            and self.meta is None
        )


def check_url(text: str) -> URL | Error:
    """Parse and validate a URL, returning the normalised URL or why it cannot be fetched."""
    if len(text) > _MAX_URL_CHARS:
        return Error(ErrorKind.INVALID_URL, f"URL longer than {_MAX_URL_CHARS} characters")
    # isprintable() is False for control characters, line breaks, tabs, separators other than
    # the ASCII space, and lone surrogates (text that came from undecodable bytes).
    if not text or not text.isprintable() or text != text.strip():
        return Error(
            ErrorKind.INVALID_URL,
            "URL is empty, or holds whitespace, control characters or invalid Unicode",
        )
    problem = _authority_problem(text)
    if problem is not None:
        return Error(ErrorKind.INVALID_URL, problem)
    try:
        url = URL(text)
        scheme = url.scheme
        host = url.raw_host
        url.port  # noqa: B018 - raises for an out-of-range port
    except Exception as exc:  # noqa: BLE001 - yarl raises several kinds for malformed URLs
        return Error(ErrorKind.INVALID_URL, f"cannot parse URL: {exc}")
    if not scheme:
        return Error(ErrorKind.INVALID_URL, "URL has no scheme (expected http:// or https://)")
    if scheme not in SCHEMES:
        return Error(ErrorKind.UNSUPPORTED_SCHEME, f"scheme {scheme!r} is not http or https")
    if not host:
        return Error(ErrorKind.INVALID_URL, "URL has no host")
    if ":" not in host and not _valid_host_name(host):
        return Error(ErrorKind.INVALID_URL, f"invalid host name {host!r}")
    if url.port == 0:
        return Error(ErrorKind.INVALID_URL, "port 0 is not a valid port")
    return normalise(url)


def normalise(url: URL) -> URL:
    """The URL shoal sends for a parsed ``url``: ``http://host`` as ``http://host/`` (one
    resource), and no fragment (never sent)."""
    if url.raw_path == "/":
        url = url.with_path("/", keep_query=True)
    return url.with_fragment(None)


def _authority_problem(text: str) -> str | None:
    """What is wrong with the host and port of ``scheme://authority/...``, if anything.

    yarl is lenient here: it accepts brackets around things that are not IPv6 addresses,
    and ports such as ``+80``, ``8_0`` or non-ASCII digits.
    """
    match = _AUTHORITY.match(text)
    if match is None:
        return None  # no authority to check: the parser decides
    authority = match.group(1).rpartition("@")[2]
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return "unclosed IPv6 address in brackets"
        try:
            ipaddress.IPv6Address(authority[1:end])
        except ValueError:
            return f"{authority[: end + 1]!r} is not an IPv6 address"
        rest = authority[end + 1 :]
        if rest and not rest.startswith(":"):
            return f"unexpected {rest!r} after the IPv6 address"
        port = rest[1:]
    elif "[" in authority or "]" in authority:
        return f"brackets in host {authority!r}"
    else:
        port = authority.rpartition(":")[2] if ":" in authority else ""
    if port and not (port.isascii() and port.isdigit()):
        return f"port {port!r} is not a number"
    return None


@functools.lru_cache(maxsize=4096)
def _valid_host_name(host: str) -> bool:
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def request_key(request: Request, url: URL) -> bytes:
    """The deduplication key: 16 bytes, from the id or from method, URL and body."""
    if request.id is not None:
        data = b"id\0" + request.id.encode()
    else:
        data = request.method.upper().encode() + b"\0" + str(url).encode()
        body = request.body
        if body is not None:
            data += b"\0" + (body.encode() if isinstance(body, str) else body)
    return hashlib.blake2b(data, digest_size=16).digest()


def invalid_key(position: int) -> bytes:
    """The key of an input item that is not a valid request: its position in the input."""
    return b"invalid\0" + str(position).encode()


def encode_spec(request: Request) -> bytes:
    """The compact journal form of a request: the bare URL when that says everything."""
    if request.is_plain() and not request.url.startswith("{"):
        return request.url.encode()
    return orjson.dumps(spec_fields(request))


def spec_fields(request: Request) -> dict[str, Any]:
    """The request as a JSON-ready object, leaving out fields at their defaults."""
    spec: dict[str, Any] = {"url": request.url}
    if request.method != "GET":
        spec["method"] = request.method
    if request.headers:
        spec["headers"] = dict(request.headers)
    if request.body is not None:
        if isinstance(request.body, bytes):
            spec["body_hex"] = request.body.hex()
        else:
            spec["body"] = request.body
    if request.id is not None:
        spec["id"] = request.id
    if request.meta is not None:
        spec["meta"] = request.meta
    return spec


def decode_spec(spec: bytes) -> Request:
    """The inverse of :func:`encode_spec`."""
    if not spec.startswith(b"{"):
        return Request(spec.decode())
    return request_from_fields(orjson.loads(spec))


def request_from_fields(data: dict[str, Any]) -> Request:
    """The inverse of :func:`spec_fields`."""
    body: str | bytes | None = data.get("body")
    if "body_hex" in data:
        body = bytes.fromhex(data["body_hex"])
    return Request(
        data["url"],
        method=data.get("method", "GET"),
        headers=data.get("headers"),
        body=body,
        id=data.get("id"),
        meta=data.get("meta"),
    )
