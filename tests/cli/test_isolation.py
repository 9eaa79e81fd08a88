"""Command-line tests are isolated from the shell that runs them: the caller's ``SHOAL_*``
option variables never reach the ``shoal`` processes the tests start."""

from __future__ import annotations

import click
import pytest

from shoal.cli.main import cli
from tests.command import RESOLVE, environment, shoal
from tests.environments import TEST_VARIABLES
from tests.servers import Misbehaving


def _option_variables() -> set[str]:
    """Every ``SHOAL_*`` name the command reads, over all its subcommands."""
    names: set[str] = set()
    commands: list[click.Command] = [cli]
    while commands:
        command = commands.pop()
        if isinstance(command, click.Group):
            commands.extend(command.commands.values())
        for param in command.params:
            envvar = param.envvar
            names.update([envvar] if isinstance(envvar, str) else envvar or ())
    return names


async def test_the_callers_shoal_options_do_not_reach_the_command(
    server: Misbehaving, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Either would change the run: a header sent with every request, and a bad value that
    # makes the command a usage error (exit 2).
    monkeypatch.setenv("SHOAL_HEADER", "X-Leaked: from the caller")
    monkeypatch.setenv("SHOAL_PER_HOST", "0")
    monkeypatch.setenv("SHOAL_REQUIRE_NGINX", "1")  # read by the tests, so it passes
    done = await shoal("fetch", *RESOLVE, "--progress", "off", stdin=server.url("/ok").encode())
    assert done.code == 0, done.stderr
    [headers] = server.log.headers
    assert "X-Leaked" not in headers, headers
    env = environment()
    assert "SHOAL_HEADER" not in env and "SHOAL_PER_HOST" not in env
    assert env["SHOAL_REQUIRE_NGINX"] == "1"
    # A test that sets an option variable itself still gives it to the command.
    refused = await shoal("fetch", *RESOLVE, env=environment(SHOAL_PER_HOST="0"))
    assert refused.code == 2 and "--per-host" in refused.stderr, refused.stderr


def test_the_variables_kept_for_the_tests_are_no_options() -> None:
    options = _option_variables()
    assert "SHOAL_PER_HOST" in options and "SHOAL_HEADER" in options  # the walk finds them
    assert not options & TEST_VARIABLES
    assert not [name for name in options if name.startswith("SHOAL_REQUIRE_")]
