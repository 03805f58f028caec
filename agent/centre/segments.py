"""Units' tracks, and the stretches of each track without service: blank-spot segments.

A track is a unit's positioned readings in ``seq`` order, cut where two consecutive ones
are too far apart in time or space to join with a straight line (the unit was off, or
its readings were lost): :class:`TrackRules` ``max_gap_s`` / ``max_gap_m``.

A blank-spot segment is a run of no-service readings along a track (rules in
:class:`TrackRules`, explained in ``docs/map.md``):

- it starts at a no-service reading and ends at the last no-service reading before service
  returns for good;
- service for at most ``bridge_readings`` readings spanning at most ``bridge_m`` metres
  does not end it: a bar of signal on a river bend is not coverage anyone can use;
- readings where the modem did not answer (``error``) neither extend nor end it;
  readings without a position are left out;
- a gap of the track ends it;
- its length is measured along the track (haversine between consecutive readings) from
  its first to its last no-service reading, so the true stretch is longer by up to one
  reading interval at each end;
- runs of fewer than ``min_readings`` no-service readings are not segments.

The operator of a segment is the one its no-service readings count for: the home operator
of the unit's SIM (see :mod:`agent.centre.coverage`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from agent.centre.coverage import Attributed, is_no_service
from agent.shared.geo import haversine_m
from agent.shared.reading import Reading, Signal


@dataclass(frozen=True)
class TrackRules:
    max_gap_s: float = 900.0
    max_gap_m: float = 3000.0
    bridge_readings: int = 2
    bridge_m: float = 500.0
    min_readings: int = 2


@dataclass(frozen=True, slots=True)  # a survey keeps one per positioned reading
class TrackPoint:
    seq: int | None
    time: datetime
    lat: float
    lon: float


@dataclass(frozen=True)
class Track:
    """One unbroken piece of a unit's track.  A piece the collector keeps simplified for a
    zoom has fewer points than readings: ``length_m`` is then its length along every reading."""

    device: str
    part: int
    points: tuple[TrackPoint, ...]
    length_m: float | None = None

    @property
    def length_km(self) -> float:
        return (path_length_m(self.points) if self.length_m is None else self.length_m) / 1000.0


@dataclass(frozen=True)
class Segment:
    device: str
    operator: str
    points: tuple[TrackPoint, ...]    # first and last are no-service readings
    no_service: int                    # no-service readings in it
    bridged: int                       # in-service readings inside it
    length_m: float | None = None      # along every reading, when ``points`` are simplified for a zoom

    @property
    def start(self) -> TrackPoint:
        return self.points[0]

    @property
    def end(self) -> TrackPoint:
        return self.points[-1]

    @property
    def length_km(self) -> float:
        return (path_length_m(self.points) if self.length_m is None else self.length_m) / 1000.0

    @property
    def duration_s(self) -> float:
        return (self.end.time - self.start.time).total_seconds()


def path_length_m(points: Iterable[TrackPoint]) -> float:
    total, previous = 0.0, None
    for point in points:
        if previous is not None:
            total += haversine_m(previous.lat, previous.lon, point.lat, point.lon)
        previous = point
    return total


def _point(reading: Reading) -> TrackPoint:
    assert reading.position is not None
    return TrackPoint(reading.seq, reading.time, reading.position.lat, reading.position.lon)


def is_gap(a: TrackPoint, b: TrackPoint, rules: TrackRules) -> bool:
    return (abs((b.time - a.time).total_seconds()) > rules.max_gap_s
            or haversine_m(a.lat, a.lon, b.lat, b.lon) > rules.max_gap_m)


class TrackBuilder:
    """Cuts a unit's track into pieces one reading at a time (readings ordered by device, then
    seq); :meth:`add` and :meth:`finish` give each piece when it is complete.  Pieces of one
    point are left out."""

    def __init__(self, rules: TrackRules = TrackRules()) -> None:
        self.rules = rules
        self._device: str | None = None
        self._points: list[TrackPoint] = []
        self._part = 0

    def add(self, reading: Reading) -> Track | None:
        """The piece ``reading`` ends, if it ends one."""
        if reading.position is None:
            return None
        point = _point(reading)
        if reading.device != self._device:
            done = self.finish()
            self._device, self._points, self._part = reading.device, [point], 1
            return done
        done = None
        points = self._points
        if points and is_gap(points[-1], point, self.rules):
            done = self.finish()
            self._points, self._part = [], self._part + (1 if len(points) >= 2 else 0)
        elif points and (point.lat, point.lon) == (points[-1].lat, points[-1].lon):
            return None  # a unit standing still adds nothing to the line
        self._points.append(point)
        return done

    def finish(self) -> Track | None:
        """The piece being built, once no more readings come."""
        if self._device is None or len(self._points) < 2:
            return None
        return Track(self._device, self._part, tuple(self._points))


In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


class _Builder(Protocol[In, Out]):
    """A :class:`TrackBuilder` or a :class:`SegmentFinder`: takes items, gives what they complete."""

    def add(self, item: In) -> Out | None: ...

    def finish(self) -> Out | None: ...


def _built(builder: _Builder[In, Out], items: Iterable[In]) -> Iterator[Out]:
    """What ``builder`` completes from ``items``, in order."""
    for item in items:
        if (done := builder.add(item)) is not None:
            yield done
    if (done := builder.finish()) is not None:
        yield done


def tracks(readings: Iterable[Reading], rules: TrackRules = TrackRules()) -> Iterator[Track]:
    """Each unit's track in pieces (readings ordered by device, then seq); pieces of one point are left out."""
    return _built(TrackBuilder(rules), readings)


