"""From several commands' answers to one signal part: the rules docs/signal-quality.md states."""
from __future__ import annotations

import pytest

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.signal import error_signal, facts_from_answer, signal_from_facts


def signal_of(*answers: tuple[str, str]):
    return signal_from_facts([facts_from_answer(cmd, text) for cmd, text in answers])


def test_first_command_wins_and_gaps_are_filled() -> None:
    s = signal_of(
        ('AT+QENG="servingcell"',
         '+QENG: "servingcell","NOCONN","LTE","FDD",510,10,1A2B301,101,1850,3,5,5,2B01,-95,-10,-67,8,9,-,44'),
        ("AT+CSQ", "+CSQ: 23,99"),
        ("AT+CEREG?", '+CEREG: 2,1,"2B01","1A2B301",7'),
        ("AT+COPS?", '+COPS: 0,0,"TELKOMSEL",7'),
    )
    assert (s.registration, s.rat, s.operator, s.mcc, s.mnc) == ("home", "LTE", "TELKOMSEL", "510", "10")
    assert (s.rsrp_dbm, s.rsrq_db, s.csq, s.cell_id, s.tac, s.pci) == (-95, -10, 23, 0x1A2B301, 0x2B01, 101)
    assert s.quality == "fair" and s.error is None


def test_registered_on_gsm_while_lte_searches_is_in_service() -> None:
    s = signal_of(("AT+CEREG?", "+CEREG: 2,2"), ("AT+CREG?", '+CREG: 2,1,"0F3C","4B1D",0'), ("AT+CSQ", "+CSQ: 12,0"))
    assert s.registration == "home" and s.rat == "GSM" and s.quality == "fair"  # -89 dBm on GSM
    assert s.rssi_dbm == -89


def test_csq_99_on_lte_does_not_hide_service() -> None:
    """Some firmware answers +CSQ: 99,99 on LTE; registration says otherwise."""
    s = signal_of(("AT+CSQ", "+CSQ: 99,99"), ("AT+CEREG?", '+CEREG: 2,1,"2B01","1A2B301",7'))
    assert s.registration == "home" and s.rat == "LTE"
    assert s.quality is None, "no level known: null, not a guess"
    assert s.csq is None


@pytest.mark.parametrize(
    "answers,registration",
    [
        ([("AT+CSQ", "+CSQ: 99,99"), ("AT+CEREG?", "+CEREG: 2,2")], "searching"),
        ([("AT+CEREG?", "+CEREG: 2,3"), ("AT+CSQ", "+CSQ: 14,99")], "denied"),
        ([("AT+CREG?", "+CREG: 0,0")], "not_registered"),
        ([('AT+QENG="servingcell"', '+QENG: "servingcell","SEARCH"')], "searching"),
        ([("AT+CPSI?", "+CPSI: NO SERVICE,Online")], "searching"),
    ],
)
def test_no_service_is_a_normal_reading(answers: list[tuple[str, str]], registration: str) -> None:
    s = signal_of(*answers)
    assert (s.registration, s.rat, s.quality, s.error) == (registration, "NONE", "none", None)


def test_levels_heard_without_service_are_kept_as_evidence() -> None:
    s = signal_of(("AT+CEREG?", "+CEREG: 2,3"), ("AT+CSQ", "+CSQ: 14,99"))
    assert s.rat == "NONE" and s.rssi_dbm == -85


def test_operator_named_from_the_table_when_only_numbers_are_known() -> None:
    s = signal_of(("AT+COPS?", '+COPS: 0,2,"51028",7'), ("AT+CEREG?", "+CEREG: 2,5"), ("AT+CSQ", "+CSQ: 20,99"))
    assert s.registration == "roaming" and s.mcc == "510" and s.mnc == "28"
    assert s.operator is not None and "Smartfren" in s.operator


def test_error_reading_is_not_a_blank_spot() -> None:
    s = error_signal("modem on /dev/ttyUSB2 does not answer")
    assert s.error and s.quality is None and s.rat == "NONE"


def test_command_without_a_parser_is_a_parse_error() -> None:
    with pytest.raises(AtParseError):
        facts_from_answer("AT+CGPADDR", "+CGPADDR: 1,10.0.0.1")


