"""``blankspot collect`` against a real Mosquitto and real databases, as child processes.

Scenarios: a collector SIGKILLed in the middle of a stream and restarted stores every
reading exactly once; batches sent twice (or cut differently) are stored once and counted
as duplicates; two collectors of one shared group split the work, and one of them killed
loses nothing; hostile payloads are quarantined while good batches keep flowing; a real
agent's readings and status end up in the store; the command's mistakes exit 2, an
unreachable database exits 1.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.centre.store import open_store
from agent.centre.store.base import QUARANTINE_RAW_BYTES, parse_db_url
from agent.commands.main import main
from agent.shared.polling import wait_until
from agent.shared.protocol import encode_batch
from agent.shared.reading import Event, Reading, Signal
from agent.sim.broker import LocalBroker, free_port
from agent.unit.buffer import read_readings
from tests.support.collector import CollectorProcess, stored_keys, wait_counts
from tests.support.postgres import db_url, postgres_url  # noqa: F401  (fixtures)
from tests.support.readings_factory import ALL_KINDS, T0, signal_reading
from tests.support.survey_factory import boat_trip
from tests.support.unit_config import write_config

REPO = Path(__file__).resolve().parent.parent
PREFIX = "blankspot/v1"


# -- helpers ---------------------------------------------------------------------------

class Units:
    """Plain paho, MQTT 5, publishing the way units do: QoS 1, waiting for each PUBACK."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-units", protocol=MQTTProtocolVersion.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(30)
        assert info.is_published(), f"broker did not acknowledge a message on {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def units(broker: LocalBroker):
    u = Units(broker.port)
    yield u
    u.close()


def reading(device: str, seq: int) -> Reading:
    return dataclasses.replace(ALL_KINDS[seq % len(ALL_KINDS)](device), seq=seq)


def batches(device: str, seqs: range, size: int) -> list[bytes]:
    numbers = list(seqs)
    return [encode_batch(device, [reading(device, s).to_json() for s in numbers[i:i + size]])
            for i in range(0, len(numbers), size)]


# -- scenarios ---------------------------------------------------------------------------

def test_killed_in_the_middle_of_a_stream_stores_every_reading_exactly_once(
        tmp_path: Path, broker: LocalBroker, units: Units, collectors: list, db_url: str) -> None:
    """Two units send 10,000 readings each in batches of 100, spread over a few seconds.
    The collector is SIGKILLed twice while storing them and restarted with the same client
    id; the broker keeps what it had not acknowledged and sends it again."""
    devices = ("boat-07", "village-2")
    per_device = 10_000
    collector = CollectorProcess(tmp_path, broker.port, db_url)
    collectors.append(collector)
    collector.start()
    streams = [batches(d, range(1, per_device + 1), 100) for d in devices]
    published = threading.Event()

    def stream() -> None:
        for pair in zip(*streams):
            for payload, device in zip(pair, devices):
                units.publish(f"{PREFIX}/{device}/readings", payload)
            time.sleep(0.03)
        published.set()

    publisher = threading.Thread(target=stream, daemon=True)
    publisher.start()
    # Each kill comes right after a commit became visible: the moment its acknowledgements
    # may still be on their way, which the broker then sends again as duplicates.
    for threshold in (3_000, 11_000):
        wait_counts(db_url, lambda c: c["readings"] >= threshold, 60, f"{threshold} readings stored", collector)
        collector.kill()
        if threshold == 3_000:
            assert not published.is_set(), "the stream ended before the first kill: it must be cut in the middle"
        time.sleep(0.3)  # a deliberate time away before the restart
        collector.start()
    publisher.join(60)
    assert published.is_set()
    final = wait_counts(db_url, lambda c: c["readings"] >= 2 * per_device, 60, "every reading stored", collector)
    assert collector.stop() == 0

    keys = stored_keys(db_url)
    assert len(keys) == len(set(keys)) == 2 * per_device
    for device in devices:
        assert sorted(seq for d, seq in keys if d == device) == list(range(1, per_device + 1))
    assert final["quarantined"] == 0
    assert "session resumed" in collector.log()
    print(f"\nkilled twice: {final['readings']} readings stored once, {final['duplicates']} duplicates "
          f"(sent again for batches committed but not yet acknowledged)")


