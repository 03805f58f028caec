"""Vendor signal parsers (Quectel, SIMCom, Huawei, Telit, Sierra) against what real modems printed.

Every table row is one response's information text as a modem printed it (the source of each
group is in its comment) and the complete SignalFacts it must give: a field not named in the
row must be None.  Bad inputs come first in every table.  Then properties: any text at all,
and real answers mutated at random, give a SignalFacts or AtParseError and nothing else, and
a SignalFacts never carries a sentinel (99, 255, -32768) where a level or identity belongs.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields

import pytest
from _pytest.mark.structures import ParameterSet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.parse_huawei import parse_hcsq, parse_sysinfoex
from agent.unit.devices.modem.parse_quectel import parse_qcsq, parse_qeng_servingcell, parse_qnwinfo, parse_qspn
from agent.unit.devices.modem.parse_sierra import parse_gstatus, parse_lteinfo
from agent.unit.devices.modem.parse_simcom import parse_cpsi
from agent.unit.devices.modem.parse_telit import parse_rfsts
from agent.unit.devices.modem.values import SignalFacts
from agent.shared.operators import is_mcc, is_mnc
from agent.shared.reading import REGISTRATIONS as READING_REGISTRATIONS

F = SignalFacts
Parser = Callable[[str], SignalFacts]


def bad(parser: Parser, text: str, label: str) -> ParameterSet:
    return pytest.param(parser, text, id=f"{parser.__name__}-{label}")


def good(parser: Parser, text: str, expected: SignalFacts, label: str) -> ParameterSet:
    return pytest.param(parser, text, expected, id=f"{parser.__name__}-{label}")


# ================================================================ bad inputs, every parser

BAD = [
    *(bad(p, "", "empty") for p in (parse_qeng_servingcell, parse_qnwinfo, parse_qcsq, parse_qspn,
                                     parse_cpsi, parse_hcsq, parse_sysinfoex, parse_rfsts, parse_gstatus,
                                     parse_lteinfo)),
    *(bad(p, "OK", "final-result-only") for p in (parse_qeng_servingcell, parse_cpsi, parse_hcsq, parse_rfsts,
                                                  parse_gstatus, parse_lteinfo)),
    bad(parse_qeng_servingcell, "+CSQ: 15,99", "another-command"),
    bad(parse_qeng_servingcell, '+QENG: "servingcell"', "no-state"),
    bad(parse_qeng_servingcell, '+QENG: "servingcell","BOGUS","LTE"', "unknown-state"),
    # neighbour cells only (openqti, EG25-G): no serving cell line
    bad(parse_qeng_servingcell, '+QENG: "neighbourcell intra","LTE",6300,188,-12,-105,-75,-20,23,4,12,10,62',
        "neighbours-only"),
    bad(parse_qeng_servingcell, '+QENG: "servingcell","NOCONN"', "en-dc-header-without-cells"),
    bad(parse_qnwinfo, "+QNWINFO: ", "no-act"),
    bad(parse_qnwinfo, '+QNWINFO: "WIMAX","51010","BAND 1",1', "unknown-act"),
    bad(parse_qcsq, "+QCSQ: ", "no-sysmode"),
    bad(parse_qcsq, '+QCSQ: "WIMAX",-60', "unknown-sysmode"),
    bad(parse_qspn, '+QSPN: "TELKOMSEL"', "too-few-fields"),
    bad(parse_cpsi, "+CPSI: ", "no-mode"),
    bad(parse_cpsi, "+CPSI: WIMAX,Online,510-10", "unknown-mode"),
    bad(parse_hcsq, "^HCSQ: ", "no-sysmode"),
    bad(parse_hcsq, '^HCSQ: "CDMA",40', "unsupported-cdma"),
    bad(parse_sysinfoex, "^SYSINFOEX: ,,,", "no-numbers"),
    bad(parse_sysinfoex, '^SYSINFOEX: 9,3,0,1,,6,"LTE",101,"LTE"', "unknown-service-status"),
    bad(parse_rfsts, '#RFSTS: "510 10",1850,-98', "truncated"),
    bad(parse_gstatus, "!GSTATUS:\nTemperature: 29", "no-mode"),
    # MC7455 stuck in low power mode (Sierra Wireless forum, "MC7455 lower power mode (config name
    # mismatch) after latest FW"): the radio is off, no measurement, and the screen stops there
    bad(parse_gstatus, "!GSTATUS:\nCurrent Time:  434              Temperature: 29\n"
                       "Reset Counter: 3                Mode:        LOW POWER MODE\n", "low-power-mode"),
    bad(parse_gstatus, "!GSTATUS: \nReset Counter: 1\t\tMode:        ONLINE\nSystem mode:   WIMAX", "unknown-system"),
    bad(parse_lteinfo, "!LTEINFO: \nIntraFreq:    PCI  RSRQ   RSRP   RSSI RXLV", "no-serving-table"),
    bad(parse_lteinfo, "!LTEINFO: \nServing:   EARFCN MCC MNC   TAC      CID Bd D U SNR PCI  RSRQ   RSRP   RSSI RXLV\n"
                       "              800 310 410 35666", "serving-row-cut"),
]


@pytest.mark.parametrize("parser, text", BAD)
def test_bad_input_is_an_at_parse_error(parser: Parser, text: str) -> None:
    """Text that is not the command's answer raises AtParseError, never anything else."""
    with pytest.raises(AtParseError):
        parser(text)


# ================================================================ Quectel AT+QENG="servingcell"

