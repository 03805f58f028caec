"""The blank-spot report: each operator's blank cells, with the nearest named place.

What a Diskominfo officer pastes into a letter to an operator: where (cell centre, and
"4.2 km NE of Muara Kaman"), how sure (samples, share without service), and since when.

Places are the spots technicians tagged with a message on the unit (``tag`` events, such
as "kantor desa Muara Kaman Ulu"), plus any list given as CSV (``name,lat,lon``, ``#``
comments, the format of ``agent/sim/routes/mahakam.csv``; or ``nama;lintang;bujur`` with
decimal commas, as an Indonesian-locale spreadsheet saves it).  A deployment brings its own
list of villages; no built-in list is assumed, because a nearest "town" from another
district would mislead.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from agent.centre.coverage import CLASSES, Coverage
from agent.centre.export import inert_cell
from agent.centre.segments import Segment
from agent.shared.geo import bearing_deg, haversine_m
from agent.shared.reading import Event, Reading, format_time

COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
REPORT_COLUMNS = (
    "operator", "operator_name", "cell", "lat", "lon", "samples", "no_service", "no_service_pct", "no_answer",
    "devices", "first_seen", "last_seen", "nearest_place", "place_source", "place_km",
    "place_direction",
)


class PlacesError(ValueError):
    """A places file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Place:
    name: str
    lat: float
    lon: float
    source: str          # "tag" (tagged on a unit) or the places file's name
    device: str | None = None
    time: str | None = None


def tagged_place(reading: Reading) -> Place | None:
    """The place a ``tag`` event with a position marks (its name empty when it has no message)."""
    part = reading.part
    if not isinstance(part, Event) or part.type != "tag" or reading.position is None:
        return None
    name = (part.message or "").strip()
    return Place(name, reading.position.lat, reading.position.lon, "tag", reading.device, format_time(reading.time))


def tagged_places(readings: Iterable[Reading], named_only: bool = True) -> list[Place]:
    """``tag`` events with a position (and, if ``named_only``, a message)."""
    places = (tagged_place(r) for r in readings)
    return [p for p in places if p is not None and (p.name or not named_only)]


# Header names a places file may use for each column: English, or Bahasa Indonesia as an
# Indonesian office's own list has them.
PLACE_HEADERS = {"name": ("name", "nama"), "lat": ("lat", "lintang"), "lon": ("lon", "bujur")}


def parse_places_csv(text: str, source: str = "<places>") -> list[Place]:
    """Places from CSV with a header naming ``name``, ``lat`` and ``lon``; ``#`` lines are comments.

    Also what a spreadsheet set to Indonesian writes: semicolons between cells, decimal
    commas (``-0,18``) and the header ``nama;lintang;bujur``.  The separator is the header's:
    a semicolon when it has one and no comma.  A byte order mark at the start is ignored.
    """
    text = text.removeprefix("\ufeff")
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise PlacesError(f"{source}: no places")
    first = rows[0][1]
    delimiter = ";" if ";" in first and "," not in first else ","
    header = [h.strip().lower() for h in next(csv.reader([first], delimiter=delimiter))]
    columns = {key: next((h for h in header if h in names), None) for key, names in PLACE_HEADERS.items()}
    if None in columns.values():
        raise PlacesError(f"{source}:{rows[0][0]}: expected a header with name, lat and lon "
                          f"(or nama, lintang and bujur), got {first!r}")
    places = []
    for number, line in rows[1:]:
        cells = dict(zip(header, (c.strip() for c in next(csv.reader([line], delimiter=delimiter)))))
        try:
            lat, lon = (_coordinate(cells[columns[key]], delimiter) for key in ("lat", "lon"))
        except (KeyError, ValueError):
            raise PlacesError(f"{source}:{number}: expected numeric lat and lon, got {line!r}") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise PlacesError(f"{source}:{number}: lat/lon out of range: {line!r}")
        name = cells.get(columns["name"])
        if not name:
            raise PlacesError(f"{source}:{number}: a place needs a name: {line!r}")
        places.append(Place(name, lat, lon, source))
    if not places:
        raise PlacesError(f"{source}: no places after the header")
    return places


def _coordinate(text: str, delimiter: str) -> float:
    # Beside semicolons a comma is the decimal mark; beside commas it cannot be one.
    return float(text.replace(",", ".") if delimiter == ";" else text)


