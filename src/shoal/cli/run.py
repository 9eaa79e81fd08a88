"""Running one job (a fetch, a crawl or a map) in this process: signals, progress,
summary, exit code."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from shoal.cli.notices import after_fault, closed_pipe, mismatch_message, unreadable
from shoal.cli.options import setting_flag
from shoal.cli.spec import JobOptions, MapSpec, StoreSpec
from shoal.engine import Engine, loop_factory
from shoal.errors import ConfigError, JournalError, OutputError, SettingsMismatch
from shoal.reporting import Statistics
from shoal.reporting.summary import render_summary
from shoal.sources import FileSource, IterableSource, Source

if TYPE_CHECKING:
    from shoal.reporting.dashboard import Controlled
    from shoal.store.store import Store

R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FAULT = 3
EXIT_INTERRUPTED = 130
#: The output was a pipe whose reader left (``shoal fetch | head``): what a shell reports
#: for a tool that SIGPIPE ended (128 + 13), so ``set -o pipefail`` sees the job unfinished.
EXIT_PIPE = 128 + signal.SIGPIPE

JOURNAL_SUFFIX = ".journal"


#: The cyclic garbage collector's thresholds during a run (Python's own: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)


def run_async(main: Coroutine[Any, Any, R]) -> R:
    """The one place the command line starts an event loop (uvloop when installed).

    For the run, the garbage collector is set for a process that keeps thousands of
    requests in flight. What start-up made (modules, classes, aiohttp's tables) lives as
    long as the process and is frozen out of later collections. The young generation is
    far larger than Python's 700 objects: a request's objects live as long as it waits on
    its server, so with slow servers a small young generation walks every request in
    flight again and again and promotes it, only for reference counting to free it a
    moment later. (Measured: 16-22% less CPU on the many-hosts latency workload, 6% on
    1 KiB bodies, peak memory unchanged; docs/benchmarks.md.) Cycles are still collected,
    a few times a second at most.
    """
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def ignore_file_size_signal() -> None:
    """Let a write past the file-size limit (RLIMIT_FSIZE) fail with EFBIG, a clean stop
    with the journal intact, instead of SIGXFSZ killing the process."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def default_journal(output: str) -> str | None:
    """The journal beside the output file; ``None`` (a temporary one) for stdout and for
    outputs that are not regular files (``/dev/null``, a pipe)."""
    if output == "-" or (os.path.exists(output) and not os.path.isfile(output)):
        return None
    return output + JOURNAL_SUFFIX


def remove_journal(path: str) -> None:
    """Delete a journal and its WAL files (``--restart``)."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


@contextlib.contextmanager
def _journal_path(options: JobOptions) -> Iterator[str]:
    if options.journal is not None:
        if options.restart:
            remove_journal(options.journal)
        yield options.journal
        return
    with tempfile.TemporaryDirectory(prefix="shoal-") as folder:
        yield os.path.join(folder, "job.journal")


#: Something that watches a running job through its statistics (a progress line, say).
Watcher = Callable[[Callable[[], Statistics]], Coroutine[Any, Any, None]]


async def run_job(
    engine: Engine,
    options: JobOptions,
    console: Console,
    *,
    watch: Watcher | None = None,
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> int:
    """Run the job to its end (or to an interrupt) and return the process exit code."""
    code, stats = await execute(engine, options, console, watch=watch, stop_signals=stop_signals)
    if stats is not None and not options.quiet:
        print_summary(console, stats, resumable=options.journal is not None)
    return code


def print_summary(console: Console, stats: Statistics, *, resumable: bool) -> None:
    """The end-of-run summary, with a hint when an interrupted job can be resumed."""
    console.print(render_summary(stats), markup=False, highlight=False)
    if stats.interrupted and resumable:
        console.print("shoal: interrupted; run the same command again to resume the job.")


def announce_stop(console: Console) -> None:
    console.print(
        "[yellow]shoal: stopping; requests in flight are finishing "
        "(interrupt again to cancel them)[/]"
    )


async def execute(
    engine: Engine,
    options: JobOptions,
    console: Console,
    *,
    watch: Watcher | None,
    stop_signals: tuple[signal.Signals, ...],
) -> tuple[int, Statistics | None]:
    """Run the job; the exit code, and the final statistics when the job ran."""
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            engine.stop()
            if not options.quiet:
                announce_stop(console)
        else:
            engine.abort()

    if not options.quiet and _resumes_stdin(options):
        console.print(
            "[yellow]shoal: resuming a job whose input is stdin: it must be the same input "
            "as before (shoal cannot check it); --restart starts over[/]"
        )
    if not options.quiet and _waits_on_terminal(options):
        what = "items" if options.map is not None else "URLs"
        console.print(
            f"shoal: reading {what} from standard input (a terminal); end with Ctrl-D",
            markup=False,
            highlight=False,
        )
    if watch is None and options.progress:

        def watch(read: Callable[[], Statistics]) -> Coroutine[Any, Any, None]:
            from shoal.reporting.progress import Progress  # only a terminal draws it

            return Progress(console, read, plain_every_s=options.progress_interval_s).run()

    for number in stop_signals:
        loop.add_signal_handler(number, on_signal)
    notes: list[str] = []
    try:
        stats = await _run(engine, options, watch, notes if _resumes_stdin(options) else None)
    except SettingsMismatch as exc:
        console.print(f"shoal: error: {mismatch_message(exc)}", markup=False, highlight=False)
        return EXIT_USAGE, None
    except JournalError as exc:
        console.print(f"[red]shoal: error: {exc}[/]")
        return EXIT_USAGE, None
    except ConfigError as exc:  # a setting refused as the job starts (the dashboard's, say)
        flag = setting_flag(exc.option, _command())
        console.print(f"shoal: error: {flag}: {exc.message}", style="red", markup=False)
        return EXIT_USAGE, None
    except OSError as exc:  # the input cannot be opened
        console.print(f"shoal: error: {unreadable(options.input, exc)}", style="red", markup=False)
        return EXIT_USAGE, None
    except OutputError as exc:
        if isinstance(exc.__cause__, BrokenPipeError):
            closed_pipe(options.journal, quiet=options.quiet, console=console)
            return EXIT_PIPE, None
        console.print(f"[red]shoal: stopped: {exc}[/]")
        console.print(after_fault(options.journal, shared=options.store is not None))
        return EXIT_FAULT, None
    finally:
        for number in stop_signals:
            loop.remove_signal_handler(number)
    for note in notes:  # (what a resumed stdin gave is said even with -q)
        console.print(note, markup=False, highlight=False)
    return exit_code(stats), stats


def _command() -> str | None:
    """The running command's name (``map`` names its settings by groups, not hosts)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.command.name


def stdin_note(journal: str, source: FileSource) -> str | None:
    """What a resumed job made of its stdin, which shoal cannot check: how many lines it
    skipped as read by earlier runs, and how many it read after them; or that stdin held
    fewer lines than the job had read (another input: nothing of it was read)."""
    before, reached = source.resumed_at, source.skipped
    if before is None or reached is None or before.items == 0:
        return None
    if reached.items < before.items or reached.offset < before.offset:
        held = f"{reached.items:,} lines" if reached.offset == 0 else "fewer bytes"
        return (
            f"shoal: warning: resumed job {journal}: stdin held {held}, less than the"
            f" {before.items:,} lines this job had read before, so nothing of it was read"
            " (is it another input? --restart fetches it as a new job)"
        )
    new = source.position.items - reached.items
    return (
        f"shoal: resumed job {journal}: the first {before.items:,} lines of stdin were read"
        f" by earlier runs and skipped (shoal cannot check them); {new:,} new lines read"
    )


def check_dashboard(host: str, token: str | None) -> None:
    """Refuse, before anything runs, a dashboard that could not be served safely."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("aiohttp_sse", "prometheus_client")):
        raise click.UsageError(
            "--dashboard needs the dashboard extra: pip install 'shoal[dashboard]'"
        )
    from shoal.reporting.dashboard import is_loopback

    if not is_loopback(host) and not token:
        raise click.BadParameter(
            f"the dashboard on {host} (not a loopback address) needs a token",
            param_hint="'--dashboard-token'",
        )


@contextlib.asynccontextmanager
async def serve_dashboard(engine: Controlled, options: JobOptions) -> AsyncIterator[None]:
    """Serve the live dashboard of ``engine`` for the run when ``--dashboard`` asks for it,
    and say where on stderr."""
    if options.dashboard is None:
        yield
        return
    from shoal.reporting.dashboard import Dashboard  # needs the dashboard extra

    host, port = options.dashboard
    async with Dashboard(engine, host=host, port=port, token=options.dashboard_token) as shown:
        print(f"shoal: dashboard at {shown.url}", file=sys.stderr, flush=True)
        yield


def _waits_on_terminal(options: JobOptions) -> bool:
    """Whether the job reads its input from a terminal (someone is to type it)."""
    reads = options.store is None or options.store.admit
    return reads and options.seeds is None and options.input == "-" and os.isatty(0)


def _resumes_stdin(options: JobOptions) -> bool:
    journal = options.journal
    return options.input == "-" and journal is not None and os.path.exists(journal)


def exit_code(stats: Statistics) -> int:
    """The exit code a finished (or interrupted) run ends with."""
    if stats.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if stats.job_failed else EXIT_OK


async def _run(
    engine: Engine, options: JobOptions, watch: Watcher | None, notes: list[str] | None
) -> Statistics:
    """Run the job; ``notes`` (when given) gains what a resumed stdin gave."""
    if options.store is not None:
        return await _run_shared(engine, options, options.store, watch)
    with _journal_path(options) as journal:
        async with engine, serve_dashboard(engine, options):
            source: Source = (
                FileSource(options.input, default_method=options.method)
                if options.seeds is None
                else IterableSource(options.seeds, name="<seeds> " + " ".join(options.seeds))
            )
            watcher: asyncio.Task[None] | None = None
            if watch is not None:
                watcher = asyncio.create_task(watch(engine.statistics))
            try:
                if options.map is None:
                    return await engine.run(source, journal=journal, output=options.output)
                assert isinstance(source, FileSource)
                return await _run_map(engine, options.map, source, journal, options.output)
            finally:
                if watcher is not None:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                if notes is not None and isinstance(source, FileSource):
                    note = stdin_note(journal, source)
                    if note is not None:
                        notes.append(note)


async def _run_shared(
    engine: Engine, options: JobOptions, spec: StoreSpec, watch: Watcher | None
) -> Statistics:
    """Work on a job kept in a shared store, then write its records to the output if the
    job is complete."""
    store = spec.open()
    async with engine, serve_dashboard(engine, options):
        source: Source
        if not spec.admit:  # a worker: the job's input is admitted by the run that made it
            source = IterableSource((), name="<worker>")
        elif options.seeds is None:
            source = FileSource(options.input, default_method=options.method)
        else:
            source = IterableSource(options.seeds, name="<seeds> " + " ".join(options.seeds))
        watcher = None if watch is None else asyncio.create_task(watch(engine.statistics))
        try:
            if options.map is None:
                stats = await engine.run(source, journal=store)
            else:
                items = source if isinstance(source, FileSource) else ()
                stats = await _run_map(engine, options.map, items, store, None)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
    if spec.output is not None and not stats.interrupted:
        from shoal.cli.shared import write_shared_records

        await write_shared_records(spec, spec.output)
    return stats


async def _run_map(
    engine: Engine,
    spec: MapSpec,
    items: FileSource | tuple[()],
    journal: str | Store,
    output: str | None,
) -> Statistics:
    """Map the job's function over ``items`` (none: a worker of a shared job, whose items
    its creator admits)."""
    function, key, group = spec.load()
    mapped = engine.map(
        function,
        items,
        key=key,
        group=group,
        timeout_s=spec.timeout_s,
        journal=journal,
        output=output,
    )
    async with mapped as outcomes:
        async for _ in outcomes:
            pass
    return engine.statistics()
