"""Human-friendly durations ("30s", "2h") and sizes ("1GB") used in lakesync.yaml."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_duration(value: str | int | float, *, zero: bool = False) -> float:
    """Seconds in a duration such as ``30s``, ``2h``, ``1.5m`` or a bare number of seconds
    (``zero``: ``0s`` is allowed)."""
    if isinstance(value, bool):
        msg = f"{value!r} is not a duration (use e.g. 30s, 5m, 2h)"
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueErrors as config problems
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            msg = f"{value!r} is not a duration (use e.g. 30s, 5m, 2h)"
            raise ValueError(msg)
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds < 0 or (seconds == 0 and not zero):
        msg = f"{value!r} must be a positive duration"
        raise ValueError(msg)
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes in a size such as ``1GB``, ``512MiB`` or a bare number of bytes."""
    if isinstance(value, bool):
        msg = f"{value!r} is not a size (use e.g. 512MB, 1GB)"
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueErrors as config problems
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if match is None:
            msg = f"{value!r} is not a size (use e.g. 512MB, 1GB)"
            raise ValueError(msg)
        size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if size <= 0:
        msg = f"{value!r} must be a positive size"
        raise ValueError(msg)
    return size


def format_size(size: int) -> str:
    """A short human-readable size, e.g. ``1.5 MB``."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def parse_fraction(value: str | int | float) -> float:
    """A share such as ``5%`` or ``0.05`` as a number between 0 and 1."""
    if isinstance(value, bool):
        msg = f"{value!r} is not a share (use e.g. 5% or 0.05)"
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueErrors as config problems
    if isinstance(value, str):
        text = value.strip()
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            msg = f"{value!r} is not a share (use e.g. 5% or 0.05)"
            raise ValueError(msg) from None
    else:
        share = float(value)
    if not 0 <= share <= 1:
        msg = f"{value!r} must be between 0% and 100%"
        raise ValueError(msg)
    return share


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2h``, ``7d`` (ago) or an ISO 8601 date/time (UTC when no offset is given)."""
    now = now or datetime.now(tz=UTC)
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*", text):
        return now - timedelta(seconds=parse_duration(text))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        msg = f"--since {text!r}: use a duration (2h, 7d) or an ISO date/time (2026-11-01, 2026-11-01T08:00)"
        raise ValueError(msg) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
