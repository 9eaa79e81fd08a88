"""shoal: fetch very large lists of HTTP requests concurrently, politely and resumably.

import shoal
for result in shoal.fetch(["http://a.example/", "http://b.example/"], keep_body=True):
    print(result.url, result.status, result.text())

for outcome in shoal.map(lookup, names, group=domain_of, journal="names.db"):
    print(outcome.key, outcome.value, outcome.error)
"""

from typing import TYPE_CHECKING

from shoal.config import (
    Crawl,
    DNSSettings,
    HostPolicy,
    Limits,
    Network,
    Outputs,
    Politeness,
    Records,
    RetryPolicy,
    Timeouts,
)
from shoal.engine import Engine, Handler, fetch, map
from shoal.errors import ConfigError, JournalError, OutputError, Rejected, ShoalError
from shoal.fetching import CachingResolver, DNSStatistics, StaticResolver
from shoal.outcome import Outcome
from shoal.reporting import Latency, Statistics
from shoal.request import Request
from shoal.result import Error, ErrorKind, Result
from shoal.scheduling import HostState
from shoal.sources import FileSource
from shoal.version import __version__

if TYPE_CHECKING:
    from shoal.store.postgres import PostgresStore


def __getattr__(name: str) -> object:
    # The PostgreSQL store is imported when it is first asked for: its driver is an extra,
    # and a job on SQLite never loads it.
    if name == "PostgresStore":
        from shoal.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")


__all__ = [
    "CachingResolver",
    "ConfigError",
    "Crawl",
    "DNSSettings",
    "DNSStatistics",
    "Engine",
    "Error",
    "ErrorKind",
    "FileSource",
    "Handler",
    "HostPolicy",
    "HostState",
    "JournalError",
    "Latency",
    "Limits",
    "Network",
    "Outcome",
    "OutputError",
    "Outputs",
    "Politeness",
    "PostgresStore",
    "Records",
    "Rejected",
    "Request",
    "Result",
    "RetryPolicy",
    "ShoalError",
    "StaticResolver",
    "Statistics",
    "Timeouts",
    "__version__",
    "fetch",
    "map",
]
