"""Reading a job back from its journal (or its shared store): ``shoal status``,
``shoal export`` and ``shoal report``, each on one code path for every store: a
:class:`~shoal.store.reader.JobReader` opened for the job's
:class:`~shoal.store.reader.JobAddress`."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import click
import orjson

from shoal.cli.notices import silence_stdout
from shoal.cli.run import EXIT_FAULT, EXIT_PIPE, JOURNAL_SUFFIX, run_async
from shoal.errors import JournalError
from shoal.store.parts import find_journals
from shoal.store.reader import JobAddress, open_reader
from shoal.store.snapshot import JobStatus
from shoal.store.summary import JobSummary

#: The columns of ``--format csv``, in order; ``error_kind`` and ``error_message`` come from
#: ``error``, the ``warc_`` columns from ``warc``, and ``meta`` and ``data`` are written as
#: JSON text.
CSV_COLUMNS = (
    "url",
    "id",
    "method",
    "line",
    "final_url",
    "status",
    "error_kind",
    "error_message",
    "attempts",
    "bytes",
    "sha256",
    "content_type",
    "elapsed_ms",
    "ttfb_ms",
    "started_at",
    "redirects",
    "body_path",
    "warc_filename",
    "warc_offset",
    "warc_length",
    "meta",
    "data",
    "depth",
    "parent",
)
#: The columns of a ``shoal.map`` job's records (``item`` and ``value`` as JSON text).
MAP_CSV_COLUMNS = (
    "key",
    "group",
    "line",
    "item",
    "value",
    "error_kind",
    "error_message",
    "attempts",
    "started_at",
    "elapsed_ms",
)
#: Columns written as JSON text.
_JSON_COLUMNS = frozenset({"meta", "data", "item", "value"})


def journal_of(job: str) -> list[str]:
    """The journals a JOB argument names: the journal itself, or an output file beside
    it; every part's journal of a job run by ``--processes`` (see :mod:`shoal.store.parts`)."""
    return find_journals(job)


def job_address(shared: tuple[str, str] | None, job: str | None) -> JobAddress:
    """Where the job a reading command names is kept: the shared job (store URL, name),
    or the journals JOB names (see :func:`journal_of`)."""
    if shared is not None:
        return JobAddress(dsn=shared[0], name=shared[1])
    assert job is not None
    try:
        return JobAddress(journals=tuple(journal_of(job)))
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc


def report_path(journal: str) -> str:
    """Where ``shoal report`` writes by default: beside the journal, named after it
    (``results.jsonl.journal`` -> ``results.jsonl.report.html``)."""
    return journal.removesuffix(JOURNAL_SUFFIX) + ".report.html"


def status_lines(path: str, summary: JobSummary) -> list[str]:
    """``shoal status`` as text lines."""
    read = "read to the end" if summary.input_done else f"{summary.lines_read:,} lines read so far"
    counted = "items   " if summary.mapped else "requests"  # (a map's are items)
    lines = [
        f"job        {path}",
        f"input      {summary.input} ({read})",
        f"{counted}   {summary.admitted:,} admitted: {summary.ok:,} ok, "
        f"{summary.failed:,} failed, {summary.pending:,} pending",
    ]
    if summary.by_status:
        lines.append("status     " + _counts(summary.by_status))
    if summary.by_error:
        lines.append("errors     " + _counts(summary.by_error))
    return lines


@dataclass(frozen=True, slots=True)
class Look:
    """One reading of a job's status: its counts, the text and the JSON object that show
    them, and whether there is no point in looking again."""

    summary: JobSummary
    lines: list[str]
    fields: dict[str, Any]
    ended: bool


def look_at(address: JobAddress, *, watching: bool) -> Look:
    """The status of the job at ``address`` now (``watching``: with its state, for
    ``--watch``; a shared job's always has its state, its workers)."""

    async def read() -> tuple[str, str, JobStatus]:
        async with open_reader(address) as reader:
            return reader.title, reader.key, await reader.status()

    title, key, status = run_async(read())
    return status_look(title, key, status, watching=watching)


