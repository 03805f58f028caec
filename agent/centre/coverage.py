"""Coverage per operator on a hexagonal grid, and each cell's class: blank, weak, covered, unknown.

Readings are placed in H3 cells (resolution 8 by default, about 0.74 km² each; the choice
is explained in ``docs/map.md``).  Per cell and operator the figures are the sample count,
median and 10th percentile levels, the share of readings with no service, median latency
and throughput, and when the cell was first and last measured; per radio technology the
level figures again.

Which operator a reading counts for:

- a reading in service counts for the network it was on, named by ``mcc-mnc`` as the
  network broadcasts the digits (``510-10``, ``510-01``), or by the operator name when the
  modem gave no codes;
- a reading that names no network (no service, no answer, or no codes) counts for the
  *home operator* of the unit's SIM at that time: the network of the unit's nearest earlier
  reading registered at home (``HOME_REGISTRATIONS``: ``home``, and home for SMS only or with
  CSFB not preferred), or, before the first such reading, of the first one after.  A unit
  never seen at home counts for :data:`UNKNOWN_OPERATOR`;
- latency and throughput readings count for the operator of the unit's last signal reading.

No service (:func:`is_no_service`) is ``rat`` NONE, ``quality`` none, or a registration
without service for the public (``NO_SERVICE_REGISTRATIONS``: searching, denied, not
registered, attached for emergency or restricted local services only), whatever the modem
heard.  A signal reading with ``error`` (the modem did not answer) is never evidence of no
service: it is counted as ``no_answer`` and takes no part in the class.  Readings without a
position are not placed (counted in :attr:`Coverage.unplaced`).

Classes (:class:`Thresholds`, defaults documented in ``docs/map.md``): fewer than
``min_samples`` answered readings is *unknown*, never blank; a no-service share of at least
``blank_share`` is *blank*; a share of at least ``weak_share``, or a median quality class
(``agent/shared/quality.py``) of ``poor``, is *weak*; anything else is *covered*.
"""
from __future__ import annotations

import functools
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agent.shared.operators import operator_name, plmn_key
from agent.shared.quality import QUALITY_ORDER
from agent.shared.reading import HOME_REGISTRATIONS, NO_SERVICE_REGISTRATIONS, Latency, Reading, Signal, Throughput

log = logging.getLogger(__name__)

DEFAULT_RESOLUTION = 8
# Every class a cell can have; the map's titles and colours (mapview, export, static/map.js) key them.
CLASSES = ("blank", "weak", "covered", "unknown")
UNKNOWN_OPERATOR = "unknown"


@dataclass(frozen=True)
class Thresholds:
    """When a cell is blank, weak, covered or unknown for an operator."""

    min_samples: int = 5
    blank_share: float = 0.5
    weak_share: float = 0.2

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if not 0 < self.weak_share <= self.blank_share <= 1:
            raise ValueError(f"need 0 < weak_share <= blank_share <= 1, got {self.weak_share}, {self.blank_share}")


def classify(samples: int, no_service: int, quality_median: str | None, thresholds: Thresholds = Thresholds()) -> str:
    """The class of one cell for one operator from its answered readings."""
    if samples < thresholds.min_samples:
        return "unknown"
    share = no_service / samples
    if share >= thresholds.blank_share:
        return "blank"
    if share >= thresholds.weak_share or quality_median in ("none", "poor"):
        return "weak"
    return "covered"


# -- operators -----------------------------------------------------------------------------

def operator_key(signal: Signal) -> str | None:
    """``510-10`` for a signal that names its network (its digits as broadcast: ``510-01``,
    ``310-026``), else its operator name, else None."""
    return _operator_key(signal.mcc, signal.mnc, signal.operator)


# Attributing one reading asks its key several times, and a fleet's readings name few networks.
@functools.lru_cache(maxsize=1024)
def _operator_key(mcc: str | None, mnc: str | None, operator: str | None) -> str | None:
    if mcc is not None and mnc is not None:
        try:
            return plmn_key(mcc, mnc)
        except ValueError:  # codes that name no network (MCC 000)
            pass
    if operator and operator.strip():
        return operator.strip()
    return None


def is_no_service(signal: Signal) -> bool:
    """The modem answered and said there is no service here for the public: no technology,
    no quality, or a registration without service (attached for emergency calls only
    included, whatever cell the modem heard)."""
    return signal.error is None and (signal.rat == "NONE" or signal.quality == "none"
                                     or signal.registration in NO_SERVICE_REGISTRATIONS)


def is_home(signal: Signal) -> bool:
    """An answered reading registered on the SIM's own network: what the home operator is learnt from."""
    return signal.error is None and signal.registration in HOME_REGISTRATIONS


