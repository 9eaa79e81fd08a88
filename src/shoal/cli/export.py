"""Reading a job back from its journal (or its shared store): ``shoal status``,
``shoal export`` and ``shoal report``."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import click
import orjson

from shoal.cli.notices import silence_stdout
from shoal.cli.run import EXIT_FAULT, EXIT_PIPE, JOURNAL_SUFFIX
from shoal.errors import JournalError
from shoal.store.parts import find_journals, open_job
from shoal.store.reader import JobSummary

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


def shown_path(journals: list[str]) -> str:
    """How ``shoal status`` names the job kept in ``journals``."""
    if len(journals) == 1:
        return journals[0]
    return f"{journals[0].rsplit('.', 1)[0]} ({len(journals)} parts, one per process)"


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


def show_status(journals: list[str], *, as_json: bool) -> JobSummary:
    """Print the job's status once (text, or one JSON line) and return what was shown."""
    path = shown_path(journals)
    with open_job(journals) as reader:
        summary = reader.summary()
    if as_json:
        sys.stdout.buffer.write(status_json(path, summary) + b"\n")
        sys.stdout.buffer.flush()
    else:
        print("\n".join(status_lines(path, summary)), flush=True)
    return summary


def status_json(path: str, summary: JobSummary) -> bytes:
    return orjson.dumps(status_fields(path, summary))


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


def write_report(job: str, output: str | None) -> None:
    """``shoal report``: render the job's page from its journal and write it (``None``:
    beside the journal; ``-``: stdout)."""
    _require_report()
    from shoal.reporting.report import render_report

    try:
        journals = journal_of(job)
        with open_job(journals) as reader:
            page = render_report(reader)
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc
    base = journals[0] if len(journals) == 1 else journals[0].rsplit(".", 1)[0]
    _write_page(page, report_path(base) if output is None else output)


def write_shared_report(dsn: str, name: str, output: str | None) -> None:
    """``shoal report --store URL --job NAME``: read everything the page shows of a shared
    job in one snapshot of the database, then render it and write it (``None``:
    ``NAME.report.html`` in the current folder; ``-``: stdout)."""
    _require_report()
    from shoal.cli.run import run_async
    from shoal.reporting.report import TOP_ERRORS, TOP_HOSTS, render_report, timeline_interval
    from shoal.store.postgres_reader import PostgresReader, SharedReport

    target = shared_report_path(name) if output is None else output

    async def read() -> SharedReport:
        async with PostgresReader(dsn, name) as reader:
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


def export_shared(
    dsn: str,
    name: str,
    output: str,
    *,
    form: str,
    failed: bool | None,
    keep: Callable[[dict[str, Any]], bool] | None,
) -> None:
    """``shoal export --store URL --job NAME``: a shared job's records, in commit order."""
    from shoal.cli.run import run_async
    from shoal.store.postgres_reader import PostgresReader

    out = output_stream(output)

    async def export() -> None:
        first = True
        async with PostgresReader(dsn, name) as reader:
            batch: list[bytes] = []
            async for record in reader.records(failed=failed):
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

    try:
        run_async(export())
    finally:
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()


def share_pause(dsn: str, name: str, paused: bool) -> None:
    """``shoal pause|resume --store URL --job NAME``: pause or resume every worker."""
    from shoal.cli.run import run_async
    from shoal.store.postgres_reader import PostgresReader

    async def write() -> None:
        async with PostgresReader(dsn, name) as reader:
            await reader.share_pause(paused)

    run_async(write())
    what = "paused: its workers start no new request" if paused else "resumed"
    click.echo(f"job {name!r} {what}", err=True)
