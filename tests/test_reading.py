"""The reading record, its JSON form, and batch payloads: exact, strict, fuzz-proof."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.shared.protocol import PayloadError, decode_batch, decode_status, encode_batch, encode_status, split_topic
from agent.shared.reading import (
    HOME_REGISTRATIONS,
    NO_SERVICE_REGISTRATIONS,
    REGISTRATIONS,
    REGISTRATIONS_1,
    ROAMING_REGISTRATIONS,
    SERVED_REGISTRATIONS,
    ReadingError,
    Signal,
    format_time,
    format_time_epoch,
    parse_time,
    reading_from_dict,
    reading_from_json,
)
from tests.support.readings_factory import ALL_KINDS, T0, signal_reading


@pytest.mark.parametrize("make", ALL_KINDS, ids=lambda f: f.__name__)
def test_json_round_trip(make) -> None:
    reading = replace(make(), seq=42)
    assert reading_from_json(reading.to_json()) == reading


def test_json_form_is_the_contract() -> None:
    body = replace(signal_reading(), seq=7).to_dict()
    assert list(body)[:7] == ["schema", "device", "seq", "time", "time_source", "kind", "position"]
    assert body["schema"] == "blankspot.reading/2"
    assert (body["signal"]["mcc"], body["signal"]["mnc"]) == ("510", "10")  # digits, as broadcast
    assert body["time"] == "2026-11-24T03:04:05.678Z"
    assert body["kind"] == "signal" and "signal" in body and "latency" not in body
    assert body["signal"]["csq"] is None  # unknown is null, never 99
    assert set(body["position"]) == {"lat", "lon", "alt_m", "hdop", "sats", "speed_kmh", "course_deg", "fix"}


def test_time_is_utc_with_milliseconds() -> None:
    from datetime import timedelta, timezone

    wib = timezone(timedelta(hours=8))  # WITA, Kalimantan Timur
    assert format_time(T0.astimezone(wib)) == "2026-11-24T03:04:05.678Z"


# (moment, its text): the year always has four digits, whatever the platform's strftime does
TIMES = [
    (datetime(1, 1, 1, tzinfo=timezone.utc), "0001-01-01T00:00:00.000Z"),
    (datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc), "0999-12-31T23:59:59.999Z"),
    (datetime(1970, 1, 1, tzinfo=timezone.utc), "1970-01-01T00:00:00.000Z"),
    (datetime(2026, 11, 24, 3, 4, 5, 678_000, tzinfo=timezone.utc), "2026-11-24T03:04:05.678Z"),
    (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=timezone.utc), "9999-12-31T23:59:59.999Z"),
]


@pytest.mark.parametrize("moment,text", TIMES, ids=[t for _, t in TIMES])
def test_times_have_four_digit_years_and_read_back_exactly(moment: datetime, text: str) -> None:
    assert format_time(moment) == text
    assert parse_time(text) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert format_time(parse_time(text)) == text


@pytest.mark.parametrize("text", [
    "1-01-01T00:00:00.000Z",        # year 1 as strftime("%Y") wrote it on glibc
    "999-12-31T23:59:59.999Z",
    "10000-01-01T00:00:00.000Z",
    "0000-01-01T00:00:00.000Z",     # there is no year 0
    "2026-02-30T03:04:05.678Z",
    "2026-11-24T03:04:05Z",
    "2026-11-24T03:04:05.678+00:00",
    "２０２６-11-24T03:04:05.678Z",  # digits, but not ASCII ones
])
def test_times_format_time_never_writes_are_refused(text: str) -> None:
    with pytest.raises(ReadingError, match="time: "):
        parse_time(text)


# (seconds since the epoch, its text): milliseconds truncated, never rounded, as format_time does
EPOCHS = [
    (0.0, "1970-01-01T00:00:00.000Z"),
    (0.0009, "1970-01-01T00:00:00.000Z"),
    (1795489445.6789, "2026-11-24T03:04:05.678Z"),
    (1795489445.9999, "2026-11-24T03:04:05.999Z"),
]


@pytest.mark.parametrize("seconds,text", EPOCHS, ids=[t for _, t in EPOCHS])
def test_epoch_seconds_are_written_like_reading_times(seconds: float, text: str) -> None:
    assert format_time_epoch(seconds) == text

def test_a_reading_of_year_1_round_trips() -> None:
    reading = replace(signal_reading(), seq=3, time=datetime(1, 1, 1, tzinfo=timezone.utc))
    assert reading.to_dict()["time"] == "0001-01-01T00:00:00.000Z"
    assert reading_from_json(reading.to_json()) == reading


def test_a_time_outside_the_utc_calendar_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        format_time(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8))))


def test_unsequenced_reading_has_no_json_form() -> None:
    with pytest.raises(ReadingError):
        signal_reading().to_dict()


# Bad readings: (mutation of a good JSON form, expected words of the error)
BAD = [
    (lambda d: d.pop("seq"), "seq"),
    (lambda d: d.update(seq=0), "seq"),
    (lambda d: d.update(seq="7"), "seq"),
    (lambda d: d.update(time="2026-11-24 03:04:05"), "time"),
    (lambda d: d.update(time="2026-02-30T03:04:05.678Z"), "time"),
    (lambda d: d.update(time_source="gsm"), "time_source"),
    (lambda d: d.update(kind="weather"), "kind"),
    (lambda d: d.update(device="unit/1"), "device"),
    (lambda d: d.update(device="+"), "device"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["signal"].update(rsrp_dbm="-99"), "signal.rsrp_dbm"),
    (lambda d: d["signal"].update(rsrp_dbm=10**400), "signal.rsrp_dbm"),  # JSON allows it; no float holds it
    (lambda d: d["signal"].update(rat="LTE-A"), "signal.rat"),
    (lambda d: d["signal"].update(bogus=1), "bogus"),
    (lambda d: d["signal"].update(cell_id=True), "signal.cell_id"),
    (lambda d: d["position"].update(lat=91), "lat/lon"),
    (lambda d: d["position"].update(fix="4d"), "position.fix"),
    (lambda d: d.pop("signal"), "signal"),
    (lambda d: d.update(latency={}), "latency"),
    (lambda d: d["signal"].update(operator="x" * 1000), "longer"),
    (lambda d: d.update(schema="blankspot.reading/3"), "schema"),
    (lambda d: d["signal"].update(mcc=510), "signal.mcc: expected a string"),           # /2 codes are digits
    (lambda d: d["signal"].update(mcc="51"), "signal.mcc: expected three digits"),
    (lambda d: d["signal"].update(mcc="5100"), "signal.mcc: expected three digits"),
    (lambda d: d["signal"].update(mcc="\u0665\u0661\u0660"), "signal.mcc: expected three digits"),
    (lambda d: d["signal"].update(mnc="1"), "signal.mnc: expected two or three digits"),
    (lambda d: d["signal"].update(mnc="0001"), "signal.mnc: expected two or three digits"),
    (lambda d: d["signal"].update(mnc=" 10"), "signal.mnc: expected two or three digits"),
    (lambda d: d["signal"].update(mnc=None), "mcc and mnc are both known or both null"),
    (lambda d: d["signal"].update(mcc=None), "mcc and mnc are both known or both null"),
    (lambda d: d["signal"].update(registration="sms_only"), "signal.registration"),
]


@pytest.mark.parametrize("mutate,words", BAD, ids=[w for _, w in BAD])
def test_invalid_readings_are_rejected(mutate, words: str) -> None:
    body = replace(signal_reading(), seq=7).to_dict()
    mutate(body)
    with pytest.raises(ReadingError) as info:
        reading_from_dict(body)
    assert words in str(info.value)


def reading_1(**signal) -> dict:
    """A signal reading as a unit of an earlier version wrote it: ``blankspot.reading/1``."""
    body = replace(signal_reading(), seq=7).to_dict()
    body["schema"] = "blankspot.reading/1"
    body["signal"].update({"mcc": 510, "mnc": 10, **signal})
    return body


@pytest.mark.parametrize(
    "mcc, mnc, codes",
    [
        (510, 10, ("510", "10")), (510, 1, ("510", "01")), (310, 26, ("310", "026")), (310, 260, ("310", "260")),
        (405, 25, ("405", "25")), (405, 854, ("405", "854")), (1, 1, ("001", "01")),
        # codes that named no network (the map fell back on the operator's name): neither is kept
        (None, None, (None, None)), (510, None, (None, None)), (None, 10, (None, None)), (0, 10, (None, None)),
        (1000, 1, (None, None)), (510, -1, (None, None)), (510, 1000, (None, None)),
    ],
)
def test_a_reading_of_schema_1_is_read_with_its_codes_as_digits(mcc, mnc, codes) -> None:
    reading = reading_from_dict(reading_1(mcc=mcc, mnc=mnc))
    assert (reading.part.mcc, reading.part.mnc) == codes
    assert reading.part.registration == "home" and reading.seq == 7
    again = reading.to_dict()
    assert again["schema"] == "blankspot.reading/2" and reading_from_dict(again) == reading


def test_a_reading_of_schema_1_and_one_of_schema_2_of_the_same_network_are_the_same_reading() -> None:
    mine = replace(signal_reading(), seq=7, part=replace(signal_reading().part, mcc="510", mnc="01"))
    assert reading_from_dict(reading_1(mcc=510, mnc=1)) == reading_from_dict(mine.to_dict()) == mine


@pytest.mark.parametrize("registration", sorted(set(REGISTRATIONS) - set(REGISTRATIONS_1)))
def test_schema_1_has_only_its_own_registration_words(registration: str) -> None:
    body = reading_1(registration=registration)
    with pytest.raises(ReadingError, match="signal.registration"):
        reading_from_dict(body)
    body["schema"] = "blankspot.reading/2"
    body["signal"].update(mcc="510", mnc="10")
    assert reading_from_dict(body).part.registration == registration


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["signal"].update(mcc="510"), "signal.mcc: expected an integer"),  # /1 codes are integers
    (lambda d: d["signal"].update(mnc=1.0), "signal.mnc: expected an integer"),
    (lambda d: d["signal"].update(mcc=True), "signal.mcc: expected an integer"),
])
def test_schema_1_is_read_as_strictly_as_it_always_was(mutate, words: str) -> None:
    body = reading_1()
    mutate(body)
    with pytest.raises(ReadingError, match=words):
        reading_from_dict(body)


def test_every_registration_word_has_its_place_on_the_map() -> None:
    """The sets every comparison takes: each word is in service, without it, or unknown."""
    assert HOME_REGISTRATIONS | ROAMING_REGISTRATIONS == SERVED_REGISTRATIONS
    assert not HOME_REGISTRATIONS & ROAMING_REGISTRATIONS and not SERVED_REGISTRATIONS & NO_SERVICE_REGISTRATIONS
    assert SERVED_REGISTRATIONS | NO_SERVICE_REGISTRATIONS | {"unknown"} == set(REGISTRATIONS)
    assert len(REGISTRATIONS) == len(set(REGISTRATIONS)) == 12
    assert REGISTRATIONS[:6] == REGISTRATIONS_1
    assert Signal().registration == "unknown"


def test_nan_is_rejected() -> None:
    text = replace(signal_reading(), seq=7).to_json().replace('"rsrp_dbm":-99.0', '"rsrp_dbm":NaN')
    with pytest.raises(ReadingError):
        reading_from_json(text)


def test_batch_round_trip() -> None:
    readings = [replace(make(), seq=i + 1) for i, make in enumerate(ALL_KINDS)]
    payload = encode_batch("unit-1", [r.to_json() for r in readings])
    assert decode_batch(payload, "unit-1") == readings
    assert json.loads(payload)["schema"] == "blankspot.batch/1"


@pytest.mark.parametrize(
    "payload,topic_device,words",
    [
        (b"", "unit-1", "not JSON"),
        (b"\xff\xfe", "unit-1", "not JSON"),
        (b"[]", "unit-1", "schema"),
        (b'{"schema":"blankspot.batch/1","device":"unit-1","readings":[]}', "unit-1", "non-empty"),
        (b'{"schema":"blankspot.batch/1","device":"unit-2","readings":[1]}', "unit-1", "does not match topic"),
        (b'{"schema":"blankspot.batch/1","device":"unit-1","readings":[1]}', "unit-1", "readings[0]"),
        (b"{" * 5_000_000, "unit-1", "exceeds"),
    ],
)
def test_bad_batches(payload: bytes, topic_device: str, words: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_batch(payload, topic_device)
    assert words in str(info.value)


def test_reading_of_another_device_in_a_batch_is_rejected() -> None:
    payload = encode_batch("unit-1", [replace(signal_reading("unit-2"), seq=1).to_json()])
    with pytest.raises(PayloadError, match="not the batch's"):
        decode_batch(payload, "unit-1")


def test_topics() -> None:
    assert split_topic("blankspot/v1", "blankspot/v1/boat-7/readings") == ("boat-7", "readings")
    for bad in ("blankspot/v1/boat-7", "blankspot/v2/boat-7/readings", "blankspot/v1/a/b/readings", "blankspot/v1/+/status"):
        with pytest.raises(PayloadError):
            split_topic("blankspot/v1", bad)


def test_status_round_trip() -> None:
    payload = encode_status("unit-1", "online", backlog={"pending": 3})
    assert decode_status(payload, "unit-1")["backlog"] == {"pending": 3}
    with pytest.raises(PayloadError):
        decode_status(encode_status("unit-1", "sleeping"), "unit-1")


# -- fuzzing: any input gives a value or the documented error --------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_reading_bytes(data: bytes) -> None:
    try:
        reading_from_json(data)
    except ReadingError:
        pass


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_reading_structures(value) -> None:
    try:
        reading_from_dict(value)
    except ReadingError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(replace(signal_reading(), seq=1).to_dict())), json_values, max_size=9))
def test_fuzz_reading_near_misses(overrides) -> None:
    body = replace(signal_reading(), seq=1).to_dict()
    body.update(overrides)
    try:
        reading_from_dict(body)
    except ReadingError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_batch(payload: bytes) -> None:
    try:
        decode_batch(payload, "unit-1")
    except PayloadError:
        pass
    try:
        decode_status(payload, "unit-1")
    except PayloadError:
        pass
