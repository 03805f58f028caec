"""Delivery ends in the centre's database: every reading a unit numbered is stored there once.

Counted at the end of the path (the collector's database), never at the broker: a unit's
buffer and uplink (the agent's own classes, live readings appended as the agent does), a real
Mosquitto restarted and killed under it, and ``blankspot collect`` child processes.  The
collectors publish confirmations every second here (``--confirm-interval 1s``; 5 minutes in
the field) and the unit's grace and probe waits are short, so that a scenario takes seconds.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.shared import seq_ranges
from agent.unit import buffer as buffer_module
from agent.unit.buffer import ReadingBuffer, sqlite_files
from agent.centre.store import open_store
from agent.unit.config import Config, load_config, read_password
from agent.shared.polling import wait_until
from agent.sim.broker import LocalBroker
from agent.sim.scenario import mahakam_scenario
from agent.sim.link import LinkProxy
from agent.sim.route import mahakam_route
from agent.sim.synthetic import SyntheticSource
from agent.unit.uplink import MqttUplink
from tests.support.broker import password_broker, require_mosquitto  # noqa: F401  (password_broker: a fixture)
from tests.support.collector import CollectorProcess, wait_counts
from tests.support.mqtt_sink import ReadingSink
from tests.support.readings_factory import bulky_reading, signal_reading
from tests.support.small_card import fill, small_card  # noqa: F401  (small_card: a fixture)
from tests.support.unit_config import write_config

DEVICE = "boat-07"
FAST_CONFIRM = ("--confirm-interval", "1s")
# What Debian's mosquitto.conf sets: persistence on, saved every 30 minutes (and at a clean stop).
PERSISTENCE = {
    "default": "persistence true\npersistence_location {dir}/\nautosave_interval 1800\n",
    "off": "persistence false\n",
}


# -- the parts ---------------------------------------------------------------------------

def make_broker(tmp_path: Path, persistence: str) -> LocalBroker:
    require_mosquitto()
    work = tmp_path / "broker"
    work.mkdir(exist_ok=True)
    return LocalBroker("mosquitto", workdir=work, extra_config=PERSISTENCE[persistence].format(dir=work)).start()


def start_collector(tmp_path: Path, port: int, db: str, collectors: list, name: str = "collector-1") -> CollectorProcess:
    """``blankspot collect`` confirming every second, started and subscribed."""
    collector = CollectorProcess(tmp_path, port, db, name, *FAST_CONFIRM)
    collectors.append(collector)
    return collector.start()


class Unit:
    """A unit's buffer and uplink in this process; readings appended at a steady rate."""

    def __init__(self, tmp_path: Path, port: int, **uplink: object) -> None:
        settings = {"confirm_grace": "1s", "confirm_timeout": "3s", "status_interval": "2s", "batch_size": 50,
                    **uplink}
        path = write_config(tmp_path / "agent.toml", port, tmp_path / "buffer.db", device=DEVICE,
                            overrides={"uplink": settings})
        self.config: Config = load_config(path)
        self.buffer = ReadingBuffer(self.config.buffer.path, DEVICE)
        self.uplink = MqttUplink(self.config.uplink, DEVICE, self.buffer, client_id=self.config.client_id,
                                 password=read_password(self.config.uplink))
        self.source = SyntheticSource(DEVICE, mahakam_route(), mahakam_scenario(), 400.0)
        self._producer: threading.Thread | None = None

    def start(self) -> "Unit":
        self.uplink.start()
        return self

    def produce(self, count: int, per_second: float) -> threading.Thread:
        """Append ``count`` readings, ``per_second`` of them each second, in the background."""
        def run() -> None:
            start = time.monotonic()
            for n in range(count):
                self.buffer.append(self.source.read())
                delay = start + (n + 1) / per_second - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

        self._producer = threading.Thread(target=run, name="readings", daemon=True)
        self._producer.start()
        return self._producer

    def settled(self) -> bool:
        stats = self.buffer.stats()
        return stats.pending == 0 and stats.unconfirmed == 0

    def close(self) -> None:
        self.uplink.stop()
        self.buffer.close()


def stored(db: str) -> list[int]:
    with open_store(db) as store:
        return [seq for _, seq in store.reading_keys(DEVICE)]


