"""Survey readings for tests of the collector's analysis: a boat on the Mahakam, step by step.

Deterministic: the boat moves ``speed_kmh`` along the shipped route and takes a signal
reading every ``interval_s`` seconds of trip time from :func:`mahakam_scenario` (as an EC25
reports it, through the agent's parsers), so the blank stretch between Sebulu and Muara
Kaman is where the tests expect it.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from agent.shared.reading import Event, Latency, Position, Reading, Signal
from agent.sim.scenario import CoverageScenario, mahakam_scenario
from agent.sim.route import Route, mahakam_route
from agent.sim.synthetic import modem_signal

T0 = datetime(2026, 11, 24, 0, 0, 0, tzinfo=timezone.utc)


def position(lat: float, lon: float) -> Position:
    return Position(lat=round(lat, 6), lon=round(lon, 6), alt_m=10.0, hdop=0.9, sats=9, speed_kmh=20.0, fix="3d")


def boat_trip(device: str = "boat-1", *, interval_s: float = 10.0, speed_kmh: float = 30.0, start: datetime = T0,
              first_seq: int = 1, route: Route | None = None, scenario: CoverageScenario | None = None,
              latency_every: int = 0) -> list[Reading]:
    """Signal readings along the route (and a latency reading every ``latency_every`` signal readings)."""
    route = route or mahakam_route()
    scenario = scenario or mahakam_scenario()
    readings: list[Reading] = []
    seq, t = first_seq, 0.0
    step_m = speed_kmh / 3.6 * interval_s
    n = 0
    while True:
        d = n * step_m
        if d > route.length_m:
            break
        point = route.at(d)
        signal = modem_signal(scenario.radio_at(point.lat, point.lon, t))
        when = start + timedelta(seconds=t)
        readings.append(Reading(device, when, "gps", signal, position(point.lat, point.lon), seq))
        seq += 1
        if latency_every and n % latency_every == 0:
            in_service = signal.rat != "NONE"
            part = Latency(target="8.8.8.8", method="icmp", sent=5, received=5 if in_service else 0,
                           loss_pct=0.0 if in_service else 100.0, rtt_avg_ms=80.0 if in_service else None)
            readings.append(Reading(device, when, "gps", part, position(point.lat, point.lon), seq))
            seq += 1
        n += 1
        t += interval_s
    return readings


def tag(device: str, seq: int, lat: float, lon: float, message: str | None, when: datetime = T0) -> Reading:
    return Reading(device, when, "gps", Event("tag", message, {"button": "short"}), position(lat, lon), seq)


def in_service(device: str, seq: int, lat: float | None, lon: float | None, *, when: datetime = T0,
               rsrp: float = -90.0, quality: str = "good", mcc: str = "510", mnc: str = "10",
               operator: str = "TELKOMSEL", registration: str = "home") -> Reading:
    part = Signal(registration=registration, operator=operator, mcc=mcc, mnc=mnc, rat="LTE", rsrp_dbm=rsrp,
                  rssi_dbm=rsrp + 28, quality=quality)
    return Reading(device, when, "gps", part, None if lat is None else position(lat, lon), seq)


def no_service(device: str, seq: int, lat: float | None, lon: float | None, *, when: datetime = T0) -> Reading:
    part = Signal(registration="searching", rat="NONE", quality="none")
    return Reading(device, when, "gps", part, None if lat is None else position(lat, lon), seq)


def no_answer(device: str, seq: int, lat: float, lon: float, *, when: datetime = T0) -> Reading:
    part = Signal(registration="unknown", rat="NONE", quality=None, error="modem did not answer AT+CSQ in 5 s")
    return Reading(device, when, "gps", part, position(lat, lon), seq)


def survey_db(path, readings: list[Reading]) -> str:
    """A real collector database (SQLite) at ``path`` holding ``readings``; returns its URL."""
    from agent.centre.store import open_store

    url = f"sqlite:///{path}"
    store = open_store(url)
    try:
        store.insert_readings(readings)
        store.refresh_tracks()  # as the collector does after a quiet moment
    finally:
        store.close()
    return url


def trip_with_tags(device: str = "boat-1") -> list[Reading]:
    """A boat trip with latency readings and two tagged spots (one named, one not)."""
    readings = boat_trip(device, latency_every=6)
    seq = readings[-1].seq + 1
    return readings + [
        tag(device, seq, -0.1800, 116.7200, "kantor desa Muara Kaman", T0),
        tag(device, seq + 1, -0.3300, 116.9900, None, T0),
    ]


# A body as the year-1 bug stored it: format_time wrote year 1 as "1-01-01T..." (strftime
# "%Y" on glibc), a time parse_time refuses.
def year_one_body(reading: Reading) -> str:
    body = reading.to_dict()
    body["time"] = "1-01-01T00:00:00.000Z"
    return json.dumps(body)


def damage(url: str, bodies: dict[tuple[str, int], str]) -> None:
    """Overwrite the stored body of each ``(device, seq)`` by hand, as a damaged database would
    hold it, then rebuild the coverage figures (what docs/collector.md asks after editing rows)."""
    _overwrite(url, bodies)
    from agent.centre.store import open_store

    with open_store(url) as store:
        store.rebuild_figures()


def _overwrite(url: str, bodies: dict[tuple[str, int], str]) -> None:
    from agent.centre.store.base import parse_db_url

    parsed = parse_db_url(url)
    if parsed.backend == "sqlite":
        import sqlite3

        with sqlite3.connect(parsed.target) as db:
            for (device, seq), body in bodies.items():
                assert db.execute("UPDATE readings SET body = ? WHERE device = ? AND seq = ?",
                                  (body, device, seq)).rowcount == 1
        db.close()
        return
    import psycopg

    with psycopg.connect(parsed.target) as conn:
        for (device, seq), body in bodies.items():
            assert conn.execute("UPDATE readings SET body = %s::jsonb WHERE device = %s AND seq = %s",
                                (body, device, seq)).rowcount == 1


def damaged_survey(tmp_path_factory) -> tuple[str, str, list[Reading]]:
    """Two collector databases of one boat trip: in one, two stored rows were damaged (a reading
    stored with the year-1 time "1-01-01T...", and a body cut short); the other never had those
    two readings.  Returns (damaged URL, clean URL, [the year-1 reading, the cut one])."""
    readings = trip_with_tags()
    year_one, truncated = readings[20], readings[40]
    folder = tmp_path_factory.mktemp("damaged")
    damaged = survey_db(folder / "damaged.db", readings)
    damage(damaged, {(year_one.device, year_one.seq): year_one_body(year_one),
                     (truncated.device, truncated.seq): truncated.to_json()[:70]})
    clean = survey_db(folder / "clean.db", [r for r in readings if r not in (year_one, truncated)])
    return damaged, clean, [year_one, truncated]