def compass(bearing: float) -> str:
    return COMPASS[int((bearing % 360 + 22.5) // 45) % 8]


@dataclass(frozen=True)
class Nearest:
    place: Place
    km: float
    direction: str   # from the place to the spot

    def describe(self) -> str:
        if self.km < 0.05:
            return f"at {self.place.name}"
        return f"{self.km:.1f} km {self.direction} of {self.place.name}"


def nearest_place(lat: float, lon: float, places: Sequence[Place]) -> Nearest | None:
    best: tuple[float, Place] | None = None
    for place in places:
        d = haversine_m(place.lat, place.lon, lat, lon)
        if best is None or d < best[0]:
            best = (d, place)
    if best is None:
        return None
    d, place = best
    return Nearest(place, d / 1000.0, compass(bearing_deg(place.lat, place.lon, lat, lon)))


@dataclass(frozen=True)
class ReportRow:
    operator: str
    operator_name: str
    cell: str
    lat: float
    lon: float
    samples: int
    no_service: int
    no_answer: int
    devices: tuple[str, ...]
    first_seen: str
    last_seen: str
    nearest: Nearest | None

    @property
    def no_service_pct(self) -> float:
        return round(100.0 * self.no_service / self.samples, 1)

    def as_dict(self) -> dict[str, object]:
        n = self.nearest
        return {
            "operator": self.operator, "operator_name": self.operator_name, "cell": self.cell,
            "lat": self.lat, "lon": self.lon, "samples": self.samples, "no_service": self.no_service,
            "no_service_pct": self.no_service_pct, "no_answer": self.no_answer,
            "devices": ",".join(self.devices),
            "first_seen": self.first_seen, "last_seen": self.last_seen,
            "nearest_place": None if n is None else n.place.name, "place_source": None if n is None else n.place.source,
            "place_km": None if n is None else round(n.km, 2), "place_direction": None if n is None else n.direction,
        }


def blank_spot_rows(coverage: Coverage, places: Sequence[Place], operator: str | None = None) -> list[ReportRow]:
    """The blank cells, per operator, nearest place first within an operator."""
    rows = []
    for cell in coverage.for_operator(operator):
        if cell.coverage_class != "blank":
            continue
        rows.append(ReportRow(
            operator=cell.operator, operator_name=cell.operator_name, cell=cell.cell, lat=cell.lat, lon=cell.lon,
            samples=cell.samples, no_service=cell.no_service, no_answer=cell.no_answer,
            devices=cell.devices,
            first_seen=format_time(cell.first_seen), last_seen=format_time(cell.last_seen),
            nearest=nearest_place(cell.lat, cell.lon, places),
        ))
    rows.sort(key=lambda r: (r.operator_name.casefold(), r.operator,
                             r.nearest.place.name if r.nearest else "", r.nearest.km if r.nearest else 0.0, r.cell))
    return rows


@dataclass(frozen=True)
class OperatorSummary:
    """One operator's part of the report: its cells per class, its stretches, its blank cells."""

    operator: str
    operator_name: str
    classes: dict[str, int]
    stretches: tuple[Segment, ...]
    rows: tuple[ReportRow, ...]

    @property
    def km_without_service(self) -> float:
        return sum(s.length_km for s in self.stretches)

    def as_dict(self) -> dict[str, object]:
        return {
            "operator": self.operator, "operator_name": self.operator_name, "cells": self.classes,
            "stretches": len(self.stretches), "km_without_service": round(self.km_without_service, 3),
            "blank_cells": [row.as_dict() for row in self.rows],
        }


def operator_summaries(coverage: Coverage, rows: Sequence[ReportRow], segments: Iterable[Segment] = (),
                       operator: str | None = None) -> list[OperatorSummary]:
    """Each operator's summary (only ``operator``'s when given), in the grid's order of operators."""
    stretches: dict[str, list[Segment]] = defaultdict(list)
    for s in segments:
        stretches[s.operator].append(s)
    by_operator: dict[str, list[ReportRow]] = defaultdict(list)
    for row in rows:
        by_operator[row.operator].append(row)
    summaries = []
    for key in [operator] if operator is not None else list(coverage.operators):
        cells = coverage.for_operator(key)
        summaries.append(OperatorSummary(
            operator=key, operator_name=coverage.operators.get(key, key),
            classes={cls: sum(1 for c in cells if c.coverage_class == cls) for cls in CLASSES},
            stretches=tuple(stretches.get(key, ())), rows=tuple(by_operator.get(key, ())),
        ))
    return summaries


def format_report(coverage: Coverage, rows: Sequence[ReportRow], segments: Iterable[Segment] = (),
                  operator: str | None = None) -> str:
    """The report as text: one block per operator, its blank cells and its stretches without service."""
    th = coverage.thresholds
    out = io.StringIO()
    out.write(f"Blank spots (H3 resolution {coverage.resolution}; a cell is blank when at least "
              f"{th.blank_share:.0%} of at least {th.min_samples} readings had no service)\n")
    for summary in operator_summaries(coverage, rows, segments, operator):
        counts, mine = summary.classes, summary.stretches
        out.write(f"\n{summary.operator_name} ({summary.operator}): {counts['blank']} blank, {counts['weak']} weak, "
                  f"{counts['covered']} covered, {counts['unknown']} with too few readings")
        if mine:
            out.write(f"; {summary.km_without_service:.1f} km without service along tracks in {len(mine)} "
                      + ("stretch" if len(mine) == 1 else "stretches"))
        out.write("\n")
        if not summary.rows:
            out.write("  no blank cells\n")
            continue
        out.write(f"  {'cell':<16} {'lat':>9} {'lon':>10} {'readings':>8} {'no service':>12}  {'last seen':<10}  nearest place\n")
        for row in summary.rows:
            where = row.nearest.describe() + (" (tag)" if row.nearest.place.source == "tag" else "") \
                if row.nearest else "-"
            out.write(f"  {row.cell:<16} {row.lat:>9.5f} {row.lon:>10.5f} {row.samples:>8} "
                      f"{row.no_service:>5} ({row.no_service_pct:>3.0f}%)  {row.last_seen[:10]:<10}  {where}\n")
    if coverage.unplaced:
        out.write(f"\n{coverage.unplaced} readings had no position and are not on the grid.\n")
    return out.getvalue()


def report_dict(coverage: Coverage, rows: Sequence[ReportRow], segments: Iterable[Segment] = (),
                operator: str | None = None) -> dict[str, object]:
    """What :func:`format_report` writes, as one JSON object (``blankspot report --json``)."""
    th = coverage.thresholds
    return {
        "resolution": coverage.resolution,
        "thresholds": {"min_samples": th.min_samples, "blank_share": th.blank_share, "weak_share": th.weak_share},
        "operators": [s.as_dict() for s in operator_summaries(coverage, rows, segments, operator)],
        "unplaced": coverage.unplaced,
    }


def write_report_csv(rows: Iterable[ReportRow], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=list(REPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: inert_cell(v) for k, v in row.as_dict().items()})
        count += 1
    return count
