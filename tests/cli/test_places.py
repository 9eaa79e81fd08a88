"""A job's files checked before any is written: an output, journal, body folder or web
archive that is the input or another of them is refused (exit 2, naming both options), and
one that cannot be made is a usage error naming its option, not a fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.command import finish, shoal, start

INPUT = b"http://127.0.0.1:1/a\nhttp://127.0.0.1:1/b\n"


#: The folder's files before a command: the input, a symlink and two hard links to it.
FILES = {"in.txt", "link.txt", "hard.txt", "out.journal"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in.txt").write_bytes(INPUT)
    (tmp_path / "link.txt").symlink_to("in.txt")
    os.link(tmp_path / "in.txt", tmp_path / "hard.txt")
    os.link(tmp_path / "in.txt", tmp_path / "out.journal")
    return tmp_path


def untouched(folder: Path, *more: str) -> None:
    """The input as it was, and no file made."""
    assert (folder / "in.txt").read_bytes() == INPUT
    assert {path.name for path in folder.iterdir()} == FILES | set(more)


@pytest.mark.parametrize(
    ("args", "first", "second"),
    [
        (("in.txt", "-o", "in.txt"), "-o/--output", "INPUT"),
        (("./in.txt", "-o", "in.txt"), "-o/--output", "INPUT"),
        (("in.txt", "-o", "../" + "{name}/in.txt"), "-o/--output", "INPUT"),
        (("link.txt", "-o", "in.txt"), "-o/--output", "INPUT"),
        (("in.txt", "-o", "link.txt"), "-o/--output", "INPUT"),
        (("hard.txt", "-o", "in.txt"), "-o/--output", "INPUT"),
        (("in.txt", "-o", "o.jsonl", "--job", "in.txt"), "--job", "INPUT"),
        (("in.txt", "-o", "o.jsonl", "--job", "link.txt"), "--job", "INPUT"),
        (("in.txt", "-o", "j-wal", "--job", "j"), "-o/--output", "--job"),
        (("in.txt", "-o", "o.jsonl", "--job", "o.jsonl"), "-o/--output", "--job"),
        (("out.journal", "-o", "out"), "the journal beside -o/--output (--job moves it)", "INPUT"),
        (("in.txt", "-o", "o.jsonl", "--save-bodies", "o.jsonl"), "-o/--output", "--save-bodies"),
        (("in.txt", "-o", "o.jsonl", "--job", "j", "--save-bodies", "j"), "--job", "--save-bodies"),
        (("in.txt", "-o", "in.cdxj", "--warc", "in"), "-o/--output", "--warc"),
        (("in.txt", "-o", "a-00002.warc.gz", "--warc", "a"), "-o/--output", "--warc"),
        (("in.txt", "-o", "o.jsonl", "--job", "a.cdxj", "--warc", "a"), "--job", "--warc"),
        (("in.txt", "-o", "o.jsonl", "--processes", "2", "--job", "in.txt"), "--job", "INPUT"),
    ],
)
async def test_a_place_that_is_another_is_refused_before_anything_is_written(
    folder: Path, args: tuple[str, ...], first: str, second: str
) -> None:
    args = tuple(arg.replace("{name}", folder.name) for arg in args)
    done = await shoal("fetch", *args, "--progress", "off", cwd=folder)
    assert done.code == 2, done.stderr
    assert f"{first} and {second} name the same file" in done.stderr, done.stderr
    untouched(folder)


async def test_an_input_that_is_a_file_the_web_archive_will_make_is_refused(
    folder: Path,
) -> None:
    (folder / "arch-00000.warc.gz").write_bytes(INPUT)  # a URL list saved under that name
    done = await shoal("fetch", "arch-00000.warc.gz", "-o", "o.jsonl", "--warc", "arch", cwd=folder)
    assert done.code == 2 and "--warc and INPUT name the same file" in done.stderr, done.stderr
    assert (folder / "arch-00000.warc.gz").read_bytes() == INPUT
    untouched(folder, "arch-00000.warc.gz")


async def test_stdin_from_the_output_file_is_refused(folder: Path) -> None:
    given = os.open(folder / "in.txt", os.O_RDONLY)
    try:
        done = await finish(await start("fetch", "-o", "in.txt", stdin=given, cwd=folder))
    finally:
        os.close(given)
    assert done.code == 2, done.stderr
    assert "-o/--output and INPUT (stdin) name the same file (in.txt)" in done.stderr
    untouched(folder)


async def test_crawl_and_map_refuse_their_input_as_output(folder: Path) -> None:
    (folder / "jobs.py").write_text("async def same(item):\n    return item\n")
    (folder / "items.jsonl").write_bytes(b'{"n": 1}\n')
    mapped = await shoal("map", "jobs:same", "items.jsonl", "--job", "items.jsonl", cwd=folder)
    assert mapped.code == 2 and "--job and ITEMS name the same file" in mapped.stderr
    assert (folder / "items.jsonl").read_bytes() == b'{"n": 1}\n'
    untouched(folder, "jobs.py", "items.jsonl")
    crawled = await shoal("crawl", "--seeds", "in.txt", "-o", "in.txt", cwd=folder)
    assert crawled.code == 2, crawled.stderr
    assert "-o/--output and --seeds name the same file" in crawled.stderr
    untouched(folder, "jobs.py", "items.jsonl")


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (("-o", "{tmp}/nope/x.jsonl"), "-o/--output", "no such directory"),
        (("-o", "o.jsonl", "--job", "/nonexistent/dir/j.journal"), "--job", "no such directory"),
        (("-o", "in.txt/x.jsonl"), "-o/--output", "is not a directory"),
        (("--job", "in.txt/j.journal"), "--job", "is not a directory"),
    ],
)
async def test_a_place_that_cannot_be_made_is_a_usage_error_naming_its_option(
    folder: Path, args: tuple[str, ...], option: str, reason: str
) -> None:
    args = tuple(arg.replace("{tmp}", str(folder)) for arg in args)
    done = await shoal("fetch", "in.txt", *args, "--progress", "off", cwd=folder)
    assert done.code == 2, done.stderr
    assert f"Invalid value for '{option}': cannot create" in done.stderr, done.stderr
    assert reason in done.stderr
    assert "journal is intact" not in done.stderr
    untouched(folder)
