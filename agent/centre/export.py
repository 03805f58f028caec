"""Writers of the survey's layers as GeoJSON (RFC 7946), KML 2.2 and CSV.

Four layers: ``points`` (every positioned reading), ``tracks`` (each unit's line, in
pieces), ``segments`` (blank-spot stretches along the tracks) and ``cells`` (the coverage
grid, one polygon per cell and operator).  Layers are iterables and are consumed once, so
points stream from the database instead of sitting in memory.

Every layer has the same columns in every format (:data:`COLUMNS`, each with its type), and
the same operator vocabulary: ``operator`` is the key the figures count for (``510-10``, as
:mod:`agent.centre.coverage` attributes it: a no-service reading counts for its SIM's home
operator) and ``operator_name`` its brand (``Telkomsel``).  What the modem itself called the
network is a signal point's ``modem_operator``.

- GeoJSON: one FeatureCollection; every feature's ``layer`` property names its layer.
  Positions are ``[lon, lat]``; polygon rings are closed and counter-clockwise.
- KML: one Document with a Folder per layer (cells in a sub-folder per operator), a style
  per coverage class and no icon from the web, a typed ``Schema`` per layer, and each
  placemark's ``SchemaData`` holding the same figures as the GeoJSON properties.
- CSV: one layer per file (a CSV holds one table).  Points carry ``lat``/``lon``; tracks,
  segments and cells carry their shape as WKT in ``wkt`` (QGIS: *Delimited Text*, geometry
  definition *WKT*).  Text a unit sent (a tag's message, a modem's operator name) could
  start as a spreadsheet formula does: such a cell is written inert (:func:`inert_cell`).
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO
from xml.etree import ElementTree as ET

from agent.centre.choices import EXPORT_FORMATS, EXPORT_LAYERS
from agent.centre.coverage import UNKNOWN_OPERATOR, Attributed, CellCoverage, Coverage, cell_ring, is_no_service
from agent.centre.segments import Segment, Track
from agent.shared.operators import operator_name
from agent.shared.reading import Event, Latency, Signal, Throughput, format_time, part_dict

LAYERS = EXPORT_LAYERS
FORMATS = EXPORT_FORMATS
KML_NS = "http://www.opengis.net/kml/2.2"

# KML colours are aabbggrr.  The same colours as the HTML map (agent/centre/static/map.js).
CLASS_COLORS = {"blank": "#d7191c", "weak": "#fdae61", "covered": "#1a9641", "unknown": "#9e9e9e"}
TRACK_COLOR = "#2b6cb0"
SEGMENT_COLOR = "#7f0000"
TAG_COLOR = "#6a1b9a"

@dataclass(frozen=True)
class Column:
    """One attribute of a layer: its name and its KML 2.2 ``SimpleField`` type (``string``,
    ``int`` or ``double``), which GDAL and QGIS read it as."""

    name: str
    type: str = "string"


def _columns(*spec: str) -> tuple[Column, ...]:
    """``"seq:int"``, ``"lat:double"``, ``"device"`` (a string) -> columns."""
    return tuple(Column(*item.split(":")) for item in spec)


# A reading's part fields by their schema type (agent/shared/reading.py): integers stay
# integers, numbers are doubles, strings, choices and event data (JSON text) are strings.
_FIELD_TYPES = {"int": "int", "num": "double"}
# KML's int has 32 bits: a count that may pass 2**31 is a double (exact up to 2**53).
_WIDE_INTEGERS = frozenset({"bytes_used"})
# The modem's own name of the network it is on, beside the operator the reading counts for.
MODEM_OPERATOR = "modem_operator"


def _part_columns() -> tuple[Column, ...]:
    columns: dict[str, Column] = {}
    for part in (Signal, Latency, Throughput, Event):
        for name, kind in part.FIELDS:
            name = MODEM_OPERATOR if part is Signal and name == "operator" else name
            kind = kind.rstrip("!") if isinstance(kind, str) else "str"
            column = Column(name, "double" if name in _WIDE_INTEGERS else _FIELD_TYPES.get(kind, "string"))
            if columns.setdefault(name, column) != column:
                raise TypeError(f"field {name} has two types in the reading's parts")
    return tuple(columns.values())


POINT_COLUMNS = _columns("device", "seq:int", "time", "time_source", "kind", "operator", "operator_name",
                         "lat:double", "lon:double", "fix") + _part_columns()
TRACK_COLUMNS = _columns("device", "part:int", "points:int", "length_km:double", "start_time", "end_time")
SEGMENT_COLUMNS = _columns("device", "operator", "operator_name", "start_time", "end_time", "duration_s:double",
                           "length_km:double", "no_service:int", "bridged:int", "start_seq:int", "end_seq:int",
                           "start_lat:double", "start_lon:double", "end_lat:double", "end_lon:double")
CELL_COLUMNS = _columns("cell", "resolution:int", "operator", "operator_name", "class", "samples:int",
                        "no_service:int", "no_service_pct:double", "no_answer:int", "quality_median",
                        "rsrp_median_dbm:double", "rsrp_p10_dbm:double", "rssi_median_dbm:double",
                        "rssi_p10_dbm:double", "by_rat", "latency_samples:int", "latency_median_ms:double",
                        "throughput_samples:int", "down_median_mbps:double", "up_median_mbps:double", "devices",
                        "first_seen", "last_seen", "lat:double", "lon:double")
COLUMNS = {"points": POINT_COLUMNS, "tracks": TRACK_COLUMNS, "segments": SEGMENT_COLUMNS, "cells": CELL_COLUMNS}


def default_operator_name(key: str) -> str:
    """The brand of an operator key when nothing better is known: ``510-10`` -> ``Telkomsel``
    (by its digits: ``510-01`` is Indosat)."""
    mcc, _, mnc = key.partition("-")
    return operator_name(mcc, mnc) or ("unknown SIM" if key == UNKNOWN_OPERATOR else key)


@dataclass
class Layers:
    """What to write; a layer left empty is not written.

    The layers are written in the order of :data:`LAYERS`, each consumed once.  The grid may
    be given as a function, called only when the cells are written: the survey fills it in
    the same pass that yields the points (``agent.centre.survey.export_layers``).
    ``operator_names`` names the operator keys of points and segments as the grid names its
    cells' (``Telkomsel`` for ``510-10``).
    """

    points: Iterable[Attributed] = ()
    tracks: Iterable[Track] = ()
    segments: Iterable[Segment] = ()
    coverage: Coverage | Callable[[], Coverage] | None = None
    what: tuple[str, ...] = field(default=LAYERS)
    operator_names: Callable[[str], str] = default_operator_name

    def grid(self) -> Coverage | None:
        return self.coverage() if callable(self.coverage) else self.coverage


# -- properties ----------------------------------------------------------------------------

def point_properties(item: Attributed, names: Callable[[str], str] = default_operator_name) -> dict[str, Any]:
    """The reading's fields, with ``operator`` the one its figures count for (a no-service
    reading's is its SIM's home operator, as in the grid) and the modem's own name for the
    network in ``modem_operator``."""
    r = item.reading
    assert r.position is not None
    props: dict[str, Any] = {
        "device": r.device, "seq": r.seq, "time": format_time(r.time), "time_source": r.time_source,
        "kind": r.kind, "operator": item.operator,
        "operator_name": None if item.operator is None else names(item.operator),
        "lat": r.position.lat, "lon": r.position.lon, "fix": r.position.fix,
    }
    for name, value in part_dict(r.part).items():
        if name == "operator" and isinstance(r.part, Signal):
            name = MODEM_OPERATOR
        props[name] = json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, dict) else value
    return props


def track_properties(track: Track) -> dict[str, Any]:
    return {
        "device": track.device, "part": track.part, "points": len(track.points),
        "length_km": round(track.length_km, 3),
        "start_time": format_time(track.points[0].time), "end_time": format_time(track.points[-1].time),
    }


def segment_properties(segment: Segment, names: Callable[[str], str] = default_operator_name) -> dict[str, Any]:
    return {
        "device": segment.device, "operator": segment.operator, "operator_name": names(segment.operator),
        "start_time": format_time(segment.start.time), "end_time": format_time(segment.end.time),
        "duration_s": round(segment.duration_s, 1), "length_km": round(segment.length_km, 3),
        "no_service": segment.no_service, "bridged": segment.bridged,
        "start_seq": segment.start.seq, "end_seq": segment.end.seq,
        "start_lat": segment.start.lat, "start_lon": segment.start.lon,
        "end_lat": segment.end.lat, "end_lon": segment.end.lon,
    }


def by_rat_text(cell: CellCoverage) -> str:
    """``LTE 20 (RSRP -97/-104 dBm); NONE 4``: samples, then median/10th percentile level."""
    parts = []
    for f in cell.by_rat:
        text = f"{f.rat} {f.samples}"
        if f.rsrp_median_dbm is not None:
            text += f" (RSRP {f.rsrp_median_dbm:g}/{f.rsrp_p10_dbm:g} dBm)"
        elif f.rssi_median_dbm is not None:
            text += f" (RSSI {f.rssi_median_dbm:g}/{f.rssi_p10_dbm:g} dBm)"
        parts.append(text)
    return "; ".join(parts)


def cell_properties(cell: CellCoverage, resolution: int) -> dict[str, Any]:
    share = cell.no_service_share
    return {
        "cell": cell.cell, "resolution": resolution, "operator": cell.operator, "operator_name": cell.operator_name,
        "class": cell.coverage_class, "samples": cell.samples, "no_service": cell.no_service,
        "no_service_pct": None if share is None else round(100 * share, 1), "no_answer": cell.no_answer,
        "quality_median": cell.quality_median,
        "rsrp_median_dbm": cell.rsrp_median_dbm, "rsrp_p10_dbm": cell.rsrp_p10_dbm,
        "rssi_median_dbm": cell.rssi_median_dbm, "rssi_p10_dbm": cell.rssi_p10_dbm, "by_rat": by_rat_text(cell),
        "latency_samples": cell.latency_samples, "latency_median_ms": cell.latency_median_ms,
        "throughput_samples": cell.throughput_samples, "down_median_mbps": cell.down_median_mbps,
        "up_median_mbps": cell.up_median_mbps, "devices": ",".join(cell.devices),
        "first_seen": format_time(cell.first_seen), "last_seen": format_time(cell.last_seen),
        "lat": cell.lat, "lon": cell.lon,
    }


def _lonlat(lat: float, lon: float) -> list[float]:
    return [round(lon, 7), round(lat, 7)]


# -- GeoJSON ------------------------------------------------------------------------------

def geojson_features(layers: Layers) -> Iterator[dict[str, Any]]:
    if "points" in layers.what:
        for item in layers.points:
            p = item.reading.position
            if p is not None:
                yield _feature("points", {"type": "Point", "coordinates": _lonlat(p.lat, p.lon)},
                               point_properties(item, layers.operator_names))
    if "tracks" in layers.what:
        for track in layers.tracks:
            line = [_lonlat(p.lat, p.lon) for p in track.points]
            yield _feature("tracks", {"type": "LineString", "coordinates": line}, track_properties(track))
    if "segments" in layers.what:
        for segment in layers.segments:
            yield _feature("segments", _segment_geometry(segment), segment_properties(segment, layers.operator_names))
    coverage = layers.grid() if "cells" in layers.what else None
    if coverage is not None:
        for cell in coverage.cells:
            ring = [[round(lon, 7), round(lat, 7)] for lon, lat in cell_ring(cell.cell)]
            yield _feature("cells", {"type": "Polygon", "coordinates": [ring]},
                           cell_properties(cell, coverage.resolution))


def _segment_geometry(segment: Segment) -> dict[str, Any]:
    line = [_lonlat(p.lat, p.lon) for p in segment.points]
    if len({tuple(c) for c in line}) < 2:  # a unit that did not move: a LineString needs two positions
        return {"type": "Point", "coordinates": line[0]}
    return {"type": "LineString", "coordinates": line}


def _feature(layer: str, geometry: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": {"layer": layer, **properties}}


def write_geojson(layers: Layers, out: TextIO) -> int:
    """Stream a FeatureCollection to ``out``; returns the number of features."""
    out.write('{"type":"FeatureCollection","features":[\n')
    count = 0
    for feature in geojson_features(layers):
        if count:
            out.write(",\n")
        out.write(json.dumps(feature, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
        count += 1
    out.write("\n]}\n")
    return count


# -- KML ----------------------------------------------------------------------------------

def kml_color(hex_rgb: str, alpha: int = 0xFF) -> str:
    """``#d7191c`` -> ``ff1c19d7``: KML writes colours as alpha, blue, green, red."""
    r, g, b = hex_rgb[1:3], hex_rgb[3:5], hex_rgb[5:7]
    return f"{alpha:02x}{b}{g}{r}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def _styles() -> list[ET.Element]:
    styles = []
    for cls, color in CLASS_COLORS.items():
        style = ET.Element("Style", id=f"cell-{cls}")
        line = _sub(style, "LineStyle")
        _sub(line, "color", kml_color(color))
        _sub(line, "width", "1")
        poly = _sub(style, "PolyStyle")
        _sub(poly, "color", kml_color(color, 0x80))
        styles.append(style)
    for name, color, width in (("track", TRACK_COLOR, "2"), ("segment", SEGMENT_COLOR, "5")):
        style = ET.Element("Style", id=name)
        line = _sub(style, "LineStyle")
        _sub(line, "color", kml_color(color))
        _sub(line, "width", width)
        styles.append(style)
    # No Icon: a viewer draws its own built-in placemark in the style's colour; an icon fetched
    # from a web host would leave the points invisible offline.
    for name, color, scale in (("point", TRACK_COLOR, "0.5"), ("point-none", CLASS_COLORS["blank"], "0.6"),
                               ("point-no-answer", CLASS_COLORS["unknown"], "0.5"), ("tag", TAG_COLOR, "0.9")):
        style = ET.Element("Style", id=name)
        icon_style = _sub(style, "IconStyle")
        _sub(icon_style, "color", kml_color(color))
        _sub(icon_style, "scale", scale)
        styles.append(style)
    return styles


