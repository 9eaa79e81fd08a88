"""One job, many worker processes, over PostgreSQL: ``shoal fetch --store`` and
``shoal worker``, killed, stopped, joined mid-job, and the database restarted under them.

Each worker resolves the test hosts to a loopback address of its own, so the server knows
who sent each request (see :mod:`tests.owners_server`) and checks, from its side, that
each host's cap held and that no two workers ever sent to one host at the same time.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.cli.test_dashboard_cli import _dashboard_url, _post, _stats
from tests.command import environment, finish, shoal, start
from tests.helpers import read_records
from tests.owners_server import OwnersServer
from tests.postgres import Cluster, asyncpg, cluster, pg_dsn, wait_for

__all__ = ["cluster", "pg_dsn"]

#: Settings of every job here: short leases and attempts, so takeovers come quickly.
JOB = (
    "-c", "6", "--per-host", "2", "--timeout", "1.5", "--retries", "1", "--backoff", "0.05",
    "--lease-ttl", "1", "--progress", "off",
)  # fmt: skip


Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start shoal processes; whatever a failing test left running is killed."""
    started: list[asyncio.subprocess.Process] = []

    async def tracked(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        process = await start(*args, cwd=cwd, env=env)
        started.append(process)
        return process

    try:
        yield tracked
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
            await process.communicate()


@pytest.fixture
async def owners() -> Any:
    server = OwnersServer(workers=4)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def write_urls(
    path: Path, server: OwnersServer, hosts: int, each: int, delay_s: float
) -> list[str]:
    urls = [
        server.url(f"/work?s={delay_s}&n={n}", host=f"k{n % hosts}.test")
        for n in range(hosts * each)
    ]
    path.write_text("\n".join(urls) + "\n")
    return urls


def creator(
    inputs: Path, dsn: str, server: OwnersServer, *extra: str, job: str = "shared"
) -> tuple[str, ...]:
    """``shoal fetch`` on the shared job, as worker 0."""
    return ("fetch", str(inputs), "--store", dsn, "--job", job, *server.resolve(0), *JOB, *extra)


def joiner(dsn: str, server: OwnersServer, index: int, *extra: str) -> tuple[str, ...]:
    """``shoal worker`` on the shared job, as worker ``index``."""
    return (
        "worker", "--store", dsn, "--job", "shared", *server.resolve(index),
        "-c", "6", "--progress", "off", *extra,
    )  # fmt: skip


class Job:
    """What the database holds of the shared job."""

    def __init__(self, dsn: str, name: str = "shared") -> None:
        self.dsn = dsn
        self.name = name

    async def query(self, sql: str, *args: Any) -> list[Any]:
        connection = await asyncpg.connect(self.dsn)
        try:
            return list(await connection.fetch(sql, *args))
        except asyncpg.UndefinedTableError:
            return []  # no worker has made the schema yet
        finally:
            await connection.close()

    async def records(self) -> list[dict[str, Any]]:
        rows = await self.query(
            "SELECT r.record, r.worker FROM shoal_records AS r JOIN shoal_jobs AS j"
            " ON j.id = r.job_id WHERE j.name = $1 ORDER BY r.done_seq",
            self.name,
        )
        return [{**orjson.loads(record), "_worker": worker} for record, worker in rows]

    async def recorded_by(self, pid: int) -> int:
        rows = await self.query(
            "SELECT count(*) FROM shoal_records WHERE worker LIKE $1", f"%:{pid}:%"
        )
        return int(rows[0][0]) if rows else 0

    async def exists(self) -> bool:
        return bool(await self.query("SELECT 1 FROM shoal_jobs WHERE name = $1", self.name))

    async def wait_made(self) -> None:
        """Wait until the creating run has made the job (a worker needs it)."""
        await wait_for(self.exists, 30, "the job")

    async def admitted(self) -> int:
        rows = await self.query("SELECT count(*) FROM shoal_requests")
        return int(rows[0][0])


async def workers_up(job: Job, count: int) -> bool:
    """Whether ``count`` workers are on the job (running, not stopped)."""
    rows = await job.query("SELECT count(*) FROM shoal_workers WHERE NOT stopped")
    return bool(rows) and int(rows[0][0]) == count


def owner_of(worker: str, pids: dict[int, str]) -> str:
    """The loopback address of the process a record's worker id names."""
    return pids[int(worker.split(":")[-2])]


async def join_made(
    spawn: Spawn, dsn: str, server: OwnersServer
) -> tuple[Job, asyncio.subprocess.Process]:
    """Once the creating run has made the job, start worker 1 on it."""
    job = Job(dsn)
    await job.wait_made()
    return job, await spawn(*joiner(dsn, server, 1))


async def wait_sending(server: OwnersServer, *workers: int) -> None:
    """Wait until each of ``workers`` has sent the server a couple of requests."""

    async def sending() -> bool:
        senders = Counter(visit.owner for visit in server.visits)
        return all(senders[server.addresses[k]] >= 2 for k in workers)

    await wait_for(sending, 30, f"workers {workers} sending")


async def wait_quiet(server: OwnersServer) -> None:
    """Wait until a whole second passes with no request sent, by any worker (paused)."""

    async def quiet() -> bool:
        before = len(server.visits)
        await asyncio.sleep(1.0)
        return len(server.visits) == before

    await wait_for(quiet, 15, "every worker paused")


def check_server(server: OwnersServer, cap: int) -> None:
    assert max(server.peaks.values()) <= cap, server.peaks  # the per-host cap, over all
    assert max(server.peaks.values()) >= 2 or cap == 1
    overlaps = server.overlaps()
    assert not overlaps, overlaps[:3]  # one owner per host at any moment, handovers too


def path_of(url: str, server: OwnersServer) -> str:
    """The path (with its query) of a URL on ``server``, as its visits name it."""
    return url.split(f":{server.port}", 1)[1]


async def halt(
    job: Job, server: OwnersServer, processes: list[asyncio.subprocess.Process]
) -> set[str]:
    """Freeze ``processes`` (SIGSTOP), read what they had committed, then kill them: the
    paths of their records. (Frozen first, so that nothing commits between the read and
    the kill: no clock is involved.)"""
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    pids = {str(process.pid) for process in processes}
    records = await job.records()
    for process in processes:
        process.kill()
        await process.wait()
    return {
        path_of(record["url"], server)
        for record in records
        if record["_worker"].split(":")[-2] in pids
    }


def check_resent(server: OwnersServer, killed: set[str], committed: set[str]) -> None:
    """Each request sent more than once was first sent by one of the ``killed`` workers and
    not among what they had ``committed`` when they died (in flight, or answered and not
    yet committed): a killed worker loses no more than that."""
    again = {path for path, count in server.sent().items() if count > 1}
    for path in again:
        first = next(v for v in server.visits if v.path == path)
        assert first.owner in killed, (path, first)
        assert path not in committed, (path, first)


def check_once(records: list[dict[str, Any]], urls: list[str]) -> None:
    assert Counter(record["url"] for record in records) == Counter(urls)


async def test_a_worker_killed_mid_run_loses_nothing(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=6, each=30, delay_s=0.2)
    stubborn = [owners.url("/hang", host="k0.test"), owners.url("/status/500", host="k1.test")]
    with (tmp_path / "urls.txt").open("a") as file:
        file.write("\n".join(stubborn) + "\n")
    output = tmp_path / "out.jsonl"
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners, "-o", str(output)))
    job, doomed = await join_made(spawn, pg_dsn, owners)
    other = await spawn(*joiner(pg_dsn, owners, 2))

    async def doomed_working() -> bool:
        return await job.recorded_by(doomed.pid) >= 5

    await wait_for(doomed_working, 30, "the doomed worker's first records")
    committed = await halt(job, owners, [doomed])
    done = [await finish(first, within_s=90), await finish(other, within_s=90)]
    assert [d.code for d in done] == [1, 1], [d.stderr for d in done]  # two requests fail
    records = await job.records()
    check_once(records, urls + stubborn)
    assert await job.admitted() == len(urls) + 2
    check_once(read_records(output), urls + stubborn)  # -o: the whole job, once complete
    by_url = {record["url"]: record for record in records}
    assert by_url[stubborn[0]]["error"]["kind"] == "timeout"  # hung every time: a final record
    assert by_url[stubborn[1]]["status"] == 500 and by_url[stubborn[1]]["attempts"] == 2
    check_server(owners, cap=2)
    # Sent again: only what the killed worker had in flight (at most its concurrency, and
    # what it had answered but not yet committed).
    check_resent(owners, {owners.addresses[1]}, committed)


