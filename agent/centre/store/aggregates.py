"""The coverage figures kept in the database, updated in the transaction that stores the readings.

``cell_stats`` holds one row per key of :mod:`agent.centre.cell_stats` (cell, operator the
readings count for, WITA day, unit); ``operator_names`` counts the names each operator key
was seen with.  Every reading row keeps its ``cell`` and the operator it ``counts_for``, so
that the figures can always be put right when that operator changes.

Why it changes: what a reading counts for depends on readings of the same unit around it
(:mod:`agent.centre.coverage`): a reading without service counts for the unit's home
operator at its seq, learnt from home registrations (``HOME_REGISTRATIONS``; before the
first one, from the first one); a latency or throughput test counts for the unit's last
signal reading before it.  Readings arrive late and out of order, so a reading that arrives can change what
stored readings count for, but only in one run of seqs of its unit (:func:`window`): from
the earliest new seq (from the unit's start when the new readings hold its first home
registration) up to the next stored home registration after the last new one, or the next
stored signal reading after the last new signal.  That run is attributed again from the
state just before it, the stored readings whose operator changed are moved from one key to
the other, and keys that lost a reading have their first and last seen read again.  Most
often the new readings of a unit all follow its stored ones: then no stored reading changes,
and the state just before them is read for every unit of the commit at once (:class:`Ends`).

The figures therefore always equal a full recomputation (:func:`rebuild`, also the schema
step that builds them for an older database).

``cell_totals`` (schema step 6) holds the sum of every day and unit of each cell and operator,
with the readings each unit has in it (so the units seen are exact when a unit's readings
move away) and first and last seen.  It is updated after the keys, in the same transaction
(:meth:`Figures.apply`): the rows of a commit's cells and operators read together, locked
first on PostgreSQL (in key order), where collectors of different units meet on them, and
written together.  A view of all days and
units reads it instead of the keys: one row per cell and operator, whatever the fleet and
the year.

Without h3 no reading can be placed in its cell: a collector installed without the
``collector`` extra stores the readings without their figures and marks the figures stale
(:meth:`Figures.mark_stale`); map, report and export then read every stored reading, and no
figure is kept again until ``blankspot aggregate --rebuild`` computes them all, with h3.
"""
from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from itertools import repeat
from typing import Any

from agent.centre.cell_stats import (
    CellStats, FiguresFilter, StatsKey, UNPLACED, coverage_of_totals, key_of, operator_names, wita_day,
)
from agent.centre.coverage import Attribution, Coverage, HomeOperators, Thresholds, operator_key
from agent.centre.coverage import is_home as is_home_signal
from agent.centre.store.statements import Insert, Run, inserter, one_of
from agent.centre.stored_readings import StoredReadings, decode_row
from agent.shared.operators import codes_of_numbers, operator_name
from agent.shared.reading import HOME_REGISTRATIONS, Reading, ReadingError, Signal, format_time, parse_time

log = logging.getLogger(__name__)


_STATS_COLUMNS = ("cell", "operator", "day", "device") + CellStats.COUNT_COLUMNS + CellStats.TIME_COLUMNS \
    + ("histograms",)
