"""The embedded journal: one SQLite file per job (``journal``: the store the engine
writes; ``schema``: its tables; ``reader``: reading it back without touching it)."""

from shoal.store.sqlite.journal import SQLiteStore
from shoal.store.sqlite.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
