"""Where option values come from besides the command line: a TOML file and ``SHOAL_*``.

The command line wins, then the environment (``SHOAL_`` and the long option name in
capitals, dashes as underscores: ``SHOAL_PER_HOST_RATE=5/s``), then the config file
(``--config FILE`` or ``SHOAL_CONFIG``), then the built-in defaults.

A config file holds any long option by name, and a ``[hosts."PATTERN"]`` table per host
or host pattern with overrides for those hosts::

    concurrency = 200
    per-host-rate = "5/s"
    header = ["Accept: application/json"]

    [hosts."*.example.com"]
    per-host = 2
    rate = "1/s"
    delay = 0.5
    jitter = 0.2
    timeout = 10
    headers = { Authorization = "Bearer ..." }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from shoal.cli.parsing import parse_headers, parse_rate
from shoal.config import HostPolicy, Timeouts, check_host_pattern
from shoal.errors import ConfigError

ENV_PREFIX = "SHOAL_"
_HOSTS_META = "shoal.hosts"
_HOST_KEYS = (
    "per-host",
    "rate",
    "burst",
    "delay",
    "jitter",
    "timeout",
    "connect-timeout",
    "read-timeout",
    "headers",
)


def long_name(param: click.Parameter) -> str | None:
    """An option's long name without dashes (``per-host-rate``); ``None`` for arguments."""
    if not isinstance(param, click.Option):
        return None
    names = [opt for opt in param.opts if opt.startswith("--")]
    return names[0][2:] if names else None


def use_environment(command: click.Command) -> None:
    """Let every long option of ``command`` be set by ``SHOAL_<NAME>``."""
    for param in command.params:
        name = long_name(param)
        if name is not None and name not in {"help", "version"}:
            param.envvar = ENV_PREFIX + name.upper().replace("-", "_")


def load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The ``--config`` callback: read the file into the command's defaults."""
    if value is None:
        return None
    import tomllib  # only when a file is given: every start of the command is shorter

    hint = "'--config'"
    try:
        with open(value, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc.strerror}", param_hint=hint) from exc
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{value} is not valid TOML: {exc}", param_hint=hint) from exc
    options = {
        name: option
        for option in ctx.command.params
        if (name := long_name(option)) is not None and option.name is not None
    }
    defaults: dict[str, Any] = dict(ctx.default_map or {})
    for key, setting in data.items():
        if key == "hosts":
            _host_policies(setting, value, Timeouts())  # to report mistakes now
            ctx.meta[_HOSTS_META] = (setting, value)
            continue
        option = options.get(key.replace("_", "-"))
        if option is None or option.name is None or key.replace("_", "-") == "config":
            raise click.BadParameter(
                f"{value}: {key!r} is not an option of 'shoal {ctx.command.name}'",
                param_hint=hint,
            )
        if option.name == "headers" and isinstance(setting, Mapping):
            setting = [f"{header}: {text}" for header, text in setting.items()]
        elif option.multiple and isinstance(setting, str):
            setting = [setting]
        _check_value(ctx, option, key, setting, value)
        defaults[option.name] = setting
    ctx.default_map = defaults
    return value


def _check_value(
    ctx: click.Context, option: click.Parameter, key: str, setting: object, path: str
) -> None:
    """Convert a file's value as the command line would, so a bad one names the file."""
    values = setting if option.multiple and isinstance(setting, list) else [setting]
    if option.multiple and not isinstance(setting, list):
        raise _bad(path, f"{key}: expected a list, got {setting!r}")
    for item in values:
        if isinstance(item, Mapping | list):
            raise _bad(path, f"{key}: {item!r} is not a single value")
        try:
            option.type.convert(item, option, ctx)
        except click.BadParameter as exc:
            raise _bad(path, f"{key} (--{long_name(option)}): {exc.message}") from exc


def host_policies(ctx: click.Context, timeouts: Timeouts) -> dict[str, HostPolicy]:
    """The ``[hosts]`` tables of the config file, if one was read; a timeout a table does
    not set is the job's (``timeouts``)."""
    found = ctx.meta.get(_HOSTS_META)
    if found is None:
        return {}
    tables, path = found
    return _host_policies(tables, path, timeouts)


def host_tables(ctx: click.Context) -> tuple[Any, str] | None:
    """The config file's ``[hosts]`` tables as read, and the file's path (``None``: none)."""
    found = ctx.meta.get(_HOSTS_META)
    return None if found is None else (found[0], found[1])


def use_host_tables(ctx: click.Context, tables: Any, path: str) -> None:
    """Take ``[hosts]`` tables read elsewhere (a shared job's) as if from a config file."""
    ctx.meta[_HOSTS_META] = (tables, path)


def _host_policies(tables: object, path: str, timeouts: Timeouts) -> dict[str, HostPolicy]:
    if not isinstance(tables, Mapping):
        raise _bad(path, "'hosts' must be tables: [hosts.\"example.com\"]")
    policies: dict[str, HostPolicy] = {}
    for pattern, table in tables.items():
        where = f"[hosts.{pattern!r}]"
        if not isinstance(table, Mapping):
            raise _bad(path, f"{where} must be a table")
        unknown = sorted(set(table) - set(_HOST_KEYS))
        if unknown:
            raise _bad(
                path, f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_HOST_KEYS)})"
            )
        try:
            policies[check_host_pattern(str(pattern))] = _host_policy(table, timeouts)
        except (ConfigError, ValueError, TypeError) as exc:
            raise _bad(path, f"{where}: {exc}") from exc
    return policies


def _host_policy(table: Mapping[str, Any], base: Timeouts) -> HostPolicy:
    timeouts = None
    if any(key in table for key in ("timeout", "connect-timeout", "read-timeout")):
        timeouts = Timeouts(
            total_s=_or(_number(table, "timeout"), base.total_s),
            connect_s=_or(_number(table, "connect-timeout"), base.connect_s),
            read_s=_or(_number(table, "read-timeout"), base.read_s),
        )
    headers = table.get("headers")
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise ValueError('headers must be a table: { Name = "value" }')
        headers = parse_headers(tuple(f"{name}: {text}" for name, text in headers.items()))
    rate = table.get("rate")
    return HostPolicy(
        max_in_flight=_whole(table, "per-host"),
        per_second=None if rate is None else _rate(rate),
        burst=_whole(table, "burst"),
        delay_s=_number(table, "delay"),
        jitter=_number(table, "jitter"),
        timeouts=timeouts,
        headers=headers,
    )


def _rate(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"rate must be more than 0, got {value}")
        return float(value)
    return parse_rate(str(value))


def _number(table: Mapping[str, Any], key: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def _whole(table: Mapping[str, Any], key: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    return value


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _bad(path: str, message: str) -> click.BadParameter:
    return click.BadParameter(f"{path}: {message}", param_hint="'--config'")
