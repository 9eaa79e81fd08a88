"""Where ``shoal fetch`` takes its settings from, seen from the server's side.

The rate options, a ``--config`` TOML file with ``[hosts."PATTERN"]`` tables, and the
``SHOAL_*`` environment variables, with their precedence: the command line, then the
environment, then the config file, then the defaults. Each test runs the real command as a
subprocess against the misbehaving server and checks what arrived there.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from shoal.scheduling import Shard
from shoal.sources.items import entry_for
from tests.command import RESOLVE, Finished, environment, lines, shoal
from tests.helpers import read_records
from tests.servers import Misbehaving

#: Slack for timer resolution and delivery noise on a lower bound of spacing (seconds).
SLACK_S = 0.010
#: More slack for the first arrival at a host: that request also opens the connection,
#: and on a busy machine reaches the server later than it started, which shortens the
#: first gap (tests/engine/test_politeness.py warms connections up to measure strictly,
#: and shows the effect in test_connection_setup_does_not_shorten_the_first_gap).
SETUP_S = 0.05
#: Room on an upper bound: the machine may be loaded by other test suites.
ROOM_S = 0.5
QUIET = ("--progress", "off", "-q")
PER_HOST = 8


def gaps(times: Sequence[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def assert_spaced(times: Sequence[float], interval_s: float) -> None:
    """Arrival ``j`` is at least ``(j - i) * interval_s`` after arrival ``i``, less slack
    (fewer than two arrivals hold no gap: refused)."""
    assert len(times) >= 2, f"{len(times)} arrivals: no gap to check"
    for i, earlier in enumerate(times):
        for j in range(i + 1, len(times)):
            least = (j - i) * interval_s - (SETUP_S if i == 0 else SLACK_S)
            assert times[j] - earlier >= least, (
                f"arrivals {i} and {j} are {times[j] - earlier:.4f} s apart, less than "
                f"{least:.4f} s: {[round(g, 4) for g in gaps(times)]}"
            )


def arrivals(server: Misbehaving, host: str) -> list[float]:
    return sorted(server.log.hosts[host].times)


def headers_for(server: Misbehaving, host: str) -> list[dict[str, str]]:
    return [h for h in server.log.headers if h.get("Host", "").rsplit(":", 1)[0] == host]


def write_config(tmp_path: Path, text: str, name: str = "shoal.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def slow_urls(server: Misbehaving, host: str, count: int, s: float = 0.15) -> list[str]:
    return [server.url(f"/delay?s={s}&n={n}", host=host) for n in range(count)]


async def fetch(*args: str, stdin: bytes, env: dict[str, str] | None = None) -> Finished:
    done = await shoal("fetch", *RESOLVE, *QUIET, *args, stdin=stdin, env=env, within_s=25)
    assert done.code == 0, done.stderr
    return done


def assert_usage_error(done: Finished, *named: str) -> None:
    assert done.code == 2, (done.code, done.stderr)
    assert done.stdout == b""
    for text in named:
        assert text in done.stderr, done.stderr


# -- --per-host-rate ---------------------------------------------------------------------------


async def test_per_host_rate_is_seen_in_arrival_times(server: Misbehaving) -> None:
    count, rate = 8, 10.0
    urls = [
        server.url(f"/ok?n={n}", host=host) for n in range(count) for host in ("p.test", "q.test")
    ]
    done = await fetch("-c", "50", "--per-host-rate", "10/s", stdin=lines(*urls))
    assert len(done.records()) == 2 * count
    for host in ("p.test", "q.test"):
        times = arrivals(server, host)
        assert len(times) == count
        assert_spaced(times, 1 / rate)
        assert times[-1] - times[0] <= (count - 1) / rate + ROOM_S
    # The two hosts are paced side by side.
    firsts = [arrivals(server, host)[0] for host in ("p.test", "q.test")]
    assert abs(firsts[0] - firsts[1]) < 1 / rate


@pytest.mark.parametrize(("rate", "interval"), [("600/m", 0.1), ("10", 0.1)])
async def test_per_host_rate_units(server: Misbehaving, rate: str, interval: float) -> None:
    urls = [server.url(f"/ok?n={n}", host="u.test") for n in range(4)]
    done = await fetch("--per-host-rate", rate, stdin=lines(*urls))
    assert sorted(record["url"] for record in done.records()) == sorted(urls)
    times = arrivals(server, "u.test")
    assert len(times) == len(urls)
    assert_spaced(times, interval)


async def test_per_host_rate_per_minute(server: Misbehaving) -> None:
    urls = [server.url(f"/ok?n={n}", host="m.test") for n in range(2)]
    done = await fetch("--per-host-rate", "30/m", stdin=lines(*urls))
    assert all(record["status"] == 200 for record in done.records())
    first, second = arrivals(server, "m.test")
    assert second - first >= 2.0 - SETUP_S  # 30 a minute: one every two seconds


@pytest.mark.parametrize("value", ["fast", "0/s", "5/fortnight", "nan/s", ""])
async def test_bad_per_host_rate_is_a_usage_error(server: Misbehaving, value: str) -> None:
    done = await shoal("fetch", *RESOLVE, "--per-host-rate", value, stdin=lines(server.url("/ok")))
    assert_usage_error(done, "--per-host-rate")
    assert server.log.total == 0


async def test_delay_and_jitter_from_the_command_line(server: Misbehaving) -> None:
    urls = [server.url(f"/ok?n={n}", host="d.test") for n in range(6)]
    await fetch("--delay", "0.1", "--jitter", "0.5", stdin=lines(*urls))
    between = gaps(arrivals(server, "d.test"))
    assert between[0] >= 0.1 - SETUP_S, between
    assert min(between[1:]) >= 0.1 - SLACK_S, between
    assert max(between) <= 0.15 + ROOM_S, between


def split_urls(server: Misbehaving, host: str, each: int, processes: int) -> list[str]:
    """URLs for ``host``, ``each`` of them for every worker of ``--processes`` were the host
    not paced (the split of an unpaced host follows the request's key): so that a run in
    which one worker fetches them all shows the paced host went to it whole."""
    shards = [Shard(index, processes, PER_HOST) for index in range(processes)]
    found: list[list[str]] = [[] for _ in shards]
    for n in range(10_000):
        url = server.url(f"/ok?n={n}", host=host)
        part = found[shards[0].route(entry_for(url, 0))]
        if len(part) < each:
            part.append(url)
        if all(len(part) == each for part in found):
            return [url for part in found for url in part]
    raise AssertionError("no even split found")


def journal_urls(journal: Path) -> list[str]:
    """The URLs a worker's journal holds final records of."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return [orjson.loads(row[0])["url"] for row in db.execute("SELECT record FROM records")]
    finally:
        db.close()


async def _paced_host_run(
    server: Misbehaving, tmp_path: Path, rate: float, each: int, processes: int
) -> list[float]:
    """A run of ``processes`` workers over one paced host; the host's arrival times."""
    urls = split_urls(server, "paced.test", each, processes)
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    await fetch(
        str(source),
        *("-o", str(output), "-p", str(processes), "-c", "8", "--per-host", str(PER_HOST)),
        *("--per-host-rate", f"{rate:g}/s"),
        stdin=b"",
    )
    assert len(read_records(output)) == len(urls)
    # One worker fetched the host whole: its journal holds every URL, the others' none.
    parts = [
        journal_urls(tmp_path / f"out.jsonl.journal.{k}-of-{processes}")
        for k in range(1, processes + 1)
    ]
    assert sorted(len(part) for part in parts) == [0] * (processes - 1) + [len(urls)], parts
    assert sorted(url for part in parts for url in part) == sorted(urls)
    times = arrivals(server, "paced.test")
    assert len(times) == len(urls)
    return times


async def test_a_paced_host_goes_whole_to_one_of_several_processes(
    server: Misbehaving, tmp_path: Path
) -> None:
    # Unpaced, these URLs would split evenly over the two workers; paced, the host goes to
    # one worker whole, so one clock spaces it and the job's rate holds over the run.
    rate, each, processes = 8.0, 3, 2
    times = await _paced_host_run(server, tmp_path, rate, each, processes)
    count = each * processes
    assert times[-1] - times[0] >= (count - 1) / rate - SETUP_S, gaps(times)


async def test_rate_over_several_processes_keeps_the_spacing(
    server: Misbehaving, tmp_path: Path
) -> None:
    rate = 4.0
    times = await _paced_host_run(server, tmp_path, rate, each=2, processes=2)
    assert_spaced(times, 1 / rate)


# -- --config ----------------------------------------------------------------------------------


async def test_config_top_level_options(server: Misbehaving, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        'concurrency = 3\nper-host = 2\nheader = ["X-List: from-list", "X-Other: too"]\n',
    )
    urls = [url for host in ("a.test", "b.test", "c.test") for url in slow_urls(server, host, 4)]
    await fetch("--config", config, stdin=lines(*urls))
    assert server.log.peak == 3  # concurrency
    for host in ("a.test", "b.test", "c.test"):
        assert server.log.hosts[host].peak <= 2  # per-host
    assert len(server.log.headers) == 12
    assert all(h["X-List"] == "from-list" and h["X-Other"] == "too" for h in server.log.headers)


async def test_config_header_table(server: Misbehaving, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'header = { X-Table = "from-table", X-Two = "2" }\n')
    await fetch("--config", config, stdin=lines(server.url("/echo")))
    [headers] = server.log.headers
    assert headers["X-Table"] == "from-table" and headers["X-Two"] == "2"


async def test_config_host_tables(server: Misbehaving, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "per-host = 4\n"
        'header = ["X-Job: all"]\n'
        '[hosts."x.test"]\n'
        "per-host = 1\n"
        'rate = "10/s"\n'
        'headers = { X-Host = "x-only", X-Job = "x-replaced" }\n'
        '[hosts."*.wild.test"]\n'
        "per-host = 2\n",
    )
    x_urls = [server.url(f"/ok?n={n}", host="x.test") for n in range(5)]
    urls = [
        *x_urls,
        *slow_urls(server, "a.wild.test", 6),
        *slow_urls(server, "wild.test", 6),
        *slow_urls(server, "plain.test", 6),
    ]
    await fetch("--config", config, stdin=lines(*urls))
    x_times = arrivals(server, "x.test")
    assert len(x_times) == 5
    assert_spaced(x_times, 0.1)
    assert server.log.hosts["x.test"].peak == 1
    assert server.log.hosts["a.wild.test"].peak == 2
    assert server.log.hosts["wild.test"].peak == 2  # "*.wild.test" covers wild.test too
    # The file's top-level per-host, and no rate: four at once (10/s would allow two).
    assert server.log.hosts["plain.test"].peak == 4
    for headers in headers_for(server, "x.test"):
        assert headers["X-Host"] == "x-only" and headers["X-Job"] == "x-replaced"
    others = [h for host in ("a.wild.test", "plain.test") for h in headers_for(server, host)]
    assert len(others) == 12
    assert all("X-Host" not in h and h["X-Job"] == "all" for h in others)


async def test_config_host_timeout(server: Misbehaving, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'retries = 0\n[hosts."impatient.test"]\ntimeout = 0.2\n')
    urls = [
        server.url("/delay?s=0.6", host="impatient.test"),
        server.url("/delay?s=0.6", host="patient.test"),
    ]
    done = await shoal("fetch", *RESOLVE, *QUIET, "--config", config, stdin=lines(*urls))
    assert done.code == 1, done.stderr  # one failed
    records = {record["url"]: record for record in done.records()}
    short, long = records[urls[0]], records[urls[1]]
    assert short["error"]["kind"] == "timeout" and short["attempts"] == 1
    assert long["error"] is None and long["status"] == 200


async def test_config_from_shoal_config_variable(server: Misbehaving, tmp_path: Path) -> None:
    config = write_config(tmp_path, "per-host = 1\n")
    env = environment(SHOAL_CONFIG=config)
    await fetch(stdin=lines(*slow_urls(server, "e.test", 4, s=0.1)), env=env)
    assert server.log.hosts["e.test"].peak == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bogus = 1\n", "'bogus' is not an option"),
        ("config = 'other.toml'\n", "'config' is not an option"),
        ('[hosts."x.test"]\nspeed = 2\n', "unknown key 'speed'"),
        ('[hosts."x.test"]\nper-host = "two"\n', "per-host must be a whole number"),
        ('[hosts."x.test"]\nrate = "5/fortnight"\n', "'5/fortnight' is not a rate"),
        ('[hosts."x.test"]\nper-host = 0\n', "must be at least 1"),
        ('[hosts."x.test:80"]\nper-host = 1\n', "is not a host name"),
        ('[hosts."x.test"]\nheaders = "X-A: 1"\n', "headers must be a table"),
        ("hosts = 3\n", "'hosts' must be tables"),
        ("concurrency = \n", "is not valid TOML"),
        ("[hosts\n", "is not valid TOML"),
    ],
)
async def test_bad_config_is_a_usage_error_naming_config(
    server: Misbehaving, tmp_path: Path, text: str, problem: str
) -> None:
    config = write_config(tmp_path, text)
    done = await shoal("fetch", *RESOLVE, "--config", config, stdin=lines(server.url("/ok")))
    assert_usage_error(done, "--config", problem, "shoal.toml")
    assert server.log.total == 0


