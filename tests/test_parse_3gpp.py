"""3GPP TS 27.007 answers parsed from real modem output.

Every table starts with the inputs a parser must reject (AtParseError, nothing else), then
real answers with their provenance and quirks.  Strings come from ModemManager's
test-modem-helpers.c (MM), vendor AT manuals and application notes, and published logs of
field units; IMEIs in copied ATI answers are zeroed.  The property tests at the end feed
arbitrary text, arbitrary bytes and mutated real answers into every parser: the only
exception that may come out is AtParseError.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.parse_3gpp import (
    parse_cesq, parse_cgatt, parse_cgmi, parse_cgmm, parse_cgmr, parse_cimi, parse_cops, parse_cops_scan, parse_cpin,
    parse_cscs, parse_csq, parse_iccid, parse_identity, parse_registration, rat_from_act, registration_from_stat,
)
from agent.unit.devices.modem.values import CurrentOperator, Identity, OperatorChoice, Registration, SignalFacts

BAD = AtParseError  # expected value of a row that must be rejected


def check(parser: Callable[[str], Any], text: str, expected: Any) -> None:
    if expected is BAD:
        with pytest.raises(AtParseError):
            parser(text)
    else:
        assert parser(text) == expected


# -- +CSQ ----------------------------------------------------------------------------------

CSQ_ROWS = [
    ("", BAD),
    ("OK", BAD),
    ("+CSQ: (0-31,99),(0-7,99)", BAD),                 # the AT+CSQ=? answer, not a measurement
    ("+CSQ: 45,99", BAD),                              # index TS 27.007 does not define
    ("+CSQ: ,99", BAD),
    ("+CSQ: 15,99,0", BAD),
    ("+CESQ: 99,99,255,255,20,80", BAD),               # another command's answer
    # QuectelPy README, EC25 REPL session
    ("+CSQ: 24,99", SignalFacts(csq=24, rssi_dbm=-65.0)),
    # Telkomsel unit, modem UI log
    ("+CSQ: 26,99", SignalFacts(csq=26, rssi_dbm=-61.0)),
    # SIM7080G test responses
    ("+CSQ: 17,0", SignalFacts(csq=17, rssi_dbm=-79.0)),
    # RooterSource T77 capture: no space after ':'
    ("+CSQ:12,99", SignalFacts(csq=12, rssi_dbm=-89.0)),
    # BC26 field log, no network at all: 99 is no signal, never a number
    ("+CSQ: 99,99", SignalFacts(no_service=True)),
    # TS 27.007 8.5 range edges
    ("+CSQ: 31,99", SignalFacts(csq=31, rssi_dbm=-51.0)),
    ("+CSQ: 0,0", SignalFacts(csq=0, rssi_dbm=-113.0)),
    # ModemManager-style framing: CR LF around the line, trailing blank
    ("\r\n+CSQ: 20,0\r\n", SignalFacts(csq=20, rssi_dbm=-73.0)),
    # a URC read with the answer, trailing spaces
    ("+CEREG: 1\n+CSQ: 14,99 ", SignalFacts(csq=14, rssi_dbm=-85.0)),
]


@pytest.mark.parametrize("text,expected", CSQ_ROWS)
def test_csq(text: str, expected: Any) -> None:
    """+CSQ gives the raw index and its dBm; 99 is no service with every level null."""
    check(parse_csq, text, expected)


# -- +CESQ ---------------------------------------------------------------------------------

CESQ_ROWS = [
    ("", BAD),
    ("+CESQ: (0-62,99),(0-7,99),(255),(255),(0-34,255),(0-97,255)", BAD),  # AT+CESQ=? (module manual)
    ("+CESQ: 99,99,255,255,20", BAD),                  # five fields
    ("+CESQ: 99,99,255,255,-3,80", BAD),
    ("+CSQ: 20,99", BAD),
    # MM cesq_response_tests
    ("+CESQ: 99,99,255,255,20,80", SignalFacts(rat="LTE", rsrq_db=-10.0, rsrp_dbm=-61.0)),
    ("+CESQ: 99,99,95,40,255,255", SignalFacts(rat="WCDMA", rscp_dbm=-26.0, ecio_db=-4.5)),
    ("+CESQ: 10,6,255,255,255,255", SignalFacts(rat="GSM", rssi_dbm=-101.0)),
    ("+CESQ:10,6,255,255,255,255", SignalFacts(rat="GSM", rssi_dbm=-101.0)),  # no space after ':'
    # Nordic nRF91 (pc-nrfconnect-linkmonitor test packets)
    ("+CESQ: 99,99,255,255,31,62", SignalFacts(rat="LTE", rsrq_db=-4.5, rsrp_dbm=-79.0)),
    ("+CESQ: 99,99,255,255,255,255", SignalFacts(no_service=True)),
    # Android RIL log: rsrp 101 is past TS 27.007's 0..97, so null, not extrapolated
    ("+CESQ: 99,99,255,255,22,101", SignalFacts(rat="LTE", rsrq_db=-9.0)),
    # field notes of a Rel-15 5G unit: on LTE it also fills <rxlev>, which says nothing about LTE
    ("+CESQ: 27,99,255,255,16,44,255,255,255", SignalFacts(rat="LTE", rsrq_db=-12.0, rsrp_dbm=-97.0)),
    # same unit on NR standalone: only <ss_rsrq>,<ss_rsrp>,<ss_sinr> live
    ("+CESQ: 99,99,255,255,255,255,83,73,77",
     SignalFacts(rat="NR5G-SA", rsrq_db=-2.0, rsrp_dbm=-84.0, sinr_db=15.0)),
    # FuriLabs phone (oFono), EN-DC: LTE anchor and NR both measured; the anchor's levels win
    ("+CESQ: 99,99,255,255,19,21,62,40,57", SignalFacts(rat="NR5G-NSA", rsrq_db=-10.5, rsrp_dbm=-120.0)),
]


@pytest.mark.parametrize("text,expected", CESQ_ROWS)
def test_cesq(text: str, expected: Any) -> None:
    """+CESQ decides the rat from which levels are known; all unknown is no service."""
    check(parse_cesq, text, expected)


# -- +CREG / +CGREG / +CEREG / +C5GREG -----------------------------------------------------

def reg(n: int | None, stat: int, lac: int | None = None, tac: int | None = None, ci: int | None = None,
        act: int | None = None) -> Registration:
    return Registration(n=n, stat=stat, registration=registration_from_stat(stat), lac=lac, tac=tac,
                        cell_id=ci, act=act, rat=rat_from_act(act))


REGISTRATION_ROWS = [
    ("", BAD),
    ("+COPS: 0", BAD),
    ("+CREG: ", BAD),
    ("+CREG: 99", BAD),                                # <stat> TS 27.007 does not define
    ("+CREG: A,1", BAD),
    ('+CREG: 2,1,"8BE3', BAD),                         # cut off inside a quote
    ("+CEREG: (0-5)", BAD),                            # AT+CEREG=? answer
    # MM test_creg*: read answers and URCs of many modems
    ("+CREG: 1,3", reg(1, 3)),
    ("\r\n+CREG: 3\r\n", reg(None, 3)),
    ("+CREG: 1,1,84CD,00D30173", reg(1, 1, lac=0x84CD, ci=0xD30173)),        # Sierra Mercury
    ("\r\n+CREG: 1,84CD,00D30156\r\n", reg(None, 1, lac=0x84CD, ci=0xD30156)),
    ('+CREG: 2,1,"CE00","01CEAD8F"', reg(2, 1, lac=0xCE00, ci=0x01CEAD8F)),    # Sony Ericsson K850i
    ('\r\n+CREG: 1,"CE00","00005449"\r\n', reg(None, 1, lac=0xCE00, ci=0x5449)),
    ("+CREG: 2,0,00,0", reg(2, 0)),                    # Huawei E160G unregistered: LAC 0000 is no area, CI 0 beside it no cell
    ('+CREG: 2,1,"8BE3","00002BAF"', reg(2, 1, lac=0x8BE3, ci=0x2BAF)),        # TM-506, leading zeros
    ("\r\n+CREG: 2,,\r\n", reg(None, 2)),              # Novatel XU870 searching, empty location
    ('+CREG:002,001,"18d8","ffff"', reg(2, 1, lac=0x18D8)),  # Iridium: zero-padded, lower case, CI all-F
    ('+CGREG:002,0011,"0f0d","14c3"', reg(2, 11, lac=0x0F0D, ci=0x14C3)),  # MM: <stat> padded to four digits
    ('\r\n+CREG: 0011,"0001","0010",000\r\n', reg(None, 11, lac=1, ci=0x10, act=0)),  # the same in a URC
    ("\r\n+CREG: 10,0001,0010,0\r\n", reg(None, 10, lac=1, ci=0x10, act=0)),  # MM: URC whose <stat> 10 is no <n>
    ("+CREG:2,1,0001,0010", reg(2, 1, lac=1, ci=0x10)),
    ("\r\n+CREG: 1,0001,0010,0\r\n", reg(None, 1, lac=1, ci=0x10, act=0)),
    ('\r\n+CREG: 001,"0001","0010",000\r\n', reg(None, 1, lac=1, ci=0x10, act=0)),
    ('\r\n+CREG: 2,6,"8B37","0A265185",7\r\n', reg(2, 6, lac=0x8B37, ci=0x0A265185, act=7)),  # u-blox TOBY-L2, SMS only
    ('\r\n+CREG: 6,"8B37","0A265185",7\r\n', reg(None, 6, lac=0x8B37, ci=0x0A265185, act=7)),
    ('+CGREG: 2,1,"8BE3","00002B5D",3', reg(2, 1, lac=0x8BE3, ci=0x2B5D, act=3)),  # Ericsson F3607gw, EDGE
    ('\r\n+CGREG: 5,"0502","0404736D",2\r\n', reg(None, 5, lac=0x0502, ci=0x0404736D, act=2)),  # MD400 roaming
    ("\r\n+CREG: 5\r\n\r\n+CGREG: 0\r\n", reg(None, 5)),  # two URCs: the first line answers
    ("\r\n+CGREG: 2,1, 81ED, 1A9CEB\r\n", reg(2, 1, lac=0x81ED, ci=0x1A9CEB)),  # Alcatel X220D, stray spaces
    ("\r\n+CREG: 2,1,000B,2816, B, C2816\r\n", reg(2, 1, lac=0x0B, ci=0x2816)),  # Samsung S8500: AcT "B" is unknown
    ("\r\n+CREG: 2,1,  0 5, 2715\r\n", reg(2, 1, ci=0x2715)),  # Gobi 1000: garbled LAC is unknown, not 5
    ('\r\n+CGREG: 1,"1422","00000142",3,"00"\r\n', reg(None, 1, lac=0x1422, ci=0x142, act=3)),  # with <rac>
    ("\r\n+CEREG: 2,1, 1F00, 79D903 ,7\r\n", reg(2, 1, tac=0x1F00, ci=0x79D903, act=7)),
    ("\r\n+CEREG: 1, 1F00, 79D903 ,7\r\n", reg(None, 1, tac=0x1F00, ci=0x79D903, act=7)),
    ("\r\n+CEREG: 1, 2, 0001, 00000100, 7\r\n", reg(1, 2, tac=1, ci=0x100, act=7)),  # Altair LTE
    ("\r\n+CEREG: 2,1, 1F00, 20 ,79D903 ,7\r\n", reg(2, 1, tac=0x1F00, ci=0x79D903, act=7)),  # Novatel E362 extra field
    ("\r\n+CEREG: 1, 1F00, 20 ,79D903 ,7\r\n", reg(None, 1, tac=0x1F00, ci=0x79D903, act=7)),
    ('+CGREG: 2, 1, "0426", "F00F"', reg(2, 1, lac=0x0426, ci=0xF00F)),  # Thuraya
    ("+C5GREG: 1,3", reg(1, 3)),
    ("\r\n+C5GREG: 3\r\n", reg(None, 3)),
    ("+C5GREG: 2,1,1F00,79D903,11,6,ABCDEF", reg(2, 1, tac=0x1F00, ci=0x79D903, act=11)),
    # Quectel RG50xQ/RM5xxQ network application note: read answer, then the URC
    ('+C5GREG: 2,1,"690E0F","9013B004",11,4,"01.000000"', reg(2, 1, tac=0x690E0F, ci=0x9013B004, act=11)),
    ('+C5GREG: 1,"690E0F","9013B004",11,4,"01.000000"', reg(None, 1, tac=0x690E0F, ci=0x9013B004, act=11)),
    # Huawei 5G module field notes: 36-bit NR cell id in 16 hex digits
    ('+C5GREG: 2,1,"28041B","00000008FE090005",11,1,"01"', reg(2, 1, tac=0x28041B, ci=0x8FE090005, act=11)),
    # docomo field log, n=3: denied with cause type and reject cause
    ('+CEREG: 3,3,"124A","02ED0202",7,0,0', reg(3, 3, tac=0x124A, ci=0x02ED0202, act=7)),
    # NB-IoT thesis log, n=5: empty cause fields, then PSM Active-Time and Periodic-TAU
    ('+CEREG: 5,1,"8CA7","28C464",7,,,"00011000","00101010"', reg(5, 1, tac=0x8CA7, ci=0x28C464, act=7)),
    # BC95-class firmware comment: an extra "00" after <AcT> is read past
    ('+CEREG: 5,1,"00A0","0002920C",9,"00",0,0,"00100010","00010010"', reg(5, 1, tac=0xA0, ci=0x2920C, act=9)),
    # nRF91 modem library test URCs (n=5): NB-S1, and "no location" as all-F
    ('+CEREG: 1,"0A0B","01020304",9,0,0,"00100110","01011111"', reg(None, 1, tac=0x0A0B, ci=0x01020304, act=9)),
    ('+CEREG: 0,"FFFF","FFFFFFFF",9,0,0,,', reg(None, 0, act=9)),
    # field logs, n=0
    ("+CEREG: 0,5", reg(0, 5)),
    ("+CEREG: 0,2", reg(0, 2)),
]


@pytest.mark.parametrize("text,expected", REGISTRATION_ROWS)
def test_registration(text: str, expected: Any) -> None:
    """Read answers and URCs of every n form; LAC for CREG/CGREG, TAC for CEREG/C5GREG."""
    check(parse_registration, text, expected)


STAT_TABLE = [
    (0, "not_registered"), (1, "home"), (2, "searching"), (3, "denied"), (4, "unknown"), (5, "roaming"),
    (6, "sms_only_home"), (7, "sms_only_roaming"), (8, "emergency_only"), (9, "csfb_not_preferred_home"),
    (10, "csfb_not_preferred_roaming"), (11, "rlos_only"),
    (12, "unknown"), (None, "unknown"),
]


@pytest.mark.parametrize("stat,expected", STAT_TABLE)
def test_registration_from_stat(stat: int | None, expected: str) -> None:
    """TS 27.007 <stat> 0..11; anything else is unknown."""
    assert registration_from_stat(stat) == expected


ACT_TABLE = [
    (0, "GSM"), (1, "GSM"), (2, "WCDMA"), (3, "GSM"), (4, "WCDMA"), (5, "WCDMA"), (6, "WCDMA"), (7, "LTE"),
    (8, "GSM"), (9, "LTE"), (10, "LTE"), (11, "NR5G-SA"), (12, "NR5G-SA"), (13, "NR5G-NSA"), (14, None),
    (None, None),
]


@pytest.mark.parametrize("act,expected", ACT_TABLE)
def test_rat_from_act(act: int | None, expected: str | None) -> None:
    """TS 27.007 <AcT> 0..13 as a reading's rat; undefined is null."""
    assert rat_from_act(act) == expected


