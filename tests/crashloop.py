"""Killing ``shoal fetch`` with SIGKILL at random moments, and the invariants a job keeps.

Shared by ``tests/cli/test_crash.py`` (a short seeded round) and ``bench/soak.py`` (many long
rounds). Nothing here depends on pytest: a broken invariant raises :class:`Violation`.

One *round* is one job: a generated input of URLs against :class:`CrashServer` (some
duplicated, some malformed, some that end as failures), run with ``shoal fetch`` as a
subprocess and killed with SIGKILL after a random, seeded delay, again and again, until the
kill budget or the time is spent or a run finishes on its own. After every kill the journal
is read (read-only) and checked against the output file; the requests it holds as final are
remembered with the server's hit count for them at that moment, and from then on the server
must never see them again. Then a last run completes the job, the final state is checked,
and one more run must be a no-op.

The crash model: SIGKILL at any instruction, plus (sometimes, after a kill) an output file
cut inside the records written after the journal's sink mark, or ending in a prefix of
the next committed record, which is what a kill in the middle of the output's ``write``
leaves on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_request import Request

from tests.command import environment
from tests.servers import serve

SHOAL = (sys.executable, "-m", "shoal")
RESOLVE = ("--resolve", "*.test:127.0.0.1")
#: Retry quickly, so failures become final within a run; ``--fail`` makes 404 and 500 final
#: failures (journal state 2), as a connection dropped after its retries is.
FETCH_OPTIONS = ("--fail", "--retries", "2", "--backoff", "0.01", "--backoff-max", "0.05")
_PENDING, _OK, _FAILED = 0, 1, 2
#: Whether ``/proc/PID/fd`` shows what a process holds open (Linux).
_PROC = os.path.isdir("/proc/self/fd")
_MALFORMED = (
    b"not a url",
    b"ftp://h1.test/file.txt",
    b'{"url": 5}',
    b'{"url": "http://h1.test/", "bogus": 1}',
    b"{broken json",
    b"http://",
    b"http://h1.test:99999/",
    b"\xff\xfe not UTF-8",
    b"http://bad host.test/x",
)


class Violation(AssertionError):
    """An invariant of a killed-and-resumed job does not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Violation(message)


# -- the server ----------------------------------------------------------------------------------


class CrashServer:
    """An aiohttp server on 127.0.0.1 that counts hits per URL (host, port, path and query).

    Routes (``n`` makes each URL distinct; ``ms`` delays the answer):

    * ``/ok/{n}?ms=`` — 200.
    * ``/flaky/{n}?ms=`` — 503 on its first hit ever, 200 afterwards.
    * ``/status/{n}?code=&ms=`` — that status, always.
    * ``/drop/{n}`` — closes the connection without answering.
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        #: Set on every request; clear it to wait for the next one.
        self.arrived = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def total(self) -> int:
        return self.hits.total()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ok/{n}", self._ok)
        app.router.add_get("/flaky/{n}", self._flaky)
        app.router.add_get("/status/{n}", self._status)
        app.router.add_get("/drop/{n}", self._drop)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _count(self, request: Request) -> int:
        key = f"{request.host}{request.rel_url}"
        self.hits[key] += 1
        self.arrived.set()
        return self.hits[key]

    @staticmethod
    async def _delay(request: Request) -> None:
        await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)

    async def _ok(self, request: Request) -> web.StreamResponse:
        self._count(request)
        await self._delay(request)
        return web.Response(text=f"ok {request.match_info['n']}")

    async def _flaky(self, request: Request) -> web.StreamResponse:
        first = self._count(request) == 1
        await self._delay(request)
        return web.Response(status=503 if first else 200, text="flaky")

    async def _status(self, request: Request) -> web.StreamResponse:
        self._count(request)
        await self._delay(request)
        return web.Response(status=int(request.query["code"]), text="status")

    async def _drop(self, request: Request) -> web.StreamResponse:
        self._count(request)
        assert request.transport is not None
        request.transport.abort()
        return web.Response()


def hit_key(url: str) -> str:
    """The server's hit key of a generated URL (they are all ``http://`` and plain ASCII)."""
    return url.removeprefix("http://")


# -- the input -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a request must end: its final status and error kind."""

    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """A generated input and what its job must produce."""

    data: bytes
    #: Each distinct URL, and how it must end.
    expected: dict[str, Outcome]
    #: Line numbers of the lines that are not requests (each gives one error record).
    malformed: frozenset[int]
    duplicates: int

    @property
    def records(self) -> int:
        return len(self.expected) + len(self.malformed)

    @property
    def failures(self) -> int:
        return sum(outcome.error is not None for outcome in self.expected.values())


