"""Turning library items into entries: strings, URLs, Requests and mappings for a fetch,
any JSON values for a mapped coroutine (:class:`ItemKeys`)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from typing import Any

import orjson
from yarl import URL

from shoal.job import Entry, Item
from shoal.request import Request, check_url, encode_spec, invalid_key, request_key
from shoal.result import Error, ErrorKind
from shoal.sources.source import Position, Source

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELDS = frozenset({"url", "method", "headers", "body", "id", "meta"})
_RAW_CHARS = 2048


def invalid_entry(
    raw: str,
    position: int,
    line: int | None,
    message: str,
    kind: ErrorKind = ErrorKind.INVALID_URL,
) -> Entry:
    """An entry for input that is not a request at all.

    ``raw`` is kept (cut short, and with anything that is not valid Unicode escaped) so the
    error record shows what the input held.
    """
    where = f"line {line}: " if line is not None else ""
    return Entry(
        Request(_printable(raw)), invalid_key(position), line, None, Error(kind, where + message)
    )


def _as_text(data: Mapping[str, Any]) -> str:
    try:
        return orjson.dumps(dict(data), option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return repr(dict(data))


def _printable(raw: str) -> str:
    return raw[:_RAW_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")


def entry_for_request(request: Request, position: int, line: int | None) -> Entry:
    """Check a request and key it; a bad URL, method or header gives an error entry."""
    problem = _request_problem(request)
    if problem is not None:
        return invalid_entry(request.url, position, line, problem)
    checked = check_url(request.url)
    if isinstance(checked, Error):
        # A request whose only fault is its URL keeps its id, method and meta in the record.
        where = f"line {line}: " if line is not None else ""
        error = Error(checked.kind, where + checked.message)
        kept = dataclasses.replace(request, url=_printable(request.url), headers=None, body=None)
        return Entry(kept, invalid_key(position), line, None, error)
    return Entry(request, request_key(request, checked), line, checked, None)


def entry_for_mapping(
    data: Mapping[str, Any],
    position: int,
    line: int | None,
    default_method: str = "GET",
    text: str | None = None,
) -> Entry:
    """Build an entry from a JSON-style object with ``url`` and optional fields.

    ``text`` is the input line the object was read from: an object that is not a request
    is recorded by its URL when it has a string one, else by that text exactly as written
    (by its JSON when it came from the library, not from a line).
    """
    url = data.get("url")
    raw = url if isinstance(url, str) else text if text is not None else _as_text(data)
    unknown = set(data) - _FIELDS
    if unknown:
        return invalid_entry(raw, position, line, f"unknown field(s): {', '.join(sorted(unknown))}")
    if not isinstance(url, str):
        return invalid_entry(raw, position, line, "object has no string field 'url'")
    method = data.get("method", default_method)
    headers = data.get("headers")
    body = data.get("body")
    ident = data.get("id")
    if not isinstance(method, str):
        return invalid_entry(raw, position, line, "'method' must be a string")
    if headers is not None and not (
        isinstance(headers, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        return invalid_entry(raw, position, line, "'headers' must map strings to strings")
    if body is not None and not isinstance(body, str | bytes):
        return invalid_entry(raw, position, line, "'body' must be a string")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if ident is not None and not isinstance(ident, str):
        return invalid_entry(raw, position, line, "'id' must be a string or an integer")
    request = Request(
        url,
        method=method.upper(),
        headers=dict(headers) if headers else None,
        body=body,
        id=ident,
        meta=data.get("meta"),
    )
    return entry_for_request(request, position, line)


def entry_for(item: object, position: int) -> Entry:
    """The entry for one library item; ``position`` counts items from 1."""
    if isinstance(item, str):
        return entry_for_request(Request(item.strip()), position, position)
    if isinstance(item, URL):
        return entry_for_request(Request(str(item)), position, position)
    if isinstance(item, Request):
        return entry_for_request(item, position, position)
    if isinstance(item, Mapping):
        return entry_for_mapping(item, position, position)
    return invalid_entry(repr(item), position, position, f"unsupported item {type(item).__name__}")


def valid_method(method: str) -> bool:
    """Whether ``method`` is a well-formed HTTP method (a token)."""
    return _TOKEN.fullmatch(method) is not None


def _request_problem(request: Request) -> str | None:
    if request.is_plain():
        return None
    if not _TOKEN.fullmatch(request.method):
        return f"invalid method {request.method!r}"
    for name, value in (request.headers or {}).items():
        if not _TOKEN.fullmatch(name):
            return f"invalid header name {name!r}"
        if any(c in value for c in "\r\n\x00"):
            return f"header {name!r} holds a line break or NUL"
    try:
        encode_spec(request)  # the journal must be able to hold it
    except (TypeError, UnicodeEncodeError) as exc:
        return f"request cannot be stored: {exc}"
    return None


#: How the name of a map's input starts (``<map module.function>``): the journal of a map
#: job says so, and the tools that read it name groups rather than hosts.
MAP_INPUT = "<map "


class ItemKeys:
    """Turns the items of a mapped coroutine into entries: each one's key (``key(item)``,
    by default its canonical JSON: keys sorted, no spaces) deduplicates it and names it in
    the journal; ``group(item)`` gives the bucket that per-group caps and rates apply to.

    An item that cannot be journalled (not JSON), or whose key or group cannot be had (the
    function raises, or gives what is not a string), becomes an ``invalid_item`` error
    entry, and the run goes on.
    """

    def __init__(
        self,
        key: Callable[[Any], object] | None = None,
        group: Callable[[Any], object] | None = None,
    ) -> None:
        self._key = key
        self._group = group

    def entry(self, value: object, position: int) -> Entry:
        try:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError as exc:
            return invalid_item(repr(value), position, f"not a JSON value: {exc}")
        try:
            key = text.decode() if self._key is None else _text(self._key(value), "key")
            group = None if self._group is None else _text(self._group(value), "group")
        except Exception as exc:  # noqa: BLE001 - the user's function fails this item only
            return invalid_item(value, position, f"{type(exc).__name__}: {exc}")
        digest = hashlib.blake2b(b"item\0" + key.encode(), digest_size=16).digest()
        return Entry(Item(value, key, group), digest, position, None, None)

    def line(self, raw: bytes, line: int) -> Entry | None:
        """The entry for one line of a file of items (a JSON value a line); ``None`` for a
        blank line."""
        if not raw.strip():
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            text = raw.decode("utf-8", "backslashreplace").strip()
            return invalid_item(text, line, f"malformed JSON: {exc}")
        return self.entry(value, line)


def _text(value: object, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"{name}() gave {type(value).__name__}, not a string or an integer")


def invalid_item(value: object, position: int, message: str) -> Entry:
    """An entry for an item that cannot be mapped, keeping what can be kept of it."""
    if not isinstance(value, str):
        try:
            orjson.dumps(value)
        except TypeError:
            value = _printable(repr(value))
    key = value if isinstance(value, str) else orjson.dumps(value).decode()
    error = Error(ErrorKind.INVALID_ITEM, f"item {position}: {message}")
    return Entry(Item(value, _printable(key)), invalid_key(position), position, None, error)


class IterableSource(Source):
    """A source over any iterable or async iterable of request-like items (or of a mapped
    coroutine's items, each made an entry by ``parse``).

    A batch from an async iterable ends early when the next item is not ready yet, so items
    are fetched while the input waits (an input that depends on earlier results, such as
    a crawler's frontier, keeps moving).
    """

    def __init__(
        self,
        items: Iterable[object] | AsyncIterable[object],
        *,
        name: str = "<iterable>",
        parse: Callable[[object, int], Entry] = entry_for,
    ) -> None:
        self.name = name
        self._parse = parse
        self.position = Position()
        self._sync: Iterator[object] | None = None
        self._async: AsyncIterator[object] | None = None
        self._step: asyncio.Task[object] | None = None
        #: A list's or tuple's length: the job's size before it is read (duplicates and
        #: bad items may make it smaller).
        self._size = len(items) if isinstance(items, Sized) else None
        if isinstance(items, AsyncIterable):
            self._async = aiter(items)
        else:
            self._sync = iter(items)

    async def wait_total(self) -> int | None:
        return self._size

    async def skip_to(self, position: Position) -> None:
        for _ in range(position.items):
            if await self._next(wait=True) is _END:
                break
        self.position = position

    async def read_batch(self, limit: int) -> list[Entry] | None:
        entries: list[Entry] = []
        items = self.position.items
        while len(entries) < limit:
            item = await self._next(wait=not entries)
            if item is _END or item is _NOT_READY:
                break
            items += 1
            entries.append(self._parse(item, items))
        self.position = Position(items)
        return entries or None

    async def _next(self, *, wait: bool) -> object:
        if self._sync is not None:
            return next(self._sync, _END)
        assert self._async is not None
        step = self._step
        if step is None:
            step = self._step = asyncio.ensure_future(anext(self._async, _END))
        if not step.done():
            if wait:
                await asyncio.wait([step])  # a cancelled read leaves the step running
            else:
                await asyncio.sleep(0)  # one turn of the loop for an item that is at hand
                if not step.done():
                    return _NOT_READY
        self._step = None
        return step.result()

    async def aclose(self) -> None:
        step, self._step = self._step, None
        if step is not None and not step.done():
            step.cancel()
            await asyncio.wait([step])
        if step is not None and not step.cancelled():
            step.exception()  # retrieved: an error after the run ended is not reported
        closer = getattr(self._async, "aclose", None)
        if closer is not None:
            await closer()


_END = object()
_NOT_READY = object()