# -- +COPS? --------------------------------------------------------------------------------

COPS_ROWS = [
    ("", BAD),
    ("+COPS: ", BAD),
    ("+COPS: x", BAD),
    ('+COPS: 0,7,"Telkomsel"', BAD),                   # <format> beyond 0..2
    ('+COPS: (2,"T-Mobile","TMO","31026",0),,(0-4),(0-2)', BAD),  # a scan list, not AT+COPS?
    ("+CREG: 0,1", BAD),
    # MM cops_query_data
    ('+COPS: 1,0,"CHINA MOBILE"', CurrentOperator(mode=1, name="CHINA MOBILE", mcc=None, mnc=None, rat=None)),
    ('+COPS: 1,0,"CHINA MOBILE",7', CurrentOperator(mode=1, name="CHINA MOBILE", mcc=None, mnc=None, rat="LTE")),
    ('+COPS: 1,2,"46000"', CurrentOperator(mode=1, name="46000", mcc="460", mnc="00", rat=None)),
    ('+COPS: 1,2,"46000",7', CurrentOperator(mode=1, name="46000", mcc="460", mnc="00", rat="LTE")),
    # Telkomsel unit, modem UI log
    ('+COPS: 0,0,"Telkomsel",7', CurrentOperator(mode=0, name="Telkomsel", mcc=None, mnc=None, rat="LTE")),
    # the MM numeric layout with Telkomsel's PLMN
    ('+COPS: 0,2,"51010",7', CurrentOperator(mode=0, name="51010", mcc="510", mnc="10", rat="LTE")),
    # the digits are the code: Indosat's 51001 is 510-01; 310026 and 31026 are two networks
    ('+COPS: 0,2,"51001",7', CurrentOperator(mode=0, name="51001", mcc="510", mnc="01", rat="LTE")),
    ('+COPS: 0,2,"310026",7', CurrentOperator(mode=0, name="310026", mcc="310", mnc="026", rat="LTE")),
    ('+COPS: 0,2,"31026",0', CurrentOperator(mode=0, name="31026", mcc="310", mnc="26", rat="GSM")),
    # MCC 000 is what a modem prints when it has no network: no codes
    ('+COPS: 0,2,"00000",7', CurrentOperator(mode=0, name="00000", mcc=None, mnc=None, rat="LTE")),
    # ML307 log before registration: mode only
    ("+COPS: 0", CurrentOperator(mode=0, name=None, mcc=None, mnc=None, rat=None)),
    ('\r\n+COPS: 0,0,"Telkomsel",7 \r\n', CurrentOperator(mode=0, name="Telkomsel", mcc=None, mnc=None, rat="LTE")),
]


