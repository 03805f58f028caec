"""Quectel's own signal commands: AT+QENG="servingcell", AT+QNWINFO, AT+QCSQ, AT+QSPN.

Field layouts follow Quectel's AT command manuals for the EC2x/EG2x (LTE) and RG50xQ/RM5xxQ
(5G) families.  Every function takes the information text of one response and returns
:class:`SignalFacts`; levels are dBm/dB, and a level the modem marks as unknown (``-``,
-32768, out of the range the standard can report) is None.

How the SINR fields are scaled differs between commands and firmwares, and the manuals do
not agree with the modems:

- ``+QCSQ`` LTE SINR is 0..250 in 1/5 dB from -20 dB (BG96/EC2x manuals; Quectel support
  repeats it for the EG21-G): a connected EC2x prints values such as 76 or 177.
- ``+QENG`` LTE SINR is read as dB.  ModemManager has no +QENG parser to follow (it reads
  Quectel signal over QMI), so this is our choice from captures: an EG25-G prints 11, an
  EP06-E 21, an EC2x in Iran 3 and even -1, beside RSRQ -9..-17; only dB makes sense of
  them, and the 1/5 dB formula turns them into the negative SINR that users of other tools
  (EP06-E, EG06-E checked against QMI) reported as wrong.  Some firmwares do print the
  0..250 scale here (53 and 38 beside RSRQ -14 and -15): anything outside the -23..40 dB
  that 3GPP lets a UE report is dropped as unknown rather than guessed at, so a scaled value
  above 40 becomes None, while one from 0 to 40 cannot be told apart and is taken as dB.
- NR5G SINR (``+QENG`` NR5G-NSA/NR5G-SA lines and ``+QCSQ: "NR5G"``) is dB; an RM520N's
  ``+QCSQ: "NR5G",-75,4,-11`` matched ``+QENG``'s SINR 5 taken in the same second.
"""
from __future__ import annotations

import re
from dataclasses import replace

from agent.unit.devices.modem import charsets
from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.fields import prefixed_lines as _lines, split_fields as _fields, field_at as _at, int_within as _int
from agent.unit.devices.modem.fields import printed_codes, split_plmn
from agent.unit.devices.modem.values import SignalFacts

# ---------------------------------------------------------------- fields and ranges

_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{1,12})", re.ASCII)
# Placeholders modems print for an unknown area code: all ones, and 0xFFFE ("deleted",
# TS 23.003 section 4.1).  Cell identities are unknown only when all ones.
_UNKNOWN_ID = {16: {0xFFFE, 0xFFFF}, 24: {0xFFFFFE, 0xFFFFFF}}


def _hex(text: str, bits: int) -> int | None:
    m = _HEX.fullmatch(text)
    if m is None:
        return None
    value = int(m.group(1), 16)
    if value >= 1 << bits or value == (1 << bits) - 1 or value in _UNKNOWN_ID.get(bits, ()):
        return None
    return value


def _within(value: float | None, low: float, high: float) -> float | None:
    return float(value) if value is not None and low <= value <= high else None


# What 3GPP lets a UE report (TS 36.133, 38.133, 25.133, 45.008), a little widened; anything
# outside is a placeholder (-32768, 255, ...), not a measurement.
def _rsrp(text: str) -> float | None:
    return _within(_int(text, -99999, 99999), -156, -31)


def _rsrq(text: str) -> float | None:
    return _within(_int(text, -99999, 99999), -43, 3)


def _sinr(text: str) -> float | None:
    return _within(_int(text, -99999, 99999), -23, 40)


def _rssi(text: str) -> float | None:
    return _within(_int(text, -99999, 99999), -130, -1)


def _rscp(text: str) -> float | None:
    return _within(_int(text, -99999, 99999), -125, -20)


def _ecio(text: str) -> float | None:
    return _within(_int(text, -99999, 99999), -35, 0)


def _mcc_mnc(mcc: str, mnc: str) -> tuple[str | None, str | None]:
    # Quectel prints the MNC with its zeros ("515,03"); a bare number is padded as its country writes it.
    return printed_codes(mcc, mnc)


# ---------------------------------------------------------------- AT+QENG="servingcell"

_LTE_NAMES = ("LTE", "EMTC", "CAT-M", "CAT-M1", "NBIOT", "NB-IOT", "CAT-NB", "CAT-NB1")