QENG = [
    # SEARCH: the most valuable reading, a blank spot (the state every Quectel manual documents)
    good(parse_qeng_servingcell, '+QENG: "servingcell","SEARCH"',
         F(registration="searching", rat="NONE", no_service=True), "search"),
    # EP06-E, firmware EP06ELAR04A22M4G, Italy 222-88; 4IceG/luci-app-3ginfo-lite issue 108.
    # SINR 21 is dB (the reporter checked it against the modem's own UI).
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN","LTE","FDD",222,88,4CAA71F,28,1500,3,3,3,77B8,-84,-9,-56,21,35',
         F(mcc="222", mnc="88", rat="LTE", cell_id=0x4CAA71F, pci=28, earfcn=1500, band=3, tac=0x77B8,
           rsrp_dbm=-84.0, rsrq_db=-9.0, rssi_dbm=-56.0, sinr_db=21.0), "lte-ep06"),
    # EP06-E with a spusu SIM, Italy 222-88; issue 111: srxlev printed as "-"
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN","LTE","FDD",222,88,243800E,20,3350,7,5,5,3AC9,-86,-13,-52,15,-',
         F(mcc="222", mnc="88", rat="LTE", cell_id=0x243800E, pci=20, earfcn=3350, band=7, tac=0x3AC9,
           rsrp_dbm=-86.0, rsrq_db=-13.0, rssi_dbm=-52.0, sinr_db=15.0), "lte-srxlev-dash"),
    # EG25-G in a PinePhone, Spain 214-01 (openqti cell.h)
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,-104,-9,-78,11,23',
         F(mcc="214", mnc="01", rat="LTE", cell_id=0x7676A09, pci=188, earfcn=6300, band=20, tac=0x603,
           rsrp_dbm=-104.0, rsrq_db=-9.0, rssi_dbm=-78.0, sinr_db=11.0), "lte-eg25g"),
    # EC2x field tester in Iran (MCI 432-11, Irancell 432-35), captured with \r\r\n framing;
    # SINR -1 can only be dB (the 1/5 dB scale starts at 0)
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN","LTE","FDD",432,35,1E77017,456,2850,7,5,5,584E,-100,-17,-62,-1,23\r\n\r\n',
         F(mcc="432", mnc="35", rat="LTE", cell_id=0x1E77017, pci=456, earfcn=2850, band=7, tac=0x584E,
           rsrp_dbm=-100.0, rsrq_db=-17.0, rssi_dbm=-62.0, sinr_db=-1.0), "lte-negative-sinr-crlf"),
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","LIMSRV","WCDMA",432,35,584E,12DBAE3,10662,452,1,-70,-4,-,-,-,-,-',
         F(registration="not_registered", mcc="432", mnc="35", rat="WCDMA", lac=0x584E, cell_id=0x12DBAE3,
           earfcn=10662, pci=452, rscp_dbm=-70.0, ecio_db=-4.0), "wcdma-limsrv"),
    # Optus 505-02, ArduPilot LTE_modem.lua: this firmware prints SINR on the 0..250 scale;
    # 53 is not a dB value, so it is unknown rather than a guess
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN","LTE","FDD",505,02,12AED4A,445,3750,8,3,3,CBE8,-99,-14,-71,53,30',
         F(mcc="505", mnc="02", rat="LTE", cell_id=0x12AED4A, pci=445, earfcn=3750, band=8, tac=0xCBE8,
           rsrp_dbm=-99.0, rsrq_db=-14.0, rssi_dbm=-71.0), "lte-scaled-sinr-dropped"),
    # docomo 440-10, WCDMA during a call (a Go modem library's tests)
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","CONNECT","WCDMA",440,10,75,6FE0090,10736,58,0,-78,-3,-,-,-,-,-',
         F(mcc="440", mnc="10", rat="WCDMA", lac=0x75, cell_id=0x6FE0090, earfcn=10736, pci=58,
           rscp_dbm=-78.0, ecio_db=-3.0), "wcdma-connect"),
    # GSM, China Mobile 460-00 (a router firmware's comment): band "-", BSIC as pci
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN","GSM",460,00,247C,1327,35,82,-,-52,255,255,0,53,179,1,-,-,-,-,-,-,-,-,-,"-"',
         F(mcc="460", mnc="00", rat="GSM", lac=0x247C, cell_id=0x1327, pci=35, earfcn=82, rssi_dbm=-52.0), "gsm"),
    # BG96 in Germany, 262-03, LTE-M while connected (Electric Imp Quectel driver)
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","CONNECT","CAT-M","FDD",262,03,2FAA03,187,6200,20,3,3,2AFB,-105,-11,-76,10,-',
         F(mcc="262", mnc="03", rat="LTE", cell_id=0x2FAA03, pci=187, earfcn=6200, band=20, tac=0x2AFB,
           rsrp_dbm=-105.0, rsrq_db=-11.0, rssi_dbm=-76.0, sinr_db=10.0), "cat-m"),
    # RM50x EN-DC on Smart 515-03 (3ginfo-lite issue 56): no space after ':' on the NR line
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN"\n'
         '+QENG: "LTE","FDD",515,03,3359966,1,150,1,5,5,4AA3,-89,-13,-58,16,15,20,-\n'
         '+QENG:"NR5G-NSA",515,03,832,-76,21,-11,528030,41,8,1',
         F(mcc="515", mnc="03", rat="NR5G-NSA", cell_id=0x3359966, pci=1, earfcn=150, band=1, tac=0x4AA3,
           rsrp_dbm=-89.0, rsrq_db=-13.0, rssi_dbm=-58.0, sinr_db=16.0), "en-dc"),
    # Quectel's own test scripts (RG50xQ, 460-00): EN-DC anchor without an NR leg yet;
    # -32768 and PCI 65535 are placeholders, so rat stays LTE
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN"\n'
         '+QENG: "LTE","FDD",460,00,1A2D001,1,1300,3,5,5,1,-55,-6,-29,19,0,-,84\n'
         '+QENG: "NR5G-NSA",460,00,65535,-32768,-32768,-32768',
         F(mcc="460", mnc="00", rat="LTE", cell_id=0x1A2D001, pci=1, earfcn=1300, band=3, tac=0x1,
           rsrp_dbm=-55.0, rsrq_db=-6.0, rssi_dbm=-29.0, sinr_db=19.0), "en-dc-no-nr-leg"),
    # RM520N-GL on T-Mobile 310-260, standalone n71 (rm520 package tests: "captured from a real")
    good(parse_qeng_servingcell,
         '+QENG: "servingcell","NOCONN","NR5G-SA","FDD",310,260,106497003,792,B0FB00,126270,71,3,-98,-12,7,0,18',
         F(mcc="310", mnc="260", rat="NR5G-SA", cell_id=0x106497003, pci=792, tac=0xB0FB00, earfcn=126270,
           band=71, rsrp_dbm=-98.0, rsrq_db=-12.0, sinr_db=7.0), "nr5g-sa"),
]

# ================================================================ Quectel AT+QNWINFO, AT+QCSQ, AT+QSPN