def everything_stored_once(db: str, unit: Unit, timeout: float, *collectors: CollectorProcess) -> list[int]:
    """Wait until the database holds every seq the unit numbered and the unit has them all confirmed."""
    def done() -> bool:
        last = unit.buffer.stats().last_seq
        return unit.settled() and wait_counts(db, lambda c: c["readings"] >= last, 0.01, "", *collectors) \
            and sorted(stored(db)) == list(range(1, last + 1))

    def explain() -> str:
        last = unit.buffer.stats().last_seq
        have = set(stored(db))
        missing = seq_ranges.from_seqs(set(range(1, last + 1)) - have)
        return (f"missing at the centre: {seq_ranges.text(missing)}; unit {unit.buffer.stats()}; uplink "
                f"{unit.uplink.stats}\n" + "\n".join(c.log()[-3000:] for c in collectors))

    assert wait_until(lambda: _quietly(done), timeout, interval=0.25), explain()
    seqs = stored(db)
    assert len(seqs) == len(set(seqs)), "a reading stored twice"
    return seqs


def _quietly(check) -> bool:
    try:
        return check()
    except BaseException as exc:  # pytest.fail from wait_counts: not yet
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return False


# -- broker restarts ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("persistence,collectors_in_group", [("default", 1), ("off", 1), ("default", 2)])
def test_broker_restarts_during_a_drain_lose_nothing(tmp_path: Path, collectors: list, persistence: str,
                                                     collectors_in_group: int) -> None:
    """Twelve broker restarts, every other one a ``kill -9`` while the collectors lag behind, as a
    unit takes 3,000 readings and drains them into ``blankspot collect``.  Mosquitto forgets
    ``$share`` subscriptions at a restart (PUBACK 0x10 until the collectors subscribe again) and
    loses what it held in memory at a kill; the unit sends again what the centre's
    confirmations show missing.  At the end
    every seq the unit numbered is in the database exactly once, and the unit holds nothing
    unconfirmed."""
    broker = make_broker(tmp_path, persistence)
    db = f"sqlite:///{tmp_path}/collector.db"
    for n in range(collectors_in_group):
        start_collector(tmp_path, broker.port, db, collectors, f"collector-{n + 1}")
    unit = Unit(tmp_path, broker.port).start()
    try:
        producer = unit.produce(3_000, per_second=120)
        for restart in range(12):
            time.sleep(1.5)  # the faults follow a schedule in real time, as the drain runs on the real broker
            if restart % 2:
                # The collectors are away (restarting, say): what the broker acknowledged and
                # queued for their sessions is in its memory only, and the kill takes it.
                for collector in collectors:
                    assert collector.stop() == 0
                time.sleep(0.5)
                broker.kill()
                time.sleep(0.3)
                broker.start()
                for collector in collectors:
                    collector.start()
            else:
                broker.stop()
                time.sleep(0.3)
                broker.start()
        producer.join(60)
        seqs = everything_stored_once(db, unit, 120, *collectors)
        stats = unit.uplink.stats
        print(f"persistence {persistence}, {collectors_in_group} collector(s): {len(seqs)} readings stored once; "
              f"unit: {stats.batches_unrouted} batches answered 0x10, {stats.readings_resent} readings sent again, "
              f"{stats.connects} connections, {stats.confirmations} confirmations applied")
        assert len(seqs) >= 3_000
        assert stats.readings_resent > 0, "the kills took readings the broker had acknowledged: the unit sent them again"
        assert stats.connects <= 12 + 3, "one connection per broker restart, give or take"
    finally:
        unit.close()
        broker.close()


# -- the centre's database restored from a backup ------------------------------------------