# Quectel's <state>: SEARCH "searching but could not (yet) find a suitable cell"; LIMSRV
# "camping on a cell but not registered on the network" (limited service: emergency calls
# only); NOCONN / CONNECT "camping on a cell and registered", idle or with a call.  LIMSRV is
# therefore not_registered, like TS 27.007's "registered for emergency services only": the
# manual does not say the network refused the UE, so it is not "denied".  NOCONN/CONNECT
# cannot tell home from roaming, so they leave registration to +CREG/+CEREG.
_STATES = {"SEARCH": "searching", "LIMSRV": "not_registered", "NOCONN": None, "CONNECT": None}


def parse_qeng_servingcell(text: str) -> SignalFacts:
    """``+QENG: "servingcell",...``: the serving cell, single-line or EN-DC (several lines).

    SEARCH is a blank spot: ``no_service``, rat NONE, registration "searching".  In EN-DC the
    facts describe the LTE anchor cell (identity and levels); rat is NR5G-NSA only when the
    NR5G-NSA line carries a measured RSRP (-32768 there means no NR leg yet).
    """
    rows = [_fields(body) for body in _lines(text, "+QENG:")]
    serving = next((row for row in rows if row[0].lower() == "servingcell"), None)
    if serving is None:
        raise AtParseError(f'no "servingcell" line in {text[:80]!r}')
    state = _at(serving, 1).upper()
    if state not in _STATES:
        raise AtParseError(f"unknown +QENG state {_at(serving, 1)!r}")
    if state == "SEARCH":
        return SignalFacts(registration="searching", rat="NONE", no_service=True)
    if len(serving) > 2:
        facts = _cell(serving[2:])
    else:
        cells = [row for row in rows if row[0].upper() in _LTE_NAMES + ("NR5G-SA", "WCDMA", "GSM")]
        if not cells:
            raise AtParseError(f"+QENG state {state} without a serving cell line")
        facts = _cell(cells[0])
        nsa = next((row for row in rows if row[0].upper() == "NR5G-NSA"), None)
        if nsa is not None and facts.rat == "LTE" and _rsrp(_at(nsa, 4)) is not None:
            facts = replace(facts, rat="NR5G-NSA")
    return replace(facts, registration=_STATES[state])


def _cell(row: list[str]) -> SignalFacts:
    name = row[0].upper()
    if name in _LTE_NAMES:
        return _lte(row)
    if name == "NR5G-SA":
        return _nr_sa(row)
    if name == "WCDMA":
        return _wcdma(row)
    if name == "GSM":
        return _gsm(row)
    return SignalFacts()  # CDMA, HDR, TD-SCDMA: no RAT of ours, nothing measured we can name


def _lte(row: list[str]) -> SignalFacts:
    # "LTE",<is_tdd>,<MCC>,<MNC>,<cellID>,<PCID>,<earfcn>,<freq_band_ind>,<UL_bw>,<DL_bw>,
    # <TAC>,<RSRP>,<RSRQ>,<RSSI>,<SINR>[,<CQI>,<tx_power>],<srxlev>
    mcc, mnc = _mcc_mnc(_at(row, 2), _at(row, 3))
    return SignalFacts(
        rat="LTE", mcc=mcc, mnc=mnc, cell_id=_hex(_at(row, 4), 28), pci=_int(_at(row, 5), 0, 503),
        earfcn=_int(_at(row, 6), 0, 262143), band=_int(_at(row, 7), 1, 255), tac=_hex(_at(row, 10), 16),
        rsrp_dbm=_rsrp(_at(row, 11)), rsrq_db=_rsrq(_at(row, 12)), rssi_dbm=_rssi(_at(row, 13)),
        sinr_db=_sinr(_at(row, 14)),
    )


def _nr_sa(row: list[str]) -> SignalFacts:
    # "NR5G-SA",<duplex_mode>,<MCC>,<MNC>,<cellID>,<PCID>,<TAC>,<ARFCN>,<band>,<NR_DL_bandwidth>,
    # <RSRP>,<RSRQ>,<SINR>,<scs>,<srxlev>
    mcc, mnc = _mcc_mnc(_at(row, 2), _at(row, 3))
    return SignalFacts(
        rat="NR5G-SA", mcc=mcc, mnc=mnc, cell_id=_hex(_at(row, 4), 36), pci=_int(_at(row, 5), 0, 1007),
        tac=_hex(_at(row, 6), 24), earfcn=_int(_at(row, 7), 0, 3279165), band=_int(_at(row, 8), 1, 1024),
        rsrp_dbm=_rsrp(_at(row, 10)), rsrq_db=_rsrq(_at(row, 11)), sinr_db=_sinr(_at(row, 12)),
    )


