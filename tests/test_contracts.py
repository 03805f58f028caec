"""The contracts integrators and operators rely on stay true to the code.

- The JSON Schemas in ``agent/schema/`` accept what the agent really sends (readings of every
  kind, batches, status messages, the last will, seen through ``mosquitto_sub``) and reject
  what ``reading_from_dict`` rejects.
- ``docs/configuration.md`` and ``deploy/agent.example.toml`` describe exactly the keys the
  config module has, with their real defaults and descriptions.
- ``docs/protocol.md`` and ``docs/buffer.md`` list the fields, event types and settings the
  code has, and the documented recovery of a damaged buffer works.
- Every ``blankspot`` subcommand's help has an ``Example:``.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
from dataclasses import replace
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from paho.mqtt.enums import CallbackAPIVersion
from referencing import Registry, Resource

from agent.shared import reading as reading_module
from agent.unit.buffer import SEQ_BLOCK, ReadingBuffer, read_readings, sqlite_files
from agent.commands.main import build_parser, main
from agent.unit.config import Config, DeviceConfig, UplinkConfig, load_config
from agent.shared.protocol import DEFAULT_PREFIX, decode_batch, encode_batch, encode_status
from agent.shared.reading import (
    PART_TYPES, SIGNAL_FIELDS_1, Position, Reading, ReadingError, Signal, reading_from_dict, reading_from_json,
)
from agent.commands.unit import make_service
from agent.unit.config_schema import SettingError, Spec, build, walk
from agent.unit.devices.gps.fix import Fix
from agent.unit.gps_feed import date_corrected_event
from agent.shared.clock import Timestamp
from agent.shared.quantities import format_duration, format_size
from agent.shared.polling import wait_until as wait_for
from tests.support.readings_factory import ALL_KINDS, T0, latency_reading, signal_reading
from tests.support.unit_config import write_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DOC = ROOT / "docs" / "configuration.md"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
BUFFER_DOC = ROOT / "docs" / "buffer.md"
EXAMPLE_CONFIG = ROOT / "deploy" / "agent.example.toml"
SCHEMA_NAMES = ("reading", "reading-1", "batch", "status", "confirm")


# -- schemas ------------------------------------------------------------------------------

def load_schema(name: str) -> dict[str, Any]:
    """A schema as installed with the package (not read from the source tree)."""
    return json.loads((files("agent.schema") / f"{name}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def validators() -> dict[str, Draft202012Validator]:
    schemas = {name: load_schema(name) for name in SCHEMA_NAMES}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return {
        name: Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())
        for name, schema in schemas.items()
    }


def schema_errors(name: str, document: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validators()[name].iter_errors(document)]


def strict_json(text: str | bytes) -> Any:
    """Parse as any standard JSON parser would: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_schema_files_are_valid_draft_2020_12_and_installed() -> None:
    """The schemas load through importlib.resources from agent.schema, as an installed package has them."""
    for name in SCHEMA_NAMES:
        schema = load_schema(name)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"{name}.schema.json"
    assert validators()["batch"].schema["properties"]["readings"]["items"] == \
        {"oneOf": [{"$ref": "reading.schema.json"}, {"$ref": "reading-1.schema.json"}]}


# Where the reading schemas differ: what reading_from_dict checks of /2's codes beyond "a string".
CODES = {"mcc": {"type": ["string", "null"], "pattern": "^[0-9]{3}$"},
         "mnc": {"type": ["string", "null"], "pattern": "^[0-9]{2,3}$"}}


@pytest.mark.parametrize("name, version, signal_fields", [
    ("reading", reading_module.SCHEMA, Signal.FIELDS), ("reading-1", reading_module.SCHEMA_1, SIGNAL_FIELDS_1),
])
def test_reading_schema_mirrors_the_reading_module(name: str, version: str, signal_fields) -> None:
    """Field names, required fields, enums, limits and patterns are the ones agent/shared/reading.py checks,
    for the schema units write (/2) and the one collectors still read (/1)."""
    schema = load_schema(name)
    defs = schema["$defs"]
    assert schema["properties"]["schema"] == {"const": version}
    assert version.rsplit("/", 1)[1] in schema["title"]
    assert schema["properties"]["kind"]["enum"] == list(reading_module.KINDS) == list(PART_TYPES)
    assert schema["properties"]["time_source"]["enum"] == list(reading_module.TIME_SOURCES)
    assert defs["device"]["pattern"] == f"^{reading_module.DEVICE_RE.pattern}$"  # the code uses fullmatch
    assert defs["text"]["maxLength"] == defs["text_or_null"]["maxLength"] == reading_module.MAX_STRING
    assert set(schema["properties"]) == {"schema", "device", "seq", "time", "time_source", "kind", "position", *PART_TYPES}
    assert schema["additionalProperties"] is False
    for name, cls in {"position": Position, **PART_TYPES}.items():
        part = defs[name]
        fields = signal_fields if name == "signal" else cls.FIELDS
        names = [field for field, _ in fields]
        assert list(part["properties"]) == names, name
        assert part["additionalProperties"] is False, name
        optional = {"error"} if name in ("latency", "throughput") else set()
        assert set(part["required"]) == set(names) - optional, f"{name}: the agent always writes every field"
        for field, kind in fields:
            prop = part["properties"][field]
            if isinstance(kind, tuple):
                assert prop["enum"] == list(kind), f"{name}.{field}"
            elif name == "signal" and field in CODES and version == reading_module.SCHEMA:
                assert {k: v for k, v in prop.items() if k != "description"} == CODES[field]
            else:
                expected = {"int": "integer", "num": "number", "str": "text", "obj": None}[kind.rstrip("!")]
                if expected is None:
                    assert prop["type"] == "object"
                    continue
                suffix = "" if kind.endswith("!") else "_or_null"
                assert prop["$ref"] == f"#/$defs/{expected}{suffix}", f"{name}.{field}"


