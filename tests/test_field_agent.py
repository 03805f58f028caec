"""The agent with its devices: a simulated boat (GPS and modem on pseudo-terminals) on the
Mahakam, a real Mosquitto behind a link that goes down where the modem has no service."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path


from agent.commands.unit import make_service
from agent.shared.clock import TimeKeeper
from agent.unit.buffer import read_readings
from agent.unit.config import load_config
from agent.shared.geo import haversine_m
from agent.shared.polling import wait_until
from agent.shared.reading import parse_time
from agent.unit.service import AgentService, state_path
from agent.sim.boat import SimulatedBoat
from agent.sim.link import LinkProxy
from agent.sim.route import Route, mahakam_route
from tests.support.field_unit import SCENARIO, TOWN, field_config, nearest_on_route, run_in_thread
from tests.support.unit_config import write_config

# Tenggarong to Kota Bangun: 62 km, of which Sebulu to Muara Kaman (about 10-52 km) has no service.
UPRIVER = Route(mahakam_route().waypoints[3:])


def test_boat_through_a_blank_spot_delivers_every_reading_later_in_order(tmp_path: Path, broker, sink) -> None:
    link = LinkProxy(broker.port).start()
    with SimulatedBoat(UPRIVER, SCENARIO, 30.0, time_scale=400, rate_hz=5, workdir=tmp_path / "dev") as boat:
        boat.follow_link(link)
        config = load_config(field_config(tmp_path, link.port, boat))
        service = AgentService(config)
        stop, thread = run_in_thread(service)
        assert wait_until(boat.arrived, 60), "the boat reached Kota Bangun"
        stop.set()
        thread.join(40)
    link.close()
    assert not thread.is_alive()
    stored = list(read_readings(config.buffer.path))
    taken = stored[-1].seq
    blank = [body for body in (json.loads(r.body) for r in stored if r.kind == "signal")
             if body["signal"]["rat"] == "NONE"]
    assert wait_until(lambda: len(sink.unique("boat-1")) >= taken, 20)
    got = sink.readings("boat-1")
    seqs = sorted({r.seq for r in got})
    assert seqs == list(range(1, taken + 1)), "every reading arrived (exactly once after dedup on seq)"
    first_arrival = {}
    for r in got:
        first_arrival.setdefault(r.seq, r)
    ordered = [first_arrival[s] for s in seqs]
    signals = [r for r in ordered if r.kind == "signal"]
    print(f"{taken} readings, {len(signals)} signal, {len(blank)} in the blank spot, link changed {boat.link_changes} times, "
          f"{sink.duplicates('boat-1')} duplicates")
    assert len(blank) >= 20 and boat.link_changes >= 2
    # True positions: every placed reading lies on the river, and the boat only moves upstream.
    along = []
    for r in signals:
        if r.position is None:
            continue
        assert nearest_on_route(UPRIVER, r.position.lat, r.position.lon) < 120
        along.append(min(range(0, int(UPRIVER.length_m), 200),
                         key=lambda d: haversine_m(r.position.lat, r.position.lon, UPRIVER.at(d).lat, UPRIVER.at(d).lon)))
    assert len(along) >= 0.8 * len(signals)
    assert all(b >= a - 1000 for a, b in zip(along, along[1:])), "positions follow the trip, in seq order"
    # The blank-spot readings were placed inside the blank stretch, and times follow seq.
    for body in blank:
        if body["position"] is not None:
            radio = SCENARIO.radio_at(body["position"]["lat"], body["position"]["lon"], 0)
            near_edge = any(haversine_m(body["position"]["lat"], body["position"]["lon"], t.lat, t.lon) < t.range_m * 1.15
                            for t in SCENARIO.towers)
            assert radio.tower is None or near_edge
    # A reading is stamped when its measurement starts and numbered when it is stored, so a
    # 2 s latency probe may take a seq after signal readings that began later; one kind's
    # measurements never overlap, so within a kind time follows seq.
    times = [r.time for r in signals]
    assert times == sorted(times)


def test_a_modem_that_stops_answering_is_reset_and_the_outage_recorded(tmp_path: Path, broker) -> None:
    with SimulatedBoat(TOWN, SCENARIO, 20.0, time_scale=10, rate_hz=2, workdir=tmp_path / "dev") as boat:
        config = load_config(field_config(tmp_path, broker.port, boat, schedule={"signal_interval": "300ms"}))
        service = AgentService(config)
        stop, thread = run_in_thread(service)
        try:
            assert wait_until(lambda: service.buffer.pending_count() + service.taken >= 5, 20)
            boat.modem.mute(True)  # the firmware hangs: it reads commands and answers none

            def resetting() -> bool:
                modem = service.probes.modem.modem
                return modem is not None and any(r.action == "reopen" and not r.ok for r in modem.recoveries)

            # A hung EC25 takes AT+CFUN=1,1 once its command parser frees; the simulated one
            # stays mute, so the test plays that part: the modem answers again once the agent
            # has given up reopening the port and is resetting it.
            assert wait_until(resetting, 40), "the agent tried reopening the port first"
            boat.modem.mute(False)
            taken_after_reset = service.taken
            assert wait_until(lambda: service.taken >= taken_after_reset + 5, 30), "and carried on"
        finally:
            stop.set()
            thread.join(30)
    bodies = [json.loads(r.body) for r in read_readings(config.buffer.path)]
    events = [b["event"] for b in bodies if b["kind"] == "event"]
    recoveries = [e for e in events if e["type"] == "modem_recovery"]
    assert [(e["data"]["action"], e["data"]["ok"]) for e in recoveries] == [("reopen", False), ("reset", True)]
    last_signals = [b["signal"] for b in bodies if b["kind"] == "signal"][-3:]
    assert all(s["error"] is None and s["rat"] == "LTE" for s in last_signals)


def _readings_of_a_pi_in_1970(tmp_path: Path, receiver_start: datetime, done: Callable[[AgentService], bool]) -> list[dict]:
    """A boat whose receiver starts at ``receiver_start`` and a Pi whose clock says 2 January
    1970, no broker (a blank spot: the readings wait in the buffer, where they get corrected):
    the agent runs until ``done``; the readings it buffered."""
    with SimulatedBoat(TOWN, SCENARIO, 20.0, time_scale=1, rate_hz=5, start_time=receiver_start,
                       workdir=tmp_path / "dev") as boat:
        config = load_config(field_config(tmp_path, 1, boat))
        keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: 86400.0)
        service = AgentService(config, clock=keeper)
        stop, thread = run_in_thread(service)
        try:
            assert wait_until(lambda: service.taken >= 10 and keeper.source == "gps" and done(service), 20)
        finally:
            stop.set()
            thread.join(30)
    return [json.loads(r.body) for r in read_readings(config.buffer.path)]


def _all_at_gps_time_near(bodies: list[dict], start: datetime) -> None:
    assert bodies and all(b["time_source"] == "gps" for b in bodies), "none left in 1970"
    for body in bodies:
        moment = parse_time(body["time"])
        assert start - timedelta(seconds=2) <= moment <= start + timedelta(seconds=60)


def test_unsynchronised_clock_gives_readings_gps_time(tmp_path: Path) -> None:
    gps_start = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)  # after the release date
    _all_at_gps_time_near(_readings_of_a_pi_in_1970(tmp_path, gps_start, lambda service: True), gps_start)


def test_a_receiver_with_the_week_rollover_bug_gives_corrected_times_and_one_event(tmp_path: Path) -> None:
    """The boat's receiver sends dates 1024 weeks early (2007 for 2026): readings get the
    corrected GPS time, and one gps_date_corrected event, placed on the route, says so."""
    true_start = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)
    bodies = _readings_of_a_pi_in_1970(tmp_path, true_start - timedelta(weeks=1024),
                                       lambda service: bool(_events(service, "gps_date_corrected")))
    events = [b for b in bodies if b["kind"] == "event" and b["event"]["type"] == "gps_date_corrected"]
    print(f"{len(bodies)} readings; {events}")
    assert len(events) == 1
    assert events[0]["event"]["data"] == {"receiver_date": "2007-04-20", "corrected_date": "2026-12-04",
                                          "weeks": 1024}
    assert events[0]["time_source"] == "gps" and events[0]["position"] is not None
    _all_at_gps_time_near(bodies, true_start)


def test_the_watchdog_is_fed_while_healthy_and_starved_when_the_loop_hangs(tmp_path: Path, broker) -> None:
    sock_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.settimeout(0.2)
    env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    path = write_config(tmp_path / "agent.toml", broker.port, tmp_path / "buffer.db", device="unit-w")
    service = make_service(load_config(path), environ=env)
    hang = threading.Event()
    release = threading.Event()
    real_store = service.store

    def store(readings):  # the main loop wedges here (a stuck disk write, say) once asked to
        if hang.is_set():
            release.wait()
        real_store(readings)

    service.store = store  # type: ignore[method-assign]
    stop, thread = run_in_thread(service)
    received: list[tuple[float, str]] = []

    def listen(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                received.append((time.monotonic(), listener.recv(4096).decode()))
            except TimeoutError:
                pass

    try:
        listen(3.0)
        healthy = [m for _, m in received if "WATCHDOG=1" in m]
        assert any("READY=1" in m for _, m in received) and len(healthy) >= 4, received
        hang.set()
        hung_at = time.monotonic()
        received.clear()
        listen(4.0)
        late = [t - hung_at for t, m in received if "WATCHDOG=1" in m]
        print(f"healthy: {len(healthy)} pings in 3 s; after the hang: last ping {max(late, default=0):.2f} s in")
        assert all(t < 1.6 for t in late), "pings stop once the loop has been silent for WatchdogSec"
    finally:
        release.set()
        stop.set()
        thread.join(30)
        listener.close()


def test_panel_button_tags_the_spot_with_its_position(tmp_path: Path, broker) -> None:
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    with SimulatedBoat(TOWN, SCENARIO, 20.0, time_scale=1, rate_hz=5, workdir=tmp_path / "dev") as boat:
        path = field_config(tmp_path, broker.port, boat, panel={
            "enabled": True, "gps_led": 5, "signal_led": 6, "uplink_led": 13, "backlog_led": 19, "button_pin": 26,
            "tag_label": "kantor desa"})
        steady = [0.0]
        service = AgentService(load_config(path), pin_factory=factory, clock=TimeKeeper(steady=lambda: steady[0]))
        stop, thread = run_in_thread(service)
        try:
            assert wait_until(lambda: service.probes.gps is not None and service.probes.gps.state == "3d", 15)
            assert wait_until(lambda: service.panel.showing().get("gps") == "on", 10), service.panel.showing()
            button = factory.pin(26)
            button.drive_low()
            steady[0] += 0.3  # a short press
            button.drive_high()
            assert wait_until(lambda: _events(service, "tag"), 10)
        finally:
            stop.set()
            thread.join(30)
    tag = _events(service, "tag")[0]
    assert tag["event"]["message"] == "kantor desa" and tag["position"] is not None
    assert nearest_on_route(TOWN, tag["position"]["lat"], tag["position"]["lon"]) < 50


def _events(service: AgentService, kind: str) -> list[dict]:
    events = (json.loads(r.body) for r in read_readings(service.config.buffer.path) if r.kind == "event")
    return [body for body in events if body["event"]["type"] == kind]


def test_sigterm_stops_cleanly_keeping_every_reading(tmp_path: Path, broker) -> None:
    """The buffer file is left intact: SQLite's integrity check is about the file itself, so asked in SQL."""
    with SimulatedBoat(TOWN, SCENARIO, 20.0, time_scale=5, rate_hz=5, workdir=tmp_path / "dev") as boat:
        path = field_config(tmp_path, 1, boat)  # no broker: everything stays buffered
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        config = load_config(path)
        assert wait_until(lambda: state_path(config).exists() and json.loads(state_path(config).read_text())
                          .get("readings_this_run", 0) >= 5, 30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    state = json.loads(state_path(config).read_text())
    with sqlite3.connect(f"file:{config.buffer.path}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    stored = len(list(read_readings(config.buffer.path)))
    assert state["running"] is False and stored == state["readings_this_run"] >= 5


def test_fixed_probe_skips_a_throughput_test_the_budget_cannot_afford(tmp_path: Path, broker) -> None:
    """A kantor desa probe whose day's quota is spent: the test is not run, an event says why."""
    with SimulatedBoat(TOWN, SCENARIO, 0.0, time_scale=1, rate_hz=2, workdir=tmp_path / "dev") as boat:
        path = field_config(tmp_path, broker.port, boat, schedule={
            "mode": "fixed", "quiet_after_start": "0s", "throughput_interval": "1h", "signal_interval": "1s"},
            throughput={"url": "http://127.0.0.1:9/"}, budget={"daily": "1MB", "uplink_reserve": "0B"})
        service = AgentService(load_config(path))
        stop, thread = run_in_thread(service)
        try:
            assert wait_until(lambda: _events(service, "budget_skip"), 20)
        finally:
            stop.set()
            thread.join(30)
    skip = _events(service, "budget_skip")[0]
    assert skip["event"]["data"]["limit"] == 1_000_000
    assert not _events(service, "probe_failed")


def test_power_failing_flushes_and_powers_off(tmp_path: Path, broker, sink) -> None:
    """The vehicle's ignition goes off: after power_fail_delay the agent pushes its backlog,
    stops cleanly and runs the shutdown command."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    marker = tmp_path / "powered-off"
    path = write_config(tmp_path / "agent.toml", broker.port, tmp_path / "buffer.db", {
        "panel": {"enabled": True, "power_pin": 21, "power_fail_delay": "1s", "shutdown_command": f"touch {marker}"}},
        device="unit-p")
    service = make_service(load_config(path), pin_factory=factory)
    stop, thread = run_in_thread(service)
    assert wait_until(lambda: service.taken >= 20, 10)
    factory.pin(21).drive_low()  # external power gone
    thread.join(40)
    assert not thread.is_alive() and stop.is_set(), "the agent stopped by itself"
    assert marker.exists(), "and ran the shutdown command"
    stored = list(read_readings(tmp_path / "buffer.db"))
    taken, waiting = stored[-1].seq, sum(r.state == "pending" for r in stored)
    assert waiting == 0 and sink.wait_for_seqs("unit-p", set(range(1, taken + 1)), 10), "nothing left behind"
