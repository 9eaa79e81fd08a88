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
    with_options,
)
from shoal.cli.parsing import DEFAULT_RETRY_ON
from shoal.cli.settings import load_config

#: Every option of a fetch job, in the order --help shows them.
_JOB_OPTIONS = [
    OUTPUT_OPTION,
    JOB_OPTION,
    RESTART_OPTION,
    CONCURRENCY_OPTION,
    option("per_host"),
    option("timeout"),
    option("connect_timeout"),
    option("read_timeout"),
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
    option("max_retry_after"),
    option("max_redirects"),
    option("max_bytes"),
    option("headers"),
    option("method"),
    option("user_agent"),
    option("insecure"),
    option("ca_bundle"),
    option("transport"),
    option("cookies"),
    option("proxy"),
    option("no_proxy_env"),
    option("fail_http"),
    option("keep_headers"),
    option("resolve"),
    option("dns_servers"),
    option("dns_min_ttl"),
    option("dns_max_ttl"),
    option("dns_concurrency"),
    PROGRESS_OPTION,
    PROGRESS_INTERVAL_OPTION,
    option("save_bodies"),
    option("warc"),
    option("warc_max_size"),
    option("per_host_rate"),
    option("burst"),
    option("delay"),
    option("jitter"),
    option("adaptive"),
    option("dead_after"),
    option("dead_cooldown"),
    option("respect_robots"),
    option("robots_crawl_delay"),
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
