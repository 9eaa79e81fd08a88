"""The journal: the durable truth of a job, behind one small interface."""

from shoal.store.memory import MemoryStore
from shoal.store.sqlite import SQLiteStore
from shoal.store.store import (
    Claim,
    Committed,
    Completion,
    HostPace,
    JobCounts,
    JobState,
    Retrying,
    SinkMark,
    Store,
    WorkerState,
)

__all__ = [
    "Claim",
    "Committed",
    "Completion",
    "HostPace",
    "JobCounts",
    "JobState",
    "MemoryStore",
    "Retrying",
    "SQLiteStore",
    "SinkMark",
    "Store",
    "WorkerState",
]
