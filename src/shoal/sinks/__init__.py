"""Writing committed records out: JSONL now; bodies and WARC later share the same mark."""

from shoal.sinks.jsonl import JsonlSink, StreamSink
from shoal.sinks.outputs import Outputs
from shoal.sinks.sink import Sink

__all__ = ["JsonlSink", "Outputs", "Sink", "StreamSink"]
