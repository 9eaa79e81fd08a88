"""Deciding when each job runs: per-host slots, fair picking across hosts, retries."""

from shoal.scheduling.retry import parse_retry_after, retry_delay
from shoal.scheduling.scheduler import Scheduler
from shoal.scheduling.shards import Shard, split

__all__ = ["Scheduler", "Shard", "parse_retry_after", "retry_delay", "split"]
