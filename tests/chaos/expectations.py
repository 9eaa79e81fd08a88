"""What shoal should make of each chaos plan, and the checks every chaos run must pass.

:func:`expect` replays a plan against the retry policy the way shoal documents it: each
attempt meets the plan's fault (or, once a transient fault has passed, a plain 200); an
attempt is retried while retries remain and its outcome is a retried error kind or status,
unless its ``Retry-After`` is longer than ``retry_after_max_s``. The result is the final
status and error kind, the attempts, the redirects and body of a response, and the requests
the server should have counted per ``(host, path)``.

One attempt at each fault, as shoal classifies it:

* a response: ``ok``, ``large``, ``gzip`` (200), ``not-found`` (404), ``status-5xx`` (that
  status), the three ``retry-after-*`` (429), ``redirect-cross-host`` (200 from the other
  host, after one redirect);
* ``reset``: ``reset-before-headers``, ``close-before-headers``, and after a 200's headers
  ``reset-after-headers`` and ``truncated``;
* ``timeout``: ``hang-before-headers``, ``never-accept``, and after a 200's headers
  ``trickle`` and ``hang-after-headers``;
* ``connect``: ``refused``;
* ``protocol``: ``bad-chunked``, ``bad-status-line``, ``bad-header``;
* ``too_large``: ``huge-header``, and after a 200's headers ``oversized`` and ``gzip-bomb``;
* ``too_many_redirects``: ``redirect-loop``; ``dns``: ``redirect-unresolvable``;
  ``unsupported_scheme``: ``redirect-ftp``.

With ``fail_http`` a final response outside 2xx fails as ``http_status``. With
``max_redirects=0`` redirects are not followed: the 302 itself is the answer.

Some outcomes depend on the order in which a host's requests complete, not on the plan
alone; :class:`Rule` names them, and :class:`Checker` checks those requests for what holds
in every order:

* ``GIVEN_UP``: after consecutive connection failures shoal parks a host, probes it, and
  gives it up; the requests still queued then fail unsent, with the attempts they had.
* ``RESENT``: up to two requests on the wire per attempt (aiohttp's own resend after a
  reset before the response, which shoal turns off; kept for checking a client that
  does not).
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from shoal import ErrorKind, Limits, RetryPolicy, Statistics, Timeouts
from tests.chaos.chaos_server import (
    SLOW,
    ChaosServer,
    Fault,
    Plan,
    gzip_payload,
    landed_body,
    large_body,
    ok_body,
    status_body,
    status_of,
)

_KIND_OF: Mapping[Fault, ErrorKind] = {
    Fault.RESET_BEFORE_HEADERS: ErrorKind.RESET,
    Fault.RESET_AFTER_HEADERS: ErrorKind.RESET,
    Fault.CLOSE_BEFORE_HEADERS: ErrorKind.RESET,
    Fault.TRUNCATED: ErrorKind.RESET,
    Fault.TRICKLE: ErrorKind.TIMEOUT,
    Fault.HANG_BEFORE_HEADERS: ErrorKind.TIMEOUT,
    Fault.HANG_AFTER_HEADERS: ErrorKind.TIMEOUT,
    Fault.NEVER_ACCEPT: ErrorKind.TIMEOUT,
    Fault.REFUSED: ErrorKind.CONNECT,
    Fault.BAD_CHUNKED: ErrorKind.PROTOCOL,
    Fault.BAD_STATUS_LINE: ErrorKind.PROTOCOL,
    Fault.BAD_HEADER: ErrorKind.PROTOCOL,
    Fault.HUGE_HEADER: ErrorKind.TOO_LARGE,
    Fault.OVERSIZED: ErrorKind.TOO_LARGE,
    Fault.GZIP_BOMB: ErrorKind.TOO_LARGE,
    Fault.REDIRECT_LOOP: ErrorKind.TOO_MANY_REDIRECTS,
    Fault.REDIRECT_UNRESOLVABLE: ErrorKind.DNS,
    Fault.REDIRECT_FTP: ErrorKind.UNSUPPORTED_SCHEME,
}
#: Failures that come after a 200's headers: the record keeps the status and final URL.
_AFTER_HEADERS = frozenset(
    {
        Fault.RESET_AFTER_HEADERS,
        Fault.TRUNCATED,
        Fault.TRICKLE,
        Fault.HANG_AFTER_HEADERS,
        Fault.OVERSIZED,
        Fault.GZIP_BOMB,
    }
)
_REDIRECTS = frozenset(
    {
        Fault.REDIRECT_LOOP,
        Fault.REDIRECT_CROSS_HOST,
        Fault.REDIRECT_UNRESOLVABLE,
        Fault.REDIRECT_FTP,
    }
)
_NO_SERVER = frozenset({Fault.NEVER_ACCEPT, Fault.REFUSED})
#: Statuses whose Retry-After pauses the whole host in shoal.
_PAUSING = frozenset({429, 503})
#: The longest ``Retry-After`` a chaos 429 asks for, except ``retry-after-too-long``'s hour.
RETRY_AFTER_S = 1.0
TOO_LONG_S = 3600.0


class Rule(enum.Enum):
    """Why a fault's outcome depends on more than its plan (see the module docstring)."""

    GIVEN_UP = "given-up"
    RESENT = "resent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The client settings the expectations depend on."""

    retries: int
    max_redirects: int
    retry_after_max_s: float
    backoff_max_s: float
    on_errors: frozenset[ErrorKind]
    on_statuses: frozenset[int]
    fail_http: bool = False

    def __post_init__(self) -> None:
        # Honour the short Retry-After values, refuse the hour-long ones.
        if not RETRY_AFTER_S < self.retry_after_max_s < TOO_LONG_S:
            raise ValueError("retry_after_max_s must lie between 1 s and an hour")

    @classmethod
    def of(cls, limits: Limits, retry: RetryPolicy, *, fail_http: bool = False) -> Settings:
        return cls(
            retries=retry.retries,
            max_redirects=limits.max_redirects,
            retry_after_max_s=retry.retry_after_max_s,
            backoff_max_s=retry.backoff_max_s,
            on_errors=retry.on_errors,
            on_statuses=retry.on_statuses,
            fail_http=fail_http,
        )