def test_a_technology_only_one_command_tells_is_kept() -> None:
    """A Quectel in NR standalone: +CSQ measures no NR (99), +CEREG and +CREG are not registered
    (EPS and CS), +COPS? gives no <AcT>; only +QNWINFO names the technology.  Nothing says there
    is no service on NR, so the unit is served on NR5G-SA, home or roaming unknown."""
    s = signal_of(
        ("AT+CSQ", "+CSQ: 99,99"),
        ("AT+CEREG?", "+CEREG: 2,0"),
        ("AT+CREG?", "+CREG: 2,0"),
        ("AT+COPS?", '+COPS: 0,0,"T-Mobile"'),
        ("AT+QNWINFO", '+QNWINFO: "FDD NR5G","310260","NR5G BAND 71",126490'),  # RM520 (3ginfo-lite issue 48)
    )
    assert (s.rat, s.registration, s.band, s.earfcn, s.mcc, s.mnc) == ("NR5G-SA", "unknown", 71, 126490, "310", "260")
    assert s.quality is None, "no NR level known: null, not a guess"


def test_registered_on_5g_only() -> None:
    """+C5GREG alone says registered: the rest of the TS 27.007 commands know nothing of NR."""
    s = signal_of(
        ("AT+CESQ", "+CESQ: 99,99,255,255,255,255"),
        ("AT+CSQ", "+CSQ: 99,99"),
        ("AT+C5GREG?", '+C5GREG: 2,1,"60AA00","939204254",11,1,"01"'),  # RM520 (3ginfo-lite issue 48)
        ("AT+CEREG?", "+CEREG: 2,0"),
        ("AT+CREG?", "+CREG: 2,0"),
    )
    assert (s.registration, s.rat, s.tac, s.cell_id) == ("home", "NR5G-SA", 0x60AA00, 0x939204254)


def test_a_sierra_screen_is_service_where_only_cs_is_denied() -> None:
    """MC7455 on Verizon (Sierra Wireless forum): +CREG: 0,3 (circuit switched denied) while the
    status screen shows LTE registered: in service on LTE, the main antenna's RSRP -105 is poor."""
    screen = ("!GSTATUS:\nReset Counter: 5\t\tMode:        ONLINE\nSystem mode:   LTE        \tPS state:    Attached\n"
              "LTE band:      B13    \t\tLTE bw:      10 MHz\nLTE Rx chan:   5230\t\tLTE Tx chan: 23230\n"
              "EMM state:     Registered     \tNormal Service\nPCC RxM RSSI:  -75\t\tRSRP (dBm):  -105\n"
              "PCC RxD RSSI:  -100\t\tRSRP (dBm):  -140\nTx Power:      0\t\tTAC:         9200 (37376)\n"
              "RSRQ (dB):     -12.8\t\tCell ID:     023B7D03 (37453059)\nSINR (dB):      0.6")
    s = signal_of(("AT!GSTATUS?", screen), ("AT+CSQ", "+CSQ: 18,99"), ("AT+CREG?", "+CREG: 0,3"),
                  ("AT+COPS?", '+COPS: 0,0,"Verizon Wireless",7'))
    assert (s.rat, s.registration, s.operator, s.band, s.rsrp_dbm, s.quality) == (
        "LTE", "unknown", "Verizon Wireless", 13, -105.0, "poor")


@pytest.mark.parametrize(
    "answers",
    [
        # the serving-cell command says SEARCH: a +COPS? naming LTE beside it is stale
        [('AT+QENG="servingcell"', '+QENG: "servingcell","SEARCH"'), ("AT+COPS?", '+COPS: 0,0,"TELKOMSEL",7')],
        # +CEREG speaks for LTE: searching there outweighs a technology named elsewhere
        [("AT+CEREG?", "+CEREG: 2,2"), ("AT+COPS?", '+COPS: 0,0,"TELKOMSEL",7'), ("AT+CSQ", "+CSQ: 14,99")],
        [("AT+QNWINFO", "+QNWINFO: No Service"), ("AT+COPS?", '+COPS: 0,0,"TELKOMSEL",7')],
    ],
    ids=["explicit-search", "eps-searching", "qnwinfo-no-service"],
)
def test_no_service_on_the_named_technology_wins(answers: list[tuple[str, str]]) -> None:
    s = signal_of(*answers)
    assert (s.rat, s.quality) == ("NONE", "none") and s.registration in ("searching", "not_registered")


