"""PLMN codes: the networks a unit in Indonesia meets, and how a (MCC, MNC) pair is written.

An MNC has two or three digits, fixed per country (3GPP TS 23.003 section 2.2).  A PLMN written
as one string tells its MNC length by its own length (5 or 6 digits); a pair of integers does
not, so :func:`format_plmn` needs to know which countries use three digits.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Keyed by (MCC, MNC).  Names are the brands a technician sees on a phone; the owning company
# is in the comment.  510-03 (StarOne), 510-07 (TelkomFlexi) and 510-99 (Esia) were CDMA
# networks and are switched off.
OPERATORS: Mapping[tuple[int, int], str] = MappingProxyType({
    (510, 1): "Indosat",     # Indosat Ooredoo Hutchison
    (510, 8): "AXIS",        # XL Axiata
    (510, 9): "Smartfren",   # Smartfren Telecom
    (510, 10): "Telkomsel",  # Telkomsel (Telkom Indonesia)
    (510, 11): "XL",         # XL Axiata
    (510, 21): "Indosat",    # Indosat Ooredoo Hutchison, the former IM3 code
    (510, 28): "Smartfren",  # Smartfren Telecom, the former Fren (Mobile-8) code
    (510, 89): "Tri",        # "3", Indosat Ooredoo Hutchison since the 2022 merger
})

# Countries whose MNCs all have three digits: USA (310-316), Canada, Mexico, Jamaica,
# Argentina, Colombia.  India's 405 mixes two- and three-digit MNCs, so only the length of
# the written code can tell.
THREE_DIGIT_MNC_MCCS: frozenset[int] = frozenset({302, 310, 311, 312, 313, 314, 315, 316, 334, 338, 722, 732})
MIXED_MNC_MCCS: frozenset[int] = frozenset({405})

def format_plmn(mcc: int, mnc: int) -> str:
    """The inverse of :func:`agent.unit.devices.modem.fields.split_plmn`: (510, 10) -> ``"51010"``, (310, 260) -> ``"310260"``."""
    if not (1 <= mcc <= 999 and 0 <= mnc <= 999):
        raise ValueError(f"not a PLMN: MCC {mcc}, MNC {mnc}")
    three = mcc in THREE_DIGIT_MNC_MCCS or (mcc in MIXED_MNC_MCCS and mnc >= 100) or mnc >= 100
    return f"{mcc:03d}{mnc:03d}" if three else f"{mcc:03d}{mnc:02d}"


def operator_name(mcc: int | None, mnc: int | None) -> str | None:
    """The brand of a known network (``operator_name(510, 10) == "Telkomsel"``), else None."""
    if mcc is None or mnc is None:
        return None
    return OPERATORS.get((mcc, mnc))
