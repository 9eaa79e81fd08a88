"""The crash oracle (``tests/crashloop.py``) catches what it is there to catch.

A real job runs once for the module: a generated input (duplicates, malformed lines,
flaky URLs, failures) fetched to completion by ``shoal fetch`` against a
:class:`CrashServer`, through :class:`CrashRound` itself. Its journal and output pass the
checks; then each test hands the checks a copy with one fault of the kind a broken resume
would leave -- a duplicate, a missing record, a wrong status or error kind, one attempt
too many, a torn line, a record for an input never given -- and requires a
:class:`Violation`.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.web_request import Request

from tests.crashloop import (
    CrashRound,
    CrashServer,
    JournalView,
    Settings,
    Violation,
    check_final,
    check_state,
    read_journal,
)

SEED = 29
#: A small job; no kills: the round is one run to completion and one run that is a no-op.
SETTINGS = Settings(urls=60, kills=0, concurrency=8, run_limit_s=60.0)


@dataclass(frozen=True, slots=True)
class Job:
    """A completed job: its round (plan and files) and the server's counts at the end."""

    crash: CrashRound
    hits: Counter[str]

    @property
    def view(self) -> JournalView:
        return read_journal(self.crash.journal)

    @property
    def output(self) -> bytes:
        return self.crash.output.read_bytes()


def run_in_thread(work: Callable[[], Any]) -> Any:
    """Run ``asyncio.run(work())`` in a thread of its own: the module's fixtures share one
    real job, run apart from the tests' event loops."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


async def complete_round(
    folder: Path, server: CrashServer | None = None
) -> tuple[CrashRound, Counter[str]]:
    server = server or CrashServer()
    await server.start()
    try:
        crash = CrashRound(server, folder, SETTINGS, random.Random(SEED))
        await crash.run()
    finally:
        await server.stop()
    return crash, Counter(server.hits)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    folder = tmp_path_factory.mktemp("crash-job")
    crash, hits = run_in_thread(lambda: complete_round(folder))
    return Job(crash, hits)


# -- changing a copy ---------------------------------------------------------------------------


@dataclass(slots=True)
class Copy:
    """A writable copy of the job's journal, and the output that goes with it."""

    journal: Path
    output: bytes

    @property
    def view(self) -> JournalView:
        return read_journal(self.journal)

    def edit(self, change: Callable[[sqlite3.Connection], None]) -> None:
        with sqlite3.connect(self.journal) as db:
            change(db)
        db.close()

    def agree(self) -> None:
        """Make the output exactly the journal's records, the mark at their end, as a clean
        finish leaves them: a fault in the records is then the only fault."""
        self.output = self.view.lines()
        position = orjson.dumps({"jsonl": len(self.output)})

        def mark(db: sqlite3.Connection) -> None:
            (last,) = db.execute("SELECT count(*) FROM records").fetchone()
            db.execute("UPDATE meta SET value = ? WHERE name = 'mark_done_seq'", (last,))
            db.execute("UPDATE meta SET value = ? WHERE name = 'mark_positions'", (position,))

        self.edit(mark)


@pytest.fixture
def copy(job: Job, tmp_path: Path) -> Copy:
    journal = tmp_path / "job.journal"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{job.crash.journal}{suffix}")
        if source.exists():
            shutil.copyfile(source, f"{journal}{suffix}")
    return Copy(journal, job.output)


def records(db: sqlite3.Connection) -> Iterator[tuple[int, int, dict[str, Any]]]:
    for done_seq, seq, record in db.execute("SELECT done_seq, seq, record FROM records"):
        yield done_seq, seq, orjson.loads(record)


def rewrite(db: sqlite3.Connection, done_seq: int, record: dict[str, Any]) -> None:
    db.execute("UPDATE records SET record = ? WHERE done_seq = ?", (orjson.dumps(record), done_seq))


def first_record(db: sqlite3.Connection, test: Callable[[dict[str, Any]], bool]) -> int:
    """The ``done_seq`` of the first record that passes ``test``."""
    return next(done_seq for done_seq, _, record in records(db) if test(record))


def fetched(record: dict[str, Any]) -> bool:
    """A record of a request (not of a malformed line) that the server answered."""
    return record["attempts"] > 0 and record["status"] is not None