async def test_a_stopped_worker_records_nothing_after_losing_its_leases(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=40, delay_s=0.15)
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners))
    job, sleeper = await join_made(spawn, pg_dsn, owners)

    async def sleeper_working() -> bool:
        return await job.recorded_by(sleeper.pid) >= 3

    await wait_for(sleeper_working, 30, "the worker's first records")
    sleeper.send_signal(signal.SIGSTOP)
    await asyncio.sleep(4.0)  # past its leases (1 s) and the longest attempt (1.5 s)
    sleeper.send_signal(signal.SIGCONT)
    done = [await finish(first, within_s=60), await finish(sleeper, within_s=60)]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    records = await job.records()
    check_once(records, urls)
    check_server(owners, cap=2)
    # Each record is its request's last sender's: a stale worker's late result was refused.
    senders = {v.path: v.owner for v in sorted(owners.visits, key=lambda v: v.start)}
    pids = {first.pid: owners.addresses[0], sleeper.pid: owners.addresses[1]}
    for record in records:
        path = path_of(record["url"], owners)
        assert owner_of(record["_worker"], pids) == senders[path], record


async def test_a_retry_after_pause_moves_with_its_host_to_a_joining_worker(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    paused = owners.url("/retry-after/r?after=3&fail=1", host="r.test")
    urls = [paused] + [owners.url(f"/work?s=0.01&n={n}", host="r.test") for n in range(5)]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    # The host is handed on 4 s after it is taken. The 429 (pause: 3 s) is held back until
    # the joining worker is up and the host has been held for 3 s: the handover comes in
    # the middle of the pause, and the joiner then holds the host past its end.
    owners.gate.clear()
    held = ("--lease-hold", "4", "--timeout", "10")  # (the 429 is held back for 3 s)
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners, *held))
    job, joined = await join_made(spawn, pg_dsn, owners)

    await wait_for(lambda: workers_up(job, 2), 30, "the joining worker")

    async def held_long_enough() -> bool:
        blocked = [v for v in owners.visits if v.path.startswith("/retry-after")]
        return bool(blocked) and time.monotonic() - blocked[0].start >= 3.0

    await wait_for(held_long_enough, 30, "the host held for 3 s")
    owners.gate.set()
    done = [await finish(first, within_s=60), await finish(joined, within_s=60)]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    check_once(await Job(pg_dsn).records(), urls)
    visits = sorted(owners.visits, key=lambda v: v.start)
    refused = next(v for v in visits if v.status == 429)
    after = [v for v in visits if v.start >= refused.end]  # sent once the 429 was answered
    assert after, visits
    assert after[0].start - refused.end >= 2.9, (refused, after[0])  # the pause held
    # ... by the joining worker, which took the host while it was paused.
    assert refused.owner == owners.addresses[0], refused
    assert after[0].owner == owners.addresses[1], after