def _schemas() -> list[ET.Element]:
    """A typed ``Schema`` per layer, so that GDAL and QGIS read numbers as numbers."""
    schemas = []
    for layer, columns in COLUMNS.items():
        schema = ET.Element("Schema", name=layer, id=layer)
        for column in columns:
            _sub(schema, "SimpleField", type=column.type, name=column.name)
        schemas.append(schema)
    return schemas


def _placemark(name: str, style: str, layer: str, properties: dict[str, Any], when: str | None = None) -> ET.Element:
    # Children in the order the KML 2.2 schema gives them: name, TimePrimitive, styleUrl,
    # ExtendedData, then the geometry.
    mark = ET.Element("Placemark")
    _sub(mark, "name", name)
    if when is not None:
        stamp = _sub(mark, "TimeStamp")
        _sub(stamp, "when", when)
    _sub(mark, "styleUrl", f"#{style}")
    data = _sub(_sub(mark, "ExtendedData"), "SchemaData", schemaUrl=f"#{layer}")
    for key, value in properties.items():
        if value is not None:  # an absent SimpleData is a null field
            _sub(data, "SimpleData", str(value), name=key)
    return mark


def _coordinates(pairs: Iterable[tuple[float, float]]) -> str:
    """(lat, lon) pairs as KML's ``lon,lat,0`` tuples."""
    return " ".join(f"{round(lon, 7)},{round(lat, 7)},0" for lat, lon in pairs)