def test_batches_sent_twice_or_cut_differently_are_stored_once(
        tmp_path: Path, broker: LocalBroker, units: Units, collectors: list) -> None:
    db = f"sqlite:///{tmp_path}/collector.db"
    collector = CollectorProcess(tmp_path, broker.port, db)
    collectors.append(collector)
    collector.start()
    first = batches("boat-07", range(1, 1001), 100)
    for payload in first + first + batches("boat-07", range(1, 1001), 30):  # 10 + 10 + 34 messages
        units.publish(f"{PREFIX}/boat-07/readings", payload)
    final = wait_counts(db, lambda c: c["batches"] >= 54, 30, "54 batches", collector)
    assert final["readings"] == 1000 and final["readings_inserted"] == 1000
    assert final["duplicates"] == 2000
    assert collector.stop() == 0
    assert "stopped: 1000 readings stored from 54 batches, 2000 duplicates" in collector.log()


def test_two_collectors_in_a_group_share_the_work_and_either_may_die(
        tmp_path: Path, broker: LocalBroker, units: Units, collectors: list, db_url: str) -> None:
    first = CollectorProcess(tmp_path, broker.port, db_url, "collector-a")
    second = CollectorProcess(tmp_path, broker.port, db_url, "collector-b")
    collectors.extend([first, second])
    first.start()
    second.start()
    devices = [f"unit-{n}" for n in range(4)]
    for payloads in zip(*(batches(d, range(1, 2501), 50) for d in devices)):
        for device, payload in zip(devices, payloads):
            units.publish(f"{PREFIX}/{device}/readings", payload)
    done = wait_counts(db_url, lambda c: c["readings"] >= 10_000, 60, "10,000 readings", first, second)
    with open_store(db_url) as store:
        shares = {name: values.get("batches", 0) for name, values in store.counters().items()}
    assert shares["collector-a"] > 0 and shares["collector-b"] > 0, f"one collector did nothing: {shares}"
    assert shares["collector-a"] + shares["collector-b"] == 200 and done["duplicates"] == 0

    # One of them dies; the broker keeps its share of what follows until it is back.
    second.kill()
    for payloads in zip(*(batches(d, range(2501, 3001), 50) for d in devices)):
        for device, payload in zip(devices, payloads):
            units.publish(f"{PREFIX}/{device}/readings", payload)
    second.start()
    final = wait_counts(db_url, lambda c: c["readings"] >= 12_000, 60, "12,000 readings", first, second)
    assert first.stop() == 0 and second.stop() == 0
    keys = stored_keys(db_url)
    assert len(keys) == len(set(keys)) == 12_000
    assert final["batches"] - final["duplicates"] // 50 >= 240
    print(f"\nshared group: batches per collector before the kill {shares}; after: {final}")


def test_after_a_quiet_moment_the_collector_brings_the_kept_tracks_and_the_figures_of_days_and_months_up_to_date(
        tmp_path: Path, broker: LocalBroker, units: Units, collectors: list) -> None:
    db = f"sqlite:///{tmp_path}/collector.db"
    collector = CollectorProcess(tmp_path, broker.port, db)
    collectors.append(collector)
    collector.start()
    trip = boat_trip("boat-07")[:300]
    for i in range(0, len(trip), 50):
        units.publish(f"{PREFIX}/boat-07/readings", encode_batch("boat-07", [r.to_json() for r in trip[i:i + 50]]))
    wait_counts(db, lambda c: c["readings"] == len(trip), 30, "the trip stored", collector)
    with open_store(db) as store:
        assert wait_until(store.tracks_up_to_date, 15, interval=0.2), collector.log()[-2000:]
        [piece] = store.tracks(16)
        assert (piece.points[0].seq, piece.points[-1].seq) == (1, 300)

    def months(sql: str) -> list:
        with sqlite3.connect(f"{tmp_path}/collector.db") as conn:
            return conn.execute(sql).fetchall()

    assert wait_until(lambda: not months("SELECT 1 FROM periods_dirty"), 15, interval=0.2), collector.log()[-2000:]
    assert months("SELECT count(*) FROM cell_periods")[0][0] > 0
    assert collector.stop() == 0


