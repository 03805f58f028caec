"""Coverage figures kept as counts and histograms, so that they add up as readings arrive.

The collector keeps one :class:`CellStats` per *key*: H3 cell at :data:`STATS_RESOLUTION`,
the operator a reading counts for (:mod:`agent.centre.coverage` attributes it), the WITA day
and the unit.  Coarser cells, whole periods and all units are sums of keys, and every figure
of :class:`~agent.centre.coverage.CellCoverage` follows from a sum:

- counts (answered signals, no service, no answer, latency and throughput tests);
- histograms of RSRP and RSSI in 0.5 dB bins (modems report whole or half dB, so the
  medians and percentiles are exactly those of the readings), per radio technology too;
- quality classes counted, so the median class is exact, per radio technology too (a
  no-service reading is counted under its own ``rat``, usually ``NONE``);
- latency and throughput on log buckets of 2 % (:func:`log_bucket`): their medians are those
  of the readings to within 1 %;
- first and last seen, over trusted times, and over unsynced times apart (a cell is dated by
  unsynced times only while no trusted one has).

Why resolution 8 and the WITA day: resolution 8 is the map's default (``docs/map.md``) and
the finest a cell can be classed at with a river boat's readings; 9 and finer would hold a
few readings each.  The day is the day in Kalimantan (WITA, UTC+8, no daylight saving): a
district office asks "before and after the tower went up on the 12th", in its own dates, and
the boats are moored at midnight WITA, so a trip stays in one day.

Readings without a position are kept under the cell ``""``: they count for their operator
and as unplaced, as the one-pass grid counts them.

Beside the keys the collector keeps their *totals* per cell and operator over every day and
unit (:mod:`agent.centre.store.aggregates`): a view of everything reads one row per cell and
operator instead of one per day and unit.

A view of one radio technology (:func:`of_technology`) is a linear function of the figures,
so it is the same whether taken of each key or of their sum.
"""
from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from agent.centre.coverage import (
    CellCoverage, Coverage, RatFigures, Thresholds, cell_center, cell_of, classify, is_no_service,
)
from agent.shared.quality import QUALITY_ORDER
from agent.shared.reading import Latency, Reading, Signal, Throughput, format_time, parse_time

STATS_RESOLUTION = 8
WITA = timezone(timedelta(hours=8), "WITA")
UNPLACED = ""
FIRST_DAY, LAST_DAY = "0001-01-01", "9999-12-31"  # the ends of a range of days open on one side
LOG_STEP = 1.02  # log buckets 2 % wide: a median read from them is within 1 % of the readings'


class StatsKey(NamedTuple):
    """A key of the kept figures (a tuple: a commit makes and hashes one per reading)."""

    cell: str       # at STATS_RESOLUTION, or UNPLACED
    operator: str
    day: str        # YYYY-MM-DD in WITA
    device: str


