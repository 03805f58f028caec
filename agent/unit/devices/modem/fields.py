"""Splitting vendor AT answers into fields: the small pieces every vendor parser needs.

Pure; the only exception raised is :class:`AtParseError`.
"""
from __future__ import annotations

import re

from agent.unit.devices.modem.errors import AtParseError
from agent.shared.operators import THREE_DIGIT_MNC_MCCS, mnc_digits

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


_SEPARATED = re.compile(r"([0-9]{3})[ \-_]+([0-9]{2,3})", re.ASCII)
_JOINED = re.compile(r"([0-9]{3})([0-9]{2,3})", re.ASCII)


def split_plmn(plmn: str) -> tuple[str, str]:
    """``"51010"`` -> ("510", "10"); ``"310260"``, ``"310 260"``, ``"510-10"`` work too.

    The digits are kept as written: ``"51001"`` is ("510", "01").  A trailing ``F`` (the
    filler of a two-digit MNC in SIM encoding) is dropped.  Raises :class:`AtParseError` for
    anything that is not a PLMN, including MCC 000, which modems print when they have none,
    and a two-digit MNC in a country of three-digit ones.
    """
    if not isinstance(plmn, str):
        raise AtParseError(f"PLMN must be text, got {type(plmn).__name__}")
    text = plmn.strip().strip('"').strip()
    if text[-1:] in ("F", "f"):
        text = text[:-1]
    m = _SEPARATED.fullmatch(text) or _JOINED.fullmatch(text)
    if m is None:
        raise AtParseError(f"not a PLMN: {plmn!r}")
    mcc, mnc = m.group(1), m.group(2)
    if mcc == "000":
        raise AtParseError(f"no PLMN (MCC 000): {plmn!r}")
    if len(mnc) == 2 and int(mcc) in THREE_DIGIT_MNC_MCCS:
        raise AtParseError(f"MCC {mcc} uses three-digit MNCs: {plmn!r}")
    return mcc, mnc


_DIGITS = re.compile(r"[0-9]{1,3}", re.ASCII)


def printed_codes(mcc: str, mnc: str) -> tuple[str, str] | tuple[None, None]:
    """MCC and MNC a modem prints as two fields, as digits; ``(None, None)`` for anything
    else (a placeholder such as ``-``, MCC 000).

    A code printed with all its digits is kept as printed (``515,03``, ``310,260``).  An MNC
    printed as a bare number, with fewer digits than its country writes (``510,1``, the
    right-aligned columns of a Sierra screen), is written as the country writes it
    (:func:`agent.shared.operators.mnc_digits`): ``1`` is ``01`` in Indonesia, ``26`` is
    ``026`` in the USA.  An MCC is always three digits.
    """
    mcc, mnc = mcc.strip(), mnc.strip()
    if not _DIGITS.fullmatch(mcc) or not _DIGITS.fullmatch(mnc) or int(mcc) == 0:
        return None, None
    country = int(mcc)
    if len(mnc) == 3 or (len(mnc) == 2 and country not in THREE_DIGIT_MNC_MCCS):
        return f"{country:03d}", mnc
    return f"{country:03d}", mnc_digits(country, int(mnc))