# -- the real job passes -----------------------------------------------------------------------


def test_the_real_job_passes_every_check(job: Job, copy: Copy) -> None:
    plan = job.crash.plan
    # The job holds what the faults below corrupt: failures, retries, malformed lines.
    view = job.view
    final = [orjson.loads(line) for _, _, line in view.records]
    assert {r["error"]["kind"] for r in final if r["error"]} >= {"http_status", "invalid_url"}
    assert any(r["attempts"] > 1 for r in final)
    assert plan.malformed and plan.duplicates
    check_state(view, job.output, plan, "the real job")
    check_final(view, job.output, plan, job.hits)
    copy.agree()  # the copy, made to agree with itself, is the job unchanged
    assert copy.output == job.output
    check_final(copy.view, copy.output, plan, job.hits)


# -- faults in the output ----------------------------------------------------------------------


def _lines(output: bytes) -> list[bytes]:
    return output.splitlines(keepends=True)


OUTPUT_FAULTS: dict[str, Callable[[bytes], bytes]] = {
    "a duplicate line": lambda out: b"".join([*_lines(out), _lines(out)[7]]),
    "a missing line": lambda out: b"".join(_lines(out)[:7] + _lines(out)[8:]),
    "the last newline missing": lambda out: out[:-1],
    "a torn last line": lambda out: out[: -len(_lines(out)[-1]) // 2],
    "a torn line inside": lambda out: b"".join(
        [*_lines(out)[:7], _lines(out)[7][:40], *_lines(out)[8:]]
    ),
    "a record for a URL never given": lambda out: (
        out
        + orjson.dumps({**orjson.loads(_lines(out)[-1]), "url": "http://h0.test:1/never"})
        + b"\n"
    ),
}


@pytest.mark.parametrize("fault", sorted(OUTPUT_FAULTS))
def test_a_fault_in_the_output_of_a_complete_job_is_caught(job: Job, fault: str) -> None:
    output = OUTPUT_FAULTS[fault](job.output)
    assert output != job.output
    with pytest.raises(Violation, match="complete job"):
        check_final(job.view, output, job.crash.plan, job.hits)


# -- faults in the journal (the output agreeing with it) ----------------------------------------


def _duplicate(db: sqlite3.Connection) -> None:
    (last,) = db.execute("SELECT max(done_seq) FROM records").fetchone()
    db.execute(
        "INSERT INTO records (done_seq, seq, failed, record) "
        "SELECT ?, seq, failed, record FROM records WHERE done_seq = 5",
        (last + 1,),
    )


def _missing_record(db: sqlite3.Connection) -> None:
    (last,) = db.execute("SELECT max(done_seq) FROM records").fetchone()
    db.execute("DELETE FROM records WHERE done_seq = ?", (last,))


def _missing_request(db: sqlite3.Connection) -> None:
    """A request never admitted at all: gone from the requests, the records and the
    counts, as if its input line had been lost."""
    (last, seq, failed) = db.execute(
        "SELECT done_seq, seq, failed FROM records ORDER BY done_seq DESC LIMIT 1"
    ).fetchone()
    db.execute("DELETE FROM records WHERE done_seq = ?", (last,))
    db.execute("DELETE FROM requests WHERE seq = ?", (seq,))
    for name in ("admitted", "failed" if failed else "ok"):
        db.execute("UPDATE meta SET value = value - 1 WHERE name = ?", (name,))


def _changed(test: Callable[[dict[str, Any]], bool], **fields: Any) -> Callable[..., None]:
    def change(db: sqlite3.Connection) -> None:
        done_seq = first_record(db, test)
        record = dict(next(r for d, _, r in records(db) if d == done_seq))
        for name, value in fields.items():
            record[name] = value(record) if callable(value) else value
        rewrite(db, done_seq, record)

    return change


def _wrong_kind(record: dict[str, Any]) -> dict[str, Any]:
    return {**record["error"], "kind": "timeout"}


def _never_given(db: sqlite3.Connection) -> None:
    """A request (and its record) for a URL the input never held."""
    done_seq = first_record(db, fetched)
    record = next(r for d, _, r in records(db) if d == done_seq)
    (seq,) = db.execute("SELECT seq FROM records WHERE done_seq = ?", (done_seq,)).fetchone()
    url = record["url"].replace("/ok/", "/never/").replace("/flaky/", "/never/")
    url = url.replace("/status/", "/never/").replace("/drop/", "/never/")
    rewrite(db, done_seq, {**record, "url": url})
    db.execute("UPDATE requests SET spec = ? WHERE seq = ?", (url.encode(), seq))


JOURNAL_FAULTS: dict[str, tuple[Callable[[sqlite3.Connection], None], str]] = {
    "a duplicate record": (_duplicate, "more than one record"),
    "a final request without its record": (_missing_record, "without a record"),
    "a request missing altogether": (_missing_request, "expected"),
    "a wrong error kind": (
        _changed(lambda r: r["error"] is not None and r["attempts"] > 0, error=_wrong_kind),
        "ended as",
    ),
    "a wrong status": (
        _changed(lambda r: r["status"] == 200, status=203),
        "ended as",
    ),
    "a failure recorded as a success": (
        _changed(lambda r: r["status"] == 404, status=200, error=None),
        "ended as",
    ),
    "one attempt too many": (
        _changed(fetched, attempts=lambda r: r["attempts"] + 1),
        "attempts but the server saw it",
    ),
    "a record for a URL never given": (_never_given, "not in the input"),
}


@pytest.mark.parametrize("fault", sorted(JOURNAL_FAULTS))
def test_a_fault_in_the_journal_is_caught(job: Job, copy: Copy, fault: str) -> None:
    change, complaint = JOURNAL_FAULTS[fault]
    copy.edit(change)
    copy.agree()
    assert copy.output != job.output or copy.view.requests != job.view.requests
    with pytest.raises(Violation, match=complaint):
        check_final(copy.view, copy.output, job.crash.plan, job.hits)


# -- torn output after a kill ------------------------------------------------------------------


def _mark_at(copy: Copy, done: int) -> int:
    """Move the sink mark back to record ``done`` (as a kill before the output's flush
    leaves it); return its position in the output."""
    position = len(copy.view.lines(0, done))

    def mark(db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = ? WHERE name = 'mark_done_seq'", (done,))
        db.execute(
            "UPDATE meta SET value = ? WHERE name = 'mark_positions'",
            (orjson.dumps({"jsonl": position}),),
        )

    copy.edit(mark)
    return position


def test_what_a_kill_leaves_past_the_mark_passes(job: Job, copy: Copy) -> None:
    """The crash model itself: past the mark, the output may end anywhere in the records
    committed after it."""
    position = _mark_at(copy, 20)
    view = copy.view
    for cut in (position, position + 1, position + 300, len(job.output) - 1):
        check_state(view, job.output[:cut], job.crash.plan, "after a kill")


@pytest.mark.parametrize(
    "fault",
    ["a torn line that is no record", "cut before the mark", "a duplicate past the mark"],
)
def test_a_torn_output_after_a_kill_is_caught(job: Job, copy: Copy, fault: str) -> None:
    position = _mark_at(copy, 20)
    lines = _lines(job.output)
    output = {
        "a torn line that is no record": job.output[:position] + b'{"url":"http://h0.te',
        "cut before the mark": job.output[: position - 10],
        "a duplicate past the mark": job.output[:position] + lines[19] + lines[20][:30],
    }[fault]
    with pytest.raises(Violation, match="mark"):
        check_state(copy.view, output, job.crash.plan, "after a kill")


# -- the server seeing a request one time too many ---------------------------------------------


class EchoingServer(CrashServer):
    """Counts the first request for an ``/ok/`` URL twice, as a client that sent it twice
    within one attempt would."""

    def __init__(self) -> None:
        super().__init__()
        self.echoed: str | None = None

    def _count(self, request: Request) -> int:
        if self.echoed is None and request.path.startswith("/ok/"):
            self.echoed = f"{request.host}{request.rel_url}"
            self.hits[self.echoed] += 1
        return super()._count(request)


async def test_a_request_sent_once_too_often_fails_the_round(tmp_path: Path) -> None:
    server = EchoingServer()
    with pytest.raises(Violation, match=r"sent .* 2 times for 1 attempts"):
        await complete_round(tmp_path, server)
    assert server.echoed is not None and server.hits[server.echoed] == 2
