"""Launching a job: a command's options made, once, into one
:class:`~shoal.cli.spec.JobSpec` (the engine's settings, the job's places, a shared
store's job with ``--store``), and the one launcher that runs it: in this process (on its
journal, or as a worker of a shared store's job) or in ``--processes`` worker processes.

(The options are declared in :mod:`shoal.cli.options` and :mod:`shoal.cli.fetch_options`,
named by the settings table, :data:`shoal.config.SETTINGS`.)
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import click
from rich.console import Console

from shoal.cli import logs
from shoal.cli.options import setting_flag
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
    check_dashboard,
    default_journal,
    run_async,
    run_job,
)
from shoal.cli.settings import host_policies, host_tables
from shoal.cli.spec import WORKER, EngineSettings, JobOptions, JobSpec, StoreSpec, WorkerMode
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
from shoal.engine import Handler
from shoal.errors import ConfigError
from shoal.fetching import ensure_descriptors
from shoal.result import ErrorKind
from shoal.sources.items import valid_method


def start_job(
    input_path: str,
    given: Mapping[str, Any],
    *,
    crawl: Crawl | None = None,
    handler: Handler | None = None,
    seeds: tuple[str, ...] | None = None,
    input_label: str = "INPUT",
) -> NoReturn:
    """Build the job's specification from a command's options (``given``: every option
    of :func:`shoal.cli.fetch_options.job_options`, by parameter name), launch it, and exit
    with its code.

    ``crawl`` and ``handler`` are a crawl's (:class:`shoal.Crawl` and its link follower);
    ``seeds`` are input requests given as arguments; ``input_label`` names the input in
    messages.
    """
    retry_on = parse_retry_on(given["retry_on"])
    retry = None
    if given["retry_failed"] is not None:
        kinds, statuses = parse_retry_on(given["retry_failed"], "--retry-failed")
        retry = RetryFailed(frozenset(kind.value for kind in kinds), statuses)
    method = given["method"]
    if method is not None and not valid_method(method):
        raise click.BadParameter(f"{method!r} is not an HTTP method", param_hint="'--method'")
    if given["dashboard"] is not None:
        check_dashboard(given["dashboard"][0], given["dashboard_token"])
    console = Console(stderr=True, soft_wrap=True, emoji=False)
    logs.use_console(console)
    settings = named_settings(lambda: fetch_settings(given, retry_on, crawl, handler))
    options = job_places(
        input_path,
        given,
        console,
        input_label=input_label,
        bodies=given["save_bodies"],
        warc=given["warc"],
        method=(method or "GET").upper(),
        seeds=seeds,
    )
    processes = process_count(given["processes"])
    if crawl is not None and given["processes"] != "1" and options.store is None:
        # Each process owns its hosts whole; a link that may leave its page's host could
        # belong to another process's.
        if crawl.scope not in ("same-host", "same-origin"):
            raise click.BadParameter(
                f"a crawl in several processes needs --scope same-host or same-origin"
                f" (links within a host), not {crawl.scope}",
                param_hint="'--processes'",
            )
        budget = crawl.max_requests
        if budget is not None and budget < processes:
            raise click.BadParameter(
                f"--max-requests {budget} cannot be shared by {processes} processes",
                param_hint="'--processes'",
            )
    launch(JobSpec(settings, options, processes, retry=retry), console)


def named_settings(
    build: Callable[[], EngineSettings], command: str | None = None
) -> EngineSettings:
    """``build()``'s settings, checked as the engine checks them (its value classes, then
    the engine made from them); a setting refused is a usage error naming its option."""
    try:
        settings = build()
        # What the engine refuses: a CA bundle, say; and the open-file limit, checked here
        # (the engine checks it on entering: here it is a usage error, before any output).
        ensure_descriptors(settings.engine().limits.concurrency)
    except ConfigError as exc:
        raise click.BadParameter(
            exc.message, param_hint=f"'{setting_flag(exc.option, command)}'"
        ) from exc
    return settings


def fetch_settings(
    given: Mapping[str, Any],
    retry_on: tuple[frozenset[ErrorKind], frozenset[int]],
    crawl: Crawl | None,
    handler: Handler | None,
) -> EngineSettings:
    """The engine's settings from a fetch's (or a crawl's) options (``retry_on``:
    ``--retry-on`` as parsed)."""
    retry_kinds, retry_statuses = retry_on
    timeouts = Timeouts(
        total_s=given["timeout"],
        connect_s=given["connect_timeout"],
        read_s=given["read_timeout"],
    )
    robots_crawl_delay = given["robots_crawl_delay"]
    return EngineSettings(
        limits=Limits(
            concurrency=given["concurrency"],
            per_host=given["per_host"],
            max_bytes=given["max_bytes"],
            max_redirects=given["max_redirects"],
        ),
        timeouts=timeouts,
        politeness=Politeness(
            per_second=given["per_host_rate"],
            burst=given["burst"],
            delay_s=given["delay"],
            jitter=given["jitter"],
            adaptive=given["adaptive"],
            dead_after=given["dead_after"],
            dead_cooldown_s=given["dead_cooldown"],
            respect_robots=given["respect_robots"] or robots_crawl_delay,
            robots_crawl_delay=robots_crawl_delay,
            hosts=host_policies(click.get_current_context(), timeouts),
        ),
        retry=RetryPolicy(
            retries=given["retries"],
            backoff_base_s=given["backoff"],
            backoff_max_s=given["backoff_max"],
            retry_after_max_s=given["max_retry_after"],
            on_errors=retry_kinds,
            on_statuses=retry_statuses,
        ),
        network=Network(
            headers=parse_headers(given["headers"]),
            user_agent=given["user_agent"],
            proxy=given["proxy"],
            proxy_env=not given["no_proxy_env"],
            verify_tls=not given["insecure"],
            ca_bundle=given["ca_bundle"],
            cookies=given["cookies"],
            transport=given["transport"],
            resolve=parse_resolve(given["resolve"]),
            dns=DNSSettings(
                servers=given["dns_servers"],
                min_ttl_s=given["dns_min_ttl"],
                max_ttl_s=given["dns_max_ttl"],
                max_lookups=given["dns_concurrency"],
            ),
        ),
        outputs=Outputs(
            records=Records(keep_headers=parse_keep_headers(given["keep_headers"])),
            bodies=given["save_bodies"],
            warc=given["warc"],
            warc_max_size=given["warc_max_size"],
        ),
        fail_http=given["fail_http"],
        crawl=crawl,
        handler=handler,
    )


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
    given: Mapping[str, Any],
    console: Console,
    *,
    input_label: str = "INPUT",
    bodies: str | None = None,
    warc: str | None = None,
    **more: Any,
) -> JobOptions:
    """The job's options from ``given``, a command's options of :data:`RUN_OPTIONS` by
    parameter name (``more``: a command's own); with ``--store`` the job is kept there (see
    :func:`on_shared_store`).

    Refuses (a usage error) places that clash or cannot be made, before any is written:
    ``input_label`` names the input (``INPUT``, ``ITEMS``, ``--seeds``), ``bodies`` and
    ``warc`` are ``--save-bodies`` and ``--warc``."""
    output, journal, store = given["output"], given["journal"], given["store"]
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
    progress = given["progress"]
    options = JobOptions(
        input=input_path,
        output=output,
        journal=journal if journal is not None else default_journal(output),
        restart=given["restart"],
        progress=progress == "on" or (progress == "auto" and console.is_terminal),
        quiet=given["quiet"],
        dashboard=given["dashboard"],
        dashboard_token=given["dashboard_token"] or None,
        progress_interval_s=given["progress_interval"],
        **more,
    )
    if store is None:
        return options
    return on_shared_store(
        options, store, journal, given["lease_ttl"], given["lease_hold"], given["processes"]
    )


def process_count(processes: str) -> int:
    """The number ``--processes`` asks for (``auto``: one per CPU core)."""
    return (os.cpu_count() or 1) if processes == "auto" else int(processes)


def launch(job: JobSpec, console: Console) -> NoReturn:
    """Run ``job`` and exit with its code: in this process (on its own journal, or as a
    worker of a shared store's job), or in ``job.processes`` worker processes, each making
    its engine from ``job.settings``; first reopen what ``--retry-failed`` or a deeper
    crawl sends again."""
    options, count = job.options, job.processes
    if count > job.settings.limits.concurrency:
        raise click.BadParameter(
            f"{count} processes need --concurrency of at least {count}",
            param_hint="'--processes'",
        )
    crawl = job.settings.crawl
    if job.retry is not None or crawl is not None:
        reopen_before_run(options, count, job.retry, crawl, console)
    if count > 1:
        sys.exit(run_async(run_processes(Plan(job.settings, options, count), console)))
    if options.journal and options.store is None:
        problem = check_journals(options.journal, 1, options.restart)
        if problem is not None:
            raise click.UsageError(problem)
    sys.exit(run_async(run_job(job.settings.engine(), options, console)))
