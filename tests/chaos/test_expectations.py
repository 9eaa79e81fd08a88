"""The chaos oracle (``expectations.py``) catches what it is there to catch.

A real run feeds it once for the module: the engine over a small :class:`ChaosServer` mix
(successes, retried 503s, resets before the headers, 404s, a refused host that is given
up), its records as the harness reads them (``Result.to_record()``), and ``shoal fetch``
over the same server for a JSONL output file. Those pass every check; then each test hands
the checker a copy with one wrong outcome -- a duplicate, a missing record, a wrong error
kind or status, one attempt too many (in a record, or at the server), a torn line, a
record for a request never given -- and requires the complaint.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shoal import Engine, ErrorKind, Network, StaticResolver, Statistics
from tests.chaos.chaos_server import Chaos, ChaosServer, Fault
from tests.chaos.expectations import Checker, Problems, index_of, read_output
from tests.chaos.harness import RESOLVE, ChaosConfig, loose_rules
from tests.chaos.test_chaos import cli_arguments
from tests.command import environment
from tests.command import shoal as run_shoal

SEED = 2929
COUNT = 60
MIX = {
    Fault.OK: 4,
    Fault.STATUS_503: 2,
    Fault.RESET_BEFORE_HEADERS: 2,
    Fault.NOT_FOUND: 1,
    Fault.REFUSED: 1,
}
CONFIG = ChaosConfig()
Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Run:
    """One real run: the (stopped) server with its counts, the records, the statistics, and
    the output of ``shoal fetch`` over the same requests on a second server."""

    server: ChaosServer
    records: list[Record]
    statistics: Statistics
    cli_server: ChaosServer
    output: bytes


async def _run(folder: Path) -> Run:
    engine = Engine(
        network=Network(resolver=StaticResolver(RESOLVE)),
        limits=CONFIG.limits,
        timeouts=CONFIG.timeouts,
        retry=CONFIG.retry,
        politeness=CONFIG.politeness,
    )
    async with (
        ChaosServer(Chaos(SEED, MIX)) as server,
        engine,
        engine.stream(server.urls(COUNT)) as results,
    ):
        records = [result.to_record() async for result in results]
    urls, output = folder / "urls.txt", folder / "out.jsonl"
    async with ChaosServer(Chaos(SEED, MIX)) as cli_server:
        urls.write_text("".join(f"{url}\n" for url in cli_server.urls(COUNT)))
        done = await run_shoal(*cli_arguments(CONFIG, urls, output), within_s=60, env=environment())
    assert done.code == 1, done.stderr  # finished, some requests failed (refused, reset)
    return Run(server, records, engine.statistics(), cli_server, output.read_bytes())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The real run, in a thread of its own (apart from the tests' event loops)."""
    folder = tmp_path_factory.mktemp("chaos-run")
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(_run(folder))).result()


def check(server: ChaosServer, records: list[Record], count: int = COUNT) -> Problems:
    checker = Checker(
        server,
        CONFIG.settings,
        loose=loose_rules(CONFIG.politeness),
        max_elapsed_ms=CONFIG.max_elapsed_ms(),
    )
    for record in records:
        checker.add(record)
    return checker.finish(count)


def first(run: Run, fault: Fault, test: Callable[[Record], bool] = lambda _: True) -> int:
    """The position in ``run.records`` of the first record of ``fault`` that passes ``test``."""
    return next(
        at
        for at, record in enumerate(run.records)
        if run.server.chaos.plan(index_of(record["url"])).fault is fault and test(record)
    )


def changed(records: list[Record], at: int, **fields: Any) -> list[Record]:
    """A copy of ``records`` with record ``at`` changed."""
    copied = [dict(record) for record in records]
    copied[at].update(fields)
    return copied


def _given_up(record: Record) -> bool:
    return bool(record["attempts"] > 0)


# -- the real run passes -----------------------------------------------------------------------


def test_the_real_run_passes_every_check(run: Run) -> None:
    checker = Checker(run.server, CONFIG.settings, loose=loose_rules(CONFIG.politeness))
    for record in run.records:
        checker.add(record)
    assert not checker.finish(COUNT), checker.problems.report()
    checker.check_statistics(run.statistics)
    assert not checker.problems, checker.problems.report()
    # It holds what the faults below corrupt.
    assert set(checker.faults) == set(MIX)
    assert checker.tally.retries > 0 and checker.tally.failed > 0
    problems = Problems()
    records = read_output(run.output, problems)
    assert not problems and len(records) == COUNT
    assert not check(run.cli_server, records), check(run.cli_server, records).report()


# -- wrong records -----------------------------------------------------------------------------


def _wrong_kind(run: Run) -> list[Record]:
    at = first(run, Fault.RESET_BEFORE_HEADERS, lambda r: r["error"] is not None)
    error = {**run.records[at]["error"], "kind": ErrorKind.TIMEOUT.value}
    return changed(run.records, at, error=error)


def _no_error(run: Run) -> list[Record]:
    at = first(run, Fault.RESET_BEFORE_HEADERS, lambda r: r["error"] is not None)
    return changed(run.records, at, error=None)