async def test_many_workers_start_together_on_a_new_job(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=24, each=10, delay_s=0.15)
    command = (
        "fetch", str(tmp_path / "urls.txt"), "--store", pg_dsn, "--job", "shared",
        "-c", "2", "--per-host", "1", "--lease-ttl", "2", "--progress", "off", "-q",
    )  # fmt: skip
    processes = [
        await spawn(*command, *owners.resolve(n % len(owners.addresses))) for n in range(20)
    ]
    done = await asyncio.gather(*(finish(p, within_s=120) for p in processes))
    assert [d.code for d in done] == [0] * 20, [d.stderr for d in done if d.code]
    job = Job(pg_dsn)
    records = await job.records()
    check_once(records, urls)
    assert len({record["_worker"] for record in records}) >= 4  # the work was shared
    assert int((await job.query("SELECT count(*) FROM shoal_schema"))[0][0]) == 1
    assert int((await job.query("SELECT count(*) FROM shoal_jobs"))[0][0]) == 1
    check_server(owners, cap=1)


async def test_every_worker_killed_then_restarted_completes_the_job(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=30, delay_s=0.05)
    job = Job(pg_dsn)
    processes = [await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners))]
    await job.wait_made()
    processes.append(await spawn(*joiner(pg_dsn, owners, 1)))

    async def some() -> bool:
        return len(await job.records()) >= 30

    await wait_for(some, 30, "some records")
    committed = await halt(job, owners, processes)
    output = tmp_path / "out.jsonl"
    again = [
        await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners, "-o", str(output))),
        await spawn(*joiner(pg_dsn, owners, 2)),
    ]
    done = [await finish(process, within_s=90) for process in again]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    check_once(await job.records(), urls)
    check_once(read_records(output), urls)
    check_server(owners, cap=2)
    check_resent(owners, {owners.addresses[0], owners.addresses[1]}, committed)


