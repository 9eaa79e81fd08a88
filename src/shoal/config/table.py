"""The one table of a job's settings: each setting's place in the journal's copy of a
job (``shoal report``, a shared job's check), the option that sets it on the command line,
and whose it is on a shared job (the job's, which every worker must match, or each
worker's own). Messages name settings by their options through it; the command line's
options, the engine's copy of its settings and a joining worker's check are made from it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shoal.config.network import DEFAULT_USER_AGENT
from shoal.config.values import MiB

#: Whose a setting is on a job shared by workers: the job's (every worker applies the job's
#: and a worker with another value is refused), or each worker's own (its machine's network,
#: its files, what it shows).
JOB, WORKER = "job", "worker"


@dataclass(frozen=True, slots=True)
class CommandLine:
    """How the command line takes a setting's option: ``kind`` names its type (``None``: a
    string; ``"flag"``; ``"int>=N"``, ``"float>=X"``, ``"fraction"``; ``"size"``,
    ``"rate"``, ``"header"``, ``"address"``, ``"processes"``; ``"file"``, ``"folder"``,
    ``"output"``; ``"A|B|C"``: one of these), ``default`` its default (shown in ``--help``
    unless ``None``), ``help`` its text; ``metavar`` and ``multiple`` as click has them.
    The command line makes the click option from it (:mod:`shoal.cli.options`)."""

    kind: str | None
    default: object
    help: str
    metavar: str | None = None
    multiple: bool = False


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: ``path`` is its place in the journal's copy of a job's settings
    (``limits.per_host``; ``None``: a command line's own, not kept), ``flag`` the option
    that sets it (``None``: none does), ``param`` that option's parameter name (by default
    the path's last part), ``short`` its one-letter name, ``whose`` the job's or each
    worker's (:data:`JOB`, :data:`WORKER`); ``size`` marks a size in bytes (shown as
    ``50 MiB``); ``kept``: in the journal's copy (else a setting of the engine the journal
    does not keep); ``cli`` how the command line takes the option (``None``: the command
    declares it itself)."""

    path: str | None
    flag: str | None
    param: str | None = None
    short: str | None = None
    whose: str = JOB
    size: bool = False
    kept: bool = True
    cli: CommandLine | None = None

    @property
    def name(self) -> str:
        """The setting's own name: its path's last part (a ``ConfigError``'s ``option``)."""
        return (self.path or self.param or "").rsplit(".", 1)[-1]

    @property
    def parameter(self) -> str | None:
        """The option's parameter name (``None``: no option sets it)."""
        return None if self.flag is None else self.param or self.name


def _s(path: str | None, flag: str | None = None, **more: Any) -> Setting:
    return Setting(path, flag, **more)


def _o(kind: str | None, default: object, help: str, **more: Any) -> CommandLine:
    return CommandLine(kind, default, help, **more)