def _wrong_status(run: Run) -> list[Record]:
    at = first(run, Fault.STATUS_503, lambda r: r["status"] == 503)
    return changed(run.records, at, status=502)


def _attempt_too_many(run: Run) -> list[Record]:
    at = first(run, Fault.STATUS_503)
    return changed(run.records, at, attempts=run.records[at]["attempts"] + 1)


def _given_up_attempt_too_many(run: Run) -> list[Record]:
    """A refused host's request, checked by the given-up rule, one attempt past its plan."""
    at = first(run, Fault.REFUSED, _given_up)
    return changed(run.records, at, attempts=CONFIG.retry.retries + 2)


def _attempt_too_few(run: Run) -> list[Record]:
    at = first(run, Fault.STATUS_503, lambda r: r["attempts"] > 1)
    return changed(run.records, at, attempts=run.records[at]["attempts"] - 1)


def _duplicate(run: Run) -> list[Record]:
    return [*run.records, dict(run.records[3])]


def _missing(run: Run) -> list[Record]:
    return run.records[:3] + run.records[4:]


def _beyond_the_input(run: Run) -> list[Record]:
    """A record for request ``COUNT``, one more than the run was given."""
    extra = dict(run.records[0])
    extra.update(url=run.server.url(COUNT), line=COUNT + 1)
    return [*run.records, extra]


def _another_host(run: Run) -> list[Record]:
    """The record of a request that failed before any response (no final URL to compare)
    names a URL on a host the input never had."""
    at = first(run, Fault.RESET_BEFORE_HEADERS, lambda r: r["final_url"] is None)
    url = run.records[at]["url"].replace("://h", "://elsewhere-h")
    return changed(run.records, at, url=url)


def _not_a_chaos_url(run: Run) -> list[Record]:
    return [*run.records, {**run.records[0], "url": "http://h0.test/robots.txt"}]


#: Each wrong outcome, and where the checker must report it.
WRONG: dict[str, tuple[Callable[[Run], list[Record]], str]] = {
    "a wrong error kind": (_wrong_kind, Fault.RESET_BEFORE_HEADERS.value),
    "a failure recorded as a success": (_no_error, Fault.RESET_BEFORE_HEADERS.value),
    "a wrong status": (_wrong_status, Fault.STATUS_503.value),
    "one attempt too many": (_attempt_too_many, Fault.STATUS_503.value),
    "one attempt too many on a host given up": (
        _given_up_attempt_too_many,
        f"{Fault.REFUSED.value} (host given up)",
    ),
    "one attempt too few": (_attempt_too_few, Fault.STATUS_503.value),
    "a duplicate": (_duplicate, "duplicates"),
    "a missing record": (_missing, "missing"),
    "a record beyond the input": (_beyond_the_input, "count"),
    "a record for a host never given": (_another_host, "unknown"),
    "a record for a URL that is no request": (_not_a_chaos_url, "unknown"),
}


@pytest.mark.parametrize("wrong", sorted(WRONG))
def test_a_wrong_record_is_a_problem(run: Run, wrong: str) -> None:
    make, where = WRONG[wrong]
    problems = check(run.server, make(run))
    assert problems, wrong
    assert where in problems.examples, problems.report()


def test_a_missing_record_fails_the_statistics_too(run: Run) -> None:
    checker = Checker(run.server, CONFIG.settings, loose=loose_rules(CONFIG.politeness))
    for record in _missing(run):
        checker.add(record)
    checker.check_statistics(run.statistics)
    assert "statistics" in checker.problems.examples, checker.problems.report()


def test_a_request_sent_once_too_often_is_a_problem(run: Run) -> None:
    """The server counted one request more than the records' attempts explain."""
    server = copy.copy(run.server)
    server.hits = Counter(run.server.hits)
    at = first(run, Fault.OK)
    index = index_of(run.records[at]["url"])
    server.hits[(server.chaos.host(index), f"/c/{index}")] += 1
    problems = check(server, run.records)
    assert f"server: {Fault.OK.value}" in problems.examples, problems.report()


# -- a torn output -----------------------------------------------------------------------------


def _lines(output: bytes) -> list[bytes]:
    return output.splitlines(keepends=True)


TORN: dict[str, Callable[[bytes], bytes]] = {
    "the last newline missing": lambda out: out[:-1],
    "a torn last line": lambda out: out[: -len(_lines(out)[-1]) // 2],
    "a torn line inside": lambda out: b"".join(
        [*_lines(out)[:7], _lines(out)[7][:40], *_lines(out)[8:]]
    ),
    "two records on one line": lambda out: b"".join(
        [*_lines(out)[:7], _lines(out)[7].rstrip(b"\n"), *_lines(out)[8:]]
    ),
    "a line that is no record": lambda out: out + b"[]\n",
}


@pytest.mark.parametrize("torn", sorted(TORN))
def test_a_torn_output_is_a_problem(run: Run, torn: str) -> None:
    problems = Problems()
    records = read_output(TORN[torn](run.output), problems)
    assert "torn" in problems.examples, problems.report()
    # What remains is checked as well: a torn record is a missing one.
    if len(records) < COUNT:
        assert "missing" in check(run.cli_server, records).examples