def stored(buffer: ReadingBuffer, readings: list[Reading]) -> list[dict[str, Any]]:
    """Append through the buffer (which assigns seq) and return the JSON bodies it will send."""
    buffer.append_many(readings)
    bodies: list[dict[str, Any]] = []
    while (batch := buffer.take(1000)) is not None:
        bodies.extend(strict_json(body) for body in batch.bodies)
        buffer.ack(batch)
    return bodies


def modem_error_reading() -> Reading:
    return Reading("unit-1", T0, "ntp", Signal(error="no answer to AT+CESQ within 5s"), None)


def test_buffered_readings_of_every_kind_validate(tmp_path: Path) -> None:
    """Signal (with and without position, a blank spot, a modem error), latency, throughput and
    event readings, as the buffer stores and sends them, follow reading.schema.json."""
    made = [make() for make in ALL_KINDS] + [signal_reading(position=None), modem_error_reading()]
    with ReadingBuffer(tmp_path / "buffer.db", "unit-1") as buffer:
        bodies = stored(buffer, made)
    assert [b["seq"] for b in bodies] == list(range(1, len(made) + 1))
    for body in bodies:
        assert schema_errors("reading", body) == [], body
        assert reading_from_dict(body).to_dict() == body
    kinds = sorted({b["kind"] for b in bodies})
    print(f"readings validated: {len(bodies)}, kinds: {kinds}, without position: "
          f"{sum(b['position'] is None for b in bodies)}")
    assert kinds == sorted(PART_TYPES)


def overflow_and_corrupt_events(tmp_path: Path) -> list[dict[str, Any]]:
    """The event readings the buffer itself records: a full buffer, then a damaged file."""
    path = tmp_path / "small.db"
    with ReadingBuffer(path, "unit-1", max_bytes=150_000) as buffer:
        for _ in range(12):
            buffer.append_many([signal_reading()] * 200)
        events = [json.loads(r.body) for r in read_readings(path) if r.kind == "event"]
    path.write_bytes(b"not a database " * 500)
    with ReadingBuffer(path, "unit-1") as buffer:
        events += [json.loads(body) for body in buffer.take(10).bodies]
    for file in sqlite_files(path):
        file.unlink(missing_ok=True)
    with ReadingBuffer(path, "unit-1") as buffer:
        events += [json.loads(body) for body in buffer.take(10).bodies]
    return events


def test_buffer_event_readings_validate_and_are_documented(tmp_path: Path) -> None:
    """buffer_overflow and buffer_corrupt events follow the schema, and protocol.md lists each
    with every key of its data."""
    events = overflow_and_corrupt_events(tmp_path)
    types = {e["event"]["type"] for e in events}
    print(f"event readings: {len(events)}, types: {sorted(types)}")
    assert types == {"buffer_overflow", "buffer_corrupt", "buffer_replaced"}
    table = event_types_table()
    for event in events:
        assert schema_errors("reading", event) == [], event
        row = re.search(rf"^\| `{event['event']['type']}` \|.*$", table, re.M)
        assert row, f"protocol.md does not list event type {event['event']['type']}"
        for key in event["event"]["data"]:
            assert f"`{key}`" in row.group(0), f"protocol.md: {event['event']['type']} data key {key} undocumented"


def event_types_table() -> str:
    """The table that follows "Event types so far:" in protocol.md."""
    text = PROTOCOL_DOC.read_text()
    assert "Event types so far:" in text
    return text.split("Event types so far:", 1)[1].split("\n\n")[1]


def test_every_event_type_in_the_code_is_documented() -> None:
    """An event type recorded anywhere in agent/ (by the buffer's ``_record_event`` or as an
    ``Event`` part) appears in protocol.md's table of event types."""
    source = "\n".join(p.read_text() for p in (ROOT / "agent").rglob("*.py"))
    recorded = set(re.findall(r'(?:_record_event|\bEvent)\(\s*(?:type=)?"(\w+)"', source))
    documented = set(re.findall(r"^\| `(\w+)` \|", event_types_table(), re.M))
    print(f"event types recorded in agent/: {sorted(recorded)}")
    assert recorded and recorded <= documented


