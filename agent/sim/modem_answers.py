"""What a modem prints for its dynamic signal commands, given the radio conditions (pure).

The simulated modem answers static commands (identity, GNSS switches, ...) from a model's
transcript; the commands below change with place and time, so their text is made here from
a :class:`~agent.sim.scenario.Radio`.  Each formatter returns the information lines exactly
as the vendor prints them; :func:`dynamic_answer` adds the final ``OK``, giving the same
shape as :meth:`Transcript.answer <agent.unit.devices.modem.transcript.Transcript.answer>`.

Answer shapes follow the vendors' AT manuals and captured logs: 3GPP TS 27.007 (+CSQ,
+CESQ, +CREG/+CGREG/+CEREG/+C5GREG, +COPS), Quectel EC25/RM500Q (+QENG, +QNWINFO, +QCSQ,
+QSPN), SIMCom SIM7600 (+CPSI), Huawei ME909s (^HCSQ, ^SYSINFOEX), Telit LE910Cx (#RFSTS),
Sierra Wireless EM7455 (!GSTATUS?, !LTEINFO?).
Level indices are the inverse of :mod:`agent.unit.devices.modem.levels`: the index whose
range contains the level, so decoding an index gives the lower edge of that range, never a
higher value than measured.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from agent.shared.gsm_alphabet import GSM_BASIC
from agent.sim.scenario import Radio, Tower

# Registration stat in a blank spot: real modems keep searching (2) rather than giving up (0).
SEARCHING = 2


@dataclass
class AnswerModes:
    """Settings a host changes with AT commands and that shape the dynamic answers."""

    creg: int = 0         # AT+CREG=<n>: 2 adds <lac>,<ci>,<AcT> to the read answer
    cgreg: int = 0
    cereg: int = 0
    c5greg: int = 0
    cops_format: int = 0  # AT+COPS=3,<format>: 0 long name, 1 short name, 2 numeric
    charset: str = "IRA"  # AT+CSCS: the character set strings are printed in (IRA, GSM, UCS2)


def normalise(command: str) -> str:
    """Commands compare case-insensitively, as modems compare them."""
    return command.strip().upper()


_COMMON = frozenset({
    "AT+CSQ", "AT+CESQ", "AT+CREG?", "AT+CGREG?", "AT+CEREG?", "AT+C5GREG?", "AT+COPS?", "AT+COPS=?",
})
_VENDOR = {  # one entry per profiles.DRIVERS (tests/test_sim_modem.py holds them in step)
    "generic": frozenset(),
    "telit": frozenset({"AT#RFSTS"}),
    "quectel": frozenset({'AT+QENG="SERVINGCELL"', "AT+QNWINFO", "AT+QCSQ", "AT+QSPN"}),
    "simcom": frozenset({"AT+CPSI?"}),
    "huawei": frozenset({"AT^HCSQ?", "AT^SYSINFOEX"}),
    "sierra": frozenset({"AT!GSTATUS?", "AT!LTEINFO?"}),
}


def dynamic_commands(driver: str) -> frozenset[str]:
    """The (normalised) commands whose answers depend on the radio, for a vendor driver."""
    return _COMMON | _VENDOR.get(driver, frozenset())


def dynamic_answer(driver: str, command: str, radio: Radio, modes: AnswerModes | None = None) -> list[str] | None:
    """The full answer (information lines, then ``OK``) or None when ``command`` is not dynamic."""
    key = normalise(command)
    if key not in dynamic_commands(driver):
        return None
    modes = modes or AnswerModes()
    lines: list[str]
    if key == "AT+CSQ":
        lines = csq(radio)
    elif key == "AT+CESQ":
        lines = cesq(radio)
    elif key == "AT+CREG?":
        lines = registration("+CREG", radio, modes.creg)
    elif key == "AT+CGREG?":
        lines = registration("+CGREG", radio, modes.cgreg)
    elif key == "AT+CEREG?":
        lines = registration("+CEREG", radio, modes.cereg)
    elif key == "AT+C5GREG?":
        lines = registration("+C5GREG", radio, modes.c5greg)
    elif key == "AT+COPS?":
        lines = cops(radio, modes.cops_format, modes.charset)
    elif key == "AT+COPS=?":
        lines = cops_scan(radio, modes.charset)
    elif key == 'AT+QENG="SERVINGCELL"':
        lines = qeng_servingcell(radio)
    elif key == "AT+QNWINFO":
        lines = qnwinfo(radio)
    elif key == "AT+QCSQ":
        lines = qcsq(radio)
    elif key == "AT+QSPN":
        lines = qspn(radio)
    elif key == "AT+CPSI?":
        lines = cpsi(radio)
    elif key == "AT^HCSQ?":
        lines = hcsq(radio)
    elif key == "AT#RFSTS":
        lines = rfsts(radio)
    elif key == "AT!GSTATUS?":
        lines = gstatus(radio)
    elif key == "AT!LTEINFO?":
        lines = lteinfo(radio)
    else:  # AT^SYSINFOEX
        lines = sysinfoex(radio)
    return [*lines, "OK"]


# -- level indices (the inverse of agent.unit.devices.modem.levels) ----------------------------------

def _index(value: float, low: float, step: float, lowest: int, highest: int) -> int:
    # The small epsilon keeps e.g. -10.5 dB from landing one index low through float error.
    return max(lowest, min(highest, math.floor((value - low) / step + 1e-9)))


def csq_index(rssi_dbm: float | None) -> int:
    """+CSQ <rssi>: 0 is -113 dBm or less, 2 dBm steps, 31 is -51 or more; 99 not known."""
    return 99 if rssi_dbm is None else _index(rssi_dbm, -113.0, 2.0, 0, 31)


def cesq_rxlev_index(rssi_dbm: float | None) -> int:
    return 99 if rssi_dbm is None else _index(rssi_dbm, -111.0, 1.0, 0, 63)


def cesq_rscp_index(rscp_dbm: float | None) -> int:
    return 255 if rscp_dbm is None else _index(rscp_dbm, -121.0, 1.0, 0, 96)


def cesq_ecno_index(ecno_db: float | None) -> int:
    return 255 if ecno_db is None else _index(ecno_db, -24.5, 0.5, 0, 49)


def cesq_rsrq_index(rsrq_db: float | None) -> int:
    return 255 if rsrq_db is None else _index(rsrq_db, -20.0, 0.5, 0, 34)


def cesq_rsrp_index(rsrp_dbm: float | None) -> int:
    return 255 if rsrp_dbm is None else _index(rsrp_dbm, -141.0, 1.0, 0, 97)


# Huawei ^HCSQ (ME909s-120 AT manual): index 0 is below the range, 1 its first step.
def hcsq_rssi_index(rssi_dbm: float | None) -> int:
    """0: < -120 dBm; n: -121+n <= rssi < -120+n; 96: -25 dBm or more; 255 not known."""
    return 255 if rssi_dbm is None else _index(rssi_dbm, -121.0, 1.0, 0, 96)


def hcsq_rsrp_index(rsrp_dbm: float | None) -> int:
    """0: < -140 dBm; n: -141+n <= rsrp < -140+n; 97: -44 dBm or more."""
    return 255 if rsrp_dbm is None else _index(rsrp_dbm, -141.0, 1.0, 0, 97)


def hcsq_sinr_index(sinr_db: float | None) -> int:
    """0: < -20 dB; n: -20.2+0.2n <= sinr < -20+0.2n; 251: 30 dB or more."""
    return 255 if sinr_db is None else _index(sinr_db, -20.2, 0.2, 0, 251)


def hcsq_rsrq_index(rsrq_db: float | None) -> int:
    """0: < -19.5 dB; n: -20+n/2 <= rsrq < -19.5+n/2; 34: -3 dB or more."""
    return 255 if rsrq_db is None else _index(rsrq_db, -20.0, 0.5, 0, 34)


def hcsq_ecio_index(ecio_db: float | None) -> int:
    """0: < -32 dB; n: -32.5+n/2 <= ecio < -32+n/2; 65: 0 dB or more."""
    return 255 if ecio_db is None else _index(ecio_db, -32.5, 0.5, 0, 65)


def qcsq_sinr_value(sinr_db: float) -> int:
    """+QCSQ <lte_sinr>: 1/5 dB steps from -20 dB, 0..250."""
    return max(0, min(250, _round((sinr_db + 20.0) * 5)))


def _round(value: float) -> int:
    """Half away from zero, as firmware prints measured values (Python's round() is banker's)."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def _level(value: float | None, default: float) -> float:
    return default if value is None else value


