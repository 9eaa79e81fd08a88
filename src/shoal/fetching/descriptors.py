"""Making sure the process may open a socket for every request in flight.

A fetcher that opens more sockets than the open-file limit allows fails mid-run with "Too
many open files", long after it started. shoal checks before the first request instead: it
raises the soft limit when the hard limit allows, and otherwise refuses to start, naming
the option to lower.
"""

from __future__ import annotations

import sys

from shoal.errors import ConfigError

#: Descriptors beyond one per connection: the journal and its WAL, the outputs, the input,
#: the event loop's own, DNS lookups and the interpreter's.
SPARE_DESCRIPTORS = 64


def descriptors_needed(connections: int) -> int:
    """How many open files ``connections`` requests in flight need, spare included."""
    return connections + SPARE_DESCRIPTORS


def ensure_descriptors(connections: int) -> None:
    """Raise the soft open-file limit to what ``connections`` need, or fail fast.

    Raises :class:`ConfigError` (option ``concurrency``) when the hard limit is too low.
    """
    if sys.platform == "win32":  # pragma: no cover - no RLIMIT_NOFILE there
        return
    import resource

    needed = descriptors_needed(connections)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            "concurrency",
            f"{connections} connections need about {needed} open files, but this process "
            f"may open at most {hard} (ulimit -n: soft {soft}, hard {hard}); lower the "
            "concurrency or raise the hard limit",
        )
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        raise ConfigError(
            "concurrency",
            f"{connections} connections need about {needed} open files; raising the limit "
            f"from {soft} failed: {exc}",
        ) from exc
