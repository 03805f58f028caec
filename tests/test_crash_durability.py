"""A unit's power can go at any moment: the agent process must survive being killed outright.

The agent runs as a real process (``python -m agent run``) against a real Mosquitto, its
log captured to a file, and these are required:

- ``kill -9`` at random moments (while the interpreter starts, while the buffer is being
  opened, while readings are being taken and drained) never damages the buffer file, never
  loses a reading the agent had stored, and never makes the agent reuse a seq; after the
  last kill one clean run delivers every reading ever taken;
- SIGTERM ends the agent within a few seconds with exit status 0, its retained status says
  ``offline`` (its own goodbye, not the last will), and nothing buffered is lost;
- a buffer file that is garbage at start does not stop the unit: the file is kept aside as
  ``<name>.corrupt-<UTC stamp>``, a CRITICAL line says so, numbering continues above every
  seq handed out before, and an ``event`` reading ``buffer_corrupt`` reaches the broker.

A seq counts as stored once the agent logged ``buffered seq=N``: it logs that only after
the reading's transaction is on disk.
"""
from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.unit.buffer import BufferError, read_readings
from agent.unit.config import load_config
from agent.unit.service import state_path
from agent.unit.status import collect_status
from agent.shared.protocol import decode_batch, decode_status, readings_topic, status_topic
from agent.shared.reading import Event, Reading
from agent.sim.broker import LocalBroker
from agent.shared.polling import wait_until as wait
from tests.support.mqtt_sink import ReadingSink
from tests.support.unit_config import write_config

DEVICE = "boat-07"
REPO = Path(__file__).resolve().parent.parent
PREFIX = "blankspot/v1"
KILLS = 20
SEED = 20211124
BUFFERED_RE = re.compile(r"buffered seq=(\d+) kind=")
STARTED = "starting: buffer"
CONNECTED = "connected to broker"
STOPPED_RE = re.compile(r"agent stopped: (\d+) readings taken this run, (\d+) waiting in the buffer")
# When a kill lands, in seconds: "startup" counts from the process start (the interpreter is
# still importing, about 0.5 s); the others from the moment the buffer file is opened, which
# is about 20 ms before the agent logs that it has started.
KILL_AFTER = {"startup": (0.02, 0.3), "opening": (0.0, 0.02), "early": (0.03, 0.3), "later": (0.3, 2.0)}
# Small batches and few in flight keep a drain going at almost every moment a kill lands.
UPLINK = {"batch_size": 20, "max_inflight": 2}


# -- helpers ---------------------------------------------------------------------------



def agent_config(path: Path, broker: LocalBroker, buffer: Path, interval: str) -> Path:
    return write_config(path, broker.port, buffer, overrides={"uplink": UPLINK, "source": {"interval": interval}},
                        device=DEVICE)


class AgentProcess:
    """``python -m agent run --log-level debug`` as a child process, stderr in a file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config), "--log-level", "debug"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log, cwd=REPO,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        # A line cut short by the kill is not evidence of anything; only whole lines count.
        return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]

    def text(self) -> str:
        return "\n".join(self.lines())

    def seqs(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines() if (m := BUFFERED_RE.search(line))]

    def logged(self, needle: str) -> bool:
        return any(needle in line for line in self.lines())

    def wait_log(self, needle: str, timeout: float) -> bool:
        return wait(lambda: self.logged(needle) or self.process.poll() is not None, timeout) and self.logged(needle)

    def has_open(self, path: Path) -> bool:
        """Whether the process holds ``path`` open (Linux: its descriptors under /proc)."""
        target = os.path.realpath(path)
        fd_dir = f"/proc/{self.pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            return False
        for name in names:
            try:
                if os.readlink(f"{fd_dir}/{name}") == target:
                    return True
            except OSError:
                continue
        return False

    def wait_open(self, path: Path, timeout: float) -> bool:
        return wait(lambda: self.has_open(path) or self.process.poll() is not None, timeout, interval=0.002) \
            and self.has_open(path)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM; the exit status and how long the process took to end (None if it did not)."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            rc: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - sent

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._log.close()


@dataclass
class BufferSnapshot:
    integrity: str
    delivered: set[int] = field(default_factory=set)
    pending: set[int] = field(default_factory=set)

    @property
    def seqs(self) -> set[int]:
        return self.delivered | self.pending


def inspect_buffer(path: Path) -> BufferSnapshot:
    """Integrity and readings of the buffer file.

    Whether SQLite finds the file intact, and whether it holds a buffer yet (a kill before the
    schema was committed leaves an empty database), are about the file itself, so asked in SQL,
    read-only; the readings are what ``read_readings`` gives.
    """
    if not path.exists():
        return BufferSnapshot("absent")
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        snap = BufferSnapshot("\n".join(row[0] for row in conn.execute("PRAGMA integrity_check")))
        has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'").fetchone()
    finally:
        conn.close()
    if has_table:
        for stored in read_readings(path):
            (snap.pending if stored.state == "pending" else snap.delivered).add(stored.seq)
    return snap


def pending_count(config_file: Path) -> int | None:
    """What ``blankspot status`` says is pending: the running agent's own count."""
    config = load_config(config_file)
    try:
        buffer = collect_status(config, state_path(config))["buffer"]
    except BufferError:
        return None
    return None if buffer is None else buffer["pending"]


