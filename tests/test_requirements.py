"""``SHOAL_REQUIRE_<TOOL>=1`` turns the skip of a test whose tool is missing into a failure,
whatever is missing; any other value (or none) lets it skip."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.postgres import postgres_bin


def _import_afresh(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import module ``name`` again (the one imported before is put back after the test)."""
    monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module(name)


@pytest.mark.parametrize(("require", "outcome"), [("1", "failed"), ("", "skipped")])
def test_postgres_tests_without_asyncpg(
    monkeypatch: pytest.MonkeyPatch, require: str, outcome: str
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # importing it raises ImportError
    monkeypatch.setenv("SHOAL_REQUIRE_POSTGRES", require)
    with pytest.raises(BaseException) as raised:  # noqa: PT011 (a skip is a BaseException)
        _import_afresh("tests.postgres", monkeypatch)
    expected = pytest.fail.Exception if outcome == "failed" else pytest.skip.Exception
    assert raised.type is expected, raised.value
    assert "asyncpg" in str(raised.value)


def test_the_newest_postgres_installed_runs_the_private_cluster(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16", "17"):
        (tmp_path / version / "bin").mkdir(parents=True)
    for version in ("9.6", "15", "16"):  # 17 has only its client programs
        (tmp_path / version / "bin" / "initdb").touch()
    (tmp_path / "common" / "bin").mkdir(parents=True)
    (tmp_path / "common" / "bin" / "initdb").touch()
    assert postgres_bin(tmp_path) == tmp_path / "16" / "bin"


def test_the_installed_postgres_is_found() -> None:
    """The Debian layout of this machine (``.ci/run`` starts its newest version)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions and os.environ.get("SHOAL_REQUIRE_POSTGRES") != "1":
        pytest.skip("no PostgreSQL server installed under /usr/lib/postgresql")
    found = postgres_bin()
    assert found is not None and (found / "initdb").exists() and (found / "pg_ctl").exists()


@pytest.mark.parametrize(("require", "skips"), [("1", False), ("0", True), ("", True)])
def test_pywb_is_required_only_by_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, require: str, skips: bool
) -> None:
    monkeypatch.setenv("SHOAL_PYWB_BIN", str(tmp_path))  # a folder without pywb
    monkeypatch.setenv("SHOAL_REQUIRE_PYWB", require)
    module = _import_afresh("tests.crawling.test_warc_replay", monkeypatch)
    mark = module.pytestmark
    assert mark.name == "skipif" and mark.args[0] is skips, (require, mark)
