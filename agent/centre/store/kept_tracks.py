"""Tracks, blank-spot segments and tagged spots kept per unit, so that map, report and serve
read what they draw, never every reading.

What is kept is exactly what one pass over every stored reading gives
(:mod:`agent.centre.segments`, :func:`agent.centre.report.tagged_place`):

- ``track_pieces``: every piece of each unit's track, one-point pieces too (they are never
  drawn, but they say where the track was cut); ``track_lines``: the line of each piece of
  two points or more as the map draws it at each zoom from ``FINEST_TRACK_ZOOM`` down to
  ``MIN_TRACK_ZOOM`` (:func:`agent.centre.mapview.coarser_lines`), with its readings' seq
  and time;
- ``blank_runs``: every run of no-service readings the segment finder starts, with the seq
  of the reading that ended it (``closed_at``, null while the unit's last readings are in
  it); those with at least ``min_readings`` no-service readings are the segments, kept with
  their points, and their lines as the map draws them at each zoom (``blank_lines``);
- ``kept_tags``: the tagged spots;
- ``kept_unreadable``: the rows whose JSON body did not decode when all was last computed
  (edited by hand, or written by an older blankspot): the survey's pass skips them, so
  they are left out here too.

Each piece and run carries its first and last WITA day and its bounding box, so that a
date range, a unit filter and an area select them in SQL; the part number of a piece is
its rank among its unit's pieces, counted when it is read.  A piece or segment crossing
midnight is one row, as the pass gives it.

**At ingest** only ``kept_dirty`` is touched: one row per block of :data:`BLOCK` seqs of a
unit that the commit stored a reading in, or in which what a stored reading counts for
moved (segments follow ``readings.counts_for``).  Why blocks of seqs and not days: the
track and the segments go along seqs, the rows are found by ``(device, seq)``, and the day
of a reading whose operator moved is not at hand when it moves.

**Before reading** (:meth:`KeptTracks.refresh`: map, report and serve call it, a collector
after a quiet moment), each dirty run of seqs is computed again from the stored rows'
columns (no body is decoded):

- from a seq where the pass's state is known not to depend on what came before: the first
  point of the track piece that holds the first dirty seq (a piece starts where the track
  was cut: the builder keeps nothing else), and a seq where no blank run was open (the
  finder's only other state is its previous point, which matters only to close a run);
- up to the first seq after the dirty ones where the new computation is in the same state as
  the kept one (a piece starts there in both; no run open in either): from there on both see
  the same readings, so what is kept after it stands.  At worst it goes to the unit's last
  reading.

Rows are read by their columns, never their JSON body, except by :meth:`KeptTracks.rebuild`
(``blankspot aggregate --rebuild``, the schema step): it decodes each body, as the survey's
pass does, to find the rows to leave out.  A collector stores only readings that decode, so
rows that do not are edited by hand, after which docs/collector.md asks for that rebuild.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING, Any

from agent.centre.cell_stats import wita_day
from agent.centre.mapview import FINEST_TRACK_ZOOM, MIN_TRACK_ZOOM, PIECE_COST, coarser_lines, finest_line
from agent.centre.report import Place
from agent.centre.segments import Segment, Track, TrackPoint, TrackRules, is_gap, path_length_m
from agent.centre.store.statements import Run, insert_rows
from agent.centre.stored_readings import decode_row
from agent.shared.reading import NO_SERVICE_REGISTRATIONS, ReadingError, format_time, parse_time

if TYPE_CHECKING:
    from agent.centre.cell_stats import FiguresFilter

log = logging.getLogger(__name__)

Stream = Callable[[str, Sequence[Any]], Iterator[tuple[Any, ...]]]

BLOCK = 1024  # seqs of a unit marked dirty together
RULES = TrackRules()  # what the survey's pass uses
_ZOOMS = range(MIN_TRACK_ZOOM, FINEST_TRACK_ZOOM + 1)
_END = 2 ** 62  # past every seq

# The columns a stored row is computed again from, in this order.
_ROW = "seq, time, kind, lat, lon, error, rat, quality, registration, counts_for, event_type, event_message"
_READABLE = "NOT EXISTS (SELECT 1 FROM kept_unreadable AS u WHERE u.device = readings.device AND u.seq = readings.seq)"


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else parse_time(value)


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def dirty_blocks(keys: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The ``kept_dirty`` rows of readings stored or moved, given as ``(device, seq)``."""
    return sorted({(device, seq // BLOCK) for device, seq in keys})


def mark_dirty(run: Run, keys: Iterable[tuple[str, int]]) -> None:
    """In the transaction storing readings: their blocks are to be computed again."""
    insert_rows(run, "kept_dirty", ("device", "block"), dirty_blocks(keys), "ON CONFLICT (device, block) DO NOTHING")


# -- computing: the pass's builders, with the state the convergence needs -----------------

@dataclass(slots=True)
class _Row:
    seq: int
    time: datetime
    kind: str
    lat: float | None
    lon: float | None
    error: str | None
    rat: str | None
    quality: str | None
    registration: str | None
    counts_for: str | None
    event_type: str | None
    event_message: str | None


def _bbox(points: Iterable[Sequence[float]]) -> tuple[float, float, float, float]:
    lats, lons = zip(*((p[0], p[1]) for p in points))
    return min(lats), min(lons), max(lats), max(lons)


def _days(points: Sequence[TrackPoint]) -> tuple[str, str]:
    days = [wita_day(p.time) for p in points]
    return min(days), max(days)


class _Writer:
    """Replaces kept rows of one table for one unit as new ones come, in seq order: before a
    new row at ``first_seq`` is written, the kept ones from the last one written up to it go."""

    def __init__(self, run: Run, tables: tuple[str, ...], device: str, start: int) -> None:
        self.run, self.tables, self.device, self.cleared = run, tables, device, start

    def clear_to(self, seq: int) -> None:
        """Kept rows from where the last clearing stopped up to ``seq`` (excluded) go."""
        if seq > self.cleared:
            for table in self.tables:
                self.run(f"DELETE FROM {table} WHERE device = ? AND first_seq >= ? AND first_seq < ?",
                         (self.device, self.cleared, seq))
            self.cleared = seq


class _Pieces:
    """The track builder of one unit (as :class:`~agent.centre.segments.TrackBuilder`), from
    ``start``, keeping every piece; stops where a new piece starts at a seq past ``hi``
    where a kept piece starts too."""

    def __init__(self, run: Run, device: str, start: int, hi: int, kept_starts: set[int]) -> None:
        self.run, self.device, self.start, self.hi = run, device, start, hi
        self.kept_starts = kept_starts
        self.writer = _Writer(run, ("track_pieces", "track_lines"), device, start)
        self.points: list[TrackPoint] = []
        self.done = False

    def feed(self, row: _Row) -> None:
        if row.seq < self.start or row.lat is None or row.lon is None:
            return
        point = TrackPoint(row.seq, row.time, row.lat, row.lon)
        points = self.points
        if points and is_gap(points[-1], point, RULES):
            self._write(points)
            self.writer.clear_to(point.seq)  # type: ignore[arg-type]
            if row.seq > self.hi and row.seq in self.kept_starts:
                self.done = True  # the kept pieces from here on are what this would give
                return
            self.points = points = []
        elif points and (point.lat, point.lon) == (points[-1].lat, points[-1].lon):
            return
        points.append(point)

    def finish(self) -> None:
        if not self.done:
            if self.points:
                self._write(self.points)
            self.writer.clear_to(_END)

    def _write(self, points: list[TrackPoint]) -> None:
        first, last = points[0], points[-1]
        self.writer.clear_to(first.seq + 1)  # type: ignore[operator]
        days = _days(points)
        box: tuple[float | None, ...] = (None,) * 4
        lines: dict[int, list[list[Any]]] = {}
        if len(points) >= 2:
            lines = _lines(points)
            box = _bbox(lines[FINEST_TRACK_ZOOM])
        self.run("INSERT INTO track_pieces (device, first_seq, last_seq, points, first_day, last_day, first_time,"
                 " last_time, length_m, south, west, north, east) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (self.device, first.seq, last.seq, len(points), *days, format_time(first.time),
                  format_time(last.time), path_length_m(points), *box))
        _write_lines(self.run, "track_lines", self.device, first.seq, lines)  # type: ignore[arg-type]


def _lines(points: list[TrackPoint]) -> dict[int, list[list[Any]]]:
    """The line of ``points`` as the map draws it at each zoom; each point: lat, lon, and its
    reading's seq and time (ms) after the first point's."""
    first = points[0]
    return {zoom: [[p[0], p[1], points[p[2]].seq - first.seq,  # type: ignore[operator]
                    _ms(points[p[2]].time - first.time)] for p in line]
            for zoom, line in coarser_lines(finest_line(points)).items()}


def _write_lines(run: Run, table: str, device: str, first_seq: int, lines: dict[int, list[list[Any]]]) -> None:
    for zoom, line in lines.items():
        run(f"INSERT INTO {table} (device, first_seq, zoom, points, line) VALUES (?, ?, ?, ?, ?)",
            (device, first_seq, zoom, len(line), json.dumps(line, separators=(",", ":"))))


@dataclass
class _OpenRun:
    operator: str
    points: list[TrackPoint]
    no_service: int = 1
    bridged: int = 0
    pending: list[TrackPoint] = field(default_factory=list)


class _Blanks:
    """The segment finder of one unit (as :class:`~agent.centre.segments.SegmentFinder`),
    from ``start`` (a seq where no run was open), keeping every run with the seq that closed
    it; stops at a seq past ``hi`` where no run is open here nor in what is kept
    (``kept_runs``: the kept runs from ``start`` on, as ``(first_seq, closed_at)`` in order)."""

    def __init__(self, run: Run, device: str, start: int, hi: int, kept_runs: list[tuple[int, int | None]]) -> None:
        self.run, self.device, self.start, self.hi = run, device, start, hi
        self.kept_runs = kept_runs
        self._kept_at = 0  # kept_runs[:_kept_at] start before the current seq
        self.writer = _Writer(run, ("blank_runs", "blank_lines"), device, start)
        self.open: _OpenRun | None = None
        self.previous: TrackPoint | None = None
        self.done = False

    def _kept_open_before(self, seq: int) -> bool:
        runs = self.kept_runs
        while self._kept_at < len(runs) and runs[self._kept_at][0] < seq:
            self._kept_at += 1
        if self._kept_at == 0:
            return False
        closed_at = runs[self._kept_at - 1][1]
        return closed_at is None or closed_at >= seq

    def feed(self, row: _Row) -> None:
        if (row.seq < self.start or row.kind != "signal" or row.error is not None or row.lat is None
                or row.lon is None or row.counts_for is None):
            return
        if row.seq > self.hi and self.open is None and not self._kept_open_before(row.seq):
            self.writer.clear_to(row.seq)
            self.done = True
            return
        point = TrackPoint(row.seq, row.time, row.lat, row.lon)
        if self.previous is not None and is_gap(self.previous, point, RULES):
            self._close(row.seq)
        self.previous = point
        current = self.open
        # No service, as agent.centre.coverage.is_no_service says it of the reading (error is None here).
        if row.rat == "NONE" or row.quality == "none" or row.registration in NO_SERVICE_REGISTRATIONS:
            if current is not None and current.operator != row.counts_for:
                self._close(row.seq)
                current = None
            if current is None:
                self.open = _OpenRun(row.counts_for, [point])
            else:
                current.points.extend(current.pending)
                current.bridged += len(current.pending)
                current.pending = []
                current.points.append(point)
                current.no_service += 1
        elif current is not None:
            current.pending.append(point)
            if (len(current.pending) > RULES.bridge_readings
                    or path_length_m([current.points[-1], *current.pending]) > RULES.bridge_m):
                self._close(row.seq)

    def finish(self) -> None:
        if not self.done:
            self._close(None)
            self.writer.clear_to(_END)

    def _close(self, closed_at: int | None) -> None:
        current, self.open = self.open, None
        if current is None:
            return
        points = current.points
        first = points[0]
        self.writer.clear_to(first.seq + 1)  # type: ignore[operator]
        kept = None
        lines: dict[int, list[list[Any]]] = {}
        if current.no_service >= RULES.min_readings:
            kept = json.dumps([[p.seq - first.seq, _ms(p.time - first.time), p.lat, p.lon]  # type: ignore[operator]
                               for p in points], separators=(",", ":"))
            lines = _lines(points)
        self.run("INSERT INTO blank_runs (device, first_seq, closed_at, operator, no_service, bridged, first_time,"
                 " first_day, last_day, south, west, north, east, length_m, points)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (self.device, first.seq, closed_at, current.operator, current.no_service, current.bridged,
                  format_time(first.time), *_days(points), *_bbox((p.lat, p.lon) for p in points),
                  path_length_m(points), kept))
        _write_lines(self.run, "blank_lines", self.device, first.seq, lines)  # type: ignore[arg-type]


class _Tags:
    def __init__(self, run: Run, device: str, lo: int, hi: int) -> None:
        self.run, self.device, self.hi = run, device, hi
        run("DELETE FROM kept_tags WHERE device = ? AND seq >= ? AND seq <= ?", (device, lo, hi))
        self.lo = lo
        self.done = False

    def feed(self, row: _Row) -> None:
        if row.seq > self.hi:
            self.done = True
        elif (row.seq >= self.lo and row.kind == "event" and row.event_type == "tag" and row.lat is not None
              and row.lon is not None):
            self.run("INSERT INTO kept_tags (device, seq, time, day, lat, lon, name) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (self.device, row.seq, format_time(row.time), wita_day(row.time), row.lat, row.lon,
                      (row.event_message or "").strip()))

    def finish(self) -> None:
        pass


