"""The collector's database: readings stored once per ``(device, seq)``, quarantine, units.

Open one with :func:`agent.centre.store.open_store` from a URL: ``sqlite:///abs/path.db``,
a plain file path, or ``postgresql://user@host/db`` (needs ``psycopg``, the ``postgres``
extra).  Opening applies the schema migrations (``agent.centre.store.schema``).

- ``insert_readings(readings) -> (inserted, duplicates)``: one transaction; a reading whose
  ``(device, seq)`` is already stored is a duplicate and is left as it was.
- ``iter_readings(device=None, kind=None)``: stored readings, ordered by device then seq.
- ``reading_keys(device=None)``: their ``(device, seq)`` only; ``stored_ranges(device)``: the
  same seqs as the seq ledger keeps them, in runs.
- ``first_home_signals()``: each unit's first reading registered at home, from the columns.
- ``quarantine(topic, raw, reason)`` / ``quarantined()``: messages that were refused, with
  their first ``QUARANTINE_RAW_BYTES`` bytes.
- ``update_unit(device, state, when, payload)`` / ``units()``: each unit's last status.
- ``counts()``: how much is stored and what was counted on the way.
- ``coverage(resolution, thresholds, where)``: the grid from the coverage figures kept at ingest.
- ``tracks(zoom, where)``, ``track_costs(where)``, ``segments(where, zoom)``, ``tags(where)``:
  the units' tracks, blank-spot segments and tagged spots kept per unit
  (``agent.centre.store.kept_tracks``), brought up to date first (``refresh_tracks()``).
- ``record_heartbeat(hb, received_at, sender) -> "stored" | "replayed"``,
  ``count_refused_sms(reason, ...)``, ``refused_sms()``, ``heartbeats()``, ``sms_log()``: the
  heartbeats and other messages the SMS gateway reads (``agent.centre.store.sms_kept``).
- ``commit(work, collector)``: all of the above for several MQTT messages in one transaction
  (what ``blankspot collect`` uses, so a message is acknowledged only once all of it is in).

Errors::

    StoreError                 the database cannot be used (unreachable, disk, permissions)
    ├── StoreUrlError          the URL itself is wrong (the caller's mistake)
    ├── SchemaTooNew           the database was made by a newer blankspot
    └── StoreDataError         this data cannot be stored (trying again will not help)
"""
from __future__ import annotations

import abc
import json
import math
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, TypeVar
from urllib.parse import urlsplit

from agent.shared import seq_ranges
from agent.shared.seq_ranges import Range
from agent.centre.ledger import Hole, LedgerChange, SeqLedger, UnitWork, holes_of, unit_work_of
from agent.shared.reading import Event, Latency, Reading, Signal, Throughput, format_time, reading_from_dict

if TYPE_CHECKING:
    from agent.centre.store.sms_kept import KeptHeartbeat, Recorded
    from agent.shared.heartbeat import Heartbeat
    from agent.centre.cell_stats import FiguresFilter
    from agent.centre.store.aggregates import Figures
    from agent.centre.coverage import Coverage, Thresholds
    from agent.centre.report import Place
    from agent.centre.segments import Segment, Track

T = TypeVar("T")

QUARANTINE_RAW_BYTES = 65_536
MAX_TOPIC_CHARS = 1024
MAX_REASON_CHARS = 1000

# Every reading row, in this order (see docs/collector.md for their meaning).
READING_COLUMNS = (
    "device", "seq", "time", "time_source", "kind", "lat", "lon", "fix",
    "registration", "operator", "mcc", "mnc", "rat", "band", "cell_id",
    "rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db", "quality",
    "error", "rtt_avg_ms", "loss_pct", "down_mbps", "up_mbps", "event_type", "event_message",
    "body", "received_at",
)

# Each reading row's place in the coverage figures (agent.centre.store.aggregates).
FIGURE_COLUMNS = ("cell", "counts_for")

# Counter names kept per collector in the ``counters`` table.
COUNTERS = ("batches", "readings_inserted", "duplicates", "quarantined", "statuses", "readings_refused",
            "holes_opened", "holes_filled")