def _wcdma(row: list[str]) -> SignalFacts:
    # "WCDMA",<MCC>,<MNC>,<LAC>,<cellID>,<uarfcn>,<PSC>,<RAC>,<RSCP>,<ecio>,<phych>,<SF>,<slot>,...
    mcc, mnc = _mcc_mnc(_at(row, 1), _at(row, 2))
    return SignalFacts(
        rat="WCDMA", mcc=mcc, mnc=mnc, lac=_hex(_at(row, 3), 16), cell_id=_hex(_at(row, 4), 28),
        earfcn=_int(_at(row, 5), 0, 16383), pci=_int(_at(row, 6), 0, 511),
        rscp_dbm=_rscp(_at(row, 8)), ecio_db=_ecio(_at(row, 9)),
    )


def _gsm(row: list[str]) -> SignalFacts:
    # "GSM",<MCC>,<MNC>,<LAC>,<cellID>,<BSIC>,<arfcn>,<band>,<rxlev>,<txp>,<rla>,<drx>,<c1>,<c2>,...
    # <band> (0 DCS1800, 1 PCS1900) is not a 3GPP band number, so it is not kept.
    mcc, mnc = _mcc_mnc(_at(row, 1), _at(row, 2))
    return SignalFacts(
        rat="GSM", mcc=mcc, mnc=mnc, lac=_hex(_at(row, 3), 16), cell_id=_hex(_at(row, 4), 16),
        pci=_int(_at(row, 5), 0, 63), earfcn=_int(_at(row, 6), 0, 1023), rssi_dbm=_rssi(_at(row, 8)),
    )


# ---------------------------------------------------------------- AT+QNWINFO

_ACT = {
    "GSM": "GSM", "GPRS": "GSM", "EDGE": "GSM",
    "WCDMA": "WCDMA", "HSDPA": "WCDMA", "HSUPA": "WCDMA", "HSPA": "WCDMA", "HSPA+": "WCDMA",
    "HSDPA&HSUPA": "WCDMA", "DC-HSPA+": "WCDMA",
    "FDD LTE": "LTE", "TDD LTE": "LTE", "LTE": "LTE", "EMTC": "LTE", "CAT-M": "LTE", "CAT-M1": "LTE",
    "NBIOT": "LTE", "NB-IOT": "LTE", "CAT-NB": "LTE",
    "FDD NR5G": "NR5G", "TDD NR5G": "NR5G", "NR5G": "NR5G", "NR5G-SA": "NR5G-SA", "NR5G-NSA": "NR5G-NSA",
}
_OTHER_ACT = ("CDMA1X", "CDMA1X AND HDR", "CDMA1X AND EHRPD", "HDR", "HDR-EHRPD", "TDSCDMA", "TD-SCDMA")
_BAND = re.compile(r"BAND[ _]*([0-9]{1,4})\b", re.ASCII | re.IGNORECASE)
_CHANNEL_MAX = {"GSM": 1023, "WCDMA": 16383, "LTE": 262143, "NR5G": 3279165, "NR5G-SA": 3279165, "NR5G-NSA": 3279165}


def parse_qnwinfo(text: str) -> SignalFacts:
    """``+QNWINFO: "FDD LTE","51010","LTE BAND 3",1850``; ``+QNWINFO: No Service``.

    In EN-DC the modem prints an LTE line and an NR5G line: rat NR5G-NSA, band and channel of
    the LTE anchor.  An NR5G line alone is standalone (NR5G-SA).  Band numbers are read from
    ``LTE BAND n`` / ``NR5G BAND n``; ``GSM 900`` and ``WCDMA 2100`` name no 3GPP band number.
    """
    rows = [_fields(body) for body in _lines(text, "+QNWINFO:")]
    if rows[0][0].upper() in ("NO SERVICE", "NONE"):
        return SignalFacts(rat="NONE", no_service=True)
    known = [(row, _ACT[row[0].upper()]) for row in rows if row[0].upper() in _ACT]
    if not known:
        if rows[0][0].upper() in _OTHER_ACT:
            return SignalFacts()  # in service on a technology we do not name
        raise AtParseError(f"unknown +QNWINFO access technology {rows[0][0]!r}")
    kinds = {kind for _, kind in known}
    row, kind = known[0]
    if "LTE" in kinds and kinds & {"NR5G", "NR5G-NSA"}:
        row, kind = next(item for item in known if item[1] == "LTE")
        rat = "NR5G-NSA"
    else:
        rat = "NR5G-SA" if kind == "NR5G" else kind
    try:
        mcc, mnc = split_plmn(_at(known[0][0], 1))
    except AtParseError:
        mcc = mnc = None
    band = _BAND.search(_at(row, 2))
    return SignalFacts(
        rat=rat, mcc=mcc, mnc=mnc, band=_int(band.group(1), 1, 1024) if band else None,
        earfcn=_int(_at(row, 3), 0, _CHANNEL_MAX[kind]),
    )


