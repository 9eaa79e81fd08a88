"""The shared journal: one job in PostgreSQL, worked on by any number of workers at once
(see :mod:`shoal.store.postgres.store`). Importing it needs no asyncpg; using it does."""

from shoal.config import SHARED_SETTINGS
from shoal.store.postgres.settings import GROUPLESS_PARTS
from shoal.store.postgres.store import PostgresStore

__all__ = ["GROUPLESS_PARTS", "SHARED_SETTINGS", "PostgresStore"]