@dataclass(frozen=True)
class FiguresFilter:
    """Which kept figures a view sums: WITA days (first and last, inclusive, ``YYYY-MM-DD``),
    units, an area (south, west, north, east in degrees; a cell is in it by its centre).

    The default takes everything.  Days and units are columns of the key, so they are asked
    of the database; the area is tested on each cell's centre as the rows are read.
    """

    days: tuple[str, str] | None = None
    devices: frozenset[str] | None = None
    area: tuple[float, float, float, float] | None = None
    technology: str | None = None  # a ``rat`` of the readings: LTE, WCDMA, GSM, NR5G-NSA, ...

    @property
    def everything(self) -> bool:
        return self.days is None and self.devices is None and self.area is None and self.technology is None

    @property
    def per_key(self) -> bool:
        """Whether the view needs the figures of each day or unit (not only their totals)."""
        return self.days is not None or self.devices is not None

    def describe(self) -> str:
        """What the view takes, in a few words for a title ("" for everything)."""
        parts = []
        if self.technology is not None:
            parts.append(self.technology)
        if self.days is not None:
            first, last = self.days
            if first == last:
                parts.append(f"{first} WITA")
            elif last >= LAST_DAY:
                parts.append(f"from {first} WITA")
            elif first <= FIRST_DAY:
                parts.append(f"until {last} WITA")
            else:
                parts.append(f"{first} to {last} WITA")
        if self.devices is not None:
            parts.append(("unit " if len(self.devices) == 1 else "units ") + ", ".join(sorted(self.devices)))
        return " · ".join(parts)

    def takes_unit_and_day(self, reading: Reading) -> bool:
        """Whether a stored reading is of the view's units and WITA days."""
        if self.devices is not None and reading.device not in self.devices:
            return False
        return self.days is None or self.days[0] <= wita_day(reading.time) <= self.days[1]

    def takes_reading(self, reading: Reading) -> bool:
        """Whether a stored reading is in the view's figures (area aside): of its units and days,
        and for a technology, unless it is a signal reading in service on another one
        (:func:`of_technology`)."""
        if not self.takes_unit_and_day(reading):
            return False
        part = reading.part
        if self.technology is None or not isinstance(part, Signal) or part.error is not None or is_no_service(part):
            return True
        return (part.rat or "unknown") == self.technology

    def units_term(self, column: str = "device") -> tuple[str, list[object]] | None:
        """``column IN (?, ...)`` taking the chosen units, with its parameters; None when every
        unit is taken."""
        if self.devices is None:
            return None
        chosen = sorted(self.devices)
        return (f"{column} IN ({', '.join('?' * len(chosen))})" if chosen else "1 = 0"), list(chosen)

    def sql(self) -> tuple[str, list[object]]:
        """The ``WHERE`` clause (empty, or starting with `` WHERE``) over cell_stats, and its parameters."""
        terms: list[str] = []
        params: list[object] = []
        if self.days is not None:
            terms.append("day >= ? AND day <= ?")
            params += list(self.days)
        if (units := self.units_term()) is not None:
            terms.append(units[0])
            params += units[1]
        return (" WHERE " + " AND ".join(terms) if terms else ""), params

    def takes(self, cell: str) -> bool:
        """Whether a cell at :data:`STATS_RESOLUTION` (or :data:`UNPLACED`) is in the area."""
        if self.area is None:
            return True
        if cell == UNPLACED:
            return False
        lat, lon = cell_center(cell)
        south, west, north, east = self.area
        return south <= lat <= north and west <= lon <= east