async def test_the_job_completes_across_a_database_restart(
    owners: OwnersServer, cluster: Cluster, tmp_path: Path, spawn: Spawn
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=60, delay_s=0.2)
    dsn = cluster.dsn
    job = Job(dsn)
    processes = [await spawn(*creator(tmp_path / "urls.txt", dsn, owners))]
    await job.wait_made()
    processes.append(await spawn(*joiner(dsn, owners, 1)))

    async def both_working() -> bool:
        return len(await job.records()) >= 40 and await job.recorded_by(processes[1].pid) > 0

    await wait_for(both_working, 30, "records from both workers")
    cluster.stop()
    await asyncio.sleep(1.5)
    cluster.start()
    done = [await finish(process, within_s=120) for process in processes]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    check_once(await job.records(), urls)
    check_server(owners, cap=2)


async def test_a_shared_job_exports_what_the_same_job_on_sqlite_writes(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=3, each=10, delay_s=0.01)
    with (tmp_path / "urls.txt").open("a") as file:
        file.write(
            "not a url\n" + owners.url("/status/404", host="k1.test") + "\n" + urls[0] + "\n"
        )
    local = await shoal(
        "fetch", str(tmp_path / "urls.txt"), "-o", str(tmp_path / "local.jsonl"),
        *owners.resolve(0), *JOB, within_s=60,
    )  # fmt: skip
    shared = await shoal(
        *creator(tmp_path / "urls.txt", pg_dsn, owners, "-o", str(tmp_path / "shared.jsonl")),
        within_s=60,
    )
    assert (local.code, shared.code) == (1, 1), (local.stderr, shared.stderr)
    exported = await shoal("export", "--store", pg_dsn, "--job", "shared")
    assert exported.code == 0, exported.stderr
    assert sorted(exported.stdout.splitlines()) == sorted(
        (tmp_path / "shared.jsonl").read_bytes().splitlines()
    )
    assert comparable(tmp_path / "local.jsonl") == comparable(tmp_path / "shared.jsonl")
    status = await shoal("status", "--store", pg_dsn, "--job", "shared", "--json")
    assert status.code == 0, status.stderr
    summary = orjson.loads(status.stdout)
    # (the duplicate line admitted once; the bad line failed; a 404 is a record, not a failure)
    assert (summary["admitted"], summary["failed"], summary["pending"]) == (32, 1, 0)


