"""No reading is lost to broker outages or a bad link between the unit and the broker.

Every scenario runs against a real Mosquitto (with persistence) and checks what a separate
subscriber, standing where the collector stands, actually received:

- the broker is down when the unit starts: readings wait in the buffer and all arrive, in
  order, once the broker is up;
- the broker is killed with SIGKILL five times while a backlog of 10,000 readings drains:
  every reading arrives, the buffer ends empty, and duplicates stay within what the
  batches in flight at each reconnect can account for (at-least-once, deduplicated
  centrally on ``(device, seq)``);
- the link stalls, truncates packets mid-way and drops connections: every reading arrives.
"""
from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from agent.unit.buffer import ReadingBuffer, read_readings, read_stats
from agent.unit.config import Config, load_config
from agent.shared.reading import Reading
from agent.commands.unit import make_service
from agent.sim.broker import LocalBroker
from agent.sim.scenario import mahakam_scenario
from agent.sim.link import LinkFaults, LinkProxy
from agent.sim.route import mahakam_route
from agent.sim.synthetic import SyntheticSource
from agent.unit.uplink import MqttUplink
from agent.shared.polling import wait_until as wait
from tests.support.mqtt_sink import ReadingSink
from tests.support.unit_config import write_config

DEVICE = "boat-03"


# -- helpers ---------------------------------------------------------------------------

def agent_config(tmp_path: Path, port: int, uplink: dict[str, object] | None = None) -> Config:
    # These scenarios test the unit's side of the link against a plain subscriber, where the
    # broker's acknowledgement is all there is (confirm = false); delivery confirmed by the
    # centre's database is tests/test_delivery_confirmed.py.
    path = write_config(tmp_path / "agent.toml", port, tmp_path / "buffer.db",
                        overrides={"uplink": {"confirm": False, **(uplink or {})}}, device=DEVICE)
    return load_config(path)


def synthetic_readings(count: int) -> list[Reading]:
    source = SyntheticSource(DEVICE, mahakam_route(), mahakam_scenario(), 400.0)
    return [source.read() for _ in range(count)]


def pending_seqs(path: Path) -> set[int]:
    """Seqs still waiting in a buffer file."""
    return {r.seq for r in read_readings(path) if r.state == "pending"}


def wait_for_autosave(broker: LocalBroker, after: float, timeout: float = 5.0) -> bool:
    """Mosquitto's persistence file written after ``after`` (wall clock): sessions so far are on disk."""
    db = broker.workdir / "mosquitto.db"
    return wait(lambda: db.exists() and db.stat().st_mtime > after, timeout, interval=0.05)