_UPSERT_KEY = ("ON CONFLICT (cell, operator, day, device) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in _STATS_COLUMNS[4:]))
_UPSERT = (f"INSERT INTO cell_stats ({', '.join(_STATS_COLUMNS)}) VALUES ({', '.join('?' * len(_STATS_COLUMNS))}) "
           + _UPSERT_KEY)
_TOTAL_COLUMNS = ("cell", "operator") + CellStats.COUNT_COLUMNS + CellStats.TIME_COLUMNS + ("histograms", "devices")
_PERIOD_COLUMNS = ("period",) + _TOTAL_COLUMNS
_TOTAL_INSERT = (f"INSERT INTO cell_totals ({', '.join(_TOTAL_COLUMNS)})"
                 f" VALUES ({', '.join('?' * len(_TOTAL_COLUMNS))})")
_TOTAL_UPSERT_KEY = ("ON CONFLICT (cell, operator) DO UPDATE SET "
                     + ", ".join(f"{c} = excluded.{c}" for c in _TOTAL_COLUMNS[2:]))
_STALE = "figures_stale"
_EPOCH = parse_time("1970-01-01T00:00:00.000Z")  # the time of a stored home registration told to HomeOperators
_KEYS_CHUNK = 200  # keys per query of their rows: their terms stay well within SQLite's depth of 1000
_BYTE_ORDER = '"C"'  # PostgreSQL's collation of text in byte order, which is Python's order of str
_ENDS_CHUNK = 100  # units per query of their ends
REBUILD_PROGRESS_EVERY = 100_000  # readings between two calls of a rebuild's progress
NO_GRID_NOTICE = ("h3 is not installed (pip install 'blankspot[collector]'): readings are stored without their"
                  " coverage figures, and map, report and export read every stored reading until, with h3"
                  " installed, 'blankspot aggregate --db URL --rebuild' computes the figures")
# A row registered at home: as the partial index readings_home has it (schema step 8), so
# that the queries below use it.
HOME_REGISTRATION = "kind = 'signal' AND " + one_of("registration", HOME_REGISTRATIONS)
# ... answered, and naming a network (the codes, or a name): what the home operator is
# learnt from (is_home, from the columns).
HOME_ROW = (f"{HOME_REGISTRATION} AND error IS NULL"
            " AND ((mcc IS NOT NULL AND mnc IS NOT NULL AND mcc <> '000') OR trim(operator) <> '')")


def is_home(reading: Reading) -> bool:
    """Whether ``reading`` is a home registration that :class:`HomeOperators` learns from."""
    part = reading.part
    return isinstance(part, Signal) and is_home_signal(part) and operator_key(part) is not None


def columns_codes(mcc: Any, mnc: Any) -> tuple[str | None, str | None]:
    """A row's ``mcc`` and ``mnc`` columns as a reading has them: text since schema step 8; in
    an older database integers (SQLite's INTEGER affinity makes the digits a number), written
    as a reading of /1 is read."""
    if isinstance(mcc, int) or isinstance(mnc, int):
        return codes_of_numbers(mcc, mnc)
    return mcc, mnc


def name_of(signal: Signal) -> tuple[str, str] | None:
    """``(operator key, name)`` a signal reading names, as :class:`HomeOperators` counts them."""
    if signal.error is not None:
        return None
    key = operator_key(signal)
    if key is None:
        return None
    return key, operator_name(signal.mcc, signal.mnc) or (signal.operator or "").strip() or key


def _home_signal(row: tuple[Any, ...]) -> Signal:
    mcc, mnc = columns_codes(row[0], row[1])
    return Signal(registration="home", operator=row[2], mcc=mcc, mnc=mnc)


@dataclass
class Changes:
    """What one commit does to the kept figures: per key the counts to add (negative to take
    away), the keys whose first and last seen must be read again, the readings that count
    for another operator now, and the operator names seen."""

    deltas: dict[StatsKey, CellStats] = field(default_factory=dict)
    redate: set[StatsKey] = field(default_factory=set)
    moved: list[tuple[str, str, int]] = field(default_factory=list)  # (counts_for, device, seq)
    placed: dict[tuple[str, int], tuple[str | None, str | None]] = field(default_factory=dict)  # new: (cell, counts_for)
    names: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, key: StatsKey, reading: Reading, sign: int = 1) -> None:
        delta = self.deltas.get(key)
        if delta is None:
            delta = self.deltas[key] = CellStats()
        delta.add(reading, sign)
        if sign < 0:
            self.redate.add(key)

    def count_new(self, key: StatsKey, readings: Sequence[Reading]) -> None:
        delta = self.deltas.get(key)
        if delta is None:
            delta = self.deltas[key] = CellStats()
        delta.add_many(readings)


@dataclass(frozen=True)
class Ends:
    """What a unit's stored readings end with, all that attributing readings after them needs:
    its highest seq (-1 for none), its last home registration ``(seq, mcc, mnc, operator)``
    and what its last signal reading counts for."""

    top: int = -1
    home: tuple[int, Any, Any, str | None] | None = None  # seq, the mcc and mnc columns, operator
    counts_for: str | None = None


