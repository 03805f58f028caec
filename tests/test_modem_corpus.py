"""Every real AT answer of the corpus (tests/data/at) that one of our parsers reads.

Each row of ``answers.jsonl`` whose command a parser of ours reads is fed to that parser:
the result must be a value or :class:`AtParseError`, never any other exception.  Where the
row's ``expected`` (what the source's own test says the answer means) names something our
types model (registration stat, area code, cell id, access technology, operator entries,
levels, SIM state), the parsed value must agree field by field.  A difference is either
fixed in the parser or listed below, with its reason:

- ``DELIBERATE``: we read the answer differently on purpose.

(``blankspot.reading/2`` gave the reading words for TS 27.007 <stat> 6..11 and the MCC/MNC
as the digits broadcast; the rows that waited for it agree now, and none is listed.)

A listed row that agrees fails too: the list must say what is true.  Last, every parser is
fed every answer of the corpus, its own or not, and the answers cut and spliced at random:
a value or AtParseError, nothing else.  The sources' own
conventions are translated before comparing (ModemManager writes 0 for a LAC or cell id it
did not get, ``UMTS`` for WCDMA, ``EDGE`` for a GSM cell with EGPRS); each translation is
in the comparator that uses it.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.shared.reading import Reading, Signal, reading_from_dict
from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.framing import ResponseLines, clean_line
from agent.unit.devices.modem.signal import facts_from_answer, has_parser, signal_from_facts
from agent.unit.devices.modem.parse_3gpp import (
    parse_cesq, parse_cgatt, parse_cgmi, parse_cgmm, parse_cgmr, parse_cimi, parse_cops, parse_cops_scan, parse_cpin,
    parse_cscs, parse_csq, parse_iccid, parse_identity, parse_registration,
)
from agent.unit.devices.modem.parse_huawei import parse_hcsq, parse_sysinfoex
from agent.unit.devices.modem.parse_quectel import parse_qcsq, parse_qeng_servingcell, parse_qnwinfo, parse_qspn
from agent.unit.devices.modem.parse_sierra import parse_gstatus, parse_lteinfo
from agent.unit.devices.modem.parse_simcom import parse_cpsi
from agent.unit.devices.modem.parse_telit import parse_rfsts
from agent.unit.devices.modem.values import CurrentOperator, OperatorChoice, Registration, SignalFacts
from tests.support.data import AT_ANSWERS

ROWS: list[dict[str, Any]] = [json.loads(line) for line in AT_ANSWERS.read_text(encoding="utf-8").splitlines()]
REGISTRATION_PREFIXES = ("+CREG", "+CGREG", "+CEREG", "+C5GREG")


def _scan(row: dict[str, Any]) -> list[OperatorChoice]:
    # The character set the modem was set to (AT+CSCS) when it printed the list, where the
    # source's test says it: the names are in that set, and nothing in the text tells.
    charset = (row.get("expected") or {}).get("charset")
    return parse_cops_scan(row["answer"], charset=charset)


PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "AT+CSQ": lambda row: parse_csq(row["answer"]),
    "AT+CSQ?": lambda row: parse_csq(row["answer"]),  # L860-GL answers the read form like +CSQ
    "AT+CESQ": lambda row: parse_cesq(row["answer"]),
    "AT+CREG?": lambda row: parse_registration(row["answer"]),
    "AT+CGREG?": lambda row: parse_registration(row["answer"]),
    "AT+CEREG?": lambda row: parse_registration(row["answer"]),
    "AT+C5GREG?": lambda row: parse_registration(row["answer"]),
    "AT+COPS?": lambda row: parse_cops(row["answer"]),
    "AT+COPS=?": _scan,
    "AT+CPIN?": lambda row: parse_cpin(row["answer"]),
    'AT+QENG="servingcell"': lambda row: parse_qeng_servingcell(row["answer"]),
    "AT+QNWINFO": lambda row: parse_qnwinfo(row["answer"]),
    "AT+QCSQ": lambda row: parse_qcsq(row["answer"]),
    "AT+QSPN": lambda row: parse_qspn(row["answer"]),
    "AT+CPSI?": lambda row: parse_cpsi(row["answer"]),
    "AT^HCSQ?": lambda row: parse_hcsq(row["answer"]),
    "AT^SYSINFOEX": lambda row: parse_sysinfoex(row["answer"]),
    "AT#RFSTS": lambda row: parse_rfsts(row["answer"]),
    "AT!GSTATUS?": lambda row: parse_gstatus(row["answer"]),
    "AT!LTEINFO?": lambda row: parse_lteinfo(row["answer"]),
}


def parser_of(row: dict[str, Any]) -> Callable[[dict[str, Any]], Any] | None:
    if row["command"] == "(unsolicited)":
        if row["answer"].lstrip().startswith(REGISTRATION_PREFIXES):
            return lambda r: parse_registration(r["answer"])
        return None
    return PARSERS.get(row["command"])


# Rows are named by their line in answers.jsonl (1-based), which never changes: rows are
# only ever appended.
READ = [(number, row) for number, row in enumerate(ROWS, start=1) if parser_of(row) is not None]


def row_id(number: int, row: dict[str, Any]) -> str:
    return f"L{number:03d}-{row['vendor']}/{row['model'] or '-'}/{row['command']}"


# -- translating the sources' expectations ----------------------------------------------------

# ModemManager's MMModem3gppRegistrationState, in TS 27.007 <stat> order.
MM_STATE_STAT = {
    "IDLE": 0, "HOME": 1, "SEARCHING": 2, "DENIED": 3, "UNKNOWN": 4, "ROAMING": 5, "HOME_SMS_ONLY": 6,
    "ROAMING_SMS_ONLY": 7, "EMERGENCY_ONLY": 8, "HOME_CSFB_NOT_PREFERRED": 9, "ROAMING_CSFB_NOT_PREFERRED": 10,
    "ATTACHED_RLOS": 11,
}
# ModemManager's states as the reading's registration words, one for each TS 27.007 <stat>.
MM_STATE_WORD = {"IDLE": "not_registered", "HOME": "home", "SEARCHING": "searching", "DENIED": "denied",
                 "UNKNOWN": "unknown", "ROAMING": "roaming", "HOME_SMS_ONLY": "sms_only_home",
                 "ROAMING_SMS_ONLY": "sms_only_roaming", "EMERGENCY_ONLY": "emergency_only",
                 "HOME_CSFB_NOT_PREFERRED": "csfb_not_preferred_home",
                 "ROAMING_CSFB_NOT_PREFERRED": "csfb_not_preferred_roaming", "ATTACHED_RLOS": "rlos_only"}
# ModemManager's access technology names as the reading's rat (EDGE, GPRS: a GSM cell).
MM_ACT = {"UNKNOWN": None, "GSM": "GSM", "GPRS": "GSM", "EDGE": "GSM", "UMTS": "WCDMA", "HSDPA": "WCDMA",
          "HSUPA": "WCDMA", "HSPA": "WCDMA", "HSPA_PLUS": "WCDMA", "LTE": "LTE", "5GNR": "NR5G-SA"}
MM_OPERATOR_STATUS = {"unknown", "available", "current", "forbidden"}
MM_LOCK = {"SIM_PIN": "SIM PIN", "SIM_PIN2": "SIM PIN2", "SIM_PUK": "SIM PUK", "SIM_PUK2": "SIM PUK2",
           "PH_SIM_PIN": "PH-SIM PIN", "PH_NET_PIN": "PH-NET PIN", "PH_NETSUB_PIN": "PH-NETSUB PIN",
           "PH_SP_PIN": "PH-SP PIN", "PH_CORP_PIN": "PH-CORP PIN", "NONE": "READY"}


def _mm_hex(value: str) -> int | None:
    # ModemManager writes 0 for a LAC or cell id it did not get; we give None for those.
    number = int(value, 16)
    return number or None


def _plmn(numeric: str | None) -> tuple[str | None, str | None]:
    # TS 23.003: 3 MCC digits, then 2 or 3 MNC digits, kept as digits (51001 is 510-01);
    # anything else names no network.
    if numeric is None or not numeric.isdigit() or len(numeric) not in (5, 6):
        return None, None
    return numeric[:3], numeric[3:]


@dataclass(frozen=True)
class Field:
    name: str
    expected: Any
    got: Any


def compare_registration(row: dict[str, Any], got: Registration, expected: dict[str, Any]) -> list[Field]:
    prefix = row["answer"].lstrip().split(":", 1)[0].strip().upper()
    area = got.tac if prefix in ("+CEREG", "+C5GREG") else got.lac
    fields: list[Field] = []
    if "state" in expected:  # ModemManager
        state = expected["state"]
        fields += [Field("stat", MM_STATE_STAT[state], got.stat),
                   Field("registration", MM_STATE_WORD[state], got.registration),
                   Field("area code", _mm_hex(expected["lac"]), area),
                   Field("cell id", _mm_hex(expected["ci"]), got.cell_id),
                   Field("rat", MM_ACT[expected["act"]], got.rat)]
    else:  # nokia/moler: the fields as strings, hex for tac and ci
        if "n" in expected:
            fields.append(Field("n", int(expected["n"]), got.n))
        if "stat" in expected:
            fields.append(Field("stat", int(expected["stat"]), got.stat))
        if "tac" in expected:
            fields.append(Field("area code", int(expected["tac"], 16), area))
        if "ci" in expected:
            fields.append(Field("cell id", int(expected["ci"], 16), got.cell_id))
        if "AcT" in expected:
            fields.append(Field("act", int(expected["AcT"]), got.act))
    return fields


def compare_cops(row: dict[str, Any], got: CurrentOperator, expected: dict[str, Any]) -> list[Field]:
    mcc, mnc = _plmn(expected["operator"]) if expected["format"] == 2 else (None, None)
    return [Field("mode", expected["mode"], got.mode), Field("operator", expected["operator"], got.name),
            Field("mcc", mcc, got.mcc), Field("mnc", mnc, got.mnc), Field("rat", MM_ACT[expected["act"]], got.rat)]


def compare_scan(row: dict[str, Any], got: list[OperatorChoice], expected: dict[str, Any]) -> list[Field]:
    networks = expected["networks"]
    fields = [Field("entries", len(networks), len(got))]
    for index, (network, choice) in enumerate(zip(networks, got)):
        status, long_name, short_name, numeric, act = network
        assert status in MM_OPERATOR_STATUS
        mcc, mnc = _plmn(numeric)
        fields += [Field(f"[{index}].status", status, choice.status),
                   Field(f"[{index}].long", long_name, choice.long_name),
                   Field(f"[{index}].short", short_name, choice.short_name),
                   Field(f"[{index}].mcc", mcc, choice.mcc), Field(f"[{index}].mnc", mnc, choice.mnc),
                   Field(f"[{index}].rat", MM_ACT[act], choice.rat)]
    return fields


def compare_cesq(row: dict[str, Any], got: SignalFacts, expected: dict[str, Any]) -> list[Field]:
    # The raw level indices are not kept; the dB/dBm the source computed from them are.
    names = ("rssi_dbm", "rscp_dbm", "ecio_db", "rsrq_db", "rsrp_dbm")
    return [Field(name, expected.get(name), getattr(got, name)) for name in names]


def _huawei_levels(act: str, values: list[int]) -> dict[str, float | None]:
    # Huawei's ^HCSQ tables, as ModemManager's huawei plugin applies them (lower range edges).
    def table(n: int, low: float, step: float, top: int) -> float | None:
        return round(low + n * step, 1) if 0 <= n <= top else None

    if act == "GSM":
        return {"rssi_dbm": table(values[0], -121.0, 1.0, 96)}
    if act == "UMTS":
        return {"rssi_dbm": table(values[0], -121.0, 1.0, 96), "rscp_dbm": table(values[1], -121.0, 1.0, 96),
                "ecio_db": table(values[2], -32.5, 0.5, 65)}
    return {"rssi_dbm": table(values[0], -121.0, 1.0, 96), "rsrp_dbm": table(values[1], -141.0, 1.0, 97),
            "sinr_db": table(values[2], -20.2, 0.2, 251), "rsrq_db": table(values[3], -20.0, 0.5, 34)}


def compare_hcsq(row: dict[str, Any], got: SignalFacts, expected: dict[str, Any]) -> list[Field]:
    if expected.get("parse_ok") is False:
        return [Field("parse", "refused", "no service")]
    levels = _huawei_levels(expected["act"], expected["values"])
    return [Field("rat", MM_ACT[expected["act"]], got.rat),
            *(Field(name, value, getattr(got, name)) for name, value in levels.items())]


_SYSMODE = {0: "NONE", 1: "GSM", 3: "WCDMA", 6: "LTE"}


def compare_sysinfoex(row: dict[str, Any], got: SignalFacts, expected: dict[str, Any]) -> list[Field]:
    # Full service (2) is home or roaming per <roam_status>; any other roaming value is unknown.
    registration = {0: "home", 1: "roaming"}.get(expected["roam_status"], "unknown") \
        if expected["srv_status"] == 2 else None
    return [Field("rat", _SYSMODE.get(expected["sys_mode"]), got.rat), Field("registration", registration,
                                                                          got.registration)]


def compare_cpin(row: dict[str, Any], got: str, expected: dict[str, Any]) -> list[Field]:
    return [Field("lock", MM_LOCK.get(expected["lock"], expected["lock"]), got)]


COMPARATORS: dict[str, Callable[[dict[str, Any], Any, dict[str, Any]], list[Field]]] = {
    "AT+CREG?": compare_registration, "AT+CGREG?": compare_registration, "AT+CEREG?": compare_registration,
    "AT+C5GREG?": compare_registration, "(unsolicited)": compare_registration, "AT+COPS?": compare_cops,
    "AT+COPS=?": compare_scan, "AT+CESQ": compare_cesq, "AT^HCSQ?": compare_hcsq,
    "AT^SYSINFOEX": compare_sysinfoex, "AT+CPIN?": compare_cpin,
}


# -- the rows we read differently, and why ----------------------------------------------------

DELIBERATE: dict[int, str] = {
    48: "Iridium's cell id 'ffff' is all ones, what modems print for no valid cell (nRF91 documents "
        "FFFFFFFF as invalid): unknown, never the number 65535",
    212: "^HCSQ: \"NOSERVICE\" is a blank spot, the most valuable reading there is: facts with no_service, "
         "where ModemManager refuses the line because it has no levels",
    213: "^HCSQ: NOSERVICE unquoted: a blank spot, as the quoted form",
    402: "'+C5GREG: 1,\"1964\",...' has no <stat> after <n> in the source's hand-made layout ('different than "
         "3gpp'); TS 27.007 reads a quoted second field as the URC form <stat>,<tac>,..., so n is None and the "
         "unit is registered (stat 1)",
}


def differences(number: int, row: dict[str, Any], got: Any) -> list[Field]:
    comparator = COMPARATORS.get(row["command"])
    expected = row.get("expected")
    if comparator is None or not expected:
        return []
    return [f for f in comparator(row, got, expected) if f.expected != f.got]


def outcome(number: int, row: dict[str, Any]) -> tuple[str, Any]:
    """("value", parsed) or ("refused", AtParseError); anything else escapes."""
    parser = parser_of(row)
    assert parser is not None
    try:
        return "value", parser(row)
    except AtParseError as exc:
        return "refused", exc


@pytest.mark.parametrize("number,row", READ, ids=[row_id(n, r) for n, r in READ])
def test_row_gives_a_value_or_at_parse_error_and_agrees_with_its_source(number: int, row: dict[str, Any]) -> None:
    kind, got = outcome(number, row)
    expected = row.get("expected") or {}
    if kind == "refused":
        # A source that expects a value for a row we refuse is a difference like any other.
        wants_value = bool(expected) and expected.get("parse_ok") is not False and expected.get("lock") != "UNKNOWN"
        listed = number in DELIBERATE
        assert not wants_value or listed, f"refused, but the source reads it: {got}"
        return
    found = differences(number, row, got)
    listed = DELIBERATE.get(number)
    if listed:
        assert found, f"listed as differing ({listed}), but the parse agrees with the source"
    else:
        assert not found, "\n".join(f"{f.name}: source {f.expected!r}, parsed {f.got!r}" for f in found)


def test_the_corpus_is_read() -> None:
    """How much of the corpus the parsers read, by vendor and command (printed for the report)."""
    by_vendor = Counter(row["vendor"] for _, row in READ)
    by_command = Counter(row["command"] for _, row in READ)
    outcomes = Counter(outcome(number, row)[0] for number, row in READ)
    compared = sum(1 for _, row in READ if row.get("expected") and row["command"] in COMPARATORS)
    print(f"\n{len(READ)} of {len(ROWS)} rows read: {dict(outcomes)}; {compared} compared with their source")
    print("by vendor:", dict(sorted(by_vendor.items())))
    print("by command:", dict(sorted(by_command.items())))
    print(f"listed: {len(DELIBERATE)} deliberate")
    assert len(ROWS) == 457 and len(READ) >= 190
    assert set(DELIBERATE) <= {number for number, _ in READ}


# -- every parser, every answer, and the answers damaged ---------------------------------------

ALL_PARSERS: dict[str, Callable[[str], Any]] = {
    parser.__name__: parser for parser in (
        parse_csq, parse_cesq, parse_registration, parse_cops, parse_cops_scan, parse_cpin, parse_cscs, parse_cgatt,
        parse_cimi, parse_iccid, parse_identity, parse_cgmi, parse_cgmm, parse_cgmr, parse_qeng_servingcell,
        parse_qnwinfo, parse_qcsq, parse_qspn, parse_cpsi, parse_hcsq, parse_sysinfoex, parse_rfsts, parse_gstatus,
        parse_lteinfo,
    )
}
ALL_PARSERS["parse_cops_scan(UCS2)"] = lambda text: parse_cops_scan(text, charset="UCS2")
ALL_PARSERS["parse_cops_scan(GSM)"] = lambda text: parse_cops_scan(text, charset="GSM")
ALL_PARSERS["parse_cops(UCS2)"] = lambda text: parse_cops(text, charset="UCS2")
ANSWERS = [row["answer"] for row in ROWS]


def _value_or_parse_error(parser: Callable[[str], Any], text: str) -> bool:
    """True for a value, False for AtParseError; any other exception escapes and fails the test."""
    try:
        parser(text)
    except AtParseError:
        return False
    return True


def test_every_parser_on_every_answer() -> None:
    """Every answer of the corpus into each of the parsers, answers to other commands included."""
    counts = Counter()
    for name, parser in ALL_PARSERS.items():
        for text in ANSWERS:
            counts[_value_or_parse_error(parser, text)] += 1
    print(f"\n{len(ALL_PARSERS)} parsers x {len(ANSWERS)} answers: {counts[True]} values, {counts[False]} refused")
    assert counts[True] > 0 and counts[False] > 0


@st.composite
def damaged_answer(draw: st.DrawFn) -> str:
    """A corpus answer cut, spliced, with a field replaced, a line doubled or lost."""
    text = draw(st.sampled_from(ANSWERS))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cut", "delete", "insert", "field", "line"]))
        i = draw(st.integers(0, len(text)))
        if kind == "cut":
            text = text[:i]
        elif kind == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)):]
        elif kind == "insert":
            junk = st.sampled_from(['"', ",", "(", ")", ":", "\t", "\r\n", "-", "FF", "99", "255", "--", "\x1b", "\x00"])
            text = text[:i] + draw(junk | st.text(max_size=4)) + text[i:]
        elif kind == "field":
            parts = text.split(",")
            parts[draw(st.integers(0, len(parts) - 1))] = draw(st.sampled_from(["", "-1", "65535", "x", '"', "1e9"]))
            text = ",".join(parts)
        else:
            lines = text.split("\n")
            j = draw(st.integers(0, len(lines) - 1))
            lines[j:j + 1] = draw(st.sampled_from([[], [lines[j], lines[j]]]))
            text = "\n".join(lines)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=damaged_answer())
def test_damaged_answers_give_a_value_or_at_parse_error(text: str) -> None:
    for parser in ALL_PARSERS.values():
        _value_or_parse_error(parser, text)


# -- the whole path: lines as the channel meets them, to a reading's signal part -------------------

_SIGNAL_ROWS = [row for row in ROWS if has_parser(row["command"])]


@st.composite
def answered_profile(draw: st.DrawFn) -> list[tuple[str, str, str | None]]:
    """What a modem answered to a profile's signal commands: a few real answers, each damaged
    at random or not, with echoes, URCs, noise bytes and final results among their lines, and
    the character set the modem said it uses."""
    answers = []
    for row in draw(st.lists(st.sampled_from(_SIGNAL_ROWS), min_size=1, max_size=5)):
        text = draw(st.just(row["answer"]) | damaged_answer())
        lines = text.replace("\r\n", "\n").split("\n")
        for _ in range(draw(st.integers(0, 3))):
            extra = draw(st.sampled_from([row["command"], "+CEREG: 1", "RDY", "OK", "\x00\x1b", "+CME ERROR: 10", ""]))
            lines.insert(draw(st.integers(0, len(lines))), extra)
        answers.append((row["command"], "\n".join(lines), draw(st.sampled_from([None, "IRA", "GSM", "UCS2"]))))
    return answers


def _through_the_path(answers: list[tuple[str, str, str | None]]) -> Signal:
    """Lines cleaned and sorted as the channel sorts them (its echo, URCs, and whatever follows
    the final result left out), each command's information text to its parser, the facts
    merged into a signal part."""
    facts = []
    for command, text, charset in answers:
        response = ResponseLines(command)
        for line in filter(None, map(clean_line, text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))):
            if response.add(line) == "final":
                break
        try:
            facts.append(facts_from_answer(command, "\n".join(response.lines), charset))
        except AtParseError:
            continue
    return signal_from_facts(facts)


def _holds_for_the_path(answers: list[tuple[str, str, str | None]]) -> None:
    signal = _through_the_path(answers)
    reading = Reading("unit-1", datetime(2026, 12, 5, tzinfo=timezone.utc), "gps", signal, None)
    assert reading_from_dict(json.loads(replace(reading, seq=1).to_json())).part == signal, "a valid signal part"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answered_profile())
def test_real_answers_through_the_whole_path_give_a_valid_signal_part(answers) -> None:
    """Whatever a modem answers, damaged or not, mixed with echoes, URCs and noise: the agent
    gets a signal part that follows the reading schema, and only AtParseError is raised on the
    way (and handled)."""
    _holds_for_the_path(answers)


_LONG = settings(max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.long
@_LONG
@given(text=damaged_answer())
def test_damaged_answers_long(text: str) -> None:
    """The damaged-answers run above, with many more examples."""
    for parser in ALL_PARSERS.values():
        _value_or_parse_error(parser, text)


@pytest.mark.long
@_LONG
@given(answered_profile())
def test_whole_path_long(answers) -> None:
    """The whole-path run above, with many more examples."""
    _holds_for_the_path(answers)