def _point_mark(item: Attributed, names: Callable[[str], str]) -> ET.Element:
    r = item.reading
    assert r.position is not None
    part = r.part
    if isinstance(part, Event) and part.type == "tag":
        style = "tag"
    elif isinstance(part, Signal) and part.error is not None:
        style = "point-no-answer"
    elif isinstance(part, Signal) and is_no_service(part):
        style = "point-none"
    else:
        style = "point"
    label = part.message if isinstance(part, Event) and part.message else f"{r.device} #{r.seq}"
    mark = _placemark(label, style, "points", point_properties(item, names), when=format_time(r.time))
    point = _sub(mark, "Point")
    _sub(point, "coordinates", _coordinates([(r.position.lat, r.position.lon)]))
    return mark


def _line_mark(name: str, style: str, layer: str, properties: dict[str, Any],
               pairs: list[tuple[float, float]]) -> ET.Element:
    mark = _placemark(name, style, layer, properties)
    if len(set(pairs)) < 2:
        geometry = _sub(mark, "Point")
        pairs = pairs[:1]
    else:
        geometry = _sub(mark, "LineString")
        _sub(geometry, "tessellate", "1")
    _sub(geometry, "coordinates", _coordinates(pairs))
    return mark


def _cell_mark(cell: CellCoverage, resolution: int) -> ET.Element:
    share = cell.no_service_share
    label = f"{cell.coverage_class}: {cell.no_service}/{cell.samples} no service" if share is not None else cell.coverage_class
    mark = _placemark(label, f"cell-{cell.coverage_class}", "cells", cell_properties(cell, resolution))
    polygon = _sub(mark, "Polygon")
    outer = _sub(polygon, "outerBoundaryIs")
    ring = _sub(outer, "LinearRing")
    _sub(ring, "coordinates", _coordinates((lat, lon) for lon, lat in cell_ring(cell.cell)))
    return mark


