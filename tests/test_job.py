"""A job rebuilt from the journal is the job that was admitted: same bucket, same target."""

from __future__ import annotations

import pytest

from shoal.job import Job
from shoal.sources.lines import parse_line


@pytest.mark.parametrize(
    "url",
    [
        "http://H1.TEST:80/x",  # upper case, the default port
        "http://bücher.test/a",  # an IDNA host
        "http://[::1]:8/x",
        "http://a.test/%7e?q=%20",  # an escape made canonical
        "http://a.test/a/../c?x=%41",  # dot segments
        "http://a.test",  # no path: the same resource as "/"
        "http://a.test/p?q=1#part",  # a fragment, never sent
    ],
)
def test_a_restored_job_has_its_admitted_host_and_target(url: str) -> None:
    entry = parse_line(url.encode(), 1)
    assert entry is not None and entry.error is None
    admitted = Job.admit(7, entry)
    restored = Job.restore(7, entry.work, 1, None, 0)
    assert restored.host == admitted.host
    assert str(restored.target) == str(admitted.target)
