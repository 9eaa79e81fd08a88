"""``shoal.map`` and ``Engine.map``: any coroutine as the task, on the engine's workers,
retries, journal and counts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest

import shoal
from shoal import Engine, Limits, Outcome, Politeness, Rejected, RetryPolicy
from shoal.scheduling import Shard
from tests.conftest import killed_after
from tests.engine import map_job
from tests.helpers import assert_spaced

FAST_RETRY = RetryPolicy(retries=2, backoff_base_s=0.001, backoff_max_s=0.002)


class Gauge:
    """Counts the calls running at once, in all and per group, from inside the coroutine."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.total = self.most_total = 0

    @contextlib.contextmanager
    def held(self, group: str) -> Iterator[None]:
        self.now[group] += 1
        self.total += 1
        self.most[group] = max(self.most[group], self.now[group])
        self.most_total = max(self.most_total, self.total)
        try:
            yield
        finally:
            self.now[group] -= 1
            self.total -= 1


async def double(item: int) -> int:
    await asyncio.sleep(0)
    return item * 2


def by_key(outcomes: list[Outcome]) -> dict[str, Outcome]:
    keyed = {outcome.key: outcome for outcome in outcomes}
    assert len(keyed) == len(outcomes), "an item's outcome came twice"
    return keyed


def test_values_come_back_with_their_items_keys_and_timings() -> None:
    outcomes = by_key(list(shoal.map(double, range(50))))
    assert set(outcomes) == {str(n) for n in range(50)}
    for n in range(50):
        outcome = outcomes[str(n)]
        assert outcome.ok and outcome.item == n and outcome.value == 2 * n
        assert outcome.attempts == 1 and outcome.line == n + 1 and outcome.group is None
        assert outcome.started_at is not None and outcome.elapsed_ms is not None


def test_exceptions_are_data_and_only_the_named_ones_are_retried() -> None:
    calls: Counter[int] = Counter()

    async def work(item: int) -> int:
        calls[item] += 1
        if item == 1:
            raise ValueError("not retried")
        if item == 2:
            raise ConnectionError("retried")
        if item == 3:
            raise Rejected("busy", retry=True)
        if item == 4:
            raise Rejected("refused")
        if item == 5 and calls[item] == 1:
            raise ConnectionError("once")
        if item == 6:
            raise asyncio.CancelledError  # its own, not the run cancelling it
        return item

    retry = RetryPolicy(
        retries=2, backoff_base_s=0.001, backoff_max_s=0.002, on_exceptions=(ConnectionError,)
    )
    outcomes = by_key(list(shoal.map(work, range(7), retry=retry)))
    kinds = {k: o.error and (o.error.kind.value, o.error.message) for k, o in outcomes.items()}
    assert kinds == {
        "0": None,
        "1": ("task", "ValueError: not retried"),
        "2": ("task", "ConnectionError: retried"),
        "3": ("task", "busy"),
        "4": ("task", "refused"),
        "5": None,
        "6": ("task", "CancelledError: "),
    }
    assert calls == {0: 1, 1: 1, 2: 3, 3: 3, 4: 1, 5: 2, 6: 1}
    assert {key: o.attempts for key, o in outcomes.items()} == {
        "0": 1, "1": 1, "2": 3, "3": 3, "4": 1, "5": 2, "6": 1
    }  # fmt: skip
    assert outcomes["5"].value == 5


def test_a_call_past_its_timeout_fails_as_a_timeout_and_is_retried() -> None:
    calls: Counter[int] = Counter()

    async def work(item: int) -> int:
        calls[item] += 1
        if item == 1:
            await asyncio.sleep(10)
        if item == 2:
            raise TimeoutError("the coroutine's own")  # not the call's timeout
        return item

    outcomes = by_key(list(shoal.map(work, range(3), timeout_s=0.05, retry=FAST_RETRY)))
    timed_out = outcomes["1"].error
    assert timed_out is not None and timed_out.kind.value == "timeout"
    assert timed_out.message == "call took longer than 0.05 s"
    assert outcomes["1"].attempts == 3 and calls[1] == 3  # timeouts retry by default
    own = outcomes["2"].error
    assert own is not None and (own.kind.value, own.message) == (
        "task",
        "TimeoutError: the coroutine's own",
    )
    assert calls[2] == 1


