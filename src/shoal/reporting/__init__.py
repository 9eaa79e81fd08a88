"""Counting what happens and showing it: statistics snapshots, progress, the summary.

The display modules (``progress``, ``summary``) load rich; they are imported by the command
line only, so a library user does not pay for them.
"""

from shoal.latency import Latency
from shoal.reporting.statistics import Recorder, Statistics

__all__ = ["Latency", "Recorder", "Statistics"]
