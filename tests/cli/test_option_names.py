"""What the command line says names its own options: a limit's message gives the option
and the size as the user wrote them, not the library's field and a count of bytes."""

from __future__ import annotations

from tests.command import RESOLVE, shoal
from tests.servers import Misbehaving


async def test_a_body_over_the_limit_names_max_bytes(server: Misbehaving) -> None:
    url = server.url("/big?size=300000")
    done = await shoal(
        "fetch", *RESOLVE, "--max-bytes", "256KiB", "--retries", "0", stdin=f"{url}\n".encode()
    )
    assert done.code == 1, done.stderr
    [record] = done.records()
    assert record["error"] == {
        "kind": "too_large",
        "message": "body larger than --max-bytes (256 KiB)",
    }


# -- the one settings table ------------------------------------------------------------


#: The journal's entries that are value classes (their fields are settings of their own).
_CLASSES = {"limits", "timeouts", "retry", "politeness", "dns", "crawl", "records"}


def test_the_journals_copy_holds_exactly_the_tables_kept_settings() -> None:
    from shoal import Engine
    from shoal.config import SETTINGS

    copy = Engine()._description(None)
    found = {
        f"{name}.{field}" if name in _CLASSES else name
        for name, value in copy.items()
        for field in (value if name in _CLASSES else [None])
    }
    kept = {s.path for s in SETTINGS if s.kept and s.path is not None}
    assert found == kept


def test_every_option_of_a_job_command_is_named_by_the_table() -> None:
    import click

    from shoal.cli.main import cli
    from shoal.config import BY_PARAMETER, SETTINGS

    ctx = click.Context(cli)
    flags: set[str] = set()
    for name in ("fetch", "crawl", "map", "worker"):
        command = cli.get_command(ctx, name)
        assert command is not None
        for param in command.params:
            if not isinstance(param, click.Option) or param.name not in BY_PARAMETER:
                continue
            setting = BY_PARAMETER[param.name]
            flags.add(str(setting.flag))
            if name != "map":  # (a map names some of them by groups: --per-group …)
                assert setting.flag in param.opts, (name, param.opts, setting)
    fetch = cli.get_command(ctx, "fetch")
    assert fetch is not None
    for param in fetch.params:  # every option of a fetch that is a job's setting
        if isinstance(param, click.Option) and param.expose_value:
            assert param.name in BY_PARAMETER, param.opts
    assert flags == {s.flag for s in SETTINGS if s.flag is not None}


def test_a_workers_own_options_and_the_shared_settings_come_from_the_table() -> None:
    from shoal.cli.workers import _WORKER_OWN
    from shoal.config import SETTINGS, SHARED_SETTINGS, WORKER_OPTIONS
    from shoal.store import postgres

    assert _WORKER_OWN is WORKER_OPTIONS and vars(postgres)["SHARED_SETTINGS"] is SHARED_SETTINGS
    # The machine's network, its files, what it shows and where the job lives.
    assert {
        "concurrency",
        "progress",
        "progress_interval",
        "quiet",
        "dashboard",
        "dashboard_token",
        "save_bodies",
        "warc",
        "warc_max_size",
        "output",
        "store",
        "journal",
        "processes",
        "resolve",
        "dns_servers",
        "dns_min_ttl",
        "dns_max_ttl",
        "dns_concurrency",
        "proxy",
        "no_proxy_env",
        "ca_bundle",
        "transport",  # what sends a worker's requests changes no record
    } == WORKER_OPTIONS
    for setting in SETTINGS:  # every kept setting of the job's is checked
        if setting.kept and setting.path is not None and setting.whose == "job":
            assert setting.path in SHARED_SETTINGS
    for path in ("limits.per_host", "timeouts.total_s", "retry.retries", "user_agent"):
        assert path in SHARED_SETTINGS
    assert "limits.concurrency" not in SHARED_SETTINGS


def test_option_names_cover_the_library_settings_messages_name() -> None:
    from shoal.config import OPTION_NAMES, option_name

    assert option_name("max_bytes") == "--max-bytes"
    assert option_name("total_s") == "--timeout"
    assert option_name("on_statuses") == OPTION_NAMES["on_errors"] == "--retry-on"
    assert option_name("verify_tls") == "--insecure"
    assert option_name("hosts") == "--config"
    assert option_name("warc_max_size") == "--warc-max-size"
    assert option_name("dashboard") == "--dashboard"
    assert option_name("dead_probes") == "dead_probes"  # (no option sets it)
