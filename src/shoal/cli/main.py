"""``shoal``'s command line: its commands. Options are parsed in ``cli/`` and only there
(the ones every job shares are in :mod:`shoal.cli.options`)."""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Any

import click
from rich.console import Console

from shoal.cli.crawl import crawl
from shoal.cli.launch import start_job
from shoal.cli.map import map_command
from shoal.cli.options import job_options
from shoal.cli.run import (
    EXIT_FAULT,
    EXIT_USAGE,
    ignore_file_size_signal,
    run_async,
)
from shoal.cli.settings import use_environment
from shoal.errors import JournalError
from shoal.result import ErrorKind
from shoal.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """Fetch very large lists of HTTP requests concurrently, politely and resumably."""


@cli.command()
@click.argument(
    "input_path", metavar="INPUT", default="-", type=click.Path(allow_dash=True, dir_okay=False)
)
@job_options
def fetch(input_path: str, **options: Any) -> None:
    """Fetch every request in INPUT (a file of URLs or JSON objects; '-' or none: stdin).

    Records go to OUTPUT as JSON lines. Running the same command again resumes the job.
    """
    start_job(input_path, **options)


#: How often ``shoal worker --wait`` looks for a job not made yet (seconds).
_WAIT_FOR_JOB_S = 0.5

#: A worker's own settings: everything else is the job's.
_WORKER_OWN = frozenset(
    {
        "concurrency",
        "progress",
        "quiet",
        "dashboard",
        "dashboard_token",
        "save_bodies",
        "warc",
        "warc_max_size",
        "output",
        "store",
        "journal",
        "processes",
        # The machine's own network: how it resolves names, its proxy, its trust store.
        "resolve",
        "dns_servers",
        "dns_min_ttl",
        "dns_max_ttl",
        "dns_concurrency",
        "proxy",
        "ca_bundle",
    }
)


@cli.command()
@job_options
@click.option(
    "--wait",
    is_flag=True,
    help="Keep waiting for work once none is left, until stopped (for input still to come);"
    " and for the job, if it is not made yet.",
)
@click.option(
    "--wait-for-job",
    is_flag=True,
    help="Wait for the job to be made if it is not yet; then work, and exit once no work is"
    " left (workers started before their job).",
)
def worker(wait: bool, wait_for_job: bool, **given: Any) -> None:
    """Work on a job kept in PostgreSQL (--store URL --job NAME) alongside any other
    workers, on this machine or others; exit once no work is left.

    The job's settings are the ones it was created with; this worker's own are its
    concurrency (-c), what it shows, and where it saves bodies and its web archive (its own
    files: --warc PREFIX becomes PREFIX.worker-MACHINE-PID-TAG-00000.warc.gz). Another
    value of any other option is refused. A job of shoal map imports its MODULE here too.
    """
    from shoal.cli.run import WORKER, WorkerMode
    from shoal.cli.settings import use_host_tables
    from shoal.store.postgres_reader import MissingJob, PostgresReader

    ctx = click.get_current_context()
    if given["store"] is None:
        raise click.BadParameter("a worker needs the job's store", param_hint="'--store'")
    if not given["journal"]:
        raise click.BadParameter("a worker needs the job's name", param_hint="'--job'")

    async def read() -> dict[str, Any]:
        told = False
        while True:
            try:
                async with PostgresReader(given["store"], given["journal"], patience_s=60) as job:
                    return await job.options()
            except MissingJob:
                if not (wait or wait_for_job):
                    raise
            if not told:  # until it is made
                click.echo(f"shoal: waiting for job {given['journal']!r} to be made", err=True)
                told = True
            await asyncio.sleep(_WAIT_FOR_JOB_S)

    try:
        kept = run_async(read())
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc
    commands: dict[str, click.Command] = {"fetch": fetch, "crawl": crawl, "map": map_command}
    command = commands.get(str(kept.get("command")))
    if command is None:
        raise click.UsageError(f"job {given['journal']!r} cannot be worked on by shoal worker")
    params = {name: _param(value) for name, value in kept["params"].items()}
    names = {param.name: param for param in ctx.command.params}
    takes = {param.name for param in command.params}
    for name, value in given.items():
        source = ctx.get_parameter_source(name)
        if source is None or source is click.core.ParameterSource.DEFAULT:
            continue
        if name not in takes:  # an option of a fetch given for a map, say
            if source is not click.core.ParameterSource.COMMANDLINE:
                continue  # (the machine's environment, meant for jobs of other kinds)
            raise click.BadParameter(
                f"job {given['journal']!r} is a {command.name} job, which has no such option",
                param_hint=f"'{_flag(names[name])}'",
            )
        if name in _WORKER_OWN:
            params[name] = value
        elif _param(value) != params.get(name):
            raise click.BadParameter(
                f"job {given['journal']!r} has {params.get(name)!r}; every worker applies"
                " the job's settings",
                param_hint=f"'{_flag(names[name])}'",
            )
    for name in ("store", "journal", "output"):
        params[name] = given[name]
    if kept.get("hosts"):
        tables, path = kept["hosts"]
        use_host_tables(ctx, tables, path)
    ctx.meta[WORKER] = WorkerMode(wait=wait)
    ctx.invoke(command, **params)


