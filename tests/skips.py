"""No silent skips in CI: with ``SHOAL_NO_UNEXPECTED_SKIPS=1`` (``.ci/run`` sets it) a test
session that skipped anything not on :data:`ALLOWED` ends with a non-zero exit status and
lists the skips it did not allow, however the skip came about: a ``skipif`` mark, a
``pytest.skip`` in a test or fixture, an ``importorskip`` or module-level skip that drops a
whole module at collection.

Tests that need a tool the machine may lack skip where it is missing, so that the suite
runs anywhere; CI installs every such tool and sets ``SHOAL_REQUIRE_<TOOL>=1`` so that
those tests fail instead. This check catches the skips that escape that: a platform check
(``/proc``, ``/dev/full``, named pipes), a user that file modes do not hold for, a
requirement read the wrong way.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping

import pytest

#: ``1`` turns the check on.
VARIABLE = "SHOAL_NO_UNEXPECTED_SKIPS"

#: Skips CI allows: a test id (an ``fnmatch`` pattern) and why it may skip there. CI runs
#: on Linux as root, with every tool the tests use installed, so none is expected; add an
#: entry only for a test that cannot run on the CI machine, and say why.
ALLOWED: Mapping[str, str] = {}


class SkipGuard:
    """Collects the skips of a session that ``allowed`` does not name, and fails the
    session over them."""

    def __init__(self, allowed: Mapping[str, str]) -> None:
        self.allowed = allowed
        #: Test (or module) id -> the skip's reason, for each skip not allowed.
        self.unexpected: dict[str, str] = {}

    def is_allowed(self, nodeid: str) -> bool:
        return any(fnmatch.fnmatchcase(nodeid, pattern) for pattern in self.allowed)

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail") or self.is_allowed(report.nodeid):
            return
        reason = str(report.longrepr)
        if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
            reason = str(report.longrepr[2])
        self.unexpected[report.nodeid] = reason

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.unexpected:
            return
        terminalreporter.section(f"skips not allowed ({VARIABLE}=1)", sep="=", red=True)
        for nodeid, reason in sorted(self.unexpected.items()):
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(
            f"{len(self.unexpected)} not on the allow-list (ALLOWED in tests/skips.py): "
            "the session fails",
            red=True,
        )


def install(config: pytest.Config, allowed: Mapping[str, str] = ALLOWED) -> None:
    """Turn the check on for this session when ``SHOAL_NO_UNEXPECTED_SKIPS=1``."""
    if os.environ.get(VARIABLE) == "1":
        config.pluginmanager.register(SkipGuard(allowed), "shoal-skip-guard")
