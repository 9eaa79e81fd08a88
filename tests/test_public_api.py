"""The names ``import shoal`` offers are exactly the documented public API."""

from __future__ import annotations

import inspect

import pytest

import shoal

EXPECTED = [
    "CachingResolver",
    "ConfigError",
    "Crawl",
    "DNSSettings",
    "DNSStatistics",
    "Engine",
    "Error",
    "ErrorKind",
    "FileSource",
    "Handler",
    "HostPolicy",
    "HostState",
    "JournalError",
    "Latency",
    "Limits",
    "Network",
    "Outcome",
    "OutputError",
    "Outputs",
    "Politeness",
    "PostgresStore",
    "Records",
    "Rejected",
    "Request",
    "Result",
    "RetryPolicy",
    "ShoalError",
    "StaticResolver",
    "Statistics",
    "Timeouts",
    "__version__",
    "fetch",
    "map",
]


def test_all_is_exactly_the_expected_sorted_list() -> None:
    assert shoal.__all__ == EXPECTED
    assert sorted(shoal.__all__) == shoal.__all__
    assert len(set(shoal.__all__)) == len(shoal.__all__)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_public_name_exists(name: str) -> None:
    assert hasattr(shoal, name)
    assert getattr(shoal, name) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from shoal import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == EXPECTED


def test_version_is_a_string() -> None:
    assert isinstance(shoal.__version__, str)
    assert shoal.__version__.count(".") >= 1


def test_errors_share_one_base() -> None:
    for name in ("ConfigError", "JournalError", "OutputError"):
        error = getattr(shoal, name)
        assert inspect.isclass(error) and issubclass(error, shoal.ShoalError)
    assert issubclass(shoal.ShoalError, Exception)
    assert issubclass(shoal.ConfigError, ValueError)  # bad options are also ValueErrors
    # A handler's rejection is not a run-ending fault.
    assert not issubclass(shoal.Rejected, shoal.ShoalError)


def test_public_classes_are_defined_inside_shoal() -> None:
    for name in EXPECTED:
        value = getattr(shoal, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("shoal."), (name, value.__module__)