def comparable(path: Path) -> list[bytes]:
    """The records of a file, sorted, without what differs from run to run (timings)."""
    timing = {"elapsed_ms", "ttfb_ms", "started_at"}
    rows = []
    for line in path.read_bytes().splitlines():
        record = {k: v for k, v in orjson.loads(line).items() if k not in timing}
        rows.append(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    return sorted(rows)


async def test_a_worker_is_refused_other_politeness_and_an_unknown_job(
    pg_dsn: str, owners: OwnersServer, tmp_path: Path
) -> None:
    missing = await shoal("worker", "--store", pg_dsn, "--job", "nobody")
    assert missing.code == 2 and "no job 'nobody'" in missing.stderr
    write_urls(tmp_path / "urls.txt", owners, hosts=1, each=2, delay_s=0.01)
    made = await shoal(*creator(tmp_path / "urls.txt", pg_dsn, owners), within_s=60)
    assert made.code == 0, made.stderr
    other = await shoal(*joiner(pg_dsn, owners, 1, "--per-host", "5"))
    assert other.code == 2 and "'--per-host'" in other.stderr, other.stderr
    nameless = await shoal("fetch", str(tmp_path / "urls.txt"), "--store", pg_dsn)
    assert nameless.code == 2 and "'--job'" in nameless.stderr
    many = await shoal(*creator(tmp_path / "urls.txt", pg_dsn, owners, "--processes", "2"))
    assert many.code == 2 and "'--processes'" in many.stderr
    wrong = await shoal("fetch", str(tmp_path / "urls.txt"), "--store", "mysql://x", "--job", "j")
    assert wrong.code == 2 and "'--store'" in wrong.stderr
    # A map on a shared store is refused the same things.
    (tmp_path / "jobs.py").write_text(MAP_MODULE)
    (tmp_path / "items.jsonl").write_bytes(b'{"n": 1}\n')
    mapped = ("map", "jobs:square", "items.jsonl", "--store")
    for args, option in [
        ((*mapped, pg_dsn), "'--job'"),
        ((*mapped, "mysql://x", "--job", "m"), "'--store'"),
        ((*mapped, pg_dsn, "--job", "m", "--processes", "2"), "'--processes'"),
        ((*mapped, pg_dsn, "--job", "m", "--restart"), "'--restart'"),
    ]:
        refused = await shoal(*args, cwd=tmp_path)
        assert refused.code == 2 and option in refused.stderr, (args, refused.stderr)


async def test_a_run_whose_settings_differ_from_its_jobs_names_each_option(
    pg_dsn: str, owners: OwnersServer, tmp_path: Path
) -> None:
    write_urls(tmp_path / "urls.txt", owners, hosts=1, each=2, delay_s=0.01)
    made = await shoal(*creator(tmp_path / "urls.txt", pg_dsn, owners), within_s=60)
    assert made.code == 0, made.stderr
    other = await shoal(
        *creator(tmp_path / "urls.txt", pg_dsn, owners, "--timeout", "9", "--per-host-rate", "5/s"),
        within_s=60,
    )
    assert other.code == 2, other.stderr
    assert "--timeout is 9.0 here but 1.5 in job 'shared'" in other.stderr, other.stderr
    assert "--per-host-rate is 5.0 here but none in job 'shared'" in other.stderr
    assert "every worker of a job applies the job's settings" in other.stderr
    assert "{" not in other.stderr  # no settings shown as raw JSON objects


async def test_a_crawl_on_a_shared_store_follows_links_once_across_workers(
    pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    from tests.site_server import TreeSite

    site = TreeSite(pages=120, fanout=4, delay_s=0.08)
    await site.start()
    try:
        seeds = [site.url(0, host="a.site.test"), site.url(0, host="b.site.test")]
        common = ("--store", pg_dsn, "--job", "crawl", "--resolve", "*.test:127.0.0.1")
        first = await spawn(
            "crawl", *seeds, *common, "--scope", "same-domain", "--per-host", "2",
            "--progress", "off",
            "-o", str(tmp_path / "out.jsonl"),
        )  # fmt: skip
        job = Job(pg_dsn, "crawl")
        await job.wait_made()
        other = await spawn("worker", *common, "--progress", "off")
        done = [await finish(first, within_s=60), await finish(other, within_s=60)]
        assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
        records = read_records(tmp_path / "out.jsonl")
        expected = [
            site.url(n, host=h) for n in range(site.pages) for h in ("a.site.test", "b.site.test")
        ]
        check_once(records, expected)
        assert all(count == 2 for count in site.served.values())  # each host's page once
        assert len({record["_worker"] for record in await job.records()}) == 2
    finally:
        await site.stop()


async def test_a_pause_on_one_dashboard_pauses_every_worker(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=60, delay_s=0.2)
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners, "--dashboard", "0"))
    base = await _dashboard_url(first)
    job, other = await join_made(spawn, pg_dsn, owners)

    await wait_sending(owners, 0, 1)
    async with aiohttp.ClientSession() as http:
        assert (await _post(http, base + "api/pause"))["paused"]

        await wait_quiet(owners)
        assert len(await job.records()) < len(urls)  # work was left: they were paused
        stats = await _stats(http, base)
        assert stats["paused"]
        assert {worker["pid"] for worker in stats["workers"]} == {first.pid, other.pid}
        assert stats["total"] == len(urls)
        assert stats["job_ok"] == len(await job.records()) > stats["ok"]  # the whole job's
        paused_at = len(owners.visits)
        await asyncio.sleep(1.5)
        assert len(owners.visits) == paused_at  # still nothing: both stay paused
        assert not (await _post(http, base + "api/resume"))["paused"]
    done = [await finish(first, within_s=90), await finish(other, within_s=90)]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    check_once(await job.records(), urls)
    resumed = {visit.owner for visit in owners.visits[paused_at:]}
    assert resumed == {owners.addresses[0], owners.addresses[1]}  # both went on
    check_server(owners, cap=2)


