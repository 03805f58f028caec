"""Stored readings as the map, report and export read them: a row that does not decode is
skipped, counted once however many passes meet it, and named with the reason; the rest are
read as ``Store.iter_readings`` reads them, from SQLite and from PostgreSQL alike, and as
strictly as the collector read them when they came in."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.centre.store import open_store
from agent.centre.stored_readings import StoredReadings, _quick_reading, decode_row
from agent.shared import reading as schema
from agent.shared.reading import ReadingError, reading_from_dict
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)
from tests.support.readings_factory import ALL_KINDS
from tests.support.survey_factory import damage, in_service, no_service, tag, year_one_body

COVERED = (-0.5030, 117.1460)


def survey() -> list:
    readings = [in_service("boat-1", seq, *COVERED) for seq in range(1, 6)]
    readings += [no_service("boat-1", seq, -0.25, 116.8) for seq in range(6, 9)]
    readings.append(tag("boat-1", 9, -0.25, 116.77, "kantor desa Sangkuliman"))
    readings += [in_service("probe-2", seq, *COVERED) for seq in range(1, 4)]
    return readings


def body(reading) -> str:
    return reading.to_json()


# (what is stored in the row of boat-1#6, the reason it is skipped)
BAD_BODIES = [
    (lambda r: body(r)[:60], "body is not JSON: "),
    (year_one_body, "time: expected UTC ISO 8601 with milliseconds and 'Z', got \"1-01-01T00:00:00.000Z\""),
    (lambda r: body(r).replace(schema.SCHEMA, "blankspot.reading/9"), "schema: expected"),
    (lambda r: json.dumps({**r.to_dict(), "schema": schema.SCHEMA_1,  # /1 with /2's codes
                           "signal": {**r.to_dict()["signal"], "mcc": "510", "mnc": "10"}}),
     "signal.mcc: expected an integer"),
    (lambda r: "null", "reading: expected an object, got null"),
    (lambda r: json.dumps({**r.to_dict(), "seq": 7}), "body is reading boat-1#7, not this row's"),
    (lambda r: json.dumps({**r.to_dict(), "position": {**r.to_dict()["position"], "lat": 91.0}}),
     "position: lat/lon out of range"),
]


@pytest.mark.parametrize("make, reason", BAD_BODIES, ids=[r[:24] for _, r in BAD_BODIES])
def test_a_row_that_does_not_decode_is_skipped_and_named(make, reason: str) -> None:
    readings = survey()
    rows = [(r.device, r.seq, body(r)) for r in readings]
    rows[5] = ("boat-1", 6, make(readings[5]))
    stored = StoredReadings(lambda device, kind: rows)
    assert list(stored.iter_readings()) == readings[:5] + readings[6:]
    assert stored.skipped == 1
    assert (stored.first[0].device, stored.first[0].seq) == ("boat-1", 6) and reason in stored.first[0].reason
    assert stored.summary() == f"1 stored reading skipped: unreadable (boat-1#6: {stored.first[0].reason})"


def test_rows_as_the_drivers_give_them() -> None:
    reading = survey()[0]
    assert decode_row("boat-1", 1, body(reading)) == reading                  # SQLite: text
    assert decode_row("boat-1", 1, body(reading).encode()) == reading         # a BLOB
    assert decode_row("boat-1", 1, reading.to_dict()) == reading              # PostgreSQL: jsonb, decoded
    with pytest.raises(ValueError, match="body is not UTF-8"):
        decode_row("boat-1", 1, b"\xff\xfe")


@pytest.mark.parametrize("make", ALL_KINDS, ids=lambda f: f.__name__)
def test_a_body_as_the_store_writes_it_reads_back_as_the_reading(make) -> None:
    reading = dataclasses.replace(make(), seq=7)
    assert decode_row("unit-1", 7, reading.to_json()) == reading


def as_schema_1(body: dict) -> dict:
    """A body of /2 as a collector of an earlier version stored it."""
    body = {**body, "schema": schema.SCHEMA_1}
    if body["kind"] == "signal":
        signal = body["signal"]
        body["signal"] = {**signal, "mcc": None if signal["mcc"] is None else int(signal["mcc"]),
                          "mnc": None if signal["mnc"] is None else int(signal["mnc"])}
    return body


@pytest.mark.parametrize("make", ALL_KINDS, ids=lambda f: f.__name__)
def test_a_body_stored_as_reading_1_is_read_quickly_and_as_the_strict_reader_reads_it(make) -> None:
    reading = dataclasses.replace(make(), seq=7)
    if isinstance(reading.part, schema.Signal):
        reading = dataclasses.replace(reading, part=dataclasses.replace(reading.part, mcc="510", mnc="01"))
    earlier = as_schema_1(reading.to_dict())
    quick = None if reading.kind == "event" else reading  # events are left to the strict reader
    assert _quick_reading(earlier, "unit-1", 7) == quick
    assert decode_row("unit-1", 7, json.dumps(earlier)) == reading
    assert reading_from_dict(earlier) == reading


def strictly(device: str, seq: int, body: Any) -> Any:
    """What the collector's strict reader makes of a row: the reading, or why there is none."""
    try:
        reading = reading_from_dict(body)
    except ReadingError as exc:
        return str(exc)
    return reading if (reading.device, reading.seq) == (device, seq) else "another row's reading"


