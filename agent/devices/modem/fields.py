"""Splitting vendor AT answers into fields: the small pieces every vendor parser needs.

Pure; the only exception raised is :class:`AtParseError`.
"""
from __future__ import annotations

import re

from agent.devices.modem.errors import AtParseError

_DEC = re.compile(r"[+-]?[0-9]{1,12}", re.ASCII)


def prefixed_lines(text: str, prefix: str) -> list[str]:
    """The bodies of the lines starting with ``prefix`` (case-insensitive, colon included)."""
    if not isinstance(text, str):
        raise AtParseError(f"response must be text, got {type(text).__name__}")
    bodies = []
    for raw in text.replace("\r", "\n").split("\n"):
        line = raw.strip()
        if line[: len(prefix)].upper() == prefix:
            bodies.append(line[len(prefix):].strip())
    if not bodies:
        raise AtParseError(f"no {prefix} line in {text[:80]!r}")
    return bodies


def split_fields(body: str) -> list[str]:
    """Comma-separated fields; commas inside double quotes stay, quotes and blanks go."""
    fields, current, quoted = [], [], False
    for ch in body:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    fields.append("".join(current).strip())
    return fields


def field_at(row: list[str], index: int) -> str:
    """Field ``index`` of ``row``, or "" when the modem left it out."""
    return row[index] if 0 <= index < len(row) else ""


def int_within(text: str, low: int, high: int) -> int | None:
    """A decimal field inside [low, high], else None (placeholders such as "-" included)."""
    return int(text) if _DEC.fullmatch(text) and low <= int(text) <= high else None
