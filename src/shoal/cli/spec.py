"""A job as a command specifies it: where it reads and writes, what it shows, and (for a
map, or a job kept on a shared store) what else it needs. A command builds one, once, from
its options, and hands it to :func:`shoal.cli.launch.launch`."""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal.cli.parsing import load_object
from shoal.config import Crawl, Limits, Network, Outputs, Politeness, RetryPolicy, Timeouts
from shoal.engine import Engine, Handler
from shoal.engine.calls import Function
from shoal.scheduling import Shard

if TYPE_CHECKING:
    from shoal.cli.reopen import RetryFailed
    from shoal.store.postgres import PostgresStore


@dataclass(frozen=True, slots=True)
class MapSpec:
    """What ``shoal map`` runs: the async function and how items are keyed and grouped,
    as the command line names them (names, so that worker processes load them too)."""

    function: str
    #: A field of the items (objects), or ``MODULE:NAME`` of a function of an item.
    key: str | None = None
    group: str | None = None
    timeout_s: float | None = None

    def load(
        self,
    ) -> tuple[Function, Callable[[Any], object] | None, Callable[[Any], object] | None]:
        """The function, the key and the group; ``ValueError`` says what cannot be had."""
        function = load_object(self.function)
        if not inspect.iscoroutinefunction(function):
            raise ValueError(f"{self.function!r} is not an async function")
        return function, _item_function(self.key), _item_function(self.group)


def _item_function(spec: str | None) -> Callable[[Any], object] | None:
    if spec is None:
        return None
    if ":" in spec:
        found = load_object(spec)
        if not callable(found):
            raise ValueError(f"{spec!r} is not a function")
        return found
    return operator.itemgetter(spec)


#: ``ctx.meta`` key: this command is a ``shoal worker`` joining a shared job.
WORKER = "shoal.worker"


@dataclass(frozen=True, slots=True)
class WorkerMode:
    """How a ``shoal worker`` joins a shared job."""

    #: Keep waiting for work once none is left (until stopped).
    wait: bool = False


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A job on a shared store (``--store``), as this command works on it."""

    dsn: str
    job: str
    #: Whether this command creates or continues the job and admits its input (not a
    #: ``shoal worker``).
    admit: bool
    wait: bool
    lease_ttl_s: float
    hold_s: float
    #: What the job keeps of the command that creates it (see ``cli.options.job_record``).
    options: dict[str, Any]
    #: Where the job's records go once it is complete (``-o``; ``None``: nowhere).
    output: str | None = None

    def open(self) -> PostgresStore:
        from shoal.store.postgres import PostgresStore

        return PostgresStore(
            self.dsn,
            self.job,
            admit=self.admit,
            wait=self.wait,
            lease_ttl_s=self.lease_ttl_s,
            hold_s=self.hold_s,
            options=self.options,
        )


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Where a job reads, writes and keeps its journal, and what it shows."""

    input: str
    output: str
    journal: str | None
    restart: bool
    progress: bool
    quiet: bool
    method: str = "GET"
    #: Seconds between plain progress lines when stderr is not a terminal.
    progress_interval_s: float = 5.0
    #: Serve the live dashboard here (``--dashboard``), and the token it asks for.
    dashboard: tuple[str, int] | None = None
    dashboard_token: str | None = None
    #: Requests given as arguments (a crawl's seeds), read instead of ``input`` when set.
    seeds: tuple[str, ...] | None = None
    #: A map's function and items' keys (``shoal map``): the input's lines are its items.
    map: MapSpec | None = None
    #: The shared store the job is kept in (``--store``); ``output`` is then written from
    #: the job once it is complete (``None``: not at all).
    store: StoreSpec | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """What a job's engine is made with (each worker process of ``--processes`` makes its
    own from these): :class:`shoal.Engine`'s parameters."""

    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    politeness: Politeness = field(default_factory=Politeness)
    network: Network = field(default_factory=Network)
    outputs: Outputs = field(default_factory=Outputs)
    fail_http: bool = False
    crawl: Crawl | None = None
    handler: Handler | None = None

    def engine(self, *, shard: Shard | None = None) -> Engine:
        return Engine(
            limits=self.limits,
            timeouts=self.timeouts,
            retry=self.retry,
            politeness=self.politeness,
            network=self.network,
            outputs=self.outputs,
            fail_http=self.fail_http,
            crawl=self.crawl,
            handler=self.handler,
            shard=shard,
        )


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as a command specifies it, built once from its options: the engine's
    settings, the job's places and what it shows, how many processes run it, and what
    ``--retry-failed`` sends again."""

    settings: EngineSettings
    options: JobOptions
    processes: int = 1
    retry: RetryFailed | None = None
