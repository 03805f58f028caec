"""TS 27.005 answers about short messages, parsed from real modem output.

Each table starts with what a parser must reject (AtParseError, nothing else), then real
answers, each with where it was seen (tests/data/sms/README.md has the threads and files);
a few rows written for a case no public capture shows say so.  Then every answer of
tests/data/sms/answers.jsonl goes to its parser, and the property tests feed arbitrary text
and lines to every parser: a value or AtParseError, nothing else.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.shared.sms_pdu import decode_deliver
from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.parse_sms import (
    CMS_ERRORS, StorageUse, StoredPdu, StoredText, cms_error_kind, parse_cmgl_pdu, parse_cmgl_text, parse_cmgr_pdu,
    parse_cmgs, parse_cms_error, parse_cmti, parse_cpms, parse_csca,
)
from tests.support.data import SMS_ANSWERS, SMS_PDUS

BAD = AtParseError  # expected value of a row that must be rejected
ANSWERS: list[dict[str, Any]] = [json.loads(line) for line in SMS_ANSWERS.read_text(encoding="utf-8").splitlines()]
PDUS: list[dict[str, Any]] = [json.loads(line) for line in SMS_PDUS.read_text(encoding="utf-8").splitlines()]


def check(parser: Callable[[Any], Any], given_: Any, expected: Any) -> None:
    if expected is BAD:
        with pytest.raises(AtParseError):
            parser(given_)
    else:
        assert parser(given_) == expected


# -- +CMTI ---------------------------------------------------------------------------------------

CMTI_ROWS = [
    ("", BAD),
    ("OK", BAD),
    ("+CMTI: ,-1", BAD),                      # SIMCom SIM7000G (T-SIM7600X#63): stored nowhere AT+CMGR reads
    ('+CMTI: "SM"', BAD),
    ('+CMTI: "SM",x', BAD),
    ('+CMTI: "SM",3,4', BAD),
    ('+CMTI: "SMS",3', BAD),
    ('+CMT: "+6281234567",,"24/05/01,10:00:00+28"', BAD),  # the message itself, not where it is
    ('+CMTI: "ME",0', ("ME", 0)),             # Huawei E303/E3531 (gammu#490), E3131 (gammu#550)
    ('+CMTI: "SM",1', ("SM", 1)),             # Huawei (bg111/asterisk-chan-dongle#31)
    # written for the test: the other storages, framing, the unquoted and lower-case quirks
    ('+CMTI: "MT",7', ("MT", 7)),
    ('\r\n+CMTI: "SM",3\r\n', ("SM", 3)),
    ("+CMTI: SM,3", ("SM", 3)),
    ('+cmti:"sm",12', ("SM", 12)),
]


@pytest.mark.parametrize("text,expected", CMTI_ROWS)
def test_cmti(text: str, expected: Any) -> None:
    """The storage and index of a message just stored, for AT+CMGR."""
    check(parse_cmti, text, expected)


# -- +CMGS, +CSCA -----------------------------------------------------------------------------

CMGS_ROWS = [
    ("", BAD), ("+CMGS: ", BAD), ("+CMGS: 256", BAD), ("+CMGS: -1", BAD), ("+CMGS: 1,2,3", BAD),
    ("+CMS ERROR: 500", BAD),
    ("+CMGS: 134", 134),                       # a modem's log on Ozeki's AT+CMGS page
    ("+CMGS: 0", 0),
    ('+CMGS: 12,"24/05/01,10:00:00+28"', 12),  # written: text mode's <scts> after the reference
]


@pytest.mark.parametrize("text,expected", CMGS_ROWS)
def test_cmgs(text: str, expected: Any) -> None:
    """The message reference the network gave the message sent, 0..255."""
    check(parse_cmgs, text, expected)


CSCA_ROWS = [
    ("", BAD), ('+CSCA: "abc",145', BAD), ("+CSCA: 1,2,3", BAD), ('+CSCA: "+62816124",999', BAD),
    ('+CSCA: "+62816124",145', "+62816124"),          # Indosat Ooredoo (gammu#242)
    ('+CSCA: "+48790998250",145', "+48790998250"),    # gammu#381
    # written: nothing set, a national number, type 145 printed without '+'
    ('+CSCA: "",145', None), ('+CSCA: ""', None), ("+CSCA: ,129", None),
    ('+CSCA: "0811000",129', "0811000"), ('+CSCA: "6281100000",145', "+6281100000"),
]


@pytest.mark.parametrize("text,expected", CSCA_ROWS)
def test_csca(text: str, expected: Any) -> None:
    check(parse_csca, text, expected)


# -- +CPMS ---------------------------------------------------------------------------------------

def uses(*counts: tuple[str | None, int, int]) -> list[StorageUse]:
    return [StorageUse(*count) for count in counts]


CPMS_ROWS = [
    ("", BAD),
    ('+CPMS: ("ME","MT","SM","SR"),("ME","MT","SM","SR"),("ME","MT","SM","SR")', BAD),  # AT+CPMS=? (sms_tool#3)
    ('+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")', BAD),  # AT+CPMS=?, Brovi E3372-325 (gammu's at-cpms)
    ("+CPMS: ", BAD),                                      # AT+CPMS=?, Samsung J700
    ('+CPMS: "SM","SM","SM"', BAD),                        # AT+CPMS=?, iWOW
    ("+CPMS: 21,2521,25,1,25", BAD),                       # Ai-Thinker A6, a comma lost (A6lib#21)
    ('+CPMS: "SM",3,2', BAD),                              # more used than there is room
    ('+CPMS: "SM",1,10,"SM",1,10,"SM",1,10,"SM",1,10', BAD),
    # read form
    ('+CPMS: "ME",2,20,"SM",2,10,"SM",2,10', uses(("ME", 2, 20), ("SM", 2, 10), ("SM", 2, 10))),  # gnokii#1
    ('+CPMS: "SM",0,20,"SM",0,20,"SM",0,20', uses(("SM", 0, 20), ("SM", 0, 20), ("SM", 0, 20))),  # TL-MR6400
    # set form: the counts of the storages just chosen, no names
    ("+CPMS: 1,30,0,20,0,20", uses((None, 1, 30), (None, 0, 20), (None, 0, 20))),  # Huawei E3131 (gammu#333)
    ("+CPMS: 0,50,0,50,0,100", uses((None, 0, 50), (None, 0, 50), (None, 0, 100))),  # gammu#312
    ("+CPMS: 2,10,2,10,2,10", uses((None, 2, 10), (None, 2, 10), (None, 2, 10))),  # gnokii#1
    # written: one storage, SIM full
    ('+CPMS: "SM",30,30', uses(("SM", 30, 30))),
]


@pytest.mark.parametrize("text,expected", CPMS_ROWS)
def test_cpms(text: str, expected: Any) -> None:
    """Used and total of each storage; a full SIM (used == total) stops new messages arriving."""
    check(parse_cpms, text, expected)


# -- +CMGL / +CMGR in PDU mode ---------------------------------------------------------------

E1752 = "07913366003051F5040B913366304381F900005180719120348004D4F29C0E"
E3131 = "0011000B817044763185F60000AD044D76F80C"

CMGL_PDU_ROWS = [
    (["+CMGL: 0,0,,23"], BAD),                                   # the PDU missing
    ([E1752], BAD),                                              # a PDU with no +CMGL line
    (["+CMGL: 0,0,,23", "+CMGL: 1,0,,23"], BAD),
    (["+CMGL: 0,0,,23", "07913366003051F5040B9Z"], BAD),
    (["+CMGL: 0,9,,23", E1752], BAD),                            # stat 0..4
    (["+CMGL: 0,0", E1752], BAD),
    ([], []),                                                    # an empty storage: AT+CMGL answers OK
    (["", "OK"], []),
    (["+CMGL: 0,0,,23", E1752], [StoredPdu(0, 0, 23, E1752)]),  # Huawei E1752 (gammu#126)
    (["+CMGL: 0,3,,18", E3131], [StoredPdu(0, 3, 18, E3131)]),  # Huawei E3131, a stored submit (gammu#333)
    # written: two messages, an <alpha>, lower-case hex, blank lines between
    (["+CMGL: 1,1,\"Mum\",23", E1752.lower(), "", "+CMGL: 4,3,,18", E3131, "OK"],
     [StoredPdu(1, 1, 23, E1752), StoredPdu(4, 3, 18, E3131)]),
]


@pytest.mark.parametrize("lines,expected", CMGL_PDU_ROWS)
def test_cmgl_pdu(lines: list[str], expected: Any) -> None:
    check(parse_cmgl_pdu, lines, expected)
    if isinstance(expected, list):
        for stored in expected:
            assert stored.length == len(stored.pdu) // 2 - 1 - int(stored.pdu[:2], 16)


CMGR_PDU_ROWS = [
    (["+CMGR: 1,,23", E1752, "+CMGR: 1,,23", E1752], BAD),
    (["+CMGR: 1,,23"], BAD),
    (["+CMGL: 1,1,,23", E1752], BAD),
    (["+CMGR: 1,,x", E1752], BAD),
    (["+CMGR: 1,2,3,4,5", E1752], BAD),
    ([], None),                                                      # nothing stored at the index
    (["OK"], None),
    (["+CMGR: 0,23", E1752], StoredPdu(9, 0, 23, E1752)),            # gammu's 07.dump: <stat>,<length>
    (["+CMGR: 1,,23", E1752], StoredPdu(9, 1, 23, E1752)),
    (["+CMGR: ,,92", E1752], StoredPdu(9, None, 92, E1752)),         # gammu's 39.dump: no stat
    (["+CMGR: 24", E1752], StoredPdu(9, None, 24, E1752)),           # gammu's 38.dump: the length alone
    (["+CMGR: 4,1,,151", E1752], StoredPdu(9, 1, 151, E1752)),       # gammu's 26.dump: the index first
    (["+CMGR: 1,,156", E1752 + '"'], StoredPdu(9, 1, 156, E1752)),   # gammu's 04.dump: a stray quote
]


@pytest.mark.parametrize("lines,expected", CMGR_PDU_ROWS)
def test_cmgr_pdu(lines: list[str], expected: Any) -> None:
    check(lambda given_: parse_cmgr_pdu(given_, 9), lines, expected)


@pytest.mark.parametrize("index", [-1, "1", 1.0, None])
def test_cmgr_pdu_needs_the_index_read(index: Any) -> None:
    with pytest.raises(AtParseError):
        parse_cmgr_pdu(["+CMGR: 1,,23", E1752], index)


def test_a_stored_pdu_decodes() -> None:
    """What the parsers give is what agent.shared.sms_pdu reads."""
    sms = decode_deliver(parse_cmgl_pdu(["+CMGL: 0,0,,23", E1752])[0].pdu)
    assert (sms.sender, sms.text) == ("+33660334189", "Test")


# -- +CMGL in text mode ----------------------------------------------------------------------

CMGL_TEXT_ROWS = [
    (["+CMGL:1,\"REC READ\",+4366306800\",,\"2017/10/16,09:10:01+02\",J⸮⸮⸮⸮⸮⸮Z⸮"], BAD),  # A6, garbled (A6lib#21)
    (["hello", "+CMGL: 1,\"REC READ\",\"+6281234567\",,\"24/05/01,10:00:00+28\""], BAD),   # text before a header
    (["+CMGL: 1,\"REC SOMETHING\",\"+6281234567\",,\"24/05/01,10:00:00+28\"", "x"], BAD),
    (["+CMGL: x,\"REC READ\",\"+6281234567\"", "x"], BAD),
    (["+CMGL: 1,\"REC READ\""], BAD),
    ([], []),
    # SIMCom SIM900 (MarcoMartines/GSM-GPRS-GPS-Shield#30): number masked by the poster, no texts
    (['+CMGL: 1,"REC READ","+79XXXXXXXXX","1","15/09/23,00:34:17+24"',
      '+CMGL: 2,"REC READ","+79XXXXXXXXX","1","15/09/23,01:34:03+24"'],
     [StoredText(1, "REC READ", "+79XXXXXXXXX", "15/09/23,00:34:17+24", ""),
      StoredText(2, "REC READ", "+79XXXXXXXXX", "15/09/23,01:34:03+24", "")]),
    # written for the test, in the layout TS 27.005 gives: a text of three lines, one blank
    (['+CMGL: 1,"REC UNREAD","+6281234567",,"24/05/01,10:00:00+28"', "Kuota internet Anda", "",
      "tinggal 10 MB.", "", '+CMGL: 2,"rec read","TELKOMSEL",,"24/05/01,11:00:00+28",208,7', "Terima kasih", "OK"],
     [StoredText(1, "REC UNREAD", "+6281234567", "24/05/01,10:00:00+28", "Kuota internet Anda\n\ntinggal 10 MB."),
      StoredText(2, "REC READ", "TELKOMSEL", "24/05/01,11:00:00+28", "Terima kasih")]),
    # written: a stored outgoing message has no time stamp
    (['+CMGL: 3,"STO UNSENT","+6281100000",,', "BS1 boat-7 1"],
     [StoredText(3, "STO UNSENT", "+6281100000", None, "BS1 boat-7 1")]),
]


@pytest.mark.parametrize("lines,expected", CMGL_TEXT_ROWS)
def test_cmgl_text(lines: list[str], expected: Any) -> None:
    check(parse_cmgl_text, lines, expected)


def test_cmgl_text_in_ucs2_decodes_the_address_and_the_text() -> None:
    """Written for the test: with AT+CSCS="UCS2" a modem prints every string as UCS2 hex."""
    lines = ['+CMGL: 5,"REC UNREAD","002B0036003200380031003100300030","","24/05/01,10:00:00+28"',
             "004B0075006F00740061002000680061006200690073002E0020D83DDE4F"]
    assert parse_cmgl_text(lines, charset="UCS2") == [
        StoredText(5, "REC UNREAD", "+6281100", "24/05/01,10:00:00+28", "Kuota habis. 🙏")]


# -- +CMS ERROR ---------------------------------------------------------------------------------

CMS_ROWS = [
    ("", BAD),
    ("+CME ERROR: 10", BAD),
    ("+CMS ERROR:", BAD),
    ("+CMS ERROR:AT+CGATT?", BAD),              # SIM7000G: the next command's echo ran in (TinyGSM#470)
    ("+CMS ERROR: 38 ", (38, "network out of order")),             # gammu#537
    ("+CMS ERROR: 500", (500, "unknown error")),                   # Qualcomm M7227 (gammu#264)
    ("+CMS Error: 500", (500, "unknown error")),                   # SIM7000G as TinyGSM printed it (#413)
    ("+CMS ERROR: 69", (69, "requested facility not implemented")),  # serialport-gsm#61
    ("+CMS ERROR: 21", (21, "short message transfer rejected")),   # serialport-gsm#50
    ("+CMS ERROR: 302", (302, "operation not allowed")),           # serialport-gsm#88
    ("+CMS ERROR: 604", (604, "manufacturer's error 604")),        # opentracker#21
    ("+CMS ERROR: invalid input value", (None, "invalid input value")),  # SIM800L, verbose (jakhax#4)
    # written: verbose texts a table knows, codes of each range
    ("+CMS ERROR: memory full", (322, "memory full")),
    ("+CMS ERROR: SIM full", (322, "SIM full")),
    ('+CMS ERROR: "SMSC address unknown"', (330, "SMSC address unknown")),
    ("+CMS ERROR: 126", (126, "network cause 126")),
    ("+CMS ERROR: 200", (200, "service centre cause 200")),
    ("+CMS ERROR: 399", (399, "modem error 399")),
]


@pytest.mark.parametrize("text,expected", CMS_ROWS)
def test_cms_error(text: str, expected: Any) -> None:
    check(parse_cms_error, text, expected)


KIND_ROWS = [
    (8, "no_credit_or_barred"), (10, "no_credit_or_barred"), (21, "no_credit_or_barred"),
    (29, "no_credit_or_barred"), (50, "no_credit_or_barred"), (69, "no_credit_or_barred"),
    (17, "network"), (38, "network"), (41, "network"), (42, "network"), (47, "network"), (331, "network"),
    (332, "network"), (322, "sim_full"), (208, "sim_full"), (310, "sim"), (311, "sim"), (316, "sim"),
    (330, "smsc"), (1, "other"), (300, "other"), (500, "other"), (604, "other"), (None, "other"),
]


@pytest.mark.parametrize("code,kind", KIND_ROWS)
def test_cms_error_kind(code: int | None, kind: str) -> None:
    """What to do about a failed send: top up or ask the operator, wait, empty the SIM, fix the SIM or SMSC."""
    assert cms_error_kind(code) == kind


def test_every_code_in_the_table_has_plain_words_and_a_kind() -> None:
    assert all(meaning and meaning == meaning.strip() for meaning in CMS_ERRORS.values())
    assert all(cms_error_kind(code) in ("no_credit_or_barred", "network", "sim_full", "sim", "smsc", "other")
               for code in CMS_ERRORS)


# -- the corpus ----------------------------------------------------------------------------------

def parse_row(row: dict[str, Any]) -> Any:
    """The row's answer through the parser of its command."""
    command, answer = row["command"], row["answer"]
    if answer.upper().startswith("+CMS ERROR"):
        return parse_cms_error(answer)
    if command.startswith("AT+CMGR="):
        return parse_cmgr_pdu(answer.split("\n"), int(command.split("=")[1]))
    if command == "AT+CMGL=4":
        return parse_cmgl_pdu(answer.split("\n"))
    if command.startswith("AT+CMGL="):
        return parse_cmgl_text(answer.split("\n"))
    parser = {"+CPMS": parse_cpms, "+CMTI": parse_cmti, "+CSCA": parse_csca, "+CMGS": parse_cmgs}[answer[:5].upper()]
    return parser(answer)


