"""Reading input lazily: lines of text or JSON from a file or stdin, or any iterable."""

from shoal.sources.items import ItemKeys, IterableSource, entry_for
from shoal.sources.lines import FileSource, parse_line
from shoal.sources.source import Position, Source

__all__ = [
    "FileSource",
    "ItemKeys",
    "IterableSource",
    "Position",
    "Source",
    "entry_for",
    "parse_line",
]