def test_a_database_restored_from_last_nights_backup_is_filled_in_by_the_unit(tmp_path: Path, broker: LocalBroker,
                                                                            collectors: list) -> None:
    """The centre loses its database and restores an older copy: the unit, which kept its
    confirmed readings, learns from the confirmation that follows its next status that the
    centre no longer holds the later ones, and sends them again."""
    db_path = tmp_path / "collector.db"
    db = f"sqlite:///{db_path}"
    collector = start_collector(tmp_path, broker.port, db, collectors)
    unit = Unit(tmp_path, broker.port).start()
    try:
        unit.produce(500, per_second=500).join(30)
        everything_stored_once(db, unit, 30, collector)
        assert collector.stop() == 0
        shutil.copy(db_path, tmp_path / "backup.db")  # last night's backup
        collector.start()
        unit.produce(700, per_second=500).join(30)
        everything_stored_once(db, unit, 30, collector)
        assert collector.stop() == 0
        shutil.copy(tmp_path / "backup.db", db_path)
        for suffix in ("-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
        assert len(stored(db)) == 500, "the restored database is the older one"
        collector.start()
        seqs = everything_stored_once(db, unit, 60, collector)
        assert len(seqs) == unit.buffer.stats().last_seq >= 1_200
        assert "restored from a backup" in collector.log()
        assert unit.uplink.stats.readings_resent == 0, "nothing was lost in transit: the buffer reopened them"
    finally:
        unit.close()


# -- holes ----------------------------------------------------------------------------------

def test_a_hole_the_broker_made_is_filled_by_a_resend_on_mqtt_311(tmp_path: Path, broker: LocalBroker,
                                                                  collectors: list) -> None:
    """A unit on MQTT 3.1.1 cannot see that the broker forwarded its batches to nobody (no
    collector session yet): they are acknowledged and gone.  Once a collector stores later
    readings its confirmation shows the hole, the unit sends those readings again, and the
    collector logs the hole opening and closing."""
    db = f"sqlite:///{tmp_path}/collector.db"
    unit = Unit(tmp_path, broker.port, protocol="3.1.1").start()
    try:
        unit.produce(300, per_second=1000).join(30)
        assert wait_until(lambda: unit.buffer.stats().pending == 0, 20), "the broker acknowledged everything"
        assert unit.buffer.stats().unconfirmed == 300, "acknowledged, but nobody confirmed them"
        collector = start_collector(tmp_path, broker.port, db, collectors)
        unit.produce(100, per_second=200).join(30)
        everything_stored_once(db, unit, 60, collector)
        assert unit.uplink.stats.readings_resent >= 300
        log = collector.log()
        assert "readings seq 1-300 missing at the centre (hole opened" in log and "hole filled, seq 1-" in log, \
            log[-3000:]
        with open_store(db) as store:
            assert store.holes(DEVICE) == []
            assert store.counts()["holes_opened"] >= 300 and store.counts()["holes_filled"] >= 300
    finally:
        unit.close()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)


def units_json(db: str) -> dict:
    done = run_cli("units", "--db", db, "--json")
    assert done.returncode == 0, done.stderr
    return {u["device"]: u for u in json.loads(done.stdout)["units"]}


def run_until_the_centre_has_everything(tmp_path: Path, port: int, db: str, collector: CollectorProcess) -> None:
    """Run the unit until it holds nothing unconfirmed and the centre has seen its last seq."""
    unit = Unit(tmp_path, port).start()
    try:
        assert wait_until(lambda: unit.settled() and units_json(db).get(DEVICE, {}).get("top") ==
                          unit.buffer.stats().last_seq, 60), f"{unit.buffer.stats()}\n{collector.log()[-3000:]}"
    finally:
        unit.close()


