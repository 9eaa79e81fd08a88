"""A crawl's web archive replays in pywb, the reference replay tool of the field.

pywb lives in a virtual environment of its own (its dependencies include brotlipy, whose
``brotli`` module would shadow Brotli's in shoal's environment): ``SHOAL_PYWB_BIN`` names
its ``bin`` folder, else ``wb-manager`` and ``wayback`` are looked for on the PATH.
``.ci/run`` makes that environment and sets ``SHOAL_REQUIRE_PYWB=1``, so CI fails rather
than skips here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

import aiohttp
import pytest

from tests.command import RESOLVE, finish, start
from tests.helpers import free_port, read_records
from tests.site_server import TreeSite


def _pywb_bin() -> Path | None:
    folder = os.environ.get("SHOAL_PYWB_BIN")
    if folder:
        return Path(folder)
    found = shutil.which("wb-manager")
    return None if found is None else Path(found).parent


PYWB = _pywb_bin()
pytestmark = pytest.mark.skipif(
    (PYWB is None or not (PYWB / "wayback").exists())
    and os.environ.get("SHOAL_REQUIRE_PYWB") != "1",
    reason="pywb is not installed (set SHOAL_PYWB_BIN to the bin folder of its environment)",
)


async def _manage(folder: Path, *args: str) -> None:
    assert PYWB is not None
    process = await asyncio.create_subprocess_exec(
        str(PYWB / "wb-manager"), *args, cwd=folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode(errors="replace")


async def test_every_page_of_a_crawl_replays_from_its_archive(tmp_path: Path) -> None:
    assert PYWB is not None and (PYWB / "wayback").exists(), "pywb is required here"
    site = TreeSite(pages=40, fanout=3)
    await site.start()
    try:
        output, prefix = tmp_path / "pages.jsonl", tmp_path / "archive" / "site"
        args = ("crawl", site.url(0), "-o", str(output), "--warc", str(prefix), "-q")
        done = await finish(await start(*args, *RESOLVE), within_s=60)
        assert done.code == 0, done.stderr
    finally:
        await site.stop()  # from here on, only the archive can answer
    records = read_records(output)
    assert len(records) == site.pages
    warcs = sorted((tmp_path / "archive").glob("site-*.warc.gz"))
    assert warcs
    await _manage(tmp_path, "init", "crawl")
    await _manage(tmp_path, "add", "crawl", *map(str, warcs))
    port = free_port()
    wayback = await asyncio.create_subprocess_exec(
        str(PYWB / "wayback"), "-p", str(port), "-b", "127.0.0.1",
        cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/crawl"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # up to 20 s for it to listen
                try:
                    async with session.get(base + "/") as response:
                        await response.read()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("pywb's wayback never listened")
            for record in records:
                # id_: the archived response as it was, not rewritten for the replay.
                async with session.get(f"{base}/2026id_/{record['url']}") as response:
                    body = await response.read()
                    assert response.status == record["status"] == 200, record["url"]
                    assert response.headers["Content-Type"].startswith("text/html")
                assert hashlib.sha256(body).hexdigest() == record["sha256"], record["url"]
            # A page the crawl never fetched is not in the archive.
            async with session.get(f"{base}/2026id_/{site.url(site.pages + 5)}") as response:
                assert response.status == 404
    finally:
        wayback.terminate()
        await wayback.wait()
