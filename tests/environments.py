"""The environment a test gives the ``shoal`` processes it starts: the caller's, less what
would change the command's behaviour behind the test's back.

The command reads every ``SHOAL_<OPTION>`` variable as an option value (``SHOAL_PER_HOST=1``
is ``--per-host 1``), so a variable set in the shell that runs the tests would change every
command-line test. Only the variables the tests themselves read pass through (no option
has their names, which a test checks); a test that wants an option from the environment
adds it itself. The variables that make rich treat a pipe as a terminal, or wrap at
another width, are dropped too.
"""

from __future__ import annotations

import os

#: Variables that make rich treat a pipe as a terminal, or change how it wraps.
TERMINAL_VARIABLES = frozenset(
    {"FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "LINES", "TERM"}
)
#: ``SHOAL_*`` variables read by the tests and the CI script, not by the command.
TEST_VARIABLES = frozenset(
    {
        "SHOAL_ARTIFACTS",
        "SHOAL_BENCH_POSTGRES",
        "SHOAL_NO_UNEXPECTED_SKIPS",
        "SHOAL_PYWB_BIN",
        "SHOAL_PYWB_ENV",
        "SHOAL_TEST_POSTGRES",
    }
)
#: ``SHOAL_REQUIRE_<WHAT>=1``: a missing tool fails its tests instead of skipping them.
REQUIRE_PREFIX = "SHOAL_REQUIRE_"


def passes(name: str) -> bool:
    """Whether the caller's variable ``name`` reaches a command a test starts."""
    if name in TERMINAL_VARIABLES:
        return False
    if not name.startswith("SHOAL_"):
        return True
    return name in TEST_VARIABLES or name.startswith(REQUIRE_PREFIX)


def inherited() -> dict[str, str]:
    """The caller's environment, less its option and terminal variables."""
    return {name: value for name, value in os.environ.items() if passes(name)}