class HomeOperators:
    """Which network each unit's SIM belongs to, over time, learnt from home registrations
    (:func:`is_home`).

    Kept as change points per device (``seq`` where the home network was first seen or
    changed, e.g. after a SIM swap), so it is small however many readings there are.

    It can be learnt while the readings are attributed, in one pass: a reading's home
    operator depends only on the change points up to its ``seq``, which the pass has met,
    except before the unit's first home registration, which :meth:`expect_first` tells
    ahead.
    """

    def __init__(self) -> None:
        self._changes: dict[str, list[tuple[int, str]]] = {}
        self._names: dict[str, Counter[str]] = defaultdict(Counter)
        self._first: dict[str, str] = {}  # device -> its first home operator, told ahead

    @classmethod
    def learn(cls, readings: Iterable[Reading]) -> "HomeOperators":
        """Learn from readings ordered by device, then seq (as the store yields them)."""
        home = cls()
        for reading in readings:
            home.add(reading)
        return home

    def add(self, reading: Reading) -> None:
        part = reading.part
        if not isinstance(part, Signal) or part.error is not None:
            return
        key = operator_key(part)
        if key is None:
            return
        self._names[key][operator_name(part.mcc, part.mnc) or (part.operator or "").strip() or key] += 1
        if is_home(part):
            self._changed(reading, key)

    def add_home(self, reading: Reading) -> None:
        """:meth:`add` without counting the names (for a caller that counts them itself)."""
        part = reading.part
        if isinstance(part, Signal) and is_home(part):
            key = operator_key(part)
            if key is not None:
                self._changed(reading, key)

    def _changed(self, reading: Reading, key: str) -> None:
        if reading.seq is None:
            return
        changes = self._changes.setdefault(reading.device, [])
        if not changes or changes[-1][1] != key:
            changes.append((reading.seq, key))

    def expect_first(self, device: str, signal: Signal) -> None:
        """``signal`` is ``device``'s first home registration, before its readings are met."""
        key = operator_key(signal)
        if key is not None:
            self._first[device] = key

    def at(self, device: str, seq: int | None) -> str:
        """The home operator of ``device`` at ``seq``."""
        changes = self._changes.get(device)
        if not changes:
            return self._first.get(device, UNKNOWN_OPERATOR)
        if seq is None:
            return changes[-1][1]
        current = changes[0][1]
        for start, key in changes:
            if start > seq:
                break
            current = key
        return current

    def name(self, key: str) -> str:
        """The name people know the operator by (``Telkomsel`` for ``510-10``)."""
        names = self._names.get(key)
        if not names:
            return "unknown SIM" if key == UNKNOWN_OPERATOR else key
        return names.most_common(1)[0][0]


@dataclass(frozen=True)
class Attributed:
    reading: Reading
    operator: str | None  # None for events


class Attribution:
    """The operator each reading counts for, one reading at a time (ordered by device, then seq)."""

    def __init__(self, home: HomeOperators) -> None:
        self.home = home
        self._last: dict[str, str] = {}  # device -> the operator of its last signal reading

    def follows(self, device: str, operator: str) -> None:
        """The readings to come of ``device`` follow a signal reading counted for ``operator``
        (attributing a run of seqs that does not start at the unit's first reading)."""
        self._last[device] = operator

    def __call__(self, reading: Reading) -> Attributed:
        return Attributed(reading, self.operator_of(reading))

    def operator_of(self, reading: Reading) -> str | None:
        """The operator ``reading`` counts for (None for events)."""
        part = reading.part
        if isinstance(part, Signal):
            key = operator_key(part) if part.error is None and not is_no_service(part) else None
            if key is None:
                key = self.home.at(reading.device, reading.seq)
            self._last[reading.device] = key
            return key
        if isinstance(part, (Latency, Throughput)):
            return self._last.get(reading.device) or self.home.at(reading.device, reading.seq)
        return None


def attribute(readings: Iterable[Reading], home: HomeOperators) -> Iterator[Attributed]:
    """Each reading with the operator it counts for (readings ordered by device, then seq)."""
    return map(Attribution(home), readings)


# -- grid ---------------------------------------------------------------------------------

@functools.cache
def _h3():  # type: ignore[no-untyped-def]
    # Imported on first use: the agent shares this package but a unit never needs the grid;
    # kept, as the figures ask it for every reading.
    import h3

    return h3


def has_grid_library() -> bool:
    """Whether h3 can be imported (the ``collector`` extra is installed)."""
    try:
        _h3()
    except ModuleNotFoundError as exc:
        if exc.name != "h3":
            raise
        return False
    return True