@pytest.mark.parametrize("text,expected", COPS_ROWS)
def test_cops(text: str, expected: Any) -> None:
    """AT+COPS?: the name as given; a numeric one also gives MCC and MNC."""
    check(parse_cops, text, expected)


# -- +COPS=? -------------------------------------------------------------------------------

def op(status: str, long_name: str | None, short_name: str | None, mcc: str | None, mnc: str | None,
       rat: str | None) -> OperatorChoice:
    return OperatorChoice(status=status, long_name=long_name, short_name=short_name, mcc=mcc, mnc=mnc, rat=rat)


TMO_GSM = op("available", "T-Mobile", "TMO", "310", "26", "GSM")
ATT_UMTS = op("available", "AT&T", "AT&T", "310", "410", "WCDMA")
ATT_GSM = op("available", "AT&T", "AT&T", "310", "410", "GSM")

COPS_SCAN_ROWS = [
    ("", BAD),
    ("+CSQ: 1,2", BAD),
    ("+COPS: 0,0,\"Telkomsel\",7", BAD),               # the AT+COPS? answer
    ('+COPS: (2,"T-Mobile","TMO","31026",0', BAD),     # cut off mid-entry
    ('+COPS: (7,"T-Mobile","TMO","31026",0)', BAD),    # <stat> beyond 0..3
    ('+COPS: (2,"T-Mobile")', BAD),
    # MM test_cops_response_*
    ('+COPS: (2,"","T-Mobile","31026",0),(2,"T - Mobile","T - Mobile","310260"),2),(1,"AT&T","AT&T","310410"),0)',
     [op("current", None, "T-Mobile", "310", "26", "GSM"), op("current", "T - Mobile", "T - Mobile", "310", "260", "WCDMA"),
      ATT_GSM]),                                       # Sony Ericsson TM-506: ')' before <AcT>
    ('+COPS: (1,"T-Mobile US","TMO US","31026",0),(1,"Cingular","Cingular","310410",0),,(0, 1, 3),(0-2)',
     [op("available", "T-Mobile US", "TMO US", "310", "26", "GSM"),
      op("available", "Cingular", "Cingular", "310", "410", "GSM")]),
    ('+COPS: (1,"T-Mobile","TMO","31026",0),(1,"AT&T","AT&T","310410",2),(1,"AT&T","AT&T","310410",0),,(0,1,2,3,4),)',
     [TMO_GSM, ATT_UMTS, ATT_GSM]),                    # Sierra AirCard 881: empty last list
    ('+COPS: (2,"T-Mobile","","310260"),(0,"Cingular Wireless","","310410")',  # BUSlink SCWi275u: no <AcT>, so GSM
     [op("current", "T-Mobile", None, "310", "260", "GSM"), op("unknown", "Cingular Wireless", None, "310", "410", "GSM")]),
    ('+COPS: (2,"AT&Tp","AT&T@","310410",0),(3,"","","31026",0),',
     [op("current", "AT&Tp", "AT&T@", "310", "410", "GSM"), op("forbidden", None, None, "310", "26", "GSM")]),  # ZTE MF627
    ('+COPS: (2,"AT&T","","310410",0),(2,"","","3104100",2),(1,"AT&T","","310260",0),,(0-4),(0-2)',
     [op("current", "AT&T", None, "310", "410", "GSM"), op("current", None, None, None, None, "WCDMA"),
      op("available", "AT&T", None, "310", "260", "GSM")]),  # Option Quicksilver: 7-digit numeric is no PLMN
    ('+COPS: (2,"T - Mobile",,"31026"),(1,"Einstein PCS",,"31064"),(1,"Cingular",,"31041"),,(0,1,3),(0,2)',
     [op("current", "T - Mobile", None, "310", "26", "GSM"), op("available", "Einstein PCS", None, "310", "64", "GSM"),
      op("available", "Cingular", None, "310", "41", "GSM")]),  # Nokia N80: unquoted empty short name, no <AcT>
    (('+COPS: (0,"AT&T MicroCell","AT&T MicroCell","310410",2)\r\n+COPS: (1,"AT&T MicroCell","AT&T MicroCell",'
     '"310410",0)\r\n+COPS: (1,"T-Mobile","TMO","31026",0)\r\n'),
     [op("unknown", "AT&T MicroCell", "AT&T MicroCell", "310", "410", "WCDMA"),
      op("available", "AT&T MicroCell", "AT&T MicroCell", "310", "410", "GSM"), TMO_GSM]),  # Novatel XU870: a line each
    ('+COPS: (2,"T - Mobile",,"31026",0),\r\n(1,"AT&T",,"310410",0),,(0,1,3),(0,2)',
     [op("current", "T - Mobile", None, "310", "26", "GSM"), op("available", "AT&T", None, "310", "410", "GSM")]),  # Nokia 2720
    ('+COPS: (1,"T-Mobile USA, In","T-Mobile","310260",0),(1,"AT&T","AT&T","310410",0),,(0,1,2,3,4),(0,1,2)',
     [op("available", "T-Mobile USA, In", "T-Mobile", "310", "260", "GSM"), ATT_GSM]),  # Samsung Z810: comma in a name
    (('+COPS: (2,"004D006F007600690073007400610072","004D006F007600690073007400610072","00320031003400300037",7),'
     '(1,"0059004F00490047004F","0059004F00490047004F","00320031003400300034",7)'),
     [op("current", "Movistar", "Movistar", "214", "07", "LTE"),
      op("available", "YOIGO", "YOIGO", "214", "04", "LTE")]),  # u-blox LARA: names in UCS2
    ("+COPS: (0,1,2,3),(1,2,3,4)", []),                # MM gsm_invalid: only lists, no operators
    # Telit GM862 software user guide example
    (('+COPS: (2,"I WIND",,"22288"),(1,"SI MOBITEL GSM",,"29341"),(1,"vodafone IT",,"22210"),(1,"SI.MOBIL",,"29340"),'
     '(3,"I TIM",,"22201"),,(0-4),(0,2)'),
     [op("current", "I WIND", None, "222", "88", "GSM"), op("available", "SI MOBITEL GSM", None, "293", "41", "GSM"),
      op("available", "vodafone IT", None, "222", "10", "GSM"), op("available", "SI.MOBIL", None, "293", "40", "GSM"),
      op("forbidden", "I TIM", None, "222", "01", "GSM")]),
    # ML307 field log, list wrapped over indented lines
    (('+COPS: (1,"CHINA MOBILE","CMCC","46000",7),\n       (3,"","","46015",7),\n       (3,"CHN-CT","CT","46011",7),\n'
     '       (3,"CHN-UNICOM","UNICOM","46001",7),\n       ,(0,1,2,3,4),(0,1,2)'),
     [op("available", "CHINA MOBILE", "CMCC", "460", "00", "LTE"), op("forbidden", None, None, "460", "15", "LTE"),
      op("forbidden", "CHN-CT", "CT", "460", "11", "LTE"), op("forbidden", "CHN-UNICOM", "UNICOM", "460", "01", "LTE")]),
    # what firmware prints when no PLMN is found: only the supported-modes lists
    ("+COPS: ,,(0,1,2,3,4),(0,1,2)", []),
    ("+COPS: ,,(0-4),(0-2)", []),
]


