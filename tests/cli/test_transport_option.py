"""``--transport``: which client sends the requests, tried from the command line (under
uvloop, as the command runs)."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.command import shoal
from tests.fetching.wire.raw import RawServer, Reply, reply

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def closing_between_requests(connection: int, index: int, request: bytes) -> Reply:
    """Each connection answers one request, then closes when the next one comes on it (as
    a server closing an idle keep-alive connection just as it is reused)."""
    return reply(OK) if index == 0 else Reply(drop=True)


async def test_the_wire_transport_resends_on_a_reused_connection_the_server_closed(
    tmp_path: Path,
) -> None:
    async with RawServer(closing_between_requests) as server:
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(server.url(f"/{i}") + "\n" for i in range(4)))
        out = tmp_path / "out.jsonl"
        done = await shoal(
            "fetch", str(urls), "-o", str(out), "-q", "--transport", "wire",
            "--retries", "0", "--concurrency", "1",
        )  # fmt: skip
        assert done.code == 0, done.stderr
        records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert sorted((r["url"], r["status"], r["error"]) for r in records) == [
            (server.url(f"/{i}"), 200, None) for i in range(4)
        ]
        # Each request after the first was written on the reused connection, found it
        # closed, and was sent again at once on a new one: one attempt each, seven sends.
        assert [r["attempts"] for r in records] == [1, 1, 1, 1]
        assert len(server.requests) == 7
        assert server.connections == 4


async def test_the_wire_transport_refuses_cookies_as_a_usage_error(tmp_path: Path) -> None:
    done = await shoal(
        "fetch", "http://127.0.0.1:9/", "-o", str(tmp_path / "out.jsonl"),
        "--transport", "wire", "--cookies",
    )  # fmt: skip
    assert done.code == 2
    assert "--transport" in done.stderr and "cookies" in done.stderr


async def test_an_unknown_transport_is_a_usage_error(tmp_path: Path) -> None:
    done = await shoal("fetch", "http://127.0.0.1:9/", "--transport", "curl")
    assert done.code == 2
    assert "--transport" in done.stderr
