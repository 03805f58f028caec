"""A route as a polyline of waypoints, walked at a speed: where is the boat after d metres?

Routes load from CSV (``name,lat,lon`` with ``#`` comments, as in the shipped
``mahakam.csv``).  Positions between waypoints are interpolated linearly, which is
plenty for a simulated trip of a few kilometres per leg.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from xml.etree import ElementTree

from agent.shared.geo import bearing_deg, haversine_m


class RouteError(ValueError):
    """A route file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Waypoint:
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class RoutePoint:
    lat: float
    lon: float
    course_deg: float
    distance_m: float
    leg: int


class Route:
    def __init__(self, waypoints: list[Waypoint]) -> None:
        if len(waypoints) < 2:
            raise RouteError("a route needs at least two waypoints")
        self.waypoints = waypoints
        self.cumulative = [0.0]
        for a, b in zip(waypoints, waypoints[1:]):
            self.cumulative.append(self.cumulative[-1] + haversine_m(a.lat, a.lon, b.lat, b.lon))

    @property
    def length_m(self) -> float:
        return self.cumulative[-1]

    def at(self, distance_m: float) -> RoutePoint:
        """The point ``distance_m`` along the route (clamped to its ends)."""
        d = min(max(distance_m, 0.0), self.length_m)
        leg = 0
        while leg < len(self.waypoints) - 2 and self.cumulative[leg + 1] < d:
            leg += 1
        a, b = self.waypoints[leg], self.waypoints[leg + 1]
        span = self.cumulative[leg + 1] - self.cumulative[leg]
        f = 0.0 if span == 0 else (d - self.cumulative[leg]) / span
        return RoutePoint(
            lat=a.lat + (b.lat - a.lat) * f,
            lon=a.lon + (b.lon - a.lon) * f,
            course_deg=bearing_deg(a.lat, a.lon, b.lat, b.lon),
            distance_m=d,
            leg=leg,
        )


def parse_route_csv(text: str, source: str = "<route>") -> Route:
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise RouteError(f"{source}: no waypoints")
    header = [h.strip().lower() for h in next(csv.reader([rows[0][1]]))]
    if not {"lat", "lon"} <= set(header):
        raise RouteError(f"{source}:{rows[0][0]}: expected a header with lat and lon columns, got {rows[0][1]!r}")
    waypoints = []
    for number, line in rows[1:]:
        cells = dict(zip(header, (c.strip() for c in next(csv.reader([line])))))
        try:
            lat, lon = float(cells["lat"]), float(cells["lon"])
        except (KeyError, ValueError):
            raise RouteError(f"{source}:{number}: expected numeric lat and lon, got {line!r}") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise RouteError(f"{source}:{number}: lat/lon out of range: {line!r}")
        waypoints.append(Waypoint(cells.get("name", f"wp{len(waypoints) + 1}"), lat, lon))
    try:
        return Route(waypoints)
    except RouteError as exc:
        raise RouteError(f"{source}: {exc}") from None


def parse_route_gpx(text: str, source: str = "<route>") -> Route:
    """Waypoints of a GPX file: its track points, else route points, else waypoints, in order."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise RouteError(f"{source}: not valid GPX: {exc}") from None
    for tag in ("trkpt", "rtept", "wpt"):
        points = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == tag]
        if points:
            break
    waypoints = []
    for index, el in enumerate(points, start=1):
        try:
            lat, lon = float(el.attrib["lat"]), float(el.attrib["lon"])
        except (KeyError, ValueError):
            raise RouteError(f"{source}: {tag} {index}: expected numeric lat and lon attributes") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise RouteError(f"{source}: {tag} {index}: lat/lon out of range")
        name = next((c.text for c in el if c.tag.rsplit("}", 1)[-1] == "name" and c.text), f"{tag}{index}")
        waypoints.append(Waypoint(name, lat, lon))
    try:
        return Route(waypoints)
    except RouteError as exc:
        raise RouteError(f"{source}: {exc}") from None


def load_route(path: Path | str) -> Route:
    """A route from a CSV (``name,lat,lon``) or GPX file, by its extension."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RouteError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".gpx":
        return parse_route_gpx(text, str(path))
    return parse_route_csv(text, str(path))


def mahakam_route() -> Route:
    """The shipped route: Samarinda upstream to Kota Bangun on the Mahakam."""
    text = resources.files("agent.sim").joinpath("routes/mahakam.csv").read_text(encoding="utf-8")
    return parse_route_csv(text, "mahakam.csv")
