"""``blankspot demo``: a time-compressed boat trip up the Mahakam, end to end.

A local broker (Mosquitto, or embedded amqtt), a subscriber standing in for the centre, and
the agent with its synthetic source.  Between agent and broker sits a LinkProxy that follows
the coverage scenario: where the boat has no service the link is down, so the readings
taken in the blank spot pile up in the buffer and drain when the signal returns.
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.config import parse_config
from agent.protocol import PayloadError, decode_batch, split_topic
from agent.service import AgentService
from agent.sim.broker import BrokerError, LocalBroker, mosquitto_path
from agent.sim.link import LinkProxy
from agent.sim.route import mahakam_route
from agent.buffer import read_stats

DEVICE = "demo-boat"
PREFIX = "blankspot/v1"


class DemoError(RuntimeError):
    """The demo could not run (no broker available, port trouble)."""


@dataclass
class DemoSubscriber:
    """Counts what reaches the centre: readings per seq, and blank-spot readings."""

    port: int
    protocol: str
    seen: Counter = field(default_factory=Counter)
    no_service: set[int] = field(default_factory=set)
    bad: int = 0
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        v5 = self.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="demo-centre", clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/+/readings", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise DemoError("the demo subscriber could not subscribe to the local broker")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            device, _ = split_topic(PREFIX, message.topic)
            for reading in decode_batch(message.payload, device):
                self.seen[reading.seq] += 1
                if reading.kind == "signal" and reading.part.rat == "NONE":
                    self.no_service.add(reading.seq)
        except PayloadError:
            self.bad += 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_demo(trip_seconds: float = 40.0, workdir: str | None = None, broker_kind: str = "auto",
             out: Callable[[str], None] = print) -> int:
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="blankspot-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    kind = None if broker_kind == "auto" else broker_kind
    if kind == "mosquitto" and mosquitto_path() is None:
        raise DemoError("mosquitto is not installed; use --broker amqtt or install mosquitto")
    broker = LocalBroker(kind, workdir=work / "broker")
    try:
        broker.start()
    except BrokerError as exc:
        raise DemoError(str(exc)) from None
    link = LinkProxy(broker.port).start()
    centre = DemoSubscriber(broker.port, broker.protocol)
    try:
        centre.start()
        return _trip(trip_seconds, work, broker, link, centre, out)
    finally:
        centre.stop() if hasattr(centre, "client") else None
        link.close()
        broker.stop()


def _trip(trip_seconds: float, work: Path, broker: LocalBroker, link: LinkProxy, centre: DemoSubscriber,
          out: Callable[[str], None]) -> int:
    route = mahakam_route()
    speed_kmh = route.length_m / trip_seconds * 3.6
    interval = max(0.02, trip_seconds / 400)
    config = parse_config(
        f"""
        [device]
        id = "{DEVICE}"
        [buffer]
        path = "{work / 'buffer.db'}"
        [uplink]
        host = "127.0.0.1"
        port = {link.port}
        protocol = "{broker.protocol}"
        backoff_min = "200ms"
        backoff_max = "1s"
        keepalive = "5s"
        batch_size = 50
        [source]
        kind = "synthetic"
        interval = "{interval}s"
        speed_kmh = {speed_kmh:.1f}
        """,
        "demo config",
    )
    out(f"blankspot demo: a boat travels {route.length_m / 1000:.0f} km up the Mahakam, Samarinda to Kota Bangun,")
    out(f"in {trip_seconds:.0f} s ({speed_kmh / 3.6 / 1000:.1f} km per second). Broker: {broker.kind} on port {broker.port}.")
    out(f"Work folder: {work}")
    out("")
    out("   time    km  where                     signal                   link  buffered  delivered")
    service = AgentService(config, config_path="demo config")
    stop = threading.Event()
    agent_thread = threading.Thread(target=service.run, args=(stop, 30.0), name="agent", daemon=True)
    agent_thread.start()
    start = time.monotonic()
    next_line = 0.0
    max_backlog = 0
    outage_started: float | None = None
    outages: list[float] = []
    while (elapsed := time.monotonic() - start) < trip_seconds:
        radio = service.source.radio()
        covered = radio.tower is not None
        if link.up and not covered:
            outage_started = elapsed
        elif not link.up and covered and outage_started is not None:
            outages.append(elapsed - outage_started)
        link.set_up(covered)
        pending = service.buffer.pending_count()
        max_backlog = max(max_backlog, pending)
        if elapsed >= next_line:
            point, _ = service.source.where()
            where = _nearest_town(route, point.distance_m)
            signal = "NO SERVICE (blank spot)" if not covered else f"LTE {radio.rsrp_dbm:6.1f} dBm {radio.tower.operator}"
            out(f"  {elapsed:5.1f}s {point.distance_m / 1000:5.1f}  {where:<24}  {signal:<24} {'up' if link.up else 'DOWN':<5}"
                f"{pending:>8}  {len(centre.seen):>9}")
            next_line += max(1.0, trip_seconds / 20)
        time.sleep(0.05)
    # Kota Bangun has service: the agent stops taking readings and gets time to drain.
    link.set_up(True)
    drain_start = time.monotonic()
    stop.set()
    agent_thread.join(45)
    drain_s = time.monotonic() - drain_start
    stats = read_stats(config.buffer.path)
    taken = stats.last_seq
    remaining = stats.pending
    taken_in_blank = _count_no_service(config.buffer.path)
    time.sleep(0.3)  # let the last acknowledged batch reach the subscriber
    delivered = len(centre.seen)
    duplicates = sum(n - 1 for n in centre.seen.values())
    summary = {
        "readings_taken": taken,
        "taken_in_blank_spot": taken_in_blank,
        "most_buffered_at_once": max_backlog,
        "delivered_unique": delivered,
        "duplicates": duplicates,
        "still_buffered": remaining,
        "blank_spot_seconds": round(sum(outages), 1),
        "final_drain_seconds": round(drain_s, 2),
        "bad_payloads": centre.bad,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    out("")
    out("Summary")
    out(f"  readings taken               {taken}")
    out(f"  taken inside the blank spot  {taken_in_blank} (no service; all buffered on the unit)")
    out(f"  most readings buffered       {max_backlog}")
    out(f"  delivered to the centre      {delivered} unique, {duplicates} duplicates (dropped by seq)")
    out(f"  blank-spot readings received {len(centre.no_service)}")
    out(f"  still on the unit            {remaining}")
    out(f"  summary written to           {work / 'summary.json'}")
    ok = delivered == taken and remaining == 0 and centre.bad == 0 and len(centre.no_service) == taken_in_blank
    out("  result                       " + ("every reading arrived exactly once after dedup" if ok else "READINGS MISSING"))
    return 0 if ok else 1


def _count_no_service(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT count(*) FROM readings WHERE kind='signal' AND json_extract(body, '$.signal.rat') = 'NONE'"
        ).fetchone()[0]
    finally:
        conn.close()


def _nearest_town(route, distance_m: float) -> str:
    best = min(range(len(route.waypoints)), key=lambda i: abs(route.cumulative[i] - distance_m))
    gap = (distance_m - route.cumulative[best]) / 1000
    name = route.waypoints[best].name
    if abs(gap) < 2:
        return name
    return f"{abs(gap):.0f} km {'past' if gap > 0 else 'before'} {name}"
