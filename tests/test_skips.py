"""The CI check that no test skips unless allowed (``tests/skips.py``), run on inner pytest
sessions made with ``pytester``."""

from __future__ import annotations

import pytest

from tests import skips

#: The inner sessions' conftest: the check, with one allowed skip.
CONFTEST = """
from tests import skips

def pytest_configure(config):
    skips.install(config, {"test_cases.py::test_allowed*": "it cannot run here"})
"""
CASES = """
import pytest

def test_passes():
    pass

def test_allowed():
    pytest.skip("allowed")

@pytest.mark.skipif(True, reason="allowed by a pattern")
def test_allowed_by_a_pattern():
    pass
"""


def run(inner: pytest.Pytester) -> pytest.RunResult:
    """The inner session (its tests are plain functions: no asyncio plugin)."""
    return inner.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv(skips.VARIABLE, "1")
    pytester.makeconftest(CONFTEST)
    return pytester


def test_allowed_skips_pass(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_cases=CASES)
    result = run(inner)
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    assert "skips not allowed" not in result.stdout.str()


@pytest.mark.parametrize(
    "skipping",
    [
        pytest.param('def test_other():\n    pytest.skip("no tool")\n', id="in the test"),
        pytest.param(
            '@pytest.mark.skipif(True, reason="no tool")\ndef test_other():\n    pass\n',
            id="a mark",
        ),
        pytest.param(
            '@pytest.fixture\ndef tool():\n    pytest.skip("no tool")\n\n'
            "def test_other(tool):\n    pass\n",
            id="in a fixture",
        ),
    ],
)
def test_a_skip_not_allowed_fails_the_session(inner: pytest.Pytester, skipping: str) -> None:
    inner.makepyfile(test_cases=CASES + "\n\n" + skipping)
    result = run(inner)
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skips not allowed*", "test_cases.py::test_other: *no tool*"])
    assert "test_cases.py::test_allowed" not in result.stdout.str().split("skips not allowed")[1]


def test_a_module_skipped_at_collection_fails_the_session(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_cases=CASES,
        test_needs_a_module='import pytest\n\npytest.importorskip("no_such_module")\n\n'
        "def test_it():\n    pass\n",
    )
    result = run(inner)
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skips not allowed*", "test_needs_a_module.py: *no_such_module*"])


def test_a_failure_keeps_its_exit_status(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_cases=CASES + '\n\ndef test_other():\n    pytest.skip("no tool")\n')
    inner.makepyfile(test_broken="def test_broken():\n    assert False\n")
    result = run(inner)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skips not allowed*"])


def test_without_the_variable_skips_are_only_reported(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(skips.VARIABLE)
    inner.makepyfile(test_cases=CASES + '\n\ndef test_other():\n    pytest.skip("no tool")\n')
    result = run(inner)
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.OK


def test_ci_allows_few_skips_and_says_why() -> None:
    assert len(skips.ALLOWED) <= 5
    assert all(reason.strip() for reason in skips.ALLOWED.values())