def test_hostile_payloads_are_quarantined_and_good_batches_keep_flowing(
        tmp_path: Path, broker: LocalBroker, units: Units, collectors: list, db_url: str) -> None:
    collector = CollectorProcess(tmp_path, broker.port, db_url)
    collectors.append(collector)
    collector.start()
    good = batches("boat-07", range(1, 201), 100)
    injection = "'; DROP TABLE readings; --"
    sql_looking = encode_batch("boat-07", [
        dataclasses.replace(signal_reading("boat-07"), seq=201,
                            part=dataclasses.replace(signal_reading().part, operator=injection)).to_json(),
        Reading("boat-07", T0, "ntp", Event("tag", injection, {}), None, seq=202).to_json(),
    ])
    nul = encode_batch("boat-07", [Reading("boat-07", T0, "ntp", Signal(operator="TELKOM\x00SEL"), None, seq=203).to_json()])
    big = b'{"schema":"blankspot.batch/1","device":"boat-07","readings":[' + b" " * (10 * 1024 * 1024) + b"]}"
    hostile = [
        (f"{PREFIX}/boat-07/readings", good[0][:200], "not JSON"),
        (f"{PREFIX}/boat-07/readings", big, "exceeds"),
        (f"{PREFIX}/boat-07/readings", good[0].replace(b'"seq":1,', b'"seq":"1",'), "seq: expected a positive integer"),
        (f"{PREFIX}/boat-08/readings", good[1], "does not match topic device"),
        (f"{PREFIX}/boat-07/readings", nul, "NUL"),
        (f"{PREFIX}/boat-07/status", b'{"schema":"blankspot.status/1","device":"boat-07","state":"on"}', "state"),
        (f"{PREFIX}/boat-07/readings", b"[" * 50_000, "nested too deeply"),
    ]
    units.publish(f"{PREFIX}/boat-07/readings", good[0])
    for topic, payload, _ in hostile:
        units.publish(topic, payload)
    units.publish(f"{PREFIX}/boat-07/readings", sql_looking)
    units.publish(f"{PREFIX}/boat-07/readings", good[1])
    final = wait_counts(db_url, lambda c: c["readings"] >= 202 and c["quarantined"] >= len(hostile), 30,
                        "good readings and quarantine", collector)
    assert collector.alive()
    assert final["readings"] == 202 and final["quarantined"] == len(hostile)
    with open_store(db_url) as store:
        quarantined = store.quarantined()
        stored = {r.seq: r for r in store.iter_readings()}
    for (topic, payload, reason), row in zip(hostile, quarantined):
        assert row["topic"] == topic and reason in row["reason"], row["reason"]
        assert row["size"] == len(payload) and row["raw"] == payload[:QUARANTINE_RAW_BYTES]
    assert stored[201].part.operator == injection and stored[202].part.message == injection
    assert collector.stop() == 0
    assert collector.log().count("quarantined a message on") == len(hostile)