class StoreError(RuntimeError):
    """The collector database cannot be used."""


class StoreUrlError(StoreError):
    """A database URL that names no database we can open."""


class SchemaTooNew(StoreError):
    """The database's schema version is newer than this code knows."""


class StoreDataError(StoreError):
    """Data the database refuses whatever its state: a NUL character, a reading without seq."""


@dataclass(frozen=True)
class Quarantined:
    topic: str
    raw: bytes
    reason: str
    size: int | None = None  # of the whole payload, when ``raw`` is already cut short

    @property
    def total_size(self) -> int:
        return len(self.raw) if self.size is None else self.size


@dataclass(frozen=True)
class UnitStatus:
    device: str
    state: str
    when: datetime
    payload: dict[str, Any]


@dataclass
class Work:
    """What one transaction stores: the content of one or more MQTT messages."""

    readings: list[Reading] = field(default_factory=list)
    quarantine: list[Quarantined] = field(default_factory=list)
    units: list[UnitStatus] = field(default_factory=list)
    batches: int = 0
    refused: list[tuple[str, int]] = field(default_factory=list)  # (device, seq) quarantined one by one

    def __bool__(self) -> bool:
        return bool(self.readings or self.quarantine or self.units or self.batches)

    def by_unit(self) -> dict[str, UnitWork]:
        statuses = [(u.device, u.payload) for u in sorted(self.units, key=lambda u: u.when)]
        return unit_work_of(self.readings, self.refused, statuses)


@dataclass(frozen=True)
class CommitResult:
    inserted: int
    duplicates: int
    changes: list[LedgerChange] = field(default_factory=list)  # per unit, from the seq ledger


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def unstorable(value: Any) -> str | None:
    """Why a decoded JSON value cannot be stored in both databases, or None.

    PostgreSQL's text and jsonb refuse NUL characters and ``NaN``; neither database driver
    can encode lone surrogates (``"\\ud800"`` is valid JSON).
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "contains a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "contains a lone surrogate (not encodable as UTF-8)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "contains NaN or an infinity"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def clean_text(text: str, limit: int) -> str:
    """Text from outside (a topic, an error message) made safe to store: no NUL, valid UTF-8."""
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reading_row(reading: Reading, received_at: str) -> tuple[Any, ...]:
    """The ``readings`` row of a reading, in :data:`READING_COLUMNS` order."""
    if reading.seq is None:
        raise StoreDataError(f"reading of {reading.device} has no seq: only buffered readings can be stored")
    try:
        body = reading.to_json()
        body.encode("utf-8")
    except ValueError as exc:  # NaN in an event's data; UnicodeEncodeError for a lone surrogate
        raise StoreDataError(f"reading {reading.device}#{reading.seq}: {unstorable(reading.to_dict()) or exc}") from None
    if "\\u0000" in body:  # JSON's escape of NUL; a rare false alarm is checked properly
        why = unstorable(reading.to_dict())
        if why:
            raise StoreDataError(f"reading {reading.device}#{reading.seq} {why}")
    position = reading.position
    part = reading.part
    signal = part if isinstance(part, Signal) else None
    latency = part if isinstance(part, Latency) else None
    throughput = part if isinstance(part, Throughput) else None
    event = part if isinstance(part, Event) else None
    error = None if event is not None else part.error  # type: ignore[union-attr]
    return (
        reading.device, reading.seq, format_time(reading.time), reading.time_source, reading.kind,
        position.lat if position else None, position.lon if position else None, position.fix if position else None,
        *(
            (signal.registration, signal.operator, signal.mcc, signal.mnc, signal.rat, signal.band,
             signal.cell_id, signal.rssi_dbm, signal.rsrp_dbm, signal.rsrq_db, signal.sinr_db, signal.quality)
            if signal else (None,) * 12
        ),
        error,
        latency.rtt_avg_ms if latency else None, latency.loss_pct if latency else None,
        throughput.down_mbps if throughput else None, throughput.up_mbps if throughput else None,
        event.type if event else None, event.message if event else None,
        body, received_at,
    )


def status_json(unit: "UnitStatus") -> str:
    why = unstorable(unit.payload)
    if why:
        raise StoreDataError(f"status of {unit.device} {why}")
    return json.dumps(unit.payload, ensure_ascii=False, allow_nan=False)


def counter_deltas(work: Work, result: CommitResult) -> list[tuple[str, int]]:
    """Counter increments for one commit, in a fixed order (concurrent writers lock them alike)."""
    values = {
        "batches": work.batches,
        "readings_inserted": result.inserted,
        "duplicates": result.duplicates,
        "quarantined": len(work.quarantine),
        "statuses": len(work.units),
        "readings_refused": len(work.refused),
        "holes_opened": sum(seq_ranges.count(c.opened) for c in result.changes),
        "holes_filled": sum(seq_ranges.count(c.filled) for c in result.changes),
    }
    return [(name, values[name]) for name in COUNTERS if values[name]]


def readings_query(device: str | None, kind: str | None, mark: str) -> tuple[str, list[str]]:
    """The ``iter_rows`` SELECT and its parameters; ``mark`` is the driver's placeholder."""
    where, params = [], []
    for column, value in (("device", device), ("kind", kind)):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    sql = "SELECT device, seq, body FROM readings" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY device, seq"
    return sql, params


