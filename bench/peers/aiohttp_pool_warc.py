"""Peer: the bare aiohttp worker pool (:mod:`aiohttp_pool`) writing a WARC with warcio the
way a hand-written archiver does: after each response, a response record (status and
headers as aiohttp parsed them, the body as aiohttp decoded it) and a request record,
appended to one gzipped file on the event loop's thread. The baseline for ``--warc``.
"""

from __future__ import annotations

import io
import sys

import aiohttp
import uvloop
from aiohttp_pool import report, run_pool
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


async def main(path: str, workers: int, target: str) -> int:
    with open(target, "wb") as out:  # noqa: ASYNC230
        writer = WARCWriter(out, gzip=True, warc_version="1.1")

        async def archive(number: int, url: str, response: aiohttp.ClientResponse) -> None:
            body = await response.read()
            headers = [(k.decode(), v.decode()) for k, v in response.raw_headers]
            status = f"{response.status} {response.reason}"
            http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
            record = writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=http
            )
            sent = list(response.request_info.headers.items())
            line = f"GET {response.url.raw_path_qs}"
            asked = StatusAndHeaders(line, sent, protocol="HTTP/1.1", is_http_request=True)
            request = writer.create_warc_record(
                url, "request", payload=io.BytesIO(b""), http_headers=asked
            )
            writer.write_request_response_pair(request, record)

        return await run_pool(path, workers, archive)


if __name__ == "__main__":
    report(uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