def test_a_late_call_that_swallows_its_cancellation_still_times_out() -> None:
    async def work(item: int) -> int:
        if item in (1, 2):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if item == 2:
                    raise RuntimeError("cleaned up") from None
            return -1  # item 1 swallows it
        await asyncio.sleep(0.001)
        return item

    outcomes = by_key(list(shoal.map(work, range(40), timeout_s=0.05, retries=0)))
    late = {key: o.error.kind.value for key, o in outcomes.items() if o.error is not None}
    assert late == {"1": "timeout", "2": "timeout"}
    assert outcomes["1"].value is None
    assert all(outcomes[str(n)].value == n for n in range(3, 40))  # the workers go on


def test_what_cannot_be_keyed_or_recorded_fails_its_item_and_the_run_goes_on() -> None:
    async def work(item: Any) -> Any:
        return object() if item == "opaque" else item

    def key(item: Any) -> str:
        if item == "no key":
            raise KeyError("no key here")
        return str(item)

    items = [1, object(), "no key", "opaque", {"b": 1, "a": 2}, 2]
    outcomes = list(shoal.map(work, items, key=key))
    errors: dict[int | None, tuple[str, str] | None] = {
        o.line: None if o.error is None else (o.error.kind.value, o.error.message) for o in outcomes
    }
    assert errors[1] is None and errors[5] is None and errors[6] is None
    assert errors[2] is not None and errors[2][0] == "invalid_item"
    assert "not a JSON value" in errors[2][1]
    assert errors[3] == ("invalid_item", "item 3: KeyError: 'no key here'")
    assert errors[4] is not None and errors[4][0] == "task"
    assert errors[4][1].startswith("returned what is not JSON")
    assert len(outcomes) == len(items)


def test_items_are_deduplicated_by_their_key() -> None:
    calls: list[Any] = []

    async def work(item: Any) -> Any:
        calls.append(item)
        return item

    items = [{"a": 1, "b": 2}, {"b": 2, "a": 1}, 3, 3, "3"]
    outcomes = list(shoal.map(work, items))
    assert sorted(o.key for o in outcomes) == ['"3"', "3", '{"a":1,"b":2}']
    assert len(calls) == 3
    # A key of one's own: the first item of each key is the one called.
    same_id = [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}]
    outcomes = list(shoal.map(work, same_id, key=lambda item: item["id"]))
    assert [(o.key, o.value) for o in outcomes] == [("1", {"id": 1, "v": "a"})]


def test_per_group_caps_hold_and_no_group_runs_up_to_the_concurrency() -> None:
    gauge = Gauge()

    async def work(item: dict[str, Any]) -> None:
        with gauge.held(item["group"]):
            await asyncio.sleep(0.002)

    items = [{"n": n, "group": f"g{n % 4}"} for n in range(400)]
    outcomes = list(shoal.map(work, items, group=lambda i: i["group"], concurrency=12, per_group=2))
    assert len(outcomes) == 400 and all(o.ok for o in outcomes)
    assert {o.group for o in outcomes} == {"g0", "g1", "g2", "g3"}
    assert max(gauge.most.values()) == 2
    assert gauge.most_total == 8  # 4 groups of 2: below the concurrency

    ungrouped = Gauge()

    async def free(item: int) -> None:
        with ungrouped.held(""):
            await asyncio.sleep(0.002)

    assert len(list(shoal.map(free, range(400), concurrency=12, per_group=2))) == 400
    assert ungrouped.most_total == 12  # per_group bounds groups; without one, all may run


async def test_a_paced_group_is_spaced_by_its_rate() -> None:
    starts: list[float] = []

    async def work(item: int) -> None:
        starts.append(asyncio.get_running_loop().time())

    politeness = Politeness(hosts={"slow": shoal.HostPolicy(delay_s=0.02)})
    engine = Engine(politeness=politeness, limits=Limits(concurrency=8))
    async with engine, engine.map(work, range(5), group=lambda _: "slow") as outcomes:
        assert len([o async for o in outcomes]) == 5
    # Spacing is measured on the loop that paces the calls: a start stamped late may hand on
    # its lateness to the next (see HostControl.sent), which assert_spaced allows for.
    assert_spaced(starts, 0.02)


