"""Parsing option values that are more than a number: sizes, headers, retry sets, hosts,
the Python objects a map names, and ``status --watch``'s optional interval."""

from __future__ import annotations

import builtins
import importlib
import ipaddress
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Literal

import click

from shoal.config import DEFAULT_RETRY_ERRORS, DEFAULT_RETRY_STATUSES
from shoal.reporting.units import parse_size
from shoal.result import ErrorKind

RETRYABLE_KINDS = frozenset(
    {
        ErrorKind.DNS,
        ErrorKind.CONNECT,
        ErrorKind.TLS,
        ErrorKind.TIMEOUT,
        ErrorKind.RESET,
        ErrorKind.PROTOCOL,
    }
)
DEFAULT_RETRY_ON = ",".join(
    sorted(k.value for k in DEFAULT_RETRY_ERRORS) + [str(s) for s in sorted(DEFAULT_RETRY_STATUSES)]
)


class Size(click.ParamType):  # type: ignore[type-arg]
    """A byte size such as ``50MiB``, ``1G`` or ``1024``."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a size (examples: 1048576, 512KiB, 50MiB, 1G)", param, ctx)


class Address(click.ParamType):  # type: ignore[type-arg]
    """``[HOST:]PORT`` for a server to listen on (``8080``, ``0.0.0.0:8080``, ``[::1]:0``);
    the host defaults to 127.0.0.1 and port 0 picks a free one."""

    name = "[HOST:]PORT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        host, sep, port = text.rpartition(":")
        if not sep:
            host = "127.0.0.1"
        elif host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not port.isdigit() or int(port) > 65535 or (sep and not _listenable(host)):
            self.fail(f"{value!r} is not [HOST:]PORT (examples: 8080, 0.0.0.0:8080)", param, ctx)
        return host, int(port)


def _listenable(host: str) -> bool:
    if not host or any(c in host for c in "[]/ "):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ":" not in host  # a name
    return True


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    """``("Accept: text/html",)`` -> ``{"Accept": "text/html"}``."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition(":")
        name = name.strip()
        if not sep or not name or any(c in value for c in "\r\n\x00"):
            raise click.BadParameter(
                f"{value!r} is not 'Name: value'", param_hint="'-H' / '--header'"
            )
        headers[name] = text.strip()
    return headers


def parse_keep_headers(values: tuple[str, ...]) -> tuple[str, ...] | Literal["all"]:
    """``("ETag,Last-Modified", "Server")`` -> the names; ``all`` anywhere -> ``"all"``.
    A bad name is refused by :class:`shoal.Records` (named ``--keep-headers``)."""
    names = tuple(name.strip() for value in values for name in value.split(","))
    if any(name.lower() == "all" for name in names):
        return "all"
    if "" in names:
        raise click.BadParameter(
            f"{','.join(values)!r} has an empty header name", param_hint="'--keep-headers'"
        )
    return names


def parse_resolve(values: tuple[str, ...]) -> dict[str, str]:
    """``("example.com:127.0.0.1",)`` -> ``{"example.com": "127.0.0.1"}``."""
    mapping: dict[str, str] = {}
    for value in values:
        host, sep, address = value.partition(":")
        try:
            ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not HOST:ADDRESS with an IP address", param_hint="'--resolve'"
            ) from None
        if not sep or not host:
            raise click.BadParameter(f"{value!r} is not HOST:ADDRESS", param_hint="'--resolve'")
        mapping[host.lower()] = address.strip("[]")
    return mapping


def parse_retry_on(
    value: str, option: str = "--retry-on"
) -> tuple[frozenset[ErrorKind], frozenset[int]]:
    """``"connect,timeout,429,5xx"`` -> error kinds and statuses to retry."""
    kinds: set[ErrorKind] = set()
    statuses: set[int] = set()
    for token in (t.strip().lower() for t in value.split(",")):
        if not token:
            continue
        if len(token) == 3 and token[0] in "45" and token[1:] == "xx":
            base = int(token[0]) * 100
            statuses.update(range(base, base + 100))
        elif token.isdigit() and 400 <= int(token) <= 599:
            statuses.add(int(token))
        elif token in {k.value for k in RETRYABLE_KINDS}:
            kinds.add(ErrorKind(token))
        else:
            allowed = ", ".join(sorted(k.value for k in RETRYABLE_KINDS))
            raise click.BadParameter(
                f"{token!r} is not an error kind ({allowed}), a status such as 503, "
                "or a class such as 5xx",
                param_hint=f"'{option}'",
            )
    return frozenset(kinds), frozenset(statuses)