def _flag(option: click.Parameter) -> str:
    """An option's longest name (``--concurrency``, not ``-c``)."""
    names: list[str] = list(getattr(option, "opts", None) or [str(option.name)])
    return max(names, key=len)


def _param(value: Any) -> Any:
    """A parameter as kept with a job (lists for tuples) and as given, alike."""
    return tuple(_param(item) for item in value) if isinstance(value, list | tuple) else value


use_environment(fetch)
use_environment(worker)
cli.add_command(crawl)
cli.add_command(map_command)
use_environment(crawl)
use_environment(map_command)


#: Reading a job kept in PostgreSQL instead of a journal file: ``--store URL --job NAME``.
_STORE = click.option(
    "--store",
    default=None,
    metavar="URL",
    help="Read the job from this PostgreSQL database (JOB, or --job, is then its name).",
)
_JOB_NAME = click.option("--job", "job_name", default=None, help="With --store: the job's name.")


def _shared_job(store: str | None, job: str | None, job_name: str | None) -> tuple[str, str] | None:
    """The shared job a reading command is asked for (``None``: a journal file)."""
    if store is None:
        if job is None:
            raise click.UsageError("Missing argument 'JOB'.")
        return None
    name = job_name or job
    if not name:
        raise click.BadParameter("the job's name is needed with --store", param_hint="'--job'")
    return store, name


def _pausing(paused: bool) -> click.Command:
    """``shoal pause`` or ``shoal resume``: the whole of a shared job."""

    @click.option("--store", required=True, metavar="URL", help="The job's PostgreSQL database.")
    @click.option("--job", "job_name", required=True, help="The job's name.")
    def command(store: str, job_name: str) -> None:
        from shoal.cli.export import share_pause

        if not store.startswith(("postgresql://", "postgres://")):
            raise click.BadParameter(
                f"{store!r} is not a PostgreSQL URL (postgresql://USER@HOST/DB)",
                param_hint="'--store'",
            )
        try:
            share_pause(store, job_name, paused)
        except JournalError as exc:
            raise click.UsageError(str(exc)) from exc

    command.__doc__ = (
        "Pause every worker of a job kept in PostgreSQL: each starts no new request within"
        " about a second (those in flight finish), and one that joins starts paused."
        if paused
        else "Resume every worker of a job kept in PostgreSQL after shoal pause (or a pause"
        " on any worker's dashboard)."
    )
    return click.command(name="pause" if paused else "resume")(command)


cli.add_command(_pausing(True))
cli.add_command(_pausing(False))


@cli.command()
@click.argument("job", metavar="JOB", required=False, type=click.Path(dir_okay=False))
@_STORE
@_JOB_NAME
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw every second until the job is complete or no shoal runs it "
    "(with --json: one object per second).",
)
def status(
    job: str | None, store: str | None, job_name: str | None, as_json: bool, watch: bool
) -> None:
    """Show a job's counts and progress from its journal (JOB: the journal, or the output
    file it sits beside; with --store, the job's name). Safe while the job runs."""
    from shoal.cli.export import journal_of, show_status, watch_status

    shared = _shared_job(store, job, job_name)
    try:
        if shared is not None:
            from shoal.cli.export import show_shared_status

            show_shared_status(*shared, as_json=as_json, watch=watch)
            return
        assert job is not None
        path = journal_of(job)
        if watch:
            watch_status(path, as_json=as_json)
        else:
            show_status(path, as_json=as_json)
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc


