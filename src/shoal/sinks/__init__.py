"""Writing what a job keeps: its committed records (JSONL, :mod:`.outputs`), and its
responses' bodies and WARC captures (:mod:`.artifacts`), all behind the journal's mark."""

from shoal.sinks.jsonl import JsonlSink, StreamSink
from shoal.sinks.outputs import Outputs
from shoal.sinks.sink import Sink

__all__ = ["JsonlSink", "Outputs", "Sink", "StreamSink"]