@pytest.mark.parametrize("text,expected", COPS_SCAN_ROWS)
def test_cops_scan(text: str, expected: Any) -> None:
    """AT+COPS=?: one choice per operator entry; the supported-modes lists are not operators."""
    check(parse_cops_scan, text, expected)


def test_cops_scan_parentheses_inside_a_name() -> None:
    """A name may hold commas and parentheses inside its quotes (constructed on the Z810 layout)."""
    text = '+COPS: (2,"PT Telkomsel (Persero), Tbk","TSEL","51010",7),(1,"XL","XL","51011",2),,(0-4),(0-2)'
    assert parse_cops_scan(text) == [op("current", "PT Telkomsel (Persero), Tbk", "TSEL", "510", "10", "LTE"),
                                     op("available", "XL", "XL", "510", "11", "WCDMA")]


LARA_SCAN = ('+COPS: (2,"004D006F007600690073007400610072","004D006F007600690073007400610072",'
             '"00320031003400300037",7),(1,"0059004F00490047004F","0059004F00490047004F","00320031003400300034",7)')
MF627 = '+COPS: (2,"AT&Tp","AT&T@","310410",0),(3,"","","31026",0),'

SCAN_CHARSET_ROWS = [
    # (charset the modem was set to with AT+CSCS, answer, choices)
    ("UCS2", '+COPS: (2,"T-Mobile",', BAD),             # cut off: a list read in part would hide operators
    # MM's ZTE MF627 test: in the GSM default alphabet '@' on the line is an inverted exclamation mark
    ("GSM", MF627, [op("current", "AT&Tp", "AT&T\u00a1", "310", "410", "GSM"), op("forbidden", None, None, "310", "26", "GSM")]),
    # the same bytes from a modem set to IRA (ASCII) are what they look like
    ("IRA", MF627, [op("current", "AT&Tp", "AT&T@", "310", "410", "GSM"), op("forbidden", None, None, "310", "26", "GSM")]),
    ('"gsm"', MF627, [op("current", "AT&Tp", "AT&T\u00a1", "310", "410", "GSM"), op("forbidden", None, None, "310", "26", "GSM")]),
    # u-blox LARA set to UCS2: names and numeric fields in hex
    ("UCS2", LARA_SCAN, [op("current", "Movistar", "Movistar", "214", "07", "LTE"), op("available", "YOIGO", "YOIGO", "214", "04", "LTE")]),
    # constructed on the LARA layout: a name the modem has only in ASCII stays as it is under UCS2
    ("UCS2", '+COPS: (1,"XL","XL","00350031003000310031",7)', [op("available", "XL", "XL", "510", "11", "LTE")]),
    # constructed from TS 23.038: septet 0x11 is '_', 0x1B 0x65 the euro sign, 0x1B 0x3C '['
    ("GSM", '+COPS: (1,"Op\x11X\x1b\x65","\x1b\x3cT","51089",2)', [op("available", "Op_X\u20ac", "[T", "510", "89", "WCDMA")]),
]