# -- identities --------------------------------------------------------------------------------

_ACT = {"GSM": 0, "WCDMA": 2, "LTE": 7, "NR5G-SA": 11, "NR5G-NSA": 13}


def _plmn(tower: Tower) -> str:
    return tower.mcc + tower.mnc


def _mnc(tower: Tower) -> str:
    return tower.mnc


def _hex(value: int, width: int = 4) -> str:
    return f"{value:0{width}X}"


# -- 3GPP TS 27.007 ----------------------------------------------------------------------------

def csq(radio: Radio) -> list[str]:
    """``+CSQ: 20,99``; ``+CSQ: 99,99`` when nothing is received (ber is 99 outside GSM calls)."""
    if radio.tower is None:
        return ["+CSQ: 99,99"]
    return [f"+CSQ: {csq_index(radio.rssi_dbm)},99"]


def cesq(radio: Radio) -> list[str]:
    """``+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>``; only the serving RAT's pair is known."""
    tower = radio.tower
    rxlev, ber, rscp, ecno, rsrq, rsrp = 99, 99, 255, 255, 255, 255
    if tower is not None:
        if tower.rat == "GSM":
            rxlev, ber = cesq_rxlev_index(radio.rssi_dbm), 0
        elif tower.rat == "WCDMA":
            # The coverage model's reference power stands for the pilot's (RSCP) on UMTS.
            rscp, ecno = cesq_rscp_index(radio.rsrp_dbm), cesq_ecno_index(radio.rsrq_db)
        elif tower.rat in ("LTE", "NR5G-NSA"):
            rsrq, rsrp = cesq_rsrq_index(radio.rsrq_db), cesq_rsrp_index(radio.rsrp_dbm)
        # NR5G-SA: the six classic fields say nothing about NR; all stay "not known".
    return [f"+CESQ: {rxlev},{ber},{rscp},{ecno},{rsrq},{rsrp}"]


