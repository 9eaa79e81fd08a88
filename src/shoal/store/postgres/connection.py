"""The shared store's connection to PostgreSQL: a small pool, every operation retried as a
whole while the database cannot be reached, and a connection that failed midway closed
rather than used again.

A worker outlives a restart of the database (or a lost connection, a failover) of up to
``reconnect_s`` seconds: each operation is one transaction, so retrying it is safe, and
the statements that commit results are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from shoal.errors import JournalError, OutputError
from shoal.store.dsn import shown_dsn

try:
    import asyncpg
except ImportError:  # pragma: no cover - the postgres extra is not installed
    asyncpg = None

T = TypeVar("T")

#: How long a worker keeps trying to reach the database before it stops (seconds).
RECONNECT_S = 120.0


def require_asyncpg() -> None:
    """Refuse, with the fix, when the postgres extra is not installed."""
    if asyncpg is None:
        raise JournalError(
            "a PostgreSQL store needs the postgres extra: pip install 'shoal[postgres]'"
        )


def transient() -> tuple[type[BaseException], ...]:
    """The faults that pass: the server restarting, a connection lost, a deadlock."""
    assert asyncpg is not None
    return (
        OSError,
        asyncio.TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.TransactionRollbackError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.InternalClientError,
    )


def any_database_error() -> tuple[type[BaseException], ...]:
    """The faults that pass, and the errors the database reports."""
    assert asyncpg is not None
    return (*transient(), asyncpg.PostgresError)


class Database:
    """The pool of one worker's connections to the job's database at ``dsn``.

    ``command_timeout_s`` bounds each statement; ``reconnect_s`` how long an operation is
    retried while the database cannot be reached.
    """

    def __init__(self, dsn: str, *, command_timeout_s: float, reconnect_s: float) -> None:
        require_asyncpg()
        self.dsn = dsn
        self.reconnect_s = reconnect_s
        self._command_timeout_s = command_timeout_s
        self._pool: Any = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def open(self) -> None:
        try:
            self._pool = await self.retrying(
                lambda: asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=4, command_timeout=self._command_timeout_s
                )
            )
        except (OSError, ValueError, asyncpg.PostgresError, OutputError) as exc:
            raise JournalError(
                f"cannot open the job's database {shown_dsn(self.dsn)}: {exc}"
            ) from exc

    async def connect(self) -> Any:
        """A connection of its own, outside the pool (retried like any operation)."""
        return await self.retrying(
            lambda: asyncpg.connect(self.dsn, command_timeout=self._command_timeout_s)
        )

    async def retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation``, again while the database cannot be reached (a restart, a
        lost connection) or a transaction must be retried, for up to ``reconnect_s``."""
        deadline = time.monotonic() + self.reconnect_s
        pause = 0.05
        while True:
            try:
                return await operation()
            except transient() as exc:
                if time.monotonic() >= deadline:
                    raise OutputError(f"cannot reach the job's database: {exc}") from exc
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)

    async def run(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        """``operation(connection)`` in one transaction, retried as a whole."""

        async def once() -> T:
            async with self.connection() as connection, connection.transaction():
                return await operation(connection)

        return await self.retrying(once)

    @contextlib.asynccontextmanager
    async def connection(self, timeout_s: float | None = None) -> AsyncIterator[Any]:
        """A connection of the pool, closed rather than reused when an operation on it
        failed or was cancelled midway (its protocol state is then not to be trusted)."""
        connection = await self._pool.acquire(timeout=timeout_s)
        try:
            yield connection
        except BaseException:
            connection.terminate()
            raise
        finally:
            await self._pool.release(connection)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