def test_the_gps_date_corrected_event_validates_and_is_documented(tmp_path: Path) -> None:
    """The event the GPS feed keeps for a receiver with the week-rollover bug, as the buffer
    stores it, follows the schema, and protocol.md lists every key of its data."""
    fix = Fix(datetime(2026, 12, 4, 3, 0, tzinfo=timezone.utc), -0.5, 117.1, None, None, None, None, None,
              "2d", received=10.0, date_corrected_weeks=1024)
    reading = Reading.taken("unit-1", Timestamp(fix.time, "gps", 10.0), date_corrected_event(fix),
                            Position(-0.5, 117.1, None, None, None, None, None, "2d"))
    with ReadingBuffer(tmp_path / "buffer.db", "unit-1") as buffer:
        [document] = stored(buffer, [reading])
    assert schema_errors("reading", document) == [], document
    assert document["event"]["data"] == {"receiver_date": "2007-04-20", "corrected_date": "2026-12-04", "weeks": 1024}
    row = re.search(r"^\| `gps_date_corrected` \|.*$", event_types_table(), re.M)
    assert row, "protocol.md does not list event type gps_date_corrected"
    for key in document["event"]["data"]:
        assert f"`{key}`" in row.group(0), f"protocol.md: gps_date_corrected data key {key} undocumented"


def test_batches_validate(tmp_path: Path) -> None:
    """encode_batch over leased buffer batches gives payloads that follow batch.schema.json."""
    with ReadingBuffer(tmp_path / "buffer.db", "boat-07") as buffer:
        buffer.append_many([replace(make(), device="boat-07") for make in ALL_KINDS] * 9)
        batches = 0
        while (batch := buffer.take(7)) is not None:
            payload = encode_batch("boat-07", batch.bodies)
            document = strict_json(payload)
            assert schema_errors("batch", document) == []
            assert [r.seq for r in decode_batch(payload, "boat-07")] == list(batch.seqs)
            buffer.ack(batch)
            batches += 1
    print(f"batches validated: {batches}")
    assert batches == 7
    assert schema_errors("batch", {"schema": "blankspot.batch/1", "device": "boat-07", "readings": []})
    assert schema_errors("batch", {"schema": "blankspot.batch/1", "device": "boat/07", "readings": [document["readings"][0]]})


def test_status_payloads_validate(tmp_path: Path) -> None:
    """The status the uplink builds (before the first reading, after signal and other readings,
    online and offline) and the last will follow status.schema.json."""
    config = load_config(write_config(tmp_path / "agent.toml", 1, tmp_path / "buffer.db", device="boat-07"))
    service = make_service(config)
    assert service.uplink is not None
    payloads = [service.uplink._status_payload("online")]
    service.store(service.probes.tick())  # the first tick takes a reading at once
    payloads += [service.uplink._status_payload("online"), service.uplink._status_payload("offline")]
    # The only source today makes signal readings; a latency reading last means "signal": null.
    service.last = service.buffer.append(replace(latency_reading(), device="boat-07"))
    payloads.append(service.uplink._status_payload("online"))
    payloads.append(encode_status("boat-07", "offline", reason="connection lost"))
    service.buffer.close()
    documents = [strict_json(p) for p in payloads]
    for document in documents:
        assert schema_errors("status", document) == [], document
    assert "position" not in documents[0] and documents[1]["signal"]["rat"] in reading_module.RATS
    assert documents[-2]["signal"] is None
    future = {**documents[1], "battery_v": 12.6, "backlog": {**documents[1]["backlog"], "bytes": 1}}
    assert schema_errors("status", future) == [], "status is open to new fields"
    assert schema_errors("status", {**documents[1], "state": "sleeping"})
    print(f"status payloads validated: {len(documents)}")


def test_confirmations_the_collector_publishes_validate(tmp_path: Path) -> None:
    """The confirmation a commit produces (a hole, a settled range, upto and top) follows
    confirm.schema.json, and the decoder reads back what the schema accepts."""
    from agent.centre.store import open_store
    from agent.centre.store.base import Work
    from agent.shared.protocol import decode_confirmation, encode_confirmation

    with open_store(str(tmp_path / "c.db")) as store:
        readings = [replace(signal_reading("boat-07"), seq=seq) for seq in (1, 2, 3, 7, 8, 12)]
        result = store.commit(Work(readings=readings))
    confirmation, = [change.confirmation for change in result.changes]
    payload = encode_confirmation(confirmation)
    document = strict_json(payload)
    assert schema_errors("confirm", document) == [], document
    assert document["upto"] == 3 and document["top"] == 12 and document["holes"] == [[4, 6], [9, 11]]
    assert decode_confirmation(payload, "boat-07") == confirmation
    assert schema_errors("confirm", {**document, "holes": [[4, 6, 9]]})
    assert schema_errors("confirm", {**document, "rev": 0})


# -- what a subscriber really receives ------------------------------------------------------

