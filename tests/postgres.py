"""The real PostgreSQL the tests use (127.0.0.1:5432, database ``test``, trust auth), a
fresh schema for each test, and a private cluster a test may restart.

Without a reachable server the tests that need one skip, saying why; with
``SHOAL_REQUIRE_POSTGRES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.helpers import free_port

SERVER = os.environ.get("SHOAL_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
#: Where Debian keeps each installed PostgreSQL version's programs (``15/bin``, ...).
VERSIONS = Path("/usr/lib/postgresql")


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("SHOAL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (SHOAL_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"no PostgreSQL to test against: {reason}", allow_module_level=True)


def _import_asyncpg() -> Any:
    """asyncpg, or (when it is missing) a skip of the module importing this one, or a
    failure under ``SHOAL_REQUIRE_POSTGRES=1``."""
    try:
        import asyncpg
    except ImportError as exc:
        _unavailable(f"asyncpg cannot be imported ({exc}; pip install -e '.[test]')")
    return asyncpg


asyncpg = _import_asyncpg()


def _version(folder: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in folder.name.split("."))
    except ValueError:
        return ()


def postgres_bin(versions: Path = VERSIONS) -> Path | None:
    """The programs folder (``initdb``, ``pg_ctl``) of the newest PostgreSQL installed:
    under ``versions`` (Debian's layout), else where ``pg_config --bindir`` or the ``PATH``
    finds ``initdb``."""
    found = [path.parent for path in versions.glob("*/bin/initdb") if _version(path.parents[1])]
    if found:
        return max(found, key=lambda folder: _version(folder.parent))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        )
        folder = Path(done.stdout.strip())
        if (folder / "initdb").exists():
            return folder
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


async def _connect(dsn: str) -> object:
    try:
        return await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"{dsn}: {exc}")
        raise


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` with every connection's search path set to ``schema``."""
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A DSN whose connections see an empty schema of their own (dropped afterwards)."""
    schema = "shoal_test_" + secrets.token_hex(4)
    admin = await _connect(SERVER)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[attr-defined]
    finally:
        await admin.close()  # type: ignore[attr-defined]
    try:
        yield with_schema(SERVER, schema)
    finally:
        admin = await _connect(SERVER)
        try:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[attr-defined]
        finally:
            await admin.close()  # type: ignore[attr-defined]


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A DSN whose connections see an empty schema of their own (dropped afterwards)."""
    async with fresh_schema() as dsn:
        yield dsn


class Cluster:
    """A private PostgreSQL cluster on 127.0.0.1 (made with initdb, run with pg_ctl from
    ``programs``, as the ``postgres`` user when the tests run as root), that a test may
    restart."""

    def __init__(self, folder: Path, port: int, programs: Path) -> None:
        self.folder = folder
        self.port = port
        self.programs = programs
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(
            str(self.programs / "initdb"),
            "-D",
            str(self.folder / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.programs / "pg_ctl"), "-D", str(self.folder / "data"), "-o", options,
            "-l", str(self.folder / "log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(
            str(self.programs / "pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-m",
            "fast",
            "-w",
            "stop",
        )


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    programs = postgres_bin()
    if programs is None:
        _unavailable(f"no initdb (in {VERSIONS}/*/bin, pg_config --bindir or the PATH)")
    folder = Path(tempfile.mkdtemp(prefix="shoal-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    private = Cluster(folder, free_port(), programs)
    private.init()
    private.start()
    try:
        yield private
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            private.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def wait_for(condition: object, within_s: float, what: str) -> None:
    """Poll an async ``condition()`` until it is true."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.05)
