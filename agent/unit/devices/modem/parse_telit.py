"""Telit's AT#RFSTS (current network status), per the LE910/LE910Cx/LM960 AT command guides.

The layout depends on the RAT and on the module family; the one field every layout has in a
recognisable form is the quoted IMSI (15 digits, zeros when hidden), and its position tells
the layout apart::

    IMSI at  9  GSM, no TXPWR  <PLMN>,<ARFCN>,<RSSI>,<LAC>,<RAC>,<MM>,<RR>,<NOM>,<CID>,<IMSI>,...
    IMSI at 10  GSM            <PLMN>,<ARFCN>,<RSSI>,<LAC>,<RAC>,<TXPWR>,<MM>,<RR>,<NOM>,<CID>,<IMSI>,...
    IMSI at 11  LTE (LE910)    <PLMN>,<EARFCN>,<RSRP>,<RSSI>,<RSRQ>,<TAC>,<TXPWR>,<DRX>,<MM>,<RRC>,<CID>,<IMSI>,...
    IMSI at 12  LTE, with RAC  <PLMN>,<EARFCN>,<RSRP>,<RSSI>,<RSRQ>,<TAC>,<RAC>,<TXPWR>,<DRX>,<MM>,<RRC>,<CID>,<IMSI>,...
    IMSI at 15  WCDMA          <PLMN>,<UARFCN>,<PSC>,<Ec/Io>,<RSCP>,<RSSI>,<LAC>,<RAC>,<TXPWR>,<DRX>,<MM>,<RRC>,<NOM>,<BLER>,<CID>,<IMSI>,...

and after the IMSI always ``<NetNameAsc>,<SD>,<ABND>``.  <PLMN> is ``"MCC MNC"``; <SD>
(service domain) 0 is no service; <ABND> is the LTE band number on LTE (1, 2, 3, ... 66) but a
Telit code on GSM/WCDMA (2 = GSM 900), so it is kept only on LTE.  Some firmwares append a
SINR whose unit differs between families; it is not read.

A line whose serving channel is invalid (-1, 32767) names no cell: its levels are
placeholders (-47) and are dropped; with <SD> 0 as well it is a blank spot.  <SD> 0 beside a
real channel is a cell the unit camps on without being attached (limited service), so the
levels are kept and registration is not_registered.
"""
from __future__ import annotations

import re

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.fields import prefixed_lines as _lines, split_fields as _fields, field_at as _at, int_within as _int
from agent.unit.devices.modem.fields import split_plmn
from agent.unit.devices.modem.values import SignalFacts

_NUM = re.compile(r"[+-]?[0-9]{1,12}(?:\.[0-9]{1,6})?", re.ASCII)
_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{1,12})", re.ASCII)
_IMSI = re.compile(r"[0-9]{14,15}", re.ASCII)


def _hex(text: str, bits: int) -> int | None:
    m = _HEX.fullmatch(text)
    if m is None:
        return None
    value = int(m.group(1), 16)
    # all ones, and 0xFFFE ("deleted" area code, TS 23.003 section 4.1), mean unknown
    return None if value >= (1 << bits) - (2 if bits == 16 else 1) else value


def _level(text: str, low: float, high: float) -> float | None:
    value = float(text) if _NUM.fullmatch(text) else None
    return value if value is not None and low <= value <= high else None


_LAYOUTS = {9: "GSM", 10: "GSM", 11: "LTE", 12: "LTE", 15: "WCDMA"}
_CHANNEL_MAX = {"GSM": 1023, "WCDMA": 16383, "LTE": 262143}


def parse_rfsts(text: str) -> SignalFacts:
    """``#RFSTS: "286 01",1795,-101,-67,-15,2242,,128,3,1,0B5D121,"286016339612498","Turkcell",3,3``."""
    row = _fields(_lines(text, "#RFSTS:")[0])
    imsi = next((i for i in range(8, len(row)) if _IMSI.fullmatch(row[i])), None)
    rat = _LAYOUTS.get(imsi) if imsi is not None else None
    if rat is None:
        raise AtParseError(f"unknown #RFSTS layout ({len(row)} fields): {text[:80]!r}")
    channel = _int(row[1], 0, _CHANNEL_MAX[rat])
    service_domain = _int(_at(row, imsi + 2), 0, 3)
    if channel is None:
        # No serving cell: with no service domain either this is a blank spot; otherwise the
        # line names no cell and claims nothing.
        return SignalFacts(rat="NONE", no_service=True) if service_domain == 0 else SignalFacts()
    try:
        mcc, mnc = split_plmn(row[0])
    except AtParseError:
        mcc = mnc = None
    common = {
        "mcc": mcc, "mnc": mnc, "operator": _at(row, imsi + 1) or None, "earfcn": channel,
        # camped on a cell but attached to no domain: limited service, like Quectel's LIMSRV
        "registration": "not_registered" if service_domain == 0 else None,
    }
    if rat == "GSM":
        return SignalFacts(
            rat="GSM", **common, lac=_hex(row[3], 16), cell_id=_hex(row[imsi - 1], 16),
            rssi_dbm=_level(row[2], -130, -1),
        )
    if rat == "LTE":
        return SignalFacts(
            rat="LTE", **common, tac=_hex(row[5], 16), cell_id=_hex(row[imsi - 1], 28),
            band=_int(_at(row, imsi + 3), 1, 255), rsrp_dbm=_level(row[2], -156, -31),
            rssi_dbm=_level(row[3], -130, -1), rsrq_db=_level(row[4], -43, 3),
        )
    psc = _level(row[2], 0, 511)
    return SignalFacts(
        rat="WCDMA", **common, lac=_hex(row[6], 16), cell_id=_hex(row[imsi - 1], 28),
        pci=int(psc) if psc is not None and psc.is_integer() else None, ecio_db=_level(row[3], -35, 0),
        rscp_dbm=_level(row[4], -125, -20), rssi_dbm=_level(row[5], -130, -1),
    )
