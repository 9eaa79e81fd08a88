"""A real DNS server for the tests: dnslib on 127.0.0.1 (UDP and TCP), a zone of names under
``.test`` chosen by their first label, and a count of every query it answers.

=================  ===============================================================
name               answer
=================  ===============================================================
``*.test``         A 127.0.0.1, no AAAA (TTL ``ttl``, 300 s unless set)
``ttlN-*.test``    the same with a TTL of N seconds
``v6-*.test``      AAAA ::1 only
``dual-*.test``    A 127.0.0.1 and AAAA ::1
``nx-*.test``      NXDOMAIN
``fail-*.test``    SERVFAIL
``refuse-*.test``  REFUSED
``slow-*.test``    A 127.0.0.1 after ``slow_s`` seconds (0.3 unless set)
``mute-*.test``    never answers
other names        NXDOMAIN
=================  ===============================================================
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Self

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self, ttl: int, slow_s: float) -> None:
        self.ttl = ttl
        self.slow_s = slow_s
        self.queries: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.peak = 0  # the most queries being answered at once
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries[(name, qtype)] += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            return self._answer(request, name, qtype)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, request: DNSRecord, name: str, qtype: str) -> DNSRecord:
        reply = request.reply()
        first = name.split(".", 1)[0]
        kind, _, rest = first.partition("-")
        if not name.endswith(".test") or kind == "nx":
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if kind == "fail":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if kind == "refuse":
            reply.header.rcode = RCODE.REFUSED
            return reply
        if kind == "mute":
            time.sleep(30)  # the client gives up long before
            return reply
        if kind == "slow":
            time.sleep(self.slow_s)
        ttl = self.ttl
        if kind.startswith("ttl") and kind[3:].isdigit() and rest:
            ttl = int(kind[3:])
        v4 = kind != "v6"
        v6 = kind in ("v6", "dual")
        if qtype == "A" and v4:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=ttl))
        if qtype == "AAAA" and v6:
            reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA("::1"), ttl=ttl))
        return reply

    def count(self, name: str) -> int:
        """Queries received for ``name``, all types."""
        with self._lock:
            return sum(n for (qname, _), n in self.queries.items() if qname == name)

    def total(self) -> int:
        with self._lock:
            return sum(self.queries.values())


class TestDNSServer:
    """``with TestDNSServer() as dns:`` serves :class:`Zone` on ``dns.address`` (HOST:PORT)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, *, ttl: int = 300, slow_s: float = 0.3) -> None:
        self.zone = Zone(ttl, slow_s)
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        for _ in range(20):  # the UDP port's number may be taken for TCP: try another
            self._udp = DNSServer(self.zone, address="127.0.0.1", port=0, logger=logger)
            port = self._udp.server.server_address[1]
            try:
                self._tcp = DNSServer(
                    self.zone, address="127.0.0.1", port=port, tcp=True, logger=logger
                )
                break
            except OSError:
                self._udp.server.server_close()
        else:
            raise OSError("no port free for both UDP and TCP")
        for server in (self._udp, self._tcp):
            # A handler still sleeping (mute-*) must not hold up the end of a test.
            server.server.daemon_threads = True
            server.server.block_on_close = False
        self.port: int = port
        self.address = f"127.0.0.1:{port}"

    def __enter__(self) -> Self:
        for server in (self._udp, self._tcp):
            serve = server.server.serve_forever
            # A short poll: shutdown() waits for it, at the end of every test.
            thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.02}, daemon=True)
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for server in (self._udp, self._tcp):
            server.server.shutdown()
            server.server.server_close()
