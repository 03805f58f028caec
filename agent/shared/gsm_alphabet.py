"""The GSM 7-bit default alphabet of 3GPP TS 23.038 (6.2.1) and its extension table.

Character ``n`` of :data:`GSM_BASIC` is the septet ``n``; the characters of
:data:`GSM_EXTENSION` take two septets, the escape ``0x1B`` and their code.  Text an SMS
carries in 7-bit coding, and strings a modem prints with ``AT+CSCS="GSM"``, are sequences of
these septets.  Pure; the only exception is :class:`GsmAlphabetError`.
"""
from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ESCAPE", "GSM_BASIC", "GSM_EXTENSION", "GsmAlphabetError", "from_septets", "is_gsm7", "septets", "to_septets",
]

# TS 23.038 6.2.1, the GSM 7-bit default alphabet: character n is the septet n.  Position
# 0x1B holds the escape itself, which is no character of any text.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Its extension table, reached through the escape septet 0x1B.
GSM_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
                 0x40: "|", 0x65: "€"}
ESCAPE = 0x1B

_BASIC_CODE = {ch: code for code, ch in enumerate(GSM_BASIC) if code != ESCAPE}
_EXTENSION_CODE = {ch: code for code, ch in GSM_EXTENSION.items()}


class GsmAlphabetError(ValueError):
    """A text has a character the default alphabet lacks, or a septet is not 0..127."""


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the default alphabet or its extension table."""
    return isinstance(text, str) and all(ch in _BASIC_CODE or ch in _EXTENSION_CODE for ch in text)


def septets(text: str) -> int:
    """How many septets ``text`` takes: one a character, two for those of the extension table."""
    return len(to_septets(text))


def to_septets(text: str) -> list[int]:
    """``text`` as septets (``"a€"`` -> ``[0x61, 0x1B, 0x65]``)."""
    if not isinstance(text, str):
        raise GsmAlphabetError(f"expected text, got {type(text).__name__}")
    out: list[int] = []
    for position, ch in enumerate(text):
        code = _BASIC_CODE.get(ch)
        if code is not None:
            out.append(code)
            continue
        code = _EXTENSION_CODE.get(ch)
        if code is None:
            raise GsmAlphabetError(f"character {ch!r} (U+{ord(ch):04X}) at position {position} "
                                   "is not in the GSM 7-bit default alphabet")
        out.extend((ESCAPE, code))
    return out


def from_septets(codes: Iterable[int]) -> str:
    """Septets as text.

    As TS 23.038 tells a receiver to: an escape followed by a code the extension table does not
    define shows the basic character of that code, and an escape followed by another escape
    (the announcement of a further table) or by nothing shows as a space.
    """
    out: list[str] = []
    escaped = False
    for position, code in enumerate(codes):
        if type(code) is not int or not 0 <= code <= 0x7F:
            raise GsmAlphabetError(f"septet {position}: expected 0..127, got {code!r}")
        if escaped:
            escaped = False
            if code == ESCAPE:
                out.append(" ")
            else:
                out.append(GSM_EXTENSION.get(code, GSM_BASIC[code]))
        elif code == ESCAPE:
            escaped = True
        else:
            out.append(GSM_BASIC[code])
    if escaped:
        out.append(" ")
    return "".join(out)
