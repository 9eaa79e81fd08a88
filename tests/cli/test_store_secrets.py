"""A shared store's URL is never shown with its password: not in ``status``, not in the
report, not in the message of a database that cannot be reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.command import RESOLVE, shoal
from tests.postgres import pg_dsn
from tests.servers import Misbehaving

__all__ = ["pg_dsn"]

SECRETS = ("hunter2", "hunter3", "hunter4")


def with_secrets(dsn: str) -> str:
    """``dsn`` with a password in its user part and in two query parameters (the test
    server trusts every local connection, so the passwords change nothing else)."""
    dsn = dsn.replace("://root@", "://root:hunter2@", 1)
    assert "hunter2" in dsn, dsn
    return f"{dsn}&password=hunter3&sslpassword=hunter4"


def assert_hidden(text: str) -> None:
    shown = [secret for secret in SECRETS if secret in text]
    assert not shown, f"a password is shown: {shown} in {text!r}"


async def test_status_and_report_of_a_shared_job_hide_its_passwords(
    pg_dsn: str, server: Misbehaving, tmp_path: Path
) -> None:
    dsn = with_secrets(pg_dsn)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"http://a.test:{server.port}/ok/{n}\n" for n in range(5)))
    made = await shoal("fetch", str(urls), "--store", dsn, "--job", "j", *RESOLVE, "-q")
    assert made.code == 0, made.stderr
    assert_hidden(made.stderr)
    status = await shoal("status", "--store", dsn, "--job", "j")
    assert status.code == 0, status.stderr
    assert "postgresql://root@127.0.0.1" in status.stdout.decode()
    assert_hidden(status.stdout.decode() + status.stderr)
    page = tmp_path / "report.html"
    report = await shoal("report", "--store", dsn, "--job", "j", "-o", str(page))
    assert report.code == 0, report.stderr
    assert "postgresql://root@127.0.0.1" in page.read_text()
    assert_hidden(page.read_text() + report.stderr)


@pytest.mark.parametrize("command", ["status", "export", "report"])
async def test_an_unreachable_store_is_named_without_its_passwords(command: str) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    dsn = "postgresql://root:hunter2@127.0.0.1:1/test?password=hunter3&sslpassword=hunter4"
    done = await shoal(command, "--store", dsn, "--job", "j", within_s=30)
    assert done.code != 0
    assert "cannot reach the job's database postgresql://root@127.0.0.1:1/test" in done.stderr
    assert_hidden(done.stderr)