# ---------------------------------------------------------------- AT+QCSQ

_QCSQ_LTE = ("LTE", "CAT-M1", "EMTC", "CAT-NB1", "NBIOT")


def _positive_rssi(text: str) -> float | None:
    # EG21-G, EC25 and BG9x firmwares print RSSI as a positive magnitude ("LTE",77,...);
    # RSSI is never positive in dBm, so the sign is restored.
    value = _int(text, -130, 130)
    return _within(-abs(value), -130, -1) if value is not None else None


def _qcsq_lte_sinr(text: str) -> float | None:
    value = _int(text, 0, 250)
    return round(value / 5 - 20, 1) if value is not None else None


def parse_qcsq(text: str) -> SignalFacts:
    """``+QCSQ: "LTE",<rssi>,<rsrp>,<sinr>,<rsrq>`` and its GSM/WCDMA/NR5G/NOSERVICE forms.

    LTE SINR is 0..250 in 1/5 dB from -20 dB.  ``"NR5G",<rsrp>,<sinr>,<rsrq>`` (no RSSI) is dB
    throughout; with an LTE line beside it the modem is in EN-DC (rat NR5G-NSA, LTE levels).
    """
    rows = [_fields(body) for body in _lines(text, "+QCSQ:")]
    modes = [row[0].upper() for row in rows]
    if modes[0] == "NOSERVICE":
        return SignalFacts(rat="NONE", no_service=True)
    if any(mode in _QCSQ_LTE for mode in modes):
        row = rows[next(i for i, mode in enumerate(modes) if mode in _QCSQ_LTE)]
        return SignalFacts(
            rat="NR5G-NSA" if "NR5G" in modes else "LTE", rssi_dbm=_positive_rssi(_at(row, 1)),
            rsrp_dbm=_rsrp(_at(row, 2)), sinr_db=_qcsq_lte_sinr(_at(row, 3)), rsrq_db=_rsrq(_at(row, 4)),
        )
    row, mode = rows[0], modes[0]
    if mode == "NR5G":
        return SignalFacts(
            rat="NR5G-SA", rsrp_dbm=_rsrp(_at(row, 1)), sinr_db=_sinr(_at(row, 2)), rsrq_db=_rsrq(_at(row, 3)),
        )
    if mode == "WCDMA":
        return SignalFacts(
            rat="WCDMA", rssi_dbm=_positive_rssi(_at(row, 1)), rscp_dbm=_rscp(_at(row, 2)),
            ecio_db=_ecio(_at(row, 3)),
        )
    if mode == "GSM":
        return SignalFacts(rat="GSM", rssi_dbm=_positive_rssi(_at(row, 1)))
    if mode in ("CDMA", "HDR", "TDSCDMA", "TD-SCDMA"):
        return SignalFacts()
    raise AtParseError(f"unknown +QCSQ system mode {rows[0][0]!r}")


# ---------------------------------------------------------------- AT+QSPN

# A network that broadcasts no name is shown by its PLMN: "515 66" is a number, not a name.
_PLMN_NAME = re.compile(r"[0-9]{3}[ \-]?[0-9]{2,3}", re.ASCII)


def parse_qspn(text: str) -> SignalFacts:
    """``+QSPN: <FNN>,<SNN>,<SPN>,<alphabet>,<RPLMN>`` -> operator name and MCC/MNC.

    The name is the network's full name, else its short name, else the SIM's service provider
    name; with <alphabet> 1 the names are UCS2 in hex and are decoded.  A network name that is
    only the PLMN's digits (``"515 66"``, DITO on an RM5xx) names nothing and is passed over.
    """
    row = _fields(_lines(text, "+QSPN:")[0])
    if len(row) < 5:
        raise AtParseError(f"+QSPN needs 5 fields, got {len(row)}: {text[:80]!r}")
    names = [name for name in row[:3] if name]
    if row[3] == "1":
        names = [charsets.ucs2(name) or name for name in names]
    names = [name.strip() for name in names if name.strip() and not _PLMN_NAME.fullmatch(name.strip())]
    try:
        mcc, mnc = split_plmn(row[4])
    except AtParseError:
        mcc = mnc = None
    return SignalFacts(operator=names[0] if names else None, mcc=mcc, mnc=mnc)
