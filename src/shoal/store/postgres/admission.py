"""Opening a shared job: creating it or finding it, signing a worker in, and the admission
lock that lets one run at a time read the job's input (see :mod:`shoal.store.postgres.store`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from shoal.errors import JournalError
from shoal.store.postgres.connection import Database
from shoal.store.postgres.schema import STAGE


@dataclass(frozen=True, slots=True)
class OpenedJob:
    """A job opened: its id, and whether it was resumed, its input is done, the input's
    position (items, offset) and the fingerprint recorded with it."""

    job_id: int
    state: tuple[bool, bool, int, int, str | None]


async def open_job(
    connection: Any,
    name: str,
    worker: str,
    input_name: str,
    fingerprint: str | None,
    options: str,
    admits: bool,
) -> OpenedJob:
    """Open job ``name`` (or create it, when this run ``admits`` its input, with the
    command line's ``options`` as JSON text) and sign ``worker`` in to it."""
    found = await connection.fetchrow(
        "SELECT id, input, input_done, input_items, input_offset, fingerprint"
        " FROM shoal_jobs WHERE name = $1",
        name,
    )
    if found is None:
        if not admits:
            raise JournalError(
                f"the store has no job {name!r}: start it with"
                f" shoal fetch INPUT --store URL --job {name}"
            )
        job_id = await connection.fetchval(
            "INSERT INTO shoal_jobs (name, input, fingerprint, options) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (name) DO NOTHING RETURNING id",
            name,
            input_name,
            fingerprint,
            options,
        )
        if job_id is None:  # another worker created it just now
            import asyncpg

            raise asyncpg.exceptions.SerializationError("the job was created meanwhile")
        resumed = False
        found = {"input_done": False, "input_items": 0, "input_offset": 0}
        recorded = fingerprint
    else:
        job_id = found["id"]
        if admits and found["input"] != input_name:
            raise JournalError(
                f"job {name!r} reads another input ({found['input']!r}); pass"
                " another --job name, or run shoal worker to work on it"
            )
        resumed = True
        recorded = found["fingerprint"]
    await connection.execute(
        "INSERT INTO shoal_workers (job_id, worker, machine, pid) VALUES ($1, $2, $3, $4)",
        job_id,
        worker,
        socket.gethostname(),
        os.getpid(),
    )
    state = (resumed, found["input_done"], found["input_items"], found["input_offset"], recorded)
    return OpenedJob(job_id, state)


async def take_admission(db: Database, job_id: int) -> Any:
    """Hold job ``job_id``'s admission lock on a connection of its own: one run at a time
    reads a job's input, and any number work on it. The connection, or ``None`` when
    another run holds the lock."""
    connection = await db.connect()
    # Advisory locks are the whole database's: the key names the schema too, so that
    # jobs of two schemas (two teams, two test runs) never share one.
    locked = await connection.fetchval(
        "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || '/' || $1, 0))",
        str(job_id),
    )
    if not locked:
        await connection.close()
        return None
    await connection.execute(STAGE)
    return connection
