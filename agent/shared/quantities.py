"""Typed durations and sizes as written in config files: ``"30s"``, ``"5m"``, ``"50MB"``.

Both parsers are pure and raise ``ValueError`` with a message fit to show a user.
"""
from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``text`` such as ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"expected a duration such as \"30s\", \"5m\", \"1h\" (units ms, s, m, h, d), got {text!r}"
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes in ``text`` such as ``"512KB"``, ``"50MB"``, ``"1GiB"`` (KB = 1000 bytes, KiB = 1024)."""
    match = _SIZE_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"expected a size such as \"512KB\", \"50MB\", \"2GB\" (units B, KB, MB, GB, KiB, MiB, GiB), got {text!r}"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{int(round(seconds * 1000))}ms"


def format_size(size: int) -> str:
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