@pytest.mark.parametrize("charset,text,expected", SCAN_CHARSET_ROWS)
def test_cops_scan_names_in_the_modems_character_set(charset: str, text: str, expected: Any) -> None:
    """AT+CSCS decides how names are printed: UCS2 hex and the GSM alphabet become text."""
    check(lambda t: parse_cops_scan(t, charset=charset), text, expected)


COPS_CHARSET_ROWS = [
    (None, '+COPS: 0,0,"00540045004C004B004F004D00530045004C",7',   # unknown set: a hex name is not guessed at
     CurrentOperator(mode=0, name="00540045004C004B004F004D00530045004C", mcc=None, mnc=None, rat="LTE")),
    ("UCS2", '+COPS: 0,0,"00540045004C004B004F004D00530045004C",7',
     CurrentOperator(mode=0, name="TELKOMSEL", mcc=None, mnc=None, rat="LTE")),
    (None, '+COPS: 0,2,"00350031003000310030",7',               # digits in UCS2 can only be a numeric operator
     CurrentOperator(mode=0, name="51010", mcc="510", mnc="10", rat="LTE")),
    ("GSM", '+COPS: 0,0,"AT&T@",0', CurrentOperator(mode=0, name="AT&T\u00a1", mcc=None, mnc=None, rat="GSM")),
]


@pytest.mark.parametrize("charset,text,expected", COPS_CHARSET_ROWS)
def test_cops_name_in_the_modems_character_set(charset: str | None, text: str, expected: CurrentOperator) -> None:
    assert parse_cops(text, charset=charset) == expected