# Rows refused, by line in answers.jsonl: each is an answer that does not say what its command asks.
REFUSED = {
    27: "gammu's 32.dump: a PDU line of an odd number of hex digits",
    47: "AT+CPMS=? lists storages, no counts", 48: "AT+CPMS=?", 49: "AT+CPMS=?", 50: "AT+CPMS=?, empty",
    51: "AT+CPMS=?, names only", 52: "a comma lost on the line", 56: "+CMTI: ,-1, stored nowhere",
    68: "the error's code lost to the next command's echo", 70: "a quote lost on the line",
}


@pytest.mark.parametrize("number,row", list(enumerate(ANSWERS, start=1)),
                         ids=[f"L{n:02d}-{r['command']}" for n, r in enumerate(ANSWERS, start=1)])
def test_every_real_answer_is_read_or_refused_as_listed(number: int, row: dict[str, Any]) -> None:
    if number in REFUSED:
        with pytest.raises(AtParseError):
            parse_row(row)
        return
    value = parse_row(row)
    if row["command"].startswith("AT+CMGR="):
        # the same record is a row of pdus.jsonl: the PDU the parser gives is that row's
        pdu_row = next(p for p in PDUS if p["source_path"] == row["source_path"])
        assert value.pdu == pdu_row["pdu"]
        header = row["answer"].split("\n")[0]
        assert str(value.length) == header.rsplit(",", 1)[-1].split(" ")[-1]


