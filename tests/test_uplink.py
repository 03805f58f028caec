"""MqttUplink against a real Mosquitto: status first, retained, last will, credentials, 3.1.1."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.unit.buffer import ReadingBuffer
from agent.unit.config import load_config, read_password
from agent.sim.broker import LocalBroker
from agent.sim.link import LinkProxy
from agent.shared.backoff import Backoff
from agent.unit.uplink import MqttUplink
from tests.support.broker import password_broker  # noqa: F401  (fixture)
from tests.support.mqtt_sink import ReadingSink
from tests.support.readings_factory import signal_reading
from tests.support.unit_config import write_config


def make_uplink(tmp_path: Path, port: int, overrides: dict | None = None, device: str = "unit-1"):
    config = load_config(write_config(tmp_path / "agent.toml", port, tmp_path / "buffer.db", overrides, device=device))
    buffer = ReadingBuffer(config.buffer.path, config.device_id)
    uplink = MqttUplink(config.uplink, config.device_id, buffer, client_id=config.client_id,
                        password=read_password(config.uplink))
    return config, buffer, uplink


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(7))
    waits = [backoff.next_delay() for _ in range(10)]
    for n, wait in enumerate(waits):
        ceiling = min(60.0, 2**n)
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(w, 6) for w in waits[-4:]}) == 4, "jitter: a fleet does not reconnect in lock-step"
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_status_comes_first_then_the_backlog_oldest_first(tmp_path: Path, broker: LocalBroker, sink: ReadingSink) -> None:
    order: list[str] = []
    sink.client.on_message = (lambda orig: lambda c, u, m: (order.append(m.topic.rsplit("/", 1)[1]), orig(c, u, m)))(
        sink.client.on_message)
    config, buffer, uplink = make_uplink(tmp_path, broker.port, {"uplink": {"batch_size": 10}})
    buffer.append_many([signal_reading()] * 35)
    uplink.start()
    try:
        assert sink.wait_for_seqs("unit-1", set(range(1, 36)), 10)
    finally:
        uplink.stop()
    assert order[0] == "status", "the centre sees the unit alive before the backlog drains"
    assert sink.seqs("unit-1") == list(range(1, 36)), "oldest first, in order"
    online = sink.statuses[0]
    assert online["state"] == "online" and online["backlog"]["pending"] == 35
    # The broker acknowledged the goodbye before the agent stopped; it reaches the subscriber a moment later.
    assert sink.wait_for(lambda: sink.statuses[-1]["state"] == "offline", 5), "a clean stop says offline"
    assert buffer.pending_count() == 0
    buffer.close()


def test_last_will_says_offline_when_the_link_dies(tmp_path: Path, broker: LocalBroker, sink: ReadingSink) -> None:
    link = LinkProxy(broker.port).start()
    config, buffer, uplink = make_uplink(tmp_path, link.port, {"uplink": {"keepalive": "2s"}})
    uplink.start()
    try:
        assert sink.wait_for(lambda: any(s["state"] == "online" for s in sink.statuses), 10)
        link.set_up(False)  # the boat enters a blank spot: the broker notices the silence
        assert sink.wait_for(lambda: sink.statuses[-1]["state"] == "offline", 10)
        assert sink.statuses[-1].get("reason") == "connection lost"
        link.set_up(True)
        assert sink.wait_for(lambda: sink.statuses[-1]["state"] == "online", 10), "back online on reconnect"
    finally:
        uplink.stop()
        link.close()
        buffer.close()


def test_status_is_retained_for_late_subscribers(tmp_path: Path, broker: LocalBroker, sink: ReadingSink) -> None:
    config, buffer, uplink = make_uplink(tmp_path, broker.port)
    uplink.start()
    # Once a subscriber has it, the broker has stored it.
    assert sink.wait_for(lambda: any(s["state"] == "online" for s in sink.statuses), 10)
    late = ReadingSink(broker.port, client_id="late", persistent=False).start()
    try:
        assert late.wait_for(lambda: bool(late.statuses), 5)
        assert late.statuses[0]["device"] == "unit-1" and late.statuses[0]["state"] == "online"
    finally:
        late.stop()
        uplink.stop()
        buffer.close()


def test_password_from_file_is_accepted(tmp_path: Path, password_broker: LocalBroker) -> None:
    (tmp_path / "pw").write_text("s3cret-Kukar\n")
    sink = ReadingSink(password_broker.port, client_id="centre")
    sink.client.username_pw_set("centre", "centre-pw")
    sink.start()
    config, buffer, uplink = make_uplink(
        tmp_path, password_broker.port, {"uplink": {"username": "unit-1", "password_file": str(tmp_path / "pw")}})
    buffer.append_many([signal_reading()] * 5)
    uplink.start()
    try:
        assert sink.wait_for_seqs("unit-1", {1, 2, 3, 4, 5}, 10)
    finally:
        uplink.stop()
        sink.stop()
        buffer.close()


def test_wrong_password_is_refused_and_readings_stay(tmp_path: Path, password_broker: LocalBroker,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    config, buffer, uplink = make_uplink(
        tmp_path, password_broker.port, {"uplink": {"username": "unit-1", "password": "wrong"}})
    buffer.append_many([signal_reading()] * 5)
    caplog.set_level("WARNING", logger="agent.unit.uplink")
    uplink.start()
    try:
        assert uplink.wait_until(lambda: uplink.stats.connection_failures >= 2, 10)
        assert not uplink.connected
    finally:
        uplink.stop()
    assert buffer.pending_count() == 5
    buffer.close()
    assert any("refused the connection" in r.getMessage() and ("Not authorized" in r.getMessage() or "password" in r.getMessage())
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_mqtt_311_delivers_too(tmp_path: Path, broker: LocalBroker, sink: ReadingSink) -> None:
    config, buffer, uplink = make_uplink(tmp_path, broker.port, {"uplink": {"protocol": "3.1.1"}})
    buffer.append_many([signal_reading()] * 20)
    uplink.start()
    try:
        assert sink.wait_for_seqs("unit-1", set(range(1, 21)), 10)
        assert uplink.wait_until(lambda: buffer.pending_count() == 0, 5)
    finally:
        uplink.stop()
        buffer.close()


def test_mosquitto_sub_and_a_json_parser_can_read_the_feed(tmp_path: Path, broker: LocalBroker) -> None:
    """The default format needs nothing but mosquitto_sub and JSON."""
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        pytest.fail("mosquitto_sub is missing; install mosquitto-clients (the test command does)")
    sub = subprocess.Popen([exe, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "blankspot/v1/+/readings",
                            "-q", "1", "-C", "1", "-W", "15"], stdout=subprocess.PIPE, text=True)
    # No need to wait for its subscription: until then the broker answers a batch with PUBACK
    # 0x10 (no matching subscribers) and the uplink sends it again.
    config, buffer, uplink = make_uplink(tmp_path, broker.port)
    buffer.append_many([signal_reading()] * 3)
    uplink.start()
    try:
        out, _ = sub.communicate(timeout=20)
    finally:
        uplink.stop()
        buffer.close()
    batch = json.loads(out)
    assert batch["schema"] == "blankspot.batch/1" and batch["device"] == "unit-1"
    assert [r["seq"] for r in batch["readings"]] == [1, 2, 3]
    assert batch["readings"][0]["signal"]["rsrp_dbm"] == -99.0