_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER.update({"h": 3600.0, "hour": 3600.0})


def parse_rate(value: str) -> float:
    """``"5/s"``, ``"30/m"``, ``"100/h"`` or ``"2.5"`` (per second) -> requests per second."""
    count, sep, unit = str(value).strip().lower().partition("/")
    seconds = _PER.get(unit.strip()) if sep else 1.0
    try:
        number = float(count)
    except ValueError:
        number = math.nan
    if seconds is None or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{value!r} is not a rate (examples: 5/s, 30/m, 100/h, 0.5)")
    return number / seconds


class Rate(click.ParamType):  # type: ignore[type-arg]
    """A request rate such as ``5/s`` or ``30/m``, as requests per second."""

    name = "rate"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        try:
            return parse_rate(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class HeaderLine(click.ParamType):  # type: ignore[type-arg]
    """A ``Name: value`` header; in an environment variable, one per line."""

    name = "header"
    envvar_list_splitter = "\n"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        return str(value)


def load_object(spec: str) -> object:
    """The object ``module:name`` names (``name`` may be dotted: ``module:Class.method``),
    importing the module with the working folder on the path, as ``python -m`` has it.

    Raises ``ValueError`` saying what is wrong.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"{spec!r} is not MODULE:NAME")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no {attribute!r}") from None
    return target


def load_exception(spec: str) -> type[BaseException]:
    """An exception class by its built-in name (``ConnectionError``) or ``module:Name``."""
    found = getattr(builtins, spec, None) if ":" not in spec else load_object(spec)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"{spec!r} is not an exception class (built-in, or MODULE:NAME)")
    return found


def check_store_url(url: str) -> None:
    """Refuse (naming ``--store``) a store that is not a PostgreSQL database's URL."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter(
            f"{url!r} is not a PostgreSQL URL (postgresql://USER@HOST/DB)", param_hint="'--store'"
        )


#: How often ``shoal status --watch`` looks again when given no interval (seconds).
WATCH_EVERY_S = 1.0
#: The longest interval ``--watch`` takes (seconds): a day.
WATCH_MAX_S = 86400.0
#: What after ``--watch`` is its interval: a word that starts as a number does
#: (``5``, ``0.2``, ``.5``, ``-1``: a bad one is refused as ``--watch``'s); any other word
#: (``out.jsonl``) is the next argument.
_INTERVAL_LIKE = re.compile(r"[-+]?\.?\d")


def watch_arguments(args: Sequence[str]) -> list[str]:
    """``status``'s arguments with ``--watch``'s interval, or its default, joined to it
    (``--watch=5``), so that ``--watch JOB`` leaves JOB an argument (click would take any
    word after an option with an optional value as its value)."""
    given = list(args)
    joined: list[str] = []
    index = 0
    while index < len(given):
        word = given[index]
        index += 1
        if word == "--":
            joined.extend(given[index - 1 :])
            break
        if word != "--watch":
            joined.append(word)
        elif index < len(given) and _INTERVAL_LIKE.match(given[index]):
            joined.append(f"--watch={given[index]}")
            index += 1
        else:
            joined.append(f"--watch={WATCH_EVERY_S}")
    return joined


def check_interval(
    _ctx: click.Context, _param: click.Parameter, value: float | None
) -> float | None:
    """``--watch``'s interval: more than 0 seconds, at most a day."""
    if value is not None and not (math.isfinite(value) and 0 < value <= WATCH_MAX_S):
        raise click.BadParameter(
            f"{value:g} is not an interval: give seconds, more than 0 and at most"
            f" {WATCH_MAX_S:.0f} (a day)"
        )
    return value


class WatchedCommand(click.Command):
    """A command with a ``--watch [S]`` option, whose interval may be left out before an
    argument (see :func:`watch_arguments`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, watch_arguments(args))