def status_look(title: str, key: str, status: JobStatus, *, watching: bool) -> Look:
    """A job's status as ``shoal status`` shows it (``title`` in the text, ``key`` as the
    JSON's ``job``)."""
    summary = status.summary
    complete = summary.input_done and summary.pending == 0
    lines, fields = status_lines(title, summary), status_fields(key, summary)
    if status.workers is None:  # a journal's job: one shoal runs it at a time, or none
        if not watching:
            return Look(summary, lines, fields, ended=True)
        state = "complete" if complete else "running" if status.running else "not running"
        fields["running"] = status.running
    else:
        state = "complete" if complete else f"{status.workers} worker(s) running"
        if status.paused and not complete:
            state += ", paused (shoal resume --store URL --job NAME)"
        fields.update(running=status.running, workers=status.workers, paused=status.paused)
    return Look(
        summary, [*lines, f"state      {state}"], fields, ended=complete or not status.running
    )


def status_fields(path: str, summary: JobSummary) -> dict[str, Any]:
    """``shoal status --json``'s object (``--watch`` adds to it)."""
    return {
        "job": path,
        "input": summary.input,
        "input_done": summary.input_done,
        "lines_read": summary.lines_read,
        "admitted": summary.admitted,
        "ok": summary.ok,
        "failed": summary.failed,
        "pending": summary.pending,
        "by_status": summary.by_status,
        "by_error": summary.by_error,
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count:,}" for name, count in counts.items())


