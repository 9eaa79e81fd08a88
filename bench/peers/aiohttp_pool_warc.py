"""Peer: the bare aiohttp worker pool (K workers on a bounded queue, uvloop) writing a WARC
with warcio the way a hand-written archiver does: after each response, a response record
(status and headers as aiohttp parsed them, the body as aiohttp decoded it) and a request
record, appended to one gzipped file on the event loop's thread. The baseline for ``--warc``.
"""

from __future__ import annotations

import asyncio
import io
import sys

import aiohttp
import uvloop
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


async def main(path: str, workers: int, target: str) -> int:
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=workers * 2)
    failures = 0
    out = open(target, "wb")  # noqa: ASYNC230, SIM115
    writer = WARCWriter(out, gzip=True, warc_version="1.1")

    async def work(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while (url := await queue.get()) is not None:
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    headers = [(k.decode(), v.decode()) for k, v in response.raw_headers]
                    status = f"{response.status} {response.reason}"
                    http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
                    record = writer.create_warc_record(
                        url, "response", payload=io.BytesIO(body), http_headers=http
                    )
                    sent = [(k, v) for k, v in response.request_info.headers.items()]
                    line = f"GET {response.url.raw_path_qs}"
                    asked = StatusAndHeaders(line, sent, protocol="HTTP/1.1", is_http_request=True)
                    request = writer.create_warc_record(
                        url, "request", payload=io.BytesIO(b""), http_headers=asked
                    )
                    writer.write_request_response_pair(request, record)
                    if response.status >= 400:
                        failures += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                failures += 1

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(work(session)) for _ in range(workers)]
        with open(path) as file:  # noqa: ASYNC230
            for line in file:
                await queue.put(line.strip())
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    out.close()
    return failures


if __name__ == "__main__":
    failed = uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    print(f"failures={failed}", file=sys.stderr)