_REG_DOMAIN = {
    # Which registration commands report a cell on each RAT.  On LTE the EC25/SIM7600 show
    # the combined (CS+PS) attach on +CREG and +CGREG too; NSA registers on the LTE anchor.
    "GSM": ("+CREG", "+CGREG"),
    "WCDMA": ("+CREG", "+CGREG"),
    "LTE": ("+CREG", "+CGREG", "+CEREG"),
    "NR5G-NSA": ("+CREG", "+CGREG", "+CEREG"),
    "NR5G-SA": ("+C5GREG",),
}


def registration(prefix: str, radio: Radio, n: int = 0) -> list[str]:
    """``+CEREG: 0,1``; with n>=2 ``+CEREG: 2,1,"2B01","1A2B301",7``; ``+CEREG: 2,2`` while searching."""
    tower = radio.tower
    if tower is None:
        return [f"{prefix}: {n},{SEARCHING}"]
    if prefix not in _REG_DOMAIN.get(tower.rat, ()):
        return [f"{prefix}: {n},0"]
    if n < 2:
        return [f"{prefix}: {n},1"]
    act = 7 if tower.rat == "NR5G-NSA" else _ACT.get(tower.rat, 7)
    area = _hex(tower.tac, 6 if prefix == "+C5GREG" else 4)
    return [f'{prefix}: {n},1,"{area}","{_hex(tower.cell_id)}",{act}']


def in_charset(text: str, charset: str) -> str:
    """A string parameter as a modem set to ``charset`` (AT+CSCS) prints it: UCS2 as hex
    (``"TELKOMSEL"`` -> ``"00540045..."``), GSM as septets of the default alphabet."""
    if charset == "UCS2":
        return text.encode("utf-16-be").hex().upper()
    if charset == "GSM":
        return "".join(chr(GSM_BASIC.index(ch)) if ch in GSM_BASIC else "?" for ch in text)
    return text


