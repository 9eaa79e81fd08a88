"""Deciding when each job runs: per-host slots, fair picking across hosts, retries."""

from shoal.scheduling.hosts import HostControl, HostRule, HostRules, HostState
from shoal.scheduling.retry import parse_retry_after, retry_delay
from shoal.scheduling.scheduler import Scheduler
from shoal.scheduling.shards import Shard, split

__all__ = [
    "HostControl",
    "HostRule",
    "HostRules",
    "HostState",
    "Scheduler",
    "Shard",
    "parse_retry_after",
    "retry_delay",
    "split",
]
