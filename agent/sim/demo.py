"""``blankspot demo``: a time-compressed boat trip up the Mahakam, end to end, with real parts.

- A simulated boat: a GPS receiver and a Quectel EC25 modem on pseudo-terminals, travelling
  together from Samarinda to Kota Bangun; between Sebulu and Muara Kaman the modem has no
  service (the coverage scenario), and a stretch of riverbank forest hides the sky.
- A local broker (Mosquitto, or embedded amqtt), reached through a link that goes down
  exactly where the modem has no service.
- The agent as a unit runs it: ``source.kind = "devices"``, the mobile schedule, the buffer.
- The collector (an MQTT 5 shared subscription into a SQLite store; with amqtt, which speaks
  only MQTT 3.1.1, a plain subscriber feeds the same store) and, at the end, the coverage map.
- With ``village``: a fixed probe at Sebulu whose data quota runs out during the trip, alive by
  SMS through the centre's SMS gateway (:mod:`agent.sim.village`).
"""
from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import paho.mqtt.client as mqtt

from agent.unit.buffer import read_readings, read_stats
from agent.centre.coverage import DEFAULT_RESOLUTION, Thresholds
from agent.centre.mapview import MapOptions, map_summary
from agent.centre.store import open_store
from agent.centre.store.base import Store, StoreError
from agent.centre.survey import NEEDS_H3, Survey, map_page
from agent.unit.config import parse_config
from agent.shared.mqtt import new_client
from agent.shared.protocol import PayloadError, decode_batch, split_topic
from agent.shared.reading import Event
from agent.unit.probes import FIELD_TICK_S
from agent.unit.service import AgentService
from agent.sim.boat import SimulatedBoat
from agent.sim.broker import BrokerError, LocalBroker, mosquitto_path
from agent.sim.demo_units import unit_toml
from agent.sim.scenario import mahakam_scenario
from agent.sim.link import LinkProxy
from agent.sim.route import Route, mahakam_route

if TYPE_CHECKING:
    from agent.sim.village import VillageProbe

DEVICE = "demo-boat"
PREFIX = "blankspot/v1"
BOAT_SPEED_KMH = 25.0            # a loaded longboat on the Mahakam
CANOPY_M = (60_000.0, 63_000.0)  # forest on both banks: no sky for the GPS
MAP_TITLE = "blankspot demo: Mahakam, Samarinda - Kota Bangun"


class DemoError(RuntimeError):
    """The demo could not run (no broker available, port trouble)."""


@dataclass
class PlainSubscriber:
    """For a broker without MQTT 5 (amqtt): subscribe and store, as the collector would."""

    port: int
    store: Store
    bad: int = 0
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.client = new_client("demo-centre", protocol="3.1.1", persistent=True)
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
            self.store.insert_readings(decode_batch(message.payload, device))
        except PayloadError:
            self.bad += 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Centre:
    """The central side of the demo: a collector (or plain subscriber) and its store."""

    def __init__(self, broker: LocalBroker, db: Path) -> None:
        self.db = db
        self.store = open_store(str(db))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._plain: PlainSubscriber | None = None
        if broker.protocol == "5":
            from agent.centre.ingest import Collector, CollectorSettings, parse_broker_url

            self.collector = Collector(CollectorSettings(parse_broker_url(f"mqtt://127.0.0.1:{broker.port}"),
                                                         client_id="demo-collector"), self.store)
            self._thread = threading.Thread(target=self.collector.run, args=(self._stop,), name="collector",
                                            daemon=True)
            self._thread.start()
            if not self.collector.subscribed.wait(15):
                raise DemoError("the collector could not subscribe to the local broker")
        else:
            self._plain = PlainSubscriber(broker.port, self.store)
            self._plain.start()

    def stored(self, device: str = DEVICE) -> int:
        """Readings of ``device`` stored (the boat's, unless another is named)."""
        return self.store.ledger().get(device, {}).get("stored", 0)

    def duplicates(self) -> int:
        return self.collector.stats.duplicates if self._plain is None else 0

    def stop(self) -> None:
        if self._plain is not None:
            self._plain.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        self.store.close()


