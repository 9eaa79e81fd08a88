"""How soon does a resumed job make its first new request?

Builds a job of N URLs (default 1,000,000) whose journal says 90% are done, exactly as a
real run leaves it (same store, same outputs, same sink mark), then runs
``shoal fetch`` on it against a local server and reports the time from starting the
command to the server's first request. Traffic goes only to 127.0.0.1.

    python bench/resume.py [--urls N] [--done FRACTION]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from shoal.sinks import JsonlSink, Outputs
from shoal.sources import FileSource
from shoal.store import SQLiteStore


async def build_job(urls: Path, output: Path, journal: Path, done_fraction: float) -> int:
    """Admit every URL, then commit the first ``done_fraction`` of them as fetched."""
    store = SQLiteStore(str(journal))
    source = FileSource(str(urls))
    outputs = Outputs([JsonlSink(str(output))])
    state = await store.open(source.name)
    mark = await outputs.open(state.mark, state.resumed)
    jobs = []
    while (entries := await source.read_batch(4096)) is not None:
        jobs.extend(await store.admit(entries, source.position))
    await store.finish_input()
    finished = int(len(jobs) * done_fraction)
    for start in range(0, finished, 4096):
        batch = []
        for job in jobs[start : min(start + 4096, finished)]:
            job.attempts = 1
            result = job.result(started_at=time.time())
            result.status, result.bytes, result.elapsed_ms = 200, 2, 1.0
            batch.append((job, result))
        records = await store.complete(batch, mark)
        mark = await outputs.write(records)
    await store.save_mark(mark)
    await outputs.close()
    await store.close()
    await source.aclose()
    return len(jobs) - finished


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--done", type=float, default=0.9)
    args = parser.parse_args()

    first_request: list[float] = []
    arrived = asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        if not first_request:
            first_request.append(time.monotonic())
            arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    folder = Path(tempfile.mkdtemp(prefix="shoal-resume-"))
    try:
        urls = folder / "urls.txt"
        with urls.open("w") as file:
            for number in range(args.urls):
                file.write(f"http://127.0.0.1:{port}/{number}\n")
        output = folder / "out.jsonl"
        journal = Path(str(output) + ".journal")
        built = time.monotonic()
        pending = await build_job(urls, output, journal, args.done)
        print(
            f"built a job of {args.urls:,} URLs, {pending:,} pending, "
            f"in {time.monotonic() - built:.1f} s",
            file=sys.stderr,
        )
        shoal = Path(sys.executable).parent / "shoal"
        command = [str(shoal) if shoal.exists() else "shoal", "fetch", str(urls)]
        command += ["-o", str(output), "--progress", "off", "-q"]
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(*command)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), 60)
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 60)
        if first_request:
            print(f"first new request {first_request[0] - started:.2f} s after the command started")
        else:
            print("no request within 60 s")
    finally:
        await runner.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
