"""The collector database in one SQLite file (WAL, ``synchronous=FULL``).

A commit is durable when it returns, so a message acknowledged to the broker after it is
never lost with the machine's power.  Several collectors on one machine may share the file:
writers wait for each other (``busy_timeout``) and deduplicate through the primary key.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from agent.centre.coverage import has_grid_library
from agent.centre.store import schema
from agent.centre.store.kept_tracks import KeptTracks, mark_dirty
from agent.centre.ledger import SeqLedger
from agent.centre.store.base import (
    FIGURE_COLUMNS, MAX_REASON_CHARS, MAX_TOPIC_CHARS, QUARANTINE_RAW_BYTES, READING_COLUMNS, CommitResult, SchemaTooNew, Store,
    StoreDataError, StoreError, Work, clean_text, counter_deltas, now_utc, reading_row, readings_query, status_json,
)
from agent.shared.migrations import Step, pending_steps
from agent.shared.reading import format_time, parse_time

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000



def _insert(columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO readings ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT (device, seq) DO NOTHING")


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode, waiting for another opener as long as any other writer would.

    The switch takes an exclusive lock without calling SQLite's busy handler, so a second
    collector starting on the same new file gets "database is locked" at once instead of
    waiting; it runs outside any transaction, so the migration's lock cannot cover it.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)  # the other opener holds the file for milliseconds
        pause = min(pause * 2, 0.1)


T = TypeVar("T")

class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, path: str | Path, steps: tuple[Step, ...] = schema.MIGRATIONS) -> None:
        self.path = Path(path)
        self._closed = False
        self.url = f"sqlite:///{self.path.resolve().as_posix().lstrip('/')}"
        if self.path.is_dir():
            raise StoreError(f"cannot open SQLite database {self.path}: it is a folder")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                       check_same_thread=False)  # one thread at a time, any thread
        except sqlite3.Error as exc:
            hint = "" if self.path.parent.is_dir() else f" (folder {self.path.parent} does not exist)"
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}{hint}") from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _switch_to_wal(self._db)
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate(steps)
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot use SQLite database {self.path}: {exc}") from None
        except StoreError:
            self._db.close()
            raise

    # -- schema ------------------------------------------------------------------------

    def _migrate(self, steps: tuple[Step, ...]) -> None:
        self._ledger = schema.has_ledger(steps)
        self._figures = schema.has_figures(steps)
        self._totals = schema.has_totals(steps)
        self._periods = schema.has_periods(steps)
        self._kept_tracks = schema.has_kept_tracks(steps)
        self._sms = schema.has_sms(steps)
        self._grid = has_grid_library()
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # one migrator at a time
        try:
            db.execute(schema.VERSION_TABLE["sqlite"])
            current = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            try:
                todo = pending_steps(current, steps)
            except ValueError as exc:
                raise SchemaTooNew(f"{self.path}: {exc}") from None
            for step in todo:
                for statement in step.statements("sqlite"):
                    db.execute(statement)
                if step.build is not None:
                    step.build(self._runner(db), self._streamer(db))
                db.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                           (step.version, step.description, format_time(now_utc())))
                log.info("database %s: applied schema step %d (%s)", self.path, step.version, step.description)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        with self._reading() as db:
            return db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    # -- writing -----------------------------------------------------------------------

    def commit(self, work: Work, collector: str = "") -> CommitResult:
        received = format_time(now_utc())
        # Everything is converted before the transaction: data that cannot be stored fails here.
        rows = sorted((reading_row(r, received) for r in work.readings), key=lambda row: (row[0], row[1]))
        quarantine = [
            (received, collector, clean_text(q.topic, MAX_TOPIC_CHARS), clean_text(q.reason, MAX_REASON_CHARS),
             q.total_size, q.raw[:QUARANTINE_RAW_BYTES])
            for q in work.quarantine
        ]
        units = [(u.device, u.state, format_time(u.when), status_json(u)) for u in sorted(work.units, key=lambda u: u.when)]
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                figures = self._figures_on(self._runner(db), writer=collector) if self._figures and rows else None
                if figures is not None and figures.kept_now(self._grid):
                    # Attributed before they are stored: each new row is written with its operator.
                    changes = figures.arrived(work.readings)
                    before = db.total_changes
                    db.executemany(_insert(READING_COLUMNS + FIGURE_COLUMNS),
                                   (row + changes.placed.get((row[0], row[1]), (None, None)) for row in rows))
                    inserted = db.total_changes - before
                    figures.apply(changes)
                    moved = [(device, seq) for _operator, device, seq in changes.moved]
                else:
                    before = db.total_changes
                    db.executemany(_insert(READING_COLUMNS), rows)
                    inserted = db.total_changes - before
                    if figures is not None:
                        figures.stored_without(self._grid, inserted)
                    moved = []
                if self._kept_tracks and rows:
                    mark_dirty(self._runner(db), [(row[0], row[1]) for row in rows] + moved)
                result = CommitResult(inserted, len(rows) - inserted)
                db.executemany(
                    "INSERT INTO quarantine (received_at, collector, topic, reason, size, raw) VALUES (?, ?, ?, ?, ?, ?)",
                    quarantine,
                )
                db.executemany(
                    "INSERT INTO units (device, state, last_seen, status) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (device) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen, "
                    "status = excluded.status WHERE excluded.last_seen >= units.last_seen",
                    units,
                )
                changes = SeqLedger(self._runner(db)).update_all(work.by_unit()) if self._ledger else []
                result = CommitResult(result.inserted, result.duplicates, changes)
                db.executemany(
                    "INSERT INTO counters (collector, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (collector, name) DO UPDATE SET value = value + excluded.value",
                    [(collector, name, delta) for name, delta in counter_deltas(work, result)],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (UnicodeEncodeError, OverflowError) as exc:
            raise StoreDataError(f"SQLite database {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: {exc}") from None
        return result

    # -- reading -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._db
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: {exc}") from None

    def _runner(self, conn: sqlite3.Connection) -> Any:
        return lambda sql, params: conn.execute(sql, params).fetchall()

    def _streamer(self, conn: sqlite3.Connection) -> Any:
        def stream(sql: str, params: Any) -> Iterator[tuple[Any, ...]]:
            cursor = conn.execute(sql, params)
            try:
                while rows := cursor.fetchmany(1000):
                    yield from rows
            finally:
                if not self._closed:  # closing the store closed its cursors: nothing is left to free
                    cursor.close()

        return stream

    def iter_rows(self, device: str | None = None, kind: str | None = None) -> Iterator[tuple[str, int, Any]]:
        sql, params = readings_query(device, kind, "?")
        # Its own cursor, read in steps, so a large table never sits in memory at once.
        with self._reading() as db:
            yield from self._streamer(db)(sql, params)

    def _immediate(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(db)`` in one write transaction taken at once (collectors wait for it), rolled
        back on any failure; SQLite's errors as a StoreError."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: {exc}") from None
        return result

    def _writing(self, work: Callable[[Any], T]) -> T:
        return self._immediate(lambda db: work(self._runner(db)))

    def rebuild_figures(self, progress: Any = None) -> int:
        def rebuild(db: sqlite3.Connection) -> int:
            count = self._figures_on(self._runner(db)).rebuild(
                self._streamer(db)("SELECT device, seq, body FROM readings ORDER BY device, seq", ()), progress)
            if self._kept_tracks:
                KeptTracks(self._runner(db), self._streamer(db)).rebuild()
            return count

        return self._immediate(rebuild)

    def refresh_tracks(self, units: int | None = None, progress: Any = None) -> int:
        if not self._kept_tracks:
            return 0
        kept = KeptTracks(self._runner(self._db), progress=progress)
        try:
            if not kept.dirty():
                return 0
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: {exc}") from None
        # What is computed must not move meanwhile: collectors wait.
        return self._immediate(lambda _db: kept.refresh(kept.dirty_devices()[:units]))

    def refresh_periods(self, periods: int | None = None) -> int:
        if not self._periods:
            return 0
        figures = self._figures_on(self._runner(self._db))
        try:
            if not self._db.execute("SELECT 1 FROM periods_dirty LIMIT 1").fetchall():
                return 0
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: {exc}") from None
        return self._immediate(lambda _db: figures.refresh_periods(periods))

    def quarantined(self) -> list[dict[str, Any]]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT id, received_at, collector, topic, reason, size, raw FROM quarantine ORDER BY id"
            ).fetchall()
        return [
            {"id": r[0], "received_at": parse_time(r[1]), "collector": r[2], "topic": r[3], "reason": r[4],
             "size": r[5], "raw": bytes(r[6])}
            for r in rows
        ]

    def units(self) -> list[dict[str, Any]]:
        with self._reading() as db:
            rows = db.execute("SELECT device, state, last_seen, status FROM units ORDER BY device").fetchall()
        return [{"device": r[0], "state": r[1], "last_seen": parse_time(r[2]), "status": json.loads(r[3])} for r in rows]

    def close(self) -> None:
        self._closed = True
        self._db.close()