# fmt: off
#: Every setting of a job, in the order of the journal's copy (and of ``shoal report``).
SETTINGS: tuple[Setting, ...] = (
    _s("shoal", whose=WORKER),
    _s("limits.concurrency", "--concurrency", short="-c", whose=WORKER,
       cli=_o("int>=1", 100, "Requests in flight at once, over all hosts.")),
    _s("limits.per_host", "--per-host",
       cli=_o("int>=1", 8, "Requests in flight at once per host.")),
    _s("limits.max_bytes", "--max-bytes", size=True,
       cli=_o("size", "50MiB", "Largest body accepted, after decompression.")),
    _s("limits.max_redirects", "--max-redirects",
       cli=_o("int>=0", 10, "Redirects to follow (0: return the 3xx response).")),
    _s("timeouts.total_s", "--timeout", param="timeout",
       cli=_o("float>=0.001", 30.0, "Seconds for a whole attempt (connect, headers, body).")),
    _s("timeouts.connect_s", "--connect-timeout", param="connect_timeout",
       cli=_o("float>=0.001", 10.0, "Seconds to resolve and connect.")),
    _s("timeouts.read_s", "--read-timeout", param="read_timeout",
       cli=_o("float>=0.001", 10.0, "Seconds to wait for each piece of data.")),
    _s("retry.retries", "--retries",
       cli=_o("int>=0", 2, "Retries after the first attempt.")),
    _s("retry.backoff_base_s", "--backoff", param="backoff",
       cli=_o("float>=0", 0.5, "Base of the exponential backoff, in seconds (full jitter).")),
    _s("retry.backoff_max_s", "--backoff-max", param="backoff_max",
       cli=_o("float>=0", 30.0, "Longest backoff between attempts, in seconds.")),
    _s("retry.retry_after_max_s", "--max-retry-after", param="max_retry_after",
       cli=_o("float>=0", 120.0,
           "Longest Retry-After to honour, in seconds; longer ends the retries.")),
    _s("retry.on_errors", "--retry-on", param="retry_on"),
    _s("retry.on_statuses", "--retry-on", param="retry_on"),
    _s("retry.on_exceptions", "--retry-on", param="retry_on"),
    _s("retry.seed", whose=WORKER),
    _s("politeness.per_second", "--per-host-rate", param="per_host_rate",
       cli=_o("rate", None,
           "Requests started per host at most, e.g. 5/s or 30/m (smooth, not in bursts).")),
    _s("politeness.burst", "--burst",
       cli=_o("int>=1", 1, "Requests a host may start at once within --per-host-rate.")),
    _s("politeness.delay_s", "--delay", param="delay",
       cli=_o("float>=0", 0.0, "Least seconds between two requests started to one host.")),
    _s("politeness.jitter", "--jitter",
       cli=_o("fraction", 0.0,
           "Stretch each --delay by a random part of it, up to this fraction.")),
    _s("politeness.adaptive", "--adaptive",
       cli=_o("flag", None,
           "Slow a host down on 429/503, timeouts and rising latency; recover slowly.")),
    _s("politeness.dead_after", "--dead-after",
       cli=_o("int>=0", 5,
           "Consecutive connection failures that park an endpoint (host and port; 0: never).")),
    _s("politeness.dead_cooldown_s", "--dead-cooldown", param="dead_cooldown",
       cli=_o("float>=0.001", 30.0,
           "Seconds a parked endpoint waits before a probe (doubles per failed probe).")),
    _s("politeness.dead_probes"),
    _s("politeness.respect_robots", "--respect-robots",
       cli=_o("flag", None,
           "Fetch each site's robots.txt once and skip what it disallows (error kind robots).")),
    _s("politeness.robots_crawl_delay", "--robots-crawl-delay",
       cli=_o("flag", None,
           "Also honour robots.txt Crawl-delay as the host's least delay (at most 60 s).")),
    _s("politeness.crawl_delay_max_s"),
    _s("politeness.hosts", "--config", param="config"),
    _s("dns.servers", "--dns-server", param="dns_servers", whose=WORKER,
       cli=_o(None, None,
           "Ask this name server instead of the system's; repeatable ([V6]:PORT for IPv6).",
           metavar="ADDR[:PORT]", multiple=True)),
    _s("dns.min_ttl_s", "--dns-min-ttl", param="dns_min_ttl", whose=WORKER,
       cli=_o("float>=0", 60.0,
           "Keep each DNS answer at least this many seconds, whatever its TTL.")),
    _s("dns.max_ttl_s", "--dns-max-ttl", param="dns_max_ttl", whose=WORKER,
       cli=_o("float>=0", 3600.0, "Keep each DNS answer at most this many seconds.")),
    _s("dns.negative_ttl_s", whose=WORKER),
    _s("dns.max_lookups", "--dns-concurrency", param="dns_concurrency", whose=WORKER,
       cli=_o("int>=1", 64, "DNS lookups in flight at once.")),
    _s("dns.timeout_s", whose=WORKER),
    _s("dns.tries", whose=WORKER),
    _s("dns.max_names", whose=WORKER),
    _s("dns.prefer_ipv6", whose=WORKER),
    _s("crawl.max_depth", "--max-depth"),
    _s("crawl.max_requests", "--max-requests"),
    _s("crawl.scope", "--scope"),
    _s("crawl.include", "--include"),
    _s("crawl.exclude", "--exclude"),
    _s("records.keep_headers", "--keep-headers",
       cli=_o(None, None,
           "Keep these response headers (or all) in each record's headers object; repeatable.",
           metavar="NAME,...|all", multiple=True)),
    _s("user_agent", "--user-agent",
       cli=_o(None, DEFAULT_USER_AGENT, "The User-Agent header.")),
    _s("headers", "--header", short="-H",
       cli=_o("header", None,
           "Add a header to every request ('Name: value'); repeatable.", multiple=True)),
    _s("fail_http", "--fail",
       cli=_o("flag", None, "Count non-2xx responses as failures (error kind http_status).")),
    _s("verify_tls", "--insecure", param="insecure", short="-k",
       cli=_o("flag", None, "Do not verify TLS certificates.")),
    _s("cookies", "--cookies",
       cli=_o("flag", None,
           "Keep the cookies sites set and send them back (one bounded jar per site).")),
    _s("transport", "--transport", whose=WORKER,
       cli=_o("aiohttp|wire", "aiohttp",
           "What sends the requests: aiohttp's client, or shoal's own HTTP/1.1 client (wire: "
           "no --proxy or --cookies yet).")),
    _s("proxy", "--proxy", whose=WORKER,
       cli=_o(None, None,
           "Send every request through this HTTP proxy (HOST:PORT means http://HOST:PORT; '' for "
           "none). Without it, http_proxy, https_proxy and no_proxy are honoured.")),
    _s("proxy_env", "--no-proxy-env", param="no_proxy_env", whose=WORKER,
       cli=_o("flag", None,
           "Ignore the proxy environment (http_proxy, https_proxy, all_proxy, no_proxy).")),
    _s("ca_bundle", "--ca-bundle", whose=WORKER, kept=False,
       cli=_o("file", None,
           "Also trust the CA certificates in this PEM file (besides the system's).",
           metavar="FILE")),
    _s("resolve", "--resolve", whose=WORKER,
       cli=_o(None, None,
           "Connect to ADDRESS for HOST instead of asking DNS; repeatable.",
           metavar="HOST:ADDRESS", multiple=True)),
    _s("output", "--output", short="-o", whose=WORKER,
       cli=_o("output", "-", "Write one JSON record per request here.")),
    _s("save_bodies", "--save-bodies", whose=WORKER,
       cli=_o("folder", None,
           "Store each final response's body in DIR, named by its SHA-256 (record: body_path).",
           metavar="DIR")),
    _s("warc", "--warc", whose=WORKER,
       cli=_o("file", None,
           "Archive each final exchange in PREFIX-NNNNN.warc.gz (WARC/1.1) and index it in "
           "PREFIX.cdxj (record: warc).", metavar="PREFIX")),
    _s("warc_max_size", "--warc-max-size", whose=WORKER, size=True, kept=False,
       cli=_o("size", "1GiB", "Start the next WARC file once one reaches this size.")),
    _s("shard", whose=WORKER),
    _s("attempt_max_s", whose=WORKER),
    # A command line's own: what it shows, where the job lives, how it is run.
    _s(None, "--job", param="journal", whose=WORKER,
       cli=_o("file", None,
           "The job's journal (SQLite). Default: OUTPUT.journal beside the output file.")),
    _s(None, "--store", param="store", whose=WORKER,
       cli=_o(None, None,
           "Keep the job in this PostgreSQL database (postgresql://USER@HOST/DB), shared by any "
           "number of workers (shoal worker); --job names the job.", metavar="URL")),
    _s(None, "--processes", param="processes", short="-p", whose=WORKER,
       cli=_o("processes", "1", "Worker processes sharing the job ('auto': one per CPU core).")),
    _s(None, "--progress", param="progress", whose=WORKER,
       cli=_o("auto|on|off", "auto",
           "Progress on stderr: redrawn in place on a terminal, else a plain line every "
           "--progress-interval seconds; auto: only when stderr is a terminal.")),
    _s(None, "--progress-interval", param="progress_interval", whose=WORKER,
       cli=_o("float>=0.05", 5.0,
           "Seconds between progress lines when stderr is not a terminal (a log, a pipe).",
           metavar="S")),
    _s(None, "--quiet", param="quiet", short="-q", whose=WORKER,
       cli=_o("flag", None, "No summary at the end.")),
    _s(None, "--dashboard", param="dashboard", whose=WORKER,
       cli=_o("address", None,
           "Serve the live dashboard (page, JSON, /metrics, controls) on [HOST:]PORT (host "
           "127.0.0.1 unless given; port 0: a free one); its URL goes to stderr.")),
    _s(None, "--dashboard-token", param="dashboard_token", whose=WORKER,
       cli=_o(None, None,
           "The token every dashboard route needs (required on a non-loopback address).")),
    # … and the job's, given again by every worker that joins it.
    _s(None, "--restart", param="restart",
       cli=_o("flag", None, "Discard the journal and start the job over.")),
    _s(None, "--retry-failed", param="retry_failed"),
    _s(None, "--method", param="method",
       cli=_o(None, None, "Method for lines that do not give one (default GET).")),
    _s(None, "--lease-ttl", param="lease_ttl",
       cli=_o("float>=0.5", 30.0,
           "With --store: seconds a worker's hold on a host (a group) lasts without a heartbeat.")),
    _s(None, "--lease-hold", param="lease_hold",
       cli=_o("float>=0.1", 120.0,
           "With --store: seconds a worker keeps a host (a group) before handing it on.")),
)
# fmt: on

