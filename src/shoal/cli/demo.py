"""``shoal demo``: a local web server with a few named hosts, and a real job against it.

Everything runs on 127.0.0.1: the demo's host names are mapped to it by the resolver, just
as ``--resolve`` does. The job goes through the same code as ``shoal fetch``: input file,
journal, JSONL output, retries, progress and summary.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from collections import Counter

import orjson
from aiohttp import web
from rich.console import Console

from shoal.cli.run import EXIT_FAILED, EXIT_OK, run_job
from shoal.cli.spec import JobOptions
from shoal.config import Limits, Network, Timeouts
from shoal.engine import Engine

HOSTS = ("alpha.demo", "beta.demo", "gamma.demo", "delta.demo", "epsilon.demo")
_KINDS = (
    ("page", 60),
    ("slow", 10),
    ("flaky", 8),
    ("missing", 8),
    ("moved", 8),
    ("large", 4),
)
#: Lines that are not requests: each must come back as one error record.
BAD_LINES = ("htp:/broken-link", "ftp://files.demo/archive.zip", '{"url": 42}')


def demo_app(seed: int = 7) -> web.Application:
    """The demo server: pages, slow pages, flaky pages (503 once), 404s, redirects."""
    rng = random.Random(seed)
    flaky_seen: set[str] = set()

    async def page(request: web.Request) -> web.Response:
        await asyncio.sleep(rng.uniform(0, 0.02))
        number = request.match_info["n"]
        body = f"<html><body><h1>{request.host} page {number}</h1>{'<p>shoal</p>' * 60}"
        return web.Response(text=body + "</body></html>", content_type="text/html")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(rng.uniform(0.1, 0.4))
        return web.Response(text="slow but fine")

    async def flaky(request: web.Request) -> web.Response:
        key = request.host + request.path
        if key not in flaky_seen:
            flaky_seen.add(key)
            return web.Response(status=503, text="busy, come back", headers={"Retry-After": "0"})
        return web.Response(text="fine the second time")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such page")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"/page/{request.match_info['n']}")

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 256 * 1024, content_type="application/octet-stream")

    app = web.Application()
    for name, handler in (
        ("page", page),
        ("slow", slow),
        ("flaky", flaky),
        ("missing", missing),
        ("moved", moved),
        ("large", large),
    ):
        app.router.add_get(f"/{name}/{{n}}", handler)
    return app


def demo_lines(count: int, port: int, seed: int = 7) -> list[str]:
    """``count`` input lines: mostly URLs, a few duplicates, bad lines and a comment."""
    rng = random.Random(seed)
    kinds = [name for name, weight in _KINDS for _ in range(weight)]
    urls = [
        f"http://{rng.choice(HOSTS)}:{port}/{rng.choice(kinds)}/{number}"
        for number in range(count - len(BAD_LINES) - count // 50)
    ]
    duplicates = rng.sample(urls, count // 50)
    lines = ["# shoal demo input: one URL (or JSON object) per line", *urls, *duplicates]
    lines[1:] = rng.sample(lines[1:], len(lines) - 1)
    for bad in BAD_LINES:
        lines.insert(rng.randrange(1, len(lines)), bad)
    return lines


async def run_demo(count: int, output: str | None, progress: bool, console: Console) -> int:
    """Serve the demo hosts, fetch ``count`` URLs from them, and check every line came back."""
    runner = web.AppRunner(demo_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        with tempfile.TemporaryDirectory(prefix="shoal-demo-") as folder:
            input_path = os.path.join(folder, "urls.txt")
            lines = demo_lines(count, port)
            await asyncio.to_thread(_write_lines, input_path, lines)
            records_path = output or os.path.join(folder, "results.jsonl")
            console.print(
                f"[bold]shoal demo[/]: {len(lines) - 1:,} input lines for {len(HOSTS)} hosts "
                f"served on 127.0.0.1:{port} (some slow, some flaky, a few broken lines)"
            )
            engine = Engine(
                limits=Limits(concurrency=50, per_host=10),
                timeouts=Timeouts(total_s=10),
                network=Network(resolve=dict.fromkeys(HOSTS, "127.0.0.1")),
            )
            options = JobOptions(
                input=input_path,
                output=records_path,
                journal=records_path + ".journal",
                restart=True,
                progress=progress,
                quiet=False,
            )
            code = await run_job(engine, options, console)
            if code not in (EXIT_OK, EXIT_FAILED):
                return code
            return _check(lines, records_path, output is not None, console)
    finally:
        await runner.cleanup()


def _write_lines(path: str, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def _check(lines: list[str], records_path: str, kept: bool, console: Console) -> int:
    """Every distinct input line has exactly one record; only the bad lines failed."""
    expected = {line for line in lines[1:]}
    with open(records_path, "rb") as file:
        records = [orjson.loads(line) for line in file]
    seen = Counter(record["url"] for record in records)
    failures = sorted(r["url"] for r in records if r["error"] is not None)
    bad = sorted(BAD_LINES)  # each bad line's record keeps the line's own text
    problems = []
    if len(records) != len(expected) or any(n != 1 for n in seen.values()):
        problems.append(f"{len(records)} records for {len(expected)} distinct lines")
    if failures != bad:
        problems.append(f"unexpected failures: {failures[:5]}")
    if problems:
        console.print(f"[red]demo check failed: {'; '.join(problems)}[/]")
        return EXIT_FAILED
    where = f" in {records_path}" if kept else ""
    console.print(
        f"[green]demo check passed[/]: {len(records):,} records{where}, one per distinct input "
        f"line; the only failures are the {len(BAD_LINES)} deliberately broken lines."
    )
    return EXIT_OK
