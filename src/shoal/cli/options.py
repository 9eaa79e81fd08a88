"""The options every job command shares (``fetch``, ``crawl``, and those of ``map``), as
click declares them. Starting a job from them is :mod:`shoal.cli.launch`'s."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from shoal.cli.logs import VERBOSE
from shoal.cli.parsing import (
    Address,
)
from shoal.config import BY_PARAMETER, OPTION_NAMES

F = TypeVar("F", bound=Callable[..., Any])


def option(parameter: str, **declared: Any) -> Callable[[F], F]:
    """The click option that sets ``parameter``, named as the settings table
    (:data:`shoal.config.SETTINGS`) names it: its flag, its one-letter name and its
    parameter; ``declared`` is how the command line takes it (type, default, help …)."""
    setting = BY_PARAMETER[parameter]
    assert setting.flag is not None
    names = [name for name in (setting.short, setting.flag) if name is not None]
    return click.option(*names, parameter, **declared)


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
OUTPUT_OPTION = option(
    "output",
    default="-",
    show_default="stdout",
    type=click.Path(allow_dash=True, dir_okay=False, writable=True),
    help="Write one JSON record per request here.",
)

JOB_OPTION = option(
    "journal",
    type=click.Path(dir_okay=False),
    help="The job's journal (SQLite). Default: OUTPUT.journal beside the output file.",
)

RESTART_OPTION = option("restart", is_flag=True, help="Discard the journal and start the job over.")

CONCURRENCY_OPTION = option(
    "concurrency",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests in flight at once, over all hosts.",
)

RETRIES_OPTION = option(
    "retries",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retries after the first attempt.",
)

BACKOFF_OPTION = option(
    "backoff",
    default=0.5,
    show_default=True,
    type=positive_float(0),
    help="Base of the exponential backoff, in seconds (full jitter).",
)

BACKOFF_MAX_OPTION = option(
    "backoff_max",
    default=30.0,
    show_default=True,
    type=positive_float(0),
    help="Longest backoff between attempts, in seconds.",
)

PROGRESS_OPTION = option(
    "progress",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Progress on stderr: redrawn in place on a terminal, else a plain line every "
    "--progress-interval seconds; auto: only when stderr is a terminal.",
)

PROGRESS_INTERVAL_OPTION = option(
    "progress_interval",
    type=positive_float(0.05),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Seconds between progress lines when stderr is not a terminal (a log, a pipe).",
)

PROCESSES_OPTION = option(
    "processes",
    default="1",
    show_default=True,
    type=_Processes(),
    help="Worker processes sharing the job ('auto': one per CPU core).",
)

DASHBOARD_OPTION = option(
    "dashboard",
    type=Address(),
    default=None,
    help="Serve the live dashboard (page, JSON, /metrics, controls) on [HOST:]PORT "
    "(host 127.0.0.1 unless given; port 0: a free one); its URL goes to stderr.",
)

DASHBOARD_TOKEN_OPTION = option(
    "dashboard_token",
    default=None,
    help="The token every dashboard route needs (required on a non-loopback address).",
)

QUIET_OPTION = option("quiet", is_flag=True, help="No summary at the end.")
STORE_OPTION = option(
    "store",
    default=None,
    metavar="URL",
    help="Keep the job in this PostgreSQL database (postgresql://USER@HOST/DB), shared"
    " by any number of workers (shoal worker); --job names the job.",
)
LEASE_TTL_OPTION = option(
    "lease_ttl",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.5),
    help="With --store: seconds a worker's hold on a host (a group) lasts without a heartbeat.",
)
LEASE_HOLD_OPTION = option(
    "lease_hold",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="With --store: seconds a worker keeps a host (a group) before handing it on.",
)

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