class Figures:
    """The kept figures of one database, through ``run(sql, params) -> rows`` (SQL with ``?``).

    ``totals``: the database has ``cell_totals`` (schema step 6) and it is kept too;
    ``lock``: what a ``SELECT`` of a total ends with to hold its row until the commit
    (`` FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time); with a lock, totals read
    together are ordered in PostgreSQL's byte order (``COLLATE "C"``), so that they are locked
    in the order Python sorts them, as one at a time.  ``insert``: how rows are written many
    at a time (default: multi-row ``INSERT`` through ``run``), in the order given.
    ``periods``: the database has ``cell_periods`` (schema step 7); a commit then marks the
    days and months it changes, under ``writer`` (the collector's name: each collector its
    own marks, so that collectors do not queue on one row).
    """

    def __init__(self, run: Run, totals: bool = False, lock: str = "", insert: Insert | None = None,
                 periods: bool = False, writer: str = "") -> None:
        self.run = run
        self.totals = totals
        self.lock = lock
        self.insert = insert or inserter(run)
        self.periods = periods
        self.writer = writer

    # -- kept or stale -------------------------------------------------------------------

    def stale(self) -> str | None:
        """Why the figures are stale (readings stored without them), or None while they are kept."""
        rows = self.run("SELECT value FROM figures_state WHERE name = ?", (_STALE,))
        return rows[0][0] if rows else None

    def mark_stale(self, why: str) -> None:
        """From now on no figure is kept, until :meth:`rebuild` (the first reason stays)."""
        self.run("INSERT INTO figures_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                 (_STALE, f"{why}, {format_time(datetime.now(timezone.utc))}"))

    def kept_now(self, grid: bool) -> bool:
        """Whether readings stored now are counted in (``grid``: h3 can be imported)."""
        return grid and self.stale() is None

    def stored_without(self, grid: bool, inserted: int) -> None:
        """After ``inserted`` readings were stored without their figures."""
        if inserted and not grid:
            self.mark_stale("readings were stored by a collector without h3")

    # -- at ingest -----------------------------------------------------------------------

    def arrived(self, readings: Iterable[Reading]) -> Changes:
        """What storing ``readings`` changes (those not stored yet, each ``(device, seq)`` once:
        the first given); nothing is written until :meth:`apply`."""
        by_device: dict[str, dict[int, Reading]] = {}
        for reading in readings:
            assert reading.seq is not None
            by_device.setdefault(reading.device, {}).setdefault(reading.seq, reading)
        ends = self.ends(sorted(by_device))
        new = []
        for device, by_seq in sorted(by_device.items()):
            seqs = sorted(by_seq)
            top = ends[device].top
            if seqs[0] > top:  # the common case: nothing stored among them
                new.extend(by_seq[s] for s in seqs)
                continue
            stored = {row[0] for row in self.run(
                "SELECT seq FROM readings WHERE device = ? AND seq BETWEEN ? AND ?",
                (device, seqs[0], min(seqs[-1], top)))}
            new.extend(by_seq[s] for s in seqs if s not in stored)
        return self.plan(new, ends)

    def ends(self, devices: Sequence[str]) -> dict[str, Ends]:
        """:class:`Ends` of each of ``devices``, in a few queries whatever their number."""
        found = {device: Ends() for device in devices}
        for i in range(0, len(devices), _ENDS_CHUNK):
            chunk = devices[i:i + _ENDS_CHUNK]
            # Each end by its index, for a list of units given as VALUES (one small plan, in
            # SQLite and PostgreSQL alike), then the home registration's row by its key.
            units = ", ".join(["(CAST(? AS TEXT))"] + ["(?)"] * (len(chunk) - 1))
            for device, top, seq, mcc, mnc, operator, counts_for in self.run(
                    "SELECT e.device, e.top, h.seq, h.mcc, h.mnc, h.operator, e.counts_for FROM ("
                    "SELECT u.column1 AS device, (SELECT max(seq) FROM readings WHERE device = u.column1) AS top,"
                    f" (SELECT seq FROM readings WHERE device = u.column1 AND {HOME_ROW} ORDER BY seq DESC LIMIT 1) AS home,"
                    " (SELECT counts_for FROM readings WHERE device = u.column1 AND kind = 'signal'"
                    " AND counts_for IS NOT NULL ORDER BY seq DESC LIMIT 1) AS counts_for"
                    f" FROM (VALUES {units}) AS u) AS e"
                    " LEFT JOIN readings AS h ON h.device = e.device AND h.seq = e.home", list(chunk)):
                found[device] = Ends(-1 if top is None else top, None if seq is None else (seq, mcc, mnc, operator),
                                     counts_for)
        return found

    def plan(self, new: Sequence[Reading], ends: dict[str, Ends]) -> Changes:
        """What storing ``new`` (readings not stored yet, ordered by device then seq) changes;
        nothing is written until :meth:`apply`.  ``ends``: :meth:`ends` of their units."""
        changes = Changes()
        by_device: dict[str, list[Reading]] = {}
        for reading in new:
            by_device.setdefault(reading.device, []).append(reading)
            if isinstance(reading.part, Signal) and (named := name_of(reading.part)) is not None:
                changes.names[named] = changes.names.get(named, 0) + 1
        for device, readings in by_device.items():
            self._plan_unit(device, readings, changes, ends[device])
        return changes

    def _plan_unit(self, device: str, new: list[Reading], changes: Changes, ends: Ends) -> None:
        around = self._after_stored(device, new, ends)
        home, attribution, stored = around if around is not None else self._around_stored(device, new, ends.top)
        fresh: dict[StatsKey, list[Reading]] = {}
        learn, operator_of = home.add_home, attribution.operator_of  # names: counted in plan
        for reading, old in (_merged(stored, new) if stored is not None else zip(new, repeat(_NEW))):
            learn(reading)
            operator = operator_of(reading)
            if old is _NEW:
                key = key_of(reading, operator) if operator is not None else None
                changes.placed[(device, reading.seq)] = (  # type: ignore[index]
                    None if key is None or key.cell == UNPLACED else key.cell, operator)
                if key is not None:
                    fresh.setdefault(key, []).append(reading)
                continue
            cell, was = old  # type: ignore[misc]
            if was == operator:
                continue
            changes.moved.append((operator, device, reading.seq))  # type: ignore[arg-type]
            day = wita_day(reading.time)
            if was is not None:
                changes.count(StatsKey(cell or UNPLACED, was, day, device), reading, -1)
            if operator is not None:
                changes.count(StatsKey(cell or UNPLACED, operator, day, device), reading)
        for key, readings in fresh.items():
            changes.count_new(key, readings)

    def _after_stored(self, device: str, new: list[Reading], ends: Ends
                      ) -> tuple[HomeOperators, Attribution, Iterator[tuple[Reading, Any]] | None] | None:
        """How to attribute ``new`` when it all comes after the unit's stored readings (the
        common case): from their :class:`Ends` alone, no stored reading changes (no run of
        them is read: the third item is None).  None when
        the general way is needed: before the first home registration is stored, every
        stored reading may change; and a stored home registration whose operator key is
        unreadable does not tell the home operator."""
        if new[0].seq <= ends.top:  # type: ignore[operator]
            return None
        home = HomeOperators()
        attribution = Attribution(home)
        if ends.home is not None:
            signal = _home_signal(ends.home[1:])
            if operator_key(signal) is None:
                return None
            home.add(Reading(device, _EPOCH, "unsynced", signal, seq=ends.home[0]))
        else:
            first = next((r for r in new if is_home(r)), None)
            if first is not None:
                if ends.top >= 0:
                    return None
                home.expect_first(device, first.part)  # type: ignore[arg-type]
        if ends.counts_for is not None:
            attribution.follows(device, ends.counts_for)
        return home, attribution, None

    def _around_stored(self, device: str, new: list[Reading], top: int
                       ) -> tuple[HomeOperators, Attribution, Iterator[tuple[Reading, Any]] | None]:
        """How to attribute ``new`` and the run of stored readings it may change (see the module
        docstring; None when no stored reading is in it); ``top``: the unit's highest stored seq."""
        run = self.run
        seqs = [r.seq for r in new]
        homes = [r.seq for r in new if is_home(r)]
        signals = [r.seq for r in new if isinstance(r.part, Signal)]
        first_home = run(f"SELECT seq, mcc, mnc, operator FROM readings WHERE device = ? AND {HOME_ROW}"
                         " ORDER BY seq LIMIT 1", (device,))
        first_home_seq = first_home[0][0] if first_home else None
        # Where the run of seqs to attribute again starts and ends (see the module docstring).
        start: int | None = min(seqs)  # type: ignore[type-var]
        if homes and (first_home_seq is None or homes[0] < first_home_seq):
            start = None
        ends: list[int | None] = [max(seqs) + 1]  # type: ignore[type-var]
        for wanted, condition in ((homes, HOME_ROW), (signals, "kind = 'signal'")):
            if wanted:
                after = run(f"SELECT min(seq) FROM readings WHERE device = ? AND seq > ? AND {condition}",
                            (device, max(wanted)))
                ends.append(after[0][0] if after and after[0][0] is not None else None)
        end = None if None in ends else max(ends)  # type: ignore[type-var]

        home = HomeOperators()
        first = [(r.seq, r.part) for r in new if is_home(r)][:1]
        if first_home and (not first or first_home_seq < first[0][0]):  # type: ignore[operator]
            home.expect_first(device, _home_signal(first_home[0][1:]))
        elif first:
            home.expect_first(device, first[0][1])  # type: ignore[arg-type]
        attribution = Attribution(home)
        if start is not None:
            before = run(f"SELECT seq, mcc, mnc, operator FROM readings WHERE device = ? AND seq < ? AND {HOME_ROW}"
                         " ORDER BY seq DESC LIMIT 1", (device, start))
            if before:
                home.add(Reading(device, _EPOCH, "unsynced",
                                 _home_signal(before[0][1:]), seq=before[0][0]))
            last_signal = run("SELECT counts_for FROM readings WHERE device = ? AND seq < ? AND kind = 'signal'"
                              " AND counts_for IS NOT NULL ORDER BY seq DESC LIMIT 1", (device, start))
            if last_signal:
                attribution.follows(device, last_signal[0][0])

        stored = self._stored_run(device, start, end) if start is None or start <= top else None
        return home, attribution, stored

    def _stored_run(self, device: str, start: int | None, end: int | None) -> Iterator[tuple[Reading, Any]]:
        sql, params = "SELECT seq, body, cell, counts_for FROM readings WHERE device = ?", [device]
        if start is not None:
            sql, params = sql + " AND seq >= ?", params + [start]
        if end is not None:
            sql, params = sql + " AND seq < ?", params + [end]
        for seq, body, cell, counts_for in self.run(sql + " ORDER BY seq", params):
            try:
                yield decode_row(device, seq, body), (cell, counts_for)
            except ReadingError:
                continue  # left out of every figure, as the survey leaves it out

    def apply(self, changes: Changes) -> None:
        """Write ``changes`` (after the new readings are stored with their cell and operator)."""
        run = self.run
        for operator, device, seq in changes.moved:
            run("UPDATE readings SET counts_for = ? WHERE device = ? AND seq = ?", (operator, device, seq))
        keys = sorted(changes.deltas)
        stored = self._keyed_rows("cell_stats", _STATS_COLUMNS, [(k.cell, k.operator, k.day, k.device) for k in keys])
        written, gone = [], []
        for key in keys:
            row = stored.get((key.cell, key.operator, key.day, key.device))
            stats = CellStats.from_row(row) if row is not None else CellStats()
            stats.merge(changes.deltas[key])
            if stats.readings <= 0:
                gone.append(key)
                continue
            if key in changes.redate:
                stats.redate(self._times(key))
            written.append((key.cell, key.operator, key.day, key.device, *stats.row()))
        for key in gone:
            run("DELETE FROM cell_stats WHERE cell = ? AND operator = ? AND day = ? AND device = ?",
                (key.cell, key.operator, key.day, key.device))
        self.insert("cell_stats", _STATS_COLUMNS, written, _UPSERT_KEY)
        self.insert("operator_names", ("operator", "name", "n"),
                    [(key, name, n) for (key, name), n in sorted(changes.names.items())],
                    "ON CONFLICT (operator, name) DO UPDATE SET n = operator_names.n + excluded.n")
        if self.totals:
            self._apply_totals(changes)
        if self.periods and changes.deltas:
            self.insert("periods_dirty", ("period", "collector", "n"),
                        [(period, self.writer, 1) for period in _periods_of(key.day for key in changes.deltas)],
                        "ON CONFLICT (period, collector) DO UPDATE SET n = periods_dirty.n + 1")

    def _keyed_rows(self, table: str, columns: tuple[str, ...], keys: Sequence[tuple[str, ...]],
                    lock: str = "") -> dict[tuple[str, ...], tuple[Any, ...]]:
        """The rows of ``table`` with ``keys`` (values of its first columns, its primary key), by
        key: the other ``columns``; in chunks of a few hundred keys.  ``lock``: the rows are
        held, locked in the order of ``keys``."""
        width = len(keys[0]) if keys else 0
        # The keys as VALUES joined to the table: each found by its index in SQLite and
        # PostgreSQL alike, with one small plan (terms OR-ed take PostgreSQL 8 times longer).
        on = " AND ".join(f"t.{c} = k.column{i + 1}" for i, c in enumerate(columns[:width]))
        first = "(" + ", ".join(["CAST(? AS TEXT)"] * width) + ")"
        other = "(" + ", ".join("?" * width) + ")"
        # Locks taken in the order Python sorts the keys (and earlier collectors took them),
        # whatever the database's collation.
        order = f" ORDER BY {', '.join(f't.{c} COLLATE {_BYTE_ORDER}' for c in columns[:width])}" if lock else ""
        found: dict[tuple[str, ...], tuple[Any, ...]] = {}
        for i in range(0, len(keys), _KEYS_CHUNK):
            chunk = keys[i:i + _KEYS_CHUNK]
            for row in self.run(f"SELECT {', '.join(f't.{c}' for c in columns)}"
                                f" FROM (VALUES {', '.join([first] + [other] * (len(chunk) - 1))}) AS k"
                                f" JOIN {table} AS t ON {on}{order}{lock + ' OF t' if lock else ''}",
                                [v for key in chunk for v in key]):
                found[tuple(row[:width])] = row[width:]
        return found

    def _apply_totals(self, changes: Changes) -> None:
        """The keys' changes added to their cell's and operator's totals (after the keys are written)."""
        groups: dict[tuple[str, str], tuple[CellStats, dict[str, int]]] = {}
        borrowed: set[tuple[str, str]] = set()  # most often a cell's only key in the commit: its delta is the group's
        redate: set[tuple[str, str]] = set()
        for key in sorted(changes.deltas):
            pair = (key.cell, key.operator)
            delta = changes.deltas[key]
            group = groups.get(pair)
            if group is None:
                groups[pair] = (delta, {key.device: delta.readings})
                borrowed.add(pair)
            else:
                summed, units = group
                if pair in borrowed:
                    summed = CellStats()
                    summed.merge(group[0])
                    groups[pair] = (summed, units)
                    borrowed.discard(pair)
                summed.merge(delta)
                units[key.device] = units.get(key.device, 0) + delta.readings
            if key in changes.redate:
                redate.add(pair)
        lost = self._write_totals(sorted(groups), groups, redate)
        # Another writer inserted some of the same new totals at once: they are added to now.
        if lost and self._write_totals(lost, groups, redate):
            raise AssertionError(f"the totals of {lost} were neither found nor inserted")

    def _write_totals(self, pairs: list[tuple[str, str]], groups: dict[tuple[str, str], tuple[CellStats, dict[str, int]]],
                      redate: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """The totals of ``pairs`` with their changes added (read together, locked on
        PostgreSQL); returns the new ones another writer inserted first."""
        stored = self._keyed_rows("cell_totals", _TOTAL_COLUMNS, pairs, self.lock)
        written, new = [], []
        for pair in pairs:
            delta, units = groups[pair]
            row = stored.get(pair)
            if row is None:
                if delta.readings > 0:
                    new.append((*pair, *delta.row(), _units_json(units)))
                continue
            total = _added(row, delta, units)
            if total is None:
                self.run("DELETE FROM cell_totals WHERE cell = ? AND operator = ?", pair)
                continue
            if pair in redate:
                self._redate_total(pair, total[0])
            written.append((*pair, *total[0].row(), _units_json(total[1])))
        self.insert("cell_totals", _TOTAL_COLUMNS, written, _TOTAL_UPSERT_KEY)
        inserted = {tuple(row) for row in self.insert("cell_totals", _TOTAL_COLUMNS, new,
                                                        "ON CONFLICT (cell, operator) DO NOTHING RETURNING cell, operator")}
        return [row[:2] for row in new if row[:2] not in inserted]  # type: ignore[misc]

    def _redate_total(self, pair: tuple[str, str], total: CellStats) -> None:
        first_trusted, last_trusted, first_unsynced, last_unsynced = self.run(
            "SELECT min(first_trusted), max(last_trusted), min(first_unsynced), max(last_unsynced)"
            " FROM cell_stats WHERE cell = ? AND operator = ?", pair)[0]
        total.first_trusted, total.last_trusted = first_trusted, last_trusted
        total.first_unsynced, total.last_unsynced = first_unsynced, last_unsynced

    def _times(self, key: StatsKey) -> Iterator[tuple[str, str]]:
        cell = "cell IS NULL" if key.cell == UNPLACED else "cell = ?"
        params = (key.device, key.operator) + (() if key.cell == UNPLACED else (key.cell,))
        for time, source in self.run(f"SELECT time, time_source FROM readings WHERE device = ? AND counts_for = ?"
                                     f" AND {cell}", params):
            moment = time if not isinstance(time, str) else parse_time(time)
            if wita_day(moment) == key.day:
                yield (time if isinstance(time, str) else _format(moment)), source

    # -- whole ---------------------------------------------------------------------------

    def rebuild(self, rows: Iterable[tuple[str, int, Any]], progress: Callable[[int], None] | None = None) -> int:
        """Every figure again from the stored ``rows`` (``(device, seq, body)`` in device and
        seq order, as ``Store.iter_rows`` streams them); returns the readings counted.
        Memory grows with the keys, not the readings."""
        run = self.run
        homes = {row[0]: _home_signal(row[1:]) for row in run(
            f"SELECT r.device, r.mcc, r.mnc, r.operator FROM readings AS r JOIN (SELECT device, min(seq) AS seq"
            f" FROM readings WHERE {HOME_ROW} GROUP BY device) AS f ON r.device = f.device AND r.seq = f.seq", ())}
        home = HomeOperators()
        for device, signal in homes.items():
            home.expect_first(device, signal)
        attribution = Attribution(home)
        kept: dict[StatsKey, CellStats] = {}
        names: dict[tuple[str, str], int] = {}
        placed: list[tuple[str | None, str | None, str, int]] = []
        count = 0
        run("UPDATE readings SET cell = NULL, counts_for = NULL", ())
        for reading in StoredReadings(lambda _d, _k: rows).iter_readings():
            home.add(reading)
            operator = attribution(reading).operator
            if isinstance(reading.part, Signal) and (named := name_of(reading.part)) is not None:
                names[named] = names.get(named, 0) + 1
            cell = None
            if operator is not None:
                key = key_of(reading, operator)
                cell = None if key.cell == UNPLACED else key.cell
                kept.setdefault(key, CellStats()).add(reading)
            placed.append((cell, operator, reading.device, reading.seq))  # type: ignore[arg-type]
            count += 1
            if len(placed) == 10_000:
                self._place(placed)
            if progress is not None and count % REBUILD_PROGRESS_EVERY == 0:
                progress(count)
        self._place(placed)
        run("DELETE FROM cell_stats", ())
        run("DELETE FROM operator_names", ())
        for key in sorted(kept):
            run(_UPSERT, (key.cell, key.operator, key.day, key.device, *kept[key].row()))
        for (key, name), n in sorted(names.items()):
            run("INSERT INTO operator_names (operator, name, n) VALUES (?, ?, ?)", (key, name, n))
        if self.totals:
            run("DELETE FROM cell_totals", ())
            for (cell, operator), (total, units) in sorted(totals_of(kept.items()).items()):
                run(_TOTAL_INSERT, (cell, operator, *total.row(), _units_json(units)))
        if self.periods:
            run("DELETE FROM cell_periods", ())
            run("DELETE FROM periods_dirty", ())
            self.insert("periods_dirty", ("period", "collector", "n"),
                        [(period, "", 1) for period in _periods_of(key.day for key in kept)], "")
        run("DELETE FROM figures_state WHERE name = ?", (_STALE,))
        return count

    def refresh_periods(self, periods: int | None = None) -> int:
        """Sum the first ``periods`` days and months changed since they were last summed (all,
        by default) into ``cell_periods``: a day from its keys, a month from its days once none
        of them is left to sum; returns how many were.  One changed again meanwhile (its mark
        moved on) stays marked, to be summed again."""
        marks = self.run("SELECT period, collector, n FROM periods_dirty ORDER BY period, collector", ())
        dirty = sorted({period for period, _collector, _n in marks})
        days = [period for period in dirty if len(period) == 10][:periods]
        left = [period for period in dirty if len(period) == 10 and period not in days]
        # A month once none of its days is left to sum (summed first, in this transaction).
        months = [period for period in dirty if len(period) == 7 and not any(d.startswith(period) for d in left)]
        chosen = days + months[:None if periods is None else periods - len(days)]
        for period in chosen:
            sums = self.keys_summed(FiguresFilter(days=(period, period))) if len(period) == 10 else \
                self._periods_summed("period >= ? AND period <= ?", [f"{period}-01", f"{period}-31"], FiguresFilter())
            rows = [(period, cell, operator, *stats.row(), json.dumps(devices)) for cell, operator, stats, devices in sums]
            self.run("DELETE FROM cell_periods WHERE period = ?", (period,))
            self.insert("cell_periods", _PERIOD_COLUMNS, rows, "")
            for _period, collector, n in (m for m in marks if m[0] == period):
                self.run("DELETE FROM periods_dirty WHERE period = ? AND collector = ? AND n = ?", (period, collector, n))
        return len(chosen)

    def _place(self, placed: list[tuple[str | None, str | None, str, int]]) -> None:
        for row in placed:
            self.run("UPDATE readings SET cell = ?, counts_for = ? WHERE device = ? AND seq = ?", row)
        placed.clear()

    # -- reading -------------------------------------------------------------------------

    def keyed(self, where: FiguresFilter = FiguresFilter()) -> Iterator[tuple[StatsKey, CellStats]]:
        clause, params = where.sql()
        inside: dict[str, bool] = {}
        for row in self.run(f"SELECT {', '.join(_STATS_COLUMNS)} FROM cell_stats{clause}"
                            " ORDER BY cell, operator, day, device", params):
            cell = row[0]
            taken = inside.get(cell)
            if taken is None:
                taken = inside[cell] = where.takes(cell)
            if taken:
                yield StatsKey(*row[:4]), CellStats.from_row(row[4:])

    def keys_summed(self, where: FiguresFilter = FiguresFilter()) -> Iterator[tuple[str, str, CellStats, list[str]]]:
        """The keys of ``where`` summed per cell and operator (over its days and units), as
        :meth:`summed` gives the totals: each stored row added as it is read."""
        clause, params = where.sql()
        return _sums(self.run(f"SELECT {', '.join(_STATS_COLUMNS)} FROM cell_stats{clause}"
                              " ORDER BY cell, operator, day, device", params),
                     where, lambda row: (row[0], row[1], row[4:], (row[3],)))

    def summed(self, where: FiguresFilter = FiguresFilter()) -> Iterator[tuple[str, str, CellStats, list[str]]]:
        """The totals of every day and unit, ``(cell, operator, stats, units)``, of the cells in
        ``where``'s area (its days and units are not asked: see :meth:`coverage`)."""
        inside: dict[str, bool] = {}
        for row in self.run(f"SELECT {', '.join(_TOTAL_COLUMNS)} FROM cell_totals ORDER BY cell, operator", ()):
            cell = row[0]
            taken = inside.get(cell)
            if taken is None:
                taken = inside[cell] = where.takes(cell)
            if taken:
                yield cell, row[1], CellStats.from_row(row[2:-1]), sorted(json.loads(row[-1]))

    def names(self) -> dict[str, str]:
        return operator_names(self.run("SELECT operator, name, n FROM operator_names ORDER BY operator, name", ()))

    def coverage(self, resolution: int, thresholds: Thresholds, where: FiguresFilter = FiguresFilter()) -> Coverage:
        """The grid of ``where``: from the totals where it takes every day and unit and the
        database keeps them, from the sums of days and months for a range of days of every
        unit (:meth:`days_summed`), else summed from the keys of its days and units."""
        if self.totals and not where.per_key:
            totals = self.summed(where)
        elif self.periods and where.devices is None and where.days is not None:
            totals = self.days_summed(where)
        else:
            totals = self.keys_summed(where)
        return coverage_of_totals(totals, self.names(), resolution, thresholds, where.technology)

    def days_summed(self, where: FiguresFilter) -> Iterator[tuple[str, str, CellStats, list[str]]]:
        """:meth:`keys_summed` of ``where``'s days (all units), read where it can be from the
        sums of whole months and days in ``cell_periods``, from the keys where those are
        not up to date."""
        assert where.days is not None and where.devices is None
        first, last = where.days
        start, end = _whole_months(first, last)
        dirty = {row[0] for row in self.run("SELECT DISTINCT period FROM periods_dirty WHERE period >= ?"
                                            " AND period <= ?", (first[:7], last))}
        parts = []
        if start is not None and end is not None:
            parts.append(self._periods_summed("length(period) = 7 AND period >= ? AND period <= ?", [start, end],
                                              where, skip=dirty))
            spans = ([(first, _day_from(f"{start}-01", -1))] if first < f"{start}-01" else []) \
                + [(f"{month}-01", _last_day(month)) for month in sorted(dirty) if len(month) == 7 and start <= month <= end] \
                + ([(_day_from(_last_day(end), 1), last)] if last > _last_day(end) else [])
        else:
            spans = [(first, last)]
        clean: list[str] = []
        for span in spans:
            for run_of_days, summed in _runs(_days(*span), lambda day: day not in dirty):
                if summed:
                    clean += run_of_days
                else:
                    parts.append(self.keys_summed(replace(where, days=(run_of_days[0], run_of_days[-1]))))
        for i in range(0, len(clean), _KEYS_CHUNK):
            chunk = clean[i:i + _KEYS_CHUNK]
            parts.append(self._periods_summed(f"period IN ({', '.join('?' * len(chunk))})", chunk, where))
        return heapq.merge(*parts, key=lambda total: (total[0], total[1]))

    def _periods_summed(self, condition: str, params: list[object], where: FiguresFilter, skip: set[str] = frozenset()
                        ) -> Iterator[tuple[str, str, CellStats, list[str]]]:
        """The ``cell_periods`` rows of ``condition`` but those of periods in ``skip``, summed
        per cell and operator of ``where``'s area, in cell and operator order."""
        rows = self.run(f"SELECT {', '.join(_PERIOD_COLUMNS)} FROM cell_periods WHERE {condition}"
                        " ORDER BY cell, operator, period", params)
        return _sums((row for row in rows if row[0] not in skip), where,
                     lambda row: (row[1], row[2], row[3:-1], json.loads(row[-1])))


def _sums(rows: Iterable[Sequence[Any]], where: FiguresFilter,
          split: Callable[[Sequence[Any]], tuple[str, str, Sequence[Any], Iterable[str]]]
          ) -> Iterator[tuple[str, str, CellStats, list[str]]]:
    """Stored rows in cell and operator order summed per cell and operator of ``where``'s area:
    ``split(row)`` gives its cell, operator, figure columns (as :meth:`CellStats.add_row`
    takes them) and units.  Each row is added as it is read; one cell's sums are held."""
    pair: tuple[str, str] | None = None
    total, devices = CellStats(), set()
    taken = False
    for row in rows:
        cell, operator, columns, units = split(row)
        if (cell, operator) != pair:
            if pair is not None and taken:
                yield pair[0], pair[1], total, sorted(devices)
            pair, total, devices = (cell, operator), CellStats(), set()
            taken = where.takes(cell)
        if taken:
            total.add_row(columns)
            devices.update(units)
    if pair is not None and taken:
        yield pair[0], pair[1], total, sorted(devices)


def _periods_of(days: Iterable[str]) -> list[str]:
    """The days and months (``YYYY-MM-DD``, ``YYYY-MM``) of ``days``, sorted."""
    days = set(days)
    return sorted(days | {day[:7] for day in days})


def _days(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last``, both included."""
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    days = []
    while day <= end:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def _runs(items: list[str], test: Callable[[str], bool]) -> Iterator[tuple[list[str], bool]]:
    """``items`` in runs of consecutive ones alike under ``test``, each with its result."""
    run: list[str] = []
    for item in items:
        if run and test(item) != test(run[0]):
            yield run, test(run[0])
            run = []
        run.append(item)
    if run:
        yield run, test(run[0])


def _whole_months(first: str, last: str) -> tuple[str | None, str | None]:
    """The first and last whole month (``YYYY-MM``) from day ``first`` to day ``last``; None
    when they hold no whole month."""
    start = first[:7] if first.endswith("-01") else _month_after(first[:7])
    end = last[:7] if last == _last_day(last[:7]) else _month_before(last[:7])
    if start is None or end is None or start > end:
        return None, None
    return start, end


def _month_after(month: str) -> str | None:
    year, number = int(month[:4]), int(month[5:7])
    if (year, number) == (9999, 12):
        return None
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _month_before(month: str) -> str | None:
    year, number = int(month[:4]), int(month[5:7])
    if (year, number) == (1, 1):
        return None
    return f"{year - (number == 1):04d}-{(number - 2) % 12 + 1:02d}"


def _last_day(month: str) -> str:
    following = _month_after(month)
    if following is None:
        return f"{month}-31"
    return _day_from(f"{following}-01", -1)


def _day_from(day: str, days: int) -> str:
    """The day ``days`` after ``day`` (before it, for a negative number)."""
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def totals_of(keyed: Iterable[tuple[StatsKey, CellStats]]) -> dict[tuple[str, str], tuple[CellStats, dict[str, int]]]:
    """Per cell and operator, the sum of its keys and the readings each unit has in it."""
    totals: dict[tuple[str, str], tuple[CellStats, dict[str, int]]] = {}
    for key, stats in keyed:
        total, units = totals.setdefault((key.cell, key.operator), (CellStats(), {}))
        total.merge(stats)
        units[key.device] = units.get(key.device, 0) + stats.readings
    return totals


def _added(row: Sequence[Any], delta: CellStats, units: dict[str, int]
           ) -> tuple[CellStats, dict[str, int]] | None:
    """A stored total (its columns after the key) with ``delta`` and its ``units`` added; None when nothing is left."""
    total = CellStats.from_row(tuple(row[:-1]))
    total.merge(delta)
    if total.readings <= 0:
        return None
    seen: dict[str, int] = json.loads(row[-1])
    for device, n in units.items():
        seen[device] = seen.get(device, 0) + n
    return total, seen


def _units_json(units: dict[str, int]) -> str:
    if any(n <= 0 for n in units.values()):
        units = {device: n for device, n in units.items() if n > 0}
    return json.dumps(units, separators=(",", ":"), sort_keys=True)


_NEW = object()


def _merged(stored: Iterator[tuple[Reading, Any]], new: list[Reading]) -> Iterator[tuple[Reading, Any]]:
    """Stored and new readings of one unit in seq order; a new one is marked :data:`_NEW`."""
    pending = next(stored, None)
    for reading in new:
        while pending is not None and pending[0].seq < reading.seq:  # type: ignore[operator]
            yield pending
            pending = next(stored, None)
        yield reading, _NEW
    while pending is not None:
        yield pending
        pending = next(stored, None)


def _format(moment: Any) -> str:
    return format_time(moment)
