"""The aiohttp transport's version check: the installed aiohttp lies in the range whose
internals the transport was written against, and pyproject.toml asks for that range."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import aiohttp
import pytest

from shoal.fetching.aiohttp_transport import SUPPORTED, check_version, version_of

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_the_installed_aiohttp_is_supported() -> None:
    low, high = SUPPORTED
    assert low <= version_of(aiohttp.__version__) < high
    check_version(aiohttp.__version__)


def test_pyproject_bounds_aiohttp_as_the_transport_checks() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (aiohttp_dependency,) = [d for d in dependencies if d.startswith("aiohttp[")]
    match = re.fullmatch(r"aiohttp\[speedups\]>=([\d.]+),<([\d.]+)", aiohttp_dependency)
    assert match is not None, aiohttp_dependency
    low, high = SUPPORTED
    assert version_of(match[1]) == low
    assert version_of(match[2]) == high


@pytest.mark.parametrize("version", ["3.14.3", "3.15.0", "3.15.0rc1", "4.0.0a1", "3.9.5"])
def test_an_unsupported_aiohttp_is_a_clear_error(version: str) -> None:
    with pytest.raises(ImportError, match=rf"shoal needs aiohttp >=3\.14\.4,<3\.15 .*{version}"):
        check_version(version)


@pytest.mark.parametrize("version", ["3.14.4", "3.14.5", "3.14.12", "3.14.6.dev0"])
def test_a_supported_aiohttp_passes(version: str) -> None:
    check_version(version)


def test_versions_are_compared_as_numbers() -> None:
    assert version_of("3.14.5") == (3, 14, 5)
    assert version_of("3.15.0rc1") == (3, 15, 0)
    assert version_of("4.0.0a1") == (4, 0, 0)
    assert version_of("3.14.12") > version_of("3.14.4")
