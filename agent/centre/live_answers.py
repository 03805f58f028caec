"""What the served map asks and what it is answered: pure functions, no I/O.

``blankspot serve`` (:mod:`agent.centre.serve`) reads the query string of each API request
into a :class:`View` (:func:`parse_view`; a bad value is a :class:`QueryError` that names the
parameter), and answers it from what it keeps in memory:

- a :class:`ServedGrid`, the coverage of chosen days and units at one H3 resolution, each
  cell with its outline and popup made once; :func:`cells_answer` cuts it to the visible
  area, one operator and a technology;
- :class:`ServedLayers`, the tracks, stretches without service and tagged spots, each piece
  with its unit, WITA days and bounding box, the tracks simplified once per zoom;
  :func:`layer_answer` cuts them the same way;
- the fleet (:func:`fleet_answer`).

The zoom chooses the resolution (:func:`resolution_for_zoom`): resolution 8, the kept
figures' own, from zoom 11 on, one resolution coarser per zoom step below, so a cell stays
about 10 to 40 screen pixels wide.
"""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from agent.centre.cell_stats import STATS_RESOLUTION, WITA, wita_day
from agent.centre.coverage import Coverage, cell_ring
from agent.centre.fleet import REASON_TEXT, UnitView, alive_by_sms_text
from agent.centre.mapview import (
    CLASS_TITLES, FINEST_TRACK_ZOOM, MIN_TRACK_ZOOM, PIECE_COST, SEGMENT_BUDGET, TRACK_BUDGET, cell_popup,
    longest_within, pixel_m, simplify, thin, time_row,
)
from agent.centre.report import Place
from agent.centre.segments import Segment, Track, TrackPoint
from agent.shared.reading import format_time

DEFAULT_ZOOM = 11
MAX_ZOOM = 22
MAX_CELLS = 20_000       # a view past this many cells is answered in part (the answer says so)
COARSEST_RESOLUTION = 3  # about 12,000 km² a cell: the whole regency in a few dozen
_VIEW_PARAMETERS = ("bbox", "zoom", "operator", "tech", "from", "to", "units")
_NAME = re.compile(r"^[A-Za-z0-9._:+-]{1,64}$")
_TECH = re.compile(r"^[A-Za-z0-9-]{1,16}$")


class QueryError(ValueError):
    """A request's parameter that cannot be used; the message names it and what it takes."""


@dataclass(frozen=True)
class View:
    """What one request asks for: the area (south, west, north, east), zoom, operator key,
    radio technology, WITA days (first, last) and units; None means any."""

    area: tuple[float, float, float, float] | None = None
    zoom: int = DEFAULT_ZOOM
    operator: str | None = None
    technology: str | None = None
    days: tuple[str, str] | None = None
    devices: frozenset[str] | None = None

    @property
    def resolution(self) -> int:
        return resolution_for_zoom(self.zoom)


def resolution_for_zoom(zoom: int) -> int:
    """The H3 resolution cells are drawn at for a map zoom (see the module docstring)."""
    return max(COARSEST_RESOLUTION, min(STATS_RESOLUTION, zoom - 3))


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise QueryError(f"{name}: given {len(values)} times; give it once")
    return values[0].strip()


