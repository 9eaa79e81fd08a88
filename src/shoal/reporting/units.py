"""Formatting sizes and durations for people."""

from __future__ import annotations

import math


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``; ``3700`` -> ``"1:01:40"``."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


#: The longest ETA worth a number: beyond it, an estimate says only that it is far off.
ETA_CAP_DAYS = 99


def format_eta(seconds: float) -> str:
    """An estimate of time left: ``75`` -> ``"1:15"``; over a day ``"2d 03h"``; beyond
    ``ETA_CAP_DAYS`` days ``">99d"``."""
    if not math.isfinite(seconds) or seconds >= ETA_CAP_DAYS * 86400 + 86400:
        return f">{ETA_CAP_DAYS}d"
    seconds = max(0.0, seconds)
    if seconds < 86400:
        return format_duration(seconds)
    days, rest = divmod(int(seconds + 0.5), 86400)
    return f"{days}d {rest // 3600:02d}h"


def parse_size(text: str) -> int:
    """``"50MiB"``, ``"1.5G"``, ``"1024"`` -> bytes. Units are powers of 1024."""
    cleaned = text.strip().lower().replace(" ", "")
    for suffix in ("ib", "b"):
        if cleaned.endswith(suffix) and len(cleaned) > len(suffix):
            cleaned = cleaned[: -len(suffix)]
            break
    scale = 1
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    if cleaned and cleaned[-1] in units:
        scale = units[cleaned[-1]]
        cleaned = cleaned[:-1]
    value = float(cleaned)  # raises ValueError for junk
    if not math.isfinite(value) or value < 0:
        raise ValueError("a size must be a finite number of bytes, not negative")
    return int(value * scale)