async def test_missing_config_file_is_a_usage_error(server: Misbehaving, tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    done = await shoal("fetch", *RESOLVE, "--config", str(missing), stdin=lines(server.url("/ok")))
    assert_usage_error(done, "--config", "cannot read", "absent.toml")
    assert server.log.total == 0


@pytest.mark.parametrize(
    ("text", "option"),
    [("concurrency = 0\n", "--concurrency"), ('per-host-rate = "fast"\n', "--per-host-rate")],
)
async def test_bad_top_level_value_in_config_names_the_option(
    server: Misbehaving, tmp_path: Path, text: str, option: str
) -> None:
    config = write_config(tmp_path, text)
    done = await shoal("fetch", *RESOLVE, "--config", config, stdin=lines(server.url("/ok")))
    assert_usage_error(done, option)
    assert server.log.total == 0


async def test_bad_top_level_value_in_config_names_the_file(
    server: Misbehaving, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "concurrency = 0\n")
    done = await shoal("fetch", *RESOLVE, "--config", config, stdin=lines(server.url("/ok")))
    assert_usage_error(done, "--config", "shoal.toml", "concurrency")


# -- SHOAL_* variables and precedence ----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "variable", "argument", "peak"),
    [
        (None, "1", None, 1),  # the environment
        (None, "1", "3", 3),  # the command line beats the environment
        ("4", "1", None, 1),  # the environment beats the config file
        ("2", None, None, 2),  # the config file beats the default
        ("2", None, "3", 3),  # the command line beats the config file
    ],
)
async def test_per_host_precedence(
    server: Misbehaving,
    tmp_path: Path,
    config: str | None,
    variable: str | None,
    argument: str | None,
    peak: int,
) -> None:
    args: list[str] = []
    if config is not None:
        args += ["--config", write_config(tmp_path, f"per-host = {config}\n")]
    if argument is not None:
        args += ["--per-host", argument]
    env = environment() if variable is None else environment(SHOAL_PER_HOST=variable)
    await fetch(*args, stdin=lines(*slow_urls(server, "v.test", 4, s=0.1)), env=env)
    assert server.log.hosts["v.test"].requests == 4
    assert server.log.hosts["v.test"].peak == peak


