"""Starting a job from a command's options: the engine and its settings built from them,
the job's places, a shared store's job (``--store``), and one process or several.

(The options themselves are declared in :mod:`shoal.cli.options`.)
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, NoReturn

import click
from rich.console import Console

from shoal.cli import logs
from shoal.cli.options import CLI_NAMES
from shoal.cli.parsing import (
    check_store_url,
    parse_headers,
    parse_keep_headers,
    parse_resolve,
    parse_retry_on,
)
from shoal.cli.places import check_job_places, input_place
from shoal.cli.processes import Plan, check_journals, run_processes
from shoal.cli.reopen import RetryFailed, reopen_before_run
from shoal.cli.run import (
    WORKER,
    JobOptions,
    StoreSpec,
    WorkerMode,
    check_dashboard,
    default_journal,
    run_async,
    run_job,
)
from shoal.cli.settings import host_policies, host_tables
from shoal.config import (
    Crawl,
    DNSSettings,
    Limits,
    Network,
    Outputs,
    Politeness,
    Records,
    RetryPolicy,
    Timeouts,
)
from shoal.engine import Engine
from shoal.errors import ConfigError
from shoal.sources.items import valid_method


def start_job(
    input_path: str,
    output: str,
    journal: str | None,
    restart: bool,
    concurrency: int,
    per_host: int,
    timeout: float,
    connect_timeout: float,
    read_timeout: float,
    retries: int,
    retry_on: str,
    retry_failed: str | None,
    backoff: float,
    backoff_max: float,
    max_retry_after: float,
    max_redirects: int,
    max_bytes: int,
    headers: tuple[str, ...],
    method: str | None,
    user_agent: str,
    insecure: bool,
    ca_bundle: str | None,
    cookies: bool,
    proxy: str | None,
    no_proxy_env: bool,
    fail_http: bool,
    keep_headers: tuple[str, ...],
    resolve: tuple[str, ...],
    dns_servers: tuple[str, ...],
    dns_min_ttl: float,
    dns_max_ttl: float,
    dns_concurrency: int,
    progress: str,
    progress_interval: float,
    save_bodies: str | None,
    warc: str | None,
    warc_max_size: int,
    per_host_rate: float | None,
    burst: int,
    delay: float,
    jitter: float,
    adaptive: bool,
    dead_after: int,
    dead_cooldown: float,
    respect_robots: bool,
    robots_crawl_delay: bool,
    processes: str,
    dashboard: tuple[str, int] | None,
    dashboard_token: str | None,
    quiet: bool,
    store: str | None,
    lease_ttl: float,
    lease_hold: float,
    extra: dict[str, Any] | None = None,
    seeds: tuple[str, ...] | None = None,
    input_label: str = "INPUT",
) -> NoReturn:
    """Build the engine and the job from the options, run it, and exit with its code.

    ``extra`` adds engine settings a command has of its own (a crawl's handler and
    :class:`shoal.Crawl`); ``seeds`` are input requests given as arguments;
    ``input_label`` names the input in messages.
    """
    retry_kinds, retry_statuses = parse_retry_on(retry_on)
    retry = None
    if retry_failed is not None:
        kinds, statuses = parse_retry_on(retry_failed, "--retry-failed")
        retry = RetryFailed(frozenset(kind.value for kind in kinds), statuses)
    if method is not None and not valid_method(method):
        raise click.BadParameter(f"{method!r} is not an HTTP method", param_hint="'--method'")
    if dashboard is not None:
        check_dashboard(dashboard[0], dashboard_token)
    console = Console(stderr=True, soft_wrap=True, emoji=False)
    logs.use_console(console)
    try:
        settings: dict[str, Any] = dict(
            limits=Limits(
                concurrency=concurrency,
                per_host=per_host,
                max_bytes=max_bytes,
                max_redirects=max_redirects,
            ),
            timeouts=(
                timeouts := Timeouts(
                    total_s=timeout, connect_s=connect_timeout, read_s=read_timeout
                )
            ),
            politeness=Politeness(
                per_second=per_host_rate,
                burst=burst,
                delay_s=delay,
                jitter=jitter,
                adaptive=adaptive,
                dead_after=dead_after,
                dead_cooldown_s=dead_cooldown,
                respect_robots=respect_robots or robots_crawl_delay,
                robots_crawl_delay=robots_crawl_delay,
                hosts=host_policies(click.get_current_context(), timeouts),
            ),
            retry=RetryPolicy(
                retries=retries,
                backoff_base_s=backoff,
                backoff_max_s=backoff_max,
                retry_after_max_s=max_retry_after,
                on_errors=retry_kinds,
                on_statuses=retry_statuses,
            ),
            network=Network(
                headers=parse_headers(headers),
                user_agent=user_agent,
                proxy=proxy,
                proxy_env=not no_proxy_env,
                verify_tls=not insecure,
                ca_bundle=ca_bundle,
                cookies=cookies,
                resolve=parse_resolve(resolve),
                dns=DNSSettings(
                    servers=dns_servers,
                    min_ttl_s=dns_min_ttl,
                    max_ttl_s=dns_max_ttl,
                    max_lookups=dns_concurrency,
                ),
            ),
            outputs=Outputs(
                records=Records(keep_headers=parse_keep_headers(keep_headers)),
                bodies=save_bodies,
                warc=warc,
                warc_max_size=warc_max_size,
            ),
            fail_http=fail_http,
            **(extra or {}),
        )
        engine = Engine(**settings)
    except ConfigError as exc:
        raise click.BadParameter(
            exc.message, param_hint=f"'{CLI_NAMES.get(exc.option, exc.option)}'"
        ) from exc
    options = job_places(
        input_path,
        output,
        journal,
        restart,
        progress,
        quiet,
        dashboard,
        dashboard_token,
        console,
        (store, lease_ttl, lease_hold, processes),
        input_label=input_label,
        bodies=save_bodies,
        warc=warc,
        progress_interval_s=progress_interval,
        method=(method or "GET").upper(),
        seeds=seeds,
    )
    crawl: Crawl | None = (extra or {}).get("crawl")
    if crawl is not None and processes != "1" and store is None:
        # Each process owns its hosts whole; a link that may leave its page's host could
        # belong to another process's.
        if crawl.scope not in ("same-host", "same-origin"):
            raise click.BadParameter(
                f"a crawl in several processes needs --scope same-host or same-origin"
                f" (links within a host), not {crawl.scope}",
                param_hint="'--processes'",
            )
        budget, count = crawl.max_requests, process_count(processes)
        if budget is not None and budget < count:
            raise click.BadParameter(
                f"--max-requests {budget} cannot be shared by {count} processes",
                param_hint="'--processes'",
            )
    launch(engine, settings, options, processes, console, retry=retry, crawl=crawl)


def on_shared_store(
    options: JobOptions,
    url: str,
    name: str | None,
    lease_ttl: float,
    lease_hold: float,
    processes: str,
) -> JobOptions:
    """``options`` of a job kept on the shared store ``url`` (``--store``), as this command
    works on it: a ``shoal worker`` joins it (see :data:`WORKER`); any other job command
    creates or continues it and admits its input, keeping its options with it (for the
    workers). ``name`` is the job's (``--job``); ``-o``, when given, is written from the
    job once it is complete."""
    check_store_url(url)
    if not name:
        raise click.BadParameter("a job on a shared store needs a name", param_hint="'--job'")
    check_shared(processes, options.restart)
    ctx = click.get_current_context()
    joining: WorkerMode | None = ctx.meta.get(WORKER)
    given = ctx.get_parameter_source("output")
    output_given = given is not None and given is not click.core.ParameterSource.DEFAULT
    spec = StoreSpec(
        dsn=url,
        job=name,
        admit=joining is None,
        wait=joining is not None and joining.wait,
        lease_ttl_s=lease_ttl,
        hold_s=lease_hold,
        options=job_record(ctx),
        output=options.output if output_given else None,
    )
    return dataclasses.replace(options, store=spec)


def check_shared(processes: str, restart: bool) -> None:
    """Refuse what a job on a shared store cannot be given."""
    if processes != "1":
        raise click.BadParameter(
            "a job on a shared store scales by workers: start more (shoal worker)",
            param_hint="'--processes'",
        )
    if restart:
        raise click.BadParameter(
            "a job on a shared store is not discarded from here: give another --job name",
            param_hint="'--restart'",
        )


def job_record(ctx: click.Context) -> dict[str, Any]:
    """What a shared job keeps of the command that created it, for its workers: the
    command's name, its parameters (JSON-ready) and the config file's host tables."""
    hosts = host_tables(ctx)
    return {
        "command": ctx.command.name,
        "params": {name: _plain_param(value) for name, value in ctx.params.items()},
        "hosts": None if hosts is None else [hosts[0], hosts[1]],
    }


def _plain_param(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain_param(item) for item in value]
    return value


def job_places(
    input_path: str,
    output: str,
    journal: str | None,
    restart: bool,
    progress: str,
    quiet: bool,
    dashboard: tuple[str, int] | None,
    dashboard_token: str | None,
    console: Console,
    shared: tuple[str | None, float, float, str],
    *,
    input_label: str = "INPUT",
    bodies: str | None = None,
    warc: str | None = None,
    **more: Any,
) -> JobOptions:
    """The job's options from those of :data:`RUN_OPTIONS` (``more``: a command's own);
    ``shared`` is ``--store``, ``--lease-ttl``, ``--lease-hold`` and ``--processes``: with a
    store, the job is kept there (see :func:`on_shared_store`).

    Refuses (a usage error) places that clash or cannot be made, before any is written:
    ``input_label`` names the input (``INPUT``, ``ITEMS``, ``--seeds``), ``bodies`` and
    ``warc`` are ``--save-bodies`` and ``--warc``."""
    store = shared[0]
    joining = click.get_current_context().meta.get(WORKER) is not None
    reads = not joining and more.get("seeds") is None  # (a worker reads no input)
    check_job_places(
        input_place(input_label, input_path) if reads else None,
        output,
        None if store is not None else journal if journal is not None else default_journal(output),
        journal_given=journal is not None,
        bodies=bodies,
        warc=warc,
    )
    options = JobOptions(
        input=input_path,
        output=output,
        journal=journal if journal is not None else default_journal(output),
        restart=restart,
        progress=progress == "on" or (progress == "auto" and console.is_terminal),
        quiet=quiet,
        dashboard=dashboard,
        dashboard_token=dashboard_token or None,
        **more,
    )
    store, lease_ttl, lease_hold, processes = shared
    if store is None:
        return options
    return on_shared_store(options, store, journal, lease_ttl, lease_hold, processes)


def process_count(processes: str) -> int:
    """The number ``--processes`` asks for (``auto``: one per CPU core)."""
    return (os.cpu_count() or 1) if processes == "auto" else int(processes)


def launch(
    engine: Engine,
    settings: dict[str, Any],
    options: JobOptions,
    processes: str,
    console: Console,
    *,
    retry: RetryFailed | None = None,
    crawl: Crawl | None = None,
) -> NoReturn:
    """Run the job in this process, or in ``processes`` worker processes (each making its
    engine from ``settings``), and exit with its code; first reopen what ``retry``
    (``--retry-failed``) or a deeper ``crawl`` sends again."""
    count = process_count(processes)
    concurrency = engine.limits.concurrency
    if count > concurrency:
        raise click.BadParameter(
            f"{count} processes need --concurrency of at least {count}",
            param_hint="'--processes'",
        )
    if retry is not None or crawl is not None:
        reopen_before_run(options, count, retry, crawl, console)
    if count == 1:
        problem = (
            check_journals(options.journal, 1, options.restart)
            if options.journal and options.store is None
            else None
        )
        if problem is not None:
            raise click.UsageError(problem)
        sys.exit(run_async(run_job(engine, options, console)))
    sys.exit(run_async(run_processes(Plan(settings, options, count), console)))