async def test_engine_map_streams_outcomes_and_counts_them() -> None:
    async def work(item: int) -> int:
        if item % 3 == 0:
            raise ValueError("three")
        return item

    async with Engine(retry=FAST_RETRY) as engine:
        async with engine.map(work, range(30)) as outcomes:
            seen = [outcome async for outcome in outcomes]
        stats = engine.statistics()
        assert len(seen) == stats.done == 30
        assert (stats.ok, stats.failed) == (20, 10)
        assert stats.by_error == {"task": 10} and stats.retries == 0
        assert stats.recent_errors[0].url.isdigit()  # the key stands for the URL
        # The same engine runs a second map (or a fetch) afterwards.
        async with engine.map(double, [1, 2]) as outcomes:
            assert sorted([o.value async for o in outcomes]) == [2, 4]


async def test_an_async_iterable_is_read_lazily() -> None:
    pulled = 0

    async def numbers() -> AsyncIterator[int]:
        nonlocal pulled
        for n in range(100_000):
            pulled += 1
            yield n

    engine = Engine(limits=Limits(concurrency=4))
    async with engine, engine.map(double, numbers()) as outcomes:
        async for _ in outcomes:
            break
    assert pulled < 10_000


async def test_map_refuses_one_string_and_a_bad_timeout() -> None:
    async with Engine() as engine:
        with pytest.raises(TypeError, match="not one string"):
            engine.map(double, "abc")
        with pytest.raises(shoal.ConfigError, match="timeout_s"):
            engine.map(double, [1], timeout_s=0)


def test_with_a_journal_a_stopped_map_resumes_and_records_each_item_once(tmp_path: Path) -> None:
    journal, output = str(tmp_path / "job.db"), str(tmp_path / "out.jsonl")
    calls: Counter[int] = Counter()

    async def work(item: int) -> int:
        calls[item] += 1
        await asyncio.sleep(0.001)
        return item

    first = shoal.map(work, range(2000), journal=journal, output=output, concurrency=8)
    for count, _ in enumerate(first):
        if count == 300:
            break
    first.close()
    final = _final_keys(Path(journal))
    assert len(final) > 300
    rest = list(shoal.map(work, range(2000), journal=journal, output=output, concurrency=8))
    lines = [orjson.loads(line) for line in Path(output).read_bytes().splitlines()]
    assert sorted(record["item"] for record in lines) == list(range(2000))
    assert len(rest) < 2000 - 300
    # Leaving early cancels the calls not committed yet: those alone run again.
    assert all(calls[int(key)] == 1 for key in final)
    assert {str(n) for n, count in calls.items() if count > 1}.isdisjoint(final)
    assert set(lines[0]) == {
        "key", "group", "line", "item", "value", "error", "attempts", "started_at", "elapsed_ms"
    }  # fmt: skip
    # Another function is another job: its journal is refused.

    async def other(item: int) -> int:
        return item

    with pytest.raises(shoal.JournalError, match="journal of another input"):
        list(shoal.map(other, range(3), journal=journal))


async def test_shards_split_the_items_and_each_group_cap_between_them() -> None:
    gauge = Gauge()

    async def work(item: dict[str, Any]) -> int:
        with gauge.held(item["group"]):
            await asyncio.sleep(0.001)
        return int(item["n"])

    items = [{"n": n, "group": f"g{n % 5}"} for n in range(600)]
    shards = [
        Engine(limits=Limits(concurrency=16, per_host=4), shard=Shard(index, 3, per_host=4))
        for index in range(3)
    ]

    async def run(engine: Engine) -> list[Outcome]:
        group = lambda item: item["group"]  # noqa: E731
        mapped = engine.map(work, items, key=lambda item: item["n"], group=group)
        async with engine, mapped as outcomes:
            return [outcome async for outcome in outcomes]

    parts = await asyncio.gather(*(run(engine) for engine in shards))
    keys = [outcome.key for part in parts for outcome in part]
    assert sorted(keys) == sorted(str(n) for n in range(600))
    assert all(len(part) > 100 for part in parts)
    # Three processes, one cap: a group's 4 are split between them, never exceeded.
    assert max(gauge.most.values()) == 4