CSCS_ROWS = [
    ("", BAD),
    ('+CSCS: ("IRA","GSM","UCS2")', BAD),               # MM, Option iCON 225: the AT+CSCS=? list
    ("+CSCS: ", BAD),
    ('+CSCS: "IRA"', "IRA"),                           # MM, BlackBerry (answering the test command with its set)
    ('\r\n+CSCS: "UCS2"\r\n', "UCS2"),
    ('+CSCS:"gsm"', "GSM"),
    ("+CSCS: 8859-1", "8859-1"),
]


@pytest.mark.parametrize("text,expected", CSCS_ROWS)
def test_cscs(text: str, expected: Any) -> None:
    """AT+CSCS?: the character set, upper case, quotes gone."""
    check(parse_cscs, text, expected)


# -- SIM state, attach, IMSI, ICCID --------------------------------------------------------

CPIN_ROWS = [
    ("", BAD),
    ("+CPIN:", BAD),
    ("+CME ERROR: 10", BAD),                           # the error is the final result; no +CPIN line
    ("+CPIN: ???", BAD),
    # TS 27.007 codes as SIM7600 / SIM800 / Telit units print them
    ("+CPIN: READY", "READY"),
    ("+CPIN: SIM PIN", "SIM PIN"),
    ("+CPIN: SIM PUK", "SIM PUK"),
    ("+CPIN: PH-SIM PIN", "PH-SIM PIN"),
    ("+CPIN: NOT INSERTED", "NOT INSERTED"),           # SIM800, EC21 after boot
    ("+CPIN: NOT READY", "NOT READY"),                 # SIMCom while the card initialises
    ("+CPIN:READY", "READY"),                          # no space after ':'
    ("\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n", "READY"),  # SIM7600A-H: URC after the answer
]


@pytest.mark.parametrize("text,expected", CPIN_ROWS)
def test_cpin(text: str, expected: Any) -> None:
    """+CPIN: the SIM state exactly as the modem names it."""
    check(parse_cpin, text, expected)


CGATT_ROWS = [
    ("", BAD),
    ("+CGATT: 2", BAD),
    ("+CGATT: (0,1)", BAD),                            # AT+CGATT=? answer
    ("+CGATT: 1", True),                               # ML307C / SIM7080G logs
    ("+CGATT: 0", False),
    ("+CGATT:1", True),                                # no space after ':'
]


@pytest.mark.parametrize("text,expected", CGATT_ROWS)
def test_cgatt(text: str, expected: Any) -> None:
    """+CGATT: attached to the packet domain or not."""
    check(parse_cgatt, text, expected)


CIMI_ROWS = [
    ("", BAD),
    ("ERROR", BAD),
    ("4600232102260231", BAD),                         # 16 digits
    ("46002321O226023", BAD),                          # letter O for a zero
    ("460023210226023", "460023210226023"),            # Quectel EC25 AT manual example
    ("\r\n460023210226023\r\n", "460023210226023"),
    ("+CIMI: 460023210226023", "460023210226023"),     # prefixed, as some firmware prints it
]


@pytest.mark.parametrize("text,expected", CIMI_ROWS)
def test_cimi(text: str, expected: Any) -> None:
    """AT+CIMI: the IMSI digits."""
    check(parse_cimi, text, expected)


ICCID_ROWS = [
    ("", BAD),
    ("982314203264096", BAD),                          # MM: too short
    ("98231420326pl9614067", BAD),                     # MM: invalid characters
    ('"0044200053671052499"', BAD),                    # MM: not an ICCID (MII must be 89)
    ("0044200053671052499", BAD),
    ("+QCCID: 8986-0123", BAD),
    # MM test_iccid_parse_*: swapped nibbles, F padding, hex account digits
    ('"984402003576012594F9"', "8944200053671052499"),
    ("98231420326409614067", "89324102234690160476"),
    ("8944200053671052499F", "8944200053671052499"),
    ("8944200053671052499", "8944200053671052499"),
    ('"89324102234690160476"', "89324102234690160476"),
    ('"898602F9091830030220"', "898602F9091830030220"),
    ('"898602C0123456789012"', "898602C0123456789012"),
    # vendor prefixes
    ("+QCCID: 89860436101892671308", "89860436101892671308"),      # Quectel, code comment capture
    ("+QCCID: 8901260886258128535F", "8901260886258128535"),       # Quectel, F padding
    ("^ICCID: 89860121802374570731", "89860121802374570731"),      # Huawei AT^ICCID?
    ("+ICCID: 898600700907A6019125", "898600700907A6019125"),      # SIMCom AT+CICCID manual example
    ("\r\n+ICCID: 8939880841024179213F\r\n", "8939880841024179213"),  # Air780E
    ('+CCID: "89148000000637720260",""', "89148000000637720260"),   # BG96: quoted, extra empty field
    ("+CCID: 89332401000010876791,89033240817620069918070003435626", "89332401000010876791"),  # Sierra: EID follows
]


@pytest.mark.parametrize("text,expected", ICCID_ROWS)
def test_iccid(text: str, expected: Any) -> None:
    """The ICCID from any vendor prefix or bare, padding dropped, swapped nibbles put right."""
    check(parse_iccid, text, expected)


# -- identity ------------------------------------------------------------------------------

