"""Compact batches from a unit to the centre's database, and `blankspot tail`.

A unit set to `encoding = "compact"` says so in each PUBLISH's content type (MQTT 5) or in
the payload's first byte (3.1.1); a real collector stores every reading once either way;
`blankspot tail` prints what any unit sends as JSON lines.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.shared.batch_columns import VERSION
from agent.shared.protocol import CONTENT_TYPES, encode_batch
from agent.shared.reading import reading_from_dict
from agent.sim.broker import LocalBroker
from agent.centre.coverage import Thresholds
from agent.centre.store import open_store
from agent.unit.buffer import ReadingBuffer
from agent.unit.stored_body import pack_body
from agent.unit.config import load_config
from agent.unit.uplink import MqttUplink
from tests.support.collector import CollectorProcess, collectors, stored_keys, wait_counts  # noqa: F401  (fixture)
from tests.support.readings_factory import latency_reading, signal_reading
from tests.support.unit_config import write_config

ROOT = Path(__file__).resolve().parent.parent


class ContentTypes:
    """An MQTT 5 subscriber noting each batch's content type and first byte."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str | None, int]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="content-types",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe("blankspot/v1/+/readings", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, m: self.seen.append(
            (getattr(m.properties, "ContentType", None), m.payload[0]))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def unit(tmp_path: Path, port: int, protocol: str, encoding: str = "compact", device: str = "boat-1"):
    config = load_config(write_config(tmp_path / f"{device}.toml", port, tmp_path / f"{device}.db", {
        "uplink": {"protocol": protocol, "encoding": encoding, "batch_size": 25}}, device=device))
    buffer = ReadingBuffer(config.buffer.path, config.device_id)
    return buffer, MqttUplink(config.uplink, config.device_id, buffer, client_id=config.client_id)


@pytest.mark.parametrize("protocol, content_type", [("5", CONTENT_TYPES["compact"]), ("3.1.1", None)])
def test_compact_batches_are_stored_once_whatever_the_protocol(tmp_path: Path, broker: LocalBroker, collectors,
                                                               protocol: str, content_type) -> None:
    db = f"sqlite:///{tmp_path / 'centre.db'}"
    collectors.append(CollectorProcess(tmp_path, broker.port, db, "collector-1", "--confirm-interval", "1s").start())
    watcher = ContentTypes(broker.port)
    buffer, uplink = unit(tmp_path, broker.port, protocol)
    buffer.append_many([signal_reading("boat-1"), latency_reading("boat-1")] * 50)
    uplink.start()
    try:
        wait_counts(db, lambda c: c["readings_inserted"] >= 100, 30, "100 readings stored", *collectors)
        assert uplink.wait_until(lambda: buffer.stats().unconfirmed == 0, 20), "the centre confirms them"
    finally:
        uplink.stop()
        watcher.close()
    assert stored_keys(db) == [("boat-1", seq) for seq in range(1, 101)]
    assert watcher.seen and set(watcher.seen) == {(content_type, VERSION)}
    assert uplink.stats.bytes_sent < 100 * 60, "a few dozen bytes a reading, not 580"
    buffer.close()


