"""Stage two of signal decoding: 3GPP TS 27.007 level indices to dBm / dB.

Each function takes the raw index a modem printed and returns the value at the lower edge of
the range that index stands for (TS 27.007 section 8.5 for +CSQ, 8.69 for +CESQ), or None
for an index that means "not known or not detectable" (99 or 255) or lies outside the
defined range.  Nothing here invents a number.
"""
from __future__ import annotations


def _in(value: int | None, low: int, high: int) -> bool:
    return value is not None and low <= value <= high


def csq_rssi_dbm(index: int | None) -> float | None:
    """+CSQ <rssi>: 0 is -113 dBm or less, 1 is -111, 2..30 step 2 dBm, 31 is -51 or more."""
    if not _in(index, 0, 31):
        return None
    return -113.0 + 2 * index  # type: ignore[operator]


def cesq_rxlev_dbm(index: int | None) -> float | None:
    """+CESQ <rxlev> (GSM RSSI): 0 is below -110 dBm, n is -111+n, 63 is -48 or more."""
    return -111.0 + index if _in(index, 0, 63) else None  # type: ignore[operator]


def cesq_rscp_dbm(index: int | None) -> float | None:
    """+CESQ <rscp> (UTRA): 0 is below -120 dBm, n is -121+n, 96 is -25 or more."""
    return -121.0 + index if _in(index, 0, 96) else None  # type: ignore[operator]


def cesq_ecno_db(index: int | None) -> float | None:
    """+CESQ <ecno> (UTRA Ec/No): 0 is below -24 dB, n is -24.5+n/2, 49 is 0 or more."""
    return -24.5 + index / 2 if _in(index, 0, 49) else None  # type: ignore[operator]


def cesq_rsrq_db(index: int | None) -> float | None:
    """+CESQ <rsrq> (E-UTRA): 0 is below -19.5 dB, n is -20+n/2, 34 is -3 or more."""
    return -20.0 + index / 2 if _in(index, 0, 34) else None  # type: ignore[operator]


def cesq_rsrp_dbm(index: int | None) -> float | None:
    """+CESQ <rsrp> (E-UTRA): 0 is below -140 dBm, n is -141+n, 97 is -44 or more."""
    return -141.0 + index if _in(index, 0, 97) else None  # type: ignore[operator]