IDENTITY_ROWS = [
    ("", BAD),
    ("\n\n", BAD),
    ("+GCAP: +CGSM", BAD),
    ("IMEI: 000000000000000", BAD),
    # pipeserial README: Quectel EC25, and a Huawei ME909s-120 on the same host
    ("Quectel\nEC25\nRevision: EC25EFAR06A06M4G\n", Identity("Quectel", "EC25", "EC25EFAR06A06M4G")),
    (("Manufacturer: Huawei Technologies Co., Ltd.\nModel: ME909s-120\nRevision: 11.617.15.00.00\n"
     "IMEI: 000000000000000\n+GCAP: +CGSM,+DS,+ES\n"),
     Identity("Huawei Technologies Co., Ltd.", "ME909s-120", "11.617.15.00.00")),
    # Waveshare SIM7600G-H setup notes (minicom)
    (("Manufacturer: SIMCOM INCORPORATED\nModel: SIMCOM_SIM7600G-H\nRevision: SIM7600M22_V2.0\n"
     "IMEI: 000000000000000\n+GCAP: +CGSM\n"),
     Identity("SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H", "SIM7600M22_V2.0")),
    # SIM7600C test fixture: lines separated by a lone CR
    (("\r\nManufacturer: SIMCOM INCORPORATED\rModel: SIMCOM_SIM7600C\rRevision: SIM7600C _V1.0\r"
     "IMEI: 000000000000000\r+GCAP: +CGSM,+FCLASS,+DS\r"),
     Identity("SIMCOM INCORPORATED", "SIMCOM_SIM7600C", "SIM7600C _V1.0")),
    # LilyGO T-SIM7600 notes, AT+SIMCOMATI: empty QCN/MEID values, DeviceInfo
    (("Manufacturer: SIMCOM INCORPORATED\nModel: SIMCOM_SIM7600G-H\nRevision: LE20B04SIM7600G22\nQCN:\n"
     "IMEI: 000000000000000\nMEID:\n+GCAP: +CGSM\nDeviceInfo: 173,170\n"),
     Identity("SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H", "LE20B04SIM7600G22")),
    # MM devids: Sierra C885 with a bare "3GPP Release 6" line; C-MOTECH with CR CR LF and trailing spaces
    (("\nManufacturer: Sierra Wireless, Inc.\nModel: C885\n"
      "Revision: J1_0_1_26AP C:/WS/FW/J1_0_1_26AP/MSM7200A/SRC/AMSS 2009/01/30 07:58:06\n"
      "IMEI: 000000000000000\nIMEI SV: 6\nFSN: D603478104511\n3GPP Release 6\n+GCAP: +CGSM,+DS,+ES\n"),
     Identity("Sierra Wireless, Inc.", "C885",
              "J1_0_1_26AP C:/WS/FW/J1_0_1_26AP/MSM7200A/SRC/AMSS 2009/01/30 07:58:06")),
    (("\nManufacturer: C-MOTECH Co., Ltd.\r\r\nModel: CDX-650 \r\r\nRevision: CDX65UAC03\r\r\nEsn: 3B0C4B98\r\r\n"
     "+GCAP: +CIS707A, +MS, +ES, +DS, +FCLASS\r\n"),
     Identity("C-MOTECH Co., Ltd.", "CDX-650", "CDX65UAC03")),
    ("\nMD300\n", Identity(None, "MD300", None)),      # Sony Ericsson MD300: a lone line names the product
]


@pytest.mark.parametrize("text,expected", IDENTITY_ROWS)
def test_identity(text: str, expected: Any) -> None:
    """ATI in the key/value form (SIMCom, Huawei) and Quectel's bare lines."""
    check(parse_identity, text, expected)


GM_ROWS = [
    (parse_cgmi, "", BAD),
    (parse_cgmm, "\r\n\r\n", BAD),
    (parse_cgmr, "+CGMR: ", BAD),
    (parse_cgmm, "OK", BAD),
    (parse_cgmi, "Quectel", "Quectel"),                               # EC25 modem guide
    (parse_cgmm, "EC25", "EC25"),
    (parse_cgmr, "EC25EFAR06A08M4G", "EC25EFAR06A08M4G"),
    (parse_cgmi, "\nQUALCOMM INCORPORATED\n", "QUALCOMM INCORPORATED"),  # MM devids: Gobi 1000
    (parse_cgmm, "\nDELL XU870 ExpressCard\n", "DELL XU870 ExpressCard"),
    (parse_cgmi, '\n"Motorola"\n', "Motorola"),                       # MM devids: Motorola ROKR E2, quoted
    (parse_cgmm, '\n"E2"\n', "E2"),
    (parse_cgmr, "\r\n+CGMR: LE11B01SIM7600C\r\n", "LE11B01SIM7600C"),  # SIM7600C: prefixed
    (parse_cgmr, "+CGMR: A011B07A7670M7_F", "A011B07A7670M7_F"),       # A7670 bring-up log
    (parse_cgmm, "SIMCOM_SIM7600E-H", "SIMCOM_SIM7600E-H"),
    (parse_cgmi, "Huawei Technologies Co., Ltd.", "Huawei Technologies Co., Ltd."),
]


@pytest.mark.parametrize("parser,text,expected", GM_ROWS)
def test_cgmi_cgmm_cgmr(parser: Callable[[str], str], text: str, expected: Any) -> None:
    """+CGMI/+CGMM/+CGMR: bare text, or after the prefix some modems print."""
    check(parser, text, expected)


ALL_TABLES = {
    "csq": CSQ_ROWS, "cesq": CESQ_ROWS, "registration": REGISTRATION_ROWS, "cops": COPS_ROWS,
    "cops_scan": COPS_SCAN_ROWS, "cpin": CPIN_ROWS, "cgatt": CGATT_ROWS, "cimi": CIMI_ROWS, "iccid": ICCID_ROWS,
    "identity": IDENTITY_ROWS, "cgmi/cgmm/cgmr": GM_ROWS, "cscs": CSCS_ROWS,
}


def test_tables_cover_every_parser_with_bad_inputs_first() -> None:
    """Each table rejects bad inputs before it accepts real ones; together they hold 55+ cases."""
    total = bad = 0
    for name, rows in ALL_TABLES.items():
        outcomes = [row[-1] is BAD for row in rows]
        first_good = outcomes.index(False)
        assert all(outcomes[:first_good]) and not any(outcomes[first_good:]), name
        assert first_good >= 1, f"{name} has no bad inputs"
        total += len(rows)
        bad += first_good
        print(f"{name}: {len(rows)} rows ({first_good} bad)")
    print(f"total: {total} rows, {bad} bad, {total - bad} real answers")
    assert total >= 55


# -- registration forms generated from the TS 27.007 layouts --------------------------------