def test_the_corpus_has_the_answers_of_every_command() -> None:
    commands = {row["answer"][:5].upper() for row in ANSWERS}
    assert {"+CMGR", "+CMGL", "+CMTI", "+CPMS", "+CSCA", "+CMGS", "+CMS "} <= commands
    assert sum(not (row["source_path"] or "").startswith("tests/at-sms/") for row in ANSWERS) >= 15


# -- nothing but AtParseError --------------------------------------------------------------------

PREFIXES = st.sampled_from(["+CMTI: ", "+CMGS: ", "+CSCA: ", "+CPMS: ", "+CMS ERROR: ", "+CMGL: ", "+CMGR: ", ""])
FIELDS = st.lists(st.one_of(st.integers(-5, 400).map(str), st.text(max_size=8), st.just('"SM"'),
                            st.just('"REC READ"'), st.just("00")), max_size=8).map(",".join)
LINES = st.builds(lambda prefix, body: prefix + body, PREFIXES, FIELDS | st.text(max_size=40))
REAL_LINES = st.sampled_from([line for row in ANSWERS for line in row["answer"].split("\n")])


@st.composite
def spliced(draw: st.DrawFn) -> str:
    line = draw(REAL_LINES)
    cut = draw(st.integers(0, len(line)))
    return line[:cut] + draw(REAL_LINES | st.text(max_size=6))[cut:] if draw(st.booleans()) else line[:cut]


