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

from shoal.config.values import MiB

#: Whose a setting is on a job shared by workers: the job's (every worker applies the job's
#: and a worker with another value is refused), or each worker's own (its machine's network,
#: its files, what it shows).
JOB, WORKER = "job", "worker"


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: ``path`` is its place in the journal's copy of a job's settings
    (``limits.per_host``; ``None``: a command line's own, not kept), ``flag`` the option
    that sets it (``None``: none does), ``param`` that option's parameter name (by default
    the path's last part), ``short`` its one-letter name, ``whose`` the job's or each
    worker's (:data:`JOB`, :data:`WORKER`); ``size`` marks a size in bytes (shown as
    ``50 MiB``); ``kept``: in the journal's copy (else a setting of the engine the journal
    does not keep)."""

    path: str | None
    flag: str | None
    param: str | None = None
    short: str | None = None
    whose: str = JOB
    size: bool = False
    kept: bool = True

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


#: Every setting of a job, in the order of the journal's copy (and of ``shoal report``).
SETTINGS: tuple[Setting, ...] = (
    _s("shoal", whose=WORKER),
    _s("limits.concurrency", "--concurrency", short="-c", whose=WORKER),
    _s("limits.per_host", "--per-host"),
    _s("limits.max_bytes", "--max-bytes", size=True),
    _s("limits.max_redirects", "--max-redirects"),
    _s("timeouts.total_s", "--timeout", param="timeout"),
    _s("timeouts.connect_s", "--connect-timeout", param="connect_timeout"),
    _s("timeouts.read_s", "--read-timeout", param="read_timeout"),
    _s("retry.retries", "--retries"),
    _s("retry.backoff_base_s", "--backoff", param="backoff"),
    _s("retry.backoff_max_s", "--backoff-max", param="backoff_max"),
    _s("retry.retry_after_max_s", "--max-retry-after", param="max_retry_after"),
    _s("retry.on_errors", "--retry-on", param="retry_on"),
    _s("retry.on_statuses", "--retry-on", param="retry_on"),
    _s("retry.on_exceptions", "--retry-on", param="retry_on"),
    _s("retry.seed", whose=WORKER),
    _s("politeness.per_second", "--per-host-rate", param="per_host_rate"),
    _s("politeness.burst", "--burst"),
    _s("politeness.delay_s", "--delay", param="delay"),
    _s("politeness.jitter", "--jitter"),
    _s("politeness.adaptive", "--adaptive"),
    _s("politeness.dead_after", "--dead-after"),
    _s("politeness.dead_cooldown_s", "--dead-cooldown", param="dead_cooldown"),
    _s("politeness.dead_probes"),
    _s("politeness.respect_robots", "--respect-robots"),
    _s("politeness.robots_crawl_delay", "--robots-crawl-delay"),
    _s("politeness.crawl_delay_max_s"),
    _s("politeness.hosts", "--config", param="config"),
    _s("dns.servers", "--dns-server", param="dns_servers", whose=WORKER),
    _s("dns.min_ttl_s", "--dns-min-ttl", param="dns_min_ttl", whose=WORKER),
    _s("dns.max_ttl_s", "--dns-max-ttl", param="dns_max_ttl", whose=WORKER),
    _s("dns.negative_ttl_s", whose=WORKER),
    _s("dns.max_lookups", "--dns-concurrency", param="dns_concurrency", whose=WORKER),
    _s("dns.timeout_s", whose=WORKER),
    _s("dns.tries", whose=WORKER),
    _s("dns.max_names", whose=WORKER),
    _s("dns.prefer_ipv6", whose=WORKER),
    _s("crawl.max_depth", "--max-depth"),
    _s("crawl.max_requests", "--max-requests"),
    _s("crawl.scope", "--scope"),
    _s("crawl.include", "--include"),
    _s("crawl.exclude", "--exclude"),
    _s("records.keep_headers", "--keep-headers"),
    _s("user_agent", "--user-agent"),
    _s("headers", "--header", short="-H"),
    _s("fail_http", "--fail"),
    _s("verify_tls", "--insecure", param="insecure", short="-k"),
    _s("cookies", "--cookies"),
    _s("proxy", "--proxy", whose=WORKER),
    _s("proxy_env", "--no-proxy-env", param="no_proxy_env", whose=WORKER),
    _s("ca_bundle", "--ca-bundle", whose=WORKER, kept=False),
    _s("resolve", "--resolve", whose=WORKER),
    _s("output", "--output", short="-o", whose=WORKER),
    _s("save_bodies", "--save-bodies", whose=WORKER),
    _s("warc", "--warc", whose=WORKER),
    _s("warc_max_size", "--warc-max-size", whose=WORKER, size=True, kept=False),
    _s("shard", whose=WORKER),
    _s("attempt_max_s", whose=WORKER),
    # A command line's own: what it shows, where the job lives, how it is run.
    _s(None, "--job", param="journal", whose=WORKER),
    _s(None, "--store", param="store", whose=WORKER),
    _s(None, "--processes", param="processes", short="-p", whose=WORKER),
    _s(None, "--progress", param="progress", whose=WORKER),
    _s(None, "--progress-interval", param="progress_interval", whose=WORKER),
    _s(None, "--quiet", param="quiet", short="-q", whose=WORKER),
    _s(None, "--dashboard", param="dashboard", whose=WORKER),
    _s(None, "--dashboard-token", param="dashboard_token", whose=WORKER),
    # … and the job's, given again by every worker that joins it.
    _s(None, "--restart", param="restart"),
    _s(None, "--retry-failed", param="retry_failed"),
    _s(None, "--method", param="method"),
    _s(None, "--lease-ttl", param="lease_ttl"),
    _s(None, "--lease-hold", param="lease_hold"),
)

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
