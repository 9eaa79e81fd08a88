"""``--save-bodies``: each final body stored once, by its SHA-256, named in its record."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import orjson

import shoal
from shoal import ErrorKind, Limits, Outputs, RetryPolicy, Timeouts
from tests.command import RESOLVE, lines
from tests.command import shoal as run_shoal
from tests.conftest import resolver
from tests.helpers import engine_options, read_records
from tests.servers import Misbehaving


async def fetch_saving(urls: list[str], folder: Path, **options: object) -> list[shoal.Result]:
    options.setdefault("retry", RetryPolicy(retries=2, backoff_base_s=0.001))
    engine = shoal.Engine(
        timeouts=Timeouts(total_s=5, connect_s=2, read_s=2),
        outputs=Outputs(bodies=str(folder)),
        **engine_options({"resolver": resolver(), **options}),
    )
    async with engine, engine.stream(urls) as results:
        return [result async for result in results]


def stored(folder: Path) -> list[Path]:
    """The bodies in ``folder``, temporary files aside."""
    return sorted(
        path for path in folder.rglob("*") if path.is_file() and ".partial" not in path.parts
    )


def partial_files(folder: Path) -> list[Path]:
    return [path for path in (folder / ".partial").rglob("*") if path.is_file()]


async def test_bodies_are_stored_by_their_sha256(server: Misbehaving, tmp_path: Path) -> None:
    folder = tmp_path / "bodies"
    small, large, empty = (
        server.url("/ok?size=1000"),
        server.url("/big?size=2600000"),  # streamed, written out in several pieces
        server.url("/ok?size=0"),
    )
    results = {r.url: r for r in await fetch_saving([small, large, empty], folder)}
    for url in (small, large, empty):
        result = results[url]
        assert result.ok and result.body_path is not None and result.sha256 is not None
        sha = result.sha256
        assert result.body_path == os.path.join(sha[:2], sha[2:4], sha)
        data = (folder / result.body_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        assert len(data) == result.bytes
    assert (folder / results[small].body_path).read_bytes() == b"o" * 1000  # type: ignore[operator]
    assert len(stored(folder)) == 3
    assert partial_files(folder) == []


async def test_identical_bodies_are_stored_once(server: Misbehaving, tmp_path: Path) -> None:
    folder = tmp_path / "bodies"
    urls = [server.url(f"/ok?size=500&n={n}") for n in range(5)]
    results = await fetch_saving(urls, folder, limits=Limits(concurrency=5, per_host=5))
    assert len({result.body_path for result in results}) == 1
    assert len(stored(folder)) == 1


async def test_decoded_bodies_are_stored(server: Misbehaving, tmp_path: Path) -> None:
    folder = tmp_path / "bodies"
    (result,) = await fetch_saving([server.url("/gzip-bomb?size=200000")], folder)
    assert result.ok and result.body_path is not None
    data = (folder / result.body_path).read_bytes()
    assert data == bytes(200000)  # what came over the wire was gzip; the file is decoded


async def test_only_the_final_attempt_is_kept(server: Misbehaving, tmp_path: Path) -> None:
    folder = tmp_path / "bodies"
    (result,) = await fetch_saving([server.url("/flaky/keep?fail=2&status=503")], folder)
    assert result.ok and result.attempts == 3
    assert [path.name for path in stored(folder)] == [result.sha256]
    assert partial_files(folder) == []


async def test_a_failed_request_stores_nothing(server: Misbehaving, tmp_path: Path) -> None:
    folder = tmp_path / "bodies"
    results = await fetch_saving(
        [server.url("/partial"), server.url("/big?size=300000")],
        folder,
        retry=RetryPolicy(retries=0),
        limits=Limits(max_bytes=100_000),
    )
    kinds = sorted(result.error.kind for result in results if result.error is not None)
    assert kinds == [ErrorKind.RESET, ErrorKind.TOO_LARGE]
    assert all(result.body_path is None for result in results)
    assert stored(folder) == []
    assert partial_files(folder) == []


async def test_cli_saves_bodies_and_clears_what_a_crash_left(
    server: Misbehaving, tmp_path: Path
) -> None:
    folder = tmp_path / "bodies"
    stale = folder / ".partial" / "999999999"  # no such process (as earlier versions named it)
    ours = folder / ".partial" / f"{socket.gethostname()}-999999999"  # this machine's, gone
    theirs = folder / ".partial" / "another-machine-4242"  # a shared folder: not ours to clear
    for left in (stale, ours, theirs):
        left.mkdir(parents=True)
        (left / "7").write_bytes(b"half a body")
    urls = [server.url(f"/ok?size={100 + n}") for n in range(4)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "--save-bodies", str(folder), *RESOLVE)
    done = await run_shoal(*args, "-q")
    assert done.code == 0, done.stderr
    assert not stale.exists() and not ours.exists()
    assert (theirs / "7").read_bytes() == b"half a body"
    records = read_records(output)
    for record in records:
        data = (folder / record["body_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert len(stored(folder)) == len(urls)
    exported = await run_shoal("export", str(output), "--format", "csv")
    assert b"body_path" in exported.stdout.splitlines()[0]


async def test_without_the_option_records_say_null(server: Misbehaving, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    done = await run_shoal("fetch", "-o", str(output), *RESOLVE, stdin=lines(server.url("/ok")))
    assert done.code == 0, done.stderr
    (record,) = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert record["body_path"] is None


async def test_an_unusable_folder_stops_the_run_cleanly(
    server: Misbehaving, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    output = tmp_path / "out.jsonl"
    done = await run_shoal(
        "fetch",
        "-o",
        str(output),
        "--save-bodies",
        str(blocker / "bodies"),
        *RESOLVE,
        stdin=lines(server.url("/ok")),
    )
    assert done.code == 3, done.stderr
    assert "cannot use body folder" in done.stderr and "Traceback" not in done.stderr
    assert server.log.total == 0