def record_filter(
    errors: tuple[str, ...], statuses: tuple[str, ...]
) -> Callable[[dict[str, Any]], bool] | None:
    """A test on parsed records for ``--error`` and ``--status``, or ``None`` for all."""
    if not errors and not statuses:
        return None
    kinds = set(errors)
    exact = {int(s) for s in statuses if s.isdigit()}
    classes = {int(s[0]) for s in statuses if not s.isdigit()}

    def keep(record: dict[str, Any]) -> bool:
        if kinds:
            error = record.get("error")
            if error is None or error.get("kind") not in kinds:
                return False
        if exact or classes:
            status = record.get("status")
            if status is None or (status not in exact and status // 100 not in classes):
                return False
        return True

    return keep


def write_records(
    records: Iterator[bytes],
    out: BinaryIO,
    *,
    form: str,
    keep: Callable[[dict[str, Any]], bool] | None,
    header: bool = True,
) -> int:
    """Write records as JSON lines or CSV (the columns of a fetch's records, or of a
    map's when the first record is one, after a header line unless ``header`` is false:
    the records go on from an earlier call); the number written."""
    written = 0
    if form == "jsonl":
        for record in records:
            if keep is None or keep(orjson.loads(record)):
                out.write(record + b"\n")
                written += 1
        return written
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    columns: tuple[str, ...] | None = None
    for record in records:
        data = orjson.loads(record)
        if columns is None:
            columns = MAP_CSV_COLUMNS if "key" in data and "url" not in data else CSV_COLUMNS
            if header:
                writer.writerow(columns)
        if keep is not None and not keep(data):
            continue
        writer.writerow(_row(data, columns))
        written += 1
    if columns is None and header:
        writer.writerow(CSV_COLUMNS)
    text.flush()
    text.detach()
    return written


def _row(record: dict[str, Any], columns: tuple[str, ...]) -> list[Any]:
    error = record.get("error") or {}
    warc = record.get("warc") or {}
    row: list[Any] = []
    for column in columns:
        if column == "error_kind":
            value = error.get("kind")
        elif column == "error_message":
            value = error.get("message")
        elif column.startswith("warc_"):
            value = warc.get(column.removeprefix("warc_"))
        elif column in _JSON_COLUMNS:
            raw = record.get(column)
            value = None if raw is None else orjson.dumps(raw).decode()
        else:
            value = record.get(column)
        row.append("" if value is None else value)
    return row


@contextlib.contextmanager
def ending_on_closed_pipe() -> Iterator[None]:
    """End as ``shoal fetch`` does when stdout's reader has gone (``shoal export | head``):
    exit 141 (what a shell reports for a tool SIGPIPE ended), with nothing said; what
    stdout still buffers is dropped, so that nothing complains of it at exit."""
    try:
        yield
    except BrokenPipeError:
        silence_stdout()
        sys.exit(EXIT_PIPE)


def output_stream(path: str) -> BinaryIO:
    return sys.stdout.buffer if path == "-" else open(path, "wb")


def shared_report_path(name: str) -> str:
    """Where ``shoal report --store URL --job NAME`` writes by default: ``NAME.report.html``
    in the current folder (a name that is not a file name needs ``-o``)."""
    separators = {os.sep, os.altsep or os.sep, "\0"}
    if any(separator in name for separator in separators):
        raise click.BadParameter(
            f"job {name!r} is not a file name: say where the page goes", param_hint="'--output'"
        )
    return f"{name}.report.html"


def _require_report() -> None:
    """Refuse, with the fix, when the report extra (matplotlib) is not installed."""
    try:
        import shoal.reporting.report  # noqa: F401
    except ImportError as exc:
        raise click.UsageError(
            f"the report needs the report extra (pip install 'shoal[report]'): {exc}"
        ) from exc


def write_report(address: JobAddress, output: str | None) -> None:
    """``shoal report``: read everything the page shows of the job at ``address`` (a
    shared job's in one snapshot of its database), then render it and write it (``None``:
    beside the journal, or ``NAME.report.html`` in the current folder for a shared job;
    ``-``: stdout)."""
    _require_report()
    from shoal.reporting.report import TOP_ERRORS, TOP_HOSTS, render_report, timeline_interval

    if output is not None:
        target = output
    elif address.name is not None:
        target = shared_report_path(address.name)
    else:
        journals = address.journals
        target = report_path(journals[0] if len(journals) == 1 else journals[0].rsplit(".", 1)[0])

    async def read() -> Any:
        async with open_reader(address) as reader:
            return await reader.report_source(
                hosts=TOP_HOSTS, errors=TOP_ERRORS, interval=timeline_interval
            )

    try:
        page = render_report(run_async(read()))
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc
    _write_page(page, target)


def _write_page(page: bytes, target: str) -> None:
    """Write a report's page to ``target`` (``-``: stdout) and say where it went."""
    if target == "-":
        sys.stdout.buffer.write(page)
        sys.stdout.buffer.flush()
        return
    opened = False
    try:
        with open(target, "wb") as out:
            opened = True
            out.write(page)
    except OSError as exc:
        problem = f"cannot write the report {target}: {exc.strerror or exc}"
        if not opened:  # a path that cannot be a file here: a bad option
            raise click.UsageError(problem) from exc
        click.echo(f"shoal: {problem}", err=True)  # a fault while writing, a full disk
        sys.exit(EXIT_FAULT)
    click.echo(f"report: {target}", err=True)


def export_records(
    address: JobAddress,
    output: str,
    *,
    form: str,
    failed: bool | None,
    keep: Callable[[dict[str, Any]], bool] | None,
) -> None:
    """``shoal export``: the job's final records, in commit order, to ``output``; the
    records are written a batch at a time, on a thread (the loop reads the next ones)."""

    async def export() -> None:
        async with open_reader(address) as reader:
            out = output_stream(output)
            try:
                first = True
                batch: list[bytes] = []
                async with contextlib.aclosing(reader.records(failed=failed)) as records:
                    async for record in records:
                        batch.append(record)
                        if len(batch) >= 2048:
                            await asyncio.to_thread(
                                write_records, iter(batch), out, form=form, keep=keep, header=first
                            )
                            batch, first = [], False
                if batch or first:
                    await asyncio.to_thread(
                        write_records, iter(batch), out, form=form, keep=keep, header=first
                    )
            finally:
                out.flush()
                if out is not sys.stdout.buffer:
                    out.close()

    run_async(export())


def share_pause(dsn: str, name: str, paused: bool) -> None:
    """``shoal pause|resume --store URL --job NAME``: pause or resume every worker."""
    from shoal.store.postgres.reader import PostgresReader

    async def write() -> None:
        async with PostgresReader(dsn, name) as reader:
            await reader.share_pause(paused)

    run_async(write())
    what = "paused: its workers start no new request" if paused else "resumed"
    click.echo(f"job {name!r} {what}", err=True)