def make_plan(rng: random.Random, port: int, count: int, hosts: int = 16, hot: float = 0.0) -> Plan:
    """About ``count`` URLs on ``hosts`` host names (a share ``hot`` of them on the first):
    mostly quick 200s, some flaky ones that recover, some 404/500/dropped ones that end as
    failures, some exact duplicates, some JSON request lines, a few comments, blank lines
    and malformed lines."""
    lines: list[bytes] = []
    expected: dict[str, Outcome] = {}
    urls: list[str] = []
    malformed: set[int] = set()
    duplicates = 0
    for n in range(count):
        roll = rng.random()
        if urls and roll < 0.04:
            lines.append(rng.choice(urls).encode())
            duplicates += 1
            continue
        if roll < 0.05:
            lines.append(rng.choice(_MALFORMED))
            malformed.add(len(lines))
            continue
        if roll < 0.055:
            lines.append(rng.choice((b"", b"# a comment")))
            continue
        host = 0 if hot and rng.random() < hot else rng.randrange(hosts)
        base = f"http://h{host}.test:{port}"
        ms = rng.randint(2, 25)
        kind = rng.random()
        if kind < 0.82:
            url, outcome = f"{base}/ok/{n}?ms={ms}", Outcome(200, None)
        elif kind < 0.90:
            url, outcome = f"{base}/flaky/{n}?ms={ms}", Outcome(200, None)
        elif kind < 0.94:
            url, outcome = f"{base}/status/{n}?code=404&ms={ms}", Outcome(404, "http_status")
        elif kind < 0.97:
            url, outcome = f"{base}/status/{n}?code=500&ms={ms}", Outcome(500, "http_status")
        else:
            url, outcome = f"{base}/drop/{n}", Outcome(None, "reset")
        expected[url] = outcome
        urls.append(url)
        if rng.random() < 0.05:
            lines.append(orjson.dumps({"url": url, "meta": {"n": n}}))
        else:
            lines.append(url.encode())
    # At least a few lines that are not requests, wherever they fall.
    while len(malformed) < 3:
        at = rng.randrange(len(lines) + 1)
        lines.insert(at, rng.choice(_MALFORMED))
        malformed = {m + 1 if m > at else m for m in malformed} | {at + 1}
    return Plan(b"\n".join(lines) + b"\n", expected, frozenset(malformed), duplicates)


# -- reading the journal -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalView:
    """What a journal holds, read read-only while no shoal runs on it."""

    #: seq -> (URL, or None for a line that is not a request; state)
    requests: dict[int, tuple[str | None, int]]
    #: (done_seq, seq, record) in commit order
    records: list[tuple[int, int, bytes]]
    meta: dict[str, Any]
    #: seq -> attempts the journal holds (for a pending request: those made so far)
    attempts: dict[int, int] = field(default_factory=dict)

    @property
    def mark_done_seq(self) -> int:
        return int(self.meta.get("mark_done_seq", 0))

    @property
    def mark_position(self) -> int:
        positions = self.meta.get("mark_positions")
        return 0 if positions is None else int(orjson.loads(positions).get("jsonl", 0))

    @property
    def input_done(self) -> bool:
        return bool(int(self.meta.get("input_done", 0)))

    def final_urls(self) -> set[str]:
        return {url for url, state in self.requests.values() if url and state != _PENDING}

    def count(self, state: int) -> int:
        return sum(1 for _, s in self.requests.values() if s == state)

    def lines(self, start: int = 0, end: int | None = None) -> bytes:
        """The output the records ``start`` (exclusive) to ``end`` (inclusive) make."""
        return b"".join(record + b"\n" for _, _, record in self.records[start:end])


def _spec_url(spec: bytes) -> str | None:
    if not spec.startswith(b"{"):
        return spec.decode()
    fields = orjson.loads(spec)
    return None if "error" in fields else str(fields["url"])


def read_journal(path: Path) -> JournalView:
    """The journal's content (empty when the kill came before it existed), read read-only.

    A kill while SQLite creates the database (before the journal is in WAL mode) can leave
    a hot rollback journal, which only a writer may roll back: then a copy is read, rolled
    back as shoal's next run rolls back the journal itself.
    """
    if not path.exists():
        return JournalView({}, [], {})
    try:
        return _read_journal(path.as_uri() + "?mode=ro")
    except sqlite3.DatabaseError as exc:
        hot = Path(f"{path}-journal")
        problem = exc
        if hot.exists():
            with tempfile.TemporaryDirectory(prefix="shoal-journal-copy-") as folder:
                copy = Path(folder) / path.name
                for suffix in ("", "-journal", "-wal"):
                    with contextlib.suppress(FileNotFoundError):
                        shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
                try:
                    return _read_journal(copy.as_uri())
                except sqlite3.DatabaseError as again:
                    problem = again
        raise Violation(f"the journal {path} cannot be read: {problem}") from None


