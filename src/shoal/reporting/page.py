"""The pieces of the report's page: its style, escaped text, tables and the way values are
written (see :mod:`shoal.reporting.report`)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

#: Longest error message or URL shown in a table cell, in characters.
_LONGEST = 300

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
margin:0 auto;max-width:1000px;padding:24px 20px 60px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;padding-top:8px;
border-top:1px solid #ddd}p{margin:6px 0}.sub{color:#555}.note{color:#666;font-size:13px}
.state{padding:10px 14px;border-radius:6px;margin:16px 0;font-weight:600}
.finished{background:#e7f4ec;color:#1f5c38}.incomplete{background:#fdf1de;color:#7a4b0c}
table{border-collapse:collapse;margin:8px 0;width:100%}
th,td{text-align:left;padding:4px 10px 4px 0;border-bottom:1px solid #eee;vertical-align:top}
th{font-weight:600;color:#444}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.t{word-break:break-all;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
table.kv th{width:30%;font-weight:normal;color:#555}
svg{width:100%;height:auto;display:block;margin:8px 0}
footer{margin-top:40px;color:#777;font-size:12px}
"""


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def table(
    heads: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Iterable[int] = (),
    text: Iterable[int] = (),
) -> str:
    numbers, texts = set(numeric), set(text)

    def cls(index: int) -> str:
        return ' class="n"' if index in numbers else ' class="t"' if index in texts else ""

    head = "".join(f"<th{cls(i)}>{escape(name)}</th>" for i, name in enumerate(heads))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{escape(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pairs(rows: Iterable[tuple[str, str]], *, text: bool = False) -> str:
    cell = ' class="t"' if text else ""
    body = "".join(
        f"<tr><th>{escape(name)}</th><td{cell}>{escape(value)}</td></tr>" for name, value in rows
    )
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    """Nested settings as ``(dotted.name, value)``, in the order they were kept."""
    if isinstance(value, dict) and value:
        for name, item in value.items():
            yield from flatten(f"{prefix}.{name}" if prefix else str(name), item)
    else:
        yield prefix, value


def value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value_text(item) for item in value) if value else "—"
    if isinstance(value, dict):
        return "—" if not value else orjson.dumps(value).decode()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def status_text(code: int | None) -> str:
    return "no response" if code is None else str(code)


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


def cut(text: str) -> str:
    return text if len(text) <= _LONGEST else text[: _LONGEST - 1] + "…"


def utc(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def plural(count: int, noun: str, plural: str | None = None) -> str:
    return noun if count == 1 else plural or noun + "s"