def cops(radio: Radio, fmt: int = 0, charset: str = "IRA") -> list[str]:
    """``+COPS: 0,0,"TELKOMSEL",7``; ``+COPS: 0`` when not registered."""
    tower = radio.tower
    if tower is None:
        return ["+COPS: 0"]
    name = _plmn(tower) if fmt == 2 else tower.operator
    return [f'+COPS: 0,{fmt},"{in_charset(name, charset)}",{_ACT.get(tower.rat, 7)}']


def cops_scan(radio: Radio, charset: str = "IRA") -> list[str]:
    """``+COPS: (2,"TELKOMSEL","TELKOMSEL","51010",7),,(0,1,2,3,4),(0,1,2)``; no entries in a blank spot."""
    ranges = "(0,1,2,3,4),(0,1,2)"
    tower = radio.tower
    if tower is None:
        return [f"+COPS: ,,{ranges}"]
    name, numeric = in_charset(tower.operator, charset), in_charset(_plmn(tower), charset)
    entry = f'(2,"{name}","{name}","{numeric}",{_ACT.get(tower.rat, 7)})'
    return [f"+COPS: {entry},,{ranges}"]


# -- Quectel (EC25 / EG25-G / RM500Q AT manuals) -----------------------------------------------

_LTE_BW_INDEX = 5  # 20 MHz (0:1.4 1:3 2:5 3:10 4:15 5:20 MHz)


def _qeng_lte_fields(tower: Tower, radio: Radio) -> str:
    # <is_tdd>,<MCC>,<MNC>,<cellID>,<PCID>,<earfcn>,<freq_band_ind>,<UL_bw>,<DL_bw>,<TAC>,
    # <RSRP>,<RSRQ>,<RSSI>,<SINR>,<CQI>,<tx_power>,<srxlev>.  Captured EC25/EG25-G/RM500Q
    # logs print SINR in whole dB (e.g. RSRP -104 with SINR 11), not the 1/5 dB scale.
    rsrp = _level(radio.rsrp_dbm, -140.0)
    sinr = _level(radio.sinr_db, -20.0)
    cqi = max(1, min(15, _round((sinr + 6) / 2)))
    duplex = "TDD" if 33 <= tower.band <= 53 else "FDD"
    return (
        f'"{duplex}",{tower.mcc},{_mnc(tower)},{tower.cell_id:X},{tower.pci},{tower.earfcn},{tower.band},'
        f"{_LTE_BW_INDEX},{_LTE_BW_INDEX},{tower.tac:X},{_round(rsrp)},{_round(_level(radio.rsrq_db, -20.0))},"
        f"{_round(_level(radio.rssi_dbm, -110.0))},{_round(sinr)},{cqi},-,{max(0, _round(rsrp + 140 - 2))}"
    )