class LineReader:
    """Collects a child process's stdout lines (bytes) in a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                self.lines.append(line.rstrip(b"\n"))

    def snapshot(self) -> list[bytes]:
        with self._lock:
            return list(self.lines)




def test_feed_read_with_mosquitto_sub(broker, tmp_path: Path) -> None:
    """`mosquitto_sub -v` as protocol.md shows it: one message per line, topic then JSON.

    A real agent process publishes; everything it sends, then the broker's last will after
    `kill -9`, follows the schemas. On a fresh connection the status comes first, then the
    readings oldest first."""
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        pytest.fail("mosquitto_sub is not installed (apt-get install mosquitto-clients; the test command installs it)")
    device = "contract-1"
    topics = [f"{DEFAULT_PREFIX}/+/readings", f"{DEFAULT_PREFIX}/+/status"]
    sub = subprocess.Popen([exe, "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-v",
                            "-t", topics[0], "-t", topics[1]], stdout=subprocess.PIPE)
    reader = LineReader(sub)
    agent = None
    try:
        probe = mqtt.Client(CallbackAPIVersion.VERSION2)
        probe.connect("127.0.0.1", broker.port)
        probe.loop_start()
        probe_topic = f"{DEFAULT_PREFIX}/probe/status"

        def subscribed() -> bool:
            probe.publish(probe_topic, b"{}", qos=1)
            return any(line.startswith(probe_topic.encode()) for line in reader.snapshot())
        assert wait_for(subscribed, 10), "mosquitto_sub did not subscribe"
        probe.loop_stop()
        probe.disconnect()

        config = write_config(tmp_path / "agent.toml", broker.port, tmp_path / "buffer.db", device=device,
                              overrides={"uplink": {"batch_size": 10, "status_interval": "1s"}})
        with open(tmp_path / "agent.log", "wb") as log:
            agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                                     stderr=log, cwd=ROOT)
        mine = f"{DEFAULT_PREFIX}/{device}/".encode()

        def count(what: bytes) -> int:
            return sum(line.startswith(mine + what) for line in reader.snapshot())
        assert wait_for(lambda: count(b"readings ") >= 8 and count(b"status ") >= 2, 30), \
            (tmp_path / "agent.log").read_text()[-2000:]
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert wait_for(lambda: any(b'"connection lost"' in line for line in reader.snapshot()), 15), \
            "no last will after kill -9"
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait(10)
        sub.terminate()
        sub.wait(10)

    messages = []
    for line in reader.snapshot():
        topic, _, payload = line.partition(b" ")
        if topic.startswith(mine):
            messages.append((topic.decode().rsplit("/", 1)[1], strict_json(payload), payload))
    seqs: list[int] = []
    for what, document, payload in messages:
        schema = "batch" if what == "readings" else "status"
        assert schema_errors(schema, document) == [], document
        if what == "readings":
            seqs += [r.seq for r in decode_batch(payload, device)]
    batches = sum(what == "readings" for what, _, _ in messages)
    statuses = [document for what, document, _ in messages if what == "status"]
    print(f"lines from mosquitto_sub: {len(reader.snapshot())}, batches {batches}, readings {len(seqs)} "
          f"(seq {seqs[0]}-{seqs[-1]}), status messages {len(statuses)}, last will {statuses[-1]}")
    assert messages[0][0] == "status" and messages[0][1]["state"] == "online", "status first on connect"
    assert seqs == list(range(1, len(seqs) + 1)), "one connection: oldest first, no gap, no duplicate"
    assert statuses[-1] == {"schema": "blankspot.status/1", "device": device, "state": "offline",
                            "reason": "connection lost"}
    assert any("since" in s and s["backlog"]["last_seq"] >= 1 for s in statuses[:-1])


# -- invalid readings: both validators refuse them -----------------------------------------

def base_body(tmp_path: Path) -> dict[str, Any]:
    with ReadingBuffer(tmp_path / "buffer.db", "unit-1") as buffer:
        return stored(buffer, [signal_reading()])[0]


def _set(path: str, value: Any) -> Callable[[dict], None]:
    *parents, last = path.split(".")

    def mutate(body: dict) -> None:
        for name in parents:
            body = body[name]
        body[last] = value
    return mutate


def _drop(path: str) -> Callable[[dict], None]:
    *parents, last = path.split(".")

    def mutate(body: dict) -> None:
        for name in parents:
            body = body[name]
        del body[last]
    return mutate


# A mutation changes the body in place, or returns a replacement for it.
INVALID: list[tuple[str, Callable[[dict], Any]]] = [
    ("missing seq", _drop("seq")),
    ("seq 0", _set("seq", 0)),
    ("seq negative", _set("seq", -3)),
    ("seq as string", _set("seq", "7")),
    ("seq true", _set("seq", True)),
    ("seq 2**63", _set("seq", 2**63)),
    ("time without ms", _set("time", "2026-11-24T03:04:05Z")),
    ("time with space", _set("time", "2026-11-24 03:04:05.678Z")),
    ("time with offset", _set("time", "2026-11-24T11:04:05.678+08:00")),
    ("time as number", _set("time", 1795489445.678)),
    ("time_source gsm", _set("time_source", "gsm")),
    ("schema version 3", _set("schema", "blankspot.reading/3")),
    ("schema version 1 with mcc as digits", lambda body: {**body, "schema": "blankspot.reading/1"}),
    ("mcc as integer", _set("signal.mcc", 510)),
    ("mcc of two digits", _set("signal.mcc", "51")),
    ("mcc of four digits", _set("signal.mcc", "5100")),
    ("mcc with a letter", _set("signal.mcc", "51O")),
    ("mnc of one digit", _set("signal.mnc", "1")),
    ("mnc of four digits", _set("signal.mnc", "0010")),
    ("mnc as integer", _set("signal.mnc", 10)),
    ("mcc without mnc", _set("signal.mnc", None)),
    ("mnc without mcc", _set("signal.mcc", None)),
    ("registration of no schema", _set("signal.registration", "emergency")),
    ("unknown kind", _set("kind", "weather")),
    ("missing kind", _drop("kind")),
    ("extra field", _set("extra", 1)),
    ("extra signal field", _set("signal.bogus", 1)),
    ("extra position field", _set("position.geoid_m", 1.0)),
    ("device with /", _set("device", "unit/1")),
    ("device +", _set("device", "+")),
    ("device #", _set("device", "#")),
    ("device empty", _set("device", "")),
    ("device starts with -", _set("device", "-unit")),
    ("device of 65 characters", _set("device", "u" * 65)),
    ("lat 91", _set("position.lat", 91)),
    ("lon -181", _set("position.lon", -181.0)),
    ("lat null", _set("position.lat", None)),
    ("lat as string", _set("position.lat", "-0.5")),
    ("fix 4d", _set("position.fix", "4d")),
    ("position as list", _set("position", [-0.5, 117.1])),
    ("rsrp as string", _set("signal.rsrp_dbm", "-99")),
    ("cell_id true", _set("signal.cell_id", True)),
    ("csq fraction", _set("signal.csq", 3.5)),
    ("rat LTE-A", _set("signal.rat", "LTE-A")),
    ("quality great", _set("signal.quality", "great")),
    ("operator too long", _set("signal.operator", "x" * 257)),
    ("error as number", _set("signal.error", 5)),
    ("part missing", _drop("signal")),
    ("part as string", _set("signal", "LTE")),
    ("another part too", _set("latency", replace(latency_reading(), seq=1).to_dict()["latency"])),
    ("integer beyond 2**53", _set("signal.cell_id", 2**53 + 1)),
    ("reading is a list", lambda body: [body]),
]

RAW_INVALID: list[tuple[str, Callable[[str], str]]] = [
    ("NaN", lambda text: text.replace('"rsrp_dbm":-99.0', '"rsrp_dbm":NaN')),
    ("Infinity", lambda text: text.replace('"rsrp_dbm":-99.0', '"rsrp_dbm":-Infinity')),
    ("1e999", lambda text: text.replace('"rsrp_dbm":-99.0', '"rsrp_dbm":-1e999')),
]

# Values that look like modem sentinels are still numbers of the right type: the schema and
# the decoder cannot tell them from measurements, and must not refuse them.
VALID: list[tuple[str, Callable[[dict], None]]] = [
    ("csq 99", _set("signal.csq", 99)),
    ("rscp 255", _set("signal.rscp_dbm", 255)),
    ("integral rsrp", _set("signal.rsrp_dbm", -99)),
    ("no position", _set("position", None)),
    ("modem error", _set("signal.error", "timeout")),
    ("lat 90 lon -180", lambda b: b["position"].update(lat=90, lon=-180)),
    ("seq 2**63-1", _set("seq", 2**63 - 1)),
    ("device of 64 characters", _set("device", "u" * 64)),
    ("operator of 256 characters", _set("signal.operator", "é" * 256)),
    ("integer 2**53", _set("signal.cell_id", 2**53)),
    ("mnc of three digits", _set("signal.mnc", "010")),
    ("no network codes", lambda b: b["signal"].update(mcc=None, mnc=None)),
    ("test network 001-01", lambda b: b["signal"].update(mcc="001", mnc="01")),
    *((f"registration {word}", _set("signal.registration", word))
      for word in reading_module.REGISTRATIONS if word not in reading_module.REGISTRATIONS_1),
]


def reading_1_body(tmp_path: Path) -> dict[str, Any]:
    """A signal reading as a unit stored it before blankspot.reading/2."""
    body = base_body(tmp_path)
    body["schema"] = "blankspot.reading/1"
    body["signal"].update(mcc=510, mnc=1)
    return body


def test_a_reading_of_schema_1_follows_its_own_schema_and_is_read(tmp_path: Path) -> None:
    """What units stored before the upgrade: reading-1.schema.json describes it, batches and
    statuses may carry it, and reading_from_dict reads it with its codes as digits."""
    body = reading_1_body(tmp_path)
    assert schema_errors("reading-1", body) == []
    assert schema_errors("reading", body), "reading.schema.json is /2 only"
    assert schema_errors("reading-1", base_body(tmp_path)), "and reading-1.schema.json is /1 only"
    assert schema_errors("batch", {"schema": "blankspot.batch/1", "device": "unit-1",
                                   "readings": [body, base_body(tmp_path)]}) == [], "/1 and /2 side by side"
    status = {"schema": "blankspot.status/1", "device": "unit-1", "state": "online"}
    assert schema_errors("status", {**status, "signal": body["signal"]}) == []
    assert schema_errors("status", {**status, "signal": base_body(tmp_path)["signal"]}) == []
    assert schema_errors("status", {**status, "signal": {**body["signal"], "mcc": "510"}})
    reading = reading_from_dict(body)
    assert (reading.part.mcc, reading.part.mnc) == ("510", "01")


INVALID_1: list[tuple[str, Callable[[dict], Any]]] = [
    ("mcc as digits", _set("signal.mcc", "510")),
    ("mnc as a fraction", _set("signal.mnc", 1.5)),
    ("a registration word of /2", _set("signal.registration", "sms_only_home")),
    ("extra signal field", _set("signal.plmn", "51001")),
]


@pytest.mark.parametrize("name,mutate", INVALID_1, ids=[name for name, _ in INVALID_1])
def test_invalid_readings_of_schema_1_are_rejected_by_decoder_and_its_schema(name: str, mutate,
                                                                            tmp_path: Path) -> None:
    body = reading_1_body(tmp_path)
    mutate(body)
    with pytest.raises(ReadingError):
        reading_from_dict(body)
    assert schema_errors("reading-1", body), f"reading-1.schema.json accepts what reading_from_dict rejects: {name}"


@pytest.mark.parametrize("name,mutate", INVALID, ids=[name for name, _ in INVALID])
def test_invalid_readings_are_rejected_by_decoder_and_schema(name: str, mutate, tmp_path: Path) -> None:
    """What reading_from_dict refuses, reading.schema.json refuses too."""
    body: Any = base_body(tmp_path)
    body = mutate(body) or body
    with pytest.raises(ReadingError) as info:
        reading_from_dict(body)
    errors = schema_errors("reading", body)
    print(f"{name}: decoder says {info.value}; schema says {errors[:1]}")
    assert errors, f"schema accepts what reading_from_dict rejects: {name}"


@pytest.mark.parametrize("name,edit", RAW_INVALID, ids=[name for name, _ in RAW_INVALID])
def test_non_finite_numbers_are_rejected(name: str, edit, tmp_path: Path) -> None:
    """NaN and infinities never pass: not JSON at all, or beyond the schema's number range."""
    text = edit(json.dumps(base_body(tmp_path), separators=(",", ":")))
    assert text.count("rsrp_dbm") == 1 and "-99.0" not in text
    with pytest.raises(ReadingError):
        reading_from_json(text)
    try:
        document = strict_json(text)
    except ValueError as exc:
        print(f"{name}: not JSON ({exc})")
        return
    errors = schema_errors("reading", document)
    print(f"{name}: schema says {errors[:1]}")
    assert errors


