"""SMS PDUs (agent.shared.sms_pdu) and the GSM alphabet (agent.shared.gsm_alphabet).

Real PDUs first: every row of tests/data/sms/pdus.jsonl is read, and where its source says
what the message holds (sender, service centre, time, text, parts), the decoded value agrees.
Then the inputs that must be refused, each with the reason the message names; what the data
coding scheme means; the encoders against what other implementations write; and the property
tests: what is encoded decodes to itself, and nothing but :class:`SmsPduError` comes out of
a decoder, whatever it is given.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.shared.gsm_alphabet import (
    GSM_BASIC, GSM_EXTENSION, GsmAlphabetError, from_septets, is_gsm7, septets, to_septets,
)
from agent.shared.sms_pdu import (
    DeliveredSms, SmsPduError, decode_deliver, decode_submit, encode_deliver, encode_submit,
)
from tests.support.data import SMS_PDUS

ROWS: list[dict[str, Any]] = [json.loads(line) for line in SMS_PDUS.read_text(encoding="utf-8").splitlines()]
NUMBERED = [(number, row) for number, row in enumerate(ROWS, start=1)]
GSM_CHARS = "".join(ch for ch in GSM_BASIC if ch != "\x1b") + "".join(GSM_EXTENSION.values())

# Rows we read differently from their source, on purpose (line number in pdus.jsonl: why).
DELIBERATE = {
    19: "user data length 160 is past what UCS2 holds (140 octets): refused, not read short",
    32: "a received message whose TP-MTI says SMS-SUBMIT: refused, as every TP-MTI but 00 is",
    58: "an odd number of hex digits cannot be octets",
}


def row_id(number: int, row: dict[str, Any]) -> str:
    where = row["source_path"] or row["source_url"].rsplit("/", 3)[-3] + "#" + row["source_url"].rsplit("/", 1)[-1]
    return f"L{number:02d}-{row['kind']}-{where}"


def expect_refused(call: Any, *args: Any, saying: str) -> None:
    with pytest.raises(SmsPduError) as refused:
        call(*args)
    assert saying in str(refused.value)


# -- the corpus ---------------------------------------------------------------------------------

def test_the_corpus_has_real_messages_of_every_kind() -> None:
    """The rows cover what the unit and the centre will meet, most of them from real devices."""
    delivered = [decode_deliver(row["pdu"]) for _, row in NUMBERED
                 if row["kind"] == "deliver" and row["origin"] == "real device"]
    assert len(delivered) >= 30
    assert {sms.coding for sms in delivered} == {"gsm7", "ucs2", "8bit"}
    assert sum(sms.part is not None for sms in delivered) >= 5
    assert sum(not sms.sender.lstrip("+").isdigit() for sms in delivered) >= 8  # alphanumeric senders
    assert {row["kind"] for row in ROWS} == {"deliver", "submit", "status_report"}


@pytest.mark.parametrize("number,row", [(n, r) for n, r in NUMBERED if r["kind"] == "deliver"],
                         ids=[row_id(n, r) for n, r in NUMBERED if r["kind"] == "deliver"])
def test_a_real_sms_deliver_reads_as_its_source_says(number: int, row: dict[str, Any]) -> None:
    sms = decode_deliver(row["pdu"])
    assert sms.raw == row["pdu"]
    assert sms.sent_at.utcoffset() is not None
    expected = row["expected"] or {}
    translated = {
        "sender": sms.sender, "service_centre": sms.service_centre, "sent_at": sms.sent_at.isoformat(),
        "text": sms.text, "multipart": sms.part is not None, "part": list(sms.part) if sms.part else None,
        "data": sms.text.encode("latin-1").hex().upper() if sms.coding == "8bit" else None,
    }
    assert {key: translated[key] for key in expected} == expected


@pytest.mark.parametrize("number,row", [(n, r) for n, r in NUMBERED if r["kind"] != "deliver"],
                         ids=[row_id(n, r) for n, r in NUMBERED if r["kind"] != "deliver"])
def test_a_real_submit_or_status_report_is_no_sms_deliver(number: int, row: dict[str, Any]) -> None:
    """decode_deliver names what it got instead; decode_submit reads the submits."""
    if number == 58:
        expect_refused(decode_deliver, row["pdu"], saying="even number of hex digits")
        return
    expect_refused(decode_deliver, row["pdu"],
                   saying="got an SMS-SUBMIT" if row["kind"] == "submit" else "got an SMS-STATUS-REPORT")
    if row["kind"] == "submit":
        if number in DELIBERATE:
            with pytest.raises(SmsPduError):
                decode_submit(row["pdu"])
            return
        number_and_text = decode_submit(row["pdu"])
        if row["expected"]:
            assert number_and_text == (row["expected"]["number"], row["expected"]["text"])


def test_the_parts_of_a_real_concatenated_message_share_a_reference() -> None:
    """oFono's three UCS2 parts (8-bit reference 0x1E) and Beeline's (16-bit reference)."""
    parts = [decode_deliver(row["pdu"]).part for _, row in NUMBERED if "assembly_pdu" in row["note"]]
    assert parts == [(0x1E, 3, 1), (0x1E, 3, 2), (0x1E, 3, 3)]
    beeline = [decode_deliver(row["pdu"]) for _, row in NUMBERED if "issues/41" in (row["source_url"] or "")]
    assert [sms.part for sms in beeline] == [(0x63D0, 5, 1), (0x63D0, 5, 3)]
    assert {sms.sender for sms in beeline} == {"Beeline"} and {sms.coding for sms in beeline} == {"ucs2"}


# -- refusals -----------------------------------------------------------------------------------

MM_PDU3 = "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37"
MM_PDU2 = "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442"
MULTIPART_1 = ROWS[8]["pdu"]

MALFORMED = [
    ("", "got nothing"),
    ("   ", "got nothing"),
    ("0791", "the PDU ends"),
    ("07912143658709F", "even number of hex digits"),
    ("07912143658709FG", "even number of hex digits"),
    ("0x07912143", "even number of hex digits"),
    ("00", "expected 1 octet of first octet at octet 1"),
    ("0C91214365870921436587092143", "at most 11 octets"),                      # service centre too long
    ("0004", "originating address length at octet 2"),
    ("00041591" + "21" * 10, "at most 20 semi-octets"),
    ("0004039121F4", "expected 1 octet of protocol identifier"),
    ("0004039121F40000", "expected 7 octets of service centre time stamp"),
    ("0004039121F40000" + "11101021436500", "user data length"),
    ("0004039121F40000" + "1110102143650001", "1 octet of user data at octet 16, the PDU ends"),
    # ModemManager's test_pdu_insufficient_data: 11 septets announced, 9 octets there
    (MM_PDU3.replace("65000AE8", "65000BE8"), "expected 10 octets of user data"),
    (MM_PDU3.replace("65000AE8", "6500A1E8"), "at most 160 septets"),
    (MM_PDU3.replace("F20000", "F20008").replace("65000AE8", "65008DE8"), "at most 140 octets"),
    (MM_PDU3.replace("F20000", "F20020"), "compressed text"),
    (MM_PDU3.replace("F20000", "F20060"), "compressed text"),
    (MM_PDU3.replace("F2000011101021", "F2000011311021"), "not a real time"),  # month 13
    (MM_PDU3.replace("F2000011101021", "F20000110A1021"), "two decimal semi-octets"),
    (MM_PDU3.replace("4365000A", "4365A00A"), "time zone"),
    (MM_PDU3.replace("040B918100551512F2", "040B91F100551512F2"), "found the filler F after 1"),
    (MM_PDU2[:-18] + "0704420435044104", "even number of octets"),
    (MULTIPART_1.replace("A00500034C0201", "A00500054C0201"), "information element 00 says 5 octets"),
    (MULTIPART_1.replace("A00500034C0201", "A00500024C0201"), "concatenation element 00 expected 3 octets"),
    (MULTIPART_1.replace("A00500034C0201", "A0FF00034C0201"), "says 255 octets"),
    (MULTIPART_1.replace("A00500034C0201", "A00100034C0201"), "cut short"),
]


@pytest.mark.parametrize("pdu,reason", MALFORMED)
def test_a_malformed_pdu_is_refused_with_the_reason(pdu: str, reason: str) -> None:
    expect_refused(decode_deliver, pdu, saying=reason)


def test_a_header_indicator_with_no_user_data_is_refused() -> None:
    pdu = "07912143658709F1" + "44" + "0B918100551512F2" + "0000" + "11101021436500" + "00"
    expect_refused(decode_deliver, pdu, saying="the user data is empty")


def test_a_header_longer_than_the_septets_is_refused() -> None:
    pdu = "07912143658709F1" + "44" + "0B918100551512F2" + "0000" + "11101021436500" + "03" + "020100"
    expect_refused(decode_deliver, pdu, saying="septets cannot hold")


@pytest.mark.parametrize("udh,part", [("0500034C0201", (0x4C, 2, 1)), ("0500034C0203", None),
                                      ("0500034C0200", None), ("0500034C0000", None)])
def test_a_concatenation_element_whose_numbers_cannot_be_is_ignored(udh: str, part: Any) -> None:
    """TS 23.040 9.2.3.24.1: sequence 0, or past the total, and the element is ignored."""
    sms = decode_deliver(MULTIPART_1.replace("0500034C0201", udh))
    assert sms.part == part
    assert sms.text.startswith("This is a very long test")


def test_half_a_surrogate_pair_shows_as_the_replacement_character() -> None:
    """A UCS2 part may end in half of a character its next part completes."""
    pdu = encode_deliver("+6281234567", "ab", datetime(2024, 5, 1, tzinfo=timezone.utc), coding="ucs2")
    assert decode_deliver(pdu.replace("00610062", "0061D83D")).text == "a\ufffd"


def test_octets_after_the_user_data_are_ignored() -> None:
    assert decode_deliver(MM_PDU3 + "FFFF").text == "hellohello"


@pytest.mark.parametrize("value", [None, 7, b"0791", ["07"]])
def test_a_pdu_that_is_not_text_is_refused(value: Any) -> None:
    expect_refused(decode_deliver, value, saying="hex text")
    expect_refused(decode_submit, value, saying="hex text")


# -- the data coding scheme ---------------------------------------------------------------------

MM_PDU3_8BIT = MM_PDU3.replace("F20000", "F20004") + "DE"

DCS_TABLE = [
    (0x00, "gsm7"), (0x04, "8bit"), (0x08, "ucs2"), (0x0C, "gsm7"),  # alphabet 11 is reserved: default
    (0x10, "gsm7"), (0x11, "gsm7"), (0x14, "8bit"), (0x18, "ucs2"), (0x19, "ucs2"),  # with a class
    (0x40, "gsm7"), (0x44, "8bit"), (0x48, "ucs2"),  # marked for automatic deletion
    (0x80, "gsm7"), (0xB4, "gsm7"),  # reserved groups: default alphabet
    (0xC0, "gsm7"), (0xD8, "gsm7"), (0xE0, "ucs2"),  # message waiting indication
    (0xF0, "gsm7"), (0xF1, "gsm7"), (0xF4, "8bit"), (0xF6, "8bit"), (0xFB, "gsm7"),  # data coding / class
]


@pytest.mark.parametrize("dcs,coding", DCS_TABLE, ids=[f"{d:02X}" for d, _ in DCS_TABLE])
def test_the_data_coding_scheme_gives_the_alphabet(dcs: int, coding: str) -> None:
    """TS 23.038 4: every group that carries text, and the reserved ones read as the default alphabet."""
    sms = decode_deliver(MM_PDU3_8BIT.replace("F20004", f"F200{dcs:02X}"))
    assert sms.coding == coding
    if coding == "gsm7":
        assert sms.text == "hellohello"


# -- the encoders -------------------------------------------------------------------------------

SUBMIT_VECTORS = [
    # python-gsmmodem test_encodeSmsSubmit: no validity period
    (("+27820001111", "Hello World!", None), ("0001000B917228001011F100000CC8329BFD065DDF72363904", 24)),
    # ModemManager test_create_pdu_gsm_no_validity: five Greek capitals of the default alphabet
    (("+15556661234", "This is really cool ΔΔΔΔΔ", None),
     ("0001000B915155661632F400001954747A0E4ACF41F27298CDCE83C6EF371B0481402010", 35)),
    # oFono test_prepare_7bit, without its service centre: 24 hours is TP-VP 0xA7
    (("+358478400241", "This is testing !", 24), ("0011000C915348870420140000A71154747A0E4ACF41F4F29C9E769F4121", 29)),
]


@pytest.mark.parametrize("call,expected", SUBMIT_VECTORS)
def test_encode_submit_writes_what_other_implementations_write(call: tuple[str, str, int | None],
                                                                expected: tuple[str, int]) -> None:
    number, text, hours = call
    assert encode_submit(number, text, validity_hours=hours) == expected


def test_the_length_for_cmgs_counts_the_octets_after_the_service_centre() -> None:
    pdu, length = encode_submit("081234567890", "x")
    assert pdu.startswith("00") and length == len(pdu) // 2 - 1
    assert pdu[8:10] == "81"  # a number without '+': type unknown


VALIDITY = [(1, 0x0B), (2, 0x17), (12, 143), (13, 145), (24, 167), (25, 168), (48, 168), (49, 169), (720, 196),
            (721, 197), (35 * 24, 197), (35 * 24 + 1, 198), (63 * 7 * 24, 255)]


@pytest.mark.parametrize("hours,octet", VALIDITY)
def test_the_validity_period_is_the_shortest_at_least_that_long(hours: int, octet: int) -> None:
    pdu, _ = encode_submit("+1", "x", validity_hours=hours)
    assert pdu[:4] == "0011" and int(pdu[16:18], 16) == octet


@pytest.mark.parametrize("hours", [0, -1, 63 * 7 * 24 + 1, 1.5, True, "24"])
def test_a_validity_period_tp_vp_cannot_say_is_refused(hours: Any) -> None:
    with pytest.raises(SmsPduError, match="validity_hours"):
        encode_submit("+1", "x", validity_hours=hours)


REFUSED_SUBMITS = [
    (("+6281234567", "Привет"), "not in the GSM 7-bit default alphabet"),
    (("+6281234567", "ok 🙂"), "U+1F642"),
    (("+6281234567", "x" * 161), "160 septets, this text takes 161"),
    (("+6281234567", "€" * 81), "this text takes 162"),
    (("", "x"), "number"),
    (("+", "x"), "number"),
    (("+62 812", "x"), "number"),
    (("0812-345", "x"), "number"),
    (("1" * 21, "x"), "number"),
    ((6281234567, "x"), "number"),
    (("+6281234567", None), "expected text"),
]


@pytest.mark.parametrize("call,reason", REFUSED_SUBMITS)
def test_encode_submit_refuses_what_one_gsm_message_cannot_carry(call: tuple[Any, Any], reason: str) -> None:
    expect_refused(encode_submit, *call, saying=reason)


def test_the_longest_texts_fit() -> None:
    assert decode_submit(encode_submit("+1", "x" * 160)[0]) == ("+1", "x" * 160)
    assert decode_submit(encode_submit("+1", "€" * 80)[0]) == ("+1", "€" * 80)
    moment = datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert decode_deliver(encode_deliver("+1", "ж" * 70, moment, coding="ucs2")).text == "ж" * 70


def test_encode_deliver_writes_an_alphanumeric_sender_and_the_zone() -> None:
    moment = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=7)))
    pdu = encode_deliver("TELKOMSEL", "Kuota internet Anda habis.", moment)
    assert pdu.startswith("069126180100000410D0")  # service centre, DELIVER, 16 semi-octets
    sms = decode_deliver(pdu)
    assert (sms.sender, sms.service_centre, sms.sent_at, sms.text, sms.coding, sms.part) == (
        "TELKOMSEL", "+6281100000", moment, "Kuota internet Anda habis.", "gsm7", None)
    assert decode_deliver(encode_deliver("3636", "x", moment, service_centre=None)).service_centre is None


REFUSED_DELIVERS = [
    (("+1", "x", datetime(2024, 5, 1)), {}, "timezone-aware"),
    (("+1", "x", "2024-05-01T00:00:00Z"), {}, "timezone-aware"),
    (("+1", "x", datetime(2024, 5, 1, tzinfo=timezone(timedelta(minutes=10)))), {}, "quarter hours"),
    (("+1", "x", datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=20)))), {}, "quarter hours"),
    (("+1", "x", datetime(1999, 12, 31, tzinfo=timezone.utc)), {}, "2000..2099"),
    (("OPERATOR-NAME", "x", datetime(2024, 5, 1, tzinfo=timezone.utc)), {}, "at most 11 septets"),
    (("", "x", datetime(2024, 5, 1, tzinfo=timezone.utc)), {}, "sender"),
    (("Привет", "x", datetime(2024, 5, 1, tzinfo=timezone.utc)), {}, "sender"),
    (("+1", "x" * 71, datetime(2024, 5, 1, tzinfo=timezone.utc)), {"coding": "ucs2"}, "140 octets"),
    (("+1", "\ud83d", datetime(2024, 5, 1, tzinfo=timezone.utc)), {"coding": "ucs2"}, "lone surrogate"),
    (("+1", "x", datetime(2024, 5, 1, tzinfo=timezone.utc)), {"coding": "8bit"}, "coding"),
    (("+1", "x", datetime(2024, 5, 1, tzinfo=timezone.utc)), {"service_centre": "SMSC"}, "service centre"),
]


@pytest.mark.parametrize("args,kwargs,reason", REFUSED_DELIVERS)
def test_encode_deliver_refuses_what_a_pdu_cannot_carry(args: tuple[Any, ...], kwargs: dict[str, Any],
                                                         reason: str) -> None:
    with pytest.raises(SmsPduError) as refused:
        encode_deliver(*args, **kwargs)
    assert reason in str(refused.value)


def test_decode_submit_refuses_a_deliver() -> None:
    expect_refused(decode_submit, MM_PDU3, saying="got an SMS-DELIVER")


# -- round trips --------------------------------------------------------------------------------

NUMBERS = st.from_regex(r"\A\+?[0-9]{1,20}\Z")
GSM_TEXT = st.text(alphabet=GSM_CHARS, max_size=160).filter(lambda text: septets(text) <= 160)
ALPHANUMERIC = (st.text(alphabet=GSM_CHARS, min_size=1, max_size=11)
                .filter(lambda name: septets(name) <= 11 and not name.lstrip("+").isdigit()))
UCS2_TEXT = (st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=70)
             .filter(lambda text: len(text.encode("utf-16-be")) <= 140))
ZONES = st.integers(-79, 79).map(lambda quarters: timezone(timedelta(minutes=15 * quarters)))
MOMENTS = st.builds(lambda moment, zone: moment.replace(tzinfo=zone),
                    st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59)).map(
                        lambda moment: moment.replace(microsecond=0)), ZONES)


@settings(max_examples=300, deadline=None)
@given(NUMBERS, GSM_TEXT, st.none() | st.integers(1, 63 * 7 * 24))
def test_what_encode_submit_writes_decode_submit_reads(number: str, text: str, hours: int | None) -> None:
    pdu, length = encode_submit(number, text, validity_hours=hours)
    assert decode_submit(pdu) == (number, text)
    assert length == len(pdu) // 2 - 1 and length <= 164


@settings(max_examples=300, deadline=None)
@given(NUMBERS | ALPHANUMERIC, GSM_TEXT, MOMENTS, st.none() | NUMBERS)
def test_what_encode_deliver_writes_decode_deliver_reads_gsm7(sender: str, text: str, moment: datetime,
                                                              centre: str | None) -> None:
    pdu = encode_deliver(sender, text, moment, service_centre=centre)
    assert decode_deliver(pdu) == DeliveredSms(sender=sender, service_centre=centre, sent_at=moment, text=text,
                                               coding="gsm7", part=None, raw=pdu)


@settings(max_examples=300, deadline=None)
@given(NUMBERS | ALPHANUMERIC, UCS2_TEXT, MOMENTS)
def test_what_encode_deliver_writes_decode_deliver_reads_ucs2(sender: str, text: str, moment: datetime) -> None:
    sms = decode_deliver(encode_deliver(sender, text, moment, coding="ucs2"))
    assert (sms.sender, sms.text, sms.sent_at, sms.coding) == (sender, text, moment, "ucs2")


# -- nothing but SmsPduError --------------------------------------------------------------------

def _mutations() -> st.SearchStrategy[str]:
    @st.composite
    def mutated(draw: st.DrawFn) -> str:
        pdu = draw(st.sampled_from([row["pdu"] for row in ROWS]))
        cut = draw(st.integers(0, len(pdu)))
        kind = draw(st.sampled_from(["cut", "flip", "splice"]))
        if kind == "cut":
            return pdu[:cut]
        if kind == "flip":
            return pdu[:cut] + draw(st.sampled_from("0123456789ABCDEF")) + pdu[cut + 1:]
        return pdu[:cut] + draw(st.sampled_from([row["pdu"] for row in ROWS]))[cut:]
    return mutated()


ANY_INPUT = (st.text(max_size=400) | st.binary(max_size=200).map(lambda data: data.hex())
             | st.binary(max_size=200).map(lambda data: data.hex().upper()) | _mutations())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_INPUT)
def test_the_decoders_raise_nothing_but_sms_pdu_error(text: str) -> None:
    for decode in (decode_deliver, decode_submit):
        try:
            decode(text)
        except SmsPduError:
            pass


# -- the GSM alphabet ---------------------------------------------------------------------------

def test_the_alphabet_counts_extension_characters_twice() -> None:
    assert septets("Rp 10.000 {ok}") == 16
    assert to_septets("@€") == [0x00, 0x1B, 0x65]
    assert is_gsm7("Kuota habis @ Rp5.000, ÄÖ") and not is_gsm7("ä ≠ a") and not is_gsm7("\x1b")
    assert from_septets([0x1B, 0x1B, 0x41, 0x1B]) == " A "  # escape-escape and a lone escape show as spaces
    assert from_septets([0x1B, 0x41]) == "A"  # an undefined extension shows its basic character


@pytest.mark.parametrize("call,arg", [(to_septets, "naïve"), (septets, "™"), (to_septets, None),
                                      (from_septets, [128]), (from_septets, [-1]), (from_septets, ["a"])])
def test_the_alphabet_refuses_what_it_lacks(call: Any, arg: Any) -> None:
    with pytest.raises(GsmAlphabetError):
        call(arg)


@given(GSM_TEXT)
def test_septets_round_trip(text: str) -> None:
    assert from_septets(to_septets(text)) == text