ANY_LINE = LINES | REAL_LINES | spliced() | st.text(max_size=60)


@settings(max_examples=800, deadline=None)
@given(ANY_LINE)
def test_the_line_parsers_raise_nothing_but_at_parse_error(text: str) -> None:
    for parser in (parse_cmti, parse_cmgs, parse_csca, parse_cpms, parse_cms_error):
        try:
            parser(text)
        except AtParseError:
            pass


@settings(max_examples=800, deadline=None)
@given(st.lists(ANY_LINE, max_size=6), st.integers(-3, 300), st.sampled_from([None, "UCS2", "GSM", "IRA"]))
def test_the_list_parsers_raise_nothing_but_at_parse_error(lines: list[str], index: int, charset: str | None) -> None:
    for call in (lambda: parse_cmgl_pdu(lines), lambda: parse_cmgr_pdu(lines, index),
                 lambda: parse_cmgl_text(lines, charset)):
        try:
            call()
        except AtParseError:
            pass


@pytest.mark.parametrize("value", [None, 12, b"+CMTI: \"SM\",1", ["+CMTI: \"SM\",1"]])
def test_what_is_not_text_is_refused(value: Any) -> None:
    for parser in (parse_cmti, parse_cmgs, parse_csca, parse_cpms, parse_cms_error):
        with pytest.raises(AtParseError):
            parser(value)
    for list_parser in (parse_cmgl_pdu, parse_cmgl_text, lambda v: parse_cmgr_pdu(v, 1)):
        if not isinstance(value, list):
            with pytest.raises(AtParseError):
                list_parser(value)
