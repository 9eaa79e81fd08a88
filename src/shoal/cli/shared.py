"""Writing out a job kept on a shared store (``--store``) once it is complete."""

from __future__ import annotations

import asyncio
import os
import sys

from shoal.cli.spec import StoreSpec
from shoal.errors import OutputError


async def write_shared_records(spec: StoreSpec, output: str) -> bool:
    """Write a shared job's records to ``output`` (replaced whole) if the job is complete;
    whether it was."""
    from shoal.store.postgres.reader import PostgresReader

    async with PostgresReader(spec.dsn, spec.job) as reader:
        summary = await reader.summary()
        if not summary.input_done or summary.pending > 0:
            return False
        partial = output + ".partial"
        try:
            file = (
                sys.stdout.buffer if output == "-" else await asyncio.to_thread(open, partial, "wb")
            )
            try:
                batch: list[bytes] = []
                async for record in reader.records():
                    batch.append(record)
                    if len(batch) >= 2048:
                        await asyncio.to_thread(file.write, b"\n".join(batch) + b"\n")
                        batch = []
                if batch:
                    await asyncio.to_thread(file.write, b"\n".join(batch) + b"\n")
                file.flush()
            finally:
                if file is not sys.stdout.buffer:
                    file.close()
            if output != "-":
                os.replace(partial, output)
        except OSError as exc:
            raise OutputError(f"cannot write {output}: {exc.strerror}") from exc
    return True
