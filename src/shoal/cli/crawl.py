"""``shoal crawl``: follow links from seeds, with every option of ``fetch``."""

from __future__ import annotations

from typing import Any

import click

from shoal.cli.fetch_options import job_options
from shoal.cli.launch import start_job
from shoal.cli.options import setting_flag
from shoal.config import SCOPES, Crawl
from shoal.errors import ConfigError


@click.command()
@click.argument("seeds", nargs=-1, metavar="SEED...")
@click.option(
    "--seeds",
    "seeds_file",
    default=None,
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Read the seeds from this file (URLs or JSON objects, one a line; '-': stdin) "
    "instead of the arguments.",
)
@click.option(
    "--max-depth",
    type=click.IntRange(min=0),
    default=None,
    help="Follow links this many steps from a seed at most (0: the seeds alone).",
)
@click.option(
    "--max-requests",
    type=click.IntRange(min=1),
    default=None,
    help="Stop admitting links once the job holds this many requests (seeds included).",
)
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default="same-host",
    show_default=True,
    help="Follow a link only within the page's host, registrable domain (by the public "
    "suffix list), origin, or anywhere.",
)
@click.option(
    "--include",
    multiple=True,
    metavar="REGEX",
    help="Follow only links whose URL matches one of these (repeatable).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="REGEX",
    help="Never follow links whose URL matches this (repeatable).",
)
@click.option(
    "--assets",
    is_flag=True,
    help="Also fetch pages' images, scripts, stylesheets, icons and media.",
)
@click.option(
    "--sitemaps",
    is_flag=True,
    help="Also seed from each seed site's robots.txt Sitemap: lines and /sitemap.xml "
    "(urlsets, indexes, gzipped; fetched and recorded like any request).",
)
@job_options
def crawl(
    seeds: tuple[str, ...],
    seeds_file: str | None,
    max_depth: int | None,
    max_requests: int | None,
    scope: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    assets: bool,
    sitemaps: bool,
    **options: Any,
) -> None:
    """Crawl from each SEED: fetch it, follow the links of its HTML pages, and so on.

    Records go to OUTPUT as JSON lines, each with its depth and parent. The frontier lives
    in the job's journal: running the same command again resumes the crawl, even after a
    kill, and no page is fetched or recorded twice.
    """
    if bool(seeds) == (seeds_file is not None):
        raise click.UsageError("give the seeds as arguments or with --seeds FILE (one of them)")
    try:
        rules = Crawl(
            max_depth=max_depth,
            max_requests=max_requests,
            scope=scope,
            include=include,
            exclude=exclude,
        )
    except ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint=f"'{setting_flag(exc.option)}'") from exc
    from shoal.crawling.links import LinkFollower  # its parsers load for a crawl alone

    follower = LinkFollower(assets=assets, sitemaps=sitemaps)
    if seeds_file is not None:
        start_job(seeds_file, options, crawl=rules, handler=follower, input_label="--seeds")
    start_job("<seeds>", options, crawl=rules, handler=follower, seeds=seeds)
