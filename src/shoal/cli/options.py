"""The options every job command shares (``fetch``, ``crawl``, and those of ``map``), as
click declares them. Starting a job from them is :mod:`shoal.cli.launch`'s."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from shoal.cli.logs import VERBOSE
from shoal.cli.parsing import Address, HeaderLine, Rate, Size
from shoal.config import BY_PARAMETER, OPTION_NAMES, CommandLine

F = TypeVar("F", bound=Callable[..., Any])


def option(parameter: str, **declared: Any) -> Callable[[F], F]:
    """The click option that sets ``parameter``, as the settings table
    (:data:`shoal.config.SETTINGS`) defines it: its flag, its one-letter name, its
    parameter and (from the row's :class:`~shoal.config.CommandLine`) its type, default
    and help; ``declared`` adds to them or replaces them (all of them, for an option whose
    row has none: a callback's, one whose flag may go without a value)."""
    setting = BY_PARAMETER[parameter]
    assert setting.flag is not None
    names = [name for name in (setting.short, setting.flag) if name is not None]
    taken = {} if setting.cli is None else _declared(setting.cli)
    return click.option(*names, parameter, **{**taken, **declared})


def _declared(line: CommandLine) -> dict[str, Any]:
    """click's keywords for an option the table defines."""
    declared: dict[str, Any] = {"help": line.help}
    if line.kind == "flag":
        declared["is_flag"] = True
    elif line.kind is not None:
        declared["type"] = _type(line.kind)
    if line.default is not None:
        declared.update(default=line.default, show_default=True)
    if line.metavar is not None:
        declared["metavar"] = line.metavar
    if line.multiple:
        declared["multiple"] = True
    return declared


def _type(kind: str) -> click.ParamType:  # type: ignore[type-arg]
    """The click type a :class:`~shoal.config.CommandLine` kind names."""
    named: dict[str, click.ParamType] = {  # type: ignore[type-arg]
        "size": Size(),
        "rate": Rate(),
        "header": HeaderLine(),
        "address": Address(),
        "processes": _Processes(),
        "fraction": click.FloatRange(0, 1),
        "file": click.Path(dir_okay=False),
        "folder": click.Path(file_okay=False),
        "output": click.Path(allow_dash=True, dir_okay=False, writable=True),
    }
    if kind in named:
        return named[kind]
    if "|" in kind:
        return click.Choice(kind.split("|"))
    number, _, least = kind.partition(">=")
    if number == "int":
        return click.IntRange(min=int(least))
    assert number == "float", kind
    return click.FloatRange(min=float(least) if "." in least else int(least))


def setting_flag(path: str, command: str | None = None) -> str:
    """The option that sets a library setting named by its path (``politeness.per_second``:
    ``--per-host-rate``; in a map, whose groups are its hosts, ``--per-group-rate``); the
    path itself for a setting no option sets."""
    if path.startswith("politeness.hosts"):
        return "--config"  # the [hosts."PATTERN"] tables
    flag = OPTION_NAMES.get(path.rsplit(".", 1)[-1])
    if flag is None:
        return path
    return flag.replace("host", "group") if command == "map" else flag


class _Processes(click.ParamType):  # type: ignore[type-arg]
    """A number of processes, or ``auto``."""

    name = "N|auto"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value).strip().lower()
        if text == "auto" or (text.isdigit() and int(text) >= 1):
            return text
        self.fail(f"{value!r} is not a number of processes (1 or more) or 'auto'", param, ctx)


def positive_float(minimum: float = 0.001) -> click.FloatRange:
    return click.FloatRange(min=minimum)


# The options of every job command (``fetch``, ``crawl``, ``map``); the others are a
# fetch's (HTTP, DNS, politeness, outputs of responses).
OUTPUT_OPTION = option("output", show_default="stdout")

JOB_OPTION = option("journal")

RESTART_OPTION = option("restart")

CONCURRENCY_OPTION = option("concurrency")

RETRIES_OPTION = option("retries")

BACKOFF_OPTION = option("backoff")

BACKOFF_MAX_OPTION = option("backoff_max")

PROGRESS_OPTION = option("progress")

PROGRESS_INTERVAL_OPTION = option("progress_interval")

PROCESSES_OPTION = option("processes")

DASHBOARD_OPTION = option("dashboard")

DASHBOARD_TOKEN_OPTION = option("dashboard_token")

QUIET_OPTION = option("quiet")
STORE_OPTION = option("store")
LEASE_TTL_OPTION = option("lease_ttl")
LEASE_HOLD_OPTION = option("lease_hold")

#: The options every job command ends with: how it runs (its processes, a shared store
#: and its leases) and what it shows (the dashboard, the summary, the log).
TAIL_OPTIONS = [
    PROCESSES_OPTION,
    DASHBOARD_OPTION,
    DASHBOARD_TOKEN_OPTION,
    QUIET_OPTION,
    VERBOSE,
    STORE_OPTION,
    LEASE_TTL_OPTION,
    LEASE_HOLD_OPTION,
]

#: The options a job of any kind has: its places, its concurrency, its retries' count and
#: backoff, what it shows, and its processes.
RUN_OPTIONS = [
    OUTPUT_OPTION,
    JOB_OPTION,
    RESTART_OPTION,
    CONCURRENCY_OPTION,
    RETRIES_OPTION,
    BACKOFF_OPTION,
    BACKOFF_MAX_OPTION,
    PROGRESS_OPTION,
    PROGRESS_INTERVAL_OPTION,
    *TAIL_OPTIONS,
]


def with_options(options: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    """A decorator giving a command ``options``, shown by ``--help`` in their order."""

    def declare(command: F) -> F:
        for option_of in reversed(options):
            command = option_of(command)
        return command

    return declare


#: Give a command the options of every job (see :data:`RUN_OPTIONS`).
run_options = with_options(RUN_OPTIONS)