@pytest.mark.parametrize("name,mutate", VALID, ids=[name for name, _ in VALID])
def test_odd_but_valid_readings_are_accepted_by_both(name: str, mutate, tmp_path: Path) -> None:
    """Limits and sentinel-looking numbers of the right type pass both: the schema is not stricter."""
    body = base_body(tmp_path)
    mutate(body)
    reading_from_dict(body)
    assert schema_errors("reading", body) == []


# -- configuration docs and example ------------------------------------------------------------

def config_keys() -> dict[str, tuple[Spec, Any]]:
    return {key: (spec, default) for key, spec, default in walk(Config) if spec.kind != "section"}


def config_sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


def toml_default(spec: Spec, default: Any) -> str:
    """A default as written in the config file."""
    if default is None:
        return '""'
    if spec.kind == "bool":
        return "true" if default else "false"
    if spec.kind == "int":
        return str(default)
    if spec.kind == "float":
        return repr(float(default))
    if spec.kind == "duration":
        return f'"{format_duration(default)}"'
    if spec.kind == "size":
        return f'"{format_size(default)}"'
    if spec.kind == "strings":
        return "[" + ", ".join(f'"{item}"' for item in default) + "]"
    return f'"{default}"'


def config_doc_problems(text: str) -> list[str]:
    """What configuration.md gets wrong: keys missing or unknown, a description or default not the code's."""
    problems = []
    headings = re.findall(r"^(#{2,3}) `([^`]+)`$", text, re.M)
    sections = {name[1:-1] for level, name in headings if level == "##"}
    documented = [name for level, name in headings if level == "###"]
    keys = config_keys()
    for name in sorted(set(config_sections()) ^ sections):
        problems.append(f"section [{name}] " + ("undocumented" if name not in sections else "does not exist"))
    for key in sorted(set(keys) ^ set(documented)):
        problems.append(f"{key} " + ("undocumented" if key in keys else "is documented but does not exist"))
    for key in documented:
        if key not in keys:
            continue
        spec, default = keys[key]
        block = re.search(rf"^### `{re.escape(key)}`$(.*?)(?=^#|\Z)", text, re.M | re.S).group(1)
        if spec.doc not in block:
            problems.append(f"{key}: description differs from agent/unit/config.py: {spec.doc!r}")
        if f"- Default: `{toml_default(spec, default)}`" not in block:
            problems.append(f"{key}: default is {toml_default(spec, default)}")
        example = re.search(r"^- Example: `(.+)`$", block, re.M)
        if "- Type: " not in block or not example:
            problems.append(f"{key}: type or example missing")
            continue
        section, name = key.split(".")
        try:
            table = tomllib.loads(example.group(1))
            assert list(table) == [name]
            build(config_sections()[section], table)
        except (tomllib.TOMLDecodeError, AssertionError, SettingError) as exc:
            problems.append(f"{key}: example {example.group(1)!r} is wrong: {exc}")
    return problems