def test_a_real_agents_readings_and_status_are_stored(tmp_path: Path, broker: LocalBroker, collectors: list) -> None:
    """``blankspot run`` with a synthetic source, then stopped: everything it delivered is
    stored, byte for byte as in its buffer, and the unit is offline by its own goodbye."""
    db = f"sqlite:///{tmp_path}/collector.db"
    collector = CollectorProcess(tmp_path, broker.port, db)
    collectors.append(collector)
    collector.start()
    buffer = tmp_path / "buffer.db"
    config = write_config(tmp_path / "agent.toml", broker.port, buffer, device="boat-07",
                          overrides={"source": {"interval": "10ms"}})
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)], cwd=REPO,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_counts(db, lambda c: c["readings"] >= 200 and c["units_online"] == 1, 30, "the agent's readings", collector)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=15)
    assert agent.returncode == 0, err.decode(errors="replace")[-2000:]
    delivered = {r.seq: r.body for r in read_readings(buffer) if r.state != "pending"}
    final = wait_counts(db, lambda c: c["readings"] >= len(delivered) and c["units_online"] == 0, 15,
                        "all delivered readings and the unit offline", collector)
    with open_store(db) as store:
        stored = {r.seq: r.to_json() for r in store.iter_readings(device="boat-07")}
        unit, = store.units()
    assert set(delivered) <= set(stored)
    assert all(json.loads(stored[seq]) == json.loads(body) for seq, body in delivered.items())
    assert unit["device"] == "boat-07" and unit["state"] == "offline" and "backlog" in unit["status"]
    assert final["quarantined"] == 0
    assert collector.stop() == 0
    assert "unit boat-07 is online" in collector.log() and "unit boat-07 is offline" in collector.log()


def python_without_h3(tmp_path: Path) -> dict[str, str]:
    """The environment of a Python that cannot import h3, as where the ``collector`` extra
    is not installed (a ``None`` in ``sys.modules`` makes ``import h3`` fail)."""
    site = tmp_path / "without-h3"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['h3'] = None\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))}


