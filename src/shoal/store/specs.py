"""A job's journal form, shared by every store: how an admitted entry is kept (its *spec*),
and how a row of it becomes a job again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from shoal.job import Entry, Item, Job, Work
from shoal.request import decode_spec, encode_spec, request_from_fields, spec_fields
from shoal.result import Error, ErrorKind


def encode_entry(entry: Entry) -> bytes:
    """A request's journal form; an input error travels with it, so a resumed run writes
    the same error record. A mapped item's is the JSON array ``[key, group, value]`` (and
    the error's kind and message): no request's form starts with ``[``."""
    work = entry.work
    if isinstance(work, Item):
        fields: list[Any] = [work.key, work.group, work.value]
        if entry.error is not None:
            fields += [entry.error.kind.value, entry.error.message]
        return orjson.dumps(fields)
    if entry.error is None:
        return encode_spec(entry.request)
    spec = spec_fields(work)
    spec["error"] = [entry.error.kind.value, entry.error.message]
    return orjson.dumps(spec)


#: A job's row, its parent's spec beside it (``r`` the request, ``p`` its parent).
JOB_COLUMNS = "r.seq, r.line, r.spec, r.attempts, r.depth, p.spec"


#: One row of :data:`JOB_COLUMNS`.
JobRow = tuple[int, int | None, bytes, int, int, bytes | None]


def restore_jobs(rows: Sequence[JobRow]) -> list[Job]:
    """Jobs from rows of :data:`JOB_COLUMNS`."""
    jobs = []
    for seq, line, spec, attempts, depth, parent in rows:
        request, error = decode_work(spec)
        parent_url = None if parent is None else decode_spec(parent).url
        jobs.append(Job.restore(seq, request, line, error, attempts, depth, parent_url))
    return jobs


def decode_work(spec: bytes) -> tuple[Work, Error | None]:
    """The work a spec holds, and the input error it carries."""
    if spec.startswith(b"["):
        key, group, value, *error = orjson.loads(spec)
        return Item(value, key, group), Error(ErrorKind(error[0]), error[1]) if error else None
    if spec.startswith(b"{"):
        data = orjson.loads(spec)
        error = data.pop("error", None)
        request = request_from_fields(data)
        return request, None if error is None else Error(ErrorKind(error[0]), error[1])
    return decode_spec(spec), None