@dataclass(frozen=True, slots=True)
class Expected:
    """The final state a request should end in, and what the server should have seen."""

    plan: Plan
    #: The URL's host name (the one the per-host cap, pauses and parking apply to).
    host: str
    status: int | None
    kind: ErrorKind | None
    attempts: int
    redirects: int
    final_url: str | None
    #: The decoded body of the final response when the request succeeds.
    body: bytes | None
    #: Requests the server counts per ``(host, path)``, over all attempts.
    hits: Counter[tuple[str, str]]
    #: Attempts that end only on a client timeout (each holds a slot that long).
    slow_attempts: int
    #: The most the waits between this request's attempts can add up to.
    wait_s: float
    #: The most its answers can pause its host for (Retry-After on a 429 or 503).
    pause_s: float


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None
    kind: ErrorKind | None
    retry_after_s: float | None
    body: bytes | None
    redirects: int
    final_url: str | None


@cache
def _gzip_decoded() -> bytes:
    return zlib.decompress(gzip_payload(), wbits=31)


def _retry_after_s(plan: Plan, fault: Fault) -> float | None:
    """The wait a 429 of the chaos server asks for (see ``retry_after_value``)."""
    if fault is Fault.RETRY_AFTER_SECONDS or fault is Fault.RETRY_AFTER_DATE:
        return RETRY_AFTER_S if plan.variant % 4 == 0 else 0.0
    if fault is Fault.RETRY_AFTER_TOO_LONG:
        return TOO_LONG_S
    return None


def _attempt(server: ChaosServer, plan: Plan, fault: Fault, settings: Settings) -> _Attempt:
    url = server.url(plan.index)
    if fault in _REDIRECTS and settings.max_redirects == 0:
        return _Attempt(302, None, None, None, 0, url)
    if fault is Fault.REDIRECT_CROSS_HOST:
        landing = server.landing_url(plan.index)
        return _Attempt(200, None, None, landed_body(plan.index), 1, landing)
    kind = _KIND_OF.get(fault)
    if kind is not None:
        if fault in _AFTER_HEADERS:
            return _Attempt(200, kind, None, None, 0, url)
        return _Attempt(None, kind, None, None, 0, None)
    status = status_of(fault)
    if status is not None:
        return _Attempt(status, None, _retry_after_s(plan, fault), status_body(status), 0, url)
    bodies = {Fault.OK: ok_body(plan.index), Fault.LARGE: large_body(), Fault.GZIP: _gzip_decoded()}
    return _Attempt(200, None, None, bodies[fault], 0, url)


def origin(server: ChaosServer, index: int) -> tuple[str, str]:
    """The ``(host, path)`` the server counts the requests of ``index`` under."""
    return server.chaos.host(index), f"/c/{index}"