def cell_of(lat: float, lon: float, resolution: int = DEFAULT_RESOLUTION) -> str:
    return _h3().latlng_to_cell(lat, lon, resolution)


def cell_center(cell: str) -> tuple[float, float]:
    """(lat, lon) of a cell's centre."""
    return _h3().cell_to_latlng(cell)


def cell_ring(cell: str) -> list[tuple[float, float]]:
    """The cell's outline as a closed, counter-clockwise ring of (lon, lat), as GeoJSON and KML want."""
    ring = [(lon, lat) for lat, lon in _h3().cell_to_boundary(cell)]
    twice_area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1]))
    if twice_area < 0:
        ring.reverse()
    return ring + ring[:1]


# -- figures ------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between the nearest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_quality(classes: Sequence[str]) -> str | None:
    """The median quality class, on the scale of ``QUALITY_ORDER``; with an even count, the
    worse of the middle two."""
    if not classes:
        return None
    ranks = sorted(QUALITY_ORDER.index(c) for c in classes)
    return QUALITY_ORDER[ranks[(len(ranks) - 1) // 2]]


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class RatFigures:
    """Levels seen on one radio technology (``NONE``: levels heard while without service)."""

    rat: str
    samples: int
    rsrp_median_dbm: float | None
    rsrp_p10_dbm: float | None
    rssi_median_dbm: float | None
    rssi_p10_dbm: float | None


@dataclass(frozen=True)
class CellCoverage:
    """One operator's coverage in one cell."""

    cell: str
    operator: str
    operator_name: str
    lat: float
    lon: float
    coverage_class: str
    samples: int                 # answered signal readings: in service or not
    no_service: int
    no_answer: int               # signal readings with an error: not evidence, not in the class
    quality_median: str | None
    rsrp_median_dbm: float | None
    rsrp_p10_dbm: float | None
    rssi_median_dbm: float | None
    rssi_p10_dbm: float | None
    by_rat: tuple[RatFigures, ...]
    latency_samples: int
    latency_median_ms: float | None
    throughput_samples: int
    down_median_mbps: float | None
    up_median_mbps: float | None
    devices: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime

    @property
    def no_service_share(self) -> float | None:
        return None if self.samples == 0 else self.no_service / self.samples


@dataclass
class _Bucket:
    samples: int = 0
    no_service: int = 0
    no_answer: int = 0
    qualities: list[str] = field(default_factory=list)
    rsrp: list[float] = field(default_factory=list)
    rssi: list[float] = field(default_factory=list)
    rat_counts: Counter[str] = field(default_factory=Counter)
    rat_rsrp: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rat_rssi: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    latency: list[float] = field(default_factory=list)
    latency_samples: int = 0
    down: list[float] = field(default_factory=list)
    up: list[float] = field(default_factory=list)
    throughput_samples: int = 0
    devices: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    dated: bool = False  # first/last come from trusted times

    def seen(self, reading: Reading) -> None:
        self.devices.add(reading.device)
        # An unsynced time (a unit that never learnt the date) may say 1970: it dates the
        # cell only while no reading with a trusted time has.
        trusted = reading.time_source != "unsynced"
        if trusted and not self.dated:
            self.first = self.last = None
            self.dated = True
        if trusted or not self.dated:
            if self.first is None or reading.time < self.first:
                self.first = reading.time
            if self.last is None or reading.time > self.last:
                self.last = reading.time

    def add_signal(self, s: Signal) -> None:
        if s.error is not None:
            self.no_answer += 1
            return
        self.samples += 1
        rat = s.rat or "unknown"
        self.rat_counts[rat] += 1
        if s.rsrp_dbm is not None:
            self.rat_rsrp[rat].append(s.rsrp_dbm)
        if s.rssi_dbm is not None:
            self.rat_rssi[rat].append(s.rssi_dbm)
        if is_no_service(s):
            self.no_service += 1
            self.qualities.append("none")
            return
        if s.quality in QUALITY_ORDER:
            self.qualities.append(s.quality)
        if s.rsrp_dbm is not None:
            self.rsrp.append(s.rsrp_dbm)
        if s.rssi_dbm is not None:
            self.rssi.append(s.rssi_dbm)

    def add_latency(self, part: Latency) -> None:
        self.latency_samples += 1
        if part.error is None and part.received > 0 and part.rtt_avg_ms is not None:
            self.latency.append(part.rtt_avg_ms)

    def add_throughput(self, part: Throughput) -> None:
        self.throughput_samples += 1
        if part.error is None:
            if part.down_mbps is not None:
                self.down.append(part.down_mbps)
            if part.up_mbps is not None:
                self.up.append(part.up_mbps)


@dataclass(frozen=True)
class Coverage:
    """The grid: one :class:`CellCoverage` per (cell, operator) that has readings."""

    cells: tuple[CellCoverage, ...]
    operators: dict[str, str]   # key -> name, for every operator seen
    resolution: int
    thresholds: Thresholds
    unplaced: int               # measurement readings without a position

    def for_operator(self, wanted: str | None) -> tuple[CellCoverage, ...]:
        if wanted is None:
            return self.cells
        return tuple(c for c in self.cells if c.operator == wanted)

    def find_operator(self, text: str) -> str | None:
        """The operator key that ``text`` names: a key (``510-10``) or a name, any case."""
        folded = text.strip().casefold()
        for key, name in self.operators.items():
            if folded in (key.casefold(), name.casefold()):
                return key
        return None


class Grid:
    """The coverage grid filled one attributed reading at a time; :meth:`coverage` once all are in."""

    def __init__(self, resolution: int = DEFAULT_RESOLUTION) -> None:
        self.resolution = resolution
        self._buckets: dict[tuple[str, str], _Bucket] = defaultdict(_Bucket)
        self._operators: set[str] = set()
        self._unplaced = 0

    def add(self, item: Attributed) -> None:
        reading, key = item.reading, item.operator
        if key is None:
            return
        self._operators.add(key)
        if reading.position is None:
            self._unplaced += 1
            return
        bucket = self._buckets[(cell_of(reading.position.lat, reading.position.lon, self.resolution), key)]
        bucket.seen(reading)
        part = reading.part
        if isinstance(part, Signal):
            bucket.add_signal(part)
        elif isinstance(part, Latency):
            bucket.add_latency(part)
        elif isinstance(part, Throughput):
            bucket.add_throughput(part)

    def coverage(self, home: HomeOperators, thresholds: Thresholds = Thresholds()) -> Coverage:
        """The grid's figures and classes; ``home`` names the operators."""
        cells = tuple(_cell(cell, key, b, home, thresholds) for (cell, key), b in sorted(self._buckets.items()))
        log.debug("%d cell-operator pairs at resolution %d, %d readings unplaced",
                  len(cells), self.resolution, self._unplaced)
        return Coverage(cells, {k: home.name(k) for k in sorted(self._operators)}, self.resolution, thresholds,
                        self._unplaced)


def aggregate(readings: Iterable[Reading], *, home: HomeOperators | None = None,
              resolution: int = DEFAULT_RESOLUTION, thresholds: Thresholds = Thresholds()) -> Coverage:
    """The coverage grid of ``readings`` (ordered by device, then seq, as the store yields them).

    ``home`` is learnt from the readings themselves when not given (which then reads them
    twice: pass a list; ``agent.centre.survey`` reads a store once).
    """
    if home is None:
        readings = list(readings)
        home = HomeOperators.learn(readings)
    grid = Grid(resolution)
    for item in attribute(readings, home):
        grid.add(item)
    return grid.coverage(home, thresholds)


def _cell(cell: str, key: str, b: _Bucket, home: HomeOperators, thresholds: Thresholds) -> CellCoverage:
    lat, lon = cell_center(cell)
    quality = median_quality(b.qualities)
    assert b.first is not None and b.last is not None
    return CellCoverage(
        cell=cell, operator=key, operator_name=home.name(key), lat=round(lat, 6), lon=round(lon, 6),
        coverage_class=classify(b.samples, b.no_service, quality, thresholds),
        samples=b.samples, no_service=b.no_service, no_answer=b.no_answer, quality_median=quality,
        rsrp_median_dbm=_rounded(percentile(b.rsrp, 50)), rsrp_p10_dbm=_rounded(percentile(b.rsrp, 10)),
        rssi_median_dbm=_rounded(percentile(b.rssi, 50)), rssi_p10_dbm=_rounded(percentile(b.rssi, 10)),
        by_rat=tuple(
            RatFigures(rat, n, _rounded(percentile(b.rat_rsrp[rat], 50)), _rounded(percentile(b.rat_rsrp[rat], 10)),
                       _rounded(percentile(b.rat_rssi[rat], 50)), _rounded(percentile(b.rat_rssi[rat], 10)))
            for rat, n in sorted(b.rat_counts.items())
        ),
        latency_samples=b.latency_samples, latency_median_ms=_rounded(percentile(b.latency, 50)),
        throughput_samples=b.throughput_samples, down_median_mbps=_rounded(percentile(b.down, 50), 2),
        up_median_mbps=_rounded(percentile(b.up, 50), 2),
        devices=tuple(sorted(b.devices)), first_seen=b.first, last_seen=b.last,
    )
