"""``shoal report --store URL --job NAME``: the page of a job kept in PostgreSQL, set
against the page of the same job run on a SQLite journal.

The same small job (successes on two hosts, one of them behind user info, a redirect,
404s and a 500 made failures by ``--fail``, refused connections over IPv4 and IPv6, a bad
line) runs as real ``shoal fetch`` processes, once with a journal and once on the test
database; whatever does not depend on timings must read the same on both pages. How the
database finds a URL's host (upper case, user info, ports, IPv6) is checked on its own.
"""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli.main import cli
from shoal.reporting.report import (
    TOP_ERRORS,
    TOP_HOSTS,
    SharedSource,
    render_report,
    timeline_interval,
)
from shoal.store.dsn import shown_dsn
from shoal.store.postgres.reader import PostgresReader, host_sql
from shoal.store.sqlite.reader import JournalReader, _host
from tests.command import RESOLVE, lines, shoal
from tests.postgres import asyncpg, pg_dsn
from tests.reporting.test_report import assert_self_contained
from tests.servers import Misbehaving

__all__ = ["pg_dsn"]

JOB = "shared"


def job_lines(server: Misbehaving) -> list[str]:
    urls = [server.url(f"/flaky/s{n}?fail=0", host=f"h{n % 2}.test") for n in range(6)]
    urls.append(server.url("/flaky/userinfo?fail=0", host="user:secret@h1.test"))
    urls.append(server.url("/redirect/2", host="h0.test"))
    urls += [
        server.url("/status/404"),
        server.url("/status/500"),
        server.url("/status/404", "h1.test"),
    ]
    urls += ["http://b.test:1/", "http://[::1]:1/", "ftp://x.test/file"]
    return urls


async def run_both(server: Misbehaving, dsn: str, tmp_path: Path) -> Path:
    """Run the job on a journal and on the database, together; the journal's path."""
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*job_lines(server)))
    common = (str(source), *RESOLVE, "--fail", "--retries", "0", "--progress", "off", "-q")
    local, shared = await asyncio.gather(
        shoal("fetch", *common, "-o", str(tmp_path / "out.jsonl")),
        shoal("fetch", *common, "--store", dsn, "--job", JOB, "--lease-ttl", "2"),
    )
    assert (local.code, shared.code) == (1, 1), (local.stderr, shared.stderr)
    return tmp_path / "out.jsonl.journal"


async def shared_page(dsn: str) -> bytes:
    async with PostgresReader(dsn, JOB) as reader:
        source = await reader.report_source(
            hosts=TOP_HOSTS, errors=TOP_ERRORS, interval=timeline_interval
        )
    assert isinstance(source, SharedSource)
    return render_report(source)