class KeptTracks:
    """The kept tracks, segments and tags of one database, through ``run(sql, params) ->
    rows`` and ``stream(sql, params) -> rows`` (read as they come); SQL with ``?``."""

    def __init__(self, run: Run, stream: Stream | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.run = run
        self.stream = stream or run
        self.progress = progress  # told the readings read so far by a refresh, slice by slice
        self.read = 0

    # -- computing -----------------------------------------------------------------------

    def dirty(self) -> bool:
        return bool(self.run("SELECT 1 FROM kept_dirty LIMIT 1", ()))

    def dirty_devices(self) -> list[str]:
        return [row[0] for row in self.run("SELECT DISTINCT device FROM kept_dirty ORDER BY device", ())]

    def refresh(self, devices: Iterable[str] | None = None) -> int:
        """Every dirty run of seqs (of ``devices`` only, if given) computed again; returns the
        runs.  In the caller's transaction, which must keep collectors of those units out."""
        done = 0
        for device in (self.dirty_devices() if devices is None else devices):
            blocks = [row[0] for row in self.run("SELECT block FROM kept_dirty WHERE device = ? ORDER BY block",
                                                 (device,))]
            for lo_block, hi_block in _spans(blocks):
                self._compute(device, lo_block * BLOCK, (hi_block + 1) * BLOCK - 1)
                done += 1
            self.run("DELETE FROM kept_dirty WHERE device = ?", (device,))
            log.debug("kept tracks of %s computed again from %d blocks of seqs", device, len(blocks))
        return done

    def rebuild(self) -> None:
        """Everything kept computed again from every stored row (streamed, one unit at a time)."""
        for table in ("kept_dirty", "track_pieces", "track_lines", "blank_runs", "blank_lines", "kept_tags",
                      "kept_unreadable"):
            self.run(f"DELETE FROM {table}", ())
        rows = self.stream(f"SELECT device, {_ROW}, body FROM readings ORDER BY device, seq", ())
        for device, unit_rows in groupby(rows, key=lambda row: row[0]):
            builders = [_Pieces(self.run, device, -_END, _END, set()), _Blanks(self.run, device, -_END, _END, []),
                        _Tags(self.run, device, -_END, _END)]
            for raw in unit_rows:
                try:
                    decode_row(device, raw[1], raw[-1])
                except ReadingError as exc:
                    self.run("INSERT INTO kept_unreadable (device, seq, reason) VALUES (?, ?, ?)",
                             (device, raw[1], str(exc)))
                    continue
                row = _Row(raw[1], _moment(raw[2]), *raw[3:-1])
                for builder in builders:
                    builder.feed(row)
            for builder in builders:
                builder.finish()

    def _compute(self, device: str, lo: int, hi: int) -> None:
        run = self.run
        rows = run("SELECT first_seq FROM track_pieces WHERE device = ? AND first_seq <= ?"
                   " ORDER BY first_seq DESC LIMIT 1", (device, lo))
        piece_start = rows[0][0] if rows else -_END
        run_start = lo
        while True:  # back to a seq where no blank run was open
            rows = run("SELECT first_seq, closed_at FROM blank_runs WHERE device = ? AND first_seq < ?"
                       " ORDER BY first_seq DESC LIMIT 1", (device, run_start))
            if not rows or (rows[0][1] is not None and rows[0][1] < run_start):
                break
            run_start = rows[0][0]
        starts = {row[0] for row in run("SELECT first_seq FROM track_pieces WHERE device = ? AND first_seq > ?",
                                        (device, hi))}
        runs = [(row[0], row[1]) for row in run("SELECT first_seq, closed_at FROM blank_runs WHERE device = ?"
                                                " AND first_seq >= ? ORDER BY first_seq", (device, run_start))]
        builders = [_Pieces(run, device, piece_start, hi, starts), _Blanks(run, device, run_start, hi, runs),
                    _Tags(run, device, lo, hi)]
        first = min(piece_start, run_start, lo)
        # Read in slices: the builders write as they go, and the first slices are usually all it takes.
        while True:
            raws = run(f"SELECT {_ROW} FROM readings WHERE device = ? AND seq >= ? AND {_READABLE}"
                       " ORDER BY seq LIMIT ?",
                       (device, first, 2000))
            self.read += len(raws)
            if self.progress is not None:
                self.progress(self.read)
            for raw in raws:
                row = _Row(raw[0], _moment(raw[1]), *raw[2:])
                for builder in builders:
                    if not builder.done:
                        builder.feed(row)
                if all(builder.done for builder in builders):
                    return
            if len(raws) < 2000:
                break
            first = raws[-1][0] + 1
        for builder in builders:
            builder.finish()

    # -- reading -------------------------------------------------------------------------

    def tracks(self, zoom: int, where: "FiguresFilter") -> list[Track]:
        """Track pieces of two points or more, simplified for ``zoom`` (clamped to the zooms
        kept), that ``where`` takes: a day of the piece's span in its days, its unit in its
        units, a point of its line at the finest zoom in its area."""
        zoom = max(MIN_TRACK_ZOOM, min(FINEST_TRACK_ZOOM, zoom))
        tracks = []
        for row in self._pieces(where, zoom, "p.first_seq, p.first_time, p.length_m, l.line"):
            device, part, first_seq, first_time, length_m, line = row[:6]
            drawn = json.loads(line)
            if where.area is not None and not _in_area(drawn, row[6], where.area):
                continue
            start = parse_time(first_time)
            points = tuple(TrackPoint(first_seq + p[2], start + timedelta(milliseconds=p[3]), p[0], p[1])
                           for p in drawn)
            tracks.append(Track(device, part, points, length_m))
        return tracks

    def track_costs(self, where: "FiguresFilter") -> dict[int, int]:
        """Per zoom, what the pieces ``where`` takes weigh on a map: their points, plus
        ``PIECE_COST`` each."""
        costs = {zoom: 0 for zoom in _ZOOMS}
        if where.area is None:
            clause, params = _piece_filter(where)
            for zoom, pieces, points in self.run(
                    "SELECT l.zoom, count(*), sum(l.points) FROM track_pieces AS p JOIN track_lines AS l"
                    " ON l.device = p.device AND l.first_seq = p.first_seq"
                    f" WHERE p.points >= 2{clause} GROUP BY l.zoom", params):
                costs[zoom] = int(points) + PIECE_COST * int(pieces)
            return costs
        for zoom in _ZOOMS:
            costs[zoom] = sum(len(t.points) + PIECE_COST for t in self.tracks(zoom, where))
        return costs

    def _pieces(self, where: "FiguresFilter", zoom: int, columns: str) -> list[tuple[Any, ...]]:
        # The part number counts every piece of the unit, whatever the filter leaves out.
        units = where.units_term()
        devices, device_params = ("", []) if units is None else (" AND " + units[0], units[1])
        clause, params = _piece_filter(where, devices=False)
        finest = ", f.line" if where.area is not None else ""
        join_finest = (" JOIN track_lines AS f ON f.device = p.device AND f.first_seq = p.first_seq AND f.zoom = ?"
                       if where.area is not None else "")
        return self.run(
            f"SELECT p.device, p.part, {columns}{finest} FROM"
            " (SELECT *, row_number() OVER (PARTITION BY device ORDER BY first_seq) AS part FROM track_pieces"
            f" WHERE points >= 2{devices}) AS p"
            " JOIN track_lines AS l ON l.device = p.device AND l.first_seq = p.first_seq AND l.zoom = ?"
            f"{join_finest} WHERE 1 = 1{clause} ORDER BY p.device, p.first_seq",
            [*device_params, zoom, *([FINEST_TRACK_ZOOM] if where.area is not None else []), *params])

    def segments(self, where: "FiguresFilter", zoom: int | None = None) -> list[Segment]:
        """The blank-spot segments ``where`` takes (a day of its span in its days, its unit in
        its units, a point of its line at the finest zoom in its area): with every point, or
        with ``zoom`` as the map draws them at that zoom."""
        clause, params = _piece_filter(where)
        finest = where.area is not None
        if zoom is None:
            line, join, first = "p.points", "", []
        else:
            zoom = max(MIN_TRACK_ZOOM, min(FINEST_TRACK_ZOOM, zoom))
            line = "l.line"
            join = " JOIN blank_lines AS l ON l.device = p.device AND l.first_seq = p.first_seq AND l.zoom = ?"
            first = [zoom]
        if finest:
            join += " JOIN blank_lines AS f ON f.device = p.device AND f.first_seq = p.first_seq AND f.zoom = ?"
            first.append(FINEST_TRACK_ZOOM)
        rows = self.run("SELECT p.device, p.first_seq, p.operator, p.no_service, p.bridged, p.first_time, p.length_m,"
                        f" {line}, {'f.line' if finest else 'NULL'} FROM blank_runs AS p{join}"
                        f" WHERE p.points IS NOT NULL{clause} ORDER BY p.device, p.first_seq", [*first, *params])
        segments = []
        for device, first_seq, operator, no_service, bridged, first_time, length_m, points, at_finest in rows:
            line = json.loads(points)
            if where.area is not None and not (_in_area(line, at_finest, where.area) if zoom is not None
                                               else _inside_any(json.loads(at_finest), where.area)):
                continue
            start = parse_time(first_time)
            if zoom is None:  # every point: seq and time after the first, lat, lon
                track = tuple(TrackPoint(first_seq + p[0], start + timedelta(milliseconds=p[1]), p[2], p[3])
                              for p in line)
                length_m = None
            else:  # as drawn: lat, lon, seq and time after the first
                track = tuple(TrackPoint(first_seq + p[2], start + timedelta(milliseconds=p[3]), p[0], p[1])
                              for p in line)
            segments.append(Segment(device, operator, track, no_service, bridged, length_m))
        return segments

    def unreadable(self) -> list[tuple[str, int, str]]:
        return [(row[0], row[1], row[2]) for row in self.run(
            "SELECT device, seq, reason FROM kept_unreadable ORDER BY device, seq", ())]

    def tags(self, where: "FiguresFilter") -> list[Place]:
        """The tagged spots ``where`` takes."""
        terms, params = [], []
        if where.days is not None:
            terms.append("day >= ? AND day <= ?")
            params += list(where.days)
        if (units := where.units_term()) is not None:
            terms.append(units[0])
            params += units[1]
        if where.area is not None:
            south, west, north, east = where.area
            terms.append("lat >= ? AND lat <= ? AND lon >= ? AND lon <= ?")
            params += [south, north, west, east]
        clause = " WHERE " + " AND ".join(terms) if terms else ""
        return [Place(name, lat, lon, "tag", device, time) for device, time, lat, lon, name in self.run(
            f"SELECT device, time, lat, lon, name FROM kept_tags{clause} ORDER BY device, seq", params)]


def _spans(blocks: list[int]) -> Iterator[tuple[int, int]]:
    """Runs of consecutive block numbers, as (first, last)."""
    start = previous = None
    for block in blocks:
        if previous is not None and block != previous + 1:
            yield start, previous  # type: ignore[misc]
            start = None
        if start is None:
            start = block
        previous = block
    if start is not None:
        yield start, previous  # type: ignore[misc]


def _piece_filter(where: "FiguresFilter", devices: bool = True) -> tuple[str, list[Any]]:
    """`` AND ...`` over a table ``p`` with days, bounding box (and device): what may be taken."""
    terms, params = [], []
    if where.days is not None:
        terms.append("p.last_day >= ? AND p.first_day <= ?")
        params += list(where.days)
    if devices and (units := where.units_term("p.device")) is not None:
        terms.append(units[0])
        params += units[1]
    if where.area is not None:
        south, west, north, east = where.area
        terms.append("p.north >= ? AND p.south <= ? AND p.east >= ? AND p.west <= ?")
        params += [south, north, west, east]
    return "".join(" AND " + term for term in terms), params


def _in_area(drawn: Sequence[Sequence[float]], finest: str, area: tuple[float, float, float, float]) -> bool:
    """Whether a line (``[lat, lon, ...]`` points) has a point in ``area`` at the finest zoom
    (``finest``: that line's JSON).  Its points at a coarser zoom are some of the finest's, so
    one of them inside answers without reading the finest."""
    return _inside_any(drawn, area) or _inside_any(json.loads(finest), area)


def _inside_any(points: Iterable[Sequence[float]], area: tuple[float, float, float, float]) -> bool:
    south, west, north, east = area
    return any(south <= p[0] <= north and west <= p[1] <= east for p in points)