#: The module a shared map runs: each call sleeps a little and logs its item and process.
MAP_MODULE = """
import asyncio
import os


async def square(item):
    await asyncio.sleep(0.05)
    fd = os.open("calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{item['n']} {os.getpid()}\\n".encode())
    finally:
        os.close(fd)
    return item["n"] ** 2
"""


async def test_a_map_in_no_group_is_shared_by_its_workers(
    pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    count = 400
    (tmp_path / "jobs.py").write_text(MAP_MODULE)
    (tmp_path / "items.jsonl").write_bytes(
        b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(count))
    )
    shared = ("--store", pg_dsn, "--job", "m", "-c", "8", "--progress", "off")
    first = await spawn(
        "map", "jobs:square", "items.jsonl", *shared, "--lease-ttl", "2", "-o", "out.jsonl",
        cwd=tmp_path,
    )  # fmt: skip
    job = Job(pg_dsn, "m")
    await job.wait_made()
    # (A fleet's environment may hold options of fetch jobs: a map's worker leaves them be.)
    other = await spawn("worker", *shared, cwd=tmp_path, env=environment(SHOAL_PER_HOST="3"))
    done = [await finish(first, within_s=90), await finish(other, within_s=90)]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    records = await job.records()
    assert sorted(record["item"]["n"] for record in records) == list(range(count))
    assert all(record["value"] == record["item"]["n"] ** 2 for record in records)
    assert len({record["_worker"] for record in records}) == 2  # both workers made calls
    calls = [line.split() for line in (tmp_path / "calls.log").read_text().splitlines()]
    assert Counter(n for n, _ in calls) == Counter(str(n) for n in range(count))  # once each
    assert {pid for _, pid in calls} == {str(first.pid), str(other.pid)}
    assert sorted(r["item"]["n"] for r in read_records(tmp_path / "out.jsonl")) == list(
        range(count)
    )