# The shortest trip the schedule can be configured for (a signal reading at most every 50 ms).
MIN_TRIP_SECONDS = 15.0
# A river boat takes a signal reading every 50-70 m; the demo's trip one every 100 m (900 on
# the route), so that most cells have the readings they need for a class at the defaults of
# map, report and export, which the demo draws with.  The agent's loop starts at most one
# every FIELD_TICK_S on the move, which is what makes the default trip three minutes long; a shorter trip
# takes fewer readings, and more of its cells stay unknown.
TRIP_SIGNAL_READINGS = 900
DEFAULT_TRIP_SECONDS = TRIP_SIGNAL_READINGS * FIELD_TICK_S


def signal_interval(trip_seconds: float) -> float:
    """Seconds between two signal readings on a trip of ``trip_seconds``."""
    return max(trip_seconds / TRIP_SIGNAL_READINGS, FIELD_TICK_S)


def run_demo(trip_seconds: float = DEFAULT_TRIP_SECONDS, workdir: str | None = None, broker_kind: str = "auto",
             out: Callable[[str], None] = print, route: Route | None = None, village: bool = False) -> int:
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="blankspot-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    kind = None if broker_kind == "auto" else broker_kind
    if kind == "mosquitto" and mosquitto_path() is None:
        raise DemoError("mosquitto is not installed; use --broker amqtt or install mosquitto")
    route = route or mahakam_route()
    with ExitStack() as stack:
        broker = LocalBroker(kind, workdir=work / "broker")
        try:
            broker.start()
        except BrokerError as exc:
            raise DemoError(str(exc)) from None
        stack.callback(broker.stop)
        link = LinkProxy(broker.port).start()
        stack.callback(link.close)
        time_scale = route.length_m / (BOAT_SPEED_KMH / 3.6) / trip_seconds
        boat = SimulatedBoat(route, mahakam_scenario(), BOAT_SPEED_KMH, time_scale=time_scale, rate_hz=5,
                             no_sky=[CANOPY_M], workdir=work / "devices")
        stack.callback(boat.close)
        centre = Centre(broker, work / "collector.db")
        stack.callback(centre.stop)
        boat.follow_link(link)
        probe = None
        if village:
            from agent.sim.village import VillageProbe

            probe = VillageProbe(work, broker, centre.db, trip_seconds, time_scale)
            stack.callback(probe.close)
        return _trip(trip_seconds, work, broker, link, boat, centre, out, probe)
    raise AssertionError("unreachable")


def _config(work: Path, link: LinkProxy, broker: LocalBroker, boat: SimulatedBoat, trip_seconds: float):
    return parse_config(
        unit_toml(DEVICE, work, link.port, broker, boat.modem_port) + f"""
        [gps]
        source = "serial"
        port = "{boat.gps_port}"
        max_age = "1s"
        [schedule]
        mode = "mobile"
        signal_interval = "{signal_interval(trip_seconds):.3f}s"
        signal_distance = 1000000.0
        latency_interval = "{trip_seconds / 6:.1f}s"
        scan_interval = "0s"
        [latency]
        method = "tcp"
        count = 3
        target = "127.0.0.1:{link.port}"
        """,
        "demo config",
    )