def _day(text: str, name: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise QueryError(f"{name}: {text!r} is not a day as YYYY-MM-DD (a WITA day)") from None


def parse_view(params: Mapping[str, Sequence[str]], allowed: Sequence[str] = _VIEW_PARAMETERS) -> View:
    """The :class:`View` of a request's parameters (``urllib.parse.parse_qs`` form)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r} (this request takes {', '.join(allowed)})")
    area = None
    if (text := _one(params, "bbox")) is not None:
        parts = text.split(",")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
            raise QueryError(f"bbox: {text!r} is not south,west,north,east in degrees (four numbers)")
        south, west, north, east = numbers
        if not (-90 <= south <= north <= 90 and -180 <= west <= east <= 180):
            raise QueryError(f"bbox: {text!r}: need -90 <= south <= north <= 90 and -180 <= west <= east <= 180")
        area = (south, west, north, east)
    zoom = DEFAULT_ZOOM
    if (text := _one(params, "zoom")) is not None:
        if not re.fullmatch(r"\d{1,2}", text) or int(text) > MAX_ZOOM:
            raise QueryError(f"zoom: {text!r} is not a whole number from 0 to {MAX_ZOOM}")
        zoom = int(text)
    operator = _one(params, "operator") or None
    if operator is not None and not _NAME.match(operator):
        raise QueryError(f"operator: {operator!r} is not an operator key such as 510-10")
    technology = _one(params, "tech") or None
    if technology is not None and not _TECH.match(technology):
        raise QueryError(f"tech: {technology!r} is not a radio technology such as LTE")
    first, last = _one(params, "from") or None, _one(params, "to") or None
    days = None
    if first or last:
        days = (_day(first, "from") if first else "0001-01-01", _day(last, "to") if last else "9999-12-31")
        if days[0] > days[1]:
            raise QueryError(f"from {days[0]} is after to {days[1]}")
    devices = None
    if (text := _one(params, "units")) is not None and text:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if not _NAME.match(n)]
        if bad:
            raise QueryError(f"units: {bad[0]!r} is not a unit id")
        devices = frozenset(names)
    return View(area, zoom, operator, technology, days, devices)


def _inside(area: tuple[float, float, float, float] | None, lat: float, lon: float) -> bool:
    if area is None:
        return True
    south, west, north, east = area
    return south <= lat <= north and west <= lon <= east


def _overlaps(area: tuple[float, float, float, float] | None, box: Sequence[float]) -> bool:
    if area is None:
        return True
    south, west, north, east = area
    return not (box[2] < south or box[0] > north or box[3] < west or box[1] > east)


def _days_overlap(days: tuple[str, str] | None, first: str, last: str) -> bool:
    return days is None or not (last < days[0] or first > days[1])


# -- cells ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServedCell:
    lat: float
    lon: float
    operator: str
    samples: int
    rats: dict[str, tuple[int, float | None]]   # technology -> (readings, RSRP median)
    drawn: dict[str, Any]                        # what the page draws (as the offline page's cells)


@dataclass(frozen=True)
class ServedGrid:
    """A coverage grid made ready to cut: every cell's outline and popup made once."""

    resolution: int
    operators: dict[str, str]
    samples: dict[str, int]        # per operator, over the grid
    cells: tuple[ServedCell, ...]
    technologies: tuple[str, ...]
    min_samples: int

    @property
    def default_operator(self) -> str | None:
        return max(self.operators, key=lambda k: (self.samples.get(k, 0), k), default=None)


def served_grid(coverage: Coverage) -> ServedGrid:
    cells = []
    samples: dict[str, int] = {key: 0 for key in coverage.operators}
    technologies: set[str] = set()
    for cell in coverage.cells:
        samples[cell.operator] = samples.get(cell.operator, 0) + cell.samples
        rats = {f.rat: (f.samples, f.rsrp_median_dbm) for f in cell.by_rat}
        technologies.update(rats)
        cells.append(ServedCell(cell.lat, cell.lon, cell.operator, cell.samples, rats, {
            "cell": cell.cell, "op": cell.operator, "class": cell.coverage_class,
            "rats": sorted(rats),
            "ring": [[round(lat, 6), round(lon, 6)] for lon, lat in cell_ring(cell.cell)],
            "title": CLASS_TITLES[cell.coverage_class], "popup": cell_popup(cell),
        }))
    return ServedGrid(coverage.resolution, dict(coverage.operators), samples, tuple(cells),
                      tuple(sorted(technologies)), coverage.thresholds.min_samples)


def cells_answer(grid: ServedGrid, view: View) -> dict[str, Any]:
    """The cells of one operator (the view's, else the one with most readings) in the view's
    area.  With a technology the grid is already that technology's (``FiguresFilter.technology``:
    its readings, and the readings without service, which count under every technology); each
    popup then names that technology's readings and RSRP median."""
    operator = view.operator
    if operator is not None and operator not in grid.operators:
        known = ", ".join(f"{k} ({n})" for k, n in grid.operators.items()) or "none yet"
        raise QueryError(f"operator: no readings of {operator!r} in these days and units; operators: {known}")
    operator = operator or grid.default_operator
    tech = view.technology
    drawn: list[dict[str, Any]] = []
    left_out = 0
    for cell in grid.cells:
        if cell.operator != operator or not _inside(view.area, cell.lat, cell.lon):
            continue
        item = cell.drawn
        if tech is not None:
            n, rsrp = cell.rats.get(tech, (0, None))
            rsrp_text = "-" if rsrp is None else f"{rsrp:g} dBm"
            item = {**item, "popup": item["popup"] + [[f"{tech}: pengukuran, RSRP median / readings, median RSRP",
                                                       f"{n}, {rsrp_text}"]]}
        if len(drawn) >= MAX_CELLS:
            left_out += 1
            continue
        drawn.append(item)
    return {
        "resolution": grid.resolution, "zoom": view.zoom, "operator": operator,
        "operators": [{"key": k, "name": n} for k, n in grid.operators.items()],
        "technologies": list(grid.technologies), "technology": tech,
        "cells": drawn, "left_out": left_out,
        "legend_note": f"min. {grid.min_samples} pengukuran per sel / readings per cell · H3 res {grid.resolution}",
    }


# -- tracks, stretches without service, tags ------------------------------------------------

def _box(points: Iterable[tuple[float, float]]) -> tuple[float, float, float, float]:
    lats, lons = zip(*points)
    return (min(lats), min(lons), max(lats), max(lons))


@dataclass
class ServedLayers:
    """Tracks, stretches without service and tagged spots, ready to cut per request."""

    tracks: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    finest: int = FINEST_TRACK_ZOOM  # the zoom the lines are simplified for (the store's, when it keeps them)
    _by_zoom: dict[tuple[str, int], list[list[list[float]]]] = field(default_factory=dict)

    def lines_at(self, zoom: int, layer: str = "tracks") -> list[list[list[float]]]:
        """Every line of ``layer`` (tracks or segments) simplified for ``zoom`` (made once per
        zoom, from the next finer; as they are at :attr:`finest` and finer)."""
        zoom = max(MIN_TRACK_ZOOM, min(self.finest, zoom))
        lines = self._by_zoom.get((layer, zoom))
        if lines is None:
            if zoom == self.finest:
                lines = [t["line"] for t in getattr(self, layer)]
            else:
                lines = [simplify(line, pixel_m(zoom)) for line in self.lines_at(zoom + 1, layer)]
            self._by_zoom[(layer, zoom)] = lines
        return lines


def _drawn(points: Sequence[TrackPoint], simplified: bool) -> list[list[float]]:
    """``[lat, lon]`` of a line's points: as the store keeps them (``simplified``: rounded to
    about a metre already, by :func:`~agent.centre.mapview.finest_line`), else thinned and rounded."""
    if simplified:
        return [[p.lat, p.lon] for p in points]
    return [[round(p.lat, 5), round(p.lon, 5)] for p in thin(points)]


def served_track(track: Track, simplified: bool = False) -> dict[str, Any]:
    """A track piece as the served map keeps it: thinned, simplified for the finest zoom
    (``simplified``: it is already, for a zoom, as the store keeps it), with its unit, WITA
    days and box for cutting."""
    line = _drawn(track.points, simplified)
    first, last = track.points[0].time, track.points[-1].time
    return {"device": track.device, "days": (wita_day(first), wita_day(last)),
            "box": _box((p[0], p[1]) for p in line), "length_m": track.length_km * 1000,
            "line": line if simplified else simplify(line, pixel_m(FINEST_TRACK_ZOOM)),
            "popup": [["Unit", track.device], ["Bagian / Part", str(track.part)],
                      ["Panjang / Length", f"{track.length_km:.1f} km"], time_row("Waktu / Time", first, last)]}


def served_layers(tracks: Iterable[dict[str, Any]], segments: Iterable[Segment], tags: Iterable[Place],
                  operator_names: Mapping[str, str], kept_zoom: int | None = None) -> ServedLayers:
    """The layers of served track pieces (:func:`served_track`), segments and tags; the
    segments are thinned and simplified for the finest zoom, unless ``kept_zoom`` says the
    zoom they (and the track pieces) are simplified for already, as the store keeps them."""
    segment_list = []
    simplified = kept_zoom is not None
    for s in segments:
        line = _drawn(s.points, simplified)
        segment_list.append({
            "op": s.operator, "device": s.device, "days": (wita_day(s.start.time), wita_day(s.end.time)),
            "box": _box((p[0], p[1]) for p in line), "length_m": s.length_km * 1000,
            "line": line if simplified else simplify(line, pixel_m(FINEST_TRACK_ZOOM)),
            # Made for the stretches an answer sends only: a view may hold thousands.
            "make_popup": functools.partial(_segment_popup, s.length_km, s.no_service, s.operator, s.device,
                                            s.start.time, s.end.time, operator_names)})
    tag_list = []
    for t in tags:
        when = datetime.fromisoformat(t.time.replace("Z", "+00:00")) if t.time else None
        tag_list.append({
            "lat": t.lat, "lon": t.lon, "label": t.name, "device": t.device,
            "day": wita_day(when) if when else None,
            "popup": [["Tanda / Tag", t.name or "-"], ["Unit", t.device or "-"],
                      time_row("Waktu / Time", when) if when else ["Waktu / Time", "-"]]})
    return ServedLayers(list(tracks), segment_list, tag_list, FINEST_TRACK_ZOOM if kept_zoom is None else kept_zoom)


def _segment_popup(length_km: float, no_service: int, operator: str, device: str, start: datetime, end: datetime,
                   operator_names: Mapping[str, str]) -> list[list[str]]:
    return [["Ruas tanpa layanan / No service", f"{length_km:.2f} km, {no_service} pengukuran / readings"],
            ["Operator", f"{operator_names.get(operator, operator)} ({operator})"],
            ["Unit", device], time_row("Mulai / Start", start), time_row("Selesai / End", end)]


_PRIVATE = ("days", "box", "device", "day", "length_m", "make_popup")  # kept for cutting, not sent


def _public(item: dict[str, Any]) -> dict[str, Any]:
    public = {k: v for k, v in item.items() if k not in _PRIVATE}
    if "make_popup" in item:
        public["popup"] = item["make_popup"]()
    return public


def _taken(view: View, item: dict[str, Any]) -> bool:
    if view.devices is not None and item.get("device") not in view.devices:
        return False
    days = item.get("days") or ((item["day"],) * 2 if item.get("day") else None)
    if days is not None and not _days_overlap(view.days, *days):
        return False
    if "box" in item:
        return _overlaps(view.area, item["box"])
    return _inside(view.area, item["lat"], item["lon"])


def tracks_answer(layers: ServedLayers, view: View, budget: int = TRACK_BUDGET) -> dict[str, Any]:
    """The track pieces in the view, simplified for its zoom; past ``budget`` points, for a
    coarser zoom, then the shortest pieces are left out (the answer counts them)."""
    chosen = [i for i, t in enumerate(layers.tracks) if _taken(view, t)]
    zoom, lines, kept, left_out = _within_budget(layers, "tracks", chosen, view.zoom, budget)
    pieces = [{**_public(layers.tracks[i]), "line": lines[i]} for i in kept]
    return {"tracks": pieces, "track_zoom": zoom, "left_out": left_out}


def segments_answer(layers: ServedLayers, view: View, operator: str | None,
                    budget: int = SEGMENT_BUDGET) -> dict[str, Any]:
    """The operator's stretches without service in the view, simplified for its zoom, bounded
    as :func:`tracks_answer` bounds the tracks (by ``budget`` points)."""
    chosen = [i for i, s in enumerate(layers.segments)
              if (operator is None or s["op"] == operator) and _taken(view, s)]
    # Not drawn for a coarser zoom: a stretch is a few points, its popup weighs more.
    zoom, lines, kept, left_out = _within_budget(layers, "segments", chosen, view.zoom, budget, coarser=False)
    return {"segments": [{**_public(layers.segments[i]), "line": lines[i]} for i in kept],
            "segment_zoom": zoom, "left_out": left_out}


def _within_budget(layers: ServedLayers, layer: str, chosen: list[int], zoom: int, budget: int,
                   coarser: bool = True) -> tuple[int, list[list[list[float]]], list[int], int]:
    """The lines of ``layer`` at places ``chosen``, within ``budget`` points (each line costing
    :data:`PIECE_COST` more): simplified for ``zoom``, or (``coarser``) a coarser zoom down to
    :data:`MIN_TRACK_ZOOM`, then only the longest.  Returns the zoom, the lines at it, the
    places kept and how many were left out."""
    zoom = max(MIN_TRACK_ZOOM, min(FINEST_TRACK_ZOOM, zoom))
    while True:
        lines = layers.lines_at(zoom, layer)
        cost = sum(len(lines[i]) + PIECE_COST for i in chosen)
        if cost <= budget or zoom == MIN_TRACK_ZOOM or not coarser:
            break
        zoom -= 1
    if cost <= budget:
        return zoom, lines, chosen, 0
    # Longest on the ground, not in points: at a coarse zoom many lines are two points each.
    items = getattr(layers, layer)
    kept = [chosen[k] for k in longest_within([len(lines[i]) for i in chosen],
                                              [items[i]["length_m"] for i in chosen], budget)]
    return zoom, lines, kept, len(chosen) - len(kept)


def tags_answer(layers: ServedLayers, view: View) -> dict[str, Any]:
    return {"tags": [_public(t) for t in layers.tags if _taken(view, t)]}


def places_answer(labels: Sequence[dict[str, Any]], view: View) -> dict[str, Any]:
    return {"places": [p for p in labels if _inside(view.area, p["lat"], p["lon"])]}


# -- the fleet -------------------------------------------------------------------------------

def fleet_answer(views: Sequence[UnitView], now: datetime, refused_sms: dict[str, int] | None = None) -> dict[str, Any]:
    """Each unit: state, last seen (UTC, and its age), readings stored, backlog, holes, and
    ``alive_by_sms`` when its heartbeat by SMS is the newest news of it; the SMS refused, by
    reason."""
    units = []
    for v in views:
        age = None
        if v.last_seen:
            seen = datetime.fromisoformat(v.last_seen.replace("Z", "+00:00"))
            age = max(0.0, round((now - seen).total_seconds(), 1))
        backlog = v.backlog or {}
        units.append({
            "device": v.device, "state": v.state, "last_seen": v.last_seen, "age_s": age,
            "stored": v.stored, "top": v.top,
            "pending": backlog.get("pending") if isinstance(backlog.get("pending"), int) else None,
            "unconfirmed": backlog.get("unconfirmed") if isinstance(backlog.get("unconfirmed"), int) else None,
            "missing": v.missing, "fault": v.fault,
            "holes": [{"first": h.first, "last": h.last, "count": h.count,
                       "reason": REASON_TEXT.get(h.reason, h.reason)} for h in v.holes],
        })
        if v.alive_by_sms is not None:
            units[-1]["alive_by_sms"] = {**v.alive_by_sms, "text": alive_by_sms_text(v.alive_by_sms)}
    return {"units": units, "now": format_time(now), "refused_sms": dict(refused_sms or {})}


def days_of(coverage: Coverage) -> tuple[str, str] | None:
    """The first and last WITA day of the grid's readings."""
    if not coverage.cells:
        return None
    first = min(c.first_seen for c in coverage.cells)
    last = max(c.last_seen for c in coverage.cells)
    return (first.astimezone(WITA).date().isoformat(), last.astimezone(WITA).date().isoformat())


def bounds_of(grid: ServedGrid) -> list[list[float]] | None:
    """South-west and north-east corners around every cell's centre, for the first view."""
    if not grid.cells:
        return None
    lats = [c.lat for c in grid.cells]
    lons = [c.lon for c in grid.cells]
    return [[min(lats), min(lons)], [max(lats), max(lons)]]
