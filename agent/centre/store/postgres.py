"""The collector database in PostgreSQL (psycopg 3), for several collectors and big fleets.

Many readings arrive by ``COPY`` into a temporary table and move to ``readings`` with one
``INSERT ... SELECT ... ON CONFLICT (device, seq) DO NOTHING``; a few by a batch of
``INSERT ... ON CONFLICT``.  Either way in key order, so that two collectors inserting
overlapping batches at once wait for each other instead of deadlocking.  A lost connection is reopened at the next commit.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Sequence
from datetime import timezone
from typing import Any, Callable, Iterator, TypeVar

from agent.centre.store import schema
from agent.centre.coverage import has_grid_library
from agent.centre.store.kept_tracks import KeptTracks, mark_dirty
from agent.centre.store.statements import Insert, insert_rows
from agent.centre.ledger import SeqLedger
from agent.centre.store.base import (
    FIGURE_COLUMNS, MAX_REASON_CHARS, MAX_TOPIC_CHARS, QUARANTINE_RAW_BYTES, READING_COLUMNS, CommitResult, SchemaTooNew, Store,
    StoreDataError, StoreError, StoreUrlError, Work, clean_text, counter_deltas, now_utc, reading_row, redact,
    readings_query, status_json,
)
from agent.shared.migrations import Step, pending_steps
from agent.shared.reading import format_time

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # the `postgres` extra is not installed
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_S = 10
# Any constant will do: it only has to be the same for every blankspot migrating this database.
_MIGRATION_LOCK = 0x626C616E6B73706F  # "blankspo"
_RETRIES = 5
_cursor_names = itertools.count(1)


# From this many rows (readings, figures) in one commit, COPY through a temporary table
# beats INSERTs (bench/ingest.py; measured in docs/benchmarks.md).
_COPY_FROM = 100


class PostgresStore(Store):
    backend = "postgres"

    def __init__(self, url: str, steps: tuple[Step, ...] = schema.MIGRATIONS) -> None:
        if psycopg is None:
            raise StoreError("PostgreSQL needs the psycopg package: pip install 'blankspot[postgres]' "
                             "(or 'psycopg[binary]')")
        self.url = redact(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise StoreUrlError(f"database URL {self.url!r}: {_one_line(exc)}") from None
        if not all(port.strip().isdigit() for port in str(params.get("port", "5432")).split(",")):
            raise StoreUrlError(f"database URL {self.url!r}: port {params['port']!r} is not a number")
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "blankspot-collector")
        self._params = params
        self._conn: Any = None
        self._connect()
        try:
            self._migrate(steps)
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"cannot use PostgreSQL database {self.url}: {_one_line(exc)}") from None
        except StoreError:
            self.close()
            raise

    def _connect(self) -> None:
        try:
            self._conn = psycopg.connect(autocommit=True, **self._params)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL {self.url}: {_one_line(exc)}") from None
        self._copy_tables: set[str] = set()

    def _usable(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                log.warning("connection to %s was lost; reconnecting", self.url)
                self._conn.close()
            self._connect()
        return self._conn

    # -- schema ------------------------------------------------------------------------

    def _migrate(self, steps: tuple[Step, ...]) -> None:
        self._ledger = schema.has_ledger(steps)
        self._figures = schema.has_figures(steps)
        self._totals = schema.has_totals(steps)
        self._periods = schema.has_periods(steps)
        self._kept_tracks = schema.has_kept_tracks(steps)
        self._sms = schema.has_sms(steps)
        self._grid = has_grid_library()
        conn = self._conn
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(schema.VERSION_TABLE["postgres"])
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            try:
                todo = pending_steps(current, steps)
            except ValueError as exc:
                raise SchemaTooNew(f"{self.url}: {exc}") from None
            for step in todo:
                for statement in step.statements("postgres"):
                    conn.execute(statement)
                if step.build is not None:
                    step.build(self._runner(conn), self._streamer(conn))
                conn.execute("INSERT INTO schema_version VALUES (%s, %s, now())", (step.version, step.description))
                log.info("database %s: applied schema step %d (%s)", self.url, step.version, step.description)

    def schema_version(self) -> int:
        with self._reading() as conn:
            return conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    # -- writing -----------------------------------------------------------------------

    def commit(self, work: Work, collector: str = "") -> CommitResult:
        received = now_utc()
        received_text = format_time(received)
        # Everything is converted before the transaction: data that cannot be stored fails here.
        rows = [reading_row(r, received_text) for r in work.readings]
        quarantine = [
            (received, collector, clean_text(q.topic, MAX_TOPIC_CHARS), clean_text(q.reason, MAX_REASON_CHARS),
             q.total_size, q.raw[:QUARANTINE_RAW_BYTES])
            for q in work.quarantine
        ]
        units = [(u.device, u.state, u.when, status_json(u)) for u in sorted(work.units, key=lambda u: (u.device, u.when))]
        for attempt in range(1, _RETRIES + 1):
            try:
                try:
                    return self._commit_once(work, collector, rows, quarantine, units)
                except BaseException:
                    # Temporary tables created in a transaction that rolled back are gone with it.
                    self._copy_tables.clear()
                    raise
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == _RETRIES:
                    raise StoreError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None
                log.info("transaction retried after %s", type(exc).__name__)
                time.sleep(0.05 * attempt)
            except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
                raise StoreDataError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None
        raise AssertionError("unreachable")

    def _commit_once(self, work: Work, collector: str, rows: list[tuple[Any, ...]],
                     quarantine: list[tuple[Any, ...]], units: list[tuple[Any, ...]]) -> CommitResult:
        conn = self._usable()
        with conn.transaction(), conn.cursor() as cur:
            inserted = 0
            copying = self._copying(cur)
            columns = READING_COLUMNS
            figures = changes = None
            kept = None
            if self._figures and rows:
                # One writer per unit at a time: what a reading counts for depends on the
                # unit's other readings, which another collector may be storing now.
                # Taken in one statement, in the order of the list (every collector sorts it alike).
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('blankspot unit ' || u.device))"
                            " FROM unnest(%s::text[]) WITH ORDINALITY AS u (device, n) ORDER BY u.n",
                            (sorted({row[0] for row in rows}),))
                # Taken before the figures are read: a rebuild (which holds a stronger lock
                # until it commits) is then either wholly before this commit or wholly after.
                cur.execute("LOCK TABLE readings IN ROW EXCLUSIVE MODE")
                kept = self._figures_on(self._runner(cur), lock=" FOR UPDATE", insert=copying, writer=collector)
            if kept is not None and kept.kept_now(self._grid):
                figures = kept
                changes = figures.arrived(work.readings)
                columns = READING_COLUMNS + FIGURE_COLUMNS
                rows = [row + changes.placed.get((row[0], row[1]), (None, None)) for row in rows]
            if rows:
                # In key order, as every collector stores them; a row returned per reading stored.
                inserted = len(copying("readings", columns, sorted(rows, key=lambda row: (row[0], row[1])),
                                       "ON CONFLICT (device, seq) DO NOTHING RETURNING 1"))
            moved = []
            if figures is not None and changes is not None:
                figures.apply(changes)
                moved = [(device, seq) for _operator, device, seq in changes.moved]
            elif kept is not None:
                kept.stored_without(self._grid, inserted)
            if self._kept_tracks and rows:
                mark_dirty(self._runner(cur), [(row[0], row[1]) for row in rows] + moved)
            result = CommitResult(inserted, len(rows) - inserted)
            if quarantine:
                cur.executemany(
                    "INSERT INTO quarantine (received_at, collector, topic, reason, size, raw) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    quarantine,
                )
            for unit in units:
                cur.execute(
                    "INSERT INTO units (device, state, last_seen, status) VALUES (%s, %s, %s, %s::jsonb) "
                    "ON CONFLICT (device) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen, "
                    "status = excluded.status WHERE excluded.last_seen >= units.last_seen",
                    unit,
                )
            changes = SeqLedger(self._runner(cur)).update_all(work.by_unit()) if self._ledger else []
            result = CommitResult(result.inserted, result.duplicates, changes)
            for name, delta in counter_deltas(work, result):
                cur.execute(
                    "INSERT INTO counters (collector, name, value) VALUES (%s, %s, %s) "
                    "ON CONFLICT (collector, name) DO UPDATE SET value = counters.value + excluded.value",
                    (collector, name, delta),
                )
        return result

    # -- reading -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Any]:
        try:
            yield self._usable()
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None

    def _runner(self, conn: Any) -> Any:
        def run(sql: str, params: Any) -> list[tuple[Any, ...]]:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []

        return run

    def _copying(self, cur: Any) -> Insert:
        """Rows written many at a time: from _COPY_FROM rows on, through COPY into a temporary
        table and one ``INSERT ... SELECT`` (a few times faster than a multi-row ``INSERT`` of
        as many parameters, which PostgreSQL parses and plans each time)."""
        run = self._runner(cur)

        def insert(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], conflict: str = ""
                   ) -> list[tuple[Any, ...]]:
            if len(rows) < _COPY_FROM:
                return insert_rows(run, table, columns, rows, conflict)
            incoming = f"incoming_{table}"
            if table not in self._copy_tables:
                # Emptied at every commit (a DELETE would leave dead rows that no vacuum ever
                # clears from a temporary table, and every later INSERT would scan them).
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {incoming} (LIKE {table}) ON COMMIT DELETE ROWS")
                self._copy_tables.add(table)
            listed = ", ".join(columns)
            with cur.copy(f"COPY {incoming} ({listed}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            # In the order written (a new temporary table's rows are in it): rows are locked in
            # the order every writer sorts them.
            return run(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {incoming} ORDER BY ctid"
                       + (f" {conflict}" if conflict else ""), ())

        return insert

    def _streamer(self, conn: Any) -> Any:
        def stream(sql: str, params: Any) -> Iterator[tuple[Any, ...]]:
            with conn.cursor(name=f"blankspot_rows_{next(_cursor_names)}") as cur:
                cur.itersize = 2000
                cur.execute(sql.replace("?", "%s"), params)
                yield from cur

        return stream

    def _writing(self, work: Callable[[Any], T]) -> T:
        try:
            conn = self._usable()
            with conn.transaction():
                return work(self._runner(conn))
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
            raise StoreDataError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None

    def rebuild_figures(self, progress: Any = None) -> int:
        try:
            conn = self._usable()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute("LOCK TABLE readings IN SHARE ROW EXCLUSIVE MODE")
                count = self._figures_on(self._runner(conn)).rebuild(
                    self._streamer(conn)("SELECT device, seq, body FROM readings ORDER BY device, seq", ()), progress)
                if self._kept_tracks:
                    KeptTracks(self._runner(conn), self._streamer(conn)).rebuild()
                return count
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None

    def refresh_tracks(self, units: int | None = None, progress: Any = None) -> int:
        if not self._kept_tracks:
            return 0
        try:
            conn = self._usable()
            kept = KeptTracks(self._runner(conn), progress=progress)
            if not kept.dirty():
                return 0
            with conn.transaction():
                # Locked as a collector storing readings of these units locks, in the same
                # order: their collectors wait, and a rebuild (which holds a stronger lock on
                # readings) is wholly before or after.
                devices = sorted(kept.dirty_devices())[:units]  # the order collectors lock in
                for device in devices:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("blankspot unit " + device,))
                conn.execute("LOCK TABLE readings IN ROW EXCLUSIVE MODE")
                return kept.refresh(devices)  # type: ignore[no-any-return]
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None

    def refresh_periods(self, periods: int | None = None) -> int:
        if not self._periods:
            return 0
        try:
            conn = self._usable()
            if not conn.execute("SELECT 1 FROM periods_dirty LIMIT 1").fetchall():
                return 0
            with conn.transaction():
                # Not locked: a commit meanwhile moves its period's mark on, which is then left
                # (it waits for this transaction's delete of that mark, then keeps its own).
                return self._figures_on(self._runner(conn)).refresh_periods(periods)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self.url}: {_one_line(exc)}") from None

    def iter_rows(self, device: str | None = None, kind: str | None = None) -> Iterator[tuple[str, int, Any]]:
        sql, params = readings_query(device, kind, "%s")
        # A server-side cursor streams the rows; each its own name, as passes may overlap.
        with self._reading() as conn, conn.transaction(), \
                conn.cursor(name=f"blankspot_rows_{next(_cursor_names)}") as cur:
            cur.itersize = 2000
            cur.execute(sql, params)
            yield from cur

    def quarantined(self) -> list[dict[str, Any]]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT id, received_at, collector, topic, reason, size, raw FROM quarantine ORDER BY id"
            ).fetchall()
        return [
            {"id": r[0], "received_at": r[1].astimezone(timezone.utc), "collector": r[2], "topic": r[3],
             "reason": r[4], "size": r[5], "raw": bytes(r[6])}
            for r in rows
        ]

    def units(self) -> list[dict[str, Any]]:
        with self._reading() as conn:
            rows = conn.execute("SELECT device, state, last_seen, status FROM units ORDER BY device").fetchall()
        return [{"device": r[0], "state": r[1], "last_seen": r[2].astimezone(timezone.utc), "status": r[3]} for r in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