QNWINFO = [
    # 5G testbed log (OAI gNB, RM5xx): cell acquisition failed
    good(parse_qnwinfo, "+QNWINFO: No Service", F(rat="NONE", no_service=True), "no-service"),
    # spusu 222-88 (3ginfo-lite issue 111)
    good(parse_qnwinfo, '+QNWINFO: "FDD LTE","22288","LTE BAND 7",3350',
         F(rat="LTE", mcc="222", mnc="88", band=7, earfcn=3350), "fdd-lte"),
    # EN-DC on Smart 515-03 (issue 56): anchor band and channel
    good(parse_qnwinfo, '+QNWINFO: "FDD LTE","51503","LTE BAND 1",150\n+QNWINFO: "TDD NR5G","51503","NR5G BAND 41",528030',
         F(rat="NR5G-NSA", mcc="515", mnc="03", band=1, earfcn=150), "en-dc"),
    # RM520 on T-Mobile 310-260 standalone (a field notebook of observed answers)
    good(parse_qnwinfo, '+QNWINFO: "FDD NR5G","310260","NR5G BAND 71",127490',
         F(rat="NR5G-SA", mcc="310", mnc="260", band=71, earfcn=127490), "nr5g-sa"),
    # lab network 901-70: "NR5G_BAND 78" with an underscore
    good(parse_qnwinfo, '+QNWINFO: "TDD NR5G","90170","NR5G_BAND 78",626976',
         F(rat="NR5G-SA", mcc="901", mnc="70", band=78, earfcn=626976), "band-underscore"),
    # an Elixir Quectel library's test: operator unquoted
    good(parse_qnwinfo, '+QNWINFO: "FDD LTE",46011,"LTE BAND 3",1650',
         F(rat="LTE", mcc="460", mnc="11", band=3, earfcn=1650), "unquoted-operator"),
    # BG96 on T-Mobile Austria 232-03 (a getting-started guide): no 3GPP band number in "GSM 900"
    good(parse_qnwinfo, '+QNWINFO: "EDGE","23203","GSM 900",1', F(rat="GSM", mcc="232", mnc="03", earfcn=1), "edge"),
    good(parse_qnwinfo, '+QNWINFO: "HSPA+","23203","WCDMA 2100",10836',
         F(rat="WCDMA", mcc="232", mnc="03", earfcn=10836), "hspa-plus"),
]

QCSQ = [
    # the form Quectel documents for no service (a POC radio's response table)
    good(parse_qcsq, '+QCSQ: "NOSERVICE"', F(rat="NONE", no_service=True), "noservice"),
    # EC2x in oFono's veriquec plugin: RSSI printed positive; SINR 177 -> 177/5 - 20 dB
    good(parse_qcsq, '+QCSQ: "LTE",80,-109,177,-9',
         F(rat="LTE", rssi_dbm=-80.0, rsrp_dbm=-109.0, sinr_db=15.4, rsrq_db=-9.0), "lte-positive-rssi"),
    # EG21-G, Quectel forum "AT+QCSQ command conversion on EG21-G"
    good(parse_qcsq, '+QCSQ: "LTE",77,-116,76,-17',
         F(rat="LTE", rssi_dbm=-77.0, rsrp_dbm=-116.0, sinr_db=-4.8, rsrq_db=-17.0), "lte-eg21g"),
    # BG96 in the same thread
    good(parse_qcsq, '+QCSQ: "CAT-M1",-91,-129,67,-20',
         F(rat="LTE", rssi_dbm=-91.0, rsrp_dbm=-129.0, sinr_db=-6.6, rsrq_db=-20.0), "cat-m1"),
    good(parse_qcsq, '+QCSQ: "WCDMA",69,-72,-4', F(rat="WCDMA", rssi_dbm=-69.0, rscp_dbm=-72.0, ecio_db=-4.0), "wcdma"),
    # RM520N-GL on n41 SA, cross-checked against +QENG in the same second: SINR in dB
    good(parse_qcsq, '+QCSQ: "NR5G",-75,4,-11', F(rat="NR5G-SA", rsrp_dbm=-75.0, sinr_db=4.0, rsrq_db=-11.0), "nr5g"),
]

QSPN = [
    # RM520N-GL on TIM Italy 222-01 (sample output in a CLI tool's README): no SPN on the SIM
    good(parse_qspn, '+QSPN: "I TIM","TIM","",0,"22201"', F(operator="I TIM", mcc="222", mnc="01"), "tim"),
    good(parse_qspn, '+QSPN: "SUN","SUN","SUN",0,"51503"', F(operator="SUN", mcc="515", mnc="03"), "sun"),
    good(parse_qspn, '+QSPN: "mobily","mobily","mobily",0,"42003"', F(operator="mobily", mcc="420", mnc="03"), "mobily"),
    # three-digit MNC
    good(parse_qspn, '+QSPN: "T-Mobile","T-Mobile","",0,"310260"', F(operator="T-Mobile", mcc="310", mnc="260"), "mnc-3"),
    # <alphabet> quoted
    good(parse_qspn, '+QSPN: "O2 - UK","O2","","0","23410"', F(operator="O2 - UK", mcc="234", mnc="10"), "alphabet-quoted"),
    # RM5xx on DITO 515-66 (3ginfo-lite issue 57): the network broadcasts no name, only its PLMN
    good(parse_qspn, '+QSPN: "515 66","515 66","DITO",0,"51566"', F(operator="DITO", mcc="515", mnc="66"), "plmn-as-name"),
]

# ================================================================ SIMCom AT+CPSI?

