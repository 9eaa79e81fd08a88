"""Crawling a generated site: shoal crawl against Scrapy, in the same run.

Serves the tests' generated tree (``tests/site_server.py``: each page links to F new
pages, its parent, the root, itself, another host and a mailto address) from a process of
its own on 127.0.0.1, then crawls it from the root with each client in turn, each in a
process of its own with the same concurrency, same host only, breadth-first:

* shoal: ``shoal crawl`` (the frontier in its SQLite journal, every record written);
* scrapy: a ``CrawlSpider`` with a ``LinkExtractor`` (its queue and seen-set in memory);
* scrapy-jobdir: the same with ``JOBDIR`` (its resumable mode: queue and seen-set on disk).

Prints pages per second, CPU per page, peak RSS, and shoal's ratios to each. Then the cost
of link extraction alone on one page: shoal's ``extract_links`` against Scrapy's
``LinkExtractor`` on the same HTML (a generated page, and the largest page of the Flask
documentation tree when it is installed). No traffic leaves 127.0.0.1.

    python bench/crawl.py [--pages N] [--fanout F] [-c K] [--reps R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.site_server import TreeSite  # noqa: E402

DOC_TREE = Path("/usr/share/doc/python-flask-doc/html")


def command(client: str, seed: str, output: Path, concurrency: int, work: Path) -> list[str]:
    if client == "shoal":
        return [
            "shoal", "crawl", seed, "-o", str(output), "-q", "--progress", "off",
            "-c", str(concurrency), "--per-host", str(concurrency),
        ]  # fmt: skip
    peer = [sys.executable, str(ROOT / "bench/peers/scrapy_crawl.py"), seed, str(output)]
    peer.append(str(concurrency))
    if client == "scrapy-jobdir":
        peer += ["--jobdir", str(work / "jobdir")]
    return peer


def crawl(client: str, seed: str, concurrency: int) -> tuple[float, float, float, int]:
    """Seconds, CPU seconds, peak RSS (MiB) and records of one crawl."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-crawl-{client}-"))
    output = work / "out.jsonl"
    try:
        started = time.monotonic()
        process = subprocess.Popen(
            command(client, seed, output, concurrency, work), stdout=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in (0, 1):
            raise RuntimeError(f"{client} exited with {process.returncode}")
        records = output.read_bytes().count(b"\n")
        return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, records
    finally:
        shutil.rmtree(work, ignore_errors=True)


def extraction(html: str, url: str, number: int) -> tuple[float, float, int, int]:
    """µs per page for shoal's and Scrapy's extraction of ``html``, and links found."""
    from scrapy.http import HtmlResponse
    from scrapy.linkextractors import LinkExtractor

    from shoal.crawling.links import extract_links

    body = html.encode()
    extractor = LinkExtractor()

    def scrapy_links() -> int:
        response = HtmlResponse(url, body=body, encoding="utf-8")
        return len(extractor.extract_links(response))

    def shoal_links() -> int:
        return len(extract_links(html, url))

    ours = min(timeit.repeat(shoal_links, number=number, repeat=5)) / number * 1e6
    theirs = min(timeit.repeat(scrapy_links, number=number, repeat=5)) / number * 1e6
    return ours, theirs, shoal_links(), scrapy_links()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="shoal,scrapy,scrapy-jobdir")
    args = parser.parse_args()
    clients = args.clients.split(",")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.site_server", str(args.pages), str(args.fanout)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        seed = f"http://127.0.0.1:{port}/p/0"
        print(f"site: {args.pages:,} pages, fan-out {args.fanout}; concurrency {args.concurrency}")
        runs: dict[str, list[tuple[float, float, float, int]]] = {c: [] for c in clients}
        for rep in range(args.reps):
            for client in clients:  # interleaved, so drifts of the machine hit all alike
                result = crawl(client, seed, args.concurrency)
                runs[client].append(result)
                elapsed, cpu, rss, records = result
                print(
                    f"  rep {rep + 1} {client:14} {records:,} records in {elapsed:.2f} s,"
                    f" CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB"
                )
    finally:
        server.terminate()
        server.wait()
    print(f"\n{'client':14} {'pages/s':>9} {'CPU ms/page':>12} {'peak RSS':>10}")
    medians = {}
    for client, results in runs.items():
        rate = statistics.median(r[3] / r[0] for r in results)
        cpu = statistics.median(r[1] / r[3] * 1000 for r in results)
        rss = statistics.median(r[2] for r in results)
        medians[client] = (rate, cpu, rss)
        print(f"{client:14} {rate:9,.0f} {cpu:12.3f} {rss:8.0f} MiB")
    if "shoal" in medians:
        for client in clients:
            if client != "shoal":
                ours, theirs = medians["shoal"], medians[client]
                print(
                    f"shoal vs {client}: {ours[0] / theirs[0]:.2f}x the pages/s,"
                    f" {ours[1] / theirs[1]:.2f}x the CPU per page,"
                    f" {ours[2] / theirs[2]:.2f}x the peak RSS"
                )
    print("\nlink extraction alone, per page (shoal extract_links vs scrapy LinkExtractor):")
    site = TreeSite(pages=10**6, fanout=args.fanout)
    samples = [("generated page", site.html(12345, "127.0.0.1:8000"), "http://127.0.0.1:8000/p/1")]
    if DOC_TREE.is_dir():
        biggest = max(DOC_TREE.rglob("*.html"), key=lambda path: path.stat().st_size)
        samples.append(
            (f"flask docs {biggest.name}", biggest.read_text(), f"http://127.0.0.1/{biggest.name}")
        )
    for name, html, url in samples:
        ours, theirs, n_ours, n_theirs = extraction(html, url, 200 if len(html) > 100_000 else 2000)
        print(
            f"  {name} ({len(html) / 1024:.0f} KiB; links: shoal {n_ours}, scrapy {n_theirs},"
            " which keeps links to the page's own #fragments):"
            f" shoal {ours:.0f} µs, scrapy {theirs:.0f} µs, {theirs / ours:.1f}x faster"
        )


if __name__ == "__main__":
    main()