def test_without_h3_every_reading_is_stored_and_the_figures_wait_for_a_rebuild(
        tmp_path: Path, broker: LocalBroker, units: Units, collectors: list, capsys) -> None:
    """A collector whose Python has no h3 stores every reading, says once at start what is
    missing and what computes the figures later, and marks them stale: map and report then
    draw the cells from the readings and say so, until ``aggregate --rebuild``."""
    db = f"sqlite:///{tmp_path}/collector.db"
    env = python_without_h3(tmp_path)
    collector = CollectorProcess(tmp_path, broker.port, db, env=env)
    collectors.append(collector)
    collector.start()
    trip = boat_trip("boat-07")[:120]
    for i in range(0, len(trip), 40):
        units.publish(f"{PREFIX}/boat-07/readings", encode_batch("boat-07", [r.to_json() for r in trip[i:i + 40]]))
    final = wait_counts(db, lambda c: c["batches"] >= 3, 30, "3 batches", collector)
    assert collector.stop() == 0
    assert final["readings"] == final["readings_inserted"] == len(trip) and final["quarantined"] == 0
    assert collector.log().count("pip install 'blankspot[collector]'") == 1
    assert "'blankspot aggregate --db URL --rebuild' computes the figures" in collector.log()

    out = tmp_path / "map.html"
    no_grid = subprocess.run([sys.executable, "-m", "agent", "map", "--db", db, "--out", str(out)], cwd=REPO,
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert no_grid.returncode == 1 and not out.exists()
    warning, failure = no_grid.stderr.splitlines()
    assert warning == (
        "blankspot map: warning: the kept coverage figures are out of date (readings were stored by a collector"
        f" without h3, {stale_since(db)}); the cells are drawn from every stored reading until 'blankspot"
        " aggregate --rebuild' computes them again")
    assert failure.endswith("blankspot map: the coverage grid needs h3: pip install 'blankspot[collector]'")
    assert main(["report", "--db", db]) == 0
    drawn = capsys.readouterr()
    assert "warning: the kept coverage figures are out of date" in drawn.err

    assert main(["aggregate", "--db", db, "--rebuild"]) == 0
    capsys.readouterr()
    assert main(["report", "--db", db]) == 0
    kept = capsys.readouterr()
    assert kept.out == drawn.out and "warning" not in kept.err
    with open_store(db) as store:
        assert store.figures_stale() is None and store.figures_notice() is None


def stale_since(db: str) -> str:
    with open_store(db) as store:
        return str(store.figures_stale()).rsplit(", ", 1)[1]


def test_a_locked_sqlite_database_makes_the_collector_wait(tmp_path: Path, broker: LocalBroker, units: Units,
                                                            collectors: list) -> None:
    """Another process holds the database's write lock for a while: messages stay
    unacknowledged meanwhile, and are stored once it lets go."""
    db_path = tmp_path / "collector.db"
    collector = CollectorProcess(tmp_path, broker.port, str(db_path))
    collectors.append(collector)
    collector.start()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    for payload in batches("boat-07", range(1, 501), 100):
        units.publish(f"{PREFIX}/boat-07/readings", payload)
    time.sleep(2)  # a window with the lock held (SQLite's busy wait hides it from the log): real time
    assert collector.alive()
    blocker.execute("COMMIT")
    blocker.close()
    final = wait_counts(str(db_path), lambda c: c["readings"] >= 500, 60, "500 readings after the lock", collector)
    assert final["quarantined"] == 0 and final["readings"] == 500
    assert collector.stop() == 0


def test_a_lost_postgres_connection_is_reopened_and_nothing_lost(
        tmp_path: Path, broker: LocalBroker, units: Units, collectors: list, postgres_url: str) -> None:
    """The server ends the collector's session (as a restart or a failover would): the next
    commit fails, the messages stay unacknowledged, the store reconnects and stores them."""
    import psycopg

    name = f"blankspot-test-{free_port()}"
    db = f"{postgres_url}&application_name={name}"
    collector = CollectorProcess(tmp_path, broker.port, db)
    collectors.append(collector)
    collector.start()
    stream = batches("boat-07", range(1, 1001), 100)
    units.publish(f"{PREFIX}/boat-07/readings", stream[0])
    wait_counts(db, lambda c: c["readings"] >= 100, 30, "the first batch", collector)
    with psycopg.connect(parse_db_url(postgres_url).target, autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE application_name = %s", (name,)).fetchone()[0]
    assert ended >= 1
    for payload in stream[1:]:
        units.publish(f"{PREFIX}/boat-07/readings", payload)
    final = wait_counts(db, lambda c: c["readings"] >= 1000, 60, "every batch after the reconnection", collector)
    assert final["readings"] == 1000 and final["quarantined"] == 0
    assert "connection to" in collector.log() and "was lost; reconnecting" in collector.log()
    assert collector.stop() == 0


def test_under_systemd_it_says_ready_once_subscribed_and_feeds_the_watchdog(
        tmp_path: Path, broker: LocalBroker, collectors: list) -> None:
    """The notification socket systemd gives a Type=notify service with WatchdogSec=1s."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.settimeout(0.2)
        collector = CollectorProcess(tmp_path, broker.port, str(tmp_path / "c.db"),
                                     env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        collectors.append(collector)
        collector.start()
        heard: list[str] = []

        def listen(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    heard.extend(systemd.recv(4096).decode().splitlines())
                except socket.timeout:
                    pass

        listen(2.5)
        assert "READY=1" in heard and heard.count("WATCHDOG=1") >= 3, heard
        assert any(line.startswith("STATUS=subscribed to mqtt://127.0.0.1") for line in heard), heard
        collector.process.send_signal(signal.SIGTERM)
        listen(1.0)
        assert collector.process.wait(10) == 0
    assert "STOPPING=1" in heard, heard


# -- the command ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--db", "mysql://u@h/d"], "--db: database URL 'mysql://u@h/d': unsupported scheme 'mysql'"),
    (["--db", "sqlite://"], "--db: database URL"),
    (["--broker", "http://x"], "--broker: broker 'http://x': expected mqtt://"),
    (["--group", "a/b"], "group 'a/b'"),
    (["--session-expiry", "forever"], "expected a duration"),
    (["--password-file", "/nonexistent/pw"], "cannot read --password-file"),
    (["--tls-ca", "/nonexistent/ca.crt"], "--tls-ca: no such file"),
])
def test_command_mistakes_exit_2_in_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    base = {"--broker": "mqtt://127.0.0.1:1", "--db": str(tmp_path / "c.db")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["collect"] + [item for pair in base.items() for item in pair]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_an_unreachable_database_exits_1(capsys) -> None:
    argv = ["collect", "--broker", "mqtt://127.0.0.1:1", "--db", f"postgresql://postgres@127.0.0.1:{free_port()}/x"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("blankspot: cannot connect to PostgreSQL") and err.count("\n") == 1, err