@pytest.mark.parametrize("encoding", ["compact", "json"])
def test_readings_stored_before_an_upgrade_reach_the_centre_beside_new_ones(tmp_path: Path, broker: LocalBroker,
                                                                            collectors, encoding: str) -> None:
    """A unit upgraded with readings of blankspot.reading/1 in its buffer sends them with its
    new ones, in either encoding; the collector stores all of them, quarantines none, and a
    /1 and a /2 reading of one network count for the same operator."""
    db = f"sqlite:///{tmp_path / 'centre.db'}"
    collectors.append(CollectorProcess(tmp_path, broker.port, db, "collector-1", "--confirm-interval", "1s").start())
    buffer, uplink = unit(tmp_path, broker.port, "5", encoding)
    indosat = dataclasses.replace(signal_reading("boat-1").part, operator=None, mcc="510", mnc="01")
    stored = buffer.append_many([dataclasses.replace(signal_reading("boat-1"), part=indosat)] * 30)
    with sqlite3.connect(buffer.path) as conn:  # the first 20 as the earlier version wrote them
        for reading in stored[:20]:
            earlier = reading.to_dict()
            earlier["schema"] = "blankspot.reading/1"
            earlier["signal"].update(mcc=510, mnc=1)
            conn.execute("UPDATE readings SET body = ? WHERE seq = ?", (pack_body(json.dumps(earlier)), reading.seq))
    conn.close()
    uplink.start()
    try:
        done = wait_counts(db, lambda c: c["readings_inserted"] >= 30, 30, "30 readings stored", *collectors)
        assert uplink.wait_until(lambda: buffer.stats().unconfirmed == 0, 20), "the centre confirms them"
    finally:
        uplink.stop()
        buffer.close()
    assert done["quarantined"] == 0 and done["readings_refused"] == 0
    with open_store(db) as store:
        assert [r.part for r in store.iter_readings()] == [indosat] * 30
        assert {cell.operator for cell in store.coverage(8, Thresholds()).cells} == {"510-01"}


def blankspot(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], input=stdin, capture_output=True, cwd=ROOT,
                          timeout=timeout)


def test_tail_prints_every_reading_of_either_encoding_as_json_lines(tmp_path: Path, broker: LocalBroker) -> None:
    tail = subprocess.Popen([sys.executable, "-m", "agent", "tail", "--broker", f"mqtt://127.0.0.1:{broker.port}",
                             "--count", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        said = tail.stderr.readline().decode()
        assert said.startswith("blankspot tail: reading blankspot/v1/+/readings from mqtt://127.0.0.1:"), said
        sent = []
        for device, encoding in (("boat-1", "compact"), ("boat-2", "json")):
            buffer, uplink = unit(tmp_path, broker.port, "5", encoding, device)
            sent += buffer.append_many([signal_reading(device), latency_reading(device)])
            uplink.start()
            uplink.wait_until(lambda: uplink.stats.batches_acked >= 1, 10)
            uplink.stop()
            buffer.close()
        out, err = tail.communicate(timeout=20)
    finally:
        tail.kill()
    assert tail.returncode == 0, err.decode()
    printed = [reading_from_dict(json.loads(line)) for line in out.decode().splitlines()]
    assert printed == sent


def test_tail_decodes_a_saved_payload(tmp_path: Path) -> None:
    readings = [r.__class__(**{**r.__dict__, "seq": seq}) for seq, r in enumerate(
        [signal_reading("boat-3"), latency_reading("boat-3")], start=11)]
    saved = tmp_path / "batch.bin"
    saved.write_bytes(encode_batch("boat-3", [r.at_precision().to_json() for r in readings], "compact"))
    done = blankspot("tail", "--file", str(saved))
    assert done.returncode == 0, done.stderr
    assert [reading_from_dict(json.loads(line)) for line in done.stdout.decode().splitlines()] == \
        [r.at_precision() for r in readings]
    from_stdin = blankspot("tail", "--file", "-", stdin=saved.read_bytes())
    assert from_stdin.stdout == done.stdout


def test_tail_says_in_one_line_what_is_wrong_with_a_saved_payload(tmp_path: Path) -> None:
    saved = tmp_path / "batch.bin"
    saved.write_bytes(b"\x01not zlib")
    done = blankspot("tail", "--file", str(saved))
    assert done.returncode == 2 and done.stdout == b""
    message = done.stderr.decode()
    assert message.count("\n") == 1 and "Traceback" not in message
    assert f"{saved}: not a batch: compact batch: not a zlib stream after the version byte" in message
    missing = blankspot("tail", "--file", str(tmp_path / "nothing.bin"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr.decode()
