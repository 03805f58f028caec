"""Huawei's ^HCSQ (signal levels) and ^SYSINFOEX (service state), as on the ME909s.

^HCSQ reports level *indices*, each standing for a 1 dB (or 0.5/0.2 dB) range; like
:mod:`agent.unit.devices.modem.levels` we return the lower edge of that range, and 255 ("unknown
or undetectable") or any index outside the table is None.  The tables are those of Huawei's
AT command interface specification, as ModemManager applies them
(``src/plugins/huawei/mm-broadband-modem-huawei.c``, ``get_rssi_dbm`` and friends)::

    rssi, rscp  0..96   -121 + n dBm     (0: below -120 dBm; 96: -25 dBm or more)
    ecio        0..65   -32.5 + n/2 dB   (0: below -32 dB; 65: 0 dB or more)
    rsrp        0..97   -141 + n dBm     (0: below -140 dBm; 97: -44 dBm or more)
    sinr        0..251  -20.2 + n/5 dB   (0: below -20 dB; 251: 30 dB or more)
    rsrq        0..34   -20 + n/2 dB     (0: below -19.5 dB; 34: -3 dB or more)

The RSCP, RSRP and RSRQ tables are the same as TS 27.007's +CESQ, so those reuse
:mod:`agent.unit.devices.modem.levels`.

^SYSINFOEX values, from Huawei's command table (Balong AT^SYSINFOEX): <srv_status> 0 no
service, 1 restricted service, 2 valid service, 3 restricted regional service, 4 power saving
or deep sleep; <srv_domain> 4 "CS and PS not registered, searching"; <roam_status> 0 not
roaming, 1 roaming, 2 unknown; <sim_state> 1 valid, 0/2/3/4 invalid, 255 no SIM;
<sysmode> 0 no service, 1 GSM, 3 WCDMA, 4 TD-SCDMA, 5 WiMAX, 6 LTE, 9 SVLTE/SRLTE,
10 EUTRAN-5GC, 11 NR-5GC.
"""
from __future__ import annotations

import re

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.fields import prefixed_lines as _lines, field_at as _at
from agent.unit.devices.modem.levels import cesq_rscp_dbm, cesq_rsrp_dbm, cesq_rsrq_db
from agent.unit.devices.modem.values import SignalFacts

_DEC = re.compile(r"[0-9]{1,12}", re.ASCII)


def _row(body: str) -> list[str]:
    return [field.strip().strip('"').strip() for field in body.split(",")]


def _index(text: str) -> int | None:
    return int(text) if _DEC.fullmatch(text) else None


def _rssi_dbm(n: int | None) -> float | None:
    return -121.0 + n if n is not None and 0 <= n <= 96 else None


def _ecio_db(n: int | None) -> float | None:
    return -32.5 + n / 2 if n is not None and 0 <= n <= 65 else None


def _sinr_db(n: int | None) -> float | None:
    return round(-20.2 + n / 5, 1) if n is not None and 0 <= n <= 251 else None


def parse_hcsq(text: str) -> SignalFacts:
    """``^HCSQ: "LTE",<rssi>,<rsrp>,<sinr>,<rsrq>``; ``"WCDMA",<rssi>,<rscp>,<ecio>``;
    ``"GSM",<rssi>``; ``"NOSERVICE"`` (a blank spot: no_service, rat NONE).

    CDMA, EVDO and TD-SCDMA are not supported and raise :class:`AtParseError`.
    """
    row = _row(_lines(text, "^HCSQ:")[0])
    mode = row[0].upper()
    values = [_index(field) for field in row[1:]] + [None] * 4
    if mode == "NOSERVICE":
        return SignalFacts(rat="NONE", no_service=True)
    if mode == "GSM":
        return SignalFacts(rat="GSM", rssi_dbm=_rssi_dbm(values[0]))
    if mode == "WCDMA":
        return SignalFacts(
            rat="WCDMA", rssi_dbm=_rssi_dbm(values[0]), rscp_dbm=cesq_rscp_dbm(values[1]),
            ecio_db=_ecio_db(values[2]),
        )
    if mode == "LTE":
        return SignalFacts(
            rat="LTE", rssi_dbm=_rssi_dbm(values[0]), rsrp_dbm=cesq_rsrp_dbm(values[1]),
            sinr_db=_sinr_db(values[2]), rsrq_db=cesq_rsrq_db(values[3]),
        )
    raise AtParseError(f"unsupported ^HCSQ system mode {row[0]!r}")


_SYSMODE_RAT = {0: "NONE", 1: "GSM", 3: "WCDMA", 6: "LTE", 9: "LTE", 10: "LTE", 11: "NR5G-SA"}
_ROAMING = {0: "home", 1: "roaming"}


def parse_sysinfoex(text: str) -> SignalFacts:
    """``^SYSINFOEX: <srv_status>,<srv_domain>,<roam_status>,<sim_state>,<lock_state>,<sysmode>,
    <sysmode_name>,<submode>,<submode_name>`` -> registration, rat, no_service.

    - srv_status 0 (no service): a blank spot; registration "searching" when the domain says
      the modem is searching, else "not_registered".
    - 1 and 3 (restricted: emergency calls only): "not_registered", like TS 27.007 stat 8.
    - 2 (valid service): "home" or "roaming" from <roam_status> ("unknown" when it says so).
    - 4 (power saving or deep sleep; some firmwares also use it for no service): nothing can
      be told, so "unknown" and no blank-spot claim.
    - A SIM that is missing (255) or invalid/PIN-locked (0) says nothing about coverage, and a
      SIM the network refused for both CS and PS (4) means "denied": neither claims no_service.
    """
    row = _row(_lines(text, "^SYSINFOEX:")[0])
    status, domain, roam, sim, sysmode = (_index(_at(row, i)) for i in (0, 1, 2, 3, 5))
    if status is None or sysmode is None:
        raise AtParseError(f"^SYSINFOEX needs <srv_status> and <sysmode>: {text[:80]!r}")
    if status not in (0, 1, 2, 3, 4):
        raise AtParseError(f"unknown ^SYSINFOEX service status {status}")
    rat = _SYSMODE_RAT.get(sysmode)
    serving = rat if rat != "NONE" else None
    if sim in (0, 255):
        return SignalFacts(rat=serving)
    if sim == 4:
        return SignalFacts(registration="denied", rat=serving)
    if status == 0:
        return SignalFacts(
            registration="searching" if domain == 4 else "not_registered", rat="NONE", no_service=True,
        )
    if status == 4:
        return SignalFacts(registration="unknown")
    if status == 2:
        return SignalFacts(registration=_ROAMING.get(roam, "unknown") if roam is not None else None, rat=serving)
    return SignalFacts(registration="not_registered", rat=serving)
