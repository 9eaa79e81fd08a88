"""URLs given to ``shoal fetch`` as arguments (as curl and wget take them), and input lines
that are almost URLs (no scheme, in quotes): their records say what to write."""

from __future__ import annotations

from pathlib import Path

from tests.command import RESOLVE, lines, shoal
from tests.helpers import read_records
from tests.servers import Misbehaving

QUIET = ("--progress", "off", "-q")


async def test_urls_as_arguments_are_fetched_and_the_job_resumes(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url("/ok"), server.url("/status/404"), server.url("/ok?again")]
    args = ("fetch", *urls, "-o", "out.jsonl", *RESOLVE, "--progress", "off")
    done = await shoal(*args, cwd=tmp_path)
    assert done.code == 0, done.stderr
    assert sorted(r["url"] for r in read_records(tmp_path / "out.jsonl")) == sorted(urls)
    assert server.log.total == 3
    again = await shoal(*args, cwd=tmp_path)
    assert again.code == 0 and "3 already final" in again.stderr, again.stderr
    assert server.log.total == 3  # nothing fetched twice
    other = await shoal("fetch", urls[0], "-o", "out.jsonl", *RESOLVE, *QUIET, cwd=tmp_path)
    assert other.code == 2 and "journal of another input" in other.stderr, other.stderr


async def test_urls_as_arguments_to_stdout_and_in_several_processes(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url(f"/ok?n={n}", host=f"h{n}.test") for n in range(6)]
    one = await shoal("fetch", *urls, *RESOLVE, *QUIET, cwd=tmp_path)
    assert one.code == 0, one.stderr
    assert sorted(r["url"] for r in one.records()) == sorted(urls)
    many = await shoal("fetch", *urls, *RESOLVE, *QUIET, "-p", "2", "-o", "p.jsonl", cwd=tmp_path)
    assert many.code == 0, many.stderr
    assert sorted(r["url"] for r in read_records(tmp_path / "p.jsonl")) == sorted(urls)


async def test_a_file_and_urls_or_two_files_are_refused(
    server: Misbehaving, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_bytes(lines(server.url("/ok")))
    mixed = await shoal("fetch", "in.txt", server.url("/ok"), *QUIET, cwd=tmp_path)
    assert mixed.code == 2 and "'in.txt' is not a URL (http:// or https://)" in mixed.stderr
    two = await shoal("fetch", "in.txt", "in.txt", *QUIET, cwd=tmp_path)
    assert two.code == 2 and "one INPUT file at most" in two.stderr, two.stderr
    assert server.log.total == 0


async def test_an_argument_without_its_scheme_says_what_to_write(tmp_path: Path) -> None:
    done = await shoal("fetch", "127.0.0.1:18080/small", *QUIET, cwd=tmp_path)
    assert done.code == 2, done.stderr
    assert "cannot read 127.0.0.1:18080/small: No such file or directory" in done.stderr
    assert "(no scheme: write http://127.0.0.1:18080/small)" in done.stderr


async def test_a_line_without_a_scheme_or_in_quotes_says_what_to_write(
    server: Misbehaving,
) -> None:
    good = server.url("/ok")
    bare = good.removeprefix("http://")
    given = [bare, f'"{good}"', f"'{bare}'", "localhost/x", good]
    done = await shoal("fetch", *RESOLVE, *QUIET, stdin=lines(*given))
    assert done.code == 1, done.stderr
    errors = {r["url"]: r["error"] for r in done.records()}
    assert errors[bare]["message"] == f"line 1: no scheme: write http://{bare}"
    assert errors[f'"{good}"']["message"] == (
        f"line 2: quoted URL: remove the quotes (write {good})"
    )
    assert errors[f"'{bare}'"]["message"] == (
        f"line 3: quoted URL: remove the quotes (write http://{bare})"
    )
    assert errors["localhost/x"]["message"] == "line 4: no scheme: write http://localhost/x"
    assert errors[good] is None
    assert server.log.total == 1