def qeng_servingcell(radio: Radio) -> list[str]:
    """``+QENG: "servingcell","NOCONN","LTE","FDD",510,10,1A2B301,101,1850,3,5,5,2B01,-98,-10,-70,17,...``.

    ``+QENG: "servingcell","SEARCH"`` with no service.  NSA prints three lines (state, LTE
    anchor, NR leg) as the RM500Q does.
    """
    tower = radio.tower
    if tower is None:
        return ['+QENG: "servingcell","SEARCH"']
    state = '"servingcell","NOCONN"'
    rsrp = _round(_level(radio.rsrp_dbm, -140.0))
    rsrq = _round(_level(radio.rsrq_db, -20.0))
    sinr = _round(_level(radio.sinr_db, -20.0))
    if tower.rat == "LTE":
        return [f'+QENG: {state},"LTE",{_qeng_lte_fields(tower, radio)}']
    if tower.rat == "NR5G-NSA":
        return [
            f"+QENG: {state}",
            f'+QENG: "LTE",{_qeng_lte_fields(tower, radio)}',
            # <MCC>,<MNC>,<PCID>,<RSRP>,<SINR>,<RSRQ>,<ARFCN>,<band>,<NR_DL_bw>,<scs>
            f'+QENG: "NR5G-NSA",{tower.mcc},{_mnc(tower)},{tower.pci},{rsrp},{sinr},{rsrq},'
            f"{tower.earfcn},{tower.band},12,1",
        ]
    if tower.rat == "NR5G-SA":
        # <duplex>,<MCC>,<MNC>,<cellID>,<PCID>,<TAC>,<ARFCN>,<band>,<NR_DL_bw>,<RSRP>,<RSRQ>,<SINR>,<scs>,<srxlev>
        return [f'+QENG: {state},"NR5G-SA","TDD",{tower.mcc},{_mnc(tower)},{tower.cell_id:X},{tower.pci},'
                f"{tower.tac:X},{tower.earfcn},{tower.band},12,{rsrp},{rsrq},{sinr},1,{max(0, rsrp + 140 - 2)}"]
    if tower.rat == "WCDMA":
        # <MCC>,<MNC>,<LAC>,<cellID>,<uarfcn>,<PSC>,<RAC>,<RSCP>,<ecio>,<phych>,<SF>,<slot>,<speech_code>,<comMod>
        return [f'+QENG: {state},"WCDMA",{tower.mcc},{_mnc(tower)},{tower.tac:X},{tower.cell_id:X},{tower.earfcn},'
                f"{tower.pci},1,{rsrp},{rsrq},-,-,-,-,-"]
    # GSM: <MCC>,<MNC>,<LAC>,<cellid>,<bsic>,<arfcn>,<band>,<rxlev>,<txp>,<rla>,<drx>,<c1>,<c2>,<gprs>,...
    rxlev = cesq_rxlev_index(radio.rssi_dbm)
    return [f'+QENG: {state},"GSM",{tower.mcc},{_mnc(tower)},{tower.tac:X},{tower.cell_id:X},{tower.pci % 64},'
            f'{tower.earfcn},"GSM{tower.band}",{rxlev},-,-,-,-,-,1,-,-,-,-,-,-,-,-,-,-']


_QNWINFO_ACT = {"GSM": "GSM", "WCDMA": "WCDMA", "LTE": "FDD LTE", "NR5G-NSA": "FDD LTE", "NR5G-SA": "NR5G-SA"}


def qnwinfo(radio: Radio) -> list[str]:
    """``+QNWINFO: "FDD LTE","51010","LTE BAND 3",1850``; ``+QNWINFO: No Service``."""
    tower = radio.tower
    if tower is None:
        return ["+QNWINFO: No Service"]
    act = _QNWINFO_ACT.get(tower.rat, "FDD LTE")
    if act == "FDD LTE" and 33 <= tower.band <= 53:
        act = "TDD LTE"
    if tower.rat.startswith("NR5G"):
        band = f"NR5G BAND {tower.band}" if tower.rat == "NR5G-SA" else f"LTE BAND {tower.band}"
    elif tower.rat == "LTE":
        band = f"LTE BAND {tower.band}"
    elif tower.rat == "WCDMA":
        band = f"WCDMA {tower.band}"
    else:
        band = f"GSM {tower.band}"
    return [f'+QNWINFO: "{act}","{_plmn(tower)}","{band}",{tower.earfcn}']


def qcsq(radio: Radio) -> list[str]:
    """``+QCSQ: "LTE",-70,-98,185,-10`` (rssi dBm, rsrp dBm, sinr in 1/5 dB from -20, rsrq dB)."""
    tower = radio.tower
    if tower is None:
        return ['+QCSQ: "NOSERVICE"']
    rssi = _round(_level(radio.rssi_dbm, -110.0))
    if tower.rat == "GSM":
        return [f'+QCSQ: "GSM",{rssi}']
    if tower.rat == "WCDMA":
        rscp = _round(_level(radio.rsrp_dbm, -120.0))
        return [f'+QCSQ: "WCDMA",{rssi},{rscp},{_round(_level(radio.rsrq_db, -24.0) * 10)}']
    sysmode = "NR5G" if tower.rat == "NR5G-SA" else "LTE"
    return [f'+QCSQ: "{sysmode}",{rssi},{_round(_level(radio.rsrp_dbm, -140.0))},'
            f"{qcsq_sinr_value(_level(radio.sinr_db, -20.0))},{_round(_level(radio.rsrq_db, -20.0))}"]


