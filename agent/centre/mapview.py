"""The blank-spot map: one self-contained HTML file that works offline.

Leaflet 1.9.4 (BSD-2-Clause, vendored in ``static/leaflet/`` with its licence) and the
page's own script and style are inlined, and the survey is embedded as JSON, so the file
can be mailed or copied to a laptop in a kantor desa and opened without a network.  Only
the background tiles are fetched, when the browser is online; the map draws cells, tracks,
stretches without service, tagged spots and the names of places without them.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

from agent import __version__
from agent.centre.coverage import CellCoverage, Coverage, cell_ring
from agent.centre.report import Place
from agent.centre.segments import Segment, Track, TrackPoint
from agent.shared.geo import haversine_m
from agent.shared.reading import format_time, parse_time

# Kalimantan Timur's clock, UTC+8 all year: a fixed offset, so no time-zone database is needed.
WITA = timezone(timedelta(hours=8), "WITA")
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
MAHAKAM_CENTER = (-0.42, 116.95)
TRACK_SPACING_M = 15.0  # tracks are thinned to this spacing first: a probe standing still is one point
# Tracks are simplified for a zoom: a point that moves the line by less than a screen pixel
# there is left out. The page keeps at most TRACK_BUDGET points of track (about 21 bytes
# each in the page): beyond it the zoom drawn for goes down one step at a time, to at
# least MIN_TRACK_ZOOM, and then the shortest pieces are left out (the page says how many).
FINEST_TRACK_ZOOM = 16
MIN_TRACK_ZOOM = 8
TRACK_BUDGET = 60_000
SIMPLIFY_SPAN = 256
PIECE_COST = 10  # a piece's popup weighs about as much as this many points
# The stretches without service and the tagged spots are bounded too (a regency-year holds
# thousands of each): the longest stretches are drawn up to SEGMENT_BUDGET points (each
# costing PIECE_COST more, as a track piece), and at most TAG_BUDGET tags, spread evenly
# over the units and their time; the page says how many were left out.
SEGMENT_BUDGET = 40_000
TAG_BUDGET = 2_000
CLASS_TITLES = {
    "blank": "Blank spot: tidak ada sinyal / no service",
    "weak": "Lemah / Weak",
    "covered": "Tercakup / Covered",
    "unknown": "Data belum cukup / Not enough readings",
}


@dataclass(frozen=True)
class MapOptions:
    title: str = "Peta blank spot / Blank-spot map"
    tiles: str | None = OSM_TILES              # None: no background tiles at all
    tiles_attribution: str = OSM_ATTRIBUTION
    operator: str | None = None                # shown first; default: the one with most readings


def _static(name: str) -> str:
    return files("agent.centre").joinpath("static", name).read_text(encoding="utf-8")


def _dbm(value: float | None) -> str:
    return "-" if value is None else f"{value:g} dBm"


def _minutes(moment: datetime, zone: timezone, name: str) -> str:
    # Not strftime("%Y"): it writes year 1 as "1", and popups show the year as readings have it.
    local = moment.astimezone(zone)
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d} {name}"


def _time(moment: datetime) -> str:
    """``moment`` as people in Kutai Kartanegara read a clock: WITA."""
    return _minutes(moment, WITA, "WITA")


def _utc(moment: datetime) -> str:
    return _minutes(moment, timezone.utc, "UTC")


def time_row(label: str, *moments: datetime) -> list[str]:
    """A popup row of one time or a range: WITA shown, UTC as the third item (the page's hover text)."""
    return [label, " – ".join(map(_time, moments)), " – ".join(map(_utc, moments))]


def cell_popup(cell: CellCoverage) -> list[list[str]]:
    """Rows of a cell's popup: label (Indonesian / English), value, and for times the value in UTC."""
    share = cell.no_service_share
    rows = [
        ["Operator", f"{cell.operator_name} ({cell.operator})"],
        ["Pengukuran / Readings", str(cell.samples)],
        ["Tanpa layanan / No service",
         "-" if share is None else f"{cell.no_service} ({share:.0%})"],
    ]
    if cell.no_answer:
        rows.append(["Modem tidak menjawab / No answer", f"{cell.no_answer} (tidak dihitung / not counted)"])
    rows += [
        ["Kualitas median / Median quality", cell.quality_median or "-"],
        ["RSRP median / p10", f"{_dbm(cell.rsrp_median_dbm)} / {_dbm(cell.rsrp_p10_dbm)}"],
        ["RSSI median / p10", f"{_dbm(cell.rssi_median_dbm)} / {_dbm(cell.rssi_p10_dbm)}"],
        ["Teknologi / Technology", "; ".join(f"{f.rat} {f.samples}" for f in cell.by_rat) or "-"],
    ]
    if cell.latency_samples:
        rows.append(["Latensi median / Median latency",
                     f"- ({cell.latency_samples} tanpa hasil / no result)" if cell.latency_median_ms is None
                     else f"{cell.latency_median_ms:g} ms ({cell.latency_samples})"])
    if cell.throughput_samples:
        down = "-" if cell.down_median_mbps is None else f"{cell.down_median_mbps:g}"
        up = "-" if cell.up_median_mbps is None else f"{cell.up_median_mbps:g}"
        rows.append(["Unduh / unggah, Down / up", f"{down} / {up} Mbit/s ({cell.throughput_samples})"])
    rows += [
        time_row("Pertama / First seen", cell.first_seen),
        time_row("Terakhir / Last seen", cell.last_seen),
        ["Unit", ", ".join(cell.devices)],
        ["Sel H3 / H3 cell", cell.cell],
    ]
    return rows


def thin(points: Sequence[TrackPoint], spacing_m: float = TRACK_SPACING_M) -> list[TrackPoint]:
    """Points at least ``spacing_m`` apart, always keeping the first and last."""
    if len(points) <= 2:
        return list(points)
    kept = [points[0]]
    for p in points[1:-1]:
        if haversine_m(kept[-1].lat, kept[-1].lon, p.lat, p.lon) >= spacing_m:
            kept.append(p)
    kept.append(points[-1])
    return kept


def pixel_m(zoom: int) -> float:
    """Metres a screen pixel covers at ``zoom`` on the equator (Kutai Kartanegara is on it)."""
    return 156_543.034 / 2 ** zoom


def simplify(line: Sequence[Sequence[float]], tolerance_m: float) -> list[list[float]]:
    """Douglas-Peucker: the points of ``line`` (``[lat, lon]``) that keep every left-out point
    within ``tolerance_m`` of the simplified line; the first and last are always kept, and
    every SIMPLIFY_SPAN-th."""
    n = len(line)
    if n <= 2:
        return [list(p) for p in line]
    # A local flat projection in metres: exact enough over a track piece at this latitude.
    cos_lat = math.cos(math.radians(line[0][0]))
    ys = [p[0] * 110_574.0 for p in line]
    xs = [p[1] * 111_320.0 * cos_lat for p in line]
    keep = [False] * n
    # Spans of at most SIMPLIFY_SPAN points: on a line that zigzags more than the tolerance
    # every point (GPS scatter), Douglas-Peucker takes time quadratic in the span's length.
    spans = [(first, min(first + SIMPLIFY_SPAN, n - 1)) for first in range(0, n - 1, SIMPLIFY_SPAN)]
    for first, last in spans:
        keep[first] = keep[last] = True
    while spans:  # iterative: a long track would go past Python's recursion limit
        first, last = spans.pop()
        ax, ay = xs[first], ys[first]
        dx, dy = xs[last] - ax, ys[last] - ay
        length2 = dx * dx + dy * dy
        worst, worst_at = -1.0, -1
        for i in range(first + 1, last):
            px, py = xs[i] - ax, ys[i] - ay
            if length2 == 0.0:
                d2 = px * px + py * py
            else:
                t = max(0.0, min(1.0, (px * dx + py * dy) / length2))
                ex, ey = px - t * dx, py - t * dy
                d2 = ex * ex + ey * ey
            if d2 > worst:
                worst, worst_at = d2, i
        if worst > tolerance_m * tolerance_m:
            keep[worst_at] = True
            spans.append((first, worst_at))
            spans.append((worst_at, last))
    return [list(line[i]) for i in range(n) if keep[i]]


@dataclass(frozen=True)
class FittedTracks:
    pieces: list[dict[str, Any]]
    zoom: int          # the zoom the lines are simplified for
    left_out: int      # pieces left out to stay within the budget


def fit_tracks(pieces: Sequence[dict[str, Any]], budget: int = TRACK_BUDGET,
               zoom: int = FINEST_TRACK_ZOOM) -> FittedTracks:
    """Track pieces (from :func:`drawn_track`, or :func:`kept_track` for pieces already
    simplified for ``zoom``) simplified for the finest zoom at which all of them fit in
    ``budget`` points (each piece costing :data:`PIECE_COST` more); below
    :data:`MIN_TRACK_ZOOM`, the shortest pieces are left out instead."""
    def cost(lines: Sequence[dict[str, Any]]) -> int:
        return sum(len(p["line"]) + PIECE_COST for p in lines)

    fitted = list(pieces)
    while cost(fitted) > budget and zoom > MIN_TRACK_ZOOM:
        zoom -= 1
        # Simplifying the simplified line again: each step at least doubles the tolerance,
        # so the error stays within twice the last step's pixel.
        fitted = [{**p, "line": simplify(p["line"], pixel_m(zoom))} for p in fitted]
    if cost(fitted) <= budget:
        return FittedTracks(fitted, zoom, 0)
    kept = [fitted[i] for i in longest_within([len(p["line"]) for p in fitted], [len(p["line"]) for p in fitted],
                                              budget)]
    return FittedTracks(kept, zoom, len(fitted) - len(kept))


def longest_within(points: Sequence[int], lengths: Sequence[float], budget: int) -> list[int]:
    """The places, in order, of the longest lines (by ``lengths``) whose ``points``, each line
    costing :data:`PIECE_COST` more, fit in ``budget``: the longest first, then whatever
    shorter ones still fit."""
    spent = 0
    chosen: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: -lengths[i]):
        price = points[i] + PIECE_COST
        if spent + price <= budget:
            chosen.append(i)
            spent += price
    return sorted(chosen)


