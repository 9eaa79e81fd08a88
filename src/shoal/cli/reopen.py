"""Before a run: sending final requests of the job again, in its journal(s) —
``--retry-failed [KINDS]``, and a crawl resumed with a larger ``--max-depth`` (see
:mod:`shoal.store.reopening`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import click
from rich.console import Console

from shoal.cli.processes import check_journals, shard_journal
from shoal.cli.spec import JobOptions
from shoal.config import Crawl
from shoal.errors import JournalError
from shoal.store.reopening import recorded_max_depth, reopen_depth, reopen_failed


@dataclass(frozen=True, slots=True)
class RetryFailed:
    """``--retry-failed``: the error kinds and statuses to send again (none: every
    failure)."""

    kinds: frozenset[str]
    statuses: frozenset[int]


def reopen_before_run(
    options: JobOptions,
    count: int,
    retry: RetryFailed | None,
    crawl: Crawl | None,
    console: Console,
) -> None:
    """Reopen, in the job's journals (one per process), what this command asks to be
    sent again, and say how much; a usage error where it cannot be."""
    journal = options.journal
    if retry is not None:
        if options.store is not None:
            raise click.BadParameter(
                "a job on a shared store cannot be retried from here (yet): export its"
                " failures (shoal export --only failed) and fetch them as a new job",
                param_hint="'--retry-failed'",
            )
        if options.restart:
            raise click.BadParameter(
                "--restart discards the job whose failures it would send again",
                param_hint="'--retry-failed'",
            )
        if journal is None:
            raise click.BadParameter(
                "needs the job's journal: an output file (-o FILE) or --job PATH",
                param_hint="'--retry-failed'",
            )
    if journal is None or options.restart or options.store is not None:
        return
    problem = check_journals(journal, count, restart=False)
    if problem is not None:
        raise click.UsageError(problem)
    paths = [journal] if count == 1 else [shard_journal(journal, k, count) for k in range(count)]
    paths = [path for path in paths if os.path.isfile(path)]
    try:
        if retry is not None:
            sent = sum(reopen_failed(path, retry.kinds, retry.statuses) for path in paths)
            what = "failed" if not (retry.kinds or retry.statuses) else "chosen"
            console.print(
                f"shoal: --retry-failed: {sent:,} {what} requests are sent again; the output"
                " is written again from the journal, each of them with its new record",
                markup=False,
                highlight=False,
            )
        if crawl is not None:
            extend_crawl(paths, crawl, console)
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc


def extend_crawl(paths: list[str], crawl: Crawl, console: Console) -> None:
    """A crawl that ran to a smaller ``--max-depth`` before: its pages at that depth are
    fetched again, so that their links (not kept) are followed to the new depth."""
    pages = 0
    before: int | None = None
    for path in paths:
        depth = recorded_max_depth(path)
        if depth is None or (crawl.max_depth is not None and crawl.max_depth <= depth):
            continue
        before = depth
        pages += reopen_depth(path, depth)
    if before is None:
        return
    deeper = "no limit" if crawl.max_depth is None else f"--max-depth {crawl.max_depth}"
    console.print(
        f"shoal: this crawl went to depth {before} before: its {pages:,} pages at that depth"
        f" are fetched again to follow their links ({deeper}); their records are replaced",
        markup=False,
        highlight=False,
    )
