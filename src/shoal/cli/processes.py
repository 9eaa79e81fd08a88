"""``shoal fetch --processes N``: one job run by N worker processes, seen as one.

Each worker process runs an ordinary engine on its shard of the input (see
:mod:`shoal.scheduling.shards`): its own journal (``JOURNAL.K-of-N``) and its own part of
the output (``OUTPUT.part-K-of-N``), with its part of the concurrency and of every host's
in-flight cap, so the job's limits hold as a whole. Workers report statistics snapshots on
their stderr; this process draws one progress line, forwards interrupts, prints one
summary, and once every worker has finished joins the parts into the output. An
interrupted job is resumed by running the same command (with the same ``--processes``).
With ``--dashboard`` this process serves it for the whole job: the combined snapshots, the
workers' busiest hosts, and pause and resume sent to every worker (SIGUSR1, SIGUSR2).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import heapq
import os
import pickle
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Console

from shoal.cli.notices import silence_stdout, unreadable
from shoal.cli.run import (
    EXIT_FAILED,
    EXIT_FAULT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_USAGE,
    announce_stop,
    print_summary,
    remove_journal,
    serve_dashboard,
)
from shoal.cli.spec import EngineSettings, JobOptions
from shoal.reporting import Statistics
from shoal.scheduling import HostState
from shoal.sources import FileSource

#: A worker's stderr line starting with this holds a statistics snapshot.
STATS_MARK = b"\x1eshoal-stats "
#: What the coordinator sends a worker to pause it, and to resume it.
PAUSE_SIGNAL, RESUME_SIGNAL = signal.SIGUSR1, signal.SIGUSR2
#: The temporary folder of the plan the workers read.
PLAN_PREFIX = "shoal-plan-"


@dataclass(frozen=True, slots=True)
class Plan:
    """What every worker process needs: the engine's settings and the job's places."""

    engine: EngineSettings
    options: JobOptions
    count: int


def shard_journal(journal: str, index: int, count: int) -> str:
    # The name status, export and report find (imported here: reading a journal back is
    # not what a fetch starts with).
    from shoal.store.parts import part_journal

    return part_journal(journal, index, count)


def shard_output(output: str, index: int, count: int) -> str:
    return output if output == "-" else f"{output}.part-{index + 1}-of-{count}"


def check_journals(journal: str, count: int, restart: bool) -> str | None:
    """Refuse to resume a job with another number of processes; ``--restart`` clears all.

    Returns an error message, or ``None`` when the journals fit ``count``.
    """
    single = [journal] if os.path.exists(journal) else []
    sharded = [
        path
        for path in glob.glob(glob.escape(journal) + ".*-of-*")
        if re.fullmatch(r"\.\d+-of-\d+", path[len(journal) :])
    ]
    if restart:
        for path in [*single, *sharded]:
            remove_journal(path)
        return None
    expected = {shard_journal(journal, index, count) for index in range(count)}
    stray = sharded if count == 1 else single + [p for p in sharded if p not in expected]
    if stray:
        return (
            f"{journal} belongs to a job run with another number of processes "
            f"({', '.join(sorted(stray))}); run it as before, or pass --restart"
        )
    return None


async def run_processes(plan: Plan, console: Console) -> int:
    """Run the job in ``plan.count`` worker processes and return the exit code."""
    options = plan.options
    if options.input == "-":
        console.print("[red]shoal: error: --processes needs an input file, not stdin[/]")
        return EXIT_USAGE
    with contextlib.ExitStack() as stack:
        journal = options.journal
        if journal is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="shoal-"))
            journal = os.path.join(folder, "job.journal")
        problem = check_journals(journal, plan.count, options.restart)
        if problem is not None:
            console.print(f"[red]shoal: error: {problem}[/]")
            return EXIT_USAGE
        plan = dataclasses.replace(plan, options=dataclasses.replace(options, journal=journal))
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix=PLAN_PREFIX))
        plan_path = os.path.join(folder, "plan.pickle")
        _write_plan(plan_path, plan)
        # With no journal given (stdout output, no --job) the journals are temporary.
        return await _supervise(plan, plan_path, console, resumable=options.journal is not None)
    raise AssertionError("unreachable")


def _write_plan(path: str, plan: Plan) -> None:
    with open(path, "wb") as file:
        pickle.dump(plan, file)


async def _supervise(plan: Plan, plan_path: str, console: Console, *, resumable: bool) -> int:
    options = plan.options
    to_stdout = options.output == "-"
    estimate: int | None
    if options.seeds is not None:  # a crawl's seeds, given as arguments
        estimate = len(options.seeds)
    else:
        try:
            source = FileSource(options.input)
        except OSError as exc:
            console.print(
                f"shoal: error: {unreadable(options.input, exc)}", style="red", markup=False
            )
            return EXIT_USAGE
        try:
            estimate = await source.wait_total()
        finally:
            await source.aclose()
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal.cli.shard",
            plan_path,
            str(index),
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if to_stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for index in range(plan.count)
    ]
    view = _JobView(workers, estimate)
    loop = asyncio.get_running_loop()
    interrupts = 0

    def forward() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and not view.pipe_closed:
            announce_stop(console)
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, forward)
    progress = None
    try:
        if options.progress:
            from shoal.reporting.progress import Progress  # only a terminal draws it

            progress = asyncio.create_task(
                Progress(console, view.statistics, plain_every_s=options.progress_interval_s).run()
            )
        view.on_stop = forward
        async with serve_dashboard(view, options), asyncio.TaskGroup() as group:
            for index, worker in enumerate(workers):
                assert worker.stderr is not None
                group.create_task(_read_reports(worker.stderr, view, index, console))
                if to_stdout:
                    assert worker.stdout is not None
                    group.create_task(_relay(worker.stdout, view))
            codes = [await worker.wait() for worker in workers]
    finally:
        if progress is not None:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
        for worker in workers:  # never leave a worker behind, whatever went wrong here
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
    if view.pipe_closed:
        if resumable and not options.quiet:
            console.print(
                f"shoal: output closed; the journal {options.journal} holds the progress"
                " (the same command resumes)",
                markup=False,
                highlight=False,
            )
        return EXIT_PIPE
    code = _combine_codes(codes)
    if code in (EXIT_OK, EXIT_FAILED) and not to_stdout:
        try:
            await asyncio.to_thread(_join_parts, options.output, plan.count)
        except OSError as exc:
            console.print(f"[red]shoal: stopped: cannot write {options.output}: {exc}[/]")
            return EXIT_FAULT
    if None not in view.latest and not options.quiet:
        print_summary(console, view.statistics(), resumable=resumable)
    return code


class _JobView:
    """The whole job, seen through its workers' latest reports, and steered by signals
    to them: what the progress line, the summary and the dashboard read and control."""

    def __init__(self, workers: list[asyncio.subprocess.Process], estimate: int | None) -> None:
        self._workers = workers
        self._estimate = estimate
        self.latest: list[Statistics | None] = [None] * len(workers)
        self._busiest: list[tuple[HostState, ...]] = [()] * len(workers)
        self._paused = False
        self.on_stop: Callable[[], None] = lambda: None
        #: Stdout's reader has gone (``shoal fetch -p 2 | head``).
        self.pipe_closed = False

    def report(self, index: int, data: dict[str, Any]) -> None:
        stats = Statistics.from_dict(data)
        self.latest[index] = stats
        self._busiest[index] = tuple(HostState(**host) for host in data.get("busiest", ()))
        if stats.paused != self._paused:  # a worker that started after the last change
            self._signal(self._workers[index])

    def statistics(self) -> Statistics:
        from shoal.reporting.progress import job_finished  # (loaded with the progress line)

        reported = [s for s in self.latest if s is not None]
        stats = Statistics.combine(reported)
        # A worker knows its share's total once it has read the input to its end; until
        # every one does, the whole job's total is the input's line count (or, without
        # one, the shares known so far), shown as an estimate. (A worker's own estimate
        # is the whole input's count, not its share's: it is not summed.)
        known = [s.total for s in reported if s.total is not None and not s.total_is_estimate]
        if len(known) < len(self.latest):
            total = (
                None
                if self._estimate is None and not known
                else max(self._estimate or 0, sum(known), job_finished(stats))
            )
            stats = dataclasses.replace(stats, total=total, total_is_estimate=total is not None)
        if stats.paused != self._paused:  # as asked: every worker has been signalled
            stats = dataclasses.replace(stats, paused=self._paused)
        return stats

    def busiest_hosts(self, limit: int = 20) -> tuple[HostState, ...]:
        hosts = (host for part in self._busiest for host in part)
        return tuple(heapq.nlargest(limit, hosts, key=lambda h: (h.in_flight, h.queued)))

    def pause(self) -> None:
        self._paused = True
        for worker in self._workers:
            self._signal(worker)

    def resume(self) -> None:
        self._paused = False
        for worker in self._workers:
            self._signal(worker)

    def stop(self) -> None:
        self.on_stop()

    def _signal(self, worker: asyncio.subprocess.Process) -> None:
        # Only a worker that has reported has its handlers (the default would end it).
        index = self._workers.index(worker)
        if worker.returncode is None and self.latest[index] is not None:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(PAUSE_SIGNAL if self._paused else RESUME_SIGNAL)


async def _read_reports(
    stream: asyncio.StreamReader, view: _JobView, index: int, console: Console
) -> None:
    """Take statistics lines from a worker's stderr; pass anything else through."""
    while line := await stream.readline():
        if line.startswith(STATS_MARK):
            view.report(index, orjson.loads(line[len(STATS_MARK) :]))
        else:
            console.file.write(line.decode(errors="replace"))
            console.file.flush()