def drain_and_stop(config: Path, log_path: Path, timeout: float = 30.0) -> AgentProcess:
    """Run the agent until its buffer has nothing pending, then SIGTERM it; it must exit 0 quickly."""
    agent = AgentProcess(config, log_path)
    try:
        # Wait for this run's own first reading, so SIGTERM never lands before the handler is set.
        assert agent.wait_log("buffered seq=", 20), f"the agent did not start:\n{agent.text()[-2000:]}"
        assert wait(lambda: pending_count(config) == 0, timeout, interval=0.05), (
            f"buffer still has {pending_count(config)} pending after {timeout:g}s:\n{agent.text()[-2000:]}"
        )
        rc, took = agent.terminate()
        assert rc == 0, f"exit status {rc} after SIGTERM:\n{agent.text()[-2000:]}"
        assert took < 5.0, f"the agent took {took:.1f}s to stop after SIGTERM"
    finally:
        agent.close()
    return agent


class RetainedStatus:
    """A fresh subscriber to one device's status topic: what the broker keeps retained."""

    def __init__(self, port: int, device: str) -> None:
        self.payloads: list[bytes] = []
        self._got = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"retained-{os.getpid()}", clean_session=True)
        topic = status_topic(PREFIX, device)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            self.payloads.append(message.payload)
            self._got.set()

    def get(self, timeout: float = 10.0) -> dict | None:
        self.client.loop_start()
        try:
            if not self._got.wait(timeout):
                return None
            return decode_status(self.payloads[-1], DEVICE)
        finally:
            self.client.disconnect()
            self.client.loop_stop()


class ReadingRecorder:
    """Subscriber keeping whole readings of one device (the sink keeps only their seqs)."""

    def __init__(self, port: int, device: str) -> None:
        self.device = device
        self.readings: list[Reading] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"recorder-{os.getpid()}", clean_session=True)
        self.client.on_connect = lambda c, *a: c.subscribe(readings_topic(PREFIX, device), 1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)

    def start(self) -> "ReadingRecorder":
        self.client.loop_start()
        assert self._subscribed.wait(10), "recorder could not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        batch = decode_batch(message.payload, self.device)
        with self._lock:
            self.readings.extend(batch)

    def events(self, kind: str) -> list[Reading]:
        with self._lock:
            return [r for r in self.readings if isinstance(r.part, Event) and r.part.type == kind]


# -- scenarios -------------------------------------------------------------------------