def wita_day(moment: datetime) -> str:
    if moment.tzinfo is None:
        return _wita_day(moment)
    try:
        # WITA is whole hours from UTC: the day follows from the hour (a commit asks it per reading).
        return _wita_day_of_hour(int(moment.timestamp() // 3600))
    except (OverflowError, ValueError, OSError):
        return _wita_day(moment)


@functools.lru_cache(maxsize=4096)
def _wita_day_of_hour(hour: int) -> str:
    return _wita_day(datetime.fromtimestamp(hour * 3600, timezone.utc))


def _wita_day(moment: datetime) -> str:
    try:
        return moment.astimezone(WITA).date().isoformat()
    except OverflowError:  # the last hours of year 9999 in UTC are past it in WITA
        return moment.date().isoformat()


def half_db(value: float) -> int:
    """The 0.5 dB bin of a level, as a whole number of half dB."""
    return int(round(value * 2))


def log_bucket(value: float) -> int:
    """The log bucket of a positive latency or rate; 0 and below share one bucket."""
    if value <= 0:
        return -10_000
    return int(round(math.log(value) / math.log(LOG_STEP)))


def log_value(bucket: int) -> float:
    return 0.0 if bucket == -10_000 else LOG_STEP ** bucket


def _add(hist: dict[int, int], bin_: int, n: int) -> None:
    count = hist.get(bin_, 0) + n
    if count:
        hist[bin_] = count
    else:
        hist.pop(bin_, None)


def _add_in(table: dict, rat: str, bin_: object, n: int) -> None:  # type: ignore[type-arg]
    """:func:`_add` to the histogram of ``rat`` in a table of them; an empty one goes away."""
    hist = table.get(rat)
    if hist is None:
        hist = table[rat] = {}
    _add(hist, bin_, n)  # type: ignore[arg-type]
    if not hist:
        del table[rat]


@dataclass
class CellStats:
    """The figures of one key; :meth:`add` a reading's (``sign`` -1 takes one away)."""

    samples: int = 0
    no_service: int = 0
    no_answer: int = 0
    latency_samples: int = 0
    throughput_samples: int = 0
    quality: dict[str, int] = field(default_factory=dict)
    rsrp: dict[int, int] = field(default_factory=dict)           # in service only
    rssi: dict[int, int] = field(default_factory=dict)
    rat_samples: dict[str, int] = field(default_factory=dict)
    rat_rsrp: dict[str, dict[int, int]] = field(default_factory=dict)  # in service or not
    rat_rssi: dict[str, dict[int, int]] = field(default_factory=dict)
    rat_quality: dict[str, dict[str, int]] = field(default_factory=dict)  # "none": no service
    latency: dict[int, int] = field(default_factory=dict)
    down: dict[int, int] = field(default_factory=dict)
    up: dict[int, int] = field(default_factory=dict)
    first_trusted: str | None = None
    last_trusted: str | None = None
    first_unsynced: str | None = None
    last_unsynced: str | None = None
    trusted: int = 0
    unsynced: int = 0

    @property
    def readings(self) -> int:
        return self.trusted + self.unsynced

    def add(self, reading: Reading, sign: int = 1) -> None:
        """Count ``reading`` in (or, with ``sign`` -1, out: then first/last may need :meth:`redate`)."""
        if reading.time_source == "unsynced":
            self.unsynced += sign
            if sign > 0:
                self._seen_unsynced(format_time(reading.time))
        else:
            self.trusted += sign
            if sign > 0:
                self._seen_trusted(format_time(reading.time))
        self._part(reading.part, sign)

    def add_many(self, readings: Sequence[Reading]) -> None:
        """:meth:`add` each of ``readings``, in fewer steps: the written form of a time keeps
        the order of the times, so only the first and last of each source are written."""
        trusted = [r.time for r in readings if r.time_source != "unsynced"]
        if trusted:
            self.trusted += len(trusted)
            self._seen_trusted(format_time(min(trusted)), format_time(max(trusted)))
        if len(trusted) < len(readings):
            unsynced = [r.time for r in readings if r.time_source == "unsynced"]
            self.unsynced += len(unsynced)
            self._seen_unsynced(format_time(min(unsynced)), format_time(max(unsynced)))
        part = self._part
        for reading in readings:
            part(reading.part, 1)

    def _seen_trusted(self, first: str, last: str | None = None) -> None:
        self.first_trusted, self.last_trusted = _widened(self.first_trusted, self.last_trusted, first, last)

    def _seen_unsynced(self, first: str, last: str | None = None) -> None:
        self.first_unsynced, self.last_unsynced = _widened(self.first_unsynced, self.last_unsynced, first, last)

    def _part(self, part: object, sign: int) -> None:
        if isinstance(part, Signal):
            self._signal(part, sign)
        elif isinstance(part, Latency):
            self.latency_samples += sign
            if part.error is None and part.received > 0 and part.rtt_avg_ms is not None:
                _add(self.latency, log_bucket(part.rtt_avg_ms), sign)
        elif isinstance(part, Throughput):
            self.throughput_samples += sign
            if part.error is None:
                if part.down_mbps is not None:
                    _add(self.down, log_bucket(part.down_mbps), sign)
                if part.up_mbps is not None:
                    _add(self.up, log_bucket(part.up_mbps), sign)

    def _signal(self, s: Signal, sign: int) -> None:
        if s.error is not None:
            self.no_answer += sign
            return
        self.samples += sign
        rat = s.rat or "unknown"
        _add(self.rat_samples, rat, sign)  # type: ignore[arg-type]
        rsrp = None if s.rsrp_dbm is None else half_db(s.rsrp_dbm)
        rssi = None if s.rssi_dbm is None else half_db(s.rssi_dbm)
        blank = is_no_service(s)
        quality = "none" if blank else s.quality if s.quality in QUALITY_ORDER else None
        if rsrp is not None:
            _add_in(self.rat_rsrp, rat, rsrp, sign)
        if rssi is not None:
            _add_in(self.rat_rssi, rat, rssi, sign)
        if quality is not None:
            _add_in(self.rat_quality, rat, quality, sign)
        if blank:
            self.no_service += sign
            _add(self.quality, "none", sign)  # type: ignore[arg-type]
            return
        if quality is not None:
            _add(self.quality, quality, sign)  # type: ignore[arg-type]
        if rsrp is not None:
            _add(self.rsrp, rsrp, sign)
        if rssi is not None:
            _add(self.rssi, rssi, sign)

    def redate(self, times: Iterable[tuple[str, str]]) -> None:
        """First and last seen again from ``(time, time_source)`` of every reading the key holds."""
        self.first_trusted = self.last_trusted = self.first_unsynced = self.last_unsynced = None
        for time, source in times:
            if source == "unsynced":
                self._seen_unsynced(time)
            else:
                self._seen_trusted(time)

    def merge(self, other: "CellStats") -> None:
        self._merge(
            (other.samples, other.no_service, other.no_answer, other.latency_samples, other.throughput_samples,
             other.trusted, other.unsynced),
            (other.first_trusted, other.last_trusted, other.first_unsynced, other.last_unsynced),
            ((self.quality, other.quality), (self.rat_samples, other.rat_samples), (self.rsrp, other.rsrp),
             (self.rssi, other.rssi), (self.latency, other.latency), (self.down, other.down), (self.up, other.up)),
            ((self.rat_rsrp, other.rat_rsrp), (self.rat_rssi, other.rat_rssi), (self.rat_quality, other.rat_quality)))

    def add_row(self, row: Sequence[object]) -> None:
        """:meth:`merge` of a stored row (the columns :meth:`from_row` reads) without making a
        :class:`CellStats` of it first: a view of some days or units sums thousands of them."""
        counts = len(self.COUNT_COLUMNS)
        times = [None if t is None else _text_time(t) for t in row[counts:counts + len(self.TIME_COLUMNS)]]
        hist = json.loads(row[-1])  # type: ignore[arg-type]
        self._merge(
            row[:counts], times,  # type: ignore[arg-type]
            ((self.quality, hist["quality"]), (self.rat_samples, hist["rat_samples"])),
            ((self.rat_quality, hist.get("rat_quality", {})),),
            ((self.rsrp, hist["rsrp"]), (self.rssi, hist["rssi"]), (self.latency, hist["latency"]),
             (self.down, hist["down"]), (self.up, hist["up"])),
            ((self.rat_rsrp, hist["rat_rsrp"]), (self.rat_rssi, hist["rat_rssi"])))

    def _merge(self, counts: Sequence[int], times: Sequence[str | None],
               hists: Iterable[tuple[dict, Mapping]], tables: Iterable[tuple[dict, Mapping]],  # type: ignore[type-arg]
               int_hists: Iterable[tuple[dict, Mapping]] = (),  # type: ignore[type-arg]
               int_tables: Iterable[tuple[dict, Mapping]] = ()) -> None:  # type: ignore[type-arg]
        """Add counts (in :data:`COUNT_COLUMNS` order), first and last seen (in
        :data:`TIME_COLUMNS` order) and histograms, each ``(mine, theirs)``: flat ones and
        tables of them per technology; ``int_``: theirs has its bins as text (stored JSON)."""
        # Spelt out, no CellStats made per row: a commit merges hundreds of keys and totals,
        # a view of some days thousands.
        self.samples += counts[0]
        self.no_service += counts[1]
        self.no_answer += counts[2]
        self.latency_samples += counts[3]
        self.throughput_samples += counts[4]
        self.trusted += counts[5]
        self.unsynced += counts[6]
        for mine, theirs in hists:
            _merge_bins(mine, theirs, False)
        for mine, theirs in int_hists:
            _merge_bins(mine, theirs, True)
        for pairs, as_int in ((tables, False), (int_tables, True)):
            for table, theirs in pairs:
                for rat, hist in theirs.items():
                    target = table.get(rat)
                    if target is None:
                        target = table[rat] = {}
                    _merge_bins(target, hist, as_int)
                    if not target:
                        del table[rat]
        # First and last are set together (add, redate, a stored row), so one tells of both.
        if times[0] is not None:
            self._seen_trusted(times[0], times[1])
        if times[2] is not None:
            self._seen_unsynced(times[2], times[3])

    # -- stored form: counts in columns, histograms in one JSON text ---------------------

    COUNT_COLUMNS = ("samples", "no_service", "no_answer", "latency_samples", "throughput_samples", "trusted",
                     "unsynced")
    TIME_COLUMNS = ("first_trusted", "last_trusted", "first_unsynced", "last_unsynced")

    def histograms_json(self) -> str:
        return json.dumps({
            "quality": self.quality, "rsrp": self.rsrp, "rssi": self.rssi, "rat_samples": self.rat_samples,
            "rat_rsrp": self.rat_rsrp, "rat_rssi": self.rat_rssi, "rat_quality": self.rat_quality,
            "latency": self.latency, "down": self.down, "up": self.up,
        }, separators=(",", ":"), sort_keys=True)

    def row(self) -> tuple[object, ...]:
        return (*(getattr(self, c) for c in self.COUNT_COLUMNS), *(getattr(self, c) for c in self.TIME_COLUMNS),
                self.histograms_json())

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> "CellStats":
        counts = row[:len(cls.COUNT_COLUMNS)]
        times = row[len(cls.COUNT_COLUMNS):len(cls.COUNT_COLUMNS) + len(cls.TIME_COLUMNS)]
        hist = json.loads(row[-1])  # type: ignore[arg-type]
        ints = _int_bins
        return cls(
            **dict(zip(cls.COUNT_COLUMNS, counts)),  # type: ignore[arg-type]
            quality=dict(hist["quality"]), rsrp=ints(hist["rsrp"]), rssi=ints(hist["rssi"]),
            rat_samples=dict(hist["rat_samples"]),
            rat_rsrp={r: ints(h) for r, h in hist["rat_rsrp"].items()},
            rat_rssi={r: ints(h) for r, h in hist["rat_rssi"].items()},
            rat_quality={r: dict(q) for r, q in hist.get("rat_quality", {}).items()},
            latency=ints(hist["latency"]), down=ints(hist["down"]), up=ints(hist["up"]),
            **{name: (None if value is None else _text_time(value)) for name, value in zip(cls.TIME_COLUMNS, times)},
        )


def _merge_bins(mine: dict, theirs: Mapping, as_int: bool) -> None:  # type: ignore[type-arg]
    """:func:`_add` each bin of ``theirs`` to ``mine`` (``as_int``: its bins are text, as stored
    JSON has them), spelt out: the innermost loop of every sum."""
    for bin_, n in theirs.items():
        if as_int:
            bin_ = int(bin_)
        if count := mine.get(bin_, 0) + n:
            mine[bin_] = count
        else:
            mine.pop(bin_, None)


def _int_bins(hist: Mapping[str, int]) -> dict[int, int]:
    """A stored histogram's bins (JSON object keys, so text) as the numbers they are."""
    return dict(zip(map(int, hist), hist.values()))


def _widened(first: str | None, last: str | None, new_first: str, new_last: str | None) -> tuple[str, str]:
    """The span from ``first`` to ``last`` (times as text, which sort as times) taking in
    ``new_first`` to ``new_last`` (or the one time ``new_first``)."""
    new_last = new_first if new_last is None else new_last
    return (new_first if first is None or new_first < first else first,
            new_last if last is None or new_last > last else last)


def _text_time(value: object) -> str:
    return value if isinstance(value, str) else format_time(value)  # type: ignore[arg-type]


def key_of(reading: Reading, operator: str) -> StatsKey:
    """Where a reading counted for ``operator`` is kept."""
    position = reading.position
    cell = UNPLACED if position is None else cell_of(position.lat, position.lon, STATS_RESOLUTION)
    return StatsKey(cell, operator, wita_day(reading.time), reading.device)


# -- figures from sums --------------------------------------------------------------------

def hist_percentile(hist: Mapping[int, int], q: float, value=lambda b: b / 2) -> float | None:  # type: ignore[no-untyped-def]
    """:func:`agent.centre.coverage.percentile` of the values a histogram holds."""
    return hist_percentiles(hist, (q,), value)[0]


def hist_percentiles(hist: Mapping[int, int], qs: Sequence[float], value=lambda b: b / 2  # type: ignore[no-untyped-def]
                     ) -> list[float | None]:
    """:func:`hist_percentile` of each of ``qs``, in one walk through the bins."""
    total = sum(hist.values())
    if total == 0:
        return [None] * len(qs)
    # Per percentile: its rank, and the two neighbouring ranks whose values it lies between.
    wanted = []
    for q in qs:
        rank = (total - 1) * q / 100.0
        low = math.floor(rank)
        wanted.append((rank, low, min(low + 1, total - 1)))
    values: dict[int, float] = {}
    todo = sorted({r for _rank, low, high in wanted for r in (low, high)})
    seen = 0
    for bin_ in sorted(hist):
        seen += hist[bin_]
        while todo and seen > todo[0]:
            values[todo.pop(0)] = value(bin_)
        if not todo:
            break
    return [values[low] + (values[high] - values[low]) * (rank - low) for rank, low, high in wanted]


def quality_median_of(counts: Mapping[str, int]) -> str | None:
    """:func:`agent.centre.coverage.median_quality` of the classes counted."""
    total = sum(counts.values())
    middle, seen = (total - 1) // 2, 0
    for c in QUALITY_ORDER:
        seen += counts.get(c, 0)
        if total and seen > middle:
            return c
    return None


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def cell_figures(cell: str, operator: str, name: str, stats: CellStats, devices: Iterable[str],
                 thresholds: Thresholds) -> CellCoverage:
    lat, lon = cell_center(cell)
    quality = quality_median_of(stats.quality)
    dated = stats.trusted > 0
    first = stats.first_trusted if dated else stats.first_unsynced
    last = stats.last_trusted if dated else stats.last_unsynced
    assert first is not None and last is not None
    log_median = lambda hist, digits: _r(hist_percentile(hist, 50, log_value), digits)  # noqa: E731
    median_p10 = lambda hist: [_r(v) for v in hist_percentiles(hist, (50, 10))]  # noqa: E731
    rsrp_median, rsrp_p10 = median_p10(stats.rsrp)
    rssi_median, rssi_p10 = median_p10(stats.rssi)
    return CellCoverage(
        cell=cell, operator=operator, operator_name=name, lat=round(lat, 6), lon=round(lon, 6),
        coverage_class=classify(stats.samples, stats.no_service, quality, thresholds),
        samples=stats.samples, no_service=stats.no_service, no_answer=stats.no_answer, quality_median=quality,
        rsrp_median_dbm=rsrp_median, rsrp_p10_dbm=rsrp_p10, rssi_median_dbm=rssi_median, rssi_p10_dbm=rssi_p10,
        by_rat=tuple(
            RatFigures(rat, n, *median_p10(stats.rat_rsrp.get(rat, {})), *median_p10(stats.rat_rssi.get(rat, {})))
            for rat, n in sorted(stats.rat_samples.items())
        ),
        latency_samples=stats.latency_samples, latency_median_ms=log_median(stats.latency, 1),
        throughput_samples=stats.throughput_samples, down_median_mbps=log_median(stats.down, 2),
        up_median_mbps=log_median(stats.up, 2),
        devices=tuple(sorted(devices)), first_seen=parse_time(first), last_seen=parse_time(last),
    )


def of_technology(stats: CellStats, rat: str) -> CellStats | None:
    """The figures of one radio technology's readings (``rat``), or None when there are none.

    A no-service reading has no technology to speak of (its ``rat`` is ``NONE``): it is counted
    as what it is, a reading without service, under every technology, so a blank spot stays
    blank whichever technology is asked for.  Readings in service on another technology are
    left out.  Unanswered readings, latency and throughput are not per technology and stay
    the cell's, as do first and last seen.
    """
    own = stats.rat_quality.get(rat, {})
    elsewhere_blank = stats.no_service - own.get("none", 0)
    samples = stats.rat_samples.get(rat, 0) + elsewhere_blank
    if samples <= 0:
        return None
    quality = dict(own)
    if elsewhere_blank:
        quality["none"] = quality.get("none", 0) + elsewhere_blank
    mine = stats.rat_samples.get(rat, 0)
    return CellStats(
        samples=samples, no_service=stats.no_service, no_answer=stats.no_answer,
        latency_samples=stats.latency_samples, throughput_samples=stats.throughput_samples, quality=quality,
        rsrp=dict(stats.rat_rsrp.get(rat, {})), rssi=dict(stats.rat_rssi.get(rat, {})),
        rat_samples={rat: mine} if mine else {},
        rat_rsrp={rat: dict(stats.rat_rsrp[rat])} if rat in stats.rat_rsrp else {},
        rat_rssi={rat: dict(stats.rat_rssi[rat])} if rat in stats.rat_rssi else {},
        rat_quality={rat: dict(own)} if own else {},
        latency=dict(stats.latency), down=dict(stats.down), up=dict(stats.up),
        first_trusted=stats.first_trusted, last_trusted=stats.last_trusted, first_unsynced=stats.first_unsynced,
        last_unsynced=stats.last_unsynced, trusted=stats.trusted, unsynced=stats.unsynced,
    )


def coverage_of(keyed: Iterable[tuple[StatsKey, CellStats]], names: Mapping[str, str], resolution: int,
                thresholds: Thresholds, technology: str | None = None) -> Coverage:
    """The coverage grid at ``resolution`` (at most :data:`STATS_RESOLUTION`) from kept keys.

    ``names``: operator key to the name people know it by.  Keys are summed over days and
    units into their cell at ``resolution`` (its parent, for a coarser one); ``technology``
    (a ``rat``) draws that technology's grid (:func:`of_technology`).
    """
    return coverage_of_totals(((key.cell, key.operator, stats, (key.device,)) for key, stats in keyed), names,
                              resolution, thresholds, technology)


def coverage_of_totals(totals: Iterable[tuple[str, str, CellStats, Iterable[str]]], names: Mapping[str, str],
                       resolution: int, thresholds: Thresholds, technology: str | None = None) -> Coverage:
    """:func:`coverage_of` from figures already summed, ``(cell, operator, stats, devices)`` in
    cell and operator order (as the database gives them): a cell at :data:`STATS_RESOLUTION`
    (or :data:`UNPLACED`) may come more than once.

    At :data:`STATS_RESOLUTION` each cell's figures are made as soon as its rows are read, so
    only one cell's sums are held at a time; a coarser grid holds the sums of its cells.
    """
    if resolution > STATS_RESOLUTION:
        raise ValueError(f"figures are kept at H3 resolution {STATS_RESOLUTION}; cannot draw {resolution}")
    from agent.centre.coverage import _h3

    parent = (lambda cell: cell) if resolution == STATS_RESOLUTION else \
        (lambda cell: _h3().cell_to_parent(cell, resolution))
    name = lambda k: names.get(k) or ("unknown SIM" if k == "unknown" else k)  # noqa: E731
    cells: list[CellCoverage] = []

    def finish(pair: tuple[str, str], stats: CellStats, devices: set[str]) -> None:
        if technology is not None and (stats := of_technology(stats, technology)) is None:  # type: ignore[assignment]
            return
        cells.append(cell_figures(pair[0], pair[1], name(pair[1]), stats, devices, thresholds))

    sums: dict[tuple[str, str], CellStats] = {}
    devices: dict[tuple[str, str], set[str]] = {}
    parents: dict[str, str] = {}
    operators: set[str] = set()
    unplaced = 0
    streamed = resolution == STATS_RESOLUTION
    for cell8, operator, stats, seen in totals:
        operators.add(operator)
        if cell8 == UNPLACED:
            unplaced += stats.readings
            continue
        cell = parents.get(cell8)
        if cell is None:
            cell = parents[cell8] = parent(cell8)
        pair = (cell, operator)
        total = sums.get(pair)
        if total is None:
            if streamed and sums:
                (done, done_stats), = sums.items()
                if pair < done:
                    raise ValueError("the figures are not in cell and operator order")
                finish(done, done_stats, devices.pop(done))
                sums.clear()
            sums[pair], devices[pair] = stats, set(seen)
        else:
            total.merge(stats)
            devices[pair].update(seen)
    for pair in sorted(sums):
        finish(pair, sums[pair], devices[pair])
    return Coverage(tuple(cells), {k: name(k) for k in sorted(operators)}, resolution, thresholds, unplaced)


def grid_of(readings: Iterable[tuple[Reading, str | None]]) -> dict[StatsKey, CellStats]:
    """The kept figures of attributed readings (``(reading, operator)``; events have None), in memory."""
    kept: dict[StatsKey, CellStats] = {}
    for reading, operator in readings:
        if operator is None:
            continue
        key = key_of(reading, operator)
        stats = kept.get(key)
        if stats is None:
            stats = kept[key] = CellStats()
        stats.add(reading)
    return kept


def operator_names(counts: Iterable[tuple[str, str, int]]) -> dict[str, str]:
    """Per operator key, the name most often seen (ties: the first counted), from ``(key, name, n)``."""
    best: dict[str, Counter[str]] = {}
    for key, name, n in counts:
        best.setdefault(key, Counter())[name] += n
    return {key: names.most_common(1)[0][0] for key, names in best.items() if +names}
