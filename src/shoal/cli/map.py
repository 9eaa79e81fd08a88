"""``shoal map``: an async Python function over every item of a JSON-lines file, as a job
(journal, resume, retries, per-group caps and pacing, progress, summary, dashboard,
``--processes``) like a fetch."""

from __future__ import annotations

import inspect

import click
import orjson
from rich.console import Console

from shoal.cli import logs
from shoal.cli.launch import job_places, launch, named_settings, process_count
from shoal.cli.options import run_options
from shoal.cli.parsing import Rate, load_exception
from shoal.cli.run import check_dashboard
from shoal.cli.spec import EngineSettings, JobSpec, MapSpec
from shoal.config import Limits, Politeness, RetryPolicy
from shoal.sources.lines import MAX_LINE_BYTES


@click.command(name="map")
@click.argument("function", metavar="MODULE:FUNCTION")
@click.argument("items", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--key",
    default=None,
    metavar="FIELD|MODULE:FUNCTION",
    help="Each item's identity (deduplication, the journal): this field of an object item, "
    "or what this function of the item returns. Default: the item's canonical JSON.",
)
@click.option(
    "--group",
    default=None,
    metavar="FIELD|MODULE:FUNCTION",
    help="Each item's group, which --per-group, --per-group-rate and --delay apply to. "
    "Default: none (only --concurrency bounds the calls).",
)
@click.option(
    "--per-group",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Calls in flight at once per group.",
)
@click.option(
    "--per-group-rate",
    type=Rate(),
    default=None,
    help="Calls started per group at most, e.g. 5/s or 30/m (smooth, not in bursts).",
)
@click.option(
    "--delay",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Least seconds between two calls started in one group.",
)
@click.option(
    "--timeout",
    default=None,
    type=click.FloatRange(min=0.001),
    help="Seconds a call may take; a longer one fails with kind timeout (retried).",
)
@click.option(
    "--retry-on",
    "retry_on",
    multiple=True,
    metavar="EXCEPTION",
    help="Retry a call that raises this exception class (a built-in name such as "
    "ConnectionError, or MODULE:NAME; repeatable). Other exceptions fail at once.",
)
@run_options
def map_command(
    function: str,
    items: str,
    key: str | None,
    group: str | None,
    per_group: int,
    per_group_rate: float | None,
    delay: float,
    timeout: float | None,
    retry_on: tuple[str, ...],
    output: str,
    journal: str | None,
    restart: bool,
    concurrency: int,
    retries: int,
    backoff: float,
    backoff_max: float,
    progress: str,
    progress_interval: float,
    processes: str,
    dashboard: tuple[str, int] | None,
    dashboard_token: str | None,
    quiet: bool,
    store: str | None,
    lease_ttl: float,
    lease_hold: float,
) -> None:
    """Call the async MODULE:FUNCTION on every item of ITEMS (JSON lines: one JSON value
    each; '-': stdin) and write one record per item to OUTPUT: its key, group, item,
    the value returned or the error (kind task and the exception's type and message),
    attempts and timings.

    An exception fails its item, never the run; a malformed line becomes an error record.
    The journal resumes the job where it stopped, even after a kill, and records each
    item once. MODULE is imported with the working folder on the path. With --store the
    job is shared by any number of workers (shoal worker, where MODULE imports too).
    """
    spec = MapSpec(function, key=key, group=group, timeout_s=timeout)
    try:
        spec.load()
        exceptions = tuple(load_exception(name) for name in retry_on)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if items != "-":
        check_first_item(items, spec)
    if dashboard is not None:
        check_dashboard(dashboard[0], dashboard_token)
    console = Console(stderr=True, soft_wrap=True, emoji=False)
    logs.use_console(console)
    settings = named_settings(
        lambda: EngineSettings(
            limits=Limits(concurrency=concurrency, per_host=per_group),
            retry=RetryPolicy(
                retries=retries,
                backoff_base_s=backoff,
                backoff_max_s=backoff_max,
                on_exceptions=exceptions,
            ),
            politeness=Politeness(per_second=per_group_rate, delay_s=delay),
        ),
        "map",
    )
    given = click.get_current_context().params
    options = job_places(items, given, console, input_label="ITEMS", map=spec)
    launch(JobSpec(settings, options, process_count(processes)), console)


#: How many lines the check of ``--key`` and ``--group`` looks through for a first item.
_FIRST_ITEM_LINES = 1000


def check_first_item(path: str, spec: MapSpec) -> None:
    """Try ``--key`` and ``--group`` on the first item of the file ``path`` (its first line
    that is a JSON value), before anything runs: a field the item lacks (a typo, say) would
    fail every item as ``invalid_item`` and fill the journal with them. A usage error names
    the option and lists the item's fields. (Stdin is not looked at: it is read once.)"""
    item = _first_item(path)
    if item is None:
        return
    _, key, group = spec.load()
    for option, named, function in (("--key", spec.key, key), ("--group", spec.group, group)):
        if named is None or function is None:
            continue
        if ":" not in named:
            if not isinstance(item, dict):
                raise click.BadParameter(
                    f"names a field ({named!r}), but the first item of {path} is not an"
                    f" object (a {type(item).__name__})",
                    param_hint=f"'{option}'",
                )
            if named not in item:
                fields = ", ".join(repr(name) for name in item) or "none"
                raise click.BadParameter(
                    f"the first item of {path} has no field {named!r} (its fields: {fields})",
                    param_hint=f"'{option}'",
                )
        try:
            value = function(item)
        except Exception as exc:  # (the user's function: said, not raised)
            raise click.BadParameter(
                f"{named} fails on the first item of {path}: {type(exc).__name__}: {exc}",
                param_hint=f"'{option}'",
            ) from exc
        if inspect.iscoroutine(value):
            value.close()  # (an async function: never awaited, so closed here)
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise click.BadParameter(
                f"{named} gives {type(value).__name__} for the first item of {path}, not a"
                " string or an integer",
                param_hint=f"'{option}'",
            )


def _first_item(path: str) -> object | None:
    """The first line of ``path`` that is a JSON value (``None``: none near the start, or
    the file cannot be read here: the run says why)."""
    try:
        with open(path, "rb") as file:
            for _ in range(_FIRST_ITEM_LINES):
                raw = file.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return None
                if not raw.strip() or len(raw) > MAX_LINE_BYTES:
                    continue
                try:
                    item: object = orjson.loads(raw)
                    return item
                except orjson.JSONDecodeError:
                    continue
    except OSError:
        return None
    return None
