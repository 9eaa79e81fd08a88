"""The settings every worker of a shared job must share, and how a job's settings decide
the buckets a map's items in no group are spread over."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from shoal.config import SHARED_SETTINGS
from shoal.errors import SettingsMismatch

#: The buckets a map's items in no group are spread over (so that many workers share them).
GROUPLESS_PARTS = 64


def check_shared(job: str, mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> None:
    """Refuse a worker of ``job`` whose shared settings (``mine``) differ from the job's
    (``theirs``, kept by its first worker)."""
    differences = tuple(
        found
        for path in SHARED_SETTINGS
        for found in _differences(path, _at(mine, path), _at(theirs, path))
    )
    if differences:
        raise SettingsMismatch(job, differences)


def groupless_parts(settings: Mapping[str, Any]) -> int:
    """The buckets a map's items in no group are spread over, by the job's ``settings``.

    A map's items in no group are one bucket to a single run, which only the concurrency
    bounds: here they are spread over buckets that workers lease apart. Unless that bucket
    is paced (a rate, a delay): those hold for the one bucket, across all workers, only if
    one worker at a time holds it."""
    every = _at(settings, "politeness.hosts") or {}
    paced = any(
        _at(policy, "per_second") or _at(policy, "delay_s")
        for policy in (_at(settings, "politeness"), every.get("*"))  # ("*": every bucket)
        if isinstance(policy, Mapping)
    )
    return 1 if paced else GROUPLESS_PARTS


def _at(settings: Mapping[str, Any], path: str) -> Any:
    value: Any = settings
    for name in path.split("."):
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


def _differences(path: str, mine: Any, theirs: Any) -> Iterator[tuple[str, Any, Any]]:
    """Each setting under ``path`` whose values differ, as its own path and both values
    (a per-host table, ``politeness.hosts``, as one)."""
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping) and path != "politeness.hosts":
        for name in sorted(set(mine) | set(theirs)):
            yield from _differences(f"{path}.{name}", mine.get(name), theirs.get(name))
    elif mine != theirs:
        yield path, mine, theirs