def _not_all_f(value: int) -> bool:
    digits = f"{value:X}"
    return not (len(digits) >= 4 and set(digits) == {"F"})


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(["+CREG", "+CGREG", "+CEREG", "+C5GREG"]),
    n=st.integers(0, 5),
    stat=st.integers(0, 11),
    area=st.integers(1, 0xFFFD),
    ci=st.integers(1, 0x0FFFFFFE),
    act=st.integers(0, 13),
    read=st.booleans(),
    space=st.sampled_from(["", " "]),
)
def test_every_n_form_round_trips(command: str, n: int, stat: int, area: int, ci: int, act: int, read: bool,
                                  space: str) -> None:
    """Each layout TS 27.007 gives for n=0..5, read or URC, parses back to what was written."""
    assume(_not_all_f(area) and _not_all_f(ci))
    fields = [str(stat)]
    if n >= 2:
        fields += [f'"{area:04X}"', f'"{ci:08X}"', str(act)]
        if command == "+CGREG":
            fields.append('"00"')                                  # <rac>
        if command == "+C5GREG":
            fields += ["1", '"01"']                                # <Allowed_NSSAI_length>,<Allowed_NSSAI>
        if n in (3, 5):
            fields += ["0", "15"]                                  # <cause_type>,<reject_cause>
        elif n == 4:
            fields += ["", ""]
        if n >= 4 and command == "+CEREG":
            fields += ['"00100100"', '"01000111"']                 # Active-Time, Periodic-TAU
    if read:
        fields.insert(0, str(n))
    text = f"{command}:{space}" + ",".join(fields)
    got = parse_registration(text)
    located = n >= 2
    eps = command in ("+CEREG", "+C5GREG")
    assert got == reg(
        n if read else None, stat,
        lac=area if located and not eps else None, tac=area if located and eps else None,
        ci=ci if located else None, act=act if located else None,
    ), text


# -- only AtParseError, whatever the text ---------------------------------------------------

PARSERS: list[Callable[[str], Any]] = [
    parse_csq, parse_cesq, parse_registration, parse_cops, parse_cops_scan, parse_cpin, parse_cgatt, parse_cimi,
    parse_iccid, parse_identity, parse_cgmi, parse_cgmm, parse_cgmr, parse_cscs,
    lambda text: parse_cops_scan(text, charset="GSM"), lambda text: parse_cops_scan(text, charset="UCS2"),
    lambda text: parse_cops(text, charset="UCS2"),
]

REAL_ANSWERS = [row[-2] for rows in ALL_TABLES.values() for row in rows if row[-1] is not BAD]

AT_ALPHABET = '+^CSQEGRPOIMDN5:,"()0123456789ABCDEFabcdefx -.\r\n'


def _run_all(text: str, counts: Counter[str]) -> None:
    for parser in PARSERS:
        try:
            parser(text)
        except AtParseError:
            counts["rejected"] += 1
        else:
            counts["value"] += 1


def _fuzz(strategy: st.SearchStrategy[str], examples: int) -> Counter[str]:
    counts: Counter[str] = Counter()

    @settings(max_examples=examples, deadline=None)
    @given(strategy)
    def run(text: str) -> None:
        counts["texts"] += 1
        _run_all(text, counts)

    run()
    return counts


def test_arbitrary_text_gives_a_value_or_at_parse_error() -> None:
    """Any str, from any alphabet, into every parser: a value or AtParseError, nothing else."""
    counts = _fuzz(st.text(), 400)
    print(f"arbitrary text: {counts['texts']} texts, {counts['value']} values, {counts['rejected']} rejected")
    assert counts["texts"] > 0


def test_at_like_text_gives_a_value_or_at_parse_error() -> None:
    """Text built from the characters AT answers are made of reaches deeper into each parser."""
    prefixes = st.sampled_from(["+CSQ:", "+CESQ:", "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+COPS:", "+CPIN:",
                                "+CGATT:", "+QCCID:", "^ICCID:", "Manufacturer:", "Revision:", "+CGMR:", ""])
    strategy = st.builds(lambda p, body: p + body, prefixes, st.text(alphabet=AT_ALPHABET, max_size=80))
    counts = _fuzz(strategy, 600)
    print(f"AT-like text: {counts['texts']} texts, {counts['value']} values, {counts['rejected']} rejected")
    assert counts["value"] > 0 and counts["rejected"] > 0


def test_decoded_bytes_give_a_value_or_at_parse_error() -> None:
    """Line noise as the channel delivers it (bytes decoded with errors="replace")."""
    counts = _fuzz(st.binary(max_size=120).map(lambda b: b.decode("ascii", errors="replace")), 300)
    print(f"decoded bytes: {counts['texts']} texts, {counts['value']} values, {counts['rejected']} rejected")
    assert counts["texts"] > 0


@st.composite
def mutated_answer(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(REAL_ANSWERS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate", "swap"]))
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, len(text)))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.text(alphabet=AT_ALPHABET, max_size=6) | st.text(max_size=3)) + text[i:]
        elif kind == "replace" and i < len(text):
            text = text[:i] + draw(st.characters()) + text[i + 1:]
        elif kind == "truncate":
            text = text[:i]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "swap":
            parts = text.split(",")
            if len(parts) > 1:
                a = draw(st.integers(0, len(parts) - 1))
                b = draw(st.integers(0, len(parts) - 1))
                parts[a], parts[b] = parts[b], parts[a]
                text = ",".join(parts)
    return text


def test_mutated_real_answers_give_a_value_or_at_parse_error() -> None:
    """Real answers cut, spliced, duplicated and reordered: still a value or AtParseError."""
    counts = _fuzz(mutated_answer(), 800)
    print(f"mutated answers: {counts['texts']} texts from {len(REAL_ANSWERS)} real ones, "
          f"{counts['value']} values, {counts['rejected']} rejected")
    assert counts["value"] > 0 and counts["rejected"] > 0


def test_non_text_is_an_at_parse_error() -> None:
    """Bytes handed over undecoded are a parse error, not a TypeError deep inside."""
    for parser in PARSERS:
        with pytest.raises(AtParseError):
            parser(b"+CSQ: 15,99")  # type: ignore[arg-type]