CPSI = [
    # SIM7600 with a by.u (Telkomsel) SIM in a lab in Indonesia, before and after signal
    good(parse_cpsi, "+CPSI: NO SERVICE,Online", F(rat="NONE", no_service=True), "no-service"),
    good(parse_cpsi, "+CPSI: LTE,Online,510-10,0x0830,110132496,22,EUTRAN-BAND40,39092,3,3,-200,-1057,-660,4",
         F(rat="LTE", mcc="510", mnc="10", tac=0x0830, cell_id=110132496, pci=22, band=40, earfcn=39092,
           rsrq_db=-20.0, rsrp_dbm=-105.7, rssi_dbm=-66.0, sinr_db=4.0), "lte-telkomsel"),
    # Airtel 404-45 (a ROS message definition's sample)
    good(parse_cpsi, "+CPSI: LTE,Online,404-45,0x21F9,322642,453,EUTRAN-BAND40,39275,4,4,-168,-1126,-773,7",
         F(rat="LTE", mcc="404", mnc="45", tac=0x21F9, cell_id=322642, pci=453, band=40, earfcn=39275,
           rsrq_db=-16.8, rsrp_dbm=-112.6, rssi_dbm=-77.3, sinr_db=7.0), "lte-airtel"),
    # SIM7600E-H in Switzerland, 228-02 (a PPP setup README)
    good(parse_cpsi, "+CPSI: LTE,Online,228-02,0x9CA4,20964868,46,EUTRAN-BAND20,6200,3,3,-178,-1089,-742,8",
         F(rat="LTE", mcc="228", mnc="02", tac=0x9CA4, cell_id=20964868, pci=46, band=20, earfcn=6200,
           rsrq_db=-17.8, rsrp_dbm=-108.9, rssi_dbm=-74.2, sinr_db=8.0), "lte-salt"),
    # SIM7000 (ArduPilot LTE_modem.lua, Telstra 505-01): LTE-M, levels in whole dB(m)
    good(parse_cpsi, "+CPSI: LTE CAT-M1,Online,505-01,0x2036,134523149,238,EUTRAN-BAND28,9410,5,5,-20,-116,-82,6",
         F(rat="LTE", mcc="505", mnc="01", tac=0x2036, cell_id=134523149, pci=238, band=28, earfcn=9410,
           rsrq_db=-20.0, rsrp_dbm=-116.0, rssi_dbm=-82.0, sinr_db=6.0), "cat-m1-whole-units"),
    # a firmware that prints +CESQ-style indices (oFono's SIMCom netmon driver): not dB, dropped
    good(parse_cpsi, "+CPSI: LTE,Online,460-01,0x230A,175499523,318,EUTRAN-BAND3,1650,5,0,21,67,255,19",
         F(rat="LTE", mcc="460", mnc="01", tac=0x230A, cell_id=175499523, pci=318, band=3, earfcn=1650, sinr_db=19.0),
         "index-levels-dropped"),
    # SIM8262 in Norway, 242-12, standalone n78 (a network test tool's README)
    good(parse_cpsi, "+CPSI: NR5G_SA,Online,242-12,0x765D,4955280,0,NR5G_BAND78,640704,-770,-110,290",
         F(rat="NR5G-SA", mcc="242", mnc="12", tac=0x765D, cell_id=4955280, pci=0, band=78, earfcn=640704,
           rsrp_dbm=-77.0, rsrq_db=-11.0, sinr_db=29.0), "nr5g-sa"),
    # SIM5320-era WCDMA on Telstra 505-01: EC/IO and RSCP as positive magnitudes
    good(parse_cpsi, "+CPSI: WCDMA,Online,505-01,0x0152,14302219,WCDMA 850,214,4436,0,12.5,83,23,36,500",
         F(rat="WCDMA", mcc="505", mnc="01", lac=0x0152, cell_id=14302219, pci=214, earfcn=4436,
           ecio_db=-12.5, rscp_dbm=-83.0), "wcdma"),
    # China Unicom 460-01 (a router script's comment)
    good(parse_cpsi, "+CPSI: WCDMA,Online,460-01,0xA809,11122855,WCDMA IMT 2000,279,10663,0,1.5,62,33,52,500",
         F(rat="WCDMA", mcc="460", mnc="01", lac=0xA809, cell_id=11122855, pci=279, earfcn=10663,
           ecio_db=-1.5, rscp_dbm=-62.0), "wcdma-imt2000"),
    # SIM7000G with a 1NCE SIM on Telekom.de 262-01: ARFCN and band name share a field
    good(parse_cpsi, "+CPSI: GSM,Online,262-01,0x972d,5559,79 EGSM 900,-83,0,24-24",
         F(rat="GSM", mcc="262", mnc="01", lac=0x972D, cell_id=5559, earfcn=79, rssi_dbm=-83.0), "gsm"),
    # SIM5360 in OVMS, Vodafone.de 262-02
    good(parse_cpsi, "+CPSI: GSM,Online,262-02,0x011f,14822,4 EGSM 900,-67,0,40-40",
         F(rat="GSM", mcc="262", mnc="02", lac=0x011F, cell_id=14822, earfcn=4, rssi_dbm=-67.0), "gsm-lowercase-hex"),
]

# ================================================================ Huawei ^HCSQ, ^SYSINFOEX

HCSQ = [
    # ModemManager's test-modem-helpers-huawei.c table
    good(parse_hcsq, '^HCSQ: "NOSERVICE"\r\n', F(rat="NONE", no_service=True), "noservice"),
    good(parse_hcsq, "^HCSQ: NOSERVICE\r\n", F(rat="NONE", no_service=True), "noservice-unquoted"),
    good(parse_hcsq, '^HCSQ:"LTE",30,19,66,0\r\n',  # no space after ':'
         F(rat="LTE", rssi_dbm=-91.0, rsrp_dbm=-122.0, sinr_db=-7.0, rsrq_db=-20.0), "lte-no-space"),
    good(parse_hcsq, '^HCSQ: "WCDMA",30,30,58\r\n', F(rat="WCDMA", rssi_dbm=-91.0, rscp_dbm=-91.0, ecio_db=-3.5), "wcdma"),
    good(parse_hcsq, '^HCSQ: "GSM",36,255\r\n', F(rat="GSM", rssi_dbm=-85.0), "gsm-extra-255"),
    good(parse_hcsq, "^HCSQ: LTE,33,40,135,11\r\n",  # sysmode unquoted
         F(rat="LTE", rssi_dbm=-88.0, rsrp_dbm=-101.0, sinr_db=6.8, rsrq_db=-14.5), "lte-unquoted"),
    # ME906 log from an STM32 USB host project
    good(parse_hcsq, '^HCSQ: "LTE",59,55,105,20',
         F(rat="LTE", rssi_dbm=-62.0, rsrp_dbm=-86.0, sinr_db=0.8, rsrq_db=-10.0), "lte-me906"),
]