async def test_a_worker_refuses_an_option_its_job_has_not(
    pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    (tmp_path / "jobs.py").write_text(MAP_MODULE)
    (tmp_path / "items.jsonl").write_bytes(b'{"n": 1}\n')
    made = await spawn(
        "map", "jobs:square", "items.jsonl", "--store", pg_dsn, "--job", "m", "--progress",
        "off", cwd=tmp_path,
    )  # fmt: skip
    assert (await finish(made, within_s=60)).code == 0
    for option in (("--save-bodies", str(tmp_path / "b")), ("--per-host", "3")):
        refused = await spawn("worker", "--store", pg_dsn, "--job", "m", *option, cwd=tmp_path)
        result = await finish(refused, within_s=60)
        assert result.code == 2 and f"'{option[0]}'" in result.stderr, result.stderr


async def test_each_worker_writes_its_own_web_archive(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    from tests.sinks.test_warc import assert_archived_once, read_at, warc_files

    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=30, delay_s=0.1)
    prefix = str(tmp_path / "arch")
    # Each worker must get work, whatever the load: nothing is answered until both are up.
    # The first holds every host until then and, over its fair share once the second
    # counts, hands two on. (A long timeout: the held requests wait for the joiner's start.)
    owners.work_gate.clear()
    warc = ("--warc", prefix, "--timeout", "60")
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners, *warc))
    job, other = await join_made(spawn, pg_dsn, owners)  # the job's --warc, to files of its own
    await wait_for(lambda: workers_up(job, 2), 30, "the joining worker")
    owners.work_gate.set()
    done = [await finish(first, within_s=90), await finish(other, within_s=90)]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    records = await job.records()
    check_once(records, urls)
    files = warc_files(tmp_path, "arch*.warc.gz")
    parts = {path.name.rsplit("-", 1)[0] for path in files}
    assert all(part.startswith("arch.worker-") for part in parts), parts
    assert {part.split("-")[-2] for part in parts} == {str(first.pid), str(other.pid)}
    assert all((tmp_path / f"{part}.cdxj").stat().st_size > 0 for part in parts)
    assert_archived_once(files, urls)  # nobody died: each response archived once
    for record in records:
        pid = record["_worker"].split(":")[-2]
        assert f"-{pid}-" in record["warc"]["filename"]  # in its own worker's files
        response, _ = read_at(tmp_path, record["warc"])
        assert response.rec_headers.get_header("WARC-Target-URI") == record["url"]


async def test_shoal_pause_and_resume_steer_every_worker(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=60, delay_s=0.2)
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners))
    job, other = await join_made(spawn, pg_dsn, owners)

    await wait_sending(owners, 0, 1)
    paused = await shoal("pause", "--store", pg_dsn, "--job", "shared")
    assert paused.code == 0 and "paused" in paused.stderr, paused.stderr

    await wait_quiet(owners)
    status = await shoal("status", "--store", pg_dsn, "--job", "shared", "--json")
    line = orjson.loads(status.stdout)
    assert line["paused"] is True and line["workers"] == 2
    assert line["pending"] > 0  # work was left: they were paused, not done
    resumed = await shoal("resume", "--store", pg_dsn, "--job", "shared")
    assert resumed.code == 0, resumed.stderr
    done = [await finish(first, within_s=90), await finish(other, within_s=90)]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    check_once(await job.records(), urls)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--job", "shared"), "'--store'"),
        (("--store", "mysql://db/x", "--job", "shared"), "'--store'"),
        (("--store", "{dsn}"), "'--job'"),
    ],
)
async def test_pause_usage_errors(pg_dsn: str, args: tuple[str, ...], option: str) -> None:
    done = await shoal("pause", *(arg.format(dsn=pg_dsn) for arg in args))
    assert done.code == 2 and option in done.stderr, done.stderr


async def test_pausing_a_job_that_is_not_there_is_a_usage_error(pg_dsn: str) -> None:
    done = await shoal("resume", "--store", pg_dsn, "--job", "nothing")
    assert done.code == 2 and "no job 'nothing'" in done.stderr, done.stderr


async def test_a_waiting_worker_waits_for_its_job_to_be_made(
    owners: OwnersServer, pg_dsn: str, tmp_path: Path, spawn: Spawn
) -> None:
    early = await spawn(*joiner(pg_dsn, owners, 1, "--wait-for-job"))
    assert early.stderr is not None
    line = (await asyncio.wait_for(early.stderr.readline(), 30)).decode()
    assert "waiting for job 'shared' to be made" in line
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=30, delay_s=0.1)
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners))
    assert (await finish(first, within_s=90)).code == 0
    job = Job(pg_dsn)
    check_once(await job.records(), urls)
    assert await job.recorded_by(early.pid) > 0  # it joined once the job was made
    assert (await finish(early, within_s=60)).code == 0  # and ended with the job
