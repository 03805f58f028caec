"""SIMCom's AT+CPSI? (UE system information), per the SIM7500/SIM7600 and SIM8200 AT manuals.

Layouts after ``+CPSI: <System Mode>,<Operation Mode>``::

    GSM       <MCC>-<MNC>,<LAC>,<Cell ID>,<ARFCN> <band name>,<RxLev>,<Track LO Adjust>,<C1>-<C2>
    WCDMA     <MCC>-<MNC>,<LAC>,<Cell ID>,<Frequency Band>,<PSC>,<Freq>,<SSC>,<EC/IO>,<RSCP>,<Qual>,<RxLev>,<TXPWR>
    LTE       <MCC>-<MNC>,<TAC>,<SCellID>,<PCellID>,<Frequency Band>,<earfcn>,<dlbw>,<ulbw>,<RSRQ>,<RSRP>,<RSSI>,<RSSNR>
    NR5G_SA   <MCC>-<MNC>,<TAC>,<SCellID>,<PCellID>,<Frequency Band>,<earfcn>,<RSRP>,<RSRQ>,<SNR>
    NR5G_NSA  (no operation mode) <PCellID>,<Frequency Band>,<earfcn>,<RSRP>,<RSRQ>,<SNR>, printed after the LTE line

Units differ by model and field, so they are decided from the values themselves:

- LTE/NR RSRP, RSRQ and RSSI are tenths of dB(m) on the SIM7600/SIM8200 (``-105,-980,-720``:
  RSRQ -10.5 dB, RSRP -98.0 dBm, RSSI -72.0 dBm) but whole dB(m) on the SIM7000 (``-20,-116,
  -82``).  The two ranges cannot overlap for RSRP (tenths: below -310; whole: -156..-31), so
  RSRP decides the unit of all three (RSSI when RSRP is missing).
- LTE RSSNR is whole dB (values 4..20 that track RSRQ); NR SNR is tenths like its RSRP
  (``-770,-110,290``: 29.0 dB).
- WCDMA EC/IO and RSCP are printed as positive magnitudes (``12.5,83``: -12.5 dB, -83 dBm).
- Cell IDs are decimal, LAC/TAC hex (``0x2B01``, sometimes without ``0x``).
"""
from __future__ import annotations

import re
from dataclasses import replace

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.fields import field_at as _at, int_within as _int, prefixed_lines as _lines, printed_codes
from agent.unit.devices.modem.values import SignalFacts

_NUM = re.compile(r"[+-]?[0-9]{1,12}(?:\.[0-9]{1,6})?", re.ASCII)
_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{1,12})", re.ASCII)
_PLMN = re.compile(r"([0-9]{3})-([0-9]{2,3})", re.ASCII)
_BAND = re.compile(r"BAND[ _]*([0-9]{1,4})$", re.ASCII | re.IGNORECASE)
_ARFCN_BAND = re.compile(r"([0-9]{1,5})\s+\S.*", re.ASCII)


def _num(text: str) -> float | None:
    return float(text) if _NUM.fullmatch(text) else None


def _hex(text: str, bits: int) -> int | None:
    m = _HEX.fullmatch(text)
    if m is None:
        return None
    value = int(m.group(1), 16)
    # all ones, and 0xFFFE ("deleted" area code, TS 23.003 section 4.1), mean unknown
    return None if value >= (1 << bits) - 2 else value


def _cell_id(text: str, bits: int) -> int | None:
    return _int(text, 0, (1 << bits) - 2)  # all ones (4294967295 while reselecting) is no cell


def _within(value: float | None, low: float, high: float) -> float | None:
    return round(value, 1) if value is not None and low <= value <= high else None


def _plmn(text: str) -> tuple[str | None, str | None]:
    m = _PLMN.fullmatch(text)
    if m is None:
        return None, None
    return printed_codes(m.group(1), m.group(2))


def _band(text: str) -> int | None:
    m = _BAND.search(text)
    return _int(m.group(1), 1, 1024) if m else None


def _levels(rsrq: str, rsrp: str, rssi: str) -> tuple[float | None, float | None, float | None, bool | None]:
    """(RSRQ dB, RSRP dBm, RSSI dBm, tenths?) with the unit decided as the module says."""
    raw_rsrp, raw_rssi = _num(rsrp), _num(rssi)
    if raw_rsrp is not None:
        tenths: bool | None = raw_rsrp <= -200
    elif raw_rssi is not None:
        tenths = raw_rssi <= -130
    else:
        tenths = None
    scale = 10.0 if tenths else 1.0
    raw_rsrq = _num(rsrq)
    return (
        _within(raw_rsrq / scale, -43, 3) if raw_rsrq is not None and tenths is not None else None,
        _within(raw_rsrp / scale, -156, -31) if raw_rsrp is not None else None,
        _within(raw_rssi / scale, -130, -1) if raw_rssi is not None and tenths is not None else None,
        tenths,
    )


