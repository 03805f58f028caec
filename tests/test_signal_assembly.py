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
    assert (s.registration, s.rat, s.operator, s.mcc, s.mnc) == ("home", "LTE", "TELKOMSEL", 510, 10)
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
    assert s.registration == "roaming" and s.mcc == 510 and s.mnc == 28
    assert s.operator is not None and "Smartfren" in s.operator


def test_error_reading_is_not_a_blank_spot() -> None:
    s = error_signal("modem on /dev/ttyUSB2 does not answer")
    assert s.error and s.quality is None and s.rat == "NONE"


def test_command_without_a_parser_is_a_parse_error() -> None:
    with pytest.raises(AtParseError):
        facts_from_answer("AT+CGPADDR", "+CGPADDR: 1,10.0.0.1")
