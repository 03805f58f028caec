"""PLMN codes, the Indonesian operator table, and the names an operator scan shows."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.fields import printed_codes, split_plmn
from agent.shared.operators import (
    OPERATORS,
    THREE_DIGIT_MNC_MCCS,
    codes_of_numbers,
    format_plmn,
    mnc_digits,
    operator_name,
    plmn_key,
)
from agent.unit.devices.modem.parse_simcom import parse_cpsi
from agent.unit.devices.modem.values import OperatorChoice


def test_indonesian_networks() -> None:
    """Every network a unit meets along the Mahakam, by (MCC, MNC) as digits."""
    assert dict(OPERATORS) == {
        ("510", "01"): "Indosat", ("510", "21"): "Indosat",
        ("510", "08"): "AXIS", ("510", "11"): "XL",
        ("510", "09"): "Smartfren", ("510", "28"): "Smartfren",
        ("510", "10"): "Telkomsel",
        ("510", "89"): "Tri",
    }
    print(f"\n{len(OPERATORS)} PLMNs, {len(set(OPERATORS.values()))} brands")


@pytest.mark.parametrize(
    "mcc, mnc, name",
    [
        (None, "10", None), ("510", None, None), ("510", "99", None), ("010", "510", None), ("310", "260", None),
        ("510", "10", "Telkomsel"), ("510", "01", "Indosat"), ("510", "21", "Indosat"), ("510", "11", "XL"),
        ("510", "08", "AXIS"), ("510", "09", "Smartfren"), ("510", "28", "Smartfren"), ("510", "89", "Tri"),
        ("510", "1", None), ("510", "001", None),  # the digits are the code: 510-001 is not Indosat
    ],
)
def test_operator_name(mcc: str | None, mnc: str | None, name: str | None) -> None:
    assert operator_name(mcc, mnc) == name


@pytest.mark.parametrize(
    "long_name, mcc, mnc, operator",
    [
        ("TELKOMSEL", "510", "10", "TELKOMSEL"),  # the network's own name wins
        ("IND XL", "510", "99", "IND XL"),         # even for a code the table does not know
        (None, "510", "89", "Tri"),                # a numeric-only entry: the table's name
        ("", "510", "01", "Indosat"),              # an empty name is no name
        (None, "510", "99", None),                 # unknown code, no name: nothing invented
        (None, None, None, None),                  # no code given at all
    ],
)
def test_operator_named_in_a_scan(long_name: str | None, mcc: str | None, mnc: str | None,
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
        ("51010", ("510", "10")),            # +QSPN / +QNWINFO form
        ('"51089"', ("510", "89")),          # still quoted
        ("51001", ("510", "01")),            # the digits as broadcast: Indosat is 510-01
        ("510-10", ("510", "10")),           # +CPSI form
        ("204 04", ("204", "04")),           # Telit #RFSTS form
        ("310 260", ("310", "260")),
        ("310260", ("310", "260")),          # three-digit MNC told by the length
        ("310026", ("310", "026")),
        ("40545", ("405", "45")),            # India's 405 mixes two ...
        ("405854", ("405", "854")),          # ... and three digits
        ("405025", ("405", "025")),          # ... and only the length tells 405-025 from 405-25
        ("51010F", ("510", "10")),           # SIM-style filler after a two-digit MNC
        ("001 01", ("001", "01")),           # the test network of lab base stations
    ],
)
def test_split_plmn(plmn: str, expected: tuple[str, str]) -> None:
    assert split_plmn(plmn) == expected


@pytest.mark.parametrize(
    "mcc, mnc, text",
    [("510", "10", "51010"), ("510", "01", "51001"), ("310", "260", "310260"), ("310", "010", "310010"),
     ("405", "45", "40545"), ("405", "854", "405854"), ("001", "01", "00101")],
)
def test_format_plmn(mcc: str, mnc: str, text: str) -> None:
    assert format_plmn(mcc, mnc) == text
    assert plmn_key(mcc, mnc) == f"{text[:3]}-{text[3:]}"


@pytest.mark.parametrize("mcc, mnc", [("51", "10"), ("5100", "1"), ("510", "1"), ("510", "1000"), ("510", "-1"),
                                      ("000", "00"),
                                      (510, "10"), ("510", 10), ("\u0665\u0661\u0660", "10")])
def test_format_plmn_rejects(mcc: object, mnc: object) -> None:
    with pytest.raises(ValueError):
        format_plmn(mcc, mnc)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plmn_key(mcc, mnc)  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(mcc=st.integers(1, 999).map(lambda n: f"{n:03d}"), mnc=st.from_regex(r"\A[0-9]{2,3}\Z"))
def test_format_then_split_is_the_identity(mcc: str, mnc: str) -> None:
    if len(mnc) == 2 and int(mcc) in THREE_DIGIT_MNC_MCCS:
        return  # not a network: split_plmn refuses it (test_split_plmn_rejects)
    assert split_plmn(format_plmn(mcc, mnc)) == (mcc, mnc)


@pytest.mark.parametrize(
    "mcc, mnc, digits",
    [(510, 1, "01"), (510, 10, "10"), (510, 0, "00"), (510, 100, "100"), (310, 26, "026"), (310, 260, "260"),
     (302, 720, "720"), (405, 25, "25"), (405, 854, "854"), (1, 1, "01")],
)
def test_an_mnc_known_only_as_a_number_is_written_as_its_country_writes_it(mcc: int, mnc: int, digits: str) -> None:
    assert mnc_digits(mcc, mnc) == digits
    assert codes_of_numbers(mcc, mnc) == (f"{mcc:03d}", digits)


@pytest.mark.parametrize("mcc, mnc", [(None, 10), (510, None), (None, None), (0, 10), (1000, 1), (510, -1),
                                      (510, 1000), (510.0, 10), (True, 1), ("510", 10)])
def test_numbers_that_name_no_network_give_no_codes(mcc: object, mnc: object) -> None:
    assert codes_of_numbers(mcc, mnc) == (None, None)


@pytest.mark.parametrize(
    "mcc, mnc, codes",
    [
        ("510", "10", ("510", "10")), ("515", "03", ("515", "03")),    # Quectel prints the zeros
        ("310", "260", ("310", "260")), ("510", "010", ("510", "010")),  # three digits printed: kept
        ("510", "1", ("510", "01")), ("510", "01", ("510", "01")),     # a bare number is padded ...
        ("310", "26", ("310", "026")), ("310", "3", ("310", "003")),   # ... as its country writes it
        ("  1", " 1", ("001", "01")),                                   # right-aligned columns
        ("000", "00", (None, None)), ("-", "-", (None, None)), ("510", "", (None, None)), ("510", "1000", (None, None)),
        ("5100", "10", (None, None)), ("510", "x1", (None, None)),
    ],
)
def test_codes_printed_as_two_fields(mcc: str, mnc: str, codes: tuple) -> None:
    assert printed_codes(mcc, mnc) == codes


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(), st.text(alphabet="0123456789 -F\"", max_size=9)))
def test_split_plmn_gives_a_code_or_at_parse_error(text: str) -> None:
    try:
        mcc, mnc = split_plmn(text)
    except AtParseError:
        return
    assert len(mcc) == 3 and mcc.isdigit() and mcc != "000" and len(mnc) in (2, 3) and mnc.isdigit()


def key_kept_before(mcc: int, mnc: int) -> str:
    """The operator key the centre wrote for integer codes before blankspot.reading/2 (the
    coverage figures of an older database are kept under it)."""
    three = mcc in THREE_DIGIT_MNC_MCCS or (mcc in {405} and mnc >= 100) or mnc >= 100
    return f"{mcc:03d}-{mnc:03d}" if three else f"{mcc:03d}-{mnc:02d}"


@settings(max_examples=1000, deadline=None)
@given(mcc=st.integers(1, 999), mnc=st.integers(0, 999))
def test_a_network_of_schema_1_keeps_the_key_its_figures_are_kept_under(mcc: int, mnc: int) -> None:
    """Integer codes read as digits give the key they always had: figures, operator names
    and kept tracks of an upgraded database stay valid."""
    assert plmn_key(*codes_of_numbers(mcc, mnc)) == key_kept_before(mcc, mnc)
