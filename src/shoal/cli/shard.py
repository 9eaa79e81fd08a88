"""A worker process of ``shoal fetch --processes N``: ``python -m shoal.cli.shard PLAN K``.

It runs shard ``K`` of the job described by the pickled :class:`~shoal.cli.processes.Plan`
(written by the parent process, never by anyone else) and reports statistics snapshots on
stderr for the parent to combine. Interrupts come from the parent as SIGTERM (first: stop
taking work; second: cancel); SIGINT from the terminal is left to the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import pickle
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from rich.console import Console

from shoal.cli.processes import (
    PAUSE_SIGNAL,
    PLAN_PREFIX,
    RESUME_SIGNAL,
    STATS_MARK,
    Plan,
    shard_journal,
    shard_output,
)
from shoal.cli.run import EXIT_INTERRUPTED, execute, ignore_file_size_signal, run_async
from shoal.engine import Engine
from shoal.reporting import Statistics
from shoal.scheduling import Shard, split

_REPORT_EVERY_S = 0.25


_PR_SET_PDEATHSIG = 1


#: How many of its busiest hosts a worker reports (for the coordinator's dashboard).
_BUSIEST = 20


def _report(stats: Statistics, engine: Engine) -> None:
    data = stats.to_dict()
    data["busiest"] = [dataclasses.asdict(host) for host in engine.busiest_hosts(_BUSIEST)]
    # With the coordinator gone, nobody reads this pipe: the worker still stops cleanly.
    with contextlib.suppress(BrokenPipeError):
        os.write(2, STATS_MARK + orjson.dumps(data) + b"\n")


def _watcher(engine: Engine) -> Callable[[Callable[[], Statistics]], Coroutine[Any, Any, None]]:
    async def watch(read: Callable[[], Statistics]) -> None:
        loop = asyncio.get_running_loop()
        # Installed before the first report: the coordinator signals only after one.
        loop.add_signal_handler(PAUSE_SIGNAL, engine.pause)
        loop.add_signal_handler(RESUME_SIGNAL, engine.resume)
        while True:
            _report(read(), engine)
            await asyncio.sleep(_REPORT_EVERY_S)

    return watch


async def run_shard(plan: Plan, index: int) -> int:
    options = plan.options
    assert options.journal is not None
    settings = plan.engine
    limits, outputs, crawl = settings.limits, settings.outputs, settings.crawl
    concurrency = split(limits.concurrency, plan.count, index)
    changes: dict[str, Any] = {"limits": dataclasses.replace(limits, concurrency=concurrency)}
    if outputs.warc is not None:  # each worker writes its own WARC files
        warc = shard_output(outputs.warc, index, plan.count)
        changes["outputs"] = dataclasses.replace(outputs, warc=warc)
    if crawl is not None and crawl.max_requests is not None:  # a part of the budget each
        budget = split(crawl.max_requests, plan.count, index)
        changes["crawl"] = dataclasses.replace(crawl, max_requests=budget)
    engine = dataclasses.replace(settings, **changes).engine(
        shard=Shard(index, plan.count, limits.per_host)
    )
    part = dataclasses.replace(
        options,
        output=shard_output(options.output, index, plan.count),
        journal=shard_journal(options.journal, index, plan.count),
        restart=False,
        progress=False,
        quiet=True,
        dashboard=None,
    )
    console = Console(stderr=True, soft_wrap=True, emoji=False)
    code, stats = await execute(
        engine, part, console, watch=_watcher(engine), stop_signals=(signal.SIGTERM,)
    )
    if stats is not None:
        _report(stats, engine)
    return code


def _stop_with_parent(parent: int) -> None:
    """Get SIGTERM (a clean stop) when the coordinating process dies, even by SIGKILL, so
    no worker goes on alone holding its journal; exit now if it is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(EXIT_INTERRUPTED)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ignore_file_size_signal()
    plan_path, index, parent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    _stop_with_parent(parent)
    with open(plan_path, "rb") as file:
        plan: Plan = pickle.load(file)
    try:
        sys.exit(run_async(run_shard(plan, index)))
    finally:
        if os.getppid() != parent:
            # The coordinator died (it would have removed the plan's folder): do it for it.
            # (Its end also breaks this worker's stderr: the last report may fail.)
            folder = os.path.dirname(plan_path)
            if os.path.basename(folder).startswith(PLAN_PREFIX):
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
