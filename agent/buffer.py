"""ReadingBuffer: the durable on-unit store every reading passes through.

- ``append`` assigns the reading its ``seq`` and returns only once the row is on disk
  (SQLite WAL, ``synchronous=FULL``: one fsync of the WAL per commit, see
  ``docs/buffer.md``), so a reading that was taken survives ``kill -9`` and power loss.
- ``take`` leases the oldest pending readings as a :class:`Batch`; ``ack`` marks them
  delivered (call it only on the broker's acknowledgement); ``nack`` returns them, and they
  are served again before anything newer.  Leases live in memory, so after a crash every
  unacknowledged reading is pending again: at-least-once, deduplicated centrally on
  ``(device, seq)``.
- ``seq`` is strictly increasing and never reused.  The counter lives in the database and,
  in blocks, in a small ``<file>.seq`` reservation file beside it, so even a database that
  had to be moved aside as corrupt does not restart the numbering.
- Bounded: past ``max_bytes`` delivered readings are pruned first, then the oldest
  undelivered ones; every such drop is added to a persisted counter and reported in an
  ``event`` reading (``buffer_overflow``).  Never silently.
- A database that fails SQLite's check at open is renamed aside (kept for forensics),
  logged as critical, and a fresh one started; an ``event`` reading (``buffer_corrupt``)
  records it.
- A reading stamped ``unsynced`` keeps the boot id and ``CLOCK_BOOTTIME`` of its
  measurement.  The first reading with a trusted time (``gps``/``ntp``) in the same boot
  re-stamps every such reading still pending: ``time = trusted - (boottime now - boottime
  then)``, ``time_source`` the trusted source.  Readings of an earlier boot cannot be placed
  in time and stay ``unsynced``; readings already delivered stay as they were sent.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import sqlite_utils

from agent.clock import Clock, Timestamp, TimeKeeper, boot_id
from agent.reading import Event, Reading, format_time

log = logging.getLogger(__name__)

SEQ_BLOCK = 1000
_PRUNE_CHUNK = 500


class BufferError(RuntimeError):
    """The buffer cannot be used (disk full, read-only, unusable path)."""


@dataclass(frozen=True)
class Batch:
    """Readings leased for one delivery attempt, oldest first."""

    seqs: tuple[int, ...]
    bodies: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def first(self) -> int:
        return self.seqs[0]

    @property
    def last(self) -> int:
        return self.seqs[-1]


@dataclass(frozen=True)
class BufferStats:
    pending: int
    delivered_kept: int
    oldest_pending_time: str | None
    last_seq: int
    dropped_total: int
    delivered_total: int
    used_bytes: int
    max_bytes: int
    last_delivered_at: str | None = None  # when the broker last acknowledged a reading still kept


class ReadingBuffer:
    """Durable FIFO of readings with leases; safe to share between threads."""

    def __init__(
        self,
        path: Path | str,
        device: str,
        *,
        max_bytes: int = 200_000_000,
        keep_delivered: float = 30 * 86400.0,
        clock: Clock | None = None,
        synchronous: str = "FULL",
        journal_mode: str = "WAL",
    ) -> None:
        self.path = Path(path)
        self.device = device
        self.max_bytes = max_bytes
        self.keep_delivered = keep_delivered
        self.clock = clock or TimeKeeper()
        self._lock = threading.RLock()
        self._leased: dict[int, Batch] = {}
        self._returned: deque[Batch] = deque()
        self._cursor = 0
        self._last_prune = 0.0
        self._seq_file = self.path.with_name(self.path.name + ".seq")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufferError(f"cannot create the buffer folder {self.path.parent}: {exc}") from None
        corrupt_copy = None
        try:
            self._open(synchronous, journal_mode)
        except sqlite3.DatabaseError as exc:
            corrupt_copy = self._move_aside(exc)
            self._open(synchronous, journal_mode)
        self._reserved = self._read_reservation()
        if corrupt_copy is not None:
            self._record_event(
                "buffer_corrupt",
                f"buffer database was corrupt; moved aside to {corrupt_copy.name}, new buffer started",
                {"kept_as": str(corrupt_copy)},
            )

    # -- opening ------------------------------------------------------------------------

    def _open(self, synchronous: str, journal_mode: str) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise BufferError(f"cannot open the buffer {self.path}: {exc}") from None
        self.conn = conn
        try:
            conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA journal_size_limit=8388608")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            self.db = sqlite_utils.Database(conn)
            with self._transaction():
                self.db["readings"].create(
                    {"seq": int, "kind": str, "time": str, "body": str, "delivered_at": float,
                     "boot": str, "boottime": float},
                    pk="seq",
                    not_null={"kind", "time", "body"},
                    if_not_exists=True,
                )
                columns = self.db["readings"].columns_dict
                for name, kind in (("boot", str), ("boottime", float)):  # buffers from before these
                    if name not in columns:
                        self.db["readings"].add_column(name, kind)
                conn.execute("CREATE INDEX IF NOT EXISTS readings_unsynced ON readings(boot) WHERE boot IS NOT NULL")
                # WITHOUT ROWID: one b-tree, so bumping next_seq writes one page per commit, not two.
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID")
                conn.execute(
                    "CREATE INDEX IF NOT EXISTS readings_pending ON readings(seq) WHERE delivered_at IS NULL"
                )
                initial = {"next_seq": 1, "dropped_total": 0, "delivered_total": 0, "db_id": secrets.randbits(62)}
                for key, value in initial.items():
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))
            self._db_id = self._meta("db_id")
            self._boot = boot_id()
            self._uncorrected = self._count_unsynced(self._boot) > 0
            earlier = self._count_unsynced(None) - self._count_unsynced(self._boot)
            if earlier:
                log.warning("%d readings waiting from an earlier boot were taken before the clock was "
                            "trusted; they keep time_source 'unsynced'", earlier)
        except sqlite3.DatabaseError:
            conn.close()
            raise

    def _move_aside(self, exc: Exception) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        kept = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(kept) + suffix))
        log.critical(
            "buffer database %s is corrupt (%s); kept it as %s and started a new one. "
            "Readings in the old file were not delivered; docs/buffer.md says how to recover them.",
            self.path, exc, kept,
        )
        return kept

    def _transaction(self) -> "_Transaction":
        return _Transaction(self.conn)

    # -- seq reservation -----------------------------------------------------------------

    def _read_reservation(self) -> int:
        """The reservation file says ``<highest reserved seq> <database id>``.

        A reservation made for *another* database (one that was moved aside as corrupt, or
        deleted) means seqs up to it may have been handed out: numbering continues above
        it.  A reservation made for this very database changes nothing, so a unit killed
        between reserving and its first commit does not leave a false gap.
        """
        try:
            words = self._seq_file.read_text().split()
            reserved = int(words[0]) if words else 0
            owner = int(words[1]) if len(words) > 1 else None
        except FileNotFoundError:
            reserved, owner = 0, None
        except (OSError, ValueError) as exc:
            log.error("seq reservation file %s unreadable (%s); trusting the database counter", self._seq_file, exc)
            reserved, owner = 0, None
        next_seq = self._meta("next_seq")
        if reserved >= next_seq and owner != self._db_id:
            log.warning("buffer database %s is new: numbering continues after reserved seq %d", self.path, reserved)
            with self._transaction():
                self._set_meta("next_seq", reserved + 1)
            return 0
        return reserved if owner == self._db_id else 0

    def _reserve(self, upto: int) -> None:
        if upto <= self._reserved:
            return
        new = upto + SEQ_BLOCK
        tmp = self._seq_file.with_name(self._seq_file.name + ".tmp")
        with open(tmp, "w") as handle:
            handle.write(f"{new} {self._db_id}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._seq_file)
        dir_fd = os.open(self._seq_file.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._reserved = new

    # -- meta counters -------------------------------------------------------------------

    def _meta(self, key: str) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- appending -----------------------------------------------------------------------

    def append(self, reading: Reading) -> Reading:
        """Store ``reading`` durably; returns it with its ``seq``."""
        return self.append_many([reading])[0]

    def append_many(self, readings: Iterable[Reading]) -> list[Reading]:
        """Store several readings in one transaction (one fsync)."""
        items = list(readings)
        if not items:
            return []
        with self._lock:
            try:
                stored = self._insert(items)
            except (sqlite3.OperationalError, OSError) as exc:  # disk full, read-only, card gone
                raise BufferError(f"cannot write to the buffer {self.path}: {exc}") from None
            self._enforce_limit()
            return stored

    def _insert(self, items: list[Reading]) -> list[Reading]:
        if self._uncorrected:
            trusted = next((r for r in items if r.time_source != "unsynced" and r.boottime is not None), None)
            if trusted is not None:
                self._correct_times(Timestamp(trusted.time, trusted.time_source, trusted.boottime))
        next_seq = self._meta("next_seq")
        self._reserve(next_seq + len(items))
        stored = []
        with self._transaction():
            for offset, reading in enumerate(items):
                numbered = replace(reading, seq=next_seq + offset)
                unsynced = numbered.time_source == "unsynced" and numbered.boottime is not None
                self.conn.execute(
                    "INSERT INTO readings(seq, kind, time, body, boot, boottime) VALUES (?, ?, ?, ?, ?, ?)",
                    (numbered.seq, numbered.kind, numbered.to_dict()["time"], numbered.to_json(),
                     self._boot if unsynced else None, numbered.boottime if unsynced else None),
                )
                self._uncorrected = self._uncorrected or unsynced
                stored.append(numbered)
            self._set_meta("next_seq", next_seq + len(items))
        return stored

    # -- clock corrections ---------------------------------------------------------------

    def _count_unsynced(self, boot: str | None) -> int:
        where = "boot IS NOT NULL" if boot is None else "boot = ?"
        return self.conn.execute(
            f"SELECT count(*) FROM readings WHERE {where} AND delivered_at IS NULL", () if boot is None else (boot,)
        ).fetchone()[0]

    def correct_times(self, now: Timestamp) -> int:
        """Re-stamp this boot's pending ``unsynced`` readings from a trusted ``now``.

        Returns how many were corrected.  ``append`` does this by itself when a reading with
        a trusted time arrives; call it directly when a time source appears between readings.
        """
        with self._lock:
            if not self._uncorrected:
                return 0
            try:
                return self._correct_times(now)
            except (sqlite3.OperationalError, OSError) as exc:
                raise BufferError(f"cannot write to the buffer {self.path}: {exc}") from None

    def _correct_times(self, now: Timestamp) -> int:
        if not now.trusted or now.boottime is None:
            return 0
        rows = self.conn.execute(
            "SELECT seq, body, boottime FROM readings WHERE boot = ? AND delivered_at IS NULL ORDER BY seq",
            (self._boot,),
        ).fetchall()
        with self._transaction():
            for seq, body, taken_at in rows:
                moment = format_time(now.time - timedelta(seconds=now.boottime - taken_at))
                table = json.loads(body)
                table["time"], table["time_source"] = moment, now.source
                self.conn.execute(
                    "UPDATE readings SET time = ?, body = ?, boot = NULL, boottime = NULL WHERE seq = ?",
                    (moment, json.dumps(table, separators=(",", ":"), ensure_ascii=False), seq),
                )
        self._uncorrected = False
        if rows:
            log.info("clock: %d readings taken before the clock was trusted (seq %d-%d) re-stamped from %s time",
                     len(rows), rows[0][0], rows[-1][0], now.source)
        return len(rows)

    def _record_event(self, kind: str, message: str, data: dict) -> Reading:
        stamp = self.clock.now()
        event = Reading.taken(self.device, stamp, Event(kind, message, data))
        with self._lock:
            return self._insert([event])[0]

    # -- space ---------------------------------------------------------------------------

    def used_bytes(self) -> int:
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size

    def _enforce_limit(self) -> None:
        if self.used_bytes() <= self.max_bytes:
            return
        target = int(self.max_bytes * 0.9)
        pruned = self._delete_oldest("delivered_at IS NOT NULL", target)
        dropped = self._delete_oldest("delivered_at IS NULL", target, counter="dropped_total")
        if pruned:
            log.info("buffer full: pruned %d delivered readings", pruned)
        if dropped:
            total = self._meta("dropped_total")
            log.error(
                "buffer full (%d bytes): DROPPED %d undelivered readings, oldest first (%d dropped in all). "
                "Free space or raise buffer.max_size.", self.max_bytes, dropped, total,
            )
            self._record_event(
                "buffer_overflow",
                f"buffer full: dropped {dropped} undelivered readings, oldest first",
                {"dropped": dropped, "dropped_total": total, "max_bytes": self.max_bytes},
            )

    def _delete_oldest(self, which: str, target: int, counter: str | None = None) -> int:
        """Delete the oldest readings matching ``which`` until the buffer fits ``target``."""
        deleted = 0
        while self.used_bytes() > target:
            with self._transaction():
                n = self.conn.execute(
                    f"DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE {which} ORDER BY seq LIMIT ?)",
                    (_PRUNE_CHUNK,),
                ).rowcount
                if counter:  # in the same transaction: a drop is never unrecorded
                    self._set_meta(counter, self._meta(counter) + n)
            if n == 0:
                break
            deleted += n
        return deleted

    # -- leasing -------------------------------------------------------------------------

    def take(self, limit: int, max_bytes: int | None = None) -> Batch | None:
        """Lease up to ``limit`` of the oldest pending readings, or None if there are none.

        With ``max_bytes`` the batch's bodies add up to no more than that (but a batch
        always holds at least one reading).
        """
        with self._lock:
            while self._returned:
                batch = self._refresh(self._returned.popleft())
                if batch is not None:
                    self._leased[batch.first] = batch
                    return batch
            if not self._leased:
                self._cursor = 0
            rows = self.conn.execute(
                "SELECT seq, body FROM readings WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (self._cursor, limit),
            ).fetchall()
            if not rows:
                return None
            if max_bytes is not None:
                rows = _fit(rows, max_bytes)
            batch = Batch(tuple(r[0] for r in rows), tuple(r[1] for r in rows))
            self._cursor = batch.last
            self._leased[batch.first] = batch
            return batch

    def _refresh(self, batch: Batch) -> Batch | None:
        """The still-pending part of a returned batch (some may have been pruned since)."""
        marks = ",".join("?" * len(batch.seqs))
        rows = self.conn.execute(
            f"SELECT seq, body FROM readings WHERE delivered_at IS NULL AND seq IN ({marks}) ORDER BY seq",
            batch.seqs,
        ).fetchall()
        return Batch(tuple(r[0] for r in rows), tuple(r[1] for r in rows)) if rows else None

    def ack(self, batch: Batch) -> None:
        """The broker acknowledged ``batch``: mark it delivered."""
        with self._lock:
            self._leased.pop(batch.first, None)
            now = time.time()
            with self._transaction():
                marks = ",".join("?" * len(batch.seqs))
                n = self.conn.execute(
                    f"UPDATE readings SET delivered_at = ? WHERE delivered_at IS NULL AND seq IN ({marks})",
                    (now, *batch.seqs),
                ).rowcount
                self._set_meta("delivered_total", self._meta("delivered_total") + n)
            if now - self._last_prune > 60:
                self._last_prune = now
                self._prune_old_delivered(now)

    def nack(self, batch: Batch) -> None:
        """Delivery of ``batch`` failed: it goes back, ahead of newer readings."""
        with self._lock:
            if self._leased.pop(batch.first, None) is not None:
                self._returned.append(batch)
                self._returned = deque(sorted(self._returned, key=lambda b: b.first))

    def release_all(self) -> int:
        """Return every leased batch (the connection carrying them is gone)."""
        with self._lock:
            batches = list(self._leased.values())
            for batch in batches:
                self.nack(batch)
            return len(batches)

    def _prune_old_delivered(self, now: float) -> None:
        with self._transaction():
            self.conn.execute(
                "DELETE FROM readings WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (now - self.keep_delivered,),
            )

    # -- inspection ----------------------------------------------------------------------

    def pending_count(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT count(*) FROM readings WHERE delivered_at IS NULL").fetchone()[0]

    def stats(self) -> BufferStats:
        with self._lock:
            pending, oldest = self.conn.execute(
                "SELECT count(*), min(time) FROM readings WHERE delivered_at IS NULL"
            ).fetchone()
            kept, last_delivered = self.conn.execute(
                "SELECT count(*), max(delivered_at) FROM readings WHERE delivered_at IS NOT NULL").fetchone()
            return BufferStats(
                pending=pending,
                delivered_kept=kept,
                oldest_pending_time=oldest,
                last_seq=self._meta("next_seq") - 1,
                dropped_total=self._meta("dropped_total"),
                delivered_total=self._meta("delivered_total"),
                used_bytes=self.used_bytes(),
                max_bytes=self.max_bytes,
                last_delivered_at=_delivered_time(last_delivered),
            )

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> "ReadingBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fit(rows: list[tuple[int, str]], max_bytes: int) -> list[tuple[int, str]]:
    total = 0
    for count, (_, body) in enumerate(rows):
        total += len(body) + 1
        if total > max_bytes and count:
            return rows[:count]
    return rows


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def read_stats(path: Path | str) -> BufferStats:
    """Stats of a buffer file opened read-only (safe while the agent is writing it)."""
    path = Path(path)
    if not path.exists():
        raise BufferError(f"no buffer at {path} (has the agent run with this config?)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise BufferError(f"cannot open the buffer {path}: {exc}") from None
    try:
        pending, oldest = conn.execute("SELECT count(*), min(time) FROM readings WHERE delivered_at IS NULL").fetchone()
        kept, last_delivered = conn.execute(
            "SELECT count(*), max(delivered_at) FROM readings WHERE delivered_at IS NOT NULL").fetchone()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.Error as exc:
        raise BufferError(f"cannot read the buffer {path}: {exc}") from None
    finally:
        conn.close()
    return BufferStats(
        pending=pending, delivered_kept=kept, oldest_pending_time=oldest,
        last_seq=int(meta.get("next_seq", 1)) - 1, dropped_total=int(meta.get("dropped_total", 0)),
        delivered_total=int(meta.get("delivered_total", 0)), used_bytes=(pages - free) * size, max_bytes=0,
        last_delivered_at=_delivered_time(last_delivered),
    )


def _delivered_time(epoch: float | None) -> str | None:
    return None if epoch is None else format_time(datetime.fromtimestamp(epoch, timezone.utc))