async def test_shoal_header_takes_one_header_per_line(server: Misbehaving) -> None:
    env = environment(SHOAL_HEADER="X-One: 1\nX-Two: two words")
    await fetch(stdin=lines(server.url("/echo")), env=env)
    [headers] = server.log.headers
    assert headers["X-One"] == "1" and headers["X-Two"] == "two words"


async def test_header_precedence_replaces_rather_than_merges(
    server: Misbehaving, tmp_path: Path
) -> None:
    config = write_config(tmp_path, 'header = ["X-Config: c"]\n')
    env = environment(SHOAL_HEADER="X-Env: e")
    await fetch("--config", config, stdin=lines(server.url("/echo?n=1")), env=env)
    await fetch("--config", config, "-H", "X-Cli: c", stdin=lines(server.url("/echo?n=2")), env=env)
    from_env, from_cli = server.log.headers
    assert from_env["X-Env"] == "e" and "X-Config" not in from_env
    assert from_cli["X-Cli"] == "c" and "X-Env" not in from_cli and "X-Config" not in from_cli


async def test_shoal_per_host_rate_variable(server: Misbehaving) -> None:
    env = environment(SHOAL_PER_HOST_RATE="10/s")
    urls = [server.url(f"/ok?n={n}", host="r.test") for n in range(4)]
    await fetch(stdin=lines(*urls), env=env)
    assert_spaced(arrivals(server, "r.test"), 0.1)


async def test_bad_variable_is_a_usage_error(server: Misbehaving) -> None:
    env = environment(SHOAL_PER_HOST_RATE="fast")
    done = await shoal("fetch", *RESOLVE, stdin=lines(server.url("/ok")), env=env)
    assert_usage_error(done, "--per-host-rate", "'fast'")
    assert server.log.total == 0
