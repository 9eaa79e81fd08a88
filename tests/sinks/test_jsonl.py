"""The JSONL file sink (cut back on resume) and the outputs that keep the sink mark."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.sinks import JsonlSink, Outputs, StreamSink
from shoal.store import SinkMark

LINES = [b'{"n":1}', b'{"n":2}', b'{"n":3}']


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[JsonlSink]:
    jsonl = JsonlSink(str(tmp_path / "out.jsonl"))
    try:
        yield jsonl
    finally:
        jsonl.close()


# -- JsonlSink --------------------------------------------------------------------------------


def test_open_none_creates_an_empty_file(tmp_path: Path, sink: JsonlSink) -> None:
    assert sink.open(None) is True
    assert (tmp_path / "out.jsonl").read_bytes() == b""
    assert sink.position() == 0


def test_open_none_truncates_an_existing_file(tmp_path: Path, sink: JsonlSink) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"old":1}\n{"old":2}\n')
    assert sink.open(None) is True
    assert path.read_bytes() == b""
    sink.write([b'{"new":1}'])
    assert path.read_bytes() == b'{"new":1}\n'


def test_write_appends_lines_and_tracks_the_position(tmp_path: Path, sink: JsonlSink) -> None:
    sink.open(None)
    sink.write(LINES[:2])
    sink.write([])
    sink.write(LINES[2:])
    expected = b"".join(line + b"\n" for line in LINES)
    assert (tmp_path / "out.jsonl").read_bytes() == expected
    assert sink.position() == len(expected)


def test_open_at_a_position_cuts_a_torn_tail(tmp_path: Path, sink: JsonlSink) -> None:
    path = tmp_path / "out.jsonl"
    good = b'{"n":1}\n{"n":2}\n'
    path.write_bytes(good + b'{"n":3, "tor')  # killed halfway through a line
    assert sink.open(len(good)) is True
    assert path.read_bytes() == good
    assert sink.position() == len(good)
    sink.write([b'{"n":3}'])
    assert path.read_bytes() == good + b'{"n":3}\n'


def test_open_at_a_position_drops_records_after_the_mark(tmp_path: Path, sink: JsonlSink) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3}\n')
    assert sink.open(8) is True
    assert path.read_bytes() == b'{"n":1}\n'


def test_open_at_the_exact_size_keeps_everything(tmp_path: Path, sink: JsonlSink) -> None:
    path = tmp_path / "out.jsonl"
    content = b'{"n":1}\n{"n":2}\n'
    path.write_bytes(content)
    assert sink.open(len(content)) is True
    sink.write([b'{"n":3}'])
    assert path.read_bytes() == content + b'{"n":3}\n'
    assert sink.position() == len(content) + 8


def test_open_at_a_position_past_a_shorter_file_returns_false(
    tmp_path: Path, sink: JsonlSink
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":1}\n')
    assert sink.open(100) is False
    # It starts over empty, ready for every record to be written again.
    assert path.read_bytes() == b""
    assert sink.position() == 0


def test_open_at_a_position_on_a_missing_file_returns_false(
    tmp_path: Path, sink: JsonlSink
) -> None:
    assert sink.open(50) is False
    assert (tmp_path / "out.jsonl").exists()
    assert sink.position() == 0


def test_close_is_idempotent(sink: JsonlSink) -> None:
    sink.open(None)
    sink.close()
    sink.close()
    assert sink.position() == 0


def test_stream_sink_writes_lines() -> None:
    stream = io.BytesIO()
    stream_sink = StreamSink(stream)
    assert stream_sink.open(12345) is True  # a stream cannot be cut back
    stream_sink.write(LINES)
    stream_sink.write([])
    assert stream.getvalue() == b'{"n":1}\n{"n":2}\n{"n":3}\n'
    assert stream_sink.position() == len(stream.getvalue())


# -- Outputs ----------------------------------------------------------------------------------


async def test_outputs_new_job(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"stale\n")
    outputs = Outputs([JsonlSink(str(path))])
    try:
        mark = await outputs.open(SinkMark(), resumed=False)
        assert mark == SinkMark()
        assert path.read_bytes() == b""
        after = await outputs.write([(1, LINES[0]), (2, LINES[1])])
        assert after == SinkMark(2, {"jsonl": 16})
        assert outputs.mark == after
        again = await outputs.write([(3, LINES[2])])
        assert again == SinkMark(3, {"jsonl": 24})
        assert await outputs.write([]) == again  # nothing written, mark unchanged
    finally:
        await outputs.close()
    assert path.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'


async def test_outputs_resume_cuts_back_to_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3}\n{"n":')
    outputs = Outputs([JsonlSink(str(path))])
    try:
        mark = SinkMark(2, {"jsonl": 16})
        assert await outputs.open(mark, resumed=True) == mark
        assert path.read_bytes() == b'{"n":1}\n{"n":2}\n'
        assert await outputs.write([(3, LINES[2])]) == SinkMark(3, {"jsonl": 24})
    finally:
        await outputs.close()
    assert path.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'


async def test_outputs_resume_with_a_lost_file_restarts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":1}\n')  # shorter than the mark: the output was cut or replaced
    outputs = Outputs([JsonlSink(str(path))])
    try:
        mark = await outputs.open(SinkMark(3, {"jsonl": 24}), resumed=True)
        assert mark == SinkMark(0, {"jsonl": 0})
        assert outputs.mark == mark
        assert path.read_bytes() == b""
        await outputs.write([(1, LINES[0])])
    finally:
        await outputs.close()
    assert path.read_bytes() == b'{"n":1}\n'


async def test_outputs_resume_with_a_missing_sink_in_the_mark_starts_it_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"left over\n")
    outputs = Outputs([JsonlSink(str(path))])
    try:
        # The mark knows no "jsonl" output: it holds nothing yet.
        mark = await outputs.open(SinkMark(0, {}), resumed=True)
        assert mark == SinkMark(0, {})
        assert path.read_bytes() == b""
    finally:
        await outputs.close()


async def test_outputs_write_to_every_sink(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    stream = io.BytesIO()
    outputs = Outputs([JsonlSink(str(path)), StreamSink(stream)])
    try:
        await outputs.open(SinkMark(), resumed=False)
        mark = await outputs.write([(7, LINES[0]), (8, LINES[1])])
    finally:
        await outputs.close()
    assert mark == SinkMark(8, {"jsonl": 16, "stream": 16})
    assert path.read_bytes() == stream.getvalue() == b'{"n":1}\n{"n":2}\n'
