"""What the command line says names its own options: a limit's message gives the option
and the size as the user wrote them, not the library's field and a count of bytes."""

from __future__ import annotations

from tests.command import RESOLVE, shoal
from tests.servers import Misbehaving


async def test_a_body_over_the_limit_names_max_bytes(server: Misbehaving) -> None:
    url = server.url("/big?size=300000")
    done = await shoal(
        "fetch", *RESOLVE, "--max-bytes", "256KiB", "--retries", "0", stdin=f"{url}\n".encode()
    )
    assert done.code == 1, done.stderr
    [record] = done.records()
    assert record["error"] == {
        "kind": "too_large",
        "message": "body larger than --max-bytes (256 KiB)",
    }