def parse_cpsi(text: str) -> SignalFacts:
    """``+CPSI: LTE,Online,510-10,0x2B01,27437825,101,EUTRAN-BAND3,1850,5,5,-105,-980,-720,17``.

    ``+CPSI: NO SERVICE,Online`` is a blank spot (no_service, rat NONE).  An operation mode
    other than Online (Offline, Low Power Mode, Factory Test Mode, Reset) means the radio is
    off, which says nothing about coverage: that is an :class:`AtParseError`, never a blank spot.
    With an LTE line and an NR5G_NSA line (EN-DC) the facts describe the LTE anchor cell, and
    rat is NR5G-NSA when the NR line carries a measured RSRP.
    """
    rows = [[field.strip() for field in body.split(",")] for body in _lines(text, "+CPSI:")]
    modes = [row[0].upper() for row in rows]
    first, mode = rows[0], modes[0]
    if mode != "NR5G_NSA" and _at(first, 1) and first[1].upper() != "ONLINE":
        raise AtParseError(f"radio is not online ({first[1]!r}): no measurement")
    if mode == "NO SERVICE":
        return SignalFacts(rat="NONE", no_service=True)
    if mode.startswith("LTE"):
        facts = _lte(first)
        nsa = next((row for row in rows if row[0].upper() == "NR5G_NSA"), None)
        if nsa is not None and _levels("", _at(nsa, 4), "")[1] is not None:
            facts = replace(facts, rat="NR5G-NSA")
        return facts
    if mode == "NR5G_NSA":
        return SignalFacts(rat="NR5G-NSA")  # the NR leg alone names no anchor cell
    if mode == "NR5G_SA":
        return _nr_sa(first)
    if mode == "WCDMA":
        return _wcdma(first)
    if mode == "GSM":
        return _gsm(first)
    if mode in ("CDMA", "EVDO", "HDR", "TDS", "TD-SCDMA", "HYBRID"):
        return SignalFacts()  # in service on a technology we do not name
    raise AtParseError(f"unknown +CPSI system mode {first[0]!r}")


def _lte(row: list[str]) -> SignalFacts:
    mcc, mnc = _plmn(_at(row, 2))
    rsrq, rsrp, rssi, _ = _levels(_at(row, 10), _at(row, 11), _at(row, 12))
    return SignalFacts(
        rat="LTE", mcc=mcc, mnc=mnc, tac=_hex(_at(row, 3), 16), cell_id=_cell_id(_at(row, 4), 28),
        pci=_int(_at(row, 5), 0, 503), band=_band(_at(row, 6)), earfcn=_int(_at(row, 7), 0, 262143),
        rsrq_db=rsrq, rsrp_dbm=rsrp, rssi_dbm=rssi, sinr_db=_within(_num(_at(row, 13)), -23, 40),
    )


def _nr_sa(row: list[str]) -> SignalFacts:
    mcc, mnc = _plmn(_at(row, 2))
    rsrq, rsrp, _, tenths = _levels(_at(row, 9), _at(row, 8), "")
    snr = _num(_at(row, 10))
    return SignalFacts(
        rat="NR5G-SA", mcc=mcc, mnc=mnc, tac=_hex(_at(row, 3), 24), cell_id=_cell_id(_at(row, 4), 36),
        pci=_int(_at(row, 5), 0, 1007), band=_band(_at(row, 6)), earfcn=_int(_at(row, 7), 0, 3279165),
        rsrp_dbm=rsrp, rsrq_db=rsrq,
        sinr_db=_within(snr / (10.0 if tenths else 1.0), -23, 40) if snr is not None and tenths is not None else None,
    )


def _magnitude(text: str, low: float, high: float) -> float | None:
    value = _num(text)
    return _within(-abs(value), low, high) if value is not None else None


def _wcdma(row: list[str]) -> SignalFacts:
    mcc, mnc = _plmn(_at(row, 2))
    return SignalFacts(
        rat="WCDMA", mcc=mcc, mnc=mnc, lac=_hex(_at(row, 3), 16), cell_id=_cell_id(_at(row, 4), 28),
        pci=_int(_at(row, 6), 0, 511), earfcn=_int(_at(row, 7), 0, 16383),
        ecio_db=_magnitude(_at(row, 9), -35, 0), rscp_dbm=_magnitude(_at(row, 10), -125, -20),
    )


def _gsm(row: list[str]) -> SignalFacts:
    mcc, mnc = _plmn(_at(row, 2))
    channel = _ARFCN_BAND.fullmatch(_at(row, 5))  # "79 EGSM 900": ARFCN and band name in one field
    return SignalFacts(
        rat="GSM", mcc=mcc, mnc=mnc, lac=_hex(_at(row, 3), 16), cell_id=_cell_id(_at(row, 4), 16),
        earfcn=_int(channel.group(1), 0, 1023) if channel else None,
        rssi_dbm=_within(_num(_at(row, 6)), -130, -1),
    )