def write_kml(layers: Layers, out: TextIO, title: str = "blankspot survey") -> int:
    """Stream a KML 2.2 document to ``out``; returns the number of placemarks."""
    def text(el: ET.Element) -> str:
        return ET.tostring(el, encoding="unicode")

    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(f'<kml xmlns="{KML_NS}"><Document>')
    name = ET.Element("name")
    name.text = title
    out.write(text(name))
    for element in _styles() + _schemas():
        out.write(text(element))
    count = 0

    def folder(title: str, marks: Iterable[ET.Element]) -> None:
        nonlocal count
        out.write(f"<Folder>{text(_named('name', title))}")
        for mark in marks:
            out.write(text(mark))
            count += 1
        out.write("</Folder>\n")

    if "points" in layers.what:
        folder("points", (_point_mark(i, layers.operator_names) for i in layers.points if i.reading.position is not None))
    if "tracks" in layers.what:
        folder("tracks", (_line_mark(f"{t.device} ({t.part})", "track", "tracks", track_properties(t),
                                     [(p.lat, p.lon) for p in t.points]) for t in layers.tracks))
    if "segments" in layers.what:
        folder("segments", (_line_mark(f"{s.device}: {s.length_km:.2f} km without service", "segment", "segments",
                                       segment_properties(s, layers.operator_names), [(p.lat, p.lon) for p in s.points])
                            for s in layers.segments))
    coverage = layers.grid() if "cells" in layers.what else None
    if coverage is not None:
        out.write(f"<Folder>{text(_named('name', 'cells'))}")
        for key, operator_name in coverage.operators.items():
            cells = coverage.for_operator(key)
            if cells:
                folder(f"{operator_name} ({key})", (_cell_mark(c, coverage.resolution) for c in cells))
        out.write("</Folder>\n")
    out.write("</Document></kml>\n")
    return count


