"""The options every job command shares (``fetch``, ``crawl``, and those of ``map``), as
click declares them. Starting a job from them is :mod:`shoal.cli.launch`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from shoal.cli.logs import VERBOSE
from shoal.cli.parsing import (
    DEFAULT_RETRY_ON,
    Address,
    HeaderLine,
    Rate,
    Size,
)
from shoal.cli.settings import load_config
from shoal.config import OPTION_NAMES
from shoal.version import __version__

F = TypeVar("F", bound=Callable[..., Any])

#: Library setting names, as the command line spells them (for error messages): the table
#: is the library's own (:data:`shoal.config.OPTION_NAMES`), so its messages use it too.
CLI_NAMES = OPTION_NAMES


def setting_flag(path: str, command: str | None = None) -> str:
    """The option that sets a library setting named by its path (``politeness.per_second``:
    ``--per-host-rate``; in a map, whose groups are its hosts, ``--per-group-rate``); the
    path itself for a setting no option sets."""
    if path.startswith("politeness.hosts"):
        return "--config"  # the [hosts."PATTERN"] tables
    flag = CLI_NAMES.get(path.rsplit(".", 1)[-1])
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


def _positive_float(minimum: float = 0.001) -> click.FloatRange:
    return click.FloatRange(min=minimum)


# The options of every job command (``fetch``, ``crawl``, ``map``); the others are a
# fetch's (HTTP, DNS, politeness, outputs of responses).
_OUTPUT = click.option(
    "-o",
    "--output",
    default="-",
    show_default="stdout",
    type=click.Path(allow_dash=True, dir_okay=False, writable=True),
    help="Write one JSON record per request here.",
)

_JOB = click.option(
    "--job",
    "journal",
    type=click.Path(dir_okay=False),
    help="The job's journal (SQLite). Default: OUTPUT.journal beside the output file.",
)

_RESTART = click.option(
    "--restart", is_flag=True, help="Discard the journal and start the job over."
)

_CONCURRENCY = click.option(
    "-c",
    "--concurrency",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests in flight at once, over all hosts.",
)

_RETRIES = click.option(
    "--retries",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retries after the first attempt.",
)

_BACKOFF = click.option(
    "--backoff",
    default=0.5,
    show_default=True,
    type=_positive_float(0),
    help="Base of the exponential backoff, in seconds (full jitter).",
)

_BACKOFF_MAX = click.option(
    "--backoff-max",
    default=30.0,
    show_default=True,
    type=_positive_float(0),
    help="Longest backoff between attempts, in seconds.",
)

_PROGRESS = click.option(
    "--progress",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Progress on stderr: redrawn in place on a terminal, else a plain line every "
    "--progress-interval seconds; auto: only when stderr is a terminal.",
)

_PROGRESS_INTERVAL = click.option(
    "--progress-interval",
    type=_positive_float(0.05),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Seconds between progress lines when stderr is not a terminal (a log, a pipe).",
)

_PROCESSES = click.option(
    "-p",
    "--processes",
    default="1",
    show_default=True,
    type=_Processes(),
    help="Worker processes sharing the job ('auto': one per CPU core).",
)

_DASHBOARD = click.option(
    "--dashboard",
    type=Address(),
    default=None,
    help="Serve the live dashboard (page, JSON, /metrics, controls) on [HOST:]PORT "
    "(host 127.0.0.1 unless given; port 0: a free one); its URL goes to stderr.",
)

_DASHBOARD_TOKEN = click.option(
    "--dashboard-token",
    default=None,
    help="The token every dashboard route needs (required on a non-loopback address).",
)

_QUIET = click.option("-q", "--quiet", is_flag=True, help="No summary at the end.")
_STORE = click.option(
    "--store",
    default=None,
    metavar="URL",
    help="Keep the job in this PostgreSQL database (postgresql://USER@HOST/DB), shared"
    " by any number of workers (shoal worker); --job names the job.",
)
_LEASE_TTL = click.option(
    "--lease-ttl",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.5),
    help="With --store: seconds a worker's hold on a host (a group) lasts without a heartbeat.",
)
_LEASE_HOLD = click.option(
    "--lease-hold",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="With --store: seconds a worker keeps a host (a group) before handing it on.",
)

#: Every option of a fetch job, in the order --help shows them.
_JOB_OPTIONS = [
    _OUTPUT,
    _JOB,
    _RESTART,
    _CONCURRENCY,
    click.option(
        "--per-host",
        default=8,
        show_default=True,
        type=click.IntRange(min=1),
        help="Requests in flight at once per host.",
    ),
    click.option(
        "--timeout",
        default=30.0,
        show_default=True,
        type=_positive_float(),
        help="Seconds for a whole attempt (connect, headers, body).",
    ),
    click.option(
        "--connect-timeout",
        default=10.0,
        show_default=True,
        type=_positive_float(),
        help="Seconds to resolve and connect.",
    ),
    click.option(
        "--read-timeout",
        default=10.0,
        show_default=True,
        type=_positive_float(),
        help="Seconds to wait for each piece of data.",
    ),
    _RETRIES,
    click.option(
        "--retry-on",
        default=DEFAULT_RETRY_ON,
        show_default=True,
        help="Error kinds and statuses to retry (e.g. connect,timeout,reset,429,5xx).",
    ),
    click.option(
        "--retry-failed",
        "retry_failed",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[KINDS]",
        help="Send again the requests of a finished (or stopped) job whose final record is a "
        "failure (KINDS: only these error kinds and statuses, as --retry-on); each ends with "
        "one record, the new one.",
    ),
    _BACKOFF,
    _BACKOFF_MAX,
    click.option(
        "--max-retry-after",
        default=120.0,
        show_default=True,
        type=_positive_float(0),
        help="Longest Retry-After to honour, in seconds; longer ends the retries.",
    ),
    click.option(
        "--max-redirects",
        default=10,
        show_default=True,
        type=click.IntRange(min=0),
        help="Redirects to follow (0: return the 3xx response).",
    ),
    click.option(
        "--max-bytes",
        default="50MiB",
        show_default=True,
        type=Size(),
        help="Largest body accepted, after decompression.",
    ),
    click.option(
        "-H",
        "--header",
        "headers",
        multiple=True,
        type=HeaderLine(),
        help="Add a header to every request ('Name: value'); repeatable.",
    ),
    click.option(
        "--method", default=None, help="Method for lines that do not give one (default GET)."
    ),
    click.option(
        "--user-agent",
        default=f"shoal/{__version__}",
        show_default=True,
        help="The User-Agent header.",
    ),
    click.option("-k", "--insecure", is_flag=True, help="Do not verify TLS certificates."),
    click.option(
        "--ca-bundle",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        help="Also trust the CA certificates in this PEM file (besides the system's).",
    ),
    click.option(
        "--cookies",
        is_flag=True,
        help="Keep the cookies sites set and send them back (one bounded jar per site).",
    ),
    click.option(
        "--proxy",
        default=None,
        help="Send every request through this HTTP proxy (HOST:PORT means http://HOST:PORT; "
        "'' for none). Without it, http_proxy, https_proxy and no_proxy are honoured.",
    ),
    click.option(
        "--no-proxy-env",
        "no_proxy_env",
        is_flag=True,
        help="Ignore the proxy environment (http_proxy, https_proxy, all_proxy, no_proxy).",
    ),
    click.option(
        "--fail",
        "fail_http",
        is_flag=True,
        help="Count non-2xx responses as failures (error kind http_status).",
    ),
    click.option(
        "--keep-headers",
        "keep_headers",
        multiple=True,
        metavar="NAME,...|all",
        help="Keep these response headers (or all) in each record's headers object; repeatable.",
    ),
    click.option(
        "--resolve",
        multiple=True,
        metavar="HOST:ADDRESS",
        help="Connect to ADDRESS for HOST instead of asking DNS; repeatable.",
    ),
    click.option(
        "--dns-server",
        "dns_servers",
        multiple=True,
        metavar="ADDR[:PORT]",
        help="Ask this name server instead of the system's; repeatable ([V6]:PORT for IPv6).",
    ),
    click.option(
        "--dns-min-ttl",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="Keep each DNS answer at least this many seconds, whatever its TTL.",
    ),
    click.option(
        "--dns-max-ttl",
        type=click.FloatRange(min=0),
        default=3600.0,
        show_default=True,
        help="Keep each DNS answer at most this many seconds.",
    ),
    click.option(
        "--dns-concurrency",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="DNS lookups in flight at once.",
    ),
    _PROGRESS,
    _PROGRESS_INTERVAL,
    click.option(
        "--save-bodies",
        "save_bodies",
        default=None,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help="Store each final response's body in DIR, named by its SHA-256 (record: body_path).",
    ),
    click.option(
        "--warc",
        "warc",
        default=None,
        metavar="PREFIX",
        type=click.Path(dir_okay=False),
        help="Archive each final exchange in PREFIX-NNNNN.warc.gz (WARC/1.1) and index it in "
        "PREFIX.cdxj (record: warc).",
    ),
    click.option(
        "--warc-max-size",
        "warc_max_size",
        default="1GiB",
        show_default=True,
        type=Size(),
        help="Start the next WARC file once one reaches this size.",
    ),
    click.option(
        "--per-host-rate",
        type=Rate(),
        default=None,
        help="Requests started per host at most, e.g. 5/s or 30/m (smooth, not in bursts).",
    ),
    click.option(
        "--burst",
        default=1,
        show_default=True,
        type=click.IntRange(min=1),
        help="Requests a host may start at once within --per-host-rate.",
    ),
    click.option(
        "--delay",
        default=0.0,
        show_default=True,
        type=_positive_float(0),
        help="Least seconds between two requests started to one host.",
    ),
    click.option(
        "--jitter",
        default=0.0,
        show_default=True,
        type=click.FloatRange(0, 1),
        help="Stretch each --delay by a random part of it, up to this fraction.",
    ),
    click.option(
        "--adaptive",
        is_flag=True,
        help="Slow a host down on 429/503, timeouts and rising latency; recover slowly.",
    ),
    click.option(
        "--dead-after",
        default=5,
        show_default=True,
        type=click.IntRange(min=0),
        help="Consecutive connection failures that park an endpoint (host and port; 0: never).",
    ),
    click.option(
        "--dead-cooldown",
        default=30.0,
        show_default=True,
        type=_positive_float(),
        help="Seconds a parked endpoint waits before a probe (doubles per failed probe).",
    ),
    click.option(
        "--respect-robots",
        is_flag=True,
        help="Fetch each site's robots.txt once and skip what it disallows (error kind robots).",
    ),
    click.option(
        "--robots-crawl-delay",
        is_flag=True,
        help="Also honour robots.txt Crawl-delay as the host's least delay (at most 60 s).",
    ),
    click.option(
        "--config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=load_config,
        help='Read options, and [hosts."PATTERN"] overrides, from this TOML file.',
    ),
    _PROCESSES,
    _DASHBOARD,
    _DASHBOARD_TOKEN,
    _QUIET,
    VERBOSE,
    _STORE,
    _LEASE_TTL,
    _LEASE_HOLD,
]


#: The options a job of any kind has: its places, its concurrency, its retries' count and
#: backoff, what it shows, and its processes.
RUN_OPTIONS = [
    _OUTPUT,
    _JOB,
    _RESTART,
    _CONCURRENCY,
    _RETRIES,
    _BACKOFF,
    _BACKOFF_MAX,
    _PROGRESS,
    _PROGRESS_INTERVAL,
    _PROCESSES,
    _DASHBOARD,
    _DASHBOARD_TOKEN,
    _QUIET,
    VERBOSE,
    _STORE,
    _LEASE_TTL,
    _LEASE_HOLD,
]


def run_options(command: F) -> F:
    """Give ``command`` the options of every job (see :data:`RUN_OPTIONS`)."""
    for option in reversed(RUN_OPTIONS):
        command = option(command)
    return command


def job_options(command: F) -> F:
    """Give ``command`` every option of a job (output, journal, limits, politeness …)."""
    for option in reversed(_JOB_OPTIONS):
        command = option(command)
    return command