def test_kill_9_at_random_moments_loses_nothing_and_reuses_no_seq(tmp_path: Path, broker: LocalBroker,
                                                                  sink: ReadingSink) -> None:
    """The agent is killed with SIGKILL 20 times while it takes a reading every 5 ms and
    drains them in batches of 20, two in flight.  Kill moments are random (seeded): some
    while the interpreter starts, some within 20 ms of the buffer file being opened (WAL
    recovery, check, schema), some within 0.3 s of it (connecting, first readings), the
    rest while readings are taken and drained.

    After every kill: SQLite's ``integrity_check`` of the buffer is ``ok``; every seq the
    agent logged as buffered is in the file (pending or delivered) or already at the
    subscriber; the file was never judged corrupt; and the next run's first seq is above
    every seq that existed before it.  Finally one clean run drains the buffer, stops on
    SIGTERM with status 0, and the subscriber has every seq from 1 to the highest.
    """
    rng = random.Random(SEED)
    buffer = tmp_path / "buffer.db"
    config = agent_config(tmp_path / "agent.toml", broker, buffer, "5ms")
    highest = 0  # highest seq known to exist after the runs so far
    logged_total = 0
    landed: Counter[str] = Counter()

    # The first run always gets well under way, so the numbering has started before any
    # early kill; the order of the rest is shuffled.
    modes = ["startup"] * 2 + ["opening"] * 6 + ["early"] * 4 + ["later"] * (KILLS - 13)
    rng.shuffle(modes)
    for run, mode in enumerate(["later", *modes]):
        agent = AgentProcess(config, tmp_path / f"run-{run:02d}.log")
        try:
            low, high = KILL_AFTER[mode]
            if mode != "startup":
                assert agent.wait_open(buffer, 20), f"run {run}: the agent never opened its buffer:\n{agent.text()}"
            time.sleep(rng.uniform(low, high))
            if not agent.has_open(buffer):
                landed["before the buffer was opened"] += 1
            elif not agent.logged(STARTED):
                landed["while opening the buffer"] += 1
            elif not agent.logged(CONNECTED):
                landed["before connecting"] += 1
            else:
                landed["while taking and draining readings"] += 1
            assert agent.process.poll() is None, f"run {run}: the agent exited by itself:\n{agent.text()[-2000:]}"
            agent.kill()
        finally:
            agent.close()

        logged = agent.seqs()
        logged_total += len(logged)
        snap = inspect_buffer(buffer)
        seen = sink.unique(DEVICE)
        assert snap.integrity == "ok", f"run {run} ({mode}): integrity_check says {snap.integrity}"
        lost = set(logged) - snap.seqs - seen
        assert not lost, f"run {run} ({mode}): logged as buffered but gone: {sorted(lost)[:20]}"
        if logged:
            assert logged[0] > highest, f"run {run} ({mode}): first seq {logged[0]} reuses a seq <= {highest}"
            assert all(a < b for a, b in zip(logged, logged[1:])), f"run {run}: seqs not strictly increasing"
        phantom = seen - snap.seqs
        assert not phantom, f"run {run}: the subscriber has seqs the buffer never had: {sorted(phantom)[:20]}"
        assert not list(tmp_path.glob("buffer.db.corrupt-*")), f"run {run} ({mode}): a kill made the buffer corrupt"
        assert "Traceback" not in agent.text(), f"run {run}:\n{agent.text()[-3000:]}"
        highest = max([highest, *logged, *snap.seqs])

    final = drain_and_stop(agent_config(tmp_path / "final.toml", broker, buffer, "10m"), tmp_path / "final.log")
    assert final.seqs() and final.seqs()[0] > highest, "the final run reused a seq"
    snap = inspect_buffer(buffer)
    assert snap.integrity == "ok"
    highest = max(snap.seqs)
    every = set(range(1, highest + 1))
    assert snap.seqs == every, f"seqs missing from the buffer: {sorted(every - snap.seqs)[:20]}"
    assert not snap.pending
    sink.wait_for_seqs(DEVICE, every, 15)
    missing = every - sink.unique(DEVICE)
    print(
        f"\nkill -9: {KILLS} runs killed + 1 clean run; kills landed {dict(landed)}; "
        f"{highest} readings in all ({logged_total + len(final.seqs())} logged as buffered), "
        f"{len(sink.seqs(DEVICE))} arrivals at the subscriber, {sink.duplicates(DEVICE)} duplicates, "
        f"{len(missing)} missing"
    )
    assert not missing, f"never reached the subscriber: {sorted(missing)[:20]}"
    assert not sink.bad


def test_sigterm_exits_0_says_offline_and_loses_nothing(tmp_path: Path, broker: LocalBroker,
                                                         sink: ReadingSink) -> None:
    """SIGTERM while readings are being taken and drained: the process exits with status 0
    within a few seconds, the retained status on ``blankspot/v1/<device>/status`` is the
    unit's own ``offline`` (not the last will), every reading it logged is still in the
    buffer, and the next run delivers whatever was left waiting.
    """
    buffer = tmp_path / "buffer.db"
    agent = AgentProcess(agent_config(tmp_path / "agent.toml", broker, buffer, "5ms"), tmp_path / "run.log")
    try:
        assert agent.wait_log(CONNECTED, 20), f"the agent did not connect:\n{agent.text()[-2000:]}"
        assert sink.wait_for(lambda: len(sink.unique(DEVICE)) >= 100, 20), "no drain under way"
        rc, took = agent.terminate()
    finally:
        agent.close()
    logged = agent.seqs()
    stopped = next((m for line in agent.lines() if (m := STOPPED_RE.search(line))), None)
    assert rc == 0, f"exit status {rc} after SIGTERM:\n{agent.text()[-2000:]}"
    assert took < 5.0, f"the agent took {took:.1f}s to stop after SIGTERM"
    assert stopped is not None, "no 'agent stopped' line in the log"

    snap = inspect_buffer(buffer)
    assert snap.integrity == "ok"
    assert set(logged) <= snap.seqs, f"logged but not in the buffer: {sorted(set(logged) - snap.seqs)[:20]}"
    assert snap.seqs == set(range(1, max(snap.seqs) + 1))
    assert int(stopped.group(2)) == len(snap.pending), "the stop line misreports what is waiting"
    assert sink.wait_for_seqs(DEVICE, snap.delivered, 10), "acknowledged readings missing at the subscriber"

    assert sink.wait_for(lambda: any(s.get("device") == DEVICE for s in sink.statuses), 5)
    last_seen = [s for s in sink.statuses if s.get("device") == DEVICE][-1]
    retained = RetainedStatus(broker.port, DEVICE).get()
    assert retained is not None, "no retained status"
    assert last_seen["state"] == "offline" and retained["state"] == "offline"
    assert "reason" not in retained, f"the retained status is the last will, not the unit's goodbye: {retained}"
    assert retained["backlog"]["last_seq"] == max(snap.seqs)

    waiting = len(snap.pending)
    drain_and_stop(agent_config(tmp_path / "final.toml", broker, buffer, "10m"), tmp_path / "final.log")
    highest = max(inspect_buffer(buffer).seqs)
    every = set(range(1, highest + 1))
    sink.wait_for_seqs(DEVICE, every, 10)
    missing = every - sink.unique(DEVICE)
    print(
        f"\nSIGTERM: exit {rc} after {took:.2f}s; {len(logged)} readings taken, {waiting} waiting at stop, "
        f"retained status {retained['state']!r} (backlog {retained['backlog']}); after the next run "
        f"{len(every) - len(missing)}/{highest} at the subscriber, {sink.duplicates(DEVICE)} duplicates"
    )
    assert not missing, f"never reached the subscriber: {sorted(missing)[:20]}"
    assert not sink.bad


