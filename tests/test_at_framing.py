"""AT framing: final results, URCs and echo, from real modem lines."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.unit.devices.modem.framing import (
    Final, ResponseLines, clean_line, command_prefix, final_result, is_echo, is_urc,
)


@pytest.mark.parametrize(
    "line,ok,kind,code,text",
    [
        ("OK", True, "OK", None, None),
        ("ERROR", False, "ERROR", None, None),
        ("+CME ERROR: 10", False, "+CME ERROR", 10, "SIM not inserted"),           # AT+CMEE=1
        ("+CME ERROR: SIM not inserted", False, "+CME ERROR", None, "SIM not inserted"),  # AT+CMEE=2
        ("+CME ERROR: 11", False, "+CME ERROR", 11, "SIM PIN required"),
        ('+CME ERROR: "SIM PIN required"', False, "+CME ERROR", None, "SIM PIN required"),  # quoted text (some Huawei fw)
        ("+CME ERROR:30", False, "+CME ERROR", 30, "no network service"),          # no space after ':'
        ("+CMS ERROR: 500", False, "+CMS ERROR", 500, None),
        ("+CMS Error: 500", False, "+CMS ERROR", 500, None),                       # mixed case (SIMCom fw)
        ("+cms error: 21", False, "+CMS ERROR", 21, None),
        ("+CMS ERROR: Operation not allowed", False, "+CMS ERROR", None, "Operation not allowed"),  # AT+CMEE=2
        ("NO CARRIER", False, "NO CARRIER", None, None),
        ("BUSY", False, "BUSY", None, None),
    ],
)
def test_final_results(line: str, ok: bool, kind: str, code: int | None, text: str | None) -> None:
    final = final_result(line)
    assert final is not None
    assert (final.ok, final.kind, final.code, final.text) == (ok, kind, code, text)


@pytest.mark.parametrize("line", ["+CSQ: 15,99", "OKAY", "ERRORS", "EC25", "+CEREG: 2,1", "", "ok"])
def test_not_final(line: str) -> None:
    assert final_result(line) is None


def test_model_specific_final_results() -> None:
    assert final_result("COMMAND NOT SUPPORT") is None
    final = final_result("COMMAND NOT SUPPORT", ("COMMAND NOT SUPPORT",))  # Huawei
    assert final is not None and not final.ok


@pytest.mark.parametrize(
    "command,prefix",
    [
        ("AT+CSQ", "+CSQ"), ("AT+CREG?", "+CREG"), ('AT+QENG="servingcell"', "+QENG"), ("AT^HCSQ?", "^HCSQ"),
        ("AT#RFSTS", "#RFSTS"), ("AT!GSTATUS?", "!GSTATUS"), ("at+cops=?", "+COPS"), ("ATI", None), ("ATE0", None),
        ("AT", None), ("+CSQ", None),
    ],
)
def test_command_prefix(command: str, prefix: str | None) -> None:
    assert command_prefix(command) == prefix


@pytest.mark.parametrize(
    "line,running,urc",
    [
        ('+CEREG: 1,"2B01","1A2B301",7', None, True),         # between commands
        ("+CREG: 2,1,\"2B01\",\"1A2B301\",7", "+CREG", False),  # the answer to AT+CREG?
        ("+CREG: 1", "+CSQ", True),                             # arrives while AT+CSQ runs
        ('+QIND: "csq",20,99', "+QENG", True),                  # Quectel
        ("RDY", "+CSQ", True),                                  # Quectel after reset
        ("^RSSI: 18", "+CSQ", True),                            # Huawei
        ("+CSQ: 15,99", "+CSQ", False),
        ("Quectel", None, False),
    ],
)
def test_urcs_are_told_apart(line: str, running: str | None, urc: bool) -> None:
    assert is_urc(line, running) is urc


def test_echo() -> None:
    assert is_echo("AT+CSQ", "AT+CSQ")
    assert is_echo("at+csq", "AT+CSQ")
    assert not is_echo("+CSQ: 15,99", "AT+CSQ")


def test_clean_line_drops_noise() -> None:
    assert clean_line("\x00\x1b+CSQ: 15,99 \x7f") == "+CSQ: 15,99"


@given(st.text(max_size=80))
def test_fuzz_framing(line: str) -> None:
    final_result(line)
    command_prefix(line)
    is_urc(line, command_prefix(line))
    clean_line(line)


def test_response_lines_sort_a_reply_as_it_arrives() -> None:
    """Echo, the command's own answer (even with a URC prefix), a URC among it, the final result."""
    response = ResponseLines("AT+CEREG?")
    kinds = [response.add(line) for line in ("AT+CEREG?", "+CEREG: 2,1,\"2B01\",\"01A2B301\",7", "+CREG: 1", "OK")]
    assert kinds == ["echo", "info", "urc", "final"]
    assert response.lines == ['+CEREG: 2,1,"2B01","01A2B301",7'] and response.final == Final(True, "OK")
    late = ResponseLines("AT+CSQ", extra_finals=("COMMAND NOT SUPPORT",))
    assert [late.add(line) for line in ("+CSQ: 15,99", "AT+CSQ", "COMMAND NOT SUPPORT")] == ["info", "info", "final"]
    assert late.final == Final(False, "COMMAND NOT SUPPORT")