SYSINFOEX = [
    # ModemManager's test table: <sysmode_name> unquoted (E303), quoted, and with a space;
    # <roam_status> 5 is none of Huawei's values, so home/roaming is unknown
    good(parse_sysinfoex, "^SYSINFOEX:2,4,5,1,,3,WCDMA,41,HSPA+", F(registration="unknown", rat="WCDMA"), "unquoted"),
    good(parse_sysinfoex, '^SYSINFOEX:2,4,5,1,,3,"WCDMA",41,"HSPA+"', F(registration="unknown", rat="WCDMA"), "quoted"),
    good(parse_sysinfoex, '^SYSINFOEX: 2,4,5,1,0,3,"WCDMA",41,"HSPA+"', F(registration="unknown", rat="WCDMA"), "space"),
    # Huawei's own command table example: DC-HSPA+ while roaming
    good(parse_sysinfoex, '^SYSINFOEX: 2,3,1,1,1,3,"WCDMA",46,"DC-HSPA+"', F(registration="roaming", rat="WCDMA"),
         "roaming"),
    # an LTE stick's answer in a Python widget's docstring: home network
    good(parse_sysinfoex, '^SYSINFOEX: 2,3,0,1,,6,"LTE",101,"LTE"', F(registration="home", rat="LTE"), "home-lte"),
]

# ================================================================ Telit #RFSTS

RFSTS = [
    # GSM on vodafone NL 204-04 (pmoerenhout/atcommander, a Telit GE/HE910)
    good(parse_rfsts, '#RFSTS: "204 04",1001,-80,00DE,01,5,19,10,2,9878,"204007930002270","vodafone NL",1,2',
         F(operator="vodafone NL", mcc="204", mnc="04", rat="GSM", earfcn=1001, lac=0xDE, cell_id=0x9878, rssi_dbm=-80.0),
         "gsm"),
    # no space after ':'
    good(parse_rfsts, '#RFSTS:"204 08",14,-80,0CBC,00,5,19,11,,BEE9,"204000090192154","NL KPN",0,2',
         F(operator="NL KPN", mcc="204", mnc="08", rat="GSM", earfcn=14, lac=0xCBC, cell_id=0xBEE9, rssi_dbm=-80.0,
           registration="not_registered"), "gsm-no-space-sd0"),
    # camped on T-Mobile NL without being attached (<SD> 0): limited service, levels kept
    good(parse_rfsts, '#RFSTS: "204 16",848,-89,03F8,,0,19,29,,14BB,"204007930002270","T-Mobile NL",0,3',
         F(operator="T-Mobile NL", mcc="204", mnc="16", rat="GSM", earfcn=848, lac=0x3F8, cell_id=0x14BB,
           rssi_dbm=-89.0, registration="not_registered"), "gsm-limited"),
    # no cell at all: ARFCN 32767, RSSI -47 placeholder, <SD> 0, no TXPWR field
    good(parse_rfsts, '#RFSTS: ,32767,-47,,,19,27,,,"204230090288415","",0,2', F(rat="NONE", no_service=True),
         "no-cell"),
    # no cell but a service domain: the line names nothing and claims nothing
    good(parse_rfsts, '#RFSTS:"000 00",-1,-47,FFFF,FF,255,19,27,,FFFF,"204086527040379","NL KPN",1,2', F(),
         "no-cell-placeholders"),
    # LE910 on Turkcell 286-01 (an Arduino library's comments): LTE without <RAC>
    good(parse_rfsts, '#RFSTS: "286 01",1795,-101,-67,-15,2242,,128,3,1,0B5D121,"286016339612498","Turkcell",3,3,108',
         F(operator="Turkcell", mcc="286", mnc="01", rat="LTE", earfcn=1795, rsrp_dbm=-101.0, rssi_dbm=-67.0,
           rsrq_db=-15.0, tac=0x2242, cell_id=0xB5D121, band=3), "lte-le910"),
    # LE910C1 on Turkcell: LTE with <RAC>, trailing timers and SINR
    good(parse_rfsts,
         '#RFSTS:"286 01",6400,-100,-66,-18,2242,FF,0,128,10,1,859315,"286016339811626","TR TURKCELL",3,20,720,3240,-5',
         F(operator="TR TURKCELL", mcc="286", mnc="01", rat="LTE", earfcn=6400, rsrp_dbm=-100.0, rssi_dbm=-66.0,
           rsrq_db=-18.0, tac=0x2242, cell_id=0x859315, band=20), "lte-le910c1"),
    # LM960A18 on T-Mobile 310-260, IMSI hidden as zeros (a recorded transcript in a test suite)
    good(parse_rfsts,
         '#RFSTS: "310 260",66786,-101,-68,-13,2D18,255,,640,1,0,3089F02,"000000000000000","T-Mobile",3,66',
         F(operator="T-Mobile", mcc="310", mnc="260", rat="LTE", earfcn=66786, rsrp_dbm=-101.0, rssi_dbm=-68.0,
           rsrq_db=-13.0, tac=0x2D18, cell_id=0x3089F02, band=66), "lte-lm960"),
]

# ================================================================ Sierra Wireless !GSTATUS?, !LTEINFO?

