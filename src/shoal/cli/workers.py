"""The commands of a job shared by workers (``--store``): ``shoal worker`` joins one, from
any machine, and ``shoal pause`` / ``shoal resume`` steer all of its workers at once."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from shoal.cli.fetch_options import job_options
from shoal.cli.parsing import check_store_url
from shoal.cli.run import run_async
from shoal.config import WORKER_OPTIONS
from shoal.errors import JournalError

#: How often ``shoal worker --wait`` looks for a job not made yet (seconds).
_WAIT_FOR_JOB_S = 0.5

#: The commands whose jobs a worker joins (by the name the job keeps).
_JOB_COMMANDS = frozenset({"fetch", "crawl", "map"})

#: A worker's own settings (the settings table's): everything else is the job's.
_WORKER_OWN = WORKER_OPTIONS


@click.command()
@job_options
@click.option(
    "--wait",
    is_flag=True,
    help="Keep waiting for work once none is left, until stopped (for input still to come);"
    " and for the job, if it is not made yet.",
)
@click.option(
    "--wait-for-job",
    is_flag=True,
    help="Wait for the job to be made if it is not yet; then work, and exit once no work is"
    " left (workers started before their job).",
)
def worker(wait: bool, wait_for_job: bool, **given: Any) -> None:
    """Work on a job kept in PostgreSQL (--store URL --job NAME) alongside any other
    workers, on this machine or others; exit once no work is left.

    The job's settings are the ones it was created with; this worker's own are its
    concurrency (-c), what it shows, and where it saves bodies and its web archive (its own
    files: --warc PREFIX becomes PREFIX.worker-MACHINE-PID-TAG-00000.warc.gz). Another
    value of any other option is refused. A job of shoal map imports its MODULE here too.
    """
    from shoal.cli.settings import use_host_tables
    from shoal.cli.spec import WORKER, WorkerMode
    from shoal.store.postgres.reader import MissingJob, PostgresReader

    ctx = click.get_current_context()
    if given["store"] is None:
        raise click.BadParameter("a worker needs the job's store", param_hint="'--store'")
    if not given["journal"]:
        raise click.BadParameter("a worker needs the job's name", param_hint="'--job'")

    async def read() -> dict[str, Any]:
        told = False
        while True:
            try:
                async with PostgresReader(given["store"], given["journal"], patience_s=60) as job:
                    return await job.options()
            except MissingJob:
                if not (wait or wait_for_job):
                    raise
            if not told:  # until it is made
                click.echo(f"shoal: waiting for job {given['journal']!r} to be made", err=True)
                told = True
            await asyncio.sleep(_WAIT_FOR_JOB_S)

    try:
        kept = run_async(read())
    except JournalError as exc:
        raise click.UsageError(str(exc)) from exc
    name = str(kept.get("command"))
    root = ctx.find_root()
    group = root.command
    command = (
        group.get_command(root, name)
        if name in _JOB_COMMANDS and isinstance(group, click.Group)
        else None
    )
    if command is None:
        raise click.UsageError(f"job {given['journal']!r} cannot be worked on by shoal worker")
    params = {name: _param(value) for name, value in kept["params"].items()}
    names = {param.name: param for param in ctx.command.params}
    takes = {param.name for param in command.params}
    for name, value in given.items():
        source = ctx.get_parameter_source(name)
        if source is None or source is click.core.ParameterSource.DEFAULT:
            continue
        if name not in takes:  # an option of a fetch given for a map, say
            if source is not click.core.ParameterSource.COMMANDLINE:
                continue  # (the machine's environment, meant for jobs of other kinds)
            raise click.BadParameter(
                f"job {given['journal']!r} is a {command.name} job, which has no such option",
                param_hint=f"'{_flag(names[name])}'",
            )
        if name in _WORKER_OWN:
            params[name] = value
        elif _param(value) != params.get(name):
            raise click.BadParameter(
                f"job {given['journal']!r} has {params.get(name)!r}; every worker applies"
                " the job's settings",
                param_hint=f"'{_flag(names[name])}'",
            )
    for name in ("store", "journal", "output"):
        params[name] = given[name]
    if kept.get("hosts"):
        tables, path = kept["hosts"]
        use_host_tables(ctx, tables, path)
    ctx.meta[WORKER] = WorkerMode(wait=wait)
    ctx.invoke(command, **params)


def _flag(option: click.Parameter) -> str:
    """An option's longest name (``--concurrency``, not ``-c``)."""
    names: list[str] = list(getattr(option, "opts", None) or [str(option.name)])
    return max(names, key=len)


def _param(value: Any) -> Any:
    """A parameter as kept with a job (lists for tuples) and as given, alike."""
    return tuple(_param(item) for item in value) if isinstance(value, list | tuple) else value


def _pausing(paused: bool) -> click.Command:
    """``shoal pause`` or ``shoal resume``: the whole of a shared job."""

    @click.option("--store", required=True, metavar="URL", help="The job's PostgreSQL database.")
    @click.option("--job", "job_name", required=True, help="The job's name.")
    def command(store: str, job_name: str) -> None:
        from shoal.cli.export import share_pause

        check_store_url(store)
        try:
            share_pause(store, job_name, paused)
        except JournalError as exc:
            raise click.UsageError(str(exc)) from exc

    command.__doc__ = (
        "Pause every worker of a job kept in PostgreSQL: each starts no new request within"
        " about a second (those in flight finish), and one that joins starts paused."
        if paused
        else "Resume every worker of a job kept in PostgreSQL after shoal pause (or a pause"
        " on any worker's dashboard)."
    )
    return click.command(name="pause" if paused else "resume")(command)


pause = _pausing(True)
resume = _pausing(False)
