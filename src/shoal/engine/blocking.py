"""``shoal.fetch`` and ``shoal.map``: the engine for scripts and notebooks, as plain
iterators.

The engine runs on an event loop in a background thread; results cross to the caller's
thread through a bounded queue. Leaving the loop early (``break``) or closing the iterator
stops the engine and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from shoal.config import Limits, Network, Outputs, RetryPolicy, Timeouts
from shoal.engine.calls import Function
from shoal.engine.engine import Engine
from shoal.engine.loop import loop_factory
from shoal.engine.run import Requests
from shoal.engine.tasks import Handler
from shoal.outcome import Outcome
from shoal.result import Result
from shoal.sources import FileSource
from shoal.store import Store

T = TypeVar("T", Result, Outcome)

_DONE = object()


def fetch(
    requests: Requests,
    *,
    concurrency: int = 100,
    per_host: int = 8,
    timeout_s: float = 30.0,
    retries: int = 2,
    keep_body: bool = False,
    handler: Handler | None = None,
    headers: Mapping[str, str] | None = None,
    journal: str | Store | None = None,
    output: str | None = None,
    **options: Any,
) -> Generator[Result, None, None]:
    """Fetch ``requests`` and yield each :class:`Result` as it completes.

    The common settings are keywords here (``keep_body`` is ``Outputs.keep_body``);
    anything else :class:`Engine` takes (``limits``, ``timeouts``, ``retry``, ``network``,
    ...) can be passed too and wins over them.
    """
    options.setdefault("limits", Limits(concurrency=concurrency, per_host=per_host))
    options.setdefault("timeouts", Timeouts(total_s=timeout_s))
    options.setdefault("retry", RetryPolicy(retries=retries))
    if headers is not None:
        options["network"] = replace(options.get("network") or Network(), headers=headers)
    if keep_body:
        options["outputs"] = replace(options.get("outputs") or Outputs(), keep_body=True)
    engine = Engine(handler=handler, **options)
    results = engine.stream(requests, journal=journal, output=output)
    return _iterate(engine, Result, results, progress=False)


def map(
    function: Function,
    items: Iterable[Any] | AsyncIterable[Any] | FileSource,
    *,
    key: Callable[[Any], object] | None = None,
    group: Callable[[Any], object] | None = None,
    concurrency: int = 100,
    per_group: int = 8,
    timeout_s: float | None = None,
    retries: int = 2,
    retry_on: tuple[type[BaseException], ...] = (),
    journal: str | Store | None = None,
    output: str | None = None,
    progress: bool = False,
    **options: Any,
) -> Generator[Outcome, None, None]:
    """Call ``await function(item)`` for every item and yield each :class:`Outcome` as it
    is committed (see :meth:`Engine.map`).

    At most ``concurrency`` calls run at once, and at most ``per_group`` of one group
    (``group(item)``); an exception that is one of ``retry_on`` is retried up to
    ``retries`` times, with backoff; with a ``journal`` path the job resumes where it
    stopped, each item's outcome recorded once. ``progress`` draws a progress line on
    stderr. Anything else :class:`Engine` takes (``limits``, ``retry``, ``politeness``,
    ...) can be passed too and wins over these keywords.
    """
    options.setdefault("limits", Limits(concurrency=concurrency, per_host=per_group))
    options.setdefault("retry", RetryPolicy(retries=retries, on_exceptions=tuple(retry_on)))
    engine = Engine(**options)
    # (Made here, so that a wrong argument raises in the caller's thread; entered below.)
    outcomes = engine.map(
        function, items, key=key, group=group, timeout_s=timeout_s, journal=journal, output=output
    )
    return _iterate(engine, Outcome, outcomes, progress=progress)


def _iterate(
    engine: Engine,
    kind: type[T],
    stream: contextlib.AbstractAsyncContextManager[AsyncIterator[T]],
    *,
    progress: bool,
) -> Generator[T, None, None]:
    results: queue.Queue[object] = queue.Queue(maxsize=max(256, engine.limits.concurrency))
    failure: list[BaseException] = []
    ready = threading.Event()
    loop_box: list[asyncio.AbstractEventLoop] = []
    main_box: list[asyncio.Task[None]] = []

    async def deliver(result: T) -> None:
        try:
            results.put_nowait(result)
        except queue.Full:
            await asyncio.to_thread(results.put, result)

    async def main() -> None:
        main_box.append(asyncio.current_task())  # type: ignore[arg-type]
        loop_box.append(asyncio.get_running_loop())
        ready.set()
        async with engine:
            drawing = _draw_progress(engine) if progress else None
            try:
                async with stream as committed:
                    async for result in committed:
                        await deliver(result)
            finally:
                if drawing is not None:
                    drawing.cancel()
                    await asyncio.wait([drawing])

    def thread_main() -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
        finally:
            ready.set()
            results.put(_DONE)

    thread = threading.Thread(target=thread_main, name="shoal-engine", daemon=True)
    thread.start()
    finished = False
    try:
        while (item := results.get()) is not _DONE:
            assert isinstance(item, kind)
            yield item
        finished = True
        if failure:
            raise failure[0]
    finally:
        if not finished:
            ready.wait()
            if loop_box and main_box:
                with contextlib.suppress(RuntimeError):  # the loop may have just closed
                    loop_box[0].call_soon_threadsafe(_cancel, engine, main_box[0])
            while results.get() is not _DONE:  # unblock the engine, then wait for its end
                pass
        thread.join()


def _cancel(engine: Engine, task: asyncio.Task[None]) -> None:
    engine.abort()
    task.cancel()


def _draw_progress(engine: Engine) -> asyncio.Task[None]:
    from rich.console import Console

    from shoal.reporting.progress import Progress

    return asyncio.create_task(Progress(Console(file=sys.stderr), engine.statistics).run())