@cli.command()
@click.argument("job", metavar="JOB", required=False, type=click.Path(dir_okay=False))
@_STORE
@_JOB_NAME
@click.option(
    "--format",
    "form",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="JSON lines (the records as written), or CSV with one column per field.",
)
@click.option(
    "--only",
    type=click.Choice(["all", "ok", "failed"]),
    default="all",
    show_default=True,
    help="Only successes, or only failures.",
)
@click.option("--error", "errors", multiple=True, help="Only this error kind (repeatable).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="Only this status (503) or class (5xx) (repeatable).",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default="stdout",
    type=click.Path(allow_dash=True, dir_okay=False, writable=True),
    help="Where the records go.",
)
def export(
    job: str | None,
    store: str | None,
    job_name: str | None,
    form: str,
    only: str,
    errors: tuple[str, ...],
    statuses: tuple[str, ...],
    output: str,
) -> None:
    """Write a job's final records again from its journal, in commit order (JOB: the
    journal, or the output file it sits beside)."""
    from shoal.cli.export import journal_of, output_stream, record_filter, write_records
    from shoal.store.reader import JournalReader

    kinds = {kind.value for kind in ErrorKind}
    for kind in errors:
        if kind not in kinds:
            raise click.BadParameter(
                f"{kind!r} is not an error kind ({', '.join(sorted(kinds))})",
                param_hint="'--error'",
            )
    for code in statuses:
        if not (code.isdigit() and 100 <= int(code) <= 599) and not (
            len(code) == 3 and code[0] in "12345" and code[1:].lower() == "xx"
        ):
            raise click.BadParameter(
                f"{code!r} is not a status or a class such as 5xx", param_hint="'--status'"
            )
    shared = _shared_job(store, job, job_name)
    failed = {"all": None, "ok": False, "failed": True}[only]
    keep = record_filter(errors, tuple(s.lower() for s in statuses))
    if shared is not None:
        from shoal.cli.export import export_shared

        try:
            export_shared(*shared, output, form=form, failed=failed, keep=keep)
        except JournalError as exc:
            raise click.UsageError(str(exc)) from exc
        return
    assert job is not None
    path = journal_of(job)
    try:
        with JournalReader(path) as reader:
            out = output_stream(output)
            try:
                write_records(
                    reader.records(failed=failed),
                    out,
                    form=form,
                    keep=keep,
                )
            finally:
                out.flush()
                if out is not sys.stdout.buffer:
                    out.close()
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc


@cli.command()
@click.argument("job", metavar="JOB", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--store",
    default=None,
    metavar="URL",
    help="Report on a job kept in this PostgreSQL database (postgresql://USER@HOST/DB),"
    " named by --job (no JOB then).",
)
@_JOB_NAME
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(allow_dash=True, dir_okay=False, writable=True),
    help="Where the page goes ('-': stdout; default: the journal's path, its .journal"
    " suffix replaced by .report.html; with --store, NAME.report.html in the current"
    " folder).",
)
def report(job: str | None, store: str | None, job_name: str | None, output: str | None) -> None:
    """Write a job's report, one self-contained HTML page, from its journal (JOB: the
    journal, or the output file it sits beside; or --store URL --job NAME: a job kept in
    PostgreSQL, with a section on its workers). Safe while the job runs."""
    from shoal.cli.export import write_report, write_shared_report

    if store is None:
        if job_name is not None:
            raise click.BadParameter(
                "names a job kept in a store: give the store too (--store URL)",
                param_hint="'--job'",
            )
        if job is None:
            raise click.UsageError("Missing argument 'JOB'.")
        write_report(job, output)
        return
    if not store.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter(
            f"{store!r} is not a PostgreSQL URL (postgresql://USER@HOST/DB)",
            param_hint="'--store'",
        )
    if job is not None:
        raise click.BadParameter(
            f"a job kept in a store is named by --job NAME, not by a JOB argument ({job!r})",
            param_hint="'--store'",
        )
    if not job_name:
        raise click.BadParameter("the job's name is needed with --store", param_hint="'--job'")
    write_shared_report(store, job_name, output)


@cli.command()
@click.option(
    "-n",
    "--requests",
    "count",
    default=3000,
    show_default=True,
    type=click.IntRange(min=10, max=1_000_000),
    help="How many requests the demo makes.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Keep the records here (default: a temporary file).",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "on", "off"]),
    default="on",
    show_default=True,
    help="Progress on stderr.",
)
def demo(count: int, output: str | None, progress: str) -> None:
    """Fetch a few thousand URLs from a built-in local server (no network needed)."""
    from shoal.cli.demo import run_demo

    console = Console(stderr=True, soft_wrap=True, emoji=False)
    show = progress == "on" or (progress == "auto" and console.is_terminal)
    sys.exit(run_async(run_demo(count, output, show, console)))


def main() -> None:
    """Entry point of the ``shoal`` command."""
    ignore_file_size_signal()
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:  # interrupted before the job's own handler was installed
        sys.exit(130)
    except Exception:  # noqa: BLE001 - a bug: say so, and do not exit 1 ("some failed")
        traceback.print_exc()
        print("shoal: internal error (a bug): the journal is intact", file=sys.stderr)
        sys.exit(EXIT_FAULT)


if __name__ == "__main__":
    main()

__all__ = ["EXIT_USAGE", "cli", "main"]
