"""``shoal``'s command line: its commands. Options are parsed in ``cli/`` and only there
(the ones every job shares are in :mod:`shoal.cli.options`)."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click
from rich.console import Console

from shoal.cli.crawl import crawl
from shoal.cli.fetch_options import job_options
from shoal.cli.launch import start_job
from shoal.cli.map import map_command
from shoal.cli.parsing import WatchedCommand, check_interval, check_store_url
from shoal.cli.run import (
    EXIT_FAULT,
    EXIT_USAGE,
    ignore_file_size_signal,
    run_async,
)
from shoal.cli.settings import use_environment
from shoal.cli.workers import pause, resume, worker
from shoal.errors import JournalError
from shoal.result import ErrorKind
from shoal.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """Fetch very large lists of HTTP requests concurrently, politely and resumably."""


@cli.command()
@click.argument(
    "input_path",
    metavar="[INPUT | URL...]",
    nargs=-1,
    type=click.Path(allow_dash=True, dir_okay=False),
)
@job_options
def fetch(input_path: tuple[str, ...] | str, **options: Any) -> None:
    """Fetch every request in INPUT (a file of URLs or JSON objects; '-' or none: stdin),
    or the URLs given as arguments (each starting with http:// or https://).

    Records go to OUTPUT as JSON lines. Running the same command again resumes the job.
    """
    path, urls = split_inputs((input_path,) if isinstance(input_path, str) else input_path)
    if urls:
        start_job("<seeds>", options, seeds=urls)
    start_job(path, options)


def split_inputs(given: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The input file (``-``: stdin) or the URLs ``fetch`` is given: an argument that
    starts with ``http://`` or ``https://`` is a URL, any other a file; one file, or URLs."""
    urls = tuple(arg for arg in given if arg.lower().startswith(("http://", "https://")))
    files = [arg for arg in given if arg not in urls]
    if urls and files:
        raise click.UsageError(
            f"{files[0]!r} is not a URL (http:// or https://): give one INPUT file, or URLs"
            " as arguments, not both"
        )
    if len(files) > 1:
        raise click.UsageError(
            f"one INPUT file at most, not {len(files)}: give URLs as arguments with their"
            " scheme (http:// or https://)"
        )
    return (files[0] if files else "-"), urls


use_environment(fetch)
cli.add_command(worker)
use_environment(worker)
cli.add_command(pause)
cli.add_command(resume)
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
    check_store_url(store)
    name = job_name or job
    if not name:
        raise click.BadParameter("the job's name is needed with --store", param_hint="'--job'")
    return store, name


@cli.command(cls=WatchedCommand)
@click.argument("job", metavar="JOB", required=False, type=click.Path(dir_okay=False))
@_STORE
@_JOB_NAME
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option(
    "--watch",
    "every_s",
    type=float,
    default=None,
    metavar="[S]",
    callback=check_interval,
    help="Look again every S seconds (default 1), with the rate and an ETA, until the job"
    " is complete or no shoal runs it (with --json: one object per look). A number right"
    " after --watch is S; any other word is JOB.",
)
def status(
    job: str | None,
    store: str | None,
    job_name: str | None,
    as_json: bool,
    every_s: float | None,
) -> None:
    """Show a job's counts and progress from its journal (JOB: the journal, or the output
    file it sits beside; with --store, the job's name). Safe while the job runs."""
    from shoal.cli.export import job_address
    from shoal.cli.watch import show_status

    shared = _shared_job(store, job, job_name)
    try:
        show_status(job_address(shared, job), as_json=as_json, every_s=every_s)
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
    from shoal.cli.export import ending_on_closed_pipe, export_records, job_address, record_filter

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
    try:
        with ending_on_closed_pipe():
            address = job_address(shared, job)
            export_records(address, output, form=form, failed=failed, keep=keep)
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
    from shoal.cli.export import job_address, write_report

    if store is None:
        if job_name is not None:
            raise click.BadParameter(
                "names a job kept in a store: give the store too (--store URL)",
                param_hint="'--job'",
            )
        if job is None:
            raise click.UsageError("Missing argument 'JOB'.")
        write_report(job_address(None, job), output)
        return
    check_store_url(store)
    if job is not None:
        raise click.BadParameter(
            f"a job kept in a store is named by --job NAME, not by a JOB argument ({job!r})",
            param_hint="'--store'",
        )
    if not job_name:
        raise click.BadParameter("the job's name is needed with --store", param_hint="'--job'")
    write_report(job_address((store, job_name), None), output)


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