def qspn(radio: Radio) -> list[str]:
    """``+QSPN: "TELKOMSEL","TELKOMSEL","",0,"51010"`` (full name, short name, SPN, alphabet, RPLMN).

    With no service the names are empty; the RPLMN is unknown too in this model.
    """
    tower = radio.tower
    if tower is None:
        return ['+QSPN: "","","",0,""']
    return [f'+QSPN: "{tower.operator}","{tower.operator}","",0,"{_plmn(tower)}"']


# -- SIMCom (SIM7500/SIM7600 series AT manual) -------------------------------------------------

def cpsi(radio: Radio) -> list[str]:
    """``+CPSI: LTE,Online,510-10,0x2B01,27439873,101,EUTRAN-BAND3,1850,5,5,-100,-980,-700,17``.

    LTE fields after the band: earfcn, dlbw, ulbw, RSRQ (tenths of dB), RSRP and RSSI (tenths
    of dBm), RSSNR (dB), as in the manual's example ``...,4,4,-168,-1126,-773,7``; the cell
    id is decimal, the TAC hex.  ``+CPSI: NO SERVICE,Online`` with no service.
    """
    tower = radio.tower
    if tower is None:
        return ["+CPSI: NO SERVICE,Online"]
    plmn = f"{tower.mcc}-{_mnc(tower)}"
    rsrp10 = _round(_level(radio.rsrp_dbm, -140.0) * 10)
    rsrq10 = _round(_level(radio.rsrq_db, -20.0) * 10)
    rssi10 = _round(_level(radio.rssi_dbm, -110.0) * 10)
    sinr = _round(_level(radio.sinr_db, -20.0))
    if tower.rat in ("LTE", "NR5G-NSA"):
        return [f"+CPSI: LTE,Online,{plmn},0x{tower.tac:04X},{tower.cell_id},{tower.pci},EUTRAN-BAND{tower.band},"
                f"{tower.earfcn},{_LTE_BW_INDEX},{_LTE_BW_INDEX},{rsrq10},{rsrp10},{rssi10},{sinr}"]
    if tower.rat == "NR5G-SA":
        # SIM8200 series: <TAC>,<SCellID>,<PCellID>,<band>,<ARFCN>,<RSRP>,<RSRQ>,<SNR> (tenths)
        return [f"+CPSI: NR5G_SA,Online,{plmn},0x{tower.tac:06X},{tower.cell_id},{tower.pci},NR5G_BAND{tower.band},"
                f"{tower.earfcn},{rsrp10},{rsrq10},{sinr * 10}"]
    if tower.rat == "WCDMA":
        # <LAC>,<CellID>,<band>,<PSC>,<Freq>,<SSC>,<EC/IO>,<RSCP>,<Qual>,<RxLev>,<TXPWR>
        return [f"+CPSI: WCDMA,Online,{plmn},0x{tower.tac:04X},{tower.cell_id},WCDMA IMT 2000,{tower.pci},"
                f"{tower.earfcn},0,{_round(_level(radio.rsrq_db, -24.0))},{_round(_level(radio.rsrp_dbm, -120.0))},"
                f"0,{_round(_level(radio.rssi_dbm, -110.0))},500"]
    # GSM: <LAC>,<CellID>,<ARFCN>,<RxLev dBm>,<Track LO Adjust>,<C1-C2>
    return [f"+CPSI: GSM,Online,{plmn},0x{tower.tac:04X},{tower.cell_id},{tower.earfcn},"
            f"{_round(_level(radio.rssi_dbm, -110.0))},0,33-33"]


# -- Huawei (ME909s series AT command interface specification) ---------------------------------