def test_every_record_matches_the_outcome_schema(tmp_path: Path) -> None:
    schema = orjson.loads((Path(shoal.__file__).parent / "outcome.schema.json").read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    async def work(item: Any) -> Any:
        if item == "slow":
            await asyncio.sleep(1)
        if item == "bad":
            raise ValueError("bad")
        return {"echo": item}

    output = tmp_path / "out.jsonl"
    items = ["fine", "slow", "bad", object(), {"nested": [1, None]}]
    outcomes = list(
        shoal.map(work, items, group=str, timeout_s=0.02, retries=0, output=str(output))
    )
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert len(records) == len(outcomes) == 5
    kinds = sorted(record["error"]["kind"] if record["error"] else "ok" for record in records)
    assert kinds == ["invalid_item", "ok", "ok", "task", "timeout"]
    for record in records:
        validator.validate(record)
    assert records == [outcome.to_record() for outcome in outcomes]


# -- killed with SIGKILL and resumed ------------------------------------------------------------


def _final_keys(journal: Path) -> set[str]:
    """The keys the journal holds as final (read-only, while no run holds it)."""
    if not journal.exists():
        return set()
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT record FROM records").fetchall()
    except sqlite3.OperationalError:  # killed before the tables were made
        return set()
    finally:
        db.close()
    return {orjson.loads(record)["key"] for (record,) in rows}


def _calls(path: Path) -> list[tuple[int, str, int, int]]:
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        n, group, in_group, in_all = line.split()
        calls.append((int(n), group, int(in_group), int(in_all)))
    return calls


async def test_100k_items_killed_at_random_moments_end_each_once_within_their_caps(
    tmp_path: Path,
) -> None:
    count = 100_000
    journal, output, calls_path = tmp_path / "job.db", tmp_path / "out.jsonl", tmp_path / "calls"
    job = ("-m", "tests.engine.map_job", str(journal), str(output), str(calls_path), str(count))
    command = (sys.executable, *job)
    rng = random.Random(20261203)
    kills = 0
    #: Keys final at some kill, with how many calls each had had then.
    final_calls: dict[str, int] = {}
    for _ in range(6):
        process = await asyncio.create_subprocess_exec(*command, cwd=Path(__file__).parents[2])
        if not await killed_after(process, rng.uniform(0.5, 2.0)):
            break
        kills += 1
        per_key = Counter(str(n) for n, *_ in _calls(calls_path))
        for key in _final_keys(journal):
            final_calls.setdefault(key, per_key[key])
    assert kills >= 3, "the job ended before it could be killed: make it longer"
    assert 0 < len(_final_keys(journal)) < count
    if process.returncode == -signal.SIGKILL:  # the last round was killed too: finish it
        process = await asyncio.create_subprocess_exec(*command, cwd=Path(__file__).parents[2])
    assert await process.wait() == 0

    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert len(records) == count
    assert sorted(record["item"]["n"] for record in records) == list(range(count))
    calls = _calls(calls_path)
    per_key = Counter(str(n) for n, *_ in calls)
    for record in records:
        n = record["item"]["n"]
        kind, attempts = map_job.expected(n)
        assert (record["error"] and record["error"]["kind"]) == kind, record
        assert record["value"] == (None if kind else n * n), record
        # (An attempt a kill cut short was never journalled: it is made again, not counted.)
        assert record["attempts"] == attempts, record
    # Exactly once: a call never ran again for an item that was final at a kill.
    assert all(per_key[key] == seen for key, seen in final_calls.items())
    assert final_calls, "no item was final at any kill"
    # The caps held at every call, measured inside the coroutine, across every run.
    assert max(in_group for _, _, in_group, _ in calls) <= map_job.PER_GROUP
    assert max(in_all for *_, in_all in calls) <= map_job.CONCURRENCY
    # Retries as configured: each never-succeeding retried item was called once per attempt
    # it was granted, in all runs together (a killed attempt is made again, never more).
    for n in range(0, count, 13 * 7):
        kind, attempts = map_job.expected(n)
        assert per_key[str(n)] >= attempts
