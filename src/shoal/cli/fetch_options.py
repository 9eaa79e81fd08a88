"""The options of a fetch job (also a crawl's, and a ``shoal worker``'s): those of every
job (:mod:`shoal.cli.options`) and a fetch's own (HTTP, DNS, politeness, outputs of
responses), in the order ``--help`` shows them. Each is named by the settings table
(:data:`shoal.config.SETTINGS`)."""

from __future__ import annotations

import click

from shoal.cli.options import (
    BACKOFF_MAX_OPTION,
    BACKOFF_OPTION,
    CONCURRENCY_OPTION,
    JOB_OPTION,
    OUTPUT_OPTION,
    PROGRESS_INTERVAL_OPTION,
    PROGRESS_OPTION,
    RESTART_OPTION,
    RETRIES_OPTION,
    TAIL_OPTIONS,
    option,
    positive_float,
    with_options,
)
from shoal.cli.parsing import DEFAULT_RETRY_ON, HeaderLine, Rate, Size
from shoal.cli.settings import load_config
from shoal.version import __version__

#: Every option of a fetch job, in the order --help shows them.
_JOB_OPTIONS = [
    OUTPUT_OPTION,
    JOB_OPTION,
    RESTART_OPTION,
    CONCURRENCY_OPTION,
    option(
        "per_host",
        default=8,
        show_default=True,
        type=click.IntRange(min=1),
        help="Requests in flight at once per host.",
    ),
    option(
        "timeout",
        default=30.0,
        show_default=True,
        type=positive_float(),
        help="Seconds for a whole attempt (connect, headers, body).",
    ),
    option(
        "connect_timeout",
        default=10.0,
        show_default=True,
        type=positive_float(),
        help="Seconds to resolve and connect.",
    ),
    option(
        "read_timeout",
        default=10.0,
        show_default=True,
        type=positive_float(),
        help="Seconds to wait for each piece of data.",
    ),
    RETRIES_OPTION,
    option(
        "retry_on",
        default=DEFAULT_RETRY_ON,
        show_default=True,
        help="Error kinds and statuses to retry (e.g. connect,timeout,reset,429,5xx).",
    ),
    option(
        "retry_failed",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[KINDS]",
        help="Send again the requests of a finished (or stopped) job whose final record is a "
        "failure (KINDS: only these error kinds and statuses, as --retry-on); each ends with "
        "one record, the new one.",
    ),
    BACKOFF_OPTION,
    BACKOFF_MAX_OPTION,
    option(
        "max_retry_after",
        default=120.0,
        show_default=True,
        type=positive_float(0),
        help="Longest Retry-After to honour, in seconds; longer ends the retries.",
    ),
    option(
        "max_redirects",
        default=10,
        show_default=True,
        type=click.IntRange(min=0),
        help="Redirects to follow (0: return the 3xx response).",
    ),
    option(
        "max_bytes",
        default="50MiB",
        show_default=True,
        type=Size(),
        help="Largest body accepted, after decompression.",
    ),
    option(
        "headers",
        multiple=True,
        type=HeaderLine(),
        help="Add a header to every request ('Name: value'); repeatable.",
    ),
    option("method", default=None, help="Method for lines that do not give one (default GET)."),
    option(
        "user_agent",
        default=f"shoal/{__version__}",
        show_default=True,
        help="The User-Agent header.",
    ),
    option("insecure", is_flag=True, help="Do not verify TLS certificates."),
    option(
        "ca_bundle",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        help="Also trust the CA certificates in this PEM file (besides the system's).",
    ),
    option(
        "cookies",
        is_flag=True,
        help="Keep the cookies sites set and send them back (one bounded jar per site).",
    ),
    option(
        "proxy",
        default=None,
        help="Send every request through this HTTP proxy (HOST:PORT means http://HOST:PORT; "
        "'' for none). Without it, http_proxy, https_proxy and no_proxy are honoured.",
    ),
    option(
        "no_proxy_env",
        is_flag=True,
        help="Ignore the proxy environment (http_proxy, https_proxy, all_proxy, no_proxy).",
    ),
    option(
        "fail_http",
        is_flag=True,
        help="Count non-2xx responses as failures (error kind http_status).",
    ),
    option(
        "keep_headers",
        multiple=True,
        metavar="NAME,...|all",
        help="Keep these response headers (or all) in each record's headers object; repeatable.",
    ),
    option(
        "resolve",
        multiple=True,
        metavar="HOST:ADDRESS",
        help="Connect to ADDRESS for HOST instead of asking DNS; repeatable.",
    ),
    option(
        "dns_servers",
        multiple=True,
        metavar="ADDR[:PORT]",
        help="Ask this name server instead of the system's; repeatable ([V6]:PORT for IPv6).",
    ),
    option(
        "dns_min_ttl",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="Keep each DNS answer at least this many seconds, whatever its TTL.",
    ),
    option(
        "dns_max_ttl",
        type=click.FloatRange(min=0),
        default=3600.0,
        show_default=True,
        help="Keep each DNS answer at most this many seconds.",
    ),
    option(
        "dns_concurrency",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="DNS lookups in flight at once.",
    ),
    PROGRESS_OPTION,
    PROGRESS_INTERVAL_OPTION,
    option(
        "save_bodies",
        default=None,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help="Store each final response's body in DIR, named by its SHA-256 (record: body_path).",
    ),
    option(
        "warc",
        default=None,
        metavar="PREFIX",
        type=click.Path(dir_okay=False),
        help="Archive each final exchange in PREFIX-NNNNN.warc.gz (WARC/1.1) and index it in "
        "PREFIX.cdxj (record: warc).",
    ),
    option(
        "warc_max_size",
        default="1GiB",
        show_default=True,
        type=Size(),
        help="Start the next WARC file once one reaches this size.",
    ),
    option(
        "per_host_rate",
        type=Rate(),
        default=None,
        help="Requests started per host at most, e.g. 5/s or 30/m (smooth, not in bursts).",
    ),
    option(
        "burst",
        default=1,
        show_default=True,
        type=click.IntRange(min=1),
        help="Requests a host may start at once within --per-host-rate.",
    ),
    option(
        "delay",
        default=0.0,
        show_default=True,
        type=positive_float(0),
        help="Least seconds between two requests started to one host.",
    ),
    option(
        "jitter",
        default=0.0,
        show_default=True,
        type=click.FloatRange(0, 1),
        help="Stretch each --delay by a random part of it, up to this fraction.",
    ),
    option(
        "adaptive",
        is_flag=True,
        help="Slow a host down on 429/503, timeouts and rising latency; recover slowly.",
    ),
    option(
        "dead_after",
        default=5,
        show_default=True,
        type=click.IntRange(min=0),
        help="Consecutive connection failures that park an endpoint (host and port; 0: never).",
    ),
    option(
        "dead_cooldown",
        default=30.0,
        show_default=True,
        type=positive_float(),
        help="Seconds a parked endpoint waits before a probe (doubles per failed probe).",
    ),
    option(
        "respect_robots",
        is_flag=True,
        help="Fetch each site's robots.txt once and skip what it disallows (error kind robots).",
    ),
    option(
        "robots_crawl_delay",
        is_flag=True,
        help="Also honour robots.txt Crawl-delay as the host's least delay (at most 60 s).",
    ),
    option(
        "config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=load_config,
        help='Read options, and [hosts."PATTERN"] overrides, from this TOML file.',
    ),
    *TAIL_OPTIONS,
]

#: Give a command every option of a job (output, journal, limits, politeness …).
job_options = with_options(_JOB_OPTIONS)