GSTATUS_DW5811E = (  # Dell DW5811e (EM7455) on Orange PL (3ginfo-lite issue 37): columns as runs of spaces
    "!GSTATUS:\nCurrent Time:  638610           Temperature: 36\nReset Counter: 1                Mode:        ONLINE\n"
    "System mode:   LTE              PS state:    Attached\nLTE band:      B3               LTE bw:      10 MHz\n"
    "LTE Rx chan:   1749             LTE Tx chan: 19749\nLTE CA state:  NOT ASSIGNED\n"
    "EMM state:     Registered       Normal Service\nRRC state:     RRC Connected\nIMS reg state: No Srv\n\n"
    "PCC RxM RSSI:  -74              RSRP (dBm):  -109\nPCC RxD RSSI:  -74              RSRP (dBm):  -117\n"
    "Tx Power:      0                TAC:         D5AC (54700)\n"
    "RSRQ (dB):     -17.4            Cell ID:     023E3E34 (37633588)\nSINR (dB):     -2.6"
)
GSTATUS_TABS = (  # 3ginfo-lite issue 136: tabs between columns, blanks after values, "Tx Power: --"
    "!GSTATUS: \nCurrent Time:  1373\t\tTemperature: 53\nReset Counter: 3\t\tMode:        ONLINE         \n"
    "System mode:   LTE        \tPS state:    Attached     \nLTE band:      B8     \t\tLTE bw:      5 MHz   \n"
    "LTE Rx chan:   3764\t\tLTE Tx chan: 21764\nLTE CA state:  NOT ASSIGNED\n"
    "EMM state:     Registered     \tNormal Service \nRRC state:     RRC Idle       \nIMS reg state: No Srv  \t\t\n\n"
    "PCC RxM RSSI:  -84\t\tRSRP (dBm):  -110\nPCC RxD RSSI:  -85\t\tRSRP (dBm):  -118\n"
    "Tx Power:      --\t\tTAC:         E2EA (58090)\nRSRQ (dB):     -12.7\t\tCell ID:     02C3484A (46352458)\n"
    "SINR (dB):      1.0"
)
GSTATUS_CA = (  # EM7455 on AT&T, carrier aggregation (danielewood/sierra-wireless-modems README)
    "!GSTATUS: \nCurrent Time:  22016\t\tTemperature: 40\nReset Counter: 1\t\tMode:        ONLINE         \n"
    "System mode:   LTE        \tPS state:    Attached     \nLTE band:      B2     \t\tLTE bw:      20 MHz  \n"
    "LTE Rx chan:   800\t\tLTE Tx chan: 18800\nLTE CA state:  ACTIVE      \t\tLTE Scell band:B12    \n"
    "LTE Scell bw:10 MHz  \t\tLTE Scell chan:5110\nEMM state:     Registered     \tNormal Service \n"
    "RRC state:     RRC Connected  \nIMS reg state: No Srv  \t\t\n\nPCC RxM RSSI:  -45\t\tRSRP (dBm):  -81\n"
    "PCC RxD RSSI:  -44\t\tRSRP (dBm):  -79\nSCC RxM RSSI:  -52\t\tRSRP (dBm):  -83\n"
    "SCC RxD RSSI:  -51\t\tRSRP (dBm):  -81\nTx Power:      15\t\tTAC:         8C65 (35666)\n"
    "RSRQ (dB):     -14.0\t\tCell ID:     0A14666A (169106666)\nSINR (dB):     23.8"
)
GSTATUS_VERIZON = (  # MC7455 on Verizon, band 13, no diversity antenna: RxD RSRP -140 (Sierra Wireless
    # forum, "[MC7455] Can't dial PPP"; +CREG: 0,3 in the same session: CS denied, LTE registered)
    "!GSTATUS:\nCurrent Time:  48\t\tTemperature: 28\nReset Counter: 5\t\tMode:        ONLINE\n"
    "System mode:   LTE        \tPS state:    Attached\nLTE band:      B13    \t\tLTE bw:      10 MHz\n"
    "LTE Rx chan:   5230\t\tLTE Tx chan: 23230\nLTE CA state:  NOT ASSIGNED\nEMM state:     Registered     \tNormal Service\n"
    "RRC state:     RRC Idle\nIMS reg state: No Srv\n\nPCC RxM RSSI:  -75\t\tRSRP (dBm):  -105\n"
    "PCC RxD RSSI:  -100\t\tRSRP (dBm):  -140\nTx Power:      0\t\tTAC:         9200 (37376)\n"
    "RSRQ (dB):     -12.8\t\tCell ID:     023B7D03 (37453059)\nSINR (dB):      0.6"
)
LTEINFO_CA = (  # the same EM7455 and cell (danielewood/sierra-wireless-modems README): fixed-width columns
    "!LTEINFO: \nServing:   EARFCN MCC MNC   TAC      CID Bd D U SNR PCI  RSRQ   RSRP   RSSI RXLV\n"
    "              800 310 410 35666 0A14666A  2 5 5  22 404 -14.1  -79.6  -45.5 --\n\n"
    "IntraFreq:                                          PCI  RSRQ   RSRP   RSSI RXLV\n"
    "                                                    404 -14.1  -79.6  -45.5 --\n"
    "                                                    402 -20.0  -89.3  -57.6 --\n\n"
    "InterFreq: EARFCN ThresholdLow ThresholdHi Priority PCI  RSRQ   RSRP   RSSI RXLV\n"
    "             5110            0           0        0 272 -12.1  -80.9  -50.6   0"
)

SIERRA = [
    good(parse_gstatus, GSTATUS_DW5811E,
         F(rat="LTE", band=3, earfcn=1749, tac=0xD5AC, cell_id=0x023E3E34, rssi_dbm=-74.0, rsrp_dbm=-109.0,
           rsrq_db=-17.4, sinr_db=-2.6), "dw5811e-spaces"),
    good(parse_gstatus, GSTATUS_TABS,
         F(rat="LTE", band=8, earfcn=3764, tac=0xE2EA, cell_id=0x02C3484A, rssi_dbm=-84.0, rsrp_dbm=-110.0,
           rsrq_db=-12.7, sinr_db=1.0), "tabs-trailing-blanks"),
    # the README's TAC 8C65 is 35941, not the 35666 beside it, and its cell id disagrees the same
    # way (an edited paste): neither is believed
    good(parse_gstatus, GSTATUS_CA,
         F(rat="LTE", band=2, earfcn=800, rssi_dbm=-45.0, rsrp_dbm=-81.0, rsrq_db=-14.0, sinr_db=23.8),
         "carrier-aggregation-hex-and-decimal-disagree"),
    good(parse_gstatus, GSTATUS_VERIZON,
         F(rat="LTE", band=13, earfcn=5230, tac=0x9200, cell_id=0x023B7D03, rssi_dbm=-75.0, rsrp_dbm=-105.0,
           rsrq_db=-12.8, sinr_db=0.6), "main-antenna-levels"),
    good(parse_lteinfo, LTEINFO_CA,
         F(rat="LTE", mcc="310", mnc="410", earfcn=800, tac=35666, cell_id=0x0A14666A, band=2, pci=404, sinr_db=22.0,
           rsrq_db=-14.1, rsrp_dbm=-79.6, rssi_dbm=-45.5), "serving-cell"),
]

TABLE = QENG + QNWINFO + QCSQ + QSPN + CPSI + HCSQ + SYSINFOEX + RFSTS + SIERRA


@pytest.mark.parametrize("parser, text, expected", TABLE)
def test_real_answers(parser: Parser, text: str, expected: SignalFacts) -> None:
    """Each real answer gives exactly these facts; everything else is None."""
    assert parser(text) == expected


def test_the_tables_are_big_enough() -> None:
    counts = {"bad": len(BAD), "good": len(TABLE)}
    print(f"\ntable cases: {counts['bad']} bad inputs, {counts['good']} real answers")
    assert counts["good"] >= 45