def example_keys(text: str) -> dict[str, list[str | None]]:
    """Keys of the example file per section: `key = value` or `# key = value` lines (value None when active)."""
    found: dict[str, list[str | None]] = {}
    section = None
    for line in text.splitlines():
        header = re.match(r"^\[(\w+)\]\s*$", line)
        if header:
            section = header.group(1)
            continue
        entry = re.match(r"^(# )?([a-z_]+) = (.+)$", line)
        if entry and section is not None:
            key = f"{section}.{entry.group(2)}"
            found.setdefault(key, []).append(line[2:] if entry.group(1) else None)
    return found


def example_problems(text: str) -> list[str]:
    keys = config_keys()
    found = example_keys(text)
    problems = [f"{key} " + ("missing" if key in keys else "is in the example but does not exist")
                for key in sorted(set(keys) ^ set(found))]
    sections = config_sections()
    for key, commented in found.items():
        for line in filter(None, commented if key in keys else []):
            section, name = key.split(".")
            try:
                build(sections[section], tomllib.loads(line))
            except (tomllib.TOMLDecodeError, SettingError) as exc:
                problems.append(f"commented example '{line}': {exc}")
    return problems


def test_configuration_doc_describes_every_key() -> None:
    """Every key of agent/unit/config.py, with its description and default, and no other key."""
    text = CONFIG_DOC.read_text()
    problems = config_doc_problems(text)
    print(f"keys documented: {len(config_keys())}, problems: {problems}")
    assert problems == []
    for phrase in ("blankspot run", "--check", "status 2", '"30s"', '"50MB"', "KiB"):
        assert phrase in text


