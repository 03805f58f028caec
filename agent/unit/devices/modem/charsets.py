"""Text in the character sets a modem prints strings in (TS 27.007 5.5, ``AT+CSCS``).

Operator names in ``+COPS`` answers, like every string parameter, are printed in the
character set ``AT+CSCS`` selects: ``"IRA"`` (ASCII) on most modems, but some firmware
starts in ``"UCS2"`` (each character as four hex digits, u-blox LARA: ``"004D006F..."``) or
``"GSM"`` (the 3GPP TS 23.038 default alphabet, one byte per character, so that ``@`` on
the line is an inverted exclamation mark).  Pure functions; nothing here raises.
"""
from __future__ import annotations

import re

from agent.shared.gsm_alphabet import ESCAPE as _ESCAPE, GSM_BASIC, GSM_EXTENSION

__all__ = ["decode", "gsm_default", "normalise_charset", "ucs2"]

_HEX = re.compile(r"(?:[0-9A-Fa-f]{4})+", re.ASCII)


def normalise_charset(name: str | None) -> str | None:
    """``"ucs2"``, ``'"UCS2"'`` -> ``"UCS2"``; None for nothing."""
    if name is None:
        return None
    value = name.strip().strip('"').strip().upper()
    return value or None


def ucs2(value: str) -> str | None:
    """``value`` decoded from UCS2 hex (``"0054004C"`` -> ``"TL"``), or None when it is not that."""
    if not _HEX.fullmatch(value):
        return None
    try:
        return bytes.fromhex(value).decode("utf-16-be")
    except (ValueError, UnicodeDecodeError):
        return None


def gsm_default(value: str) -> str:
    """``value`` read as septets of the GSM default alphabet (characters beyond 0x7F kept as they are)."""
    out: list[str] = []
    escaped = False
    for ch in value:
        code = ord(ch)
        if escaped:
            escaped = False
            # An unknown extension character shows as the basic one (TS 23.038's fallback).
            out.append(GSM_EXTENSION.get(code, GSM_BASIC[code] if code < 0x80 else ch))
        elif code == _ESCAPE:
            escaped = True
        else:
            out.append(GSM_BASIC[code] if code < 0x80 else ch)
    if escaped:
        out.append(" ")  # an escape with nothing after it: a space, as TS 23.038 says to show it
    return "".join(out)


def decode(value: str, charset: str | None) -> str:
    """A string parameter as text, given the modem's ``AT+CSCS`` character set.

    ``UCS2`` is decoded when the value is UCS2 hex (otherwise kept: some firmware prints a
    name it has only in ASCII as it is); ``GSM`` is mapped through the default alphabet;
    every other set (``IRA``, ``8859-1``, ``UTF-8``, unknown) is kept as received.
    """
    charset = normalise_charset(charset)
    if charset == "UCS2":
        decoded = ucs2(value)
        return value if decoded is None else decoded
    if charset == "GSM":
        return gsm_default(value)
    return value
