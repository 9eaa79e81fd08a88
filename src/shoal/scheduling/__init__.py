"""Deciding when each job runs: per-host slots, fair picking across hosts, retries; and
who may run what next (the work source: local, sharded, host leases)."""

from shoal.scheduling.hosts import HostControl, HostState
from shoal.scheduling.retry import parse_retry_after, retry_delay
from shoal.scheduling.rules import HostRule, HostRules
from shoal.scheduling.scheduler import Scheduler
from shoal.scheduling.shards import Shard, split
from shoal.scheduling.work import WorkSource, work_source

__all__ = [
    "HostControl",
    "HostRule",
    "HostRules",
    "HostState",
    "Scheduler",
    "Shard",
    "WorkSource",
    "parse_retry_after",
    "retry_delay",
    "split",
    "work_source",
]
