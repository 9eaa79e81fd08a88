"""What a run opens and closes around the engine's stages: its store, outputs and archive
module, and how a fault that ended the run is raised."""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from shoal.errors import ConfigError, ShoalError
from shoal.sinks import JsonlSink, Outputs, StreamSink
from shoal.sources import Source
from shoal.store import MemoryStore, SQLiteStore, Store


def warc_module() -> ModuleType:
    """The archive's module (its libraries come with the ``warc`` extra)."""
    try:
        from shoal.sinks import warc
    except ImportError as exc:
        raise ConfigError(
            "warc", f"needs the warc extra (pip install 'shoal[warc]'): {exc}"
        ) from exc
    return warc


def open_store(journal: str | Store | None, records: bool) -> Store:
    if journal is None:
        return MemoryStore(records=records)
    if isinstance(journal, Store):
        return journal
    return SQLiteStore(journal)


def absolute(path: str | None) -> str | None:
    return path if path is None or path == "-" else os.path.abspath(path)


def open_outputs(output: str | None) -> Outputs | None:
    if output is None:
        return None
    if output == "-":
        return Outputs([StreamSink(sys.stdout.buffer)])
    return Outputs([JsonlSink(output)])


async def close_all(store: Store, outputs: Outputs | None, source: Source) -> None:
    try:
        if outputs is not None:
            await outputs.close()
    finally:
        try:
            await store.close()
        finally:
            await source.aclose()


def raise_first(group: BaseExceptionGroup[Any]) -> None:
    """Re-raise the fault that ended a run as itself, not wrapped in a group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            raise_first(exc)
        if isinstance(exc, ShoalError):
            raise exc
    raise group.exceptions[0]
