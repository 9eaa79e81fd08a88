"""The journal: the durable truth of a job, behind one small interface.

``store`` holds the interface the engine calls and the values it trades in; ``journal`` the
journal seam and record building; ``memory``, ``sqlite/`` and ``postgres/`` the stores;
``reader`` (with ``summary``, ``parts``) reading a job back, whatever keeps it (imported
when a command reads a job, not by a fetch's start-up).
"""

from shoal.store.journal import Journal, record_of
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
    "Journal",
    "MemoryStore",
    "Retrying",
    "SQLiteStore",
    "SinkMark",
    "Store",
    "WorkerState",
    "record_of",
]
