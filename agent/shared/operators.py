"""PLMN codes: the networks a unit in Indonesia meets, and how a (MCC, MNC) pair is written.

An MCC is three digits; an MNC two or three (3GPP TS 23.003 section 2.2), and the digits are
the code: 310-026 and 310-26 are different networks, and Indosat is 510-01, never 510-1.
Readings carry both codes as the strings of digits the network broadcasts.  Where only a
number is known (a reading of ``blankspot.reading/1``, or a modem that prints an MNC as a
bare number), :func:`mnc_digits` writes it as its country does, which needs to know which
countries use three digits.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

_MCC = re.compile(r"[0-9]{3}", re.ASCII)
_MNC = re.compile(r"[0-9]{2,3}", re.ASCII)

# Keyed by (MCC, MNC) as digits.  Names are the brands a technician sees on a phone; the
# owning company is in the comment.  510-03 (StarOne), 510-07 (TelkomFlexi) and 510-99 (Esia)
# were CDMA networks and are switched off.
OPERATORS: Mapping[tuple[str, str], str] = MappingProxyType({
    ("510", "01"): "Indosat",     # Indosat Ooredoo Hutchison
    ("510", "08"): "AXIS",        # XL Axiata
    ("510", "09"): "Smartfren",   # Smartfren Telecom
    ("510", "10"): "Telkomsel",   # Telkomsel (Telkom Indonesia)
    ("510", "11"): "XL",          # XL Axiata
    ("510", "21"): "Indosat",     # Indosat Ooredoo Hutchison, the former IM3 code
    ("510", "28"): "Smartfren",   # Smartfren Telecom, the former Fren (Mobile-8) code
    ("510", "89"): "Tri",         # "3", Indosat Ooredoo Hutchison since the 2022 merger
})

# Countries whose MNCs all have three digits: USA (310-316), Canada, Mexico, Jamaica,
# Argentina, Colombia.  India's 405 mixes two- and three-digit MNCs, so only the length of
# the written code can tell.
THREE_DIGIT_MNC_MCCS: frozenset[int] = frozenset({302, 310, 311, 312, 313, 314, 315, 316, 334, 338, 722, 732})
MIXED_MNC_MCCS: frozenset[int] = frozenset({405})


def is_mcc(text: object) -> bool:
    """Whether ``text`` is an MCC as readings carry it: three ASCII digits."""
    return isinstance(text, str) and _MCC.fullmatch(text) is not None


def is_mnc(text: object) -> bool:
    """Whether ``text`` is an MNC as readings carry it: two or three ASCII digits."""
    return isinstance(text, str) and _MNC.fullmatch(text) is not None


def mnc_digits(mcc: int, mnc: int) -> str:
    """An MNC known only as a number, written as its country writes it: three digits in a
    country of three-digit MNCs (:data:`THREE_DIGIT_MNC_MCCS`) or when the number needs them,
    else two (India's mixed 405 included: a number below 100 there is taken as two digits).
    ``mnc_digits(510, 1) == "01"``, ``mnc_digits(310, 26) == "026"``."""
    if not 0 <= mnc <= 999:
        raise ValueError(f"not an MNC: {mnc}")
    return f"{mnc:03d}" if mcc in THREE_DIGIT_MNC_MCCS or mnc >= 100 else f"{mnc:02d}"


def codes_of_numbers(mcc: object, mnc: object) -> tuple[str, str] | tuple[None, None]:
    """MCC and MNC known only as numbers (``blankspot.reading/1``, the integer columns of an
    older database) as digits: ``(510, 1) -> ("510", "01")``.  ``(None, None)`` unless both
    are integers naming a network (MCC 1 to 999, MNC 0 to 999): such codes never named one
    (the map fell back on the operator's name), and a reading's codes are both or neither."""
    if type(mcc) is not int or type(mnc) is not int or not 1 <= mcc <= 999 or not 0 <= mnc <= 999:
        return None, None
    return f"{mcc:03d}", mnc_digits(mcc, mnc)


def _check(mcc: object, mnc: object) -> None:
    # MCC 000 is what modems print when they have no network.
    if not is_mcc(mcc) or not is_mnc(mnc) or mcc == "000":
        raise ValueError(f"not a PLMN: MCC {mcc!r}, MNC {mnc!r}")


def format_plmn(mcc: str, mnc: str) -> str:
    """The PLMN as one string of digits, the inverse of
    :func:`agent.unit.devices.modem.fields.split_plmn`: ("510", "10") -> ``"51010"``,
    ("310", "026") -> ``"310026"``."""
    _check(mcc, mnc)
    return mcc + mnc


def plmn_key(mcc: str, mnc: str) -> str:
    """How maps, reports and exports name a network: ``510-01``; ValueError for codes that
    name none (not digits, MCC 000)."""
    _check(mcc, mnc)
    return f"{mcc}-{mnc}"


def operator_name(mcc: str | None, mnc: str | None) -> str | None:
    """The brand of a known network (``operator_name("510", "10") == "Telkomsel"``), else None."""
    if mcc is None or mnc is None:
        return None
    return OPERATORS.get((mcc, mnc))