def _trip(trip_seconds: float, work: Path, broker: LocalBroker, link: LinkProxy, boat: SimulatedBoat,
          centre: Centre, out: Callable[[str], None], probe: "VillageProbe | None" = None) -> int:
    route = boat.route
    config = _config(work, link, broker, boat, trip_seconds)
    hours = route.length_m / (BOAT_SPEED_KMH / 3.6) / 3600
    out(f"blankspot demo: a boat travels {route.length_m / 1000:.0f} km up the Mahakam at {BOAT_SPEED_KMH:.0f} km/h "
        f"({hours:.1f} h), shown in {trip_seconds:.0f} s.")
    out(f"Simulated GPS on {boat.gps_port}, Quectel EC25 on {boat.modem_port}; broker {broker.kind} on port "
        f"{broker.port}; collector into {centre.db.name}.")
    if probe is not None:
        out(f"Village probe {probe.device} at the kantor desa of Sebulu: Quectel EC25 on {probe.modem.port}, "
            f"SIM {probe.number}; the centre's SMS gateway on {probe.centre_modem.port} ({probe.centre_number}).")
    out(f"Work folder: {work}")
    out("")
    out("   time    km  where                     signal                   link  buffered  stored")
    service = AgentService(config, config_path="demo config")
    stop = threading.Event()
    agent_thread = threading.Thread(target=service.run, args=(stop, 30.0), name="agent", daemon=True)
    agent_thread.start()
    start = time.monotonic()
    next_line = 0.0
    max_backlog = 0
    village = next(i for i, w in enumerate(route.waypoints) if w.name == "Muara Kaman")
    tagged = False
    while not boat.arrived() and time.monotonic() - start < trip_seconds * 1.5:
        elapsed = time.monotonic() - start
        pending = service.buffer.pending_count()
        max_backlog = max(max_backlog, pending)
        if not tagged and boat.distance_m() >= route.cumulative[village]:
            # The technician presses the unit's button at the village landing (the panel's short press).
            service.tag(Event("tag", "kantor desa Muara Kaman", {"source": "button"}))
            tagged = True
        if probe is not None:
            for line in probe.poll(elapsed, centre.store):
                out(line)
        if elapsed >= next_line:
            radio = boat.radio()
            distance = boat.distance_m()
            signal = "NO SERVICE (blank spot)" if radio.tower is None else \
                f"LTE {radio.rsrp_dbm:6.1f} dBm {radio.tower.operator}"
            out(f"  {elapsed:5.1f}s {distance / 1000:5.1f}  {_nearest_town(route, distance):<24}  {signal:<24} "
                f"{'up' if link.up else 'DOWN':<5}{pending:>8}  {centre.stored():>6}")
            next_line += max(1.0, trip_seconds / 20)
        time.sleep(0.05)
    # Kota Bangun has service: the agent stops taking readings and gets time to drain.
    drain_start = time.monotonic()
    stop.set()
    service.wake()
    agent_thread.join(45)
    stats = read_stats(config.buffer.path)
    taken = stats.last_seq
    deadline = time.monotonic() + 20
    while centre.stored() < taken and time.monotonic() < deadline:
        time.sleep(0.1)
    drain_s = time.monotonic() - drain_start
    stored = centre.stored()
    duplicates = centre.duplicates()
    taken_in_blank = _count_no_service(config.buffer.path)
    village = _village_end(probe, centre) if probe is not None else None
    map_path = work / "map.html"
    map_status = _draw_map(centre.db, map_path)
    summary = {
        "readings_taken": taken,
        "taken_in_blank_spot": taken_in_blank,
        "most_buffered_at_once": max_backlog,
        "delivered_unique": stored,
        "duplicates": duplicates,
        "still_buffered": stats.pending,
        "final_drain_seconds": round(drain_s, 2),
        "map": str(map_path) if map_status == 0 else None,
    }
    if village is not None:
        summary["village"] = village["summary"]
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    out("")
    out("Summary")
    out(f"  readings taken               {taken}")
    out(f"  taken inside the blank spot  {taken_in_blank} (no service; buffered on the unit until the signal returned)")
    out(f"  most readings buffered       {max_backlog}")
    out(f"  stored by the collector      {stored} unique, {duplicates} duplicates dropped on (device, seq)")
    out(f"  still on the unit            {stats.pending}")
    out(f"  coverage map                 {map_path if map_status == 0 else 'NOT WRITTEN'}")
    out(f"  summary written to           {work / 'summary.json'}")
    delivered = stored == taken and stats.pending == 0 and taken_in_blank > 0
    alive = None
    if village is not None:
        for line in village["lines"]:
            out(line)
        alive = village["alive"]
    out("  result                       " + _verdict(delivered, map_status == 0, alive))
    return 0 if delivered and map_status == 0 and alive is not False else 1