def spread(items: Sequence[Any], most: int) -> list[Any]:
    """At most ``most`` of ``items``, evenly spaced through them, in their order."""
    if len(items) <= most:
        return list(items)
    return [items[i * len(items) // most] for i in range(most)]


def finest_line(points: Sequence[TrackPoint]) -> list[list[Any]]:
    """The line the page draws of a whole track piece at :data:`FINEST_TRACK_ZOOM`: thinned,
    ``[lat, lon]`` rounded to about a metre, simplified.  Each point keeps its place in
    ``points`` as a third item, so that whoever simplifies it further knows which readings
    are left."""
    kept = {id(p): i for i, p in enumerate(points)}
    line = [[round(p.lat, 5), round(p.lon, 5), kept[id(p)]] for p in thin(points)]
    return simplify(line, pixel_m(FINEST_TRACK_ZOOM))


def coarser_lines(line: Sequence[Sequence[Any]], coarsest: int = MIN_TRACK_ZOOM) -> dict[int, list[list[Any]]]:
    """``line`` (as :func:`finest_line` gives it) at every zoom the page may draw tracks at
    (down to ``coarsest``), each simplified from the next finer one, as :func:`fit_tracks`
    does step by step."""
    lines = {FINEST_TRACK_ZOOM: [list(p) for p in line]}
    for zoom in range(FINEST_TRACK_ZOOM - 1, coarsest - 1, -1):
        lines[zoom] = simplify(lines[zoom + 1], pixel_m(zoom))
    return lines


def line_at(points: Sequence[TrackPoint], zoom: int) -> list[list[float]]:
    """``[lat, lon]`` of a whole line (a track piece, a stretch without service) as the page
    draws it at ``zoom``."""
    return [p[:2] for p in coarser_lines(finest_line(points), zoom)[zoom]]


def track_popup(track: Track) -> list[list[str]]:
    return [["Unit", track.device], ["Bagian / Part", str(track.part)],
            ["Panjang / Length", f"{track.length_km:.1f} km"],
            time_row("Waktu / Time", track.points[0].time, track.points[-1].time)]


def drawn_track(track: Track) -> dict[str, Any]:
    """A track piece as the page draws it: its line, thinned and simplified for the finest
    zoom the page draws tracks at, and its popup."""
    return {"line": [p[:2] for p in finest_line(track.points)], "popup": track_popup(track)}


def kept_track(track: Track) -> dict[str, Any]:
    """A track piece the collector keeps already simplified for a zoom, as the page draws it."""
    return {"line": [[p.lat, p.lon] for p in track.points], "popup": track_popup(track)}


def track_zoom(points_at: dict[int, int], budget: int = TRACK_BUDGET) -> int:
    """The zoom :func:`fit_tracks` comes to, from the cost of the pieces at each zoom (their
    points plus :data:`PIECE_COST` each): the finest that fits, else :data:`MIN_TRACK_ZOOM`."""
    for zoom in range(FINEST_TRACK_ZOOM, MIN_TRACK_ZOOM, -1):
        if points_at.get(zoom, 0) <= budget:
            return zoom
    return MIN_TRACK_ZOOM


def map_data(coverage: Coverage, tracks: Iterable[dict[str, Any]], segments: Iterable[Segment],
             tags: Iterable[Place], options: MapOptions = MapOptions(), generated: datetime | None = None,
             *, places: Iterable[Place] = (), track_budget: int = TRACK_BUDGET,
             track_zoom: int = FINEST_TRACK_ZOOM, segments_simplified: bool = False,
             segment_budget: int = SEGMENT_BUDGET, tag_budget: int = TAG_BUDGET) -> dict[str, Any]:
    """Everything the page draws, as the JSON object embedded in it; ``tracks`` are the track
    pieces as :func:`drawn_track` gives them (or :func:`kept_track`, simplified for
    ``track_zoom``), ``places`` the named places (a places file's towns and villages)
    written on the map as labels; the tracks are fitted to ``track_budget`` points
    (:func:`fit_tracks`), and the stretches without service are drawn simplified for the
    same zoom (``segments_simplified``: they already are, as the collector keeps them); the
    longest stretches are drawn within ``segment_budget`` points, and at most ``tag_budget``
    tags (:data:`SEGMENT_BUDGET`, :data:`TAG_BUDGET`)."""
    generated = generated or datetime.now(timezone.utc)
    fitted = fit_tracks(list(tracks), track_budget, track_zoom)
    samples: dict[str, int] = {key: 0 for key in coverage.operators}
    blank: dict[str, int] = {key: 0 for key in coverage.operators}
    cells = []
    for cell in coverage.cells:
        samples[cell.operator] += cell.samples
        blank[cell.operator] += cell.coverage_class == "blank"
        cells.append({
            "cell": cell.cell, "op": cell.operator, "class": cell.coverage_class,
            "rats": sorted(f.rat for f in cell.by_rat),
            "ring": [[round(lat, 6), round(lon, 6)] for lon, lat in cell_ring(cell.cell)],
            "title": CLASS_TITLES[cell.coverage_class], "popup": cell_popup(cell),
        })
    if options.operator in coverage.operators:
        default = options.operator
    else:
        default = max(coverage.operators, key=lambda k: samples[k], default=None)
    operators = [
        {"key": key, "label": f"{name} ({key}): {blank[key]} blank spot"}
        for key, name in coverage.operators.items()
    ]
    th = coverage.thresholds
    shown = [s for s in segments if s.operator in coverage.operators]
    segment_list = [
        {"op": s.operator,
         "line": [[p.lat, p.lon] for p in s.points] if segments_simplified else line_at(s.points, fitted.zoom),
         "popup": [["Ruas tanpa layanan / No service", f"{s.length_km:.2f} km, {s.no_service} pengukuran / readings"],
                   ["Operator", f"{coverage.operators.get(s.operator, s.operator)} ({s.operator})"],
                   ["Unit", s.device], time_row("Mulai / Start", s.start.time), time_row("Selesai / End", s.end.time)]}
        for s in shown
    ]
    kept = longest_within([len(s["line"]) for s in segment_list], [s.length_km for s in shown], segment_budget)
    segments_left_out = len(segment_list) - len(kept)
    segment_list = [segment_list[i] for i in kept]
    tags = list(tags)
    tag_list = [
        {"lat": t.lat, "lon": t.lon, "label": t.name,
         "popup": [["Tanda / Tag", t.name or "-"], ["Unit", t.device or "-"],
                   time_row("Waktu / Time", parse_time(t.time)) if t.time else ["Waktu / Time", "-"]]}
        for t in spread(tags, tag_budget)
    ]
    return {
        "title": options.title,
        "subtitle": f"Dibuat / made {_time(generated)} · H3 res {coverage.resolution} · blankspot {__version__}",
        "legend_note": (f"Blank: ≥{th.blank_share:.0%} tanpa layanan / without service; "
                        f"min. {th.min_samples} pengukuran per sel / readings per cell"),
        "generated": format_time(generated),
        "resolution": coverage.resolution,
        "tiles": None if not options.tiles else {"url": options.tiles, "attribution": options.tiles_attribution},
        "center": list(MAHAKAM_CENTER),
        "operators": operators,
        "default_operator": default,
        "technologies": sorted({f.rat for cell in coverage.cells for f in cell.by_rat}),
        "cells": cells,
        "tracks": fitted.pieces,
        "track_zoom": fitted.zoom,
        "tracks_left_out": fitted.left_out,
        "segments": segment_list,
        "segments_left_out": segments_left_out,
        "tags": tag_list,
        "tags_left_out": len(tags) - len(tag_list),
        "places": place_labels(places),
    }


def place_labels(places: Iterable[Place]) -> list[dict[str, Any]]:
    """Each named place once (the first of a name wins), as the page labels it."""
    labels: dict[str, dict[str, Any]] = {}
    for place in places:
        name = place.name.strip()
        if name and name.casefold() not in labels:
            labels[name.casefold()] = {"name": name, "lat": round(place.lat, 6), "lon": round(place.lon, 6)}
    return list(labels.values())


def _script_json(data: dict[str, Any]) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>`` or ``<!--`` can appear."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_map(data: dict[str, Any]) -> str:
    """The HTML page for ``data`` (from :func:`map_data`)."""
    values = {
        "VERSION": __version__,
        "TITLE": _html_text(data["title"]),
        "LEAFLET_LICENSE": _static("leaflet/LICENSE").replace("--", "- -"),
        "LEAFLET_CSS": _static("leaflet/leaflet.css"),
        "MAP_CSS": _static("map.css"),
        "DATA": _script_json(data),
        "LEAFLET_JS": _static("leaflet/leaflet.js"),
        "MAP_JS": _static("map.js"),
    }
    page = _static("map.html")
    # One pass, so a placeholder-looking text inside a replacement is never replaced again.
    pieces = page.split("{{")
    out = [pieces[0]]
    for piece in pieces[1:]:
        name, sep, rest = piece.partition("}}")
        if sep and name in values:
            out.append(values[name] + rest)
        else:
            out.append("{{" + piece)
    return "".join(out)


def map_summary(data: dict[str, Any]) -> str:
    """What a page of ``data`` (from :func:`map_data`) shows, in one line: cells, tracks, tags."""
    blank = sum(1 for c in data["cells"] if c["class"] == "blank")
    left = [f"{n:,} {what}" for n, what in ((data.get("tracks_left_out", 0), "track pieces"),
                                           (data.get("segments_left_out", 0), "stretches without service"),
                                           (data.get("tags_left_out", 0), "tags")) if n]
    return (f"{len(data['cells'])} cells ({blank} blank), {len(data['tracks'])} track pieces, "
            f"{len(data['tags'])} tagged spots, {len(data['places'])} place names"
            + (f"; left out to keep the page small: {', '.join(left)} (export has them all)" if left else ""))
