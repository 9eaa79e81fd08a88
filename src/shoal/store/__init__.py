"""The journal: the durable truth of a job, behind one small interface."""

from shoal.store.memory import MemoryStore
from shoal.store.sqlite import SQLiteStore
from shoal.store.store import (
    Committed,
    Completion,
    JobCounts,
    JobState,
    Retrying,
    SinkMark,
    Store,
)

__all__ = [
    "Committed",
    "Completion",
    "JobCounts",
    "JobState",
    "MemoryStore",
    "Retrying",
    "SQLiteStore",
    "SinkMark",
    "Store",
]