def hcsq(radio: Radio) -> list[str]:
    """``^HCSQ: "LTE",<rssi>,<rsrp>,<sinr>,<rsrq>`` as indices; ``^HCSQ: "NOSERVICE"``."""
    tower = radio.tower
    if tower is None:
        return ['^HCSQ: "NOSERVICE"']
    if tower.rat == "GSM":
        return [f'^HCSQ: "GSM",{hcsq_rssi_index(radio.rssi_dbm)}']
    if tower.rat == "WCDMA":
        return [f'^HCSQ: "WCDMA",{hcsq_rssi_index(radio.rssi_dbm)},{hcsq_rssi_index(radio.rsrp_dbm)},'
                f"{hcsq_ecio_index(radio.rsrq_db)}"]
    return [f'^HCSQ: "LTE",{hcsq_rssi_index(radio.rssi_dbm)},{hcsq_rsrp_index(radio.rsrp_dbm)},'
            f"{hcsq_sinr_index(radio.sinr_db)},{hcsq_rsrq_index(radio.rsrq_db)}"]


_SYSMODE = {"GSM": (1, "GSM", 3, "EDGE"), "WCDMA": (3, "WCDMA", 41, "WCDMA")}


def sysinfoex(radio: Radio) -> list[str]:
    """``^SYSINFOEX: 2,3,0,1,,6,"LTE",101,"LTE"`` (srv_status, srv_domain, roam, sim, -, sysmode, submode).

    ``^SYSINFOEX: 0,0,0,1,,0,"NO SERVICE",0,"NO SERVICE"`` with no service (SIM still valid).
    """
    tower = radio.tower
    if tower is None:
        return ['^SYSINFOEX: 0,0,0,1,,0,"NO SERVICE",0,"NO SERVICE"']
    sysmode, name, submode, subname = _SYSMODE.get(tower.rat, (6, "LTE", 101, "LTE"))
    return [f'^SYSINFOEX: 2,3,0,1,,{sysmode},"{name}",{submode},"{subname}"']


# -- Telit (LE910Cx AT Commands Reference Guide) -----------------------------------------------

# The simulated unit's SIM: #RFSTS prints its IMSI in every answer (the transcript's AT+CIMI).
_RFSTS_IMSI = "510102345678907"


def rfsts(radio: Radio) -> list[str]:
    """``#RFSTS: "510 10",1850,-98,-70,-11,2B01,FF,0,1280,10,1,1A2B301,"510102345678907","TELKOMSEL",3,3,720,3240,17``.

    The LTE layout: <PLMN>,<EARFCN>,<RSRP>,<RSSI>,<RSRQ>,<TAC>,<RAC>,<TXPWR>,<DRX>,<MM>,<RRC>,
    <CID>,<IMSI>,<NetNameAsc>,<SD>,<ABND>,<T3402>,<T3412>,<SINR>, with the TAC and cell id in
    hex, <SD> 3 (CS and PS attached), <ABND> the LTE band, RAC, TXPWR (idle), DRX cycle, debug
    states and NAS timers as a camped LE910 prints them.  With no cell the serving channel is
    -1, the levels the -47 placeholder and <SD> 0.  Only LTE cells (an NSA tower's anchor
    included) are modelled; on any other RAT the unit answers as out of LTE coverage.
    """
    tower = radio.tower
    if tower is None or tower.rat not in ("LTE", "NR5G-NSA"):
        return [f'#RFSTS: ,-1,-47,-47,,,,,,,,,"{_RFSTS_IMSI}","",0,,,,']
    levels = ",".join(str(_round(_level(value, default))) for value, default in (
        (radio.rsrp_dbm, -140.0), (radio.rssi_dbm, -110.0), (radio.rsrq_db, -20.0)))
    return [f'#RFSTS: "{tower.mcc} {_mnc(tower)}",{tower.earfcn},{levels},{_hex(tower.tac)},FF,0,1280,10,1,'
            f'{_hex(tower.cell_id, 7)},"{_RFSTS_IMSI}","{tower.operator}",3,{tower.band},720,3240,'
            f"{_round(_level(radio.sinr_db, -20.0))}"]


# -- Sierra Wireless (EM7455/MC7455 screens, as captured) --------------------------------------

