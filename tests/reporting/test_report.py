"""``shoal report``: the page made from a real job's journal, end to end.

Jobs run as real ``shoal fetch`` processes against the misbehaving server; the report is
made by a real ``shoal report`` process (or, to look at old journals, by the same functions
in this process).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import orjson

from shoal.reporting.report import render_report
from shoal.sources.items import entry_for
from shoal.sources.source import Position
from shoal.store import SQLiteStore
from shoal.store.sqlite.reader import JournalReader
from tests.command import RESOLVE, environment, finish, line_count, lines, shoal, start
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving

#: Text a hostile input or server could put in the journal, meant to run in the page.
HOSTILE_LINE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
HOSTILE_QUERY = "?q=<script>alert(3)</script>&x=\"'><a href=//evil.example/>"


class _Page(HTMLParser):
    """Every tag of a page and the attributes that could make a browser load something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.references: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                self.references.append(value or "")
            if value and "url(" in value:
                self.references.extend(part.split(")")[0] for part in value.split("url(")[1:])

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: bytes) -> _Page:
    parser = _Page()
    parser.feed(page.decode())
    parser.close()
    return parser


def assert_self_contained(page: bytes) -> _Page:
    parsed = parse(page)
    loading = {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "base"}
    assert not parsed.tags & loading, parsed.tags & loading
    assert all(reference.startswith("#") for reference in parsed.references), parsed.references
    assert b"@import" not in page and b"http-equiv" not in page
    return parsed


async def finished_job(server: Misbehaving, tmp_path: Path, *extra: str) -> Path:
    """A finished job of 12 requests: 8 ok on two hosts, a 404 and a 503 (failures with
    ``--fail``), a refused connection and a bad line."""
    urls = [server.url(f"/flaky/r{n}?fail=0", host=f"h{n % 2}.test") for n in range(8)]
    urls += [server.url("/status/404"), server.url("/status/503"), "http://b.test:1/"]
    urls += ["ftp://x.test/file"]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), *RESOLVE, "--fail", "--retries", "0")
    done = await shoal(*args, "-q", *extra)
    assert done.code == 1, done.stderr
    return output


async def test_the_report_of_a_finished_job(server: Misbehaving, tmp_path: Path) -> None:
    output = await finished_job(server, tmp_path)
    done = await shoal("report", str(output))
    assert done.code == 0, done.stderr
    page_path = tmp_path / "out.jsonl.report.html"  # the default: beside the journal
    assert str(page_path) in done.stderr
    page = page_path.read_bytes()
    parsed = assert_self_contained(page)
    with JournalReader(f"{output}.journal") as reader:
        summary = reader.summary()
    assert (summary.admitted, summary.ok, summary.failed) == (12, 8, 4)
    text = page.decode()
    for name, count in (
        ("requests", f"{summary.admitted} admitted"),
        ("ok", summary.ok),
        ("failed", summary.failed),
        ("pending", 0),
    ):
        assert f"<tr><th>{name}</th><td>{count}</td></tr>" in text
    assert "Finished: every request of the job is final." in text
    # Charts: throughput, statuses, error kinds, latency.
    assert text.count("<svg") == 4 and "</svg>" in text
    for kind, count in summary.by_error.items():
        assert f'<td>{kind}</td><td class="n">{count}</td>' in text
    words = " ".join(parsed.text)
    assert "h0.test" in words and "h1.test" in words  # the top hosts
    assert "Cannot connect to host b.test:1" in words  # a grouped error
    assert str(output) in words  # the outputs written
    # The configuration, as the command line names it: --max-bytes 50 MiB, not
    # limits.max_bytes 52428800.
    assert '<tr><th>--max-bytes</th><td class="t">50 MiB</td></tr>' in text
    assert '<tr><th>--concurrency</th><td class="t">100</td></tr>' in text
    assert "limits.max_bytes" not in words and "52428800" not in words


async def test_the_same_journal_gives_the_same_bytes(server: Misbehaving, tmp_path: Path) -> None:
    output = await finished_job(server, tmp_path)
    # Two processes (so no state of matplotlib's is shared), one named by the output, to a
    # file, the other by the journal, to stdout.
    target = tmp_path / "report.html"
    to_file = await shoal("report", str(output), "-o", str(target))
    assert to_file.code == 0, to_file.stderr
    to_stdout = await shoal("report", f"{output}.journal", "-o", "-")
    assert to_stdout.code == 0, to_stdout.stderr
    assert to_stdout.stdout == target.read_bytes()