def _verdict(delivered: bool, mapped: bool, alive_by_sms: bool | None = None) -> str:
    """The demo's last line: delivery first, then the step after it that failed, if one did;
    with the village probe, whether the centre knows it is alive by SMS."""
    if not delivered:
        text = "READINGS MISSING"
    elif not mapped:
        text = "every reading arrived exactly once after dedup; the map step failed (reason above)"
    else:
        text = "every reading arrived exactly once after dedup"
    if alive_by_sms is True:
        text += "; the village probe is alive by SMS"
    elif alive_by_sms is False:
        text += "; NO HEARTBEAT from the village probe"
    return text


def _village_end(probe: "VillageProbe", centre: Centre) -> dict:
    """The village probe at the end of the trip: its heartbeat filed (waited for a little when
    the trip was too short for it), and the fleet as ``blankspot units`` prints it."""
    from agent.centre.fleet import fleet
    from agent.sim.village import units_text

    probe.wait_filed(centre.store, 15.0)
    view = next((v for v in fleet(centre.store) if v.device == probe.device), None)
    sms = view.alive_by_sms if view is not None else None
    alive = sms is not None and sms["reason"] == "quota_exhausted"
    lines = ["", f"Village probe {probe.device}",
             f"  data quota exhausted at     {probe.quota_at:.1f}s (SMS from {probe.operator}); "
             f"heartbeats by SMS after {probe.after}, every {probe.every} (1 h and 6 h in trip time)",
             f"  heartbeats sent / filed      {probe.heartbeats_sent()} / {len(probe.filed_counters)}",
             f"  the fleet, as blankspot units --db {centre.db} prints it:"]
    lines += [f"    {line}" if line else "" for line in units_text(centre.store).splitlines()]
    lines.append(f"  the fleet panel of the live map (blankspot serve --db {centre.db}) shows the same; "
                 "the offline map.html has no fleet panel")
    return {"alive": alive, "lines": lines,
            "summary": {"device": probe.device, "heartbeats_sent": probe.heartbeats_sent(),
                        "heartbeats_filed": len(probe.filed_counters), "alive_by_sms": sms}}


def _draw_map(db: Path, map_path: Path) -> int:
    """Draw the coverage map of the demo's database at ``map_path``, as ``blankspot map`` does,
    and say so on stderr: 0 when it is written, 1 (with the reason) when it is not."""
    try:
        store = open_store(str(db))
    except StoreError as exc:
        print(f"blankspot: {exc}", file=sys.stderr)
        return 1
    try:
        # The defaults of blankspot map, report and export: those commands on the demo's
        # database show the cells its map shows.
        survey = Survey(store, DEFAULT_RESOLUTION, Thresholds())
        html, data = map_page(survey, MapOptions(title=MAP_TITLE))
    except StoreError as exc:
        print(f"blankspot: blankspot map: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name != "h3":
            raise
        print(f"blankspot: blankspot map: {NEEDS_H3}", file=sys.stderr)
        return 1
    finally:
        store.close()
    try:
        map_path.write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"blankspot: cannot write {map_path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{map_path}: {map_summary(data)}", file=sys.stderr)
    skipped = survey.summary()
    if skipped:
        print(f"blankspot map: warning: {skipped}", file=sys.stderr)
    return 0


def _count_no_service(path: Path) -> int:
    return sum(1 for stored in read_readings(path)
               if stored.kind == "signal" and json.loads(stored.body)["signal"]["rat"] == "NONE")


def _nearest_town(route: Route, distance_m: float) -> str:
    best = min(range(len(route.waypoints)), key=lambda i: abs(route.cumulative[i] - distance_m))
    gap = (distance_m - route.cumulative[best]) / 1000
    name = route.waypoints[best].name
    if abs(gap) < 2:
        return name
    return f"{abs(gap):.0f} km {'past' if gap > 0 else 'before'} {name}"
