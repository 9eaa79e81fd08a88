"""A ``shoal.map`` job for the tests that kill it: ``python -m tests.engine.map_job JOURNAL
OUTPUT CALLS COUNT``.

It maps a coroutine over ``COUNT`` items in :data:`GROUPS` groups. The coroutine sleeps a
little, measures how many calls of its group (and in all) run at that moment, and appends
one line per call to the ``CALLS`` file (``n group in_group in_all``, one ``write`` each, so
a SIGKILL never loses a line the process finished). Item ``n`` ends as
:func:`expected` says: some raise an exception that is not retried, some one that
is, some reject with a retry, the rest return ``n * n``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections import Counter
from typing import Any

import shoal

GROUPS = 20
PER_GROUP = 3
CONCURRENCY = 64
RETRIES = 2


def expected(n: int) -> tuple[str | None, int]:
    """Item ``n``'s final error kind (``None``: it returns ``n * n``) and attempts."""
    if n % 11 == 0:
        return "task", 1  # ValueError: not in retry_on
    if n % 13 == 0:
        return "task", RETRIES + 1  # ConnectionError: retried, fails every time
    if n % 17 == 0:
        return "task", RETRIES + 1  # Rejected(retry=True)
    return None, 1


def items(count: int) -> Any:
    for n in range(count):
        yield {"n": n, "group": f"g{n % GROUPS}"}


def main(journal: str, output: str, calls_path: str, count: int) -> None:
    calls = os.open(calls_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    in_group: Counter[str] = Counter()
    in_all = 0
    rng = random.Random()

    async def work(item: dict[str, Any]) -> int:
        nonlocal in_all
        n, group = item["n"], item["group"]
        in_group[group] += 1
        in_all += 1
        try:
            os.write(calls, f"{n} {group} {in_group[group]} {in_all}\n".encode())
            await asyncio.sleep(rng.uniform(0, 0.002))
            if n % 11 == 0:
                raise ValueError(f"item {n} is bad")
            if n % 13 == 0:
                raise ConnectionError(f"item {n} cannot connect")
            if n % 17 == 0:
                raise shoal.Rejected(f"item {n} is busy", retry=True)
            return int(n * n)
        finally:
            in_group[group] -= 1
            in_all -= 1

    retry = shoal.RetryPolicy(
        retries=RETRIES, backoff_base_s=0.005, backoff_max_s=0.02, on_exceptions=(ConnectionError,)
    )
    outcomes = shoal.map(
        work,
        items(count),
        key=lambda item: item["n"],
        group=lambda item: item["group"],
        concurrency=CONCURRENCY,
        per_group=PER_GROUP,
        retry=retry,
        journal=journal,
        output=output,
    )
    for _ in outcomes:
        pass


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
