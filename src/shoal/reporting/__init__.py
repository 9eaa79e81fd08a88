"""Counting what happens and showing it: statistics snapshots, progress, the summary."""

from shoal.reporting.progress import Progress
from shoal.reporting.statistics import Latency, Recorder, Statistics
from shoal.reporting.summary import render_summary

__all__ = ["Latency", "Progress", "Recorder", "Statistics", "render_summary"]