def _read_journal(uri: str) -> JournalView:
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        db.execute("BEGIN")  # one consistent snapshot
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        meta: dict[str, Any] = {}
        if "meta" in tables:
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        requests: dict[int, tuple[str | None, int]] = {}
        attempts: dict[int, int] = {}
        if "requests" in tables:
            rows = db.execute("SELECT seq, spec, state, attempts FROM requests")
            for seq, spec, state, made in rows:
                requests[seq] = (_spec_url(bytes(spec)), state)
                attempts[seq] = made
        records: list[tuple[int, int, bytes]] = []
        if "records" in tables:
            records = [
                (done_seq, seq, bytes(record))
                for done_seq, seq, record in db.execute(
                    "SELECT done_seq, seq, record FROM records ORDER BY done_seq"
                )
            ]
        db.execute("COMMIT")
    return JournalView(requests, records, meta, attempts)


# -- the invariants ------------------------------------------------------------------------------


def check_state(view: JournalView, output: bytes, plan: Plan, where: str) -> None:
    """What must hold after any kill: the journal agrees with itself, with the plan, and
    with the output file up to (and past) its sink mark."""
    states = Counter(state for _, state in view.requests.values())
    check(set(states) <= {_PENDING, _OK, _FAILED}, f"{where}: unknown request states {states}")
    urls = [url for url, _ in view.requests.values() if url is not None]
    check(len(urls) == len(set(urls)), f"{where}: a URL was admitted twice")
    check(set(urls) <= set(plan.expected), f"{where}: the journal holds a URL not in the input")
    if view.meta:
        for name, count in (
            ("admitted", len(view.requests)),
            ("ok", states[_OK]),
            ("failed", states[_FAILED]),
        ):
            check(
                int(view.meta.get(name, 0)) == count,
                f"{where}: meta {name}={view.meta.get(name)} but the requests table says {count}",
            )
    done_seqs = [done_seq for done_seq, _, _ in view.records]
    check(
        done_seqs == list(range(1, len(done_seqs) + 1)),
        f"{where}: record numbers are not 1..{len(done_seqs)}",
    )
    recorded = Counter(seq for _, seq, _ in view.records)
    final = {seq for seq, (_, state) in view.requests.items() if state != _PENDING}
    twice = [seq for seq, times in recorded.items() if times > 1]
    check(not twice, f"{where}: requests {twice[:5]} have more than one record")
    check(
        set(recorded) == final,
        f"{where}: final requests without a record: {sorted(final - set(recorded))[:5]}, "
        f"records of requests not final: {sorted(set(recorded) - final)[:5]}",
    )
    for _, seq, line in view.records:
        record = orjson.loads(line)
        url, _ = view.requests[seq]
        _check_record(record, url, plan, where)
    mark, position = view.mark_done_seq, view.mark_position
    check(mark <= len(view.records), f"{where}: the sink mark {mark} is past the last record")
    check(
        len(output) >= position,
        f"{where}: the output holds {len(output)} bytes, less than the mark's {position}",
    )
    check(
        output[:position] == view.lines(0, mark),
        f"{where}: the output up to the sink mark ({position} bytes) is not records 1..{mark}",
    )
    check(
        view.lines(mark).startswith(output[position:]),
        f"{where}: the output past the sink mark is not a prefix of the records after it",
    )


def _check_record(record: dict[str, Any], url: str | None, plan: Plan, where: str) -> None:
    error = record["error"]
    if url is None:
        check(
            record["line"] in plan.malformed and error is not None and record["attempts"] == 0,
            f"{where}: record of a line that is not a request is wrong: {record}",
        )
        return
    check(record["url"] == url, f"{where}: the record of {url} names {record['url']}")
    expected = plan.expected[url]
    actual = Outcome(record["status"], None if error is None else error["kind"])
    check(actual == expected, f"{where}: {url} ended as {actual}, expected {expected}: {record}")


