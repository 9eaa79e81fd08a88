"""What a finished job is: the public Result without the engine's internal fields, a mapped
call's Outcome without a response's stand-ins, and the error values below both."""

from __future__ import annotations

import dataclasses

import shoal
import shoal.errors
import shoal.result
from shoal.capture import Capture
from shoal.job import Job
from shoal.outcome import Finished, Outcome
from shoal.request import Request
from shoal.result import Result


def test_the_public_result_has_no_internal_fields() -> None:
    names = {field.name for field in dataclasses.fields(Result)}
    assert "body_file" not in names
    assert "capture" not in names
    assert not hasattr(Result(url="http://a.test/"), "body_file")


def test_a_fetch_carries_its_internal_fields_apart() -> None:
    job = Job(1, Request("http://a.test/x"), 3, None, None, "a.test")
    job.attempts = 2
    fetched = job.fetched(started_at=5.0)
    assert isinstance(fetched, Result)
    assert fetched.body_file is None and fetched.capture is None
    assert (fetched.url, fetched.line, fetched.attempts, fetched.started_at) == (
        "http://a.test/x",
        3,
        2,
        5.0,
    )
    fetched.capture = Capture(1024)
    assert "capture" not in repr(fetched) and "body_file" not in repr(fetched)
    # The record is the public Result's.
    assert fetched.to_record() == job.result(started_at=5.0).to_record()
    assert set(fetched.to_record()) == set(Result(url="http://a.test/x").to_record())


def test_an_outcome_passes_for_no_response() -> None:
    outcome = Outcome(key="k", value=1, attempts=1)
    for name in ("status", "headers", "bytes", "ttfb_ms"):
        assert not hasattr(outcome, name), name
    finished: list[Finished] = [outcome, Result(url="http://a.test/")]
    assert [item.ok for item in finished] == [True, True]


def test_error_values_live_in_errors_and_stay_importable() -> None:
    assert shoal.result.ErrorKind is shoal.errors.ErrorKind is shoal.ErrorKind
    assert shoal.result.Error is shoal.errors.Error is shoal.Error
    error = shoal.errors.Error(shoal.errors.ErrorKind.DNS, "no such host")
    assert error.to_record() == {"kind": "dns", "message": "no such host"}
