"""robots.txt: fetched once per origin, parsed with Protego, consulted before each request.

What a robots.txt answer means follows RFC 9309: a 2xx body holds the rules; a 4xx means
there are none (everything is allowed); a 5xx or no answer at all means the site is
unreachable, so everything is disallowed for now. That verdict is kept for a short while
only, and the requests it stopped fail with ``retry`` set, so the retry policy tries them
(and robots.txt) again later.

Only one request per origin fetches robots.txt; requests to the same origin that arrive
meanwhile wait for it. The cache is bounded: the least recently used origins are
forgotten first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from shoal.errors import Error, ErrorKind
from shoal.fetching.failures import classify
from shoal.fetching.transport import Outgoing, Transport, TransportFailure
from shoal.job import Job

if TYPE_CHECKING:
    from protego import Protego

#: Longest robots.txt read (RFC 9309 asks crawlers to read at least 500 KiB).
MAX_ROBOTS_BYTES = 512 * 1024
#: Origins remembered at most.
_CACHE_LIMIT = 10_000
#: How long an "unreachable" verdict stands before robots.txt is asked again.
_UNREACHABLE_TTL_S = 30.0


class _Verdict:
    __slots__ = ("expires", "problem", "rules")

    def __init__(
        self, rules: Protego | None, problem: str | None = None, expires: float = float("inf")
    ) -> None:
        self.rules = rules
        self.problem = problem
        self.expires = expires


class Robots:
    """The robots.txt rules of every origin a job meets.

    ``on_crawl_delay`` (optional) is called with a host and its ``Crawl-delay`` in seconds
    when robots.txt gives one for our user agent.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        user_agent: str,
        timeout_s: float,
        on_crawl_delay: Callable[[str, float], None] | None = None,
    ) -> None:
        self._transport = transport
        self._user_agent = user_agent
        self._timeout_s = timeout_s
        self._on_crawl_delay = on_crawl_delay
        self._verdicts: OrderedDict[str, _Verdict] = OrderedDict()
        self._pending: dict[str, asyncio.Future[_Verdict]] = {}
        self.fetched = 0

    async def check(self, job: Job) -> Error | None:
        """Why ``job`` may not be sent, or ``None`` when robots.txt allows it."""
        target = job.target
        if target is None:
            return None
        origin = str(target.origin())
        verdict = await self._verdict(origin, job.host)
        if verdict.rules is None:
            if verdict.problem is None:
                return None
            return Error(ErrorKind.ROBOTS, verdict.problem, retry=True)
        if verdict.rules.can_fetch(str(target), self._user_agent):
            return None
        return Error(ErrorKind.ROBOTS, f"disallowed by {origin}/robots.txt")

    async def _verdict(self, origin: str, host: str) -> _Verdict:
        verdict = self._verdicts.get(origin)
        if verdict is not None:
            if verdict.expires > time.monotonic():
                self._verdicts.move_to_end(origin)
                return verdict
            del self._verdicts[origin]
        pending = self._pending.get(origin)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Verdict] = asyncio.get_running_loop().create_future()
        self._pending[origin] = future
        try:
            verdict = await self._fetch(origin, host)
        except BaseException:
            # Cancelled (or a bug): whoever waits on this fetch retries later; nothing kept.
            future.set_result(_unreachable("robots.txt was not read"))
            raise
        finally:
            del self._pending[origin]
        future.set_result(verdict)
        self._verdicts[origin] = verdict
        if len(self._verdicts) > _CACHE_LIMIT:
            self._verdicts.popitem(last=False)
        return verdict

    async def _fetch(self, origin: str, host: str) -> _Verdict:
        url = f"{origin}/robots.txt"
        self.fetched += 1
        try:
            async with (
                asyncio.timeout(self._timeout_s),
                self._transport.exchange(Outgoing(method="GET", url=url)) as response,
            ):
                status = response.status
                if 400 <= status < 500:
                    return _Verdict(None)
                if status >= 500 or status < 200 or status >= 300:
                    return _unreachable(f"robots.txt answered HTTP {status}")
                body = await _first(response.chunks(), MAX_ROBOTS_BYTES)
        except TransportFailure as exc:
            return _unreachable(f"robots.txt unreachable ({exc.error.message})")
        except TimeoutError as exc:
            return _unreachable(f"robots.txt unreachable ({classify(exc).message})")
        from protego import Protego  # only jobs that read robots.txt load the parser

        rules = Protego.parse(body.decode("utf-8", errors="replace"))
        delay = rules.crawl_delay(self._user_agent)
        if delay is not None and self._on_crawl_delay is not None:
            self._on_crawl_delay(host, float(delay))
        return _Verdict(rules)


async def _first(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The first chunk of a body, cut at ``limit`` bytes (as robots.txt was always read)."""
    async for chunk in chunks:
        return chunk[:limit]
    return b""


def _unreachable(why: str) -> _Verdict:
    return _Verdict(
        None,
        f"{why}: the site counts as disallowed until it answers (RFC 9309)",
        time.monotonic() + _UNREACHABLE_TTL_S,
    )