def wait_until_quiet(sink: ReadingSink, device: str, quiet: float, timeout: float) -> bool:
    """The subscriber connected and nothing new for ``device`` during ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = len(sink.seqs(device)), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = len(sink.seqs(device))
        if now != seen or not sink.client.is_connected():
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def strictly_increasing(seqs: list[int]) -> bool:
    return all(a < b for a, b in pairwise(seqs))


# -- scenarios -------------------------------------------------------------------------

def test_broker_down_at_start_every_reading_arrives_in_order(tmp_path: Path, broker: LocalBroker,
                                                             sink: ReadingSink) -> None:
    """A unit that starts while the broker is unreachable keeps measuring into its buffer;
    when the broker comes up, every reading taken during the outage is delivered, then the
    live ones, each exactly once and in seq order.

    The subscriber's persistent session (saved by Mosquitto at shutdown) holds whatever is
    published before the subscriber itself has reconnected.
    """
    broker.stop()
    config = agent_config(tmp_path, broker.port)
    service = make_service(config)
    uplink = service.uplink
    assert uplink is not None
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), name="agent", daemon=True)
    runner.start()
    try:
        assert wait(lambda: service.buffer.stats().last_seq >= 100, 20), "the agent took no readings during the outage"
        assert not uplink.connected
        outage_last = service.buffer.stats().last_seq
        failures_during_outage = uplink.stats.connection_failures
        broker.start()

        outage = set(range(1, outage_last + 1))
        assert sink.wait_for_seqs(DEVICE, outage, 30), (
            f"missing after the outage: {sorted(outage - sink.unique(DEVICE))[:20]}"
        )
        # Live readings keep flowing once the backlog is through.
        live_target = set(range(1, outage_last + 51))
        assert sink.wait_for_seqs(DEVICE, live_target, 20)
    finally:
        stop.set()
        runner.join(20)
    assert not runner.is_alive()

    stats = read_stats(config.buffer.path)
    pending = pending_seqs(config.buffer.path)
    arrived = sink.seqs(DEVICE)
    lost = set(range(1, stats.last_seq + 1)) - set(arrived) - pending
    print(
        f"\nbroker down at start: {outage_last} readings taken during the outage "
        f"({failures_during_outage} refused connection attempts), {stats.last_seq} readings in all, "
        f"{len(set(arrived))} arrived, {len(pending)} still buffered at stop, "
        f"{sink.duplicates(DEVICE)} duplicates, connects={uplink.stats.connects}"
    )
    assert failures_during_outage >= 1
    assert not lost, f"readings neither delivered nor buffered: {sorted(lost)[:20]}"
    assert all(seq > outage_last for seq in pending), "an outage reading is still waiting"
    assert sink.duplicates(DEVICE) == 0
    assert strictly_increasing(arrived), "arrival order is not seq order"
    assert not sink.bad


@pytest.mark.slow
def test_drain_survives_five_broker_kills(tmp_path: Path, broker: LocalBroker, sink: ReadingSink) -> None:
    """A backlog of 10,000 readings drains completely while the broker is killed (SIGKILL)
    and restarted five times in the middle of it, each time with batches in flight: every
    seq from 1 to 10,000 reaches the subscriber, nothing is left pending, and duplicates
    come only from batches in flight when a connection died (at most max_inflight *
    batch_size per restart).

    Mosquitto acknowledges a QoS 1 message before it is on disk or with the subscriber, so
    kill -9 can lose messages *inside the broker* that no client can get back.  To test the
    unit and not that, each kill happens while a pass-through link in front of the broker
    is held, after everything the broker did acknowledge has reached the subscriber and
    been saved (autosave).  The hold alternates: the link stalls both ways (batches in
    flight are stuck on the way, or their acknowledgements are), or it lets the batches
    reach the broker and the subscriber and holds back only the acknowledgements (every
    batch in flight must be sent again).
    """
    readings, batch_size, max_inflight, restarts = 10_000, 50, 8, 5
    link = LinkProxy(broker.port).start()
    config = agent_config(tmp_path, link.port, {"batch_size": batch_size, "max_inflight": max_inflight})
    buffer = ReadingBuffer(config.buffer.path, DEVICE)
    buffer.append_many(synthetic_readings(readings))
    assert buffer.pending_count() == readings
    # The subscriber's session must be on disk before the first kill or the broker forgets it.
    assert wait_for_autosave(broker, time.time())

    uplink = MqttUplink(config.uplink, DEVICE, buffer, client_id=config.client_id)
    uplink.start()
    at_kill: list[tuple[str, int, int]] = []  # (what was held, pending, batches the dead connection returned)
    try:
        for k in range(1, restarts + 1):
            threshold = readings - k * 1500
            assert wait(lambda t=threshold: uplink.connected and buffer.pending_count() <= t, 30), (
                f"drain stalled before restart {k}: {buffer.pending_count()} pending, {uplink.stats}"
            )
            acks_lost = k % 2 == 1
            if acks_lost:
                link.drop_replies = True
            else:
                link.stall(60.0)
            assert wait_until_quiet(sink, DEVICE, 0.5, 20), f"subscriber still receiving before restart {k}"
            assert wait_for_autosave(broker, time.time())
            returned = uplink.stats.batches_returned
            broker.kill()
            pending = buffer.pending_count()
            # Release the link: the unit now finds the broker gone.
            link.cut()
            link.drop_replies = False
            link.stall(0)
            time.sleep(0.3)  # connections refused while it is down
            broker.start()
            assert wait(lambda: uplink.connected, 20), f"no reconnection after restart {k}: {uplink.stats}"
            at_kill.append(("acks" if acks_lost else "batches", pending, uplink.stats.batches_returned - returned))

        assert wait(lambda: buffer.pending_count() == 0, 60), f"{buffer.pending_count()} still pending, {uplink.stats}"
        everything = set(range(1, readings + 1))
        assert sink.wait_for_seqs(DEVICE, everything, 30), (
            f"missing at the subscriber: {sorted(everything - sink.unique(DEVICE))[:20]}"
        )
    finally:
        uplink.stop()
        link.close()
    stats = buffer.stats()
    buffer.close()

    duplicates = sink.duplicates(DEVICE)
    s = uplink.stats
    print(
        f"\nfive broker kills: {readings} readings, {len(sink.unique(DEVICE))} arrived, {duplicates} duplicates; "
        f"at each kill (held, pending, batches in flight) {at_kill}; reconnects: disconnects={s.disconnects} "
        f"connects={s.connects} failed attempts={s.connection_failures}; batches sent={s.batches_sent} "
        f"acked={s.batches_acked} returned={s.batches_returned}"
    )
    assert len(at_kill) == restarts
    assert all(pending > 0 and in_flight > 0 for _, pending, in_flight in at_kill), "a kill missed the drain"
    assert s.disconnects >= restarts
    assert stats.pending == 0
    assert stats.delivered_total == readings
    assert sink.unique(DEVICE) == set(range(1, readings + 1))
    assert 0 < duplicates <= restarts * max_inflight * batch_size
    assert not sink.bad


@pytest.mark.slow
def test_bad_link_stalls_truncations_and_cuts_lose_nothing(tmp_path: Path, broker: LocalBroker,
                                                           sink: ReadingSink) -> None:
    """Between unit and broker, a link that stalls, truncates bytes mid-packet and drops
    connections (random faults from a fixed seed, plus a stall long enough for the
    keepalive to declare the connection dead, and explicit cuts) still delivers every one of
    3,000 readings; a stalled connection is detected by the keepalive and replaced.
    """
    readings, batch_size, max_inflight = 3_000, 20, 8
    proxy = LinkProxy(broker.port, faults=LinkFaults(cut=0.02, truncate=0.02, stall=0.01, stall_s=1.5), seed=20211)
    proxy.start()
    config = agent_config(tmp_path, proxy.port, {
        "batch_size": batch_size, "max_inflight": max_inflight, "keepalive": "2s", "connect_timeout": "2s",
    })
    buffer = ReadingBuffer(config.buffer.path, DEVICE)
    buffer.append_many(synthetic_readings(readings))
    uplink = MqttUplink(config.uplink, DEVICE, buffer, client_id=config.client_id)
    uplink.start()
    explicit = {"stall": 0, "cut": 0}
    try:
        # Explicit faults at spaced points of the drain, on top of the random ones.
        for threshold, fault in ((2500, "stall"), (1800, "cut"), (1000, "cut")):
            assert wait(lambda t=threshold: uplink.connected and buffer.pending_count() <= t, 60), (
                f"drain stalled before the {fault} at {threshold}: {buffer.pending_count()} pending, {uplink.stats}"
            )
            if fault == "stall":
                # Longer than keepalive detection (about twice the keepalive without a reply).
                proxy.stall(6.0)
                disconnects = uplink.stats.disconnects
                assert wait(lambda d=disconnects: uplink.stats.disconnects > d, 10), "stalled link was not detected"
            else:
                proxy.cut()
            explicit[fault] += 1

        assert wait(lambda: buffer.pending_count() == 0, 90), f"{buffer.pending_count()} still pending, {uplink.stats}"
        everything = set(range(1, readings + 1))
        assert sink.wait_for_seqs(DEVICE, everything, 30), (
            f"missing at the subscriber: {sorted(everything - sink.unique(DEVICE))[:20]}"
        )
    finally:
        uplink.stop()
        proxy.close()
    stats = buffer.stats()
    buffer.close()

    duplicates = sink.duplicates(DEVICE)
    s = uplink.stats
    print(
        f"\nbad link: {readings} readings, {len(sink.unique(DEVICE))} arrived, {duplicates} duplicates; "
        f"proxy: {proxy.connections} connections, {proxy.cuts} cuts, {proxy.truncations} truncations, "
        f"{proxy.stalls} stalls (explicit: {explicit['stall']} stall, {explicit['cut']} cuts); "
        f"uplink: connects={s.connects} disconnects={s.disconnects} failed attempts={s.connection_failures} "
        f"batches sent={s.batches_sent} acked={s.batches_acked} returned={s.batches_returned}"
    )
    assert stats.pending == 0
    assert sink.unique(DEVICE) == set(range(1, readings + 1))
    assert proxy.truncations >= 1 and proxy.cuts >= explicit["cut"] and proxy.stalls >= 2
    # Each connection can leave at most its in-flight batches to be sent again.
    assert duplicates <= s.connects * max_inflight * batch_size
    assert not sink.bad