def _attempt_hits(
    server: ChaosServer, plan: Plan, fault: Fault, settings: Settings
) -> Counter[tuple[str, str]]:
    first = origin(server, plan.index)
    if fault in _NO_SERVER:
        return Counter()
    if fault is Fault.REDIRECT_LOOP and settings.max_redirects > 0:
        # The first request and every redirect followed; the one past the limit fails.
        return Counter({first: settings.max_redirects + 1})
    if fault is Fault.REDIRECT_CROSS_HOST and settings.max_redirects > 0:
        landing = (server.chaos.landing_host(plan.index), f"/c/{plan.index}/landed")
        return Counter({first: 1, landing: 1})
    return Counter({first: 1})


def expect(server: ChaosServer, index: int, settings: Settings) -> Expected:
    """The outcome request ``index`` of ``server`` should have under ``settings``."""
    plan = server.chaos.plan(index)
    hits: Counter[tuple[str, str]] = Counter()
    slow = 0
    wait_s = pause_s = 0.0
    attempts = 0
    while True:
        attempts += 1
        fault = plan.fault_at(attempts)
        outcome = _attempt(server, plan, fault, settings)
        hits.update(_attempt_hits(server, plan, fault, settings))
        slow += fault in SLOW
        after = outcome.retry_after_s
        if after is not None and outcome.status in _PAUSING:
            pause_s += min(after, settings.retry_after_max_s)
        retried = outcome.status in settings.on_statuses or outcome.kind in settings.on_errors
        if not retried or attempts > settings.retries:
            break
        if after is None:
            wait_s += settings.backoff_max_s
        elif after > settings.retry_after_max_s:
            break  # a Retry-After longer than allowed ends the retries
        else:
            wait_s += after
    kind = outcome.kind
    if kind is None and settings.fail_http and not 200 <= (outcome.status or 0) < 300:
        kind = ErrorKind.HTTP_STATUS
    return Expected(
        plan=plan,
        host=server.chaos.host_of(plan),
        status=outcome.status,
        kind=kind,
        attempts=attempts,
        redirects=outcome.redirects,
        final_url=outcome.final_url,
        body=outcome.body if kind is None else None,
        hits=hits,
        slow_attempts=slow,
        wait_s=wait_s,
        pause_s=pause_s,
    )


def time_bound_s(
    expected: Iterable[Expected],
    timeouts: Timeouts,
    *,
    concurrency: int,
    per_host: int,
    floor_rate: float,
    park_s: float = 0.0,
) -> float:
    """How long a run may take at most, from the timeouts and the plans (not measured).

    A slow attempt ends within ``timeouts.total_s``. The slow attempts of one host share its
    ``per_host`` slots, and a host waits out every pause its answers ask for; all slow
    attempts share ``concurrency`` slots. The busiest host, or all of them together,
    bound that time. Every request gets another ``1 / floor_rate`` seconds, a rate far below
    what a machine does for the fast ones. On top: the longest single request (each attempt
    at the total timeout, plus its retry waits), the time a host may stay parked before it
    is given up (``park_s``), and 5 s to start.
    """
    slow_by_host: Counter[str] = Counter()
    pause_by_host: defaultdict[str, float] = defaultdict(float)
    count = 0
    longest = 0.0
    for item in expected:
        count += 1
        slow_by_host[item.host] += item.slow_attempts
        pause_by_host[item.host] += item.pause_s
        longest = max(longest, item.attempts * timeouts.total_s + item.wait_s)
    busiest = max(
        (
            slow_by_host[host] * timeouts.total_s / per_host + pause_by_host[host]
            for host in slow_by_host
        ),
        default=0.0,
    )
    overall = sum(slow_by_host.values()) * timeouts.total_s / concurrency
    return max(busiest, overall) + count / floor_rate + longest + park_s + 5.0


# -- checking a run ----------------------------------------------------------------------------


@dataclass(slots=True)
class Problems:
    """Mismatches, grouped by where they were found, a few examples each and a count."""

    count: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        self.count += 1
        found = self.examples.setdefault(where, [])
        if len(found) < 3:
            found.append(text)

    def __bool__(self) -> bool:
        return self.count > 0

    def report(self) -> str:
        lines = [f"{self.count} mismatches"]
        for where, examples in sorted(self.examples.items()):
            lines.append(f"  {where}:")
            lines.extend(f"    {example}" for example in examples)
        return "\n".join(lines)


def index_of(url: str) -> int:
    """The request index of a chaos URL (``.../c/{index}``)."""
    return int(url.rsplit("/", 1)[1])


def read_output(data: bytes, problems: Problems) -> list[dict[str, Any]]:
    """The records of a finished run's JSONL output. A line that is not one whole JSON
    object, or a last line without its newline, is a torn line: a problem, not a record."""
    lines = data.split(b"\n")
    if lines[-1]:
        problems.add("torn", f"the output ends without a newline: {lines[-1][-80:]!r}")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            problems.add("torn", f"line {number} is not a JSON record: {line[:80]!r}")
    return records