def check_final(view: JournalView, output: bytes, plan: Plan, hits: Counter[str]) -> None:
    """What must hold once the job is complete."""
    check_state(view, output, plan, "complete job")
    check(view.input_done, "complete job: the journal does not say the input is done")
    pending = [url for url, state in view.requests.values() if state == _PENDING]
    check(not pending, f"complete job: {len(pending)} requests still pending: {pending[:3]}")
    check(
        output == view.lines(),
        "complete job: the output is not exactly the journal's records in commit order",
    )
    check(
        (view.mark_done_seq, view.mark_position) == (len(view.records), len(output)),
        f"complete job: the sink mark {view.mark_done_seq}@{view.mark_position} is not at "
        f"the end ({len(view.records)}@{len(output)})",
    )
    check(output.endswith(b"\n") or not output, "complete job: the output ends in a torn line")
    records = [orjson.loads(line) for line in output.splitlines()]  # each line is JSON
    check(
        len(records) == len(view.records) == plan.records,
        f"complete job: {len(records)} output lines, {len(view.records)} journal records, "
        f"{plan.records} expected ({len(plan.expected)} URLs, {len(plan.malformed)} malformed)",
    )
    lines = Counter(r["line"] for r in records if r["line"] in plan.malformed and r["error"])
    check(
        set(lines) == plan.malformed and set(lines.values()) == {1},
        f"complete job: lines that are not requests are not recorded once each: {lines}",
    )
    urls = Counter(r["url"] for r in records if r["line"] not in plan.malformed)
    missing = set(plan.expected) - set(urls)
    check(not missing, f"complete job: {len(missing)} URLs have no record: {sorted(missing)[:3]}")
    twice = [url for url, times in urls.items() if times != 1 or url not in plan.expected]
    check(not twice, f"complete job: URLs recorded twice or unknown: {twice[:3]}")
    keys = {hit_key(url): url for url in plan.expected}
    strays = set(hits) - set(keys)
    check(not strays, f"complete job: the server saw requests not in the input: {strays}")
    for record in records:
        if record["line"] in plan.malformed:
            continue
        seen = hits[hit_key(record["url"])]
        check(
            seen >= max(1, record["attempts"]),
            f"complete job: {record['url']} shows {record['attempts']} attempts but the server "
            f"saw it {seen} times",
        )


# -- the loop ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    urls: int = 3000
    kills: int = 12
    #: Stop killing after this long (the round's last runs follow, each time-bounded).
    max_seconds: float = 60.0
    #: Read the input from stdin (``-`` with ``--job``) instead of naming the file.
    stdin: bool = False
    concurrency: int = 24
    #: How many host names the URLs use, and the share of them on the first one.
    hosts: int = 16
    hot: float = 0.0
    #: The longest wait after the run's first request before the kill.
    max_delay_s: float = 0.3
    #: The share of kills that wait longer (up to ``long_delay_s``), so that a long job
    #: moves on to its end between kills.
    long: float = 0.0
    long_delay_s: float = 3.0
    #: The share of kills aimed at start-up (before the run's first request): half at
    #: random times, half just after the journal is opened.
    early: float = 0.3
    #: The chance of tearing the output after a kill, where a torn write could have.
    tear: float = 0.5
    #: The longest any one run may take.
    run_limit_s: float = 60.0
    #: Archive with ``--warc`` too, tear the archive after kills as well, and check it.
    warc: bool = False


@dataclass(slots=True)
class RoundReport:
    kills: int = 0
    #: Kills that found the job partly done (some requests final, some not).
    partial_kills: int = 0
    #: Kills that came before the run sent any request (start-up, journal, catch-up).
    early_kills: int = 0
    #: How many kills were aimed at each moment: ``early`` (a random time in start-up),
    #: ``journal`` (just after the journal is opened), ``flight`` (after the first request).
    aimed: Counter[str] = field(default_factory=Counter)
    #: Runs by how they got their input: ``file``, ``stdin pipe``, ``stdin file``.
    sources: Counter[str] = field(default_factory=Counter)
    tears: int = 0
    #: The most requests one killed run sent without a committed result at the kill (in
    #: flight, answered but not yet committed, or between retries), and of those the most
    #: plain ones (single-attempt 200s).
    lost_max: int = 0
    plain_lost_max: int = 0
    #: Requests sent again because a kill caught them in flight (server hits beyond the
    #: recorded attempts).
    refetched: int = 0
    seconds: float = 0.0
    kill_lines: list[str] = field(default_factory=list)


def archive_file(prefix: Path, number: int) -> Path:
    return prefix.parent / f"{prefix.name}-{number:05d}.warc.gz"