def as_decoded(device: str, seq: int, body: Any) -> Any:
    try:
        return decode_row(device, seq, body)
    except ReadingError as exc:
        return "another row's reading" if str(exc).startswith("body is reading ") else str(exc)


# Values a field of a stored body could be changed to: those of the schema's choices, numbers
# at the edges of what it takes, and anything else JSON holds.
CHOICES = (schema.TIME_SOURCES + schema.KINDS + schema.FIXES + schema.REGISTRATIONS + schema.RATS + schema.QUALITIES
           + schema.SCHEMAS + ("510", "01", "1", "0010", "510 "))
FIELD_VALUES = (
    st.none() | st.booleans() | st.sampled_from(CHOICES) | st.sampled_from([510, 1, 1000, 1.0])
    | st.sampled_from([2**53, 2**53 + 1, -2**53 - 1, 2**63, 0, -1, 1.5, 91.0, -181.0, float("inf"), 10**400])
    | st.integers() | st.floats() | st.text(max_size=300)
    | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)


@st.composite
def changed_bodies(draw: st.DrawFn) -> dict:
    """A stored body, of /2 or of /1, with one field, at any depth, changed, dropped or added."""
    body = dataclasses.replace(draw(st.sampled_from(ALL_KINDS))(), seq=7).to_dict()
    if draw(st.booleans()):
        body = as_schema_1(body)
    objects = [body] + [value for value in body.values() if isinstance(value, dict)]
    target = draw(st.sampled_from(objects))
    name = draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
    if draw(st.booleans()) and name in target:
        del target[name]
    else:
        target[name] = draw(FIELD_VALUES)
    return body


@settings(max_examples=1000, deadline=None)
@given(changed_bodies())
def test_a_row_is_read_and_refused_exactly_as_the_strict_reader_would(body: dict) -> None:
    assert as_decoded("unit-1", 7, body) == strictly("unit-1", 7, body)


def test_a_stored_reading_is_made_of_plain_frozen_dataclasses() -> None:
    """Rows are assembled without running the classes' ``__init__``: nothing may hide there."""
    for cls in (schema.Reading, schema.Position, *schema.PART_TYPES.values()):
        assert cls.__dataclass_params__.frozen and not hasattr(cls, "__post_init__") and "__slots__" not in vars(cls)


def test_a_bad_row_met_by_several_passes_is_counted_once() -> None:
    readings = survey()
    rows = [(r.device, r.seq, year_one_body(r) if r.seq in (2, 3) and r.device == "boat-1" else body(r))
            for r in readings]
    stored = StoredReadings(lambda device, kind: [row for row in rows if device in (None, row[0])])
    for _ in range(3):
        assert len(list(stored.iter_readings())) == len(readings) - 2
    assert len(list(stored.iter_readings(device="boat-1"))) == 7
    assert stored.skipped == 2
    assert stored.summary().startswith("2 stored readings skipped: unreadable (first: boat-1#2: time: expected")
    assert stored.summary().endswith("; also boat-1#3)")


def test_the_summary_names_the_first_few_and_counts_the_rest() -> None:
    rows = [("boat-1", seq, "{") for seq in range(1, 9)]
    stored = StoredReadings(lambda device, kind: rows, named=3)
    assert list(stored.iter_readings()) == []
    assert stored.summary() == ("8 stored readings skipped: unreadable (first: boat-1#1: body is not JSON: Expecting "
                                "property name enclosed in double quotes: line 1 column 2 (char 1); also boat-1#2, "
                                "boat-1#3, ...)")
    assert StoredReadings(lambda device, kind: []).summary() is None


# -- rows from a real database ---------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'collector.db'}"
    return request.getfixturevalue("postgres_url")


def test_rows_come_from_the_database_as_iter_readings_reads_them(url: str) -> None:
    readings = survey()
    store = open_store(url)
    try:
        store.insert_readings(readings)
        stored = StoredReadings.of(store)
        for device, kind in [(None, None), ("boat-1", None), (None, "event"), ("probe-2", "signal"), ("nobody", None)]:
            assert list(stored.iter_readings(device, kind)) == list(store.iter_readings(device, kind))
        assert [(d, s) for d, s, _ in store.iter_rows(kind="signal")] == \
            [(r.device, r.seq) for r in sorted(readings, key=lambda r: (r.device, r.seq)) if r.kind == "signal"]
        # Passes may nest: one pass half-read while another runs to its end.
        outer = stored.iter_readings()
        assert next(outer) == readings[0]
        assert len(list(stored.iter_readings())) == len(readings)
        assert len(list(outer)) == len(readings) - 1
        assert stored.skipped == 0
    finally:
        store.close()


def test_a_damaged_row_in_the_database_is_skipped(url: str) -> None:
    readings = survey()
    with open_store(url) as store:
        store.insert_readings(readings)
    damage(url, {("boat-1", 4): year_one_body(readings[3])})
    with open_store(url) as store:
        with pytest.raises(ValueError, match="time: expected"):
            list(store.iter_readings())  # what map, report and export used to do
        stored = StoredReadings.of(store)
        assert [r.seq for r in stored.iter_readings(device="boat-1")] == [1, 2, 3, 5, 6, 7, 8, 9]
        assert stored.summary().startswith("1 stored reading skipped: unreadable (boat-1#4: time: expected")
