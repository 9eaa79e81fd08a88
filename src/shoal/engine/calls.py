"""The mapped task (``shoal.map``): one call of the user's coroutine per attempt.

Like the fetch, it is a :class:`shoal.engine.tasks.Task`: the engine's workers run it in a slot
of the item's group, and its outcome goes through the same retries, journal and counts.
What the coroutine raises is the item's failure, never the run's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from shoal.config import Timeouts
from shoal.errors import Rejected
from shoal.fetching.deadlines import Watchdog, tick_for
from shoal.job import Job
from shoal.outcome import Outcome
from shoal.result import Error, ErrorKind

#: The coroutine function ``shoal.map`` runs on each item.
Function = Callable[[Any], Awaitable[Any]]


class Call:
    """Calls ``function(item)``, under ``timeout_s`` when given; an exception that is an
    instance of ``retry_on`` (or a ``Rejected(retry=True)``) is failed as retryable."""

    def __init__(
        self,
        function: Function,
        *,
        timeout_s: float | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        if not callable(function):
            raise TypeError(f"map() needs an async function, not {type(function).__name__}")
        self._function = function
        self._timeout_s = timeout_s
        self._retry_on = retry_on
        # Deadlines kept by one watchdog, as a fetch's are: an asyncio.timeout per call
        # costs more than a short call's own bookkeeping.
        self._timeouts: Timeouts | None = None
        self._watchdog: Watchdog | None = None
        if timeout_s is not None:
            self._timeouts = Timeouts(total_s=timeout_s, connect_s=timeout_s, read_s=timeout_s)
            self._watchdog = Watchdog(tick_for([self._timeouts]))

    async def run(self, job: Job) -> Outcome:
        outcome = job.outcome(started_at=time.time())
        if job.on_sent is not None:
            job.on_sent(job)  # the call has reached its group: a paced group counts from now
        start = time.perf_counter()
        watchdog = self._watchdog
        attempt = None
        if watchdog is not None:
            assert self._timeouts is not None
            attempt = watchdog.start(self._timeouts)
        try:
            value = await self._function(outcome.item)
        except Rejected as exc:
            outcome.error = Error(ErrorKind.TASK, exc.message, retry=exc.retry)
        except asyncio.CancelledError as exc:
            if attempt is not None and attempt.timed_out():
                outcome.error = self._late()
            else:
                current = asyncio.current_task()
                if current is None or current.cancelling():
                    raise  # the run is cancelling this worker
                outcome.error = self._raised(exc)  # the coroutine's own, not a cancellation
        except Exception as exc:  # noqa: BLE001 - the coroutine's failure is its item's
            if attempt is not None and attempt.expired is not None and attempt.timed_out():
                outcome.error = self._late()  # it made the cancellation another error
            else:
                outcome.error = self._raised(exc)
        else:
            if attempt is not None and attempt.expired is not None and attempt.timed_out():
                outcome.error = self._late()  # it swallowed the cancellation: still late
            else:
                try:
                    orjson.dumps(value)
                except TypeError as exc:
                    outcome.error = Error(ErrorKind.TASK, f"returned what is not JSON: {exc}")
                else:
                    outcome.value = value
        finally:
            if attempt is not None:
                assert watchdog is not None
                watchdog.end(attempt)
        outcome.elapsed_ms = round((time.perf_counter() - start) * 1000, 3)
        return outcome

    def _late(self) -> Error:
        return Error(ErrorKind.TIMEOUT, f"call took longer than {self._timeout_s:g} s")

    def _raised(self, exc: BaseException) -> Error:
        message = f"{type(exc).__name__}: {exc}"
        return Error(ErrorKind.TASK, message, retry=isinstance(exc, self._retry_on))