def _named(tag: str, value: str) -> ET.Element:
    el = ET.Element(tag)
    el.text = value
    return el


# -- CSV ----------------------------------------------------------------------------------

def _wkt_line(pairs: list[tuple[float, float]]) -> str:
    if len(set(pairs)) < 2:
        lat, lon = pairs[0]
        return f"POINT ({round(lon, 7)} {round(lat, 7)})"
    return "LINESTRING (" + ", ".join(f"{round(lon, 7)} {round(lat, 7)}" for lat, lon in pairs) + ")"


def _wkt_cell(cell: str) -> str:
    return "POLYGON ((" + ", ".join(f"{round(lon, 7)} {round(lat, 7)}" for lon, lat in cell_ring(cell)) + "))"


# What a spreadsheet takes for the start of a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def inert_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text instead of running it: a string that starts
    as a formula does (``=cmd|' /C calc'!A0``, ``@SUM(...)``) gets a leading apostrophe,
    unless it is a plain number (``-97.5``); None is an empty cell; anything else is kept."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_csv(layers: Layers, out: TextIO) -> int:
    """One layer (``layers.what`` must name exactly one) as CSV; returns the number of rows."""
    if len(layers.what) != 1:
        raise ValueError(f"a CSV file holds one layer, got {', '.join(layers.what)}")
    layer = layers.what[0]
    rows: Iterable[dict[str, Any]]
    if layer == "points":
        rows = (point_properties(i, layers.operator_names) for i in layers.points if i.reading.position is not None)
    elif layer == "tracks":
        rows = ({**track_properties(t), "wkt": _wkt_line([(p.lat, p.lon) for p in t.points])} for t in layers.tracks)
    elif layer == "segments":
        rows = ({**segment_properties(s, layers.operator_names), "wkt": _wkt_line([(p.lat, p.lon) for p in s.points])}
                for s in layers.segments)
    elif layer == "cells":
        coverage = layers.grid()
        rows = () if coverage is None else (
            {**cell_properties(c, coverage.resolution), "wkt": _wkt_cell(c.cell)} for c in coverage.cells
        )
    else:
        raise ValueError(f"unknown layer {layer!r}")
    # Points carry their position in lat/lon; the other layers' shapes are WKT.
    names = [c.name for c in COLUMNS[layer]] + ([] if layer == "points" else ["wkt"])
    writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: inert_cell(v) for k, v in row.items()})
        count += 1
    return count


WRITERS = {"geojson": write_geojson, "kml": write_kml, "csv": write_csv}