async def _relay(stream: asyncio.StreamReader, view: _JobView) -> None:
    """Copy a worker's records to stdout, whole lines at a time; once stdout's reader has
    gone, stop the job and drop the rest (the workers stop without being blocked)."""
    out = sys.stdout.buffer
    pending = b""
    while chunk := await stream.read(1 << 16):
        if view.pipe_closed:
            continue
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            try:
                await asyncio.to_thread(_write_flush, out, pending[:cut])
            except BrokenPipeError:
                view.pipe_closed = True
                silence_stdout()
                view.stop()
            pending = pending[cut:]


def _write_flush(out: Any, data: bytes) -> None:
    out.write(data)
    out.flush()


def _combine_codes(codes: list[int]) -> int:
    for code in (EXIT_USAGE, EXIT_FAULT, EXIT_INTERRUPTED, EXIT_FAILED):
        if code in codes:
            return code
    unknown = [code for code in codes if code != EXIT_OK]
    return EXIT_FAULT if unknown else EXIT_OK


def _join_parts(output: str, count: int) -> None:
    """Write the parts, in order, into the output; then remove them."""
    parts = [shard_output(output, index, count) for index in range(count)]
    temporary = output + ".joining"
    with open(temporary, "wb") as joined:
        for part in parts:
            with open(part, "rb") as file:
                shutil.copyfileobj(file, joined, 1 << 20)
        joined.flush()
        os.fsync(joined.fileno())
    os.replace(temporary, output)
    for part in parts:
        os.remove(part)