def test_a_full_buffer_and_an_unusable_buffer_leave_explained_holes(tmp_path: Path, broker: LocalBroker,
                                                                    collectors: list) -> None:
    """A unit whose buffer overflowed in a long blank spot, and later found its buffer file
    unusable: the centre lacks those readings, says why (`blankspot units`, `report`), and the
    unit is left holding nothing unconfirmed: nothing is asked of it that it cannot send."""
    db = f"sqlite:///{tmp_path}/collector.db"
    big = bulky_reading(DEVICE)
    with ReadingBuffer(tmp_path / "buffer.db", DEVICE, max_bytes=1_000_000) as buffer:
        for _ in range(30):
            buffer.append_many([big] * 100)  # a long blank spot: no connection, the buffer overflows
        overflow = buffer.stats()
    assert overflow.dropped_total > 0
    collector = start_collector(tmp_path, broker.port, db, collectors)
    run_until_the_centre_has_everything(tmp_path, broker.port, db, collector)
    view = units_json(db)[DEVICE]
    print(f"after the overflow: {view['stored']} stored, holes {view['holes']}")
    assert {h["reason"] for h in view["holes"]} <= {"dropped", "lost"} and "dropped" in {h["reason"] for h in view["holes"]}
    assert view["missing"] == overflow.dropped_total == overflow.last_seq - view["stored"]

    # The file is damaged while 200 readings wait in it: the unit starts a new one.
    with ReadingBuffer(tmp_path / "buffer.db", DEVICE) as buffer:
        buffer.append_many([signal_reading(DEVICE)] * 200)
        waiting = buffer.stats()
    (tmp_path / "buffer.db").write_bytes(b"\x00" * 4096)
    run_until_the_centre_has_everything(tmp_path, broker.port, db, collector)
    view = units_json(db)[DEVICE]
    corrupt = [h for h in view["holes"] if h["reason"] == "corrupt"]
    print(f"after the damaged file: holes {view['holes']}")
    assert corrupt and corrupt[0]["first"] == waiting.last_seq - 199, "the 200 waiting readings are explained"
    assert all(h["reason"] in ("dropped", "lost", "corrupt") for h in view["holes"])

    # Then the file is lost altogether (a new card with the old buffer.db.seq) with 50 waiting.
    with ReadingBuffer(tmp_path / "buffer.db", DEVICE) as buffer:
        buffer.append_many([signal_reading(DEVICE)] * 50)
        waiting = buffer.stats()
    for file in sqlite_files(tmp_path / "buffer.db"):
        file.unlink(missing_ok=True)
    run_until_the_centre_has_everything(tmp_path, broker.port, db, collector)
    replaced = [h for h in units_json(db)[DEVICE]["holes"] if h["reason"] == "replaced"]
    assert replaced and replaced[0]["first"] == waiting.last_seq - 49, "the 50 waiting readings are explained"
    text = run_cli("units", "--db", db)
    assert "dropped by the unit (its buffer was full)" in text.stdout and "moved aside as unusable" in text.stdout
    assert "gone with a buffer file that was missing" in text.stdout
    report = run_cli("report", "--db", db)
    assert report.returncode == 0, report.stderr
    assert "Readings missing at the centre" in report.stdout and "moved aside as unusable" in report.stdout


def test_a_reading_dated_year_1_is_quarantined_alone_and_settled_for_the_unit(tmp_path: Path, broker: LocalBroker,
                                                                             collectors: list) -> None:
    """A reading dated 0001-01-01 (valid by the schema) is kept out of the database: quarantined
    with the reason, the rest of its batch stored, its seq told to the unit as settled, and
    `report`, `map` and `export` work on the database afterwards."""
    db = f"sqlite:///{tmp_path}/collector.db"
    collector = start_collector(tmp_path, broker.port, db, collectors)
    unit = Unit(tmp_path, broker.port).start()
    try:
        unit.buffer.append_many([signal_reading(DEVICE)] * 5)
        unit.buffer.append(replace(signal_reading(DEVICE), time=datetime(1, 1, 1, tzinfo=timezone.utc)))
        unit.buffer.append_many([signal_reading(DEVICE)] * 5)
        assert wait_until(unit.settled, 30), f"{unit.buffer.stats()}\n{collector.log()[-3000:]}"
    finally:
        unit.close()
    assert sorted(stored(db)) == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    with open_store(db) as store:
        quarantined, = store.quarantined()
        assert store.counts()["readings_refused"] == 1
    assert "seq 6: time 0001-01-01T00:00:00.000Z" in quarantined["reason"]
    assert "plausible window" in quarantined["reason"]
    assert [h["reason"] for h in units_json(db)[DEVICE]["holes"]] == ["refused"]
    for command in (("report",), ("map", "--out", str(tmp_path / "map.html")),
                    ("export", "--format", "geojson", "--out", str(tmp_path / "out.geojson"))):
        done = run_cli(*command, "--db", db)
        assert done.returncode == 0, (command, done.stderr)


# -- a buffer that cannot be written ---------------------------------------------------------