# ================================================================ documented states no capture shows

@pytest.mark.parametrize(
    "text, expected",
    [
        # <srv_status> 0 with <srv_domain> 4 "not registered, searching": a blank spot
        ('^SYSINFOEX: 0,4,0,1,,0,"NO SERVICE",0,"NO SERVICE"',
         F(registration="searching", rat="NONE", no_service=True)),
        ('^SYSINFOEX: 0,0,0,1,,0,"NO SERVICE",0,"NO SERVICE"',
         F(registration="not_registered", rat="NONE", no_service=True)),
        # restricted service (emergency only) on LTE
        ('^SYSINFOEX: 1,0,0,1,,6,"LTE",101,"LTE"', F(registration="not_registered", rat="LTE")),
        # deep sleep: nothing can be told, and certainly no blank spot
        ('^SYSINFOEX: 4,0,0,1,,0,"NO SERVICE",0,"NO SERVICE"', F(registration="unknown")),
        # no SIM, or a PIN-locked SIM: no service, but not a blank spot
        ('^SYSINFOEX: 0,0,0,255,,0,"NO SERVICE",0,"NO SERVICE"', F()),
        ('^SYSINFOEX: 0,0,0,0,,0,"NO SERVICE",0,"NO SERVICE"', F()),
        # SIM refused by the network for CS and PS
        ('^SYSINFOEX: 1,0,0,4,,6,"LTE",101,"LTE"', F(registration="denied", rat="LTE")),
    ],
)
def test_sysinfoex_states_from_the_command_table(text: str, expected: SignalFacts) -> None:
    """Built from the values Huawei's command table documents (no public capture shows them):
    only a modem that has a usable SIM and says "no service" marks a blank spot."""
    assert parse_sysinfoex(text) == expected


_ONLINE = "!GSTATUS: \nCurrent Time:  1373\t\tTemperature: 53\nReset Counter: 3\t\tMode:        ONLINE         \n"


@pytest.mark.parametrize(
    "parser, text, expected",
    [
        # online, but no system on the screen: nothing to claim either way
        (parse_gstatus, _ONLINE, F()),
        # EMM not registered: the cell's levels are kept, but it is not named as serving
        (parse_gstatus, _ONLINE + "System mode:   LTE        \tPS state:    Detached     \n"
                                  "EMM state:     Deregistered   \tNo Cell Available\n"
                                  "PCC RxM RSSI:  -101\t\tRSRP (dBm):  -128\n",
         F(rssi_dbm=-101.0, rsrp_dbm=-128.0)),
        # WCDMA: the rat, and no level (no capture shows that screen's layout)
        (parse_gstatus, _ONLINE + "System mode:   WCDMA      \tPS state:    Attached     \n", F(rat="WCDMA")),
        # a Serving: table with no row under it
        (parse_lteinfo, "!LTEINFO: \nServing:   EARFCN MCC MNC   TAC      CID Bd D U SNR PCI  RSRQ   RSRP   RSSI RXLV\n\n"
                        "IntraFreq:                                          PCI  RSRQ   RSRP   RSSI RXLV\n", F()),
    ],
    ids=["online-no-system", "emm-deregistered", "wcdma", "lteinfo-no-serving-row"],
)
def test_sierra_screens_no_capture_shows(parser: Parser, text: str, expected: SignalFacts) -> None:
    """Built on the captured layouts: a screen that does not say the unit is served names no
    serving technology, and nothing the parser has not seen is guessed at."""
    assert parser(text) == expected


@pytest.mark.parametrize("mode", ["Low Power Mode", "Offline", "Factory Test Mode", "Reset"])
def test_cpsi_radio_off_is_not_a_blank_spot(mode: str) -> None:
    """The SIM7600 manual's other operation modes mean the radio is off: that is no
    measurement at all, so the parser refuses it instead of reporting no service."""
    with pytest.raises(AtParseError, match="not online"):
        parse_cpsi(f"+CPSI: NO SERVICE,{mode}")


def test_qspn_decodes_ucs2_names() -> None:
    """<alphabet> 1 means the names are UCS2 in hex (AT+QSPN in the EC2x manual)."""
    text = '+QSPN: "00540045004C004B004F004D00530045004C","0054005300450049","",1,"51010"'
    assert parse_qspn(text) == F(operator="TELKOMSEL", mcc="510", mnc="10")


def test_lines_of_other_commands_are_ignored() -> None:
    """An answer with an echo, a URC and blank lines around the prefixed line parses the same."""
    line = "+CPSI: LTE,Online,510-10,0x0830,110132496,22,EUTRAN-BAND40,39092,3,3,-200,-1057,-660,4"
    noisy = f'AT+CPSI?\r\n\r\n+CEREG: 1,"0830","0690D810",7\r\n{line}   \r\n\r\n'
    assert parse_cpsi(noisy) == parse_cpsi(line)


# ================================================================ properties

PARSERS: dict[str, Parser] = {
    p.__name__: p for p in (parse_qeng_servingcell, parse_qnwinfo, parse_qcsq, parse_qspn, parse_cpsi,
                            parse_hcsq, parse_sysinfoex, parse_rfsts, parse_gstatus, parse_lteinfo)
}
REAL: dict[str, list[str]] = {name: [] for name in PARSERS}
for param in TABLE:
    REAL[param.values[0].__name__].append(param.values[1])

RATS = {"GSM", "WCDMA", "LTE", "NR5G-NSA", "NR5G-SA", "NONE", None}
REGISTRATIONS = {*READING_REGISTRATIONS, None}
LEVELS = {"rssi_dbm": (-130, -1), "rsrp_dbm": (-156, -31), "rsrq_db": (-43, 3), "sinr_db": (-23, 40),
          "rscp_dbm": (-125, -20), "ecio_db": (-35, 0)}
IDS = {"pci": (0, 1007), "earfcn": (0, 3279165), "band": (1, 1024),
       "tac": (0, 0xFFFFFF), "lac": (0, 0xFFFF), "cell_id": (0, (1 << 36) - 1), "csq": (0, 31)}