def check_archive(prefix: Path, output: bytes) -> None:
    """A completed job's archive: every file reads whole with warcio (no torn record) and
    passes its digests; it holds exactly one response per record that points into it (the
    generated URLs have no redirects), and nothing else; the index lists exactly those."""
    from warcio.archiveiterator import ArchiveIterator

    files = sorted(prefix.parent.glob(prefix.name + "-*.warc.gz"))
    check(bool(files), "the job wrote no WARC file")
    script = os.path.join(os.path.dirname(sys.executable), "warcio")
    done = subprocess.run([script, "check", *map(str, files)], capture_output=True)
    check(done.returncode == 0, f"warcio check failed: {done.stdout[-2000:]!r}")
    responses: dict[tuple[str, int], str] = {}
    requests = 0
    for path in files:
        with path.open("rb") as file:
            iterator = ArchiveIterator(file)
            for record in iterator:
                record.content_stream().read()
                if record.rec_type == "response":
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    responses[(path.name, iterator.get_record_offset())] = uri
                requests += record.rec_type == "request"
    check(requests == len(responses), f"{requests} requests for {len(responses)} responses")
    pointed: dict[tuple[str, int], str] = {}
    for line in output.splitlines():
        record = orjson.loads(line)
        if record["warc"] is None:
            check(
                record["status"] is None or record["error"]["kind"] not in ("http_status",),
                f"{record['url']} got a response but points into no archive",
            )
            continue
        location = record["warc"]
        pointed[(location["filename"], location["offset"])] = record["url"]
    archived = Counter(responses.values())
    twice = [url for url, count in archived.items() if count > 1]
    check(not twice, f"responses archived more than once: {twice[:3]}")
    check(
        pointed == responses,
        f"the records point at {len(pointed)} responses, the archive holds {len(responses)}; "
        f"first differences: {sorted(set(pointed.items()) ^ set(responses.items()))[:3]}",
    )
    index = (prefix.parent / (prefix.name + ".cdxj")).read_bytes().splitlines()
    indexed = {}
    for line in index:
        fields = orjson.loads(line.split(b" ", 2)[2])
        indexed[(fields["filename"], int(fields["offset"]))] = fields["url"]
    check(len(index) == len(indexed) and indexed == responses, "the index does not match")


def _holds_open(descriptors: str, path: str) -> bool:
    """Whether a process (its ``/proc/PID/fd`` folder) has ``path`` open."""
    try:
        names = os.listdir(descriptors)
    except OSError:
        return False
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(descriptors, name)) == path:
                return True
    return False


@dataclass(frozen=True, slots=True)
class _Shot:
    """How one run is started and when it is killed, drawn before it starts, so that a
    seed gives the same schedule however the runs go."""

    #: ``file``, ``stdin pipe`` or ``stdin file`` (a regular file as stdin).
    source: str
    #: ``early``, ``journal``, ``flight``, or ``none`` (the run is not killed).
    mode: str
    #: ``early``: a fraction of the usual start-up time; otherwise seconds.
    delay: float


@dataclass(frozen=True, slots=True)
class _Ended:
    code: int
    stdout: bytes
    stderr: str
    killed: bool
    how: str
    #: Requests the server received from this run.
    sent: int