def test_corrupt_buffer_is_kept_aside_and_numbering_continues(tmp_path: Path, broker: LocalBroker,
                                                               sink: ReadingSink) -> None:
    """A buffer file that is garbage when the agent starts (its ``.seq`` reservation file
    from the earlier run still beside it): the agent starts anyway, keeps the bad file as
    ``<name>.corrupt-<UTC stamp>``, says so in a CRITICAL log line, numbers new readings
    above every seq handed out before, and delivers an ``event`` reading ``buffer_corrupt``.
    """
    buffer = tmp_path / "buffer.db"
    seq_file = tmp_path / "buffer.db.seq"
    config = agent_config(tmp_path / "agent.toml", broker, buffer, "5ms")
    first = AgentProcess(config, tmp_path / "first.log")
    try:
        assert wait(lambda: len(first.seqs()) >= 50, 20), f"the agent took no readings:\n{first.text()[-2000:]}"
        rc, _ = first.terminate()
    finally:
        first.close()
    assert rc == 0
    earlier = max([*first.seqs(), *inspect_buffer(buffer).seqs])
    assert seq_file.exists(), "no seq reservation file beside the buffer"
    reserved = int(seq_file.read_text().split()[0])  # "<highest reserved seq> <database id>"

    garbage = random.Random(SEED).randbytes(64 * 1024)
    buffer.write_bytes(garbage)

    recorder = ReadingRecorder(broker.port, DEVICE).start()
    second = AgentProcess(config, tmp_path / "second.log")
    try:
        assert wait(lambda: bool(recorder.events("buffer_corrupt")), 20), (
            f"no buffer_corrupt event delivered:\n{second.text()[-2000:]}"
        )
        assert wait(lambda: len(second.seqs()) >= 20, 20)
        rc, took = second.terminate()
    finally:
        second.close()
        recorder.stop()
    assert rc == 0 and took < 5.0, f"exit status {rc} after {took:.1f}s:\n{second.text()[-2000:]}"

    kept = [p for p in tmp_path.iterdir() if re.fullmatch(r"buffer\.db\.corrupt-\d{8}T\d{6}Z", p.name)]
    assert len(kept) == 1, f"expected one kept corrupt file, found {sorted(p.name for p in tmp_path.iterdir())}"
    assert kept[0].read_bytes() == garbage, "the corrupt file was not kept as it was"
    critical = [line for line in second.lines() if " CRITICAL " in line and "corrupt" in line]
    assert critical and kept[0].name in critical[0], f"no CRITICAL line naming {kept[0].name}:\n{second.text()[:2000]}"

    snap = inspect_buffer(buffer)
    assert snap.integrity == "ok"
    event = recorder.events("buffer_corrupt")[0]
    assert event.seq is not None and event.seq > earlier
    assert event.seq in snap.delivered
    assert str(event.part.data.get("kept_as", "")).endswith(kept[0].name)
    new = second.seqs()
    assert new[0] > earlier, f"numbering restarted: first new seq {new[0]} <= {earlier}"
    assert min(snap.seqs) > earlier
    assert sink.wait_for_seqs(DEVICE, {event.seq}, 5)
    print(
        f"\ncorrupt buffer: {earlier} seqs before, reservation {reserved}; kept as {kept[0].name}; "
        f"event buffer_corrupt seq={event.seq} delivered; new readings from seq {new[0]} "
        f"({len(new)} taken); CRITICAL: {critical[0].split(': ', 1)[-1][:100]}..."
    )
    assert not sink.bad