class _Run:
    """A segment being built for one device."""

    def __init__(self, operator: str, first: TrackPoint) -> None:
        self.operator = operator
        self.points = [first]
        self.no_service = 1
        self.bridged = 0
        self.pending: list[TrackPoint] = []   # in service since the last no-service reading

    def extend(self, point: TrackPoint) -> None:
        self.points.extend(self.pending)
        self.bridged += len(self.pending)
        self.pending = []
        self.points.append(point)
        self.no_service += 1

    def bridge_too_long(self, rules: TrackRules) -> bool:
        if len(self.pending) > rules.bridge_readings:
            return True
        return path_length_m([self.points[-1], *self.pending]) > rules.bridge_m


class SegmentFinder:
    """Finds blank-spot segments one attributed reading at a time (ordered by device, then
    seq); :meth:`add` and :meth:`finish` give each segment when it is complete."""

    def __init__(self, rules: TrackRules = TrackRules()) -> None:
        self.rules = rules
        self._device: str | None = None
        self._run: _Run | None = None
        self._previous: TrackPoint | None = None

    def add(self, item: Attributed) -> Segment | None:
        """The segment ``item`` ends, if it ends one."""
        reading = item.reading
        part = reading.part
        if not isinstance(part, Signal) or part.error is not None or reading.position is None or item.operator is None:
            return None
        point = _point(reading)
        done = None
        if reading.device != self._device:
            done = self.finish()
            self._device, self._run, self._previous = reading.device, None, None
        if self._previous is not None and is_gap(self._previous, point, self.rules):
            done = self.finish()
            self._run = None
        self._previous = point
        run = self._run
        if is_no_service(part):
            if run is not None and run.operator != item.operator:
                done = self.finish()
                run = None
            if run is None:
                self._run = _Run(item.operator, point)
            else:
                run.extend(point)
        elif run is not None:
            run.pending.append(point)
            if run.bridge_too_long(self.rules):
                done = self.finish()
                self._run = None
        return done

    def finish(self) -> Segment | None:
        """The segment being built, if it is one, once no more readings come."""
        run = self._run
        if run is None or self._device is None or run.no_service < self.rules.min_readings:
            return None
        return Segment(self._device, run.operator, tuple(run.points), run.no_service, run.bridged)


def segments(attributed: Iterable[Attributed], rules: TrackRules = TrackRules()) -> Iterator[Segment]:
    """Blank-spot segments along each unit's track (input ordered by device, then seq)."""
    return _built(SegmentFinder(rules), attributed)