class CrashRound:
    """One job, killed again and again, then completed and checked."""

    def __init__(
        self,
        server: CrashServer,
        folder: Path,
        settings: Settings,
        rng: random.Random,
        say: Callable[[str], None] = lambda _: None,
        *,
        numbering: tuple[int, int] | None = None,
    ) -> None:
        """``say`` receives one line per kill and one for the round; ``numbering`` (kills
        before this round, kills in all) numbers the kills over several rounds. A server
        serves one round at a time: its counts start again with each."""
        server.hits.clear()
        self.server = server
        self.settings = settings
        self.rng = rng
        self.say = say
        self.plan = make_plan(rng, server.port, settings.urls, settings.hosts, settings.hot)
        # Tears depend on what each kill left; their own generator keeps the schedule fixed.
        self._tear_rng = random.Random(rng.random())
        self.input = folder / "urls.txt"
        self.output = folder / "out.jsonl"
        self.journal = folder / "job.journal"
        self.input.write_bytes(self.plan.data)
        where = ("-", "--job", str(self.journal)) if settings.stdin else (str(self.input),)
        self.args = (
            "fetch",
            *where,
            "-o",
            str(self.output),
            "-c",
            str(settings.concurrency),
            *RESOLVE,
            *FETCH_OPTIONS,
            "--progress",
            "off",
        )
        self.archive = folder / "crawl"
        if settings.warc:
            self.args = (*self.args, "--warc", str(self.archive))
        if not settings.stdin:
            self.journal = Path(str(self.output) + ".journal")
        self._lock_path = os.path.realpath(str(self.journal) + ".lock")
        #: URL -> the server's hits for it when a kill first found it final.
        self.frozen: dict[str, tuple[int, int]] = {}
        self.report = RoundReport()
        self._startup_s = 0.4
        self._last_view = JournalView({}, [], {})
        self._numbering = numbering or (0, settings.kills)

    async def run(self) -> RoundReport:
        started = time.monotonic()
        deadline = started + self.settings.max_seconds
        finished = False
        while self.report.kills < self.settings.kills and time.monotonic() < deadline:
            before = Counter(self.server.hits)
            ended = await self._run_once(self._draw(kill=True))
            self._check_frozen(f"after run {self.report.kills + 1}")
            if not ended.killed:
                finished = True
                self._check_complete_job(ended, before, "a run that finished before its kill")
                break
            self.report.kills += 1
            self._after_kill(ended, before)
        before = Counter(self.server.hits)
        final = await self._run_once(self._draw(kill=False))
        view = self._check_complete_job(final, before, "the final run")
        output = self._output()
        if self.settings.warc:
            check_archive(self.archive, output)
        hits = self.server.total
        again = await self._run_once(self._draw(kill=False))
        self._check_completed(again, "the run after the job was complete")
        check(
            self.server.total == hits,
            f"a run of a complete job sent {self.server.total - hits} requests",
        )
        check(self._output() == output, "a run of a complete job changed the output")
        check(
            read_journal(self.journal).records == view.records,
            "a run of a complete job changed the journal's records",
        )
        records = [orjson.loads(line) for line in output.splitlines()]
        attempts = sum(record["attempts"] for record in records)
        self.report.refetched = sum(
            self.server.hits[hit_key(record["url"])] - record["attempts"]
            for record in records
            if record["line"] not in self.plan.malformed
        )
        self.report.seconds = time.monotonic() - started
        self.say(
            f"round done in {self.report.seconds:.1f}s: {self.report.kills} kills "
            f"(aimed {dict(self.report.aimed)}; {self.report.early_kills} before the run's first "
            f"request, {self.report.partial_kills} with the job part done), "
            f"{self.report.tears} torn outputs, {len(self.plan.expected)} URLs + "
            f"{len(self.plan.malformed)} malformed lines + {self.plan.duplicates} duplicates, "
            f"{hits} server hits for {attempts} recorded attempts, "
            f"{self.report.refetched} requests sent again after a kill, at most "
            f"{self.report.lost_max} ({self.report.plain_lost_max} plain) lost to one kill "
            f"at -c {self.settings.concurrency}" + (" (finished on its own)" if finished else "")
        )
        return self.report

    # -- one run ---------------------------------------------------------------------------------

    def _draw(self, *, kill: bool) -> _Shot:
        """The next run's shot; every run draws the same number of values."""
        rng = self.rng
        settings = self.settings
        pipe, roll, fraction, long, stretch = (rng.random() for _ in range(5))
        source = ("stdin pipe" if pipe < 0.5 else "stdin file") if settings.stdin else "file"
        if not kill:
            return _Shot(source, "none", 0.0)
        if self.report.kills == 0 or roll < settings.early / 2:
            # A round's first kill hits a new journal; later ones, a resumed one.
            return _Shot(source, "journal", 0.03 * fraction)
        if roll < settings.early:
            return _Shot(source, "early", 1.1 * fraction)
        if long < settings.long:
            span = settings.long_delay_s - settings.max_delay_s
            return _Shot(source, "flight", settings.max_delay_s + span * stretch)
        return _Shot(source, "flight", settings.max_delay_s * fraction)

    async def _run_once(self, shot: _Shot) -> _Ended:
        limit = self.settings.run_limit_s
        how = shot.source
        self.report.sources[shot.source] += 1
        data: bytes | None = None
        stdin: int = asyncio.subprocess.DEVNULL
        descriptor: int | None = None
        if shot.source == "stdin pipe":
            stdin, data = asyncio.subprocess.PIPE, self.plan.data
        elif shot.source == "stdin file":
            stdin = descriptor = os.open(self.input, os.O_RDONLY)
        spawned = time.monotonic()
        before = self.server.total
        self.server.arrived.clear()
        try:
            process = await asyncio.create_subprocess_exec(
                *SHOAL,
                *self.args,
                stdin=stdin,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environment(),
            )
        finally:
            if descriptor is not None:
                os.close(descriptor)
        talk = asyncio.create_task(process.communicate(data))
        try:
            if shot.mode != "none":
                self.report.aimed[shot.mode] += 1
                how += await self._kill_later(shot, process, talk, spawned)
            try:
                out, err = await asyncio.wait_for(asyncio.shield(talk), limit)
            except TimeoutError:
                raise Violation(f"shoal ({how}) did not end within {limit} s") from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.wait([talk])
        assert process.returncode is not None
        code = process.returncode
        sent = self.server.total - before
        await asyncio.sleep(0.02)  # the server sees whatever the dead process had sent
        killed = code == -signal.SIGKILL
        return _Ended(code, out, err.decode(errors="replace"), killed, how, sent)

    async def _kill_later(
        self,
        shot: _Shot,
        process: asyncio.subprocess.Process,
        talk: asyncio.Task[tuple[bytes, bytes]],
        spawned: float,
    ) -> str:
        if shot.mode == "early":
            delay = shot.delay * self._startup_s
            await asyncio.wait([talk], timeout=delay)
            how = f" early +{delay:.3f}s"
        elif shot.mode == "journal":
            # Just after the journal is opened: its schema, the output's repair, the first
            # batches of input; the run's first requests at the latest.
            opened = await self._journal_opened(process, talk, spawned)
            await asyncio.wait([talk], timeout=shot.delay)
            how = f" journal opened +{opened:.3f}s, then +{shot.delay:.3f}s"
        else:
            arrived = asyncio.create_task(self.server.arrived.wait())
            try:
                await asyncio.wait(
                    [talk, arrived],
                    timeout=self.settings.run_limit_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                arrived.cancel()
                await asyncio.wait([arrived])
            first = time.monotonic() - spawned
            self._startup_s = 0.7 * self._startup_s + 0.3 * first
            await asyncio.wait([talk], timeout=shot.delay)
            how = f" first request +{first:.3f}s, then +{shot.delay:.3f}s"
        if not talk.done():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        return how

    async def _journal_opened(
        self,
        process: asyncio.subprocess.Process,
        talk: asyncio.Task[tuple[bytes, bytes]],
        spawned: float,
    ) -> float:
        """Wait until the process holds the journal's lock file open (seen in ``/proc``;
        elsewhere, wait most of the usual start-up time); return the seconds since spawn."""
        lock = self._lock_path
        descriptors = f"/proc/{process.pid}/fd"
        if not _PROC:
            await asyncio.wait([talk], timeout=0.9 * self._startup_s)
            return time.monotonic() - spawned
        give_up = spawned + self.settings.run_limit_s
        while not talk.done() and time.monotonic() < give_up:
            if _holds_open(descriptors, lock):
                break
            await asyncio.sleep(0.001)
        return time.monotonic() - spawned

    # -- checks ----------------------------------------------------------------------------------

    def _after_kill(self, ended: _Ended, before: Counter[str]) -> None:
        where = f"kill {self.report.kills} ({ended.how})"
        view = read_journal(self.journal)
        output = self._output()
        check_state(view, output, self.plan, where)
        previous = self._last_view
        check(
            view.records[: len(previous.records)] == previous.records,
            f"{where}: records committed before kill {self.report.kills - 1} changed or vanished",
        )
        for name in ("input_items", "input_offset", "admitted"):
            check(
                int(view.meta.get(name, 0)) >= int(previous.meta.get(name, 0)),
                f"{where}: the journal's {name} went back from {previous.meta.get(name)} "
                f"to {view.meta.get(name)}",
            )
        self._last_view = view
        self.report.early_kills += ended.sent == 0
        final = view.final_urls()
        new = 0
        for url in final:
            if url not in self.frozen:
                seen = self.server.hits[hit_key(url)]
                check(seen >= 1, f"{where}: {url} is final but the server never saw it")
                self.frozen[url] = (seen, self.report.kills)
                new += 1
        total = self.plan.records
        done = len(view.records)
        self.report.partial_kills += 0 < done < total
        # This run's requests that the kill left without a committed result: the next runs
        # send them again. "Plain" ones are single-attempt 200s, not retried failures.
        during = self.server.hits - before
        lost = [url for url in self.plan.expected if during[hit_key(url)] and url not in final]
        plain = sum(1 for url in lost if "/ok/" in url)
        self.report.lost_max = max(self.report.lost_max, len(lost))
        self.report.plain_lost_max = max(self.report.plain_lost_max, plain)
        tear = self._tear(view, output)
        if self.settings.warc:
            tear += self._tear_archive(view, where)
        earlier, total_kills = self._numbering
        line = (
            f"kill {earlier + self.report.kills:>3}/{total_kills} {ended.how}: "
            f"{ended.sent} sent, {done}/{total} final (+{new} URLs), "
            f"{len(view.requests)} admitted, "
            f"{len(lost)} of its requests lost ({plain} plain, -c {self.settings.concurrency}), "
            f"output {len(output)} B "
            f"(mark {view.mark_position} B, {view.mark_done_seq} records){tear}"
        )
        self.report.kill_lines.append(line)
        self.say(line)

    def _tear(self, view: JournalView, output: bytes) -> str:
        """Sometimes leave the output as a kill inside its ``write`` would: cut within the
        bytes past the mark, or ending in a part of the next record after the mark."""
        rng = self._tear_rng
        # The first kill that can leave a torn output does; later ones at random.
        if rng.random() >= self.settings.tear and self.report.tears:
            return ""
        position = view.mark_position
        if len(output) > position + 1:
            cut = rng.randrange(position + 1, len(output))
            with self.output.open("r+b") as file:
                file.truncate(cut)
            self.report.tears += 1
            return f", torn: cut {len(output) - cut} B off the end"
        after = view.lines(view.mark_done_seq)
        if len(output) == position and len(after) > 1:
            piece = after[: rng.randrange(1, after.index(b"\n"))]
            with self.output.open("ab") as file:
                file.write(piece)
            self.report.tears += 1
            return f", torn: {len(piece)} B of the next record appended"
        return ""

    def _tear_archive(self, view: JournalView, where: str) -> str:
        """Check that the archive holds at least what the journal committed of it; then
        sometimes leave its last file ending in a part of a record, as a kill inside a
        write would."""
        positions = orjson.loads(view.meta.get("mark_positions", "{}"))
        if "warc.file" not in positions:
            return ""
        path = archive_file(self.archive, positions["warc.file"])
        size = path.stat().st_size if path.exists() else 0
        check(
            size >= positions["warc.offset"],
            f"{where}: {path.name} holds {size} B, less than the {positions['warc.offset']} B "
            "the journal committed",
        )
        if self._tear_rng.random() >= self.settings.tear:
            return ""
        last = max(self.archive.parent.glob(self.archive.name + "-*.warc.gz"))
        piece = b"\x1f\x8b\x08\x00" + self._tear_rng.randbytes(self._tear_rng.randrange(1, 300))
        with last.open("ab") as file:
            file.write(piece)
        return f", archive torn: {len(piece)} B appended to {last.name}"

    def _output(self) -> bytes:
        """The output file's content (empty when no run got as far as creating it)."""
        return self.output.read_bytes() if self.output.exists() else b""

    def _check_complete_job(self, ended: _Ended, before: Counter[str], what: str) -> JournalView:
        """A run that ended on its own: its exit status, the complete job it must leave, and
        what it sent. A violation carries the end of the run's stderr."""
        self._check_completed(ended, what)
        view = read_journal(self.journal)
        try:
            check_final(view, self._output(), self.plan, self.server.hits)
            self._check_frozen(f"after {what}")
            self._check_run_hits(before, view, what)
        except Violation as violation:
            raise Violation(f"{what}: {violation}\n{what} said: {ended.stderr[-3000:]}") from None
        return view

    def _check_run_hits(self, before: Counter[str], view: JournalView, what: str) -> None:
        """A run that was not killed sends each request it makes final exactly as often as
        its record's attempts say, less the attempts the journal held for it when the run
        began (made by earlier runs), and nothing else: no request final before it."""
        during = self.server.hits - before
        made_final: dict[str, tuple[dict[str, Any], int]] = {}
        for _, seq, line in view.records[len(self._last_view.records) :]:
            record = orjson.loads(line)
            if record["line"] not in self.plan.malformed:
                made_final[hit_key(record["url"])] = (record, seq)
        again = sorted(set(during) - set(made_final))
        check(not again, f"{what} sent requests that were already final: {again[:3]}")
        for key, (record, seq) in made_final.items():
            earlier = self._last_view.attempts.get(seq, 0)
            attempts = record["attempts"] - earlier
            check(
                during[key] == attempts,
                f"{what} sent {record['url']} {during[key]} times for {attempts} attempts "
                f"({record['attempts']} recorded, {earlier} made by earlier runs)",
            )
        self._last_view = view

    def _check_frozen(self, where: str) -> None:
        for url, (seen, kill) in self.frozen.items():
            now = self.server.hits[hit_key(url)]
            check(
                now == seen,
                f"{where}: {url} was final in the journal at kill {kill} (server hits {seen}) "
                f"but was fetched again (hits now {now})",
            )

    def _check_completed(self, ended: _Ended, what: str) -> None:
        expected = 1 if self.plan.failures else 0
        check(
            ended.code == expected,
            f"{what} ({ended.how}) exited {ended.code}, expected {expected}: {ended.stderr}",
        )
        check(not ended.stdout, f"{what} wrote to stdout: {ended.stdout[:200]!r}")
