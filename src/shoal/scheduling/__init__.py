"""Deciding when each job runs: per-host slots, fair picking across hosts, retries."""

from shoal.scheduling.retry import parse_retry_after, retry_delay
from shoal.scheduling.scheduler import Scheduler

__all__ = ["Scheduler", "parse_retry_after", "retry_delay"]