class _Tables(HTMLParser):
    """The text of every cell of every table, row by row."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    parser.close()
    return parser.tables


def sections(page: bytes) -> dict[str, str]:
    """Each ``<h2>`` section of a page, by its title (``""``: what comes before the first)."""
    parts = re.split(r"<h2>(.*?)</h2>", page.decode())
    return {"": parts[0], **dict(zip(parts[1::2], parts[2::2], strict=True))}


#: Rows of the totals that do not depend on when the job ran.
_UNTIMED = ("input", "requests", "ok", "failed", "pending", "attempts", "redirects followed")


async def test_the_shared_page_shows_what_the_journal_page_shows(
    server: Misbehaving, pg_dsn: str, tmp_path: Path
) -> None:
    journal = await run_both(server, pg_dsn, tmp_path)
    with JournalReader(str(journal)) as reader:
        assert not isinstance(reader, SharedSource)  # a report source, not a shared one
        local = sections(render_report(reader))
    page = await shared_page(pg_dsn)
    assert_self_contained(page)
    shared = sections(page)

    # The same sections, and the workers' just before the outputs.
    assert "Workers" not in local
    titles = list(local)
    titles.insert(titles.index("Outputs"), "Workers")
    assert list(shared) == titles

    def untimed(text: str) -> dict[str, str]:
        [rows] = tables(text)
        kept = {name: value for name, value in rows if name in _UNTIMED or name == "body bytes"}
        assert set(kept) == {*_UNTIMED, "body bytes"}
        return kept

    totals = untimed(shared["Totals"])
    assert totals == untimed(local["Totals"])
    assert (totals["requests"], totals["ok"], totals["failed"]) == ("14 admitted", "8", "6")
    assert totals["redirects followed"] == "2"
    # Statuses, error kinds and the grouped errors: charts and tables alike.
    assert shared["Statuses and errors"] == local["Statuses and errors"]
    assert shared["Errors, grouped"] == local["Errors, grouped"]
    [groups] = tables(shared["Errors, grouped"])
    assert [(kind, count) for kind, _, count, _ in groups[1:]] == [
        ("http_status", "2"),  # the largest first, then by kind and message
        ("connect", "1"),  # ::1
        ("connect", "1"),  # b.test
        ("http_status", "1"),
        ("unsupported_scheme", "1"),
    ]
    assert groups[1][3] == server.url("/status/404")  # the first URL by its bytes

    # The hosts: the same rows but for the mean latency (the last column).
    def hosts(text: str) -> list[list[str]]:
        [rows] = tables(text)
        return [row[:-1] for row in rows]

    assert hosts(shared["Top hosts"]) == hosts(local["Top hosts"])
    rows = {row[0]: row for row in hosts(shared["Top hosts"])}
    assert rows["h1.test"][1:4] == ["5", "4", "1"]  # user info is no part of the host
    assert {"h0.test", "a.test", "b.test", "::1", "x.test"} <= set(rows)
    # The latency table: the same counts (its times are this run's own).
    assert [r[:2] for r in tables(shared["Latency"])[0]] == [
        r[:2] for r in tables(local["Latency"])[0]
    ]


async def test_the_shared_page_lists_the_workers_and_is_the_same_every_time(
    server: Misbehaving, pg_dsn: str, tmp_path: Path
) -> None:
    await run_both(server, pg_dsn, tmp_path)
    page = await shared_page(pg_dsn)
    assert await shared_page(pg_dsn) == page
    # The command writes the same bytes, by default as NAME.report.html here.
    made, missing = await asyncio.gather(
        shoal("report", "--store", pg_dsn, "--job", JOB, cwd=tmp_path),
        shoal("report", "--store", pg_dsn, "--job", "nobody"),
    )
    assert made.code == 0, made.stderr
    assert "report: shared.report.html" in made.stderr
    assert (tmp_path / "shared.report.html").read_bytes() == page
    assert missing.code == 2 and "no job 'nobody'" in missing.stderr

    connection = await asyncpg.connect(pg_dsn)
    try:
        [(worker, machine)] = await connection.fetch("SELECT worker, machine FROM shoal_workers")
    finally:
        await connection.close()
    text = sections(page)
    [workers] = tables(text["Workers"])
    assert workers == [
        ["worker", "machine", "records", "ok", "failed", "state"],
        [worker, machine, "14", "8", "6", "stopped"],
    ]
    assert f"job <code>{JOB}</code> in the store <code>" in text[""]
    assert "Finished: every request of the job is final." in text[""]
    assert "every worker&#x27;s summed" in text["Throughput over time"]


#: URLs whose host name is easy to get wrong.
TRICKY = [
    "http://user:pw@EXAMPLE.com:8080/a",
    "http://a@b@C.test/p@q",
    "https://[::1]:443/x",
    "http://[2001:DB8::1]/",
    "http://user@[fe80::1]:8/",
    "http://[::1",
    "HTTP://Host.Test?x=1",
    "http://h.test#frag",
    "http://h.test/a://b",
    "a://b://c",
    "http://Ünï.test/",
    "ftp://x.test/file",
    "http://",
    "http://:80/",
    "http://[]/",
    "http://u@/x",
    "mailto:a@b",
    "no scheme",
    "",
]


async def test_the_host_in_sql_is_the_journal_readers_host(pg_dsn: str) -> None:
    connection = await asyncpg.connect(pg_dsn)
    try:
        rows = await connection.fetch(
            f"SELECT u, {host_sql('u')} FROM unnest($1::text[]) WITH ORDINALITY AS x(u, n)"
            " ORDER BY n",
            TRICKY,
        )
    finally:
        await connection.close()
    assert [(url, host) for url, host in rows] == [(url, _host(url)) for url in TRICKY]
    assert dict(rows)["http://user:pw@EXAMPLE.com:8080/a"] == "example.com"
    assert dict(rows)["http://[2001:DB8::1]/"] == "2001:db8::1"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--store", "postgresql://127.0.0.1/test"), ("'--job'",)),
        (("--job", "shared"), ("'--job'", "--store")),
        (("out.jsonl", "--store", "postgresql://127.0.0.1/test", "--job", "j"), ("'--store'",)),
        (("--store", "mysql://127.0.0.1/test", "--job", "j"), ("'--store'",)),
        (("--store", "postgresql://127.0.0.1/test", "--job", "a/b"), ("'--output'",)),
        ((), ("'JOB'",)),
    ],
)
def test_usage_errors_name_the_option(args: tuple[str, ...], named: tuple[str, ...]) -> None:
    done = CliRunner().invoke(cli, ["report", *args])
    assert done.exit_code == 2, done.output
    assert all(name in done.output for name in named), done.output


def test_the_page_shows_the_store_without_its_password() -> None:
    assert shown_dsn("postgresql://me:pw@db:5433/crawl?sslmode=require&password=pw2") == (
        "postgresql://me@db:5433/crawl?sslmode=require"
    )
    assert shown_dsn("postgresql://db/crawl") == "postgresql://db/crawl"