def check_facts(facts: SignalFacts) -> None:
    """What every SignalFacts promises, whatever text it came from."""
    assert isinstance(facts, SignalFacts)
    assert facts.rat in RATS and facts.registration in REGISTRATIONS
    assert facts.operator is None or (isinstance(facts.operator, str) and facts.operator.strip())
    for name, (low, high) in LEVELS.items():
        value = getattr(facts, name)
        assert value is None or (type(value) is float and math.isfinite(value) and low <= value <= high), (name, value)
    for name, (low, high) in IDS.items():
        value = getattr(facts, name)
        assert value is None or (type(value) is int and low <= value <= high), (name, value)
    # The codes as digits, both or neither, never MCC 000 (no network).
    assert (facts.mcc is None) == (facts.mnc is None), (facts.mcc, facts.mnc)
    assert facts.mcc is None or (is_mcc(facts.mcc) and facts.mcc != "000" and is_mnc(facts.mnc)), (facts.mcc, facts.mnc)
    assert type(facts.no_service) is bool
    if facts.no_service:  # a blank spot is a blank spot: nothing measured, no cell named
        assert facts.rat == "NONE"
        assert all(getattr(facts, f.name) is None for f in fields(facts)
                   if f.name not in ("rat", "registration", "no_service", "operator", "mcc", "mnc"))


def run(parser: Parser, text: str) -> None:
    try:
        facts = parser(text)
    except AtParseError:
        return
    check_facts(facts)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_gives_facts_or_at_parse_error(name: str, text: str) -> None:
    run(PARSERS[name], text)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('+QENG:CPSIRFSTHQWNOX^#!LDM"servingcl,-0123456789ABF \t\r\n'))))
def test_at_like_text_gives_facts_or_at_parse_error(name: str, text: str) -> None:
    """Random text made of the characters answers are made of reaches deeper than st.text()."""
    run(PARSERS[name], text)


FIELD_JUNK = st.sampled_from(["", "-", '"', "99", "255", "-32768", "32767", "65535", "4294967295", "0x",
                              "FFFF", "FFFFFFF", "1e9", "9" * 40, "-0", "+5", " 1 2 ", "١٢", "NaN", "inf",
                              "LTE", "NR5G-NSA", "SEARCH", "servingcell", ",", "\x00", "Ω"])


@st.composite
def mutated(draw: st.DrawFn, name: str) -> str:
    """A real answer with a few fields replaced, characters dropped or inserted, or cut short."""
    text = draw(st.sampled_from(REAL[name]))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["field", "delete", "insert", "truncate", "duplicate"]))
        if kind == "field":
            parts = text.split(",")
            i = draw(st.integers(0, len(parts) - 1))
            parts[i] = draw(st.one_of(FIELD_JUNK, st.text(max_size=6)))
            text = ",".join(parts)
        elif kind == "delete" and text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + text[i + draw(st.integers(1, 5)):]
        elif kind == "insert":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.one_of(FIELD_JUNK, st.text(max_size=4))) + text[i:]
        elif kind == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        else:
            text = text + "\n" + text
    return text


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_answers_give_facts_or_at_parse_error(name: str, data: st.DataObject) -> None:
    """Damaged answers (a bad field, a lost byte, a cut line) never crash a parser nor yield a
    sentinel as a level: the result is honest facts or AtParseError."""
    run(PARSERS[name], data.draw(mutated(name)))


SCREEN_LABELS = ["Mode", "System mode", "EMM state", "LTE band", "LTE Rx chan", "PCC RxM RSSI", "PCC RxD RSSI",
                 "RSRP (dBm)", "RSRQ (dB)", "SINR (dB)", "TAC", "Cell ID", "Tx Power", "Temperature"]
SCREEN_VALUES = st.sampled_from(["ONLINE", "LOW POWER MODE", "LTE", "WCDMA", "GSM", "Registered", "Deregistered",
                                 "B3", "B", "B999", "-84", "-140", "--", "-12.7", "1e3", "D5AC (54700)", "D5AC (1)",
                                 "FFFFFFFF (4294967295)", "02C3484A", "(", "", "NaN"]) | st.text(max_size=6)
SEPARATORS = st.sampled_from(["\t\t", "\t", "  ", " ", "        \t", ""])


@st.composite
def sierra_screen(draw: st.DrawFn) -> str:
    """A !GSTATUS: screen or an !LTEINFO: table built from the captured labels and columns, with
    values, separators and column counts at random."""
    if draw(st.booleans()):
        lines = ["!GSTATUS:" + draw(st.sampled_from(["", " "]))]
        for _ in range(draw(st.integers(0, 8))):
            pairs = [f"{draw(st.sampled_from(SCREEN_LABELS))}:{draw(SEPARATORS)}{draw(SCREEN_VALUES)}"
                     for _ in range(draw(st.integers(1, 2)))]
            lines.append(draw(SEPARATORS).join(pairs))
        return "\n".join(lines)
    columns = draw(st.lists(st.sampled_from(["EARFCN", "MCC", "MNC", "TAC", "CID", "Bd", "D", "U", "SNR", "PCI",
                                              "RSRQ", "RSRP", "RSSI", "RXLV"]), max_size=16))
    values = draw(st.lists(SCREEN_VALUES.filter(lambda v: v.strip() != "" and " " not in v), max_size=16))
    return "!LTEINFO: \nServing:   " + " ".join(columns) + "\n" + draw(SEPARATORS) + " ".join(values)


@settings(max_examples=300, deadline=None)
@given(text=sierra_screen())
def test_sierra_screens_at_random_give_facts_or_at_parse_error(text: str) -> None:
    """Labels and columns the parsers look for, with values no capture shows."""
    run(parse_gstatus, text)
    run(parse_lteinfo, text)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_real_answers_keep_the_promises(name: str) -> None:
    for text in REAL[name]:
        check_facts(PARSERS[name](text))
    for param in BAD:
        if param.values[0].__name__ == name:
            run(PARSERS[name], param.values[1])


def test_bytes_decoded_with_replacement_are_handled() -> None:
    """A serial line garbled into invalid UTF-8 arrives decoded with errors="replace"."""
    raw = b'+QENG: "servingcell","NOCONN","LTE","FDD",510,10,\xff\xfe,445,1850,3,5,5,2B01,-98,-10,-66,12,30'
    facts = parse_qeng_servingcell(raw.decode("utf-8", errors="replace"))
    assert facts.cell_id is None and facts.mcc == "510" and facts.rsrp_dbm == -98.0
    with pytest.raises(AtParseError):
        parse_qeng_servingcell(b"\xff\xfe+QENG".decode("utf-8", errors="replace"))