class Store(abc.ABC):
    """A collector database; see the module docstring.  Use from one thread at a time."""

    backend: str
    url: str  # for messages: any password removed

    # -- the documented API ------------------------------------------------------------

    def insert_readings(self, readings: Iterable[Reading]) -> tuple[int, int]:
        """Store readings in one transaction; ``(inserted, duplicates)``."""
        readings = list(readings)
        result = self.commit(Work(readings=readings))
        return result.inserted, result.duplicates

    def quarantine(self, topic: str, raw: bytes, reason: str) -> None:
        self.commit(Work(quarantine=[Quarantined(topic, bytes(raw), reason)]))

    def update_unit(self, device: str, state: str, when: datetime, payload: dict[str, Any]) -> None:
        """Record a unit's status, unless a later one (by ``when``) is already stored."""
        self.commit(Work(units=[UnitStatus(device, state, when, payload)]))

    @abc.abstractmethod
    def commit(self, work: Work, collector: str = "") -> CommitResult:
        """Store all of ``work`` in one transaction, counting it under ``collector``."""

    @abc.abstractmethod
    def iter_rows(self, device: str | None = None, kind: str | None = None) -> Iterator[tuple[str, int, Any]]:
        """Stored rows as ``(device, seq, body)``, ordered by device then seq, streamed; ``body``
        is the reading's JSON text (SQLite) or the decoded object (PostgreSQL's jsonb)."""

    def iter_readings(self, device: str | None = None, kind: str | None = None) -> Iterator[Reading]:
        """Stored readings, ordered by device then seq; a row that does not decode raises
        ``ReadingError`` (``agent.centre.stored_readings`` skips such rows instead)."""
        for _device, _seq, body in self.iter_rows(device, kind):
            yield reading_from_dict(json.loads(body) if isinstance(body, (str, bytes)) else body)

    def reading_keys(self, device: str | None = None) -> list[tuple[str, int]]:
        """``(device, seq)`` of every stored reading (of ``device`` only, if given), ordered by
        device then seq; no body is read."""
        sql, params = "SELECT device, seq FROM readings", ()
        if device is not None:
            sql, params = sql + " WHERE device = ?", (device,)
        with self._reading() as conn:
            return [(row[0], row[1]) for row in self._runner(conn)(sql + " ORDER BY device, seq", params)]

    def stored_ranges(self, device: str) -> list[Range]:
        """The runs of consecutive seqs of ``device`` stored, as the seq ledger keeps them (in the
        same transaction as the readings)."""
        with self._reading() as conn:
            stored, _gone, _ledger = SeqLedger(self._runner(conn)).load(device)
        return stored

    def first_home_signals(self) -> list[tuple[str, int, str | None, str | None, str | None]]:
        """Per device, its first signal reading registered at home (``HOME_REGISTRATIONS``),
        answered and naming its network (codes or a name): ``(device, seq, mcc, mnc,
        operator)``, the codes as digits, ordered by device.  One small query on the rows'
        columns; no body is read."""
        from agent.centre.store.aggregates import HOME_ROW, columns_codes

        with self._reading() as conn:
            rows = self._runner(conn)(
                "SELECT r.device, r.seq, r.mcc, r.mnc, r.operator FROM readings AS r JOIN"
                f" (SELECT device, min(seq) AS seq FROM readings WHERE {HOME_ROW}"
                "  GROUP BY device) AS earliest ON r.device = earliest.device AND r.seq = earliest.seq"
                " ORDER BY r.device", ())
        return [(device, seq, *columns_codes(mcc, mnc), operator) for device, seq, mcc, mnc, operator in rows]

    def keeps_figures(self) -> bool:
        """Whether the coverage figures are kept as readings arrive (schema step 4 on)."""
        return self._figures  # type: ignore[attr-defined,no-any-return]

    def figures_stale(self) -> str | None:
        """Why the kept coverage figures are out of date (readings were stored without them,
        as h3 was missing), or None: then map, report and export may read them."""
        from agent.centre.store.aggregates import Figures

        if not self.keeps_figures():
            return None
        with self._reading() as conn:
            return Figures(self._runner(conn)).stale()

    def figures_notice(self) -> str | None:
        """What a collector says at start when it will not keep the coverage figures."""
        from agent.centre.coverage import has_grid_library
        from agent.centre.store.aggregates import NO_GRID_NOTICE

        if not self.keeps_figures():
            return None
        if not has_grid_library():
            return NO_GRID_NOTICE
        stale = self.figures_stale()
        if stale is None:
            return None
        return (f"the coverage figures are out of date ({stale}): readings are stored without them, and map,"
                " report and export read every stored reading, until 'blankspot aggregate --db URL --rebuild'"
                " computes them again")

    def coverage(self, resolution: int, thresholds: "Thresholds", where: "FiguresFilter | None" = None) -> "Coverage":
        """The coverage grid from the kept figures, at ``resolution`` (8 or coarser), of the
        days, units, area and radio technology ``where`` takes (everything by default); no
        reading is read.  Without days or units, from the totals per cell and operator."""
        from agent.centre.cell_stats import FiguresFilter

        with self._reading() as conn:
            return self._figures_on(self._runner(conn)).coverage(resolution, thresholds, where or FiguresFilter())

    @abc.abstractmethod
    def rebuild_figures(self, progress: "Callable[[int], None] | None" = None) -> int:
        """Every kept coverage figure computed again from the stored readings, in one
        transaction; returns the readings counted.  ``progress`` is told the readings counted
        so far every 100,000.  The kept tracks, segments and tags too."""

    # -- tracks, segments and tags kept per unit (agent.centre.store.kept_tracks) ----------

    def keeps_tracks(self) -> bool:
        """Whether tracks, blank-spot segments and tagged spots are kept per unit (schema step 5 on)."""
        return self._kept_tracks  # type: ignore[attr-defined,no-any-return]

    @abc.abstractmethod
    def refresh_tracks(self, units: int | None = None, progress: "Callable[[int], None] | None" = None) -> int:
        """What readings stored since the last refresh changed of the kept tracks, segments
        and tags (of the first ``units`` units only, when given), computed in one transaction;
        returns the runs of seqs computed (0 when nothing was to do).  ``progress`` is told
        the readings read so far.  The reading methods below call it first."""

    def _figures_on(self, run: Any, **kept: Any) -> "Figures":
        """The figures this database keeps (totals, sums of days and months, by its schema),
        through ``run``; ``kept``: Figures' other arguments (a commit's lock, writer ...)."""
        from agent.centre.store.aggregates import Figures

        return Figures(run, self._totals, periods=self._periods, **kept)  # type: ignore[attr-defined]

    def refresh_periods(self, periods: int | None = None) -> int:
        """Sum the figures of the first ``periods`` days and months changed since they were
        last summed (all, by default), in one transaction; returns how many were (0: nothing
        to do).  A collector does it after a quiet moment; a range of days reads the periods
        summed and the keys of the others.
        """
        return 0

    def tracks_up_to_date(self) -> bool:
        """Whether the kept tracks, segments and tags follow every stored reading, before any
        refresh (a collector refreshes them after a quiet moment)."""
        if not self.keeps_tracks():
            return False
        with self._reading() as conn:
            return not self._kept(conn).dirty()

    def _kept(self, conn: Any) -> Any:
        from agent.centre.store.kept_tracks import KeptTracks

        return KeptTracks(self._runner(conn))

    def tracks(self, zoom: int, where: "FiguresFilter | None" = None) -> "list[Track]":
        """The pieces of the units' tracks ``where`` takes (a day of their span in its days,
        their unit in its units, a point in its area), each simplified as the map draws it
        at ``zoom`` (8 to 16)."""
        from agent.centre.cell_stats import FiguresFilter

        self.refresh_tracks()
        with self._reading() as conn:
            return self._kept(conn).tracks(zoom, where or FiguresFilter())  # type: ignore[no-any-return]

    def track_costs(self, where: "FiguresFilter | None" = None) -> dict[int, int]:
        """Per zoom (8 to 16), the points of the pieces :meth:`tracks` gives, plus
        ``mapview.PIECE_COST`` per piece: what the map's track budget counts."""
        from agent.centre.cell_stats import FiguresFilter

        self.refresh_tracks()
        with self._reading() as conn:
            return self._kept(conn).track_costs(where or FiguresFilter())  # type: ignore[no-any-return]

    def unreadable_rows(self) -> list[tuple[str, int, str]]:
        """``(device, seq, why)`` of the rows left out of the kept tracks, segments and tags
        because their body did not decode when they were last all computed."""
        if not self.keeps_tracks():
            return []
        with self._reading() as conn:
            return self._kept(conn).unreadable()  # type: ignore[no-any-return]

    def operator_names(self) -> dict[str, str]:
        """Per operator key, the name the kept figures know it by (the one most often seen)."""
        from agent.centre.store.aggregates import Figures

        with self._reading() as conn:
            return Figures(self._runner(conn)).names()

    def segments(self, where: "FiguresFilter | None" = None, zoom: int | None = None) -> "list[Segment]":
        """The blank-spot segments ``where`` takes (a day of their span in its days, their unit
        in its units, a point of their line at zoom 16 in its area), with every point, or with ``zoom`` (8 to 16)
        simplified as the map draws them at that zoom (``length_km`` still along every point)."""
        from agent.centre.cell_stats import FiguresFilter

        self.refresh_tracks()
        with self._reading() as conn:
            return self._kept(conn).segments(where or FiguresFilter(), zoom)  # type: ignore[no-any-return]

    def tags(self, where: "FiguresFilter | None" = None) -> "list[Place]":
        """The tagged spots ``where`` takes, named or not."""
        from agent.centre.cell_stats import FiguresFilter

        self.refresh_tracks()
        with self._reading() as conn:
            return self._kept(conn).tags(where or FiguresFilter())  # type: ignore[no-any-return]

    # -- the SMS gateway's heartbeats and refusals (agent.centre.store.sms_kept) -----------

    def keeps_sms(self) -> bool:
        """Whether heartbeats and refused SMS are kept (schema step 9 on)."""
        return self._sms  # type: ignore[attr-defined,no-any-return]

    @abc.abstractmethod
    def _writing(self, work: "Callable[[Any], T]") -> T:
        """``work(run)`` in one write transaction, rolled back on any failure; the database's
        errors as a StoreError."""

    def record_heartbeat(self, hb: "Heartbeat", received_at: datetime, sender: str) -> "Recorded":
        """Keep ``hb`` as its unit's latest heartbeat, received at ``received_at`` from the
        number ``sender``: "stored"; or, when its counter is not greater than the last one
        accepted from that unit, "replayed" (and counted as such).  One transaction: when
        this returns, the heartbeat and its counter are on disk."""
        from agent.centre.store import sms_kept

        return self._writing(lambda run: sms_kept.record_heartbeat(run, hb, received_at, sender))

    def count_refused_sms(self, reason: str, received_at: datetime | None = None, sender: str = "",
                          text: str = "", coding: str = "gsm7") -> None:
        """Count a message not stored as a heartbeat under ``reason`` (one of
        ``sms_kept.REFUSALS``) and keep it in the log of the newest ones."""
        from agent.centre.store import sms_kept

        when = received_at or now_utc()
        self._writing(lambda run: sms_kept.count_refused(run, reason, when, sender, text, coding))

    def refused_sms(self) -> dict[str, int]:
        """How many SMS were not stored as heartbeats, per reason met."""
        from agent.centre.store import sms_kept

        if not self.keeps_sms():
            return {}
        with self._reading() as conn:
            return sms_kept.refused_counts(self._runner(conn))

    def heartbeats(self) -> "dict[str, KeptHeartbeat]":
        """Per unit, its latest verified heartbeat (the one of the highest counter)."""
        from agent.centre.store import sms_kept

        if not self.keeps_sms():
            return {}
        with self._reading() as conn:
            return sms_kept.kept_heartbeats(self._runner(conn))

    def sms_log(self) -> list[dict[str, Any]]:
        """The newest SMS not stored as heartbeats, oldest first (``sms_kept.logged_messages``)."""
        from agent.centre.store import sms_kept

        if not self.keeps_sms():
            return []
        with self._reading() as conn:
            return sms_kept.logged_messages(self._runner(conn))

    def last_received_per_unit(self) -> dict[str, datetime]:
        """Per unit, when its highest stored reading was received (as :meth:`last_received`)."""
        with self._reading() as conn:
            rows = self._runner(conn)(
                "SELECT r.device, r.received_at FROM readings AS r JOIN"
                " (SELECT device, max(last_seq) AS seq FROM seq_ranges GROUP BY device) AS top"
                " ON r.device = top.device AND r.seq = top.seq", ())
        from agent.shared.reading import parse_time

        return {device: value.astimezone(timezone.utc) if isinstance(value, datetime) else parse_time(value)
                for device, value in rows}

    @abc.abstractmethod
    def quarantined(self) -> list[dict[str, Any]]:
        """Refused messages, oldest first: ``id, received_at, collector, topic, reason, size, raw``."""

    @abc.abstractmethod
    def units(self) -> list[dict[str, Any]]:
        """Every unit heard of: ``device, state, last_seen, status`` (the status payload)."""

    @abc.abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A connection to query (SQL the same on both databases), errors as StoreError."""

    def holes(self, device: str) -> list[Hole]:
        """Every seq of ``device`` up to the highest stored that the centre lacks, with why."""
        with self._reading() as conn:
            return holes_of(self._runner(conn), device)

    def ledger(self) -> dict[str, dict[str, Any]]:
        """Per unit: ``rev``, ``kept_from``, ``unit_rev``, ``stored`` (readings), ``top`` (highest seq)."""
        with self._reading() as conn:
            run = self._runner(conn)
            rows = run("SELECT device, rev, kept_from, unit_rev FROM unit_ledger ORDER BY device", ())
            spans = {r[0]: (r[1], r[2]) for r in run(
                "SELECT device, sum(last_seq - first_seq + 1), max(last_seq) FROM seq_ranges GROUP BY device", ())}
        return {r[0]: {"rev": r[1], "kept_from": r[2], "unit_rev": r[3], "stored": int(spans.get(r[0], (0, 0))[0]),
                       "top": int(spans.get(r[0], (0, 0))[1])} for r in rows}

    def last_received(self) -> datetime | None:
        """When the newest of the units' highest stored readings was received (None: nothing
        stored).  Through the seq ledger and the primary key: a handful of rows, whatever the
        number of readings; a re-sent older reading received later is not counted."""
        with self._reading() as conn:
            rows = self._runner(conn)(
                "SELECT max(r.received_at) FROM readings AS r JOIN"
                " (SELECT device, max(last_seq) AS seq FROM seq_ranges GROUP BY device) AS top"
                " ON r.device = top.device AND r.seq = top.seq", ())
        value = rows[0][0] if rows else None
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc)
        from agent.shared.reading import parse_time

        return parse_time(value)

    @abc.abstractmethod
    def _runner(self, conn: Any) -> Any:
        """``run(sql, params) -> rows`` on ``conn`` for SQL written with ``?`` placeholders."""

    def counters(self) -> dict[str, dict[str, int]]:
        """Counters per collector name (``""`` for direct API use)."""
        result: dict[str, dict[str, int]] = {}
        with self._reading() as conn:
            for collector, name, value in conn.execute("SELECT collector, name, value FROM counters ORDER BY 1, 2"):
                result.setdefault(collector, {})[name] = value
        return result

    def _table_counts(self) -> dict[str, int]:
        """``readings``, ``devices``, ``quarantined``, ``units``, ``units_online``."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM readings), (SELECT count(DISTINCT device) FROM readings),"
                " (SELECT count(*) FROM quarantine), (SELECT count(*) FROM units),"
                " (SELECT count(*) FROM units WHERE state = 'online')"
            ).fetchone()
        return dict(zip(("readings", "devices", "quarantined", "units", "units_online"), row))

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def counts(self) -> dict[str, int]:
        """Rows stored (``readings``, ``devices``, ``quarantined``, ``units``, ``units_online``)
        and counted on the way in, summed over collectors (``batches``, ``readings_inserted``,
        ``duplicates``, ``statuses``; ``quarantined`` is the rows)."""
        totals = {name: 0 for name in COUNTERS}
        for values in self.counters().values():
            for name, value in values.items():
                totals[name] = totals.get(name, 0) + value
        totals.update(self._table_counts())
        return totals

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- URLs -------------------------------------------------------------------------------

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class DatabaseUrl:
    backend: str  # "sqlite" | "postgres"
    target: str   # a file path, or the libpq connection URL

    @property
    def display(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{Path(self.target).resolve().as_posix().lstrip('/')}"
        return redact(self.target)


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def parse_db_url(url: str) -> DatabaseUrl:
    """``sqlite:///abs/path``, ``sqlite:rel/path``, a plain path, or ``postgresql://...``."""
    if not isinstance(url, str) or not url.strip():
        raise StoreUrlError("database URL is empty (use a file path, sqlite:///path or postgresql://...)")
    match = _SCHEME_RE.match(url)
    if match is None:
        if url.startswith("sqlite:"):
            path = url[len("sqlite:"):]
            if not path:
                raise StoreUrlError(f"database URL {url!r} names no file")
            return DatabaseUrl("sqlite", path)
        if url.startswith(("postgresql:", "postgres:")):
            raise StoreUrlError(f"database URL {url!r}: expected postgresql://[user[:password]@]host[:port]/database")
        return DatabaseUrl("sqlite", url)
    scheme = match.group(1).lower()
    rest = url[match.end():]
    if scheme == "sqlite":
        # sqlite:///abs/path.db like file:///abs/path (no host part)
        if not rest.startswith("/") or len(rest) < 2:
            raise StoreUrlError(f"database URL {url!r}: expected sqlite:///absolute/path.db or sqlite:relative/path.db")
        return DatabaseUrl("sqlite", rest)
    if scheme in ("postgresql", "postgres"):
        return DatabaseUrl("postgres", url)
    raise StoreUrlError(
        f"database URL {redact(url)!r}: unsupported scheme {scheme!r} "
        "(use a file path, sqlite:///path or postgresql://user@host/database)"
    )