def test_the_technology_of_a_command_that_is_not_registered_is_not_the_readings() -> None:
    """+CREG not registered on a GSM cell, +CEREG registered on LTE: the reading is LTE."""
    s = signal_of(("AT+CREG?", '+CREG: 2,0,"0F3C","4B1D",0'), ("AT+CEREG?", '+CEREG: 2,1,"2B01","1A2B301",7'),
                  ("AT+CSQ", "+CSQ: 20,99"))
    assert (s.registration, s.rat) == ("home", "LTE")


def test_operator_name_in_the_modems_character_set() -> None:
    """A modem set to UCS2 (AT+CSCS) prints +COPS? names in hex: the reading has the text."""
    facts = facts_from_answer("AT+COPS?", '+COPS: 0,0,"00540045004C004B004F004D00530045004C",7', charset="UCS2")
    assert facts.operator == "TELKOMSEL" and facts.rat == "LTE"


@pytest.mark.parametrize(
    "stat, registration",
    [(6, "sms_only_home"), (7, "sms_only_roaming"), (9, "csfb_not_preferred_home"), (10, "csfb_not_preferred_roaming")],
)
def test_registered_for_sms_only_or_csfb_not_preferred_is_service(stat: int, registration: str) -> None:
    """The data bearer is there: only circuit-switched voice and SMS differ."""
    s = signal_of(("AT+CSQ", "+CSQ: 20,99"), ("AT+CEREG?", f'+CEREG: 2,{stat},"2B01","1A2B301",7'),
                  ("AT+COPS?", '+COPS: 0,2,"51001",7'))
    assert (s.registration, s.rat, s.quality, s.error) == (registration, "LTE", "good", None)
    assert (s.mcc, s.mnc, s.operator) == ("510", "01", "Indosat")


@pytest.mark.parametrize("stat, registration", [(8, "emergency_only"), (11, "rlos_only")])
def test_attached_for_emergency_or_restricted_local_services_only_is_no_service(stat: int, registration: str) -> None:
    """The cell is there, the public cannot use it: a blank spot, its levels kept as evidence;
    the technology +COPS names is denied by +CEREG of its own domain."""
    s = signal_of(("AT+CSQ", "+CSQ: 20,99"), ("AT+CEREG?", f'+CEREG: 2,{stat},"2B01","1A2B301",7'),
                  ("AT+COPS?", '+COPS: 0,2,"51010",7'))
    assert (s.registration, s.rat, s.quality, s.error) == (registration, "NONE", "none", None)
    assert s.rssi_dbm == -73 and (s.mcc, s.mnc) == ("510", "10")


@pytest.mark.parametrize(
    "answers, registration",
    [
        # full service outranks a restricted registration of another domain ...
        ([("AT+CEREG?", "+CEREG: 2,6"), ("AT+CREG?", '+CREG: 2,1,"0F3C","4B1D",0')], "home"),
        # ... a restricted registration outranks emergency only ...
        ([("AT+CREG?", "+CREG: 2,8"), ("AT+CEREG?", '+CEREG: 2,10,"2B01","1A2B301",7')], "csfb_not_preferred_roaming"),
        # ... which outranks the states without service
        ([("AT+CEREG?", "+CEREG: 2,3"), ("AT+CREG?", "+CREG: 2,8")], "emergency_only"),
        ([("AT+CEREG?", "+CEREG: 2,11"), ("AT+CREG?", "+CREG: 2,2")], "rlos_only"),
    ],
)
def test_the_best_registration_any_command_reports_wins(answers: list[tuple[str, str]], registration: str) -> None:
    assert signal_of(*answers).registration == registration


def test_an_mnc_printed_without_its_zeros_is_restored() -> None:
    """A Sierra screen prints an MNC without its zeros: restored as Indonesia writes it, and
    the first command's pair of codes wins whole."""
    lteinfo = ("!LTEINFO: \nServing:   EARFCN MCC MNC   TAC      CID Bd D U SNR PCI  RSRQ   RSRP   RSSI RXLV\n"
               "             1850 510   1 11009 01A2B301  3 5 5   8 101 -10.0  -95.0  -67.0 --\n")
    s = signal_of(("AT!LTEINFO?", lteinfo), ("AT+COPS?", '+COPS: 0,2,"51089",7'), ("AT+CEREG?", "+CEREG: 2,1"))
    assert (s.mcc, s.mnc, s.operator) == ("510", "01", "Indosat")