# The part of the status screen every capture starts with; a modem in low power mode stops
# after it.  Current Time is seconds since boot; a constant here.
_GSTATUS_HEAD = ["!GSTATUS: ", "Current Time:  22016\t\tTemperature: 40", "Reset Counter: 1\t\tMode:        ONLINE         "]
_LTEINFO_HEADER = "Serving:   EARFCN MCC MNC   TAC      CID Bd D U SNR PCI  RSRQ   RSRP   RSSI RXLV"
_LTEINFO_INTRA = "IntraFreq:                                          PCI  RSRQ   RSRP   RSSI RXLV"
_LTEINFO_INTER = "InterFreq: EARFCN ThresholdLow ThresholdHi Priority PCI  RSRQ   RSRP   RSSI RXLV"


def _lte_tower(radio: Radio) -> Tower | None:
    tower = radio.tower
    return tower if tower is not None and tower.rat in ("LTE", "NR5G-NSA") else None


def gstatus(radio: Radio) -> list[str]:
    """The ``!GSTATUS:`` screen of an EM7455 on the serving LTE cell, tabs and trailing blanks
    as captured (danielewood/sierra-wireless-modems README; 3ginfo-lite issue 136).

    No capture shows the screen of a modem without a cell: the simulated one stops after the
    Mode line, as the low-power capture does, and so claims nothing.  Only LTE cells (an NSA
    tower's anchor included) are modelled.  The diversity branch reads what the main one does.
    """
    tower = _lte_tower(radio)
    if tower is None:
        return list(_GSTATUS_HEAD)
    rssi = _round(_level(radio.rssi_dbm, -110.0))
    rsrp = _round(_level(radio.rsrp_dbm, -140.0))
    tx_chan = tower.earfcn + 18000 if tower.band < 33 else tower.earfcn  # FDD uplink EARFCN; TDD shares one
    return [
        *_GSTATUS_HEAD,
        "System mode:   LTE        \tPS state:    Attached     ",
        f"LTE band:      B{tower.band:<6d}\t\tLTE bw:      20 MHz  ",
        f"LTE Rx chan:   {tower.earfcn}\t\tLTE Tx chan: {tx_chan}",
        "LTE CA state:  NOT ASSIGNED",
        "EMM state:     Registered     \tNormal Service ",
        "RRC state:     RRC Idle       ",
        "IMS reg state: No Srv  \t\t",
        "",
        f"PCC RxM RSSI:  {rssi}\t\tRSRP (dBm):  {rsrp}",
        f"PCC RxD RSSI:  {rssi}\t\tRSRP (dBm):  {rsrp}",
        f"Tx Power:      --\t\tTAC:         {tower.tac:04X} ({tower.tac})",
        f"RSRQ (dB):     {_level(radio.rsrq_db, -20.0):.1f}\t\tCell ID:     {tower.cell_id:08X} ({tower.cell_id})",
        f"SINR (dB):     {_level(radio.sinr_db, -20.0):4.1f}",
    ]


def lteinfo(radio: Radio) -> list[str]:
    """``!LTEINFO:`` of an EM7455: the serving cell in fixed-width columns under ``Serving:``
    (TAC decimal, CID hex, ``--`` for the unknown RXLV), then the neighbour tables.

    Without an LTE cell the tables are printed empty (no capture shows that screen).
    """
    tower = _lte_tower(radio)
    if tower is None:
        return ["!LTEINFO: ", _LTEINFO_HEADER, "", _LTEINFO_INTRA, "", _LTEINFO_INTER]
    rsrq = _level(radio.rsrq_db, -20.0)
    rsrp = _level(radio.rsrp_dbm, -140.0)
    rssi = _level(radio.rssi_dbm, -110.0)
    levels = f"{rsrq:5.1f} {rsrp:6.1f} {rssi:6.1f} --"
    # Right-aligned numbers: an MNC's zeros are not printed ("510-01" shows as 510   1).
    serving = (f"{tower.earfcn:>17d} {int(tower.mcc):3d} {int(tower.mnc):3d} {tower.tac:5d} {tower.cell_id:08X} "
               f"{tower.band:2d} 5 5 {_round(_level(radio.sinr_db, -20.0)):3d} {tower.pci:3d} {levels}")
    return ["!LTEINFO: ", _LTEINFO_HEADER, serving, "", _LTEINFO_INTRA, f"{tower.pci:55d} {levels}", "",
            _LTEINFO_INTER]
