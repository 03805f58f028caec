"""PLMN codes, the Indonesian operator table, and the names an operator scan shows."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.fields import split_plmn
from agent.shared.operators import (
    OPERATORS,
    THREE_DIGIT_MNC_MCCS,
    format_plmn,
    operator_name,
)
from agent.unit.devices.modem.parse_simcom import parse_cpsi
from agent.unit.devices.modem.values import OperatorChoice


def test_indonesian_networks() -> None:
    """Every network a unit meets along the Mahakam, by (MCC, MNC)."""
    assert dict(OPERATORS) == {
        (510, 1): "Indosat", (510, 21): "Indosat",
        (510, 8): "AXIS", (510, 11): "XL",
        (510, 9): "Smartfren", (510, 28): "Smartfren",
        (510, 10): "Telkomsel",
        (510, 89): "Tri",
    }
    print(f"\n{len(OPERATORS)} PLMNs, {len(set(OPERATORS.values()))} brands")


@pytest.mark.parametrize(
    "mcc, mnc, name",
    [
        (None, 10, None), (510, None, None), (510, 99, None), (10, 510, None), (310, 260, None),
        (510, 10, "Telkomsel"), (510, 1, "Indosat"), (510, 21, "Indosat"), (510, 11, "XL"), (510, 8, "AXIS"),
        (510, 9, "Smartfren"), (510, 28, "Smartfren"), (510, 89, "Tri"),
    ],
)
def test_operator_name(mcc: int | None, mnc: int | None, name: str | None) -> None:
    assert operator_name(mcc, mnc) == name


@pytest.mark.parametrize(
    "long_name, mcc, mnc, operator",
    [
        ("TELKOMSEL", 510, 10, "TELKOMSEL"),    # the network's own name wins
        ("IND XL", 510, 99, "IND XL"),           # even for a code the table does not know
        (None, 510, 89, "Tri"),                  # a numeric-only entry: the table's name
        ("", 510, 1, "Indosat"),                 # an empty name is no name
        (None, 510, 99, None),                   # unknown code, no name: nothing invented
        (None, None, None, None),                # no code given at all
    ],
)
def test_operator_named_in_a_scan(long_name: str | None, mcc: int | None, mnc: int | None,
                                  operator: str | None) -> None:
    choice = OperatorChoice("available", long_name, None, mcc, mnc, "LTE")
    assert choice.operator == operator


def test_operator_of_a_real_answer() -> None:
    """A SIM7600 with a by.u (Telkomsel's prepaid brand) SIM, captured in a lab in Indonesia."""
    cpsi = parse_cpsi("+CPSI: LTE,Online,510-10,0x0830,110132496,22,EUTRAN-BAND40,39092,3,3,-200,-1057,-660,4")
    assert operator_name(cpsi.mcc, cpsi.mnc) == "Telkomsel"


@pytest.mark.parametrize(
    "plmn",
    [
        "", " ", "5101", "5101000", "51O10", "abcde", "510-1", "510--", "000 00", "00000", "000000",
        "31026",            # USA uses three-digit MNCs: a five-digit 310 code is malformed
        "\u0665\u0661\u0660\u0661\u0660",  # Arabic-Indic digits are not ASCII digits
        "510 10 20", "+51010", "5 1 0 1 0",
    ],
)
def test_split_plmn_rejects(plmn: str) -> None:
    with pytest.raises(AtParseError):
        split_plmn(plmn)


def test_split_plmn_rejects_non_text() -> None:
    with pytest.raises(AtParseError):
        split_plmn(51010)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "plmn, expected",
    [
        ("51010", (510, 10)),            # +QSPN / +QNWINFO form
        ('"51089"', (510, 89)),          # still quoted
        ("51001", (510, 1)),
        ("510-10", (510, 10)),           # +CPSI form
        ("204 04", (204, 4)),            # Telit #RFSTS form
        ("310 260", (310, 260)),
        ("310260", (310, 260)),          # three-digit MNC told by the length
        ("40545", (405, 45)),            # India's 405 mixes two ...
        ("405854", (405, 854)),          # ... and three digits
        ("51010F", (510, 10)),           # SIM-style filler after a two-digit MNC
        ("001 01", (1, 1)),              # the test network of lab base stations
    ],
)
def test_split_plmn(plmn: str, expected: tuple[int, int]) -> None:
    assert split_plmn(plmn) == expected


@pytest.mark.parametrize(
    "mcc, mnc, text",
    [(510, 10, "51010"), (510, 1, "51001"), (310, 260, "310260"), (310, 10, "310010"), (405, 45, "40545"),
     (405, 854, "405854"), (1, 1, "00101")],
)
def test_format_plmn(mcc: int, mnc: int, text: str) -> None:
    assert format_plmn(mcc, mnc) == text


@pytest.mark.parametrize("mcc, mnc", [(0, 10), (1000, 1), (510, -1), (510, 1000)])
def test_format_plmn_rejects(mcc: int, mnc: int) -> None:
    with pytest.raises(ValueError):
        format_plmn(mcc, mnc)


@settings(max_examples=500, deadline=None)
@given(mcc=st.integers(1, 999), mnc=st.integers(0, 999))
def test_format_then_split_is_the_identity(mcc: int, mnc: int) -> None:
    text = format_plmn(mcc, mnc)
    assert len(text) == (6 if mcc in THREE_DIGIT_MNC_MCCS or mnc >= 100 else 5)
    assert split_plmn(text) == (mcc, mnc)


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(), st.text(alphabet="0123456789 -F\"", max_size=9)))
def test_split_plmn_gives_a_code_or_at_parse_error(text: str) -> None:
    try:
        mcc, mnc = split_plmn(text)
    except AtParseError:
        return
    assert 1 <= mcc <= 999 and 0 <= mnc <= 999