#: The settings an option sets, by the option's parameter name.
BY_PARAMETER: dict[str, Setting] = {
    setting.parameter: setting for setting in SETTINGS if setting.parameter is not None
}

#: Setting names (a :class:`ConfigError`'s ``option``, the fields of the value classes and
#: of the settings a journal keeps) as the command line spells them, so that messages and
#: the report name what a user types.
OPTION_NAMES: dict[str, str] = {
    setting.name: setting.flag for setting in SETTINGS if setting.flag is not None
}
#: The settings that are sizes in bytes (shown as ``50 MiB``, as ``--max-bytes 50MiB``).
SIZE_SETTINGS = frozenset(setting.name for setting in SETTINGS if setting.size)

#: The journal's copy of a job's settings that every worker of a shared job must share,
#: by path (a worker with another value is refused: ``SettingsMismatch``).
SHARED_SETTINGS = tuple(
    setting.path
    for setting in SETTINGS
    if setting.whose == JOB and setting.kept and setting.path is not None
)

#: The options a ``shoal worker`` gives of its own (by parameter name): any other it gives
#: must be the job's.
WORKER_OPTIONS = frozenset(
    setting.parameter
    for setting in SETTINGS
    if setting.whose == WORKER and setting.parameter is not None
)

#: The top-level entries of the journal's copy, in order.
KEPT = tuple(
    dict.fromkeys(
        setting.path.split(".", 1)[0]
        for setting in SETTINGS
        if setting.kept and setting.path is not None
    )
)