async def test_a_running_job_is_reported_as_incomplete(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/delay?s=0.25&n={n}") for n in range(40)]  # 5 s at -c 2
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "-c", "2", *RESOLVE, "-q")
    process = await start(*args, "--progress", "off")
    try:
        await wait_until(lambda: line_count(output) >= 2, 10, "some records")
        running = await shoal("report", str(output), "-o", str(tmp_path / "running.html"))
        assert running.code == 0, running.stderr
        process.send_signal(signal.SIGINT)
        interrupted = await finish(process, within_s=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert interrupted.code == 130, interrupted.stderr
    after = await shoal("report", str(output))
    assert after.code == 0, after.stderr
    for page in (tmp_path / "running.html", tmp_path / "out.jsonl.report.html"):
        text = page.read_text()
        assert '<p class="state incomplete">Incomplete: ' in text
        assert "requests pending" in text and "interrupted or is still running" in text


async def test_hostile_text_is_escaped(server: Misbehaving, tmp_path: Path) -> None:
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    hostile_url = server.url("/status/500" + HOSTILE_QUERY)
    source.write_bytes(lines(HOSTILE_LINE, hostile_url, server.url("/ok")))
    done = await shoal("fetch", str(source), "-o", str(output), *RESOLVE, "--fail", "-q")
    assert done.code == 1, done.stderr
    records = {record["line"]: record for record in read_records(output)}
    assert records[1]["url"] == HOSTILE_LINE  # the journal holds the raw text
    report = await shoal("report", str(output), "-o", str(tmp_path / "page.html"))
    assert report.code == 0, report.stderr
    page = (tmp_path / "page.html").read_bytes()
    parsed = assert_self_contained(page)
    assert b"<script>alert" not in page and b"<img src=x" not in page
    assert b"//evil.example/>" not in page and b"&lt;img src=x onerror=" in page
    assert HOSTILE_LINE in "".join(parsed.text)  # shown as text, whole


async def test_no_journal_is_a_usage_error(tmp_path: Path) -> None:
    done = await shoal("report", str(tmp_path / "nothing.jsonl"))
    assert done.code == 2
    assert "nothing.jsonl is not a journal file" in done.stderr
    assert not (tmp_path / "nothing.jsonl.report.html").exists()


async def test_an_unwritable_report_path_is_a_usage_error(
    server: Misbehaving, tmp_path: Path
) -> None:
    output = await finished_job(server, tmp_path)
    target = tmp_path / "no-such-folder" / "report.html"
    done = await shoal("report", str(output), "-o", str(target))
    assert done.code == 2
    assert f"cannot write the report {target}" in done.stderr


async def test_without_matplotlib_the_report_says_which_extra(
    server: Misbehaving, tmp_path: Path
) -> None:
    output = await finished_job(server, tmp_path)
    blocked = tmp_path / "blocked" / "matplotlib"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    env = environment(PYTHONPATH=str(blocked.parent))
    done = await shoal("report", str(output), env=env)
    assert done.code == 2
    assert "pip install 'shoal[report]'" in done.stderr
    assert not (tmp_path / "out.jsonl.report.html").exists()


async def test_the_timeline_sums_to_the_final_records(server: Misbehaving, tmp_path: Path) -> None:
    output = await finished_job(server, tmp_path)
    records = read_records(output)
    with contextlib.closing(sqlite3.connect(f"{output}.journal")) as db:
        rows = db.execute("SELECT second, ok, failed, bytes, attempts FROM timeline").fetchall()
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
    assert rows  # one a second of commits, not one a request
    assert len(rows) <= 1 + max(row[0] for row in rows) - min(row[0] for row in rows)
    assert sum(row[1] for row in rows) == int(meta["ok"]) == 8
    assert sum(row[2] for row in rows) == int(meta["failed"]) == 4
    assert sum(row[3] for row in rows) == sum(record["bytes"] for record in records)
    assert sum(row[4] for row in rows) == sum(record["attempts"] for record in records)
    with JournalReader(f"{output}.journal") as reader:
        span = reader.timeline_span()
        assert span is not None and span.source == "journal"
        assert (span.ok, span.failed) == (8, 4)
        assert sum(i.ok + i.failed for i in reader.timeline(span, 1)) == 12


async def test_the_journal_keeps_the_settings_without_secrets(
    server: Misbehaving, tmp_path: Path
) -> None:
    secret = "Bearer s3cret-token"
    output = await finished_job(
        server, tmp_path, "-H", f"Authorization: {secret}", "--proxy", "http://me:pw@127.0.0.1:9/"
    )
    with JournalReader(f"{output}.journal") as reader:
        settings = reader.settings()
    assert settings is not None
    assert settings["limits"]["concurrency"] == 100
    assert settings["retry"]["retries"] == 0 and settings["fail_http"] is True
    assert settings["output"] == str(output)
    assert settings["headers"] == ["Authorization"]
    assert settings["proxy"] == "http://127.0.0.1:9/"
    assert "s3cret" not in orjson.dumps(settings).decode()


async def test_an_older_journal_still_gives_a_report(server: Misbehaving, tmp_path: Path) -> None:
    """A journal made before the timeline and the settings were kept: throughput comes
    from the records' own times, and the configuration is said to be unknown."""
    output = await finished_job(server, tmp_path)
    old = tmp_path / "old.journal"
    shutil.copy(f"{output}.journal", old)
    with contextlib.closing(sqlite3.connect(old)) as db, db:
        db.execute("DROP TABLE timeline")
        db.execute("DELETE FROM meta WHERE name = 'settings'")
    with JournalReader(str(old)) as reader:
        span = reader.timeline_span()
        assert span is not None and span.source == "records"
        # The bad line (no attempt, no time) is not on the timeline.
        assert (span.ok, span.failed) == (8, 3)
        page = render_report(reader)
        assert render_report(reader) == page
    assert_self_contained(page)
    text = page.decode()
    assert "the records&#x27; own times" in text
    assert "Not recorded: this journal's runs were made by an earlier shoal." in text
    assert text.count("<svg") == 4


async def test_a_journal_with_no_record_yet(tmp_path: Path) -> None:
    """A job stopped before anything was final still gets a page, with nothing to draw."""
    journal = tmp_path / "job.journal"
    store = SQLiteStore(str(journal))
    try:
        await store.open("urls.txt")
        await store.admit([entry_for("http://a.test/", 1)], Position(1, 16))
    finally:
        await store.close()
    with JournalReader(str(journal)) as reader:
        assert reader.timeline_span() is None
        page = render_report(reader)
    assert_self_contained(page)
    assert b"<svg" not in page
    assert b"Incomplete: 1 request pending and the input read up to line 1 only" in page