def test_configuration_doc_check_catches_missing_and_unknown_keys() -> None:
    """The check above is not vacuous: a documented key that does not exist, or a key left out, fails."""
    text = CONFIG_DOC.read_text()
    extra = text + "\n### `uplink.hots`\n\nA typo.\n\n- Type: string\n- Default: `\"\"`\n- Example: `hots = \"x\"`\n"
    assert config_doc_problems(extra) == ["uplink.hots is documented but does not exist"]
    without = re.sub(r"^### `uplink.keepalive`$.*?(?=^### )", "", text, flags=re.M | re.S)
    assert config_doc_problems(without) == ["uplink.keepalive undocumented"]
    wrong_default = text.replace('- Default: `"blankspot/v1"`', '- Default: `"blankspot"`')
    assert config_doc_problems(wrong_default) == ['uplink.topic_prefix: default is "blankspot/v1"']


def test_example_config_lists_every_key_in_its_section() -> None:
    """Each key appears as `key =` or `# key =` under its [section], commented values are well
    typed, and a key that does not exist is caught."""
    text = EXAMPLE_CONFIG.read_text()
    problems = example_problems(text)
    found = example_keys(text)
    print(f"keys in the example: {len(found)}, commented alternatives: "
          f"{sum(v is not None for values in found.values() for v in values)}, problems: {problems}")
    assert problems == []
    assert example_problems(text + "\n[uplink]\n# hots = \"x\"\n") == ["uplink.hots is in the example but does not exist"]
    assert example_problems(text.replace("\nkeepalive = ", "\nkeep_alive = ")) == [
        "uplink.keep_alive is in the example but does not exist", "uplink.keepalive missing"]


def test_example_config_loads_with_the_defaults_once_the_unit_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The example names no unit, so `blankspot run --check` refuses it and points at device.id;
    with an id written in, it is valid and its values are the defaults it claims, but for the
    one choice it makes for field units: compact batches."""
    text = EXAMPLE_CONFIG.read_text()
    line = text.splitlines().index('id = ""') + 1
    assert main(["run", "--check", "--config", str(EXAMPLE_CONFIG)]) == 2
    assert capsys.readouterr().err.startswith(f"blankspot: config error: {EXAMPLE_CONFIG}:{line}: device.id: required")
    named = tmp_path / "agent.toml"
    named.write_text(text.replace('\nid = ""\n', '\nid = "boat-07"\n', 1))
    assert load_config(named) == Config(device=DeviceConfig("boat-07"), uplink=UplinkConfig(encoding="compact"))
    assert main(["run", "--check", "--config", str(named)]) == 0
    assert "ok (device boat-07)" in capsys.readouterr().out


# -- protocol and buffer docs ----------------------------------------------------------------

def test_protocol_doc_lists_every_reading_field() -> None:
    """Each part's table in protocol.md has exactly the fields agent/shared/reading.py has."""
    text = PROTOCOL_DOC.read_text()
    for name, cls in {"position": Position, **PART_TYPES}.items():
        block = re.search(rf"^### `{name}`$(.*?)(?=^##)", text, re.M | re.S)
        assert block, f"protocol.md has no section for {name}"
        rows = re.findall(r"^\| `(\w+)` \| (?:string|integer|number|object|`)", block.group(1), re.M)
        assert rows == [field for field, _ in cls.FIELDS], name
    for name in SCHEMA_NAMES:
        assert f"agent/schema/{name}.schema.json" in text
    for phrase in (DEFAULT_PREFIX, "mosquitto_sub -h", "-v -t 'blankspot/v1/+/readings'", "(device, seq)", "PUBACK",
                   '"reason": "connection lost"', "may appear", "not a blank spot"):
        assert phrase in text, phrase


