"""What the command says when its output's reader goes away, when a fault stops a job
whose journal was temporary, and when it waits on a terminal."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest

from tests.command import RESOLVE, SHOAL, environment, lines, ok_urls, shoal
from tests.servers import Misbehaving

#: What a shell reports for a tool ended by SIGPIPE (128 + 13).
EXIT_PIPE = 141


async def closed_after_one_line(*args: str, cwd: Path) -> tuple[int, bytes, str]:
    """Run shoal with stdout into a pipe whose reader takes one line and leaves (as
    ``shoal fetch … | head -1``): the exit code, the line and stderr."""
    read_end, write_end = os.pipe()
    process = await asyncio.create_subprocess_exec(
        *SHOAL,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
        env=environment(),
        cwd=cwd,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        line = await asyncio.wait_for(asyncio.to_thread(reader.readline), 30)
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("shoal went on after its output closed") from None
    assert process.returncode is not None
    return process.returncode, line, err.decode()


@pytest.fixture
def many(server: Misbehaving, tmp_path: Path) -> Path:
    """An input whose records are far more than a pipe holds."""
    (tmp_path / "in.txt").write_text("\n".join(ok_urls(server, 3000)) + "\n")
    return tmp_path


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_a_closed_output_pipe_ends_quietly_with_the_sigpipe_status(
    many: Path, processes: str
) -> None:
    code, line, err = await closed_after_one_line(
        "fetch", "in.txt", *RESOLVE, "--progress", "off", "-p", processes, cwd=many
    )
    assert line.startswith(b'{"url":')
    assert code == EXIT_PIPE, err
    assert err == ""  # the journal was temporary: nothing to say, no traceback, no noise


async def test_a_closed_output_pipe_says_where_a_kept_journal_is(many: Path) -> None:
    code, _, err = await closed_after_one_line(
        "fetch", "in.txt", "--job", "j.journal", *RESOLVE, "--progress", "off", cwd=many
    )
    assert code == EXIT_PIPE, err
    assert err == (
        "shoal: output closed; the journal j.journal holds the progress (the same command"
        " resumes)\n"
    )
    assert (many / "j.journal").exists()


async def test_a_fault_with_a_temporary_journal_does_not_say_it_resumes(many: Path) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        process = await asyncio.create_subprocess_exec(
            *SHOAL, "fetch", "in.txt", *RESOLVE, "--progress", "off",
            stdout=full, stderr=asyncio.subprocess.PIPE, env=environment(), cwd=many,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        os.close(full)
    assert process.returncode == 3, err
    text = err.decode()
    assert "No space left on device" in text
    assert "journal is intact" not in text and "resume" not in text, text
    assert "The journal was temporary (no -o file, no --job)" in text


HINT = "shoal: reading URLs from standard input (a terminal); end with Ctrl-D"


async def test_fetch_waiting_on_a_terminal_says_how_to_end_its_input(server: Misbehaving) -> None:
    leader, follower = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *SHOAL, "fetch", *RESOLVE, "--progress", "off",
            stdin=follower, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=environment(),
        )  # fmt: skip
        os.close(follower)
        follower = -1
        assert process.stderr is not None and process.stdout is not None
        said = await asyncio.wait_for(process.stderr.readline(), 30)
        assert said.decode().rstrip("\n") == HINT  # before anything is typed
        os.write(leader, f"{server.url('/ok')}\n".encode() + b"\x04")  # a line, then Ctrl-D
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert process.returncode == 0, err
    assert out.count(b"\n") == 1 and server.log.total == 1
    assert HINT not in err.decode()  # said once


async def test_fetch_reading_a_pipe_gives_no_terminal_hint(server: Misbehaving) -> None:
    done = await shoal("fetch", *RESOLVE, "--progress", "off", stdin=lines(server.url("/ok")))
    assert done.code == 0 and "reading URLs" not in done.stderr, done.stderr


async def test_shell_completion_as_the_readme_gives_it() -> None:
    """``eval "$(_SHOAL_COMPLETE=bash_source shoal)"`` in bash: the script it prints, and the
    completions that script asks the command for."""
    run = ("-c", "import sys; from shoal.cli.main import cli; cli.main(prog_name='shoal')")

    async def complete(**variables: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *run, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=environment(**variables),
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err
        return out.decode()

    script = await complete(_SHOAL_COMPLETE="bash_source")
    assert "complete -o nosort -F _shoal_completion shoal" in script
    words = await complete(
        _SHOAL_COMPLETE="bash_complete", COMP_WORDS="shoal fetch --dead", COMP_CWORD="2"
    )
    assert words.split() == ["plain,--dead-after", "plain,--dead-cooldown"]
    commands = await complete(
        _SHOAL_COMPLETE="bash_complete", COMP_WORDS="shoal ex", COMP_CWORD="1"
    )
    assert commands.split() == ["plain,export"]
    for shell in ("zsh", "fish"):
        assert "_shoal_completion" in await complete(_SHOAL_COMPLETE=f"{shell}_source")


async def test_a_config_error_while_running_names_its_own_option(tmp_path: Path) -> None:
    """A setting refused once the job runs is named by its own option, not --dashboard
    (the one option that used to be said whatever the setting)."""
    from rich.console import Console

    from shoal import Engine, Limits
    from shoal.cli.run import EXIT_USAGE, execute
    from shoal.cli.spec import JobOptions

    urls = tmp_path / "urls.txt"
    urls.write_text("http://a.test/\n")
    options = JobOptions(
        input=str(urls),
        output=str(tmp_path / "out.jsonl"),
        journal=str(tmp_path / "job"),
        restart=False,
        progress=False,
        quiet=True,
        # The dashboard's token, refused as the dashboard starts (the command line checks
        # it before; the run's own check is named by its option too).
        dashboard=("0.0.0.0", 0),
    )
    console = Console(file=io.StringIO(), width=200)
    code, stats = await execute(
        Engine(limits=Limits(concurrency=2)), options, console, watch=None, stop_signals=()
    )
    said = console.file.getvalue()  # type: ignore[attr-defined]
    assert (code, stats) == (EXIT_USAGE, None)
    assert "shoal: error: --dashboard-token: the dashboard on 0.0.0.0" in said, said
    assert "--dashboard:" not in said
