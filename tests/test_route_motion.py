"""Routes from CSV and GPX, the shipped Mahakam route, and the odometer the mobile scheduler uses."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.unit.devices.gps.fix import Fix
from agent.unit.devices.gps.motion import Odometer
from agent.shared.geo import haversine_m
from agent.sim.route import RouteError, load_route, mahakam_route, parse_route_csv, parse_route_gpx
from tests.support.data import ROUTE

GPX = """<?xml version="1.0"?>
<gpx version="1.1" creator="handheld" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><name>Mahakam</name><trkseg>
    <trkpt lat="-0.5030" lon="117.1460"><name>Samarinda</name></trkpt>
    <trkpt lat="-0.5560" lon="117.0980"></trkpt>
    <trkpt lat="-0.5050" lon="117.0010"></trkpt>
  </trkseg></trk>
</gpx>"""


def test_shipped_route_is_the_one_in_the_test_data() -> None:
    shipped = mahakam_route()
    expected = load_route(ROUTE)
    assert [(w.name, w.lat, w.lon) for w in shipped.waypoints] == [(w.name, w.lat, w.lon) for w in expected.waypoints]


def test_route_is_walked_along_its_legs() -> None:
    route = mahakam_route()
    assert route.waypoints[0].name == "Samarinda" and route.waypoints[-1].name == "Kota Bangun"
    assert 85_000 < route.length_m < 95_000
    middle = route.at(route.cumulative[1] / 2)
    a = route.waypoints[0]
    assert haversine_m(middle.lat, middle.lon, a.lat, a.lon) == pytest.approx(route.cumulative[1] / 2, rel=0.01)
    assert route.at(-5).lat == a.lat and route.at(10**9).lat == route.waypoints[-1].lat


def test_gpx_route(tmp_path: Path) -> None:
    path = tmp_path / "trip.gpx"
    path.write_text(GPX)
    route = load_route(path)
    assert [w.name for w in route.waypoints] == ["Samarinda", "trkpt2", "trkpt3"]
    assert route.length_m == pytest.approx(parse_route_gpx(GPX).length_m)


@pytest.mark.parametrize(
    "text,words",
    [
        ("name,lat,lon\nA,1,2\n", "at least two"),
        ("lat\n1\n", "header with lat and lon"),
        ("name,lat,lon\nA,north,2\nB,1,2\n", ":2: expected numeric"),
        ("name,lat,lon\nA,95,2\nB,1,2\n", "out of range"),
    ],
)
def test_bad_csv_routes(text: str, words: str) -> None:
    with pytest.raises(RouteError, match=words):
        parse_route_csv(text, "trip.csv")


@pytest.mark.parametrize("text,words", [("<gpx><trkpt", "not valid GPX"), ("<gpx><wpt lat='x' lon='1'/></gpx>", "numeric")])
def test_bad_gpx_routes(text: str, words: str) -> None:
    with pytest.raises(RouteError, match=words):
        parse_route_gpx(text, "trip.gpx")


def fix(lat: float | None, lon: float | None, hdop: float | None = 1.0, speed: float | None = None, mode: str = "3d") -> Fix:
    return Fix(None, lat, lon, 10.0, hdop, 9, speed, None, mode)


def test_odometer_counts_real_movement_not_jitter() -> None:
    route = mahakam_route()
    start = route.at(0)
    odo = Odometer()
    odo.update(fix(start.lat, start.lon), 0.0)
    for n in range(1, 20):  # moored at Samarinda: ~2 m of receiver noise each epoch
        odo.update(fix(start.lat + (n % 2) * 0.00002, start.lon), float(n))
    assert odo.distance_m == 0.0
    for n in range(1, 11):  # then 1 km along the river in 100 s
        p = route.at(n * 100.0)
        odo.update(fix(p.lat, p.lon), 19.0 + n * 10)
    assert odo.distance_m == pytest.approx(1000.0, rel=0.02)
    assert odo.speed_kmh == pytest.approx(36.0, rel=0.05)


def test_odometer_ignores_fixes_without_position() -> None:
    odo = Odometer()
    assert odo.update(fix(None, None, mode="none"), 0.0) == 0.0
    odo.update(fix(-0.5, 117.0, speed=12.0), 1.0)
    assert odo.speed_kmh == 12.0