def test_buffer_doc_states_the_settings_in_force(tmp_path: Path) -> None:
    """The pragmas and the seq reservation buffer.md describes are the ones a buffer has (the
    file's own settings, so asked of SQLite directly)."""
    text = BUFFER_DOC.read_text()
    with ReadingBuffer(tmp_path / "buffer.db", "unit-1") as buffer:
        buffer.append(signal_reading())
        pragmas = {name: buffer.conn.execute(f"PRAGMA {name}").fetchone()[0]
                   for name in ("journal_mode", "synchronous", "journal_size_limit")}
    reserved = int((tmp_path / "buffer.db.seq").read_text().split()[0])
    print(f"pragmas {pragmas}, reserved after one reading: {reserved}")
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "journal_size_limit": 8 * 1024 * 1024}
    assert "journal_mode=WAL" in text and "synchronous=FULL" in text
    assert f"journal_size_limit={pragmas['journal_size_limit']}" in text
    assert f"reservation {SEQ_BLOCK} further on" in text and reserved >= 1 + SEQ_BLOCK
    assert ".corrupt-" in text and "blankspot status" in text


def test_documented_recovery_reads_back_a_damaged_buffer(tmp_path: Path) -> None:
    """The shell commands in buffer.md recover the readings of a buffer kept aside as corrupt."""
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line tool is not installed (apt-get install sqlite3)")
    block = re.search(r"<!-- recovery-procedure -->\n```sh\n(.*?)```", BUFFER_DOC.read_text(), re.S)
    assert block, "buffer.md has no marked recovery procedure"
    path = tmp_path / "buffer.db"
    with ReadingBuffer(path, "unit-1") as buffer:
        originals = {r.seq: r.to_json() for r in buffer.append_many([signal_reading()] * 2000)}
    page_size = 4096
    pages = path.stat().st_size // page_size
    with open(path, "r+b") as handle:  # wreck one page in the middle of the readings
        handle.seek(page_size * (pages // 2))
        handle.write(b"\xff" * page_size)
    with ReadingBuffer(path, "unit-1") as buffer:
        assert buffer.take(1) is not None  # the buffer_corrupt event: a fresh buffer took over
    kept = [p for p in tmp_path.iterdir() if re.fullmatch(r"buffer\.db\.corrupt-\d{8}T\d{6}Z", p.name)]
    assert len(kept) == 1
    script = block.group(1).replace("buffer.db.corrupt-20261124T031500Z", kept[0].name) \
        .replace("blankspot readings", f"{sys.executable} -m agent readings")
    done = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    lines = (tmp_path / "recovered.jsonl").read_text().splitlines()
    recovered = [reading_from_json(line) for line in lines]
    print(f"readings in the damaged file: {len(originals)}, recovered: {len(recovered)}; "
          f"sqlite3 said: {done.stderr.strip()[:200]!r}")
    assert len(recovered) >= 0.9 * len(originals)
    for line, reading in zip(lines, recovered):
        assert originals[reading.seq] == line, "recovered byte for byte"
    assert schema_errors("reading", json.loads(lines[-1])) == []


# -- command help -----------------------------------------------------------------------------

def test_every_subcommand_help_has_an_example() -> None:
    """`blankspot COMMAND --help` shows an Example: for every command."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = sorted(subparsers.choices)
    print(f"subcommands: {names}")
    assert names
    for name, sub in subparsers.choices.items():
        assert "Example:" in sub.format_help(), f"'blankspot {name} --help' has no Example:"


def test_protocol_doc_examples_follow_the_schemas() -> None:
    """Every JSON example in protocol.md is valid: whole payloads against their schema, and
    `"signal": {...}` or `"event": {...}` fragments against that part of the reading schema."""
    checked = 0
    for block in re.findall(r"^```json\n(.*?)^```", PROTOCOL_DOC.read_text(), re.M | re.S):
        try:
            document = strict_json(block)
        except ValueError:
            fragment = strict_json("{" + block + "}")
            for part, value in fragment.items():
                validator = validators()["reading"].evolve(schema={"$ref": f"reading.schema.json#/$defs/{part}"})
                assert [e.message for e in validator.iter_errors(value)] == [], block
                checked += 1
            continue
        name = {"blankspot.batch/1": "batch", "blankspot.status/1": "status", "blankspot.reading/2": "reading",
                "blankspot.reading/1": "reading-1", "blankspot.confirm/1": "confirm"}[document["schema"]]
        assert schema_errors(name, document) == [], block
        checked += 1
    print(f"JSON examples in protocol.md checked: {checked}")
    assert checked >= 5


def test_the_documented_validation_accepts_a_batch_of_both_reading_schemas(tmp_path: Path) -> None:
    """The jsonschema snippet in protocol.md, run as written, on a batch a unit sends after an
    upgrade: a reading it stored as /1 beside a new one; and it refuses a broken one."""
    code = re.search(r"^## Validating payloads$.*?```python\n(.*?)```", PROTOCOL_DOC.read_text(), re.M | re.S).group(1)
    bodies = [json.dumps(reading_1_body(tmp_path)), json.dumps(base_body(tmp_path))]
    exec(compile(code, "docs/protocol.md", "exec"), {"payload": encode_batch("unit-1", bodies)})
    broken = json.loads(bodies[1])
    broken["signal"]["mnc"] = "1"
    with pytest.raises(Exception, match="is not valid under any of the given schemas"):
        exec(compile(code, "docs/protocol.md", "exec"), {"payload": encode_batch("unit-1", [json.dumps(broken)])})