def journal_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    """The journal's copy of a job's settings from ``values`` (an entry per top-level name
    of :data:`SETTINGS`: the value classes as :func:`plain` data, the rest as they are);
    refuses an entry the table has not, or lacks."""
    if set(values) != set(KEPT):
        unknown = sorted(set(values) ^ set(KEPT))
        raise AssertionError(f"the journal's copy and the settings table differ: {unknown}")
    return {name: values[name] for name in KEPT}


def option_name(setting: str) -> str:
    """``max_bytes`` -> ``--max-bytes``; a setting no option sets keeps its own name."""
    return OPTION_NAMES.get(setting, setting)


def size_text(count: int) -> str:
    """A size exactly, in the largest binary unit that divides it: ``52428800`` ->
    ``50 MiB``; ``1536`` -> ``1,536 bytes`` (not a whole number of KiB)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if count and count % scale == 0:
            return f"{count // scale:,} {unit}"
    return f"{count:,} bytes"


def plain(value: object) -> Any:
    """A configuration as JSON-ready data: value classes as objects of their fields, sets
    sorted, error kinds by name. Kept in the journal for ``shoal report``, which may be
    shared, so ``headers`` keep only their names (their values may carry credentials)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: (
                _header_names(getattr(value, item.name))
                if item.name == "headers"
                else plain(getattr(value, item.name))
            )
            for item in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in sorted(value.items())}
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _header_names(headers: Mapping[str, str] | None) -> list[str] | None:
    return None if headers is None else sorted(headers)