@pytest.mark.slow
def test_a_full_disk_for_30s_sends_nothing_twice_and_loses_nothing(
        tmp_path: Path, small_card: Path, broker: LocalBroker, collectors: list,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The card fills up while 500 readings wait and the broker is up.  The unit cannot record
    what the broker acknowledges nor what the centre confirms: it holds back (one log line, its
    status says why) instead of reconnecting and sending the backlog again.  Over 30 s: a few
    connections at most, at most two copies of any reading on the wire; once space returns,
    every reading is in the centre's database and confirmed.  Where the buffer's pages sit on
    the card is about the file itself, so the test empties its WAL in SQL.  The buffer commits
    what waits in memory after a second here (not minutes), so the full card is met at once."""
    monkeypatch.setattr(buffer_module, "HOLD_S", 1.0)
    db = f"sqlite:///{tmp_path}/collector.db"
    collector = start_collector(tmp_path, broker.port, db, collectors)
    copies = ReadingSink(broker.port, client_id="wire-watch", persistent=False).start()
    link = LinkProxy(broker.port).start()
    unit = Unit(small_card, link.port, batch_size=50)
    link.set_up(False)
    unit.start()
    try:
        unit.produce(500, per_second=1000).join(30)
        # Everything the buffer wrote so far sits in the WAL's pages; empty it so that the
        # next write needs new blocks, as on a card filled by something else.
        unit.buffer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill(small_card)
        connects_before = unit.uplink.stats.connects
        link.set_up(True)
        time.sleep(30)  # an observation window: what the unit does with the real broker over 30 s
        connects = unit.uplink.stats.connects - connects_before
        fault = unit.uplink.buffer_fault
        most_copies = max(Counter(copies.seqs(DEVICE)).values(), default=0)
        print(f"disk full for 30 s: {connects} connections, {len(copies.seqs(DEVICE))} readings on the wire "
              f"({len(set(copies.seqs(DEVICE)))} different), most copies of one reading {most_copies}, "
              f"fault {fault!r}")
        assert connects <= 3, f"{connects} connections in 30 s with the broker up"
        assert most_copies <= 2, "a waiting reading went out more than twice"
        assert fault and "full" in fault
        filler.unlink()
        seqs = everything_stored_once(db, unit, 60, collector)
        assert len(seqs) == 500
        assert unit.uplink.buffer_fault is None
    finally:
        unit.close()
        copies.stop()
        link.close()


# -- persistent faults back off -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fault", ["dead link", "refused login", "no collector subscribed"])
def test_a_persistent_fault_costs_a_bounded_number_of_attempts_and_bytes(tmp_path: Path, fault: str,
                                                                         password_broker: LocalBroker) -> None:
    """For 20 s the unit cannot deliver: the link is dead (connection refused), the broker
    refuses its login, or the broker takes its batches but no collector is subscribed (PUBACK
    0x10).  Its attempts double their waits (here from 0.1 s up to 4 s) instead of looping:
    connections and bytes on the link stay bounded, counted on the link itself."""
    link = LinkProxy(password_broker.port).start()
    (tmp_path / "pw").write_text("s3cret-Kukar\n" if fault != "refused login" else "wrong\n")
    unit = Unit(tmp_path, link.port, username="unit-1", password_file=str(tmp_path / "pw"),
                backoff_min="100ms", backoff_max="4s")
    unit.buffer.append_many([signal_reading(DEVICE)] * 2000)
    link.set_up(fault != "dead link")
    unit.start()
    try:
        time.sleep(20)  # an observation window: what the unit's attempts cost over 20 s of real time
        stats = unit.uplink.stats
        attempts = stats.connects + stats.connection_failures
        sent, received = link.bytes_up, link.bytes_down
        print(f"{fault}: {attempts} connection attempts, {stats.batches_sent} batches sent, {sent} bytes up, "
              f"{received} bytes down in 20 s")
        # 0.1 + 0.2 + ... doubling to 4 s, each drawn in [w/2, w]: at most 14 attempts in 20 s.
        assert attempts <= 14
        if fault == "no collector subscribed":
            assert stats.connects == 1 and stats.batches_unrouted >= 2
            assert stats.batches_sent <= 16, "after the first 0x10 the unit probes with one batch at a time"
        else:
            assert stats.batches_sent == 0
        assert sent <= 16 * 50 * 700 + 20_000, "bytes on the link bounded"
        assert unit.buffer.stats().pending == 2000, "nothing counted as delivered"
    finally:
        unit.close()
        link.close()