@dataclass(slots=True)
class Tally:
    """Counts over the records of a run, the way :class:`Statistics` counts them."""

    done: int = 0
    ok: int = 0
    failed: int = 0
    retries: int = 0
    bytes: int = 0
    timed: int = 0
    by_error: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)

    def add(self, record: Mapping[str, Any]) -> None:
        self.done += 1
        self.retries += max(0, record["attempts"] - 1)
        self.bytes += record["bytes"]
        self.timed += record["elapsed_ms"] is not None
        error = record["error"]
        if error is None:
            self.ok += 1
        else:
            self.failed += 1
            self.by_error[error["kind"]] += 1
        if record["status"] is not None:
            self.by_status[f"{record['status'] // 100}xx"] += 1


class Checker:
    """Checks the final records of one run against the expectations, one record at a time.

    It keeps an attempt count per request and a :class:`Tally`, not the records. ``loose``
    names the faults checked by a :class:`Rule` instead of exactly. A record whose URL is
    not its index's URL (another host or port, or no chaos URL at all) is one for a request
    never given: a problem, and its index still wants its own record.
    """

    def __init__(
        self,
        server: ChaosServer,
        settings: Settings,
        *,
        loose: Mapping[Fault, Rule] | None = None,
        max_elapsed_ms: float | None = None,
    ) -> None:
        self.server = server
        self.settings = settings
        self.loose: Mapping[Fault, Rule] = loose or {}
        self.max_elapsed_ms = max_elapsed_ms
        self.problems = Problems()
        self.attempts: dict[int, int] = {}
        self.faults: Counter[str] = Counter()
        self.unsent = 0
        self.tally = Tally()

    def add(self, record: Mapping[str, Any]) -> None:
        url = record["url"]
        try:
            index = index_of(url)
        except ValueError:
            self.problems.add("unknown", f"a record for {url!r}, which no request has")
            return
        if url != self.server.url(index):
            self.problems.add(
                "unknown", f"#{index}: a record for {url!r}, not its URL {self.server.url(index)}"
            )
            return
        if index in self.attempts:
            self.problems.add("duplicates", f"#{index} has more than one final record")
            return
        self.attempts[index] = record["attempts"]
        self.tally.add(record)
        expected = expect(self.server, index, self.settings)
        fault = expected.plan.fault
        self.faults[fault] += 1
        identity = (record["line"], record["method"], record["id"])
        if identity != (index + 1, "GET", None):
            self.problems.add("identity", f"#{index}: (line, method, id) {identity}")
        rule = self.loose.get(fault)
        if rule is Rule.GIVEN_UP:
            self._check_given_up(record, expected)
        elif rule is Rule.RESENT:
            self._check_resent(record, expected)
        else:
            self._check(record, expected)

    def _label(self, expected: Expected) -> str:
        return f"#{expected.plan.index} (fails={expected.plan.fails})"

    def _check_timing(self, record: Mapping[str, Any], expected: Expected) -> None:
        elapsed = record["elapsed_ms"]
        where = str(expected.plan.fault)
        if elapsed is None or record["started_at"] is None:
            self.problems.add(where, f"{self._label(expected)}: no elapsed_ms or started_at")
        elif self.max_elapsed_ms is not None and elapsed > self.max_elapsed_ms:
            self.problems.add(
                where, f"{self._label(expected)}: its last attempt took {elapsed:.0f} ms"
            )

    def _check(self, record: Mapping[str, Any], expected: Expected) -> None:
        where = str(expected.plan.fault)
        label = self._label(expected)
        error = record["error"]
        got = (record["status"], None if error is None else error["kind"], record["attempts"])
        kind = None if expected.kind is None else expected.kind.value
        want = (expected.status, kind, expected.attempts)
        if got != want:
            self.problems.add(where, f"{label}: (status, kind, attempts) {got}, expected {want}")
            return
        self._check_timing(record, expected)
        redirects = (record["redirects"], record["final_url"])
        if redirects != (expected.redirects, expected.final_url):
            self.problems.add(
                where,
                f"{label}: (redirects, final_url) {redirects}, "
                f"expected {(expected.redirects, expected.final_url)}",
            )
        body = expected.body
        if body is not None:
            facts = (record["bytes"], record["sha256"])
            if facts != (len(body), hashlib.sha256(body).hexdigest()):
                self.problems.add(where, f"{label}: body {facts} is not the one served")

    def _check_given_up(self, record: Mapping[str, Any], expected: Expected) -> None:
        """The plan's failure, after the planned attempts or after fewer when the host was
        given up meanwhile (then not sent again, and the message says so)."""
        where = f"{expected.plan.fault} (host given up)"
        error = record["error"]
        attempts = record["attempts"]
        kind = None if expected.kind is None else expected.kind.value
        outcome = (record["status"], None if error is None else error["kind"])
        if outcome != (expected.status, kind) or not 0 <= attempts <= expected.attempts:
            self.problems.add(
                where, f"{self._label(expected)}: {outcome} after {attempts} attempts"
            )
        elif attempts < expected.attempts:
            self.unsent += 1
            # Each attempt it made failed and put it back for a retry, the last of which
            # the host's giving up refused: one retry more than attempts after the first.
            self.tally.retries += attempts > 0
            if "given up" not in error["message"]:
                self.problems.add(where, f"{self._label(expected)}: {error['message']!r}")
        else:
            self._check_timing(record, expected)

    def _check_resent(self, record: Mapping[str, Any], expected: Expected) -> None:
        """What holds whether or not an attempt was sent twice: a 200 or a reset, within
        the planned attempts."""
        where = f"{expected.plan.fault} (resent)"
        error = record["error"]
        attempts = record["attempts"]
        outcome = (record["status"], None if error is None else error["kind"])
        if outcome not in ((200, None), (None, ErrorKind.RESET.value)):
            self.problems.add(where, f"{self._label(expected)}: outcome {outcome}")
        if not 1 <= attempts <= expected.attempts:
            self.problems.add(where, f"{self._label(expected)}: {attempts} attempts")
        self._check_timing(record, expected)

    def finish(self, count: int) -> Problems:
        """After the run: every request once, and the server's counts agree."""
        missing = [index for index in range(count) if index not in self.attempts]
        if missing:
            self.problems.add("missing", f"{len(missing)} without a final record: {missing[:5]}")
        if len(self.attempts) != count:
            self.problems.add("count", f"{len(self.attempts)} final records for {count} requests")
        self._check_hits(count)
        return self.problems

    def _check_hits(self, count: int) -> None:
        hits = self.server.hits
        known: set[tuple[str, str]] = set()
        for index in range(count):
            expected = expect(self.server, index, self.settings)
            first = origin(self.server, index)
            keys = {first, *expected.hits}
            known |= keys
            where = f"server: {expected.plan.fault}"
            attempts = self.attempts.get(index, 0)
            rule = self.loose.get(expected.plan.fault)
            if rule is Rule.RESENT:
                if not attempts <= hits[first] <= 2 * attempts:
                    self.problems.add(
                        where, f"#{index}: {hits[first]} requests in {attempts} attempts"
                    )
                continue
            want = expected.hits
            if rule is Rule.GIVEN_UP and attempts < expected.attempts:
                # Sent as often as it was attempted; each attempt makes the planned requests.
                want = Counter({key: n * attempts // expected.attempts for key, n in want.items()})
            for key in keys:
                if hits[key] != want[key]:
                    self.problems.add(
                        where, f"#{index}: {key} requested {hits[key]} times, expected {want[key]}"
                    )
        stray = hits.keys() - known
        if stray:
            self.problems.add("server", f"requests no URL explains: {sorted(stray)[:5]}")
        if self.server.unexpected:
            self.problems.add("server", f"handler errors: {self.server.unexpected[:3]}")

    def check_statistics(self, stats: Statistics) -> None:
        """``Statistics`` of the run against the records it produced."""
        tally = self.tally
        facts: dict[str, tuple[object, object]] = {
            "done": (stats.done, tally.done),
            "ok": (stats.ok, tally.ok),
            "failed": (stats.failed, tally.failed),
            "retries": (stats.retries, tally.retries),
            "bytes": (stats.bytes, tally.bytes),
            "by_error": (dict(stats.by_error), dict(tally.by_error)),
            "by_status": (dict(stats.by_status), dict(tally.by_status)),
            "latency count": (stats.latency.count, tally.timed),
            "total": ((stats.total, stats.total_is_estimate), (tally.done, False)),
            "job": ((stats.job_ok, stats.job_failed), (tally.ok, tally.failed)),
            "left over": ((stats.in_flight, stats.queued, stats.waiting_retry), (0, 0, 0)),
            "skipped, duplicates": ((stats.skipped, stats.duplicates), (0, 0)),
            "interrupted": (stats.interrupted, False),
        }
        for name, (got, want) in facts.items():
            if got != want:
                self.problems.add("statistics", f"{name}: {got}, expected {want}")
