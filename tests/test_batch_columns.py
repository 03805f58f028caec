"""The compact batch encoding (docs/protocol.md, "The compact encoding").

What a unit sends compact, the centre reads back as the very readings the unit kept (at the
instruments' precision); a payload that does not follow the encoding is refused with a
reason, and nothing but :class:`PayloadError` ever comes out of the decoder.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import re
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from agent.shared.batch_columns import COLUMNS, COLUMNS_OF, CONTENT_TYPES as VERSION_CONTENT_TYPES, MAX_INFLATED_BYTES
from agent.shared.batch_columns import VERSION
from agent.shared.operators import codes_of_numbers
from agent.shared.protocol import CONTENT_TYPES, PayloadError, decode_batch, encode_batch, encode_for_wire
from agent.shared.reading import (
    DECIMALS, FIXES, QUALITIES, RATS, REGISTRATIONS, TIME_SOURCES, Event, Latency, Position, Reading, Signal,
    PART_TYPES as PARTS_OF, REGISTRATIONS_1, SCHEMA_1, Throughput, reading_from_dict,
)
from tests.support.docs import run_python_block
from tests.support.readings_factory import (
    event_reading, latency_reading, no_service_reading, signal_reading, throughput_reading,
)

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
DEVICE = "boat-7"


def number(low: float, high: float) -> st.SearchStrategy:
    return st.none() | st.floats(low, high, allow_nan=False) | st.integers(int(low), int(high))


def whole(low: int, high: int) -> st.SearchStrategy:
    return st.none() | st.integers(low, high)


TEXT = st.none() | st.text(max_size=12)
# A network's codes as readings carry them: three digits and two or three, or neither.
CODES = st.just((None, None)) | st.tuples(st.from_regex(r"\A[0-9]{3}\Z"), st.from_regex(r"\A[0-9]{2,3}\Z"))
POSITIONS = st.builds(
    Position, lat=st.floats(-90, 90), lon=st.floats(-180, 180), alt_m=number(-500, 9000), hdop=number(0, 99.99),
    sats=whole(0, 64), speed_kmh=number(0, 2000), course_deg=number(0, 360), fix=st.sampled_from(FIXES),
)
PARTS = st.one_of(
    st.tuples(CODES, st.builds(
        Signal, registration=st.sampled_from(REGISTRATIONS), operator=TEXT,
        rat=st.sampled_from(RATS + (None,)), band=whole(0, 300), earfcn=whole(0, 2**22),
        pci=whole(0, 1007), cell_id=whole(0, 2**36), tac=whole(0, 2**24), lac=whole(0, 2**16),
        rssi_dbm=number(-140, 0), rsrp_dbm=number(-160, 0), rsrq_db=number(-40, 20),
        sinr_db=number(-30, 50), rscp_dbm=number(-130, 0), ecio_db=number(-30, 0), csq=whole(0, 31),
        quality=st.sampled_from(QUALITIES + (None,)), error=TEXT,
    )).map(lambda drawn: dataclasses.replace(drawn[1], mcc=drawn[0][0], mnc=drawn[0][1])),
    st.builds(Latency, target=st.text(max_size=20), method=st.sampled_from(["icmp", "tcp", "udp"]),
              sent=st.integers(0, 100), received=st.integers(0, 100), loss_pct=st.floats(0, 100),
              rtt_min_ms=number(0, 60000), rtt_avg_ms=number(0, 60000), rtt_max_ms=number(0, 60000),
              jitter_ms=number(0, 60000), error=TEXT),
    st.builds(Throughput, backend=st.sampled_from(["speedtest", "http"]), server=TEXT, down_mbps=number(0, 10000),
              up_mbps=number(0, 10000), bytes_used=whole(0, 2**40), duration_s=number(0, 3600), error=TEXT),
    st.builds(Event, type=st.text(min_size=1, max_size=10), message=TEXT,
              data=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3)),
)
TIMES = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(timezone.utc)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))


@st.composite
def batches(draw: st.DrawFn) -> list[Reading]:
    """Readings of one unit as its buffer numbers them: seqs ascending, with gaps."""
    count = draw(st.integers(1, 30))
    seq = draw(st.integers(1, 2**62))
    readings = []
    for _ in range(count):
        readings.append(Reading(DEVICE, draw(TIMES), draw(st.sampled_from(TIME_SOURCES)), draw(PARTS),
                                draw(st.none() | POSITIONS), seq=seq))
        seq += draw(st.integers(1, 3))
    return readings


def kept(readings: list[Reading]) -> list[Reading]:
    """What the unit's buffer keeps: each reading at the instruments' precision."""
    return [r.at_precision() for r in readings]


def bodies(readings: list[Reading]) -> list[str]:
    return [r.to_json() for r in kept(readings)]


def compact(readings: list[Reading], device: str = DEVICE) -> bytes:
    return encode_batch(device, bodies(readings), "compact")


@settings(max_examples=400, deadline=None)
@given(batches())
def test_the_centre_reads_back_exactly_what_the_unit_kept(readings: list[Reading]) -> None:
    payload = compact(readings)
    assert payload[0] == VERSION
    assert decode_batch(payload, DEVICE) == kept(readings)
    assert decode_batch(payload, DEVICE, CONTENT_TYPES["compact"]) == kept(readings)
    assert decode_batch(encode_batch(DEVICE, bodies(readings)), DEVICE) == kept(readings), "JSON says the same"


@st.composite
def bodies_of_schema_1(draw: st.DrawFn) -> list[dict]:
    """Readings as units before blankspot.reading/2 stored them: any valid /1 reading."""
    bodies = []
    for reading in kept(draw(batches())):
        body = reading.to_dict()
        body["schema"] = SCHEMA_1
        if body["kind"] == "signal":
            body["signal"].update(registration=draw(st.sampled_from(REGISTRATIONS_1)), mcc=draw(whole(-5, 1200)),
                                  mnc=draw(whole(-5, 1200)))
        bodies.append(body)
    return bodies


@settings(max_examples=300, deadline=None)
@given(bodies_of_schema_1())
def test_every_valid_reading_of_schema_1_is_read_in_either_encoding(bodies: list[dict]) -> None:
    """The collector quarantines nothing that was valid /1: its codes become digits, or null
    where they named no network."""
    stored = [json.dumps(body) for body in bodies]
    readings = decode_batch(encode_batch(DEVICE, stored), DEVICE)
    assert decode_batch(encode_batch(DEVICE, stored, "compact"), DEVICE) == readings
    for body, reading in zip(bodies, readings, strict=True):
        if body["kind"] == "signal":
            assert (reading.part.mcc, reading.part.mnc) == codes_of_numbers(body["signal"]["mcc"], body["signal"]["mnc"])
            assert reading.part.registration == body["signal"]["registration"]


@pytest.mark.parametrize("make", [signal_reading, no_service_reading, latency_reading, throughput_reading,
                                  event_reading])
def test_each_kind_of_reading_travels_compact(make) -> None:
    readings = [dataclasses.replace(make(DEVICE), seq=seq) for seq in (5, 6, 9)]
    assert decode_batch(compact(readings), DEVICE) == kept(readings)


def test_noise_digits_are_not_kept_and_cost_nothing() -> None:
    reading = dataclasses.replace(signal_reading(DEVICE), seq=1, position=Position(
        lat=-0.31019266666666667, lon=117.14616683333333, alt_m=11.2, hdop=1.05, sats=11,
        speed_kmh=25.000148000000003, course_deg=299.05, fix="3d"))
    (back,) = decode_batch(compact([reading]), DEVICE)
    assert back.position == Position(lat=-0.310193, lon=117.146167, alt_m=11.2, hdop=1.05, sats=11,
                                     speed_kmh=25.0, course_deg=299.1, fix="3d")
    assert json.loads(back.to_json())["position"]["speed_kmh"] == 25.0


def test_a_number_the_steps_cannot_carry_exactly_goes_as_json() -> None:
    wild = dataclasses.replace(latency_reading(DEVICE), seq=3)
    wild = dataclasses.replace(wild, part=dataclasses.replace(wild.part, rtt_max_ms=1e300))
    readings = [dataclasses.replace(signal_reading(DEVICE), seq=2), wild]
    encoding, payload = encode_for_wire(DEVICE, bodies(readings), "compact")
    assert encoding == "json" and payload.startswith(b"{")
    assert decode_batch(payload, DEVICE) == kept(readings)
    assert encode_for_wire(DEVICE, bodies(readings[:1]), "compact")[0] == "compact"


def body_of(columns: dict, n: int = 1, device: str = DEVICE) -> dict:
    return {"device": device, "n": n, "columns": columns}


def packed(body: object, version: int = VERSION) -> bytes:
    return bytes((version,)) + zlib.compress(json.dumps(body).encode())


GOOD = {"seq": [7], "time": [1764039845678], "time_source": ["gps"], "kind": ["event"], "event.type": ["boot"],
        "event.data": [{}]}
SIGNAL = {"seq": [7], "time": [1764039845678], "time_source": ["gps"], "kind": ["signal"],
          "signal.registration": ["home"], "signal.rat": ["NONE"], "signal.quality": ["none"]}


def test_a_hand_made_minimal_batch_is_read() -> None:
    (reading,) = decode_batch(packed(body_of(GOOD)), DEVICE)
    assert (reading.seq, reading.kind, reading.part, reading.position) == (7, "event", Event("boot"), None)
    assert reading.time == datetime(2025, 11, 25, 3, 4, 5, 678000, tzinfo=timezone.utc)


# A compact batch (version 0x01) as a unit of the previous version sent it: readings of
# blankspot.reading/1, MCC and MNC as numbers, Indosat as 510-1, a US network as 310-26.
EARLIER = base64.b64decode(
    "AXjahZRRj6IwEMe/S5/RAIKAb5ecuVzO1Qd9MxtSS8XeQottNbvZ7He/GRZWVoGjyaRpf/+Z6XTKO8n4VTBOFuSgqJ1ExCGS"
    "LEKHMFVcSmnI4p0YfiaLfeA5zXh2iBUlaPZelIRBnARBOI9ix3Phe7QNnhp10RhpT/LKQJyulbZq5kC/CJkhZkQuaQHrj5OC"
    "Wi7Z220JZJUywgolp7AJ8knozjAHHPJSFI77jVES8/ciL5gPU7SwaYmcP0ScMlUBkAztG2oN7g9tV5xn6Ut5wiBBOEAxqJzh"
    "acZzwPzYGwp2FK9Yt1kGdfkyNYaz57ZYU81zYaymKELBScFtOkQrWgqZY1E51exUzz/lNXFzoCoOaqVR/Hv9c7P9sWvImyG7"
    "5erP5mm7XHWEJWOgCeEEE991O7Rf90lLSaQ8xw87xMSbd05QXzFZ7ZaQ7a/tE9j1Zr1s08X1G3ygdT/N7jNEc6PgyEdWN0Uc"
    "uuNoxQRyrjeOMV4UqcDQfhTMkjj6TwaW1seGR5OMg9oYkWYH7MxJhLVM3BFWVy2bPHBO4n5Dz4AiCUmMp2CE1J9sFI6T5wst"
    "hH3D6zpSofGZK4XNKZXk7YXVS89f7xpKoXOOV3zfVPG0HqQN0gpKbk8q6xEIVlYPtOGyx3l4j2nOuLjyHrfBPVooY9KK9Xj1"
    "3abRu44t/FeETEvT4zr2enl6zXv5MBzwT197+chLHvi/wlque/G539AfH/8ACDgH7g==")


def test_a_batch_an_earlier_unit_sent_compact_is_read_as_reading_2() -> None:
    assert EARLIER[0] == 0x01
    readings = decode_batch(EARLIER, "boat-7")
    assert decode_batch(EARLIER, "boat-7", VERSION_CONTENT_TYPES[0x01]) == readings
    assert [r.seq for r in readings] == [41, 42, 43, 44, 45]
    codes = [(r.part.mcc, r.part.mnc) for r in readings if isinstance(r.part, Signal)]
    assert codes == [("510", "01"), ("310", "026"), (None, None), ("510", "10")]
    assert readings[0].part.operator == "INDOSAT" and readings[0].position.lat == -0.503
    assert readings[3].part.rtt_avg_ms == 55.0
    again = readings[0].to_dict()
    assert again["schema"] == "blankspot.reading/2" and again["signal"]["mnc"] == "01"


def test_bodies_stored_before_an_upgrade_travel_compact_beside_new_ones() -> None:
    """A unit's buffer holds readings of /1 written before its upgrade: they go in the same
    compact batch as the /2 ones, as the readings the centre reads them as."""
    new = [dataclasses.replace(signal_reading(DEVICE), seq=3, part=dataclasses.replace(
        signal_reading(DEVICE).part, registration="sms_only_home", mcc="510", mnc="01"))]
    old = json.loads(dataclasses.replace(signal_reading(DEVICE), seq=2).to_json())
    old["schema"] = "blankspot.reading/1"
    old["signal"].update(mcc=510, mnc=1)
    stored = [json.dumps(old), *bodies(new)]
    payload = encode_batch(DEVICE, stored, "compact")
    assert payload[0] == VERSION == 0x02
    assert decode_batch(payload, DEVICE) == [reading_from_dict(json.loads(body)) for body in stored]
    assert decode_batch(encode_batch(DEVICE, stored), DEVICE) == decode_batch(payload, DEVICE), "JSON says the same"
    assert decode_batch(payload, DEVICE)[0].part.mnc == "01"
    unreadable = dict(old, signal=dict(old["signal"], mcc="510"))
    encoding, payload = encode_for_wire(DEVICE, [json.dumps(unreadable)], "compact")
    assert encoding == "json", "a stored reading that does not read goes as it is: the centre judges it"


def test_each_version_has_its_columns() -> None:
    assert COLUMNS is COLUMNS_OF[VERSION]
    assert COLUMNS_OF[0x01]["signal.mcc"] == COLUMNS_OF[0x01]["signal.mnc"] == ("int", 0)
    assert COLUMNS_OF[0x02]["signal.mcc"] == COLUMNS_OF[0x02]["signal.mnc"] == ("str", None)
    assert {name: spec for name, spec in COLUMNS_OF[0x01].items() if name not in ("signal.mcc", "signal.mnc")} == \
        {name: spec for name, spec in COLUMNS_OF[0x02].items() if name not in ("signal.mcc", "signal.mnc")}
    assert VERSION_CONTENT_TYPES == {1: "application/vnd.blankspot.columns.v1+zlib",
                                     2: "application/vnd.blankspot.columns.v2+zlib"}
    assert CONTENT_TYPES["compact"] == VERSION_CONTENT_TYPES[VERSION]


BOMB = bytes((VERSION,)) + zlib.compress(b" " * (MAX_INFLATED_BYTES + 1), 9)


@pytest.mark.parametrize("payload, content_type, reason", [
    (bytes((VERSION,)), None, "the zlib stream is cut short"),
    (bytes((VERSION,)) + b"not zlib", None, "not a zlib stream after the version byte"),
    (packed(body_of(GOOD))[:-3], None, "cut short"),
    (packed(body_of(GOOD)) + b"x", None, "1 bytes after the end of the zlib stream"),
    (BOMB, None, f"inflates to more than {MAX_INFLATED_BYTES} bytes"),
    (bytes((VERSION,)) + zlib.compress(b"\xff\xfe"), None, "inflated, not JSON"),
    (packed([1, 2]), None, 'expected an object with exactly "device", "n" and "columns"'),
    (packed({**body_of(GOOD), "extra": 1}), None, 'exactly "device", "n" and "columns"'),
    (packed(body_of(GOOD, n=0)), None, "n: expected a count of readings from 1 to 100000, got 0"),
    (packed(body_of(GOOD, n=True)), None, "n: expected a count"),
    (packed(body_of({**GOOD, "signal.rsrp": [1]})), None, "unknown column 'signal.rsrp'"),
    (packed(body_of({**GOOD, "seq": [7, 8]})), None, "columns.seq: expected a list of 1 entries"),
    (packed(body_of({**GOOD, "seq": [7.5]})), None, "columns.seq: expected whole numbers or null, got 7.5"),
    (packed(body_of({**GOOD, "seq": [2**63]})), None, "columns.seq: expected whole numbers or null"),
    (packed(body_of({**GOOD, "kind": [3]})), None, "columns.kind: expected strings or null, got 3"),
    (packed(body_of({**GOOD, "event.data": ["x"]})), None, "columns.event.data: expected objects or null"),
    (packed(body_of({**GOOD, "time": [10**18]})), None, "columns.time[0]: 1000000000000000000 ms from 1970"),
    (packed(body_of({**GOOD, "seq": [None]})), None, "readings[0]: seq: expected a positive integer, got null"),
    (packed(body_of({**GOOD, "event.data": [None]})), None, "readings[0]: event.data: required, got null"),
    (packed(body_of(GOOD, device="boat-8")), None, "batch device 'boat-8' does not match topic device 'boat-7'"),
    (packed(body_of(GOOD)), "application/json", "not JSON"),
    (packed(body_of(GOOD)), "application/zip", "content type 'application/zip': expected"),
    (encode_batch(DEVICE, ['{"x": 1}']), CONTENT_TYPES["compact"], "expected version byte 0x02, got 0x7b"),
    (encode_batch(DEVICE, ['{"x": 1}']), None, "readings[0]: schema: expected"),  # "{" is no version: JSON
    (bytes((0x03,)) + packed(body_of(GOOD))[1:], CONTENT_TYPES["compact"], "expected version byte 0x02, got 0x03"),
    (packed(body_of(GOOD), 0x01), CONTENT_TYPES["compact"], "expected version byte 0x02, got 0x01"),
    (packed(body_of(GOOD)), VERSION_CONTENT_TYPES[0x01], "expected version byte 0x01, got 0x02"),
    # each version's own columns: /1 carries MCC and MNC as numbers, /2 as digits
    (packed(body_of({**SIGNAL, "signal.mcc": ["510"], "signal.mnc": ["10"]}), 0x01), None,
     "columns.signal.mcc: expected whole numbers or null"),
    (packed(body_of({**SIGNAL, "signal.mcc": [510], "signal.mnc": [10]})), None,
     "columns.signal.mcc: expected strings or null, got 510"),
    (packed(body_of({**SIGNAL, "signal.mcc": ["510"], "signal.mnc": ["1"]})), None,
     "readings[0]: signal.mnc: expected two or three digits"),
    (packed(body_of({**SIGNAL, "signal.registration": ["emergency_only"]}), 0x01), None,
     "readings[0]: signal.registration: expected one of"),
])
def test_a_payload_off_the_encoding_is_refused_with_its_reason(payload: bytes, content_type, reason: str) -> None:
    with pytest.raises(PayloadError) as refused:
        decode_batch(payload, DEVICE, content_type)
    assert reason in str(refused.value)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=4),
                           max_leaves=20)
COLUMN_NAMES = st.sampled_from(sorted(COLUMNS)) | st.text(max_size=10)


@st.composite
def near_batches(draw: st.DrawFn) -> bytes:
    """Bodies shaped like a batch with anything in their columns, or none of it."""
    n = draw(st.integers(-1, 4))
    columns = draw(st.dictionaries(COLUMN_NAMES, st.lists(JSON_VALUES, min_size=max(n, 0), max_size=max(n, 0))
                                   | JSON_VALUES, max_size=8))
    return packed(body_of(columns, n)) if draw(st.booleans()) else packed(draw(JSON_VALUES))


@settings(max_examples=600, deadline=None)
@given(near_batches() | st.binary(max_size=64).map(lambda b: bytes((VERSION,)) + b))
def test_the_decoder_raises_nothing_but_payload_error(payload: bytes) -> None:
    try:
        decode_batch(payload, DEVICE)
    except PayloadError:
        pass


def test_the_documented_decoder_reads_it_without_blankspot() -> None:
    """The Python decoder in docs/protocol.md, run as written, gives what the package gives."""
    scope = run_python_block("protocol.md", after="A decoder needs nothing but zlib and a JSON parser")
    readings = [dataclasses.replace(make(DEVICE), seq=seq, time=make(DEVICE).time + timedelta(seconds=seq))
                for seq, make in enumerate([signal_reading, no_service_reading, latency_reading, throughput_reading,
                                            event_reading, signal_reading], start=40)]
    theirs = scope["decode"](compact(readings))
    for mine, their in zip(kept(readings), theirs, strict=True):
        expected = mine.to_dict()
        for part in ("position", mine.kind):
            if expected[part] is not None:
                assert {k: v for k, v in expected[part].items() if v is not None} == their.pop(part)
                expected.pop(part)
        assert {k: v for k, v in expected.items() if v is not None} == {k: v for k, v in their.items()
                                                                        if v is not None}
    # a batch of an earlier unit: readings of /1, MCC and MNC as numbers
    earlier = scope["decode"](EARLIER)
    assert {r["schema"] for r in earlier} == {"blankspot.reading/1"}
    assert (earlier[0]["signal"]["mcc"], earlier[0]["signal"]["mnc"]) == (510, 1)
    assert [reading_from_dict(with_nulls(r)) for r in earlier] == decode_batch(EARLIER, "boat-7")


def with_nulls(reading: dict) -> dict:
    """A reading the documented decoder rebuilt (absent fields are null) with its nulls written."""
    parts = {"position": Position, **{kind: cls for kind, cls in PARTS_OF.items()}}
    return {key: {name: value.get(name) for name, _ in parts[key].FIELDS} if key in parts and value is not None
            else value for key, value in reading.items()}


def test_the_documented_precision_is_the_one_the_unit_keeps() -> None:
    text = PROTOCOL_DOC.read_text()
    table = text[text.index("### Precision"):text.index("Every other number is an integer.")]
    documented: dict[str, int] = {}
    for row in re.findall(r"^\| (`.+?) \| ([0-9.]+)", table, re.M):
        names, step = row
        group = None
        for name in re.findall(r"`([a-z_.]+)`", names):
            if "." in name:
                group, name = name.split(".")
            documented[f"{group}.{name}"] = len(step.split(".")[1]) if "." in step else 0
    assert documented == {f"{group}.{name}": d for group, fields in DECIMALS.items() for name, d in fields.items()}
