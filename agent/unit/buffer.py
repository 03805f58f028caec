"""ReadingBuffer: the durable on-unit store every reading passes through.

- ``append`` assigns the reading its ``seq`` and returns only once it is on disk, so a
  reading that was taken survives ``kill -9`` and power loss: it is written to the
  buffer's intake (:mod:`agent.unit.intake`, one page and one ``fdatasync``), and filed into
  SQLite (WAL, ``synchronous=FULL``) with the readings and marks that waited with it, in one
  transaction every few minutes (``HOLD_S``) or when the intake fills up; at the latest when
  the buffer is opened again.  See ``docs/buffer.md``.
- ``take`` leases the oldest pending readings as a :class:`Batch`; ``ack`` marks them
  delivered (sent, and acknowledged by the broker); ``nack`` returns them, and they are
  served again before anything newer.  Leases live in memory, so after a crash every
  unacknowledged reading is pending again: at-least-once, deduplicated centrally on
  ``(device, seq)``.  The broker's acknowledgements and the centre's confirmations wait in
  memory with the intake's readings and are committed with them: a crash or a power cut can
  undo the latest marks, never a reading (one flush per reading in all, see
  ``docs/buffer.md``).  The buffer's own figures (``stats``, ``backlog``, ``readings``)
  and ``take`` see the readings and marks waiting as if they were written.
- A delivered reading stays the unit's responsibility until the centre *confirms* it
  (``apply_confirmation``, from the collectors' ``confirm`` messages): a broker's
  acknowledgement is flow control, not storage.  ``resend`` makes delivered but unconfirmed
  readings pending again; a confirmation that no longer covers a confirmed reading (the
  centre's database was restored from a backup) does the same.  Only confirmed readings are
  pruned by age, and their age is counted on the buffer's own odometer (seconds the buffer
  has been open), which no jump of the wall clock can move.
- ``seq`` is strictly increasing and never reused: the next one follows the highest stored
  (a counter in ``meta`` keeps it when the newest readings are deleted) and, in blocks, a
  small ``<file>.seq`` reservation file beside the database, so even a database that had to
  be moved aside as corrupt does not restart the numbering.
- Bodies are stored deflated (:mod:`agent.unit.stored_body`): eight readings to a 1 KiB page.
- Bounded: past ``max_bytes`` confirmed readings are pruned first, then the oldest
  unconfirmed ones; every such drop is added to a persisted counter and reported in an
  ``event`` reading (``buffer_overflow``) that names the seq ranges dropped.  Never silently.
- A database that fails SQLite's check at open, an empty (0-byte) file, or a file that is
  not a buffer is renamed aside (kept for forensics), logged as critical, and a fresh one
  started; an ``event`` reading (``buffer_corrupt``) records it with the seq where numbering
  continues, so the centre can explain the readings it will never get.
- A reading stamped ``unsynced`` keeps the boot id and ``CLOCK_BOOTTIME`` of its
  measurement.  The first reading with a trusted time (``gps``/``ntp``) in the same boot
  re-stamps every such reading still pending: ``time = trusted - (boottime now - boottime
  then)``, ``time_source`` the trusted source.  Readings of an earlier boot cannot be placed
  in time and stay ``unsynced``; readings already delivered stay as they were sent.
- :func:`read_stats` and :func:`read_readings` look into a buffer file (and its intake)
  read-only, safe while the agent writes it: its figures, and its readings each with its
  state.
"""
from __future__ import annotations

import heapq
import logging
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from agent.shared import seq_ranges
from agent.shared.clock import Clock, Timestamp, TimeKeeper, boot_id
from agent.shared.installed import doc
from agent.shared.migrations import Step
from agent.shared.protocol import Confirmation
from agent.shared.reading import (
    Event, Reading, ReadingError, format_time, format_time_epoch, reading_from_json,
)
from agent.unit import buffer_schema
from agent.unit.durable_file import replace_durably
from agent.unit.intake import INTAKE_BYTES, IntakeError, IntakeLog, IntakeRecord, read_intake
from agent.unit.stored_body import StoredBodyError, pack_body, unpack_body

log = logging.getLogger(__name__)

SEQ_BLOCK = 1000
PAGE_SIZE = 1024  # of a new buffer file
# Pending: not acknowledged by the broker.  A pending reading is never confirmed; saying so
# lets SQLite find pending readings through the one partial index, readings_unconfirmed.
PENDING = "confirmed_at IS NULL AND delivered_at IS NULL"
# Readings in the intake, the broker's acknowledgements and the centre's confirmations wait
# in memory and are committed to SQLite together, once the oldest has waited HOLD_S, HOLD_MAX
# readings' worth wait, or the intake is three quarters full.  Every commit costs the card
# log pages, the log's index and checkpoints whatever it holds: at a fixed probe's cadence
# this makes one commit of some 30 readings out of 30.  What a crash takes is the marks, so
# HOLD_S is also how many readings a crash may send again (docs/buffer.md).
HOLD_S = 600.0
HOLD_MAX = 1000
_PRUNE_CHUNK = 500
# An event's data stays under 4 KB: a drop that left more ranges is told in several events.
_RANGES_PER_EVENT = 100


class BufferError(RuntimeError):
    """The buffer cannot be used (disk full, read-only, unusable path)."""


def sqlite_files(path: Path) -> tuple[Path, Path, Path]:
    """The files a buffer at ``path`` occupies: the database, its ``-wal`` and its ``-shm``."""
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


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
    pending: int  # not yet acknowledged by the broker
    delivered_kept: int  # confirmed by the centre, kept on the unit for keep_delivered
    oldest_pending_time: str | None
    last_seq: int
    dropped_total: int
    delivered_total: int  # ever confirmed by the centre
    used_bytes: int
    max_bytes: int
    last_delivered_at: str | None = None  # when the centre last confirmed a reading still kept
    unconfirmed: int = 0  # acknowledged by the broker, not yet confirmed by the centre
    kept_from: int | None = None  # the lowest seq the unit still holds, in any state
    confirm_rev: int = 0  # rev of the last confirmation applied


ReadingState = Literal["pending", "delivered", "confirmed"]


@dataclass(frozen=True)
class _Mark:
    """The broker's acknowledgement of ``seqs`` at ``at`` (epoch seconds), not yet written."""

    seqs: tuple[int, ...]
    confirmed: bool
    at: float
    odo: float  # the buffer's odometer then


@dataclass(frozen=True)
class _Filing:
    """Readings in the intake, not yet in SQLite."""

    records: tuple[IntakeRecord, ...]


@dataclass(frozen=True)
class _Confirming:
    """A confirmation from the centre received at ``at``, not yet written."""

    confirmation: Confirmation
    at: float
    odo: float


_Waiting = _Mark | _Filing | _Confirming


@dataclass(frozen=True)
class StoredReading:
    """A reading as the buffer holds it (see :func:`read_readings`)."""

    seq: int
    kind: str
    # pending: the broker has not acknowledged it; delivered: acknowledged, not yet confirmed
    # by the centre; confirmed: the centre holds it, and it is kept for keep_delivered
    state: ReadingState
    body: str  # its JSON form, as it is sent


@dataclass(frozen=True)
class ConfirmOutcome:
    """What applying one confirmation changed in the buffer."""

    applied: bool  # False when it was not newer than the last one applied
    confirmed: int = 0  # readings newly confirmed
    reopened: list[tuple[int, int]] = field(default_factory=list)  # confirmed before, missing at the centre now


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
        this_boot: str | None = None,
        synchronous: str = "FULL",
        journal_mode: str = "WAL",
        intake_bytes: int = INTAKE_BYTES,
    ) -> None:
        """``this_boot`` is the id of the boot the buffer runs in (the kernel's when not given):
        readings stamped ``unsynced`` are re-stamped only in the boot that took them.
        ``intake_bytes`` 0: every reading is committed to SQLite by itself, no intake (the way
        the benchmarks compare against)."""
        self.path = Path(path)
        self.device = device
        self.max_bytes = max_bytes
        self.keep_delivered = keep_delivered
        self.clock = clock or TimeKeeper()
        self._boot = this_boot or boot_id()
        self._lock = threading.RLock()
        self._leased: dict[int, Batch] = {}
        self._leased_seqs: set[int] = set()  # not to be taken: leased, or acknowledged and not yet marked
        self._waiting: list[_Waiting] = []
        self._waiting_since = 0.0  # monotonic time of the oldest
        self._filing_fault: str | None = None
        self._last_prune = 0.0
        self._intake: IntakeLog | None = None
        self._last_confirmed_at: float | None = None  # in this run
        self._seq_file = self.path.with_name(self.path.name + ".seq")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufferError(f"cannot create the buffer folder {self.path.parent}: {exc}") from None
        corrupt_copy = None
        try:
            self._refuse_unusable_file()
            self._open(synchronous, journal_mode)
        except sqlite3.DatabaseError as exc:
            corrupt_copy = self._move_aside(exc)
            self._open(synchronous, journal_mode)
        existed = self._next_seq > 1
        if intake_bytes:
            self._open_intake(intake_bytes)
        earlier = self._count_unsynced(None) - self._count_unsynced(self._boot)
        if earlier:
            log.warning("%d readings waiting from an earlier boot were taken before the clock was "
                        "trusted; they keep time_source 'unsynced'", earlier)
        self._reserved = self._read_reservation()
        if corrupt_copy is not None:
            self._record_event(
                "buffer_corrupt",
                f"buffer database was unusable; moved aside to {corrupt_copy.name}, new buffer started",
                {"kept_as": str(corrupt_copy), "next_seq": self._next_seq},
            )
        elif self._renumbered and not existed:
            self._record_event(
                "buffer_replaced",
                "buffer database was missing; a new one was started and numbering continues",
                {"next_seq": self._next_seq},
            )

    # -- opening ------------------------------------------------------------------------

    def _refuse_unusable_file(self) -> None:
        """An empty file is what a power cut during creation (or a careless hand) leaves.

        SQLite would happily treat it as a new database, losing whatever its ``-wal`` held and
        hiding the jump in numbering; it is kept aside like a corrupt one instead.
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        except OSError as exc:
            raise sqlite3.DatabaseError(f"cannot read the file: {exc}") from None
        if size == 0:
            raise sqlite3.DatabaseError("the file is empty (0 bytes)")
        try:
            with open(self.path, "rb") as handle:
                header = handle.read(16)
        except OSError as exc:
            raise sqlite3.DatabaseError(f"cannot read the file: {exc}") from None
        if header != b"SQLite format 3\x00":
            raise sqlite3.DatabaseError("not an SQLite database")

    def _open(self, synchronous: str, journal_mode: str) -> None:
        fresh = not self.path.exists()
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise BufferError(f"cannot open the buffer {self.path}: {exc}") from None
        self.conn = conn
        try:
            # Checked before anything is written: a file kept aside is kept as it was found.
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not fresh and tables and "readings" not in tables:
                raise sqlite3.DatabaseError(f"not a blankspot buffer (tables: {', '.join(sorted(tables))})")
            if fresh:
                # A reading (~600 bytes) and its index entries fit 1 KiB pages: each commit then
                # writes a quarter of what 4 KiB pages cost the card (see docs/buffer.md).  A file
                # made with another page size keeps it.
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = self._synchronous_now = synchronous.upper()
            # Marks (delivered, confirmed, counters) are committed without a flush of their own:
            # their frames follow in the log and the next durable commit's flush covers them too.
            self._marks_synchronous = "NORMAL" if self._synchronous in ("FULL", "EXTRA") else self._synchronous
            conn.execute("PRAGMA journal_size_limit=8388608")
            with self._transaction():
                self._upgrade_schema()
            self._db_id = self._meta("db_id")
            self._confirm_rev = self._meta("confirm_rev")
            self._odometer_base = float(self._meta("odometer"))
            self._odometer_start = self.clock.monotonic()
            self._take_stock()
        except (sqlite3.DatabaseError, BufferError):
            conn.close()
            raise
        except OSError as exc:
            conn.close()
            raise sqlite3.DatabaseError(str(exc)) from None

    def _take_stock(self) -> None:
        self._next_seq = _next_seq(self.conn)
        self._uncorrected = self._count_unsynced(self._boot) > 0

    def _open_intake(self, size: int) -> None:
        """Open the intake and file what it holds that SQLite lacks: the readings of a run that
        ended before it could file them (a crash, a power cut, a card that could not be written)."""
        try:
            self._intake = IntakeLog(intake_path(self.path), size)
        except IntakeError as exc:
            self.conn.close()
            raise BufferError(str(exc)) from None
        filed = self._meta("intake_filed")
        found = tuple(r for r in self._intake.records if r.seq > filed)
        if found:
            self._wait(_Filing(found))
            try:
                with self._transaction():
                    pass
            except sqlite3.Error as exc:
                self.conn.close()
                raise BufferError(f"cannot file the intake's readings into the buffer {self.path}: {exc}") from None
            log.info("buffer %s: filed %d readings (seq %d-%d) from the intake, where the last run left them",
                     self.path, len(found), found[0].seq, found[-1].seq)
            self._take_stock()

    def _upgrade_schema(self) -> None:
        todo = _steps_lacking(self.conn, self.path)
        buffer_schema.upgrade(self.conn, todo)
        if todo and todo[0].version > 1:  # an existing file, not a new one
            for step in todo:
                log.info("buffer %s: applied schema step %d (%s)", self.path, step.version, step.description)
        initial = {"next_seq": 1, "dropped_total": 0, "delivered_total": 0, "db_id": secrets.randbits(62),
                   "confirm_rev": 0, "odometer": 0, "intake_filed": 0}
        for key, value in initial.items():
            self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _move_aside(self, exc: Exception) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        kept = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for src, dst in zip(sqlite_files(self.path), sqlite_files(kept)):
                if src.exists():
                    os.replace(src, dst)
        except OSError as move_exc:
            raise BufferError(f"buffer {self.path} is unusable ({exc}) and cannot be moved aside: {move_exc}") from None
        log.critical(
            "buffer database %s is unusable (%s); kept it as %s and started a new one. "
            "Readings in the old file were not delivered; %s says how to recover them.",
            self.path, exc, kept, doc("buffer.md"),
        )
        return kept

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[None]:
        """A write transaction, ``BEGIN IMMEDIATE`` to ``COMMIT`` (``ROLLBACK`` on error).

        ``durable`` ones are on the card when they commit, the others when the next durable
        one commits (a power cut in between undoes them, never half-applies them, and never
        undoes a durable one that followed).  Every transaction first writes what waits in
        memory (the intake's readings, marks, confirmations), in the order it came; it is
        forgotten only once the transaction has committed.  One that files the intake's
        readings is durable, and the intake is written from its start again after it.
        """
        filing = any(isinstance(op, _Filing) for op in self._waiting)
        level = self._synchronous if durable or filing else self._marks_synchronous
        if level != self._synchronous_now:
            self.conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous_now = level
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            written = self._write_waiting()
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self._waiting_written(written)
        if filing and self._intake is not None:
            self._intake.restart()

    @contextmanager
    def _with_waiting(self, strict: bool = False) -> Iterator[None]:
        """Reads and writes inside see what waits in memory as if written, and are undone.

        It is applied in a transaction that is rolled back: the figures are exact and
        reading them costs the card nothing.  Should that fail, the reads see the file alone,
        or, ``strict``, the error is raised.
        """
        if not self._waiting:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                self._write_waiting()
            except sqlite3.Error as exc:
                if strict:
                    raise
                log.debug("cannot apply what waits in memory for reading: %s", exc)
                self.conn.execute("ROLLBACK")
                self.conn.execute("BEGIN")
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def _wait(self, op: _Waiting) -> None:
        if not self._waiting:
            self._waiting_since = self.clock.monotonic()
        self._waiting.append(op)

    def _hold_over(self) -> bool:
        """True when what waits in memory is due to be committed (see ``HOLD_S``)."""
        if not self._waiting:
            return False
        waiting = sum(len(op.seqs) if isinstance(op, _Mark) else len(op.records) if isinstance(op, _Filing) else 1
                      for op in self._waiting)
        return (waiting >= HOLD_MAX or self.clock.monotonic() - self._waiting_since >= HOLD_S
                or (self._intake is not None and self._intake.used > self._intake.size * 3 // 4))

    def _commit_waiting(self) -> None:
        """Commit what waits, when it is due: durably if it holds readings, else with the next flush."""
        if self._hold_over():
            with self._transaction(durable=False):
                self._prune_due(time.time())

    # -- seq reservation -----------------------------------------------------------------

    def _read_reservation(self) -> int:
        """The reservation file says ``<highest reserved seq> <database id>``.

        A reservation made for *another* database (one that was moved aside as corrupt, or
        deleted) means seqs up to it may have been handed out: numbering continues above
        it.  A reservation made for this very database changes nothing, so a unit killed
        between reserving and its first commit does not leave a false gap.
        """
        self._renumbered = False
        try:
            words = self._seq_file.read_text().split()
            reserved = int(words[0]) if words else 0
            owner = int(words[1]) if len(words) > 1 else None
        except FileNotFoundError:
            reserved, owner = 0, None
        except (OSError, ValueError) as exc:
            log.error("seq reservation file %s unreadable (%s); trusting the database counter", self._seq_file, exc)
            reserved, owner = 0, None
        if reserved >= self._next_seq and owner != self._db_id:
            log.warning("buffer database %s is new: numbering continues after reserved seq %d", self.path, reserved)
            with self._transaction():
                self._set_meta("next_seq", reserved + 1)
            self._next_seq = reserved + 1
            self._renumbered = True
            return 0
        return reserved if owner == self._db_id else 0

    def _reserve(self, upto: int) -> None:
        if upto <= self._reserved:
            return
        new = upto + SEQ_BLOCK
        replace_durably(self._seq_file, f"{new} {self._db_id}\n")
        self._reserved = new

    # -- meta counters -------------------------------------------------------------------

    def _meta(self, key: str) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def odometer(self) -> float:
        """Seconds this buffer has been open, over all runs: the clock that ages confirmed readings."""
        return self._odometer_base + (self.clock.monotonic() - self._odometer_start)

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
        next_seq = self._next_seq
        self._reserve(next_seq + len(items))
        stored, records = [], []
        for offset, reading in enumerate(items):
            numbered = replace(reading.at_precision(), seq=next_seq + offset)
            unsynced = numbered.time_source == "unsynced" and numbered.boottime is not None
            records.append(IntakeRecord(numbered.seq, numbered.kind, format_time(numbered.time),
                                        pack_body(numbered.to_json()), self._boot if unsynced else None,
                                        numbered.boottime if unsynced else None))
            stored.append(numbered)
        try:
            in_intake = self._intake is not None and self._intake.append(records)
        except IntakeError as exc:
            raise BufferError(str(exc)) from None
        if in_intake:
            self._wait(_Filing(tuple(records)))
            self._filed_later()
        else:  # no intake, or more than it has room for
            with self._transaction():
                self._prune_due(time.time())
                _insert_rows(self.conn, records)
        self._uncorrected = self._uncorrected or any(r.boot is not None for r in records)
        # Not written to meta: the highest seq stored says it (see _next_seq), unless the
        # newest readings are deleted (_deleted keeps it then).
        self._next_seq = next_seq + len(items)
        return stored

    def _filed_later(self) -> None:
        """After an append to the intake: file what waits if it is due.  The readings are on
        the card already, so a failure here is told, not raised; they are filed later (at the
        latest when the buffer is opened again), and the intake takes readings until it is
        full."""
        try:
            self._commit_waiting()
        except (sqlite3.OperationalError, OSError) as exc:
            if self._filing_fault is None:
                log.error("buffer %s: cannot file the intake's readings (%s); they are safe in %s and "
                          "are filed once the buffer can be written", self.path, exc, intake_path(self.path))
            self._filing_fault = str(exc)
            return
        if self._filing_fault is not None and not self._waiting:
            log.warning("buffer %s: the intake's readings are filed again", self.path)
            self._filing_fault = None

    # -- clock corrections ---------------------------------------------------------------

    def _count_unsynced(self, boot: str | None) -> int:
        where = "boot IS NOT NULL" if boot is None else "boot = ?"
        return self.conn.execute(
            f"SELECT count(*) FROM readings WHERE {where} AND {PENDING}", () if boot is None else (boot,)
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
        corrected = 0
        with self._transaction():  # which readings are pending is read after the marks waiting are written
            rows = self.conn.execute(
                f"SELECT seq, body, boottime FROM readings WHERE boot = ? AND {PENDING} ORDER BY seq",
                (self._boot,),
            ).fetchall()
            for seq, body, taken_at in rows:
                moment = now.time - timedelta(seconds=now.boottime - taken_at)
                try:
                    stamped = replace(reading_from_json(unpack_body(body)), time=moment, time_source=now.source)
                except (ReadingError, StoredBodyError) as exc:  # sent as it is: the centre judges it
                    log.error("clock: reading seq %d cannot be re-stamped and keeps its unsynced time: %s", seq, exc)
                    self.conn.execute("UPDATE readings SET boot = NULL, boottime = NULL WHERE seq = ?", (seq,))
                    continue
                self.conn.execute(
                    "UPDATE readings SET time = ?, body = ?, boot = NULL, boottime = NULL WHERE seq = ?",
                    (format_time(stamped.time), pack_body(stamped.to_json()), seq),
                )
                corrected += 1
        self._uncorrected = False
        if rows:
            log.info("clock: %d readings taken before the clock was trusted (seq %d-%d) re-stamped from %s time",
                     corrected, rows[0][0], rows[-1][0], now.source)
        return corrected

    def _record_event(self, kind: str, message: str, data: dict) -> Reading:
        stamp = self.clock.now()
        event = Reading.taken(self.device, stamp, Event(kind, message, data))
        with self._lock:
            return self._insert([event])[0]

    # -- space ---------------------------------------------------------------------------

    def used_bytes(self) -> int:
        return _used_bytes(self.conn)

    def _enforce_limit(self) -> None:
        if self.used_bytes() <= self.max_bytes:
            return
        target = int(self.max_bytes * 0.9)
        pruned = self._delete_oldest("confirmed_at IS NOT NULL", target)
        # Acknowledged by the broker but not confirmed: the centre probably holds them, so they
        # go before readings that never left the unit.  Either way a drop, counted and named.
        dropped = self._delete_oldest("confirmed_at IS NULL AND delivered_at IS NOT NULL", target, count=True)
        dropped += self._delete_oldest(PENDING, target, count=True)
        if pruned:
            log.info("buffer full: pruned %d confirmed readings", len(pruned))
        if dropped:
            total = self._meta("dropped_total")
            ranges = seq_ranges.from_seqs(dropped)
            log.error(
                "buffer full (%d bytes): DROPPED %d unconfirmed readings, oldest first (seq %s; %d dropped in all). "
                "Free space or raise buffer.max_size.", self.max_bytes, len(dropped), seq_ranges.text(ranges), total,
            )
            for start in range(0, len(ranges), _RANGES_PER_EVENT):
                part = ranges[start:start + _RANGES_PER_EVENT]
                self._record_event(
                    "buffer_overflow",
                    f"buffer full: dropped {seq_ranges.count(part)} unconfirmed readings, oldest first",
                    {"dropped": seq_ranges.count(part), "dropped_total": total, "max_bytes": self.max_bytes,
                     "ranges": [list(r) for r in part]},
                )

    def _delete_oldest(self, which: str, target: int, count: bool = False) -> list[int]:
        """Delete the oldest readings matching ``which`` until the buffer fits ``target``."""
        deleted: list[int] = []
        while self.used_bytes() > target:
            with self._transaction():
                seqs = [row[0] for row in self.conn.execute(
                    f"DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE {which} ORDER BY seq LIMIT ?) "
                    "RETURNING seq",
                    (_PRUNE_CHUNK,),
                ).fetchall()]
                if count and seqs:  # in the same transaction: a drop is never unrecorded
                    self._set_meta("dropped_total", self._meta("dropped_total") + len(seqs))
                self._deleted(seqs)
            if not seqs:
                break
            deleted.extend(seqs)
        return deleted

    def _deleted(self, seqs: list[int]) -> None:
        """Call in the transaction that deleted ``seqs``."""
        if seqs and max(seqs) == self._next_seq - 1:  # the newest no longer says where numbering goes on
            self._set_meta("next_seq", self._next_seq)
        gone = set(seqs) & self._leased_seqs
        if gone:
            self._leased_seqs -= gone

    # -- leasing -------------------------------------------------------------------------

    def take(self, limit: int, max_bytes: int | None = None) -> Batch | None:
        """Lease up to ``limit`` of the oldest pending readings, or None if there are none.

        With ``max_bytes`` the batch's bodies add up to no more than that (but a batch
        always holds at least one reading).  Readings leased already are skipped, so a
        returned or re-opened reading is served before anything newer.
        """
        with self._lock:
            with self._with_waiting():
                rows = self.conn.execute(
                    f"SELECT seq, body FROM readings WHERE {PENDING} ORDER BY seq LIMIT ?",
                    (limit + len(self._leased_seqs),),
                ).fetchall()
            rows = [(seq, self._unpacked(seq, body)) for seq, body in rows if seq not in self._leased_seqs][:limit]
            if not rows:
                return None
            if max_bytes is not None:
                rows = _fit(rows, max_bytes)
            batch = Batch(tuple(r[0] for r in rows), tuple(r[1] for r in rows))
            self._leased[batch.first] = batch
            self._leased_seqs.update(batch.seqs)
            return batch

    def _unpacked(self, seq: int, body: str | bytes) -> str:
        return _unpack_from(self.path, seq, body)

    def _in_flight(self) -> set[int]:
        """The seqs of the batches leased and not yet acknowledged."""
        return {seq for batch in self._leased.values() for seq in batch.seqs}

    def _unlease(self, batch: Batch) -> bool:
        if self._leased.pop(batch.first, None) is None:
            return False
        self._leased_seqs.difference_update(batch.seqs)
        return True

    def ack(self, batch: Batch, confirmed: bool = False) -> None:
        """The broker acknowledged ``batch``: mark it delivered (and ``confirmed`` too, when the
        broker's acknowledgement is all the unit will ever get).

        The mark waits in memory for the buffer's next commit (see ``HOLD_S``); until then
        the batch is not taken again, and the buffer's figures count it as marked.  Raises
        :class:`BufferError` when what is due to be written cannot be; the batch then stays
        leased, so it is not sent again, and ``ack`` may be called again later.
        """
        with self._lock:
            now = time.time()
            self._wait(_Mark(batch.seqs, confirmed, now, self.odometer()))
            if confirmed:
                self._last_confirmed_at = now
            leased = self._leased.pop(batch.first, None)
            self._leased_seqs.update(batch.seqs)
            try:
                self._commit_waiting()
            except (sqlite3.OperationalError, OSError) as exc:
                self._waiting.pop()
                if leased is not None:
                    self._leased[batch.first] = leased
                raise BufferError(f"cannot write to the buffer {self.path}: {exc}") from None

    def _write_waiting(self) -> int:
        """Write what waits in memory (in the transaction open), in order; returns how many."""
        filed = 0
        for op in self._waiting:
            if isinstance(op, _Filing):
                _insert_rows(self.conn, op.records)
                filed = max(filed, op.records[-1].seq)
            elif isinstance(op, _Confirming):
                self._confirm(op.confirmation, op.at, op.odo)
            elif op.confirmed:
                where = ",".join("?" * len(op.seqs))
                n = self.conn.execute(
                    f"UPDATE readings SET delivered_at = coalesce(delivered_at, ?), confirmed_at = ?, "
                    f"confirmed_odo = ? WHERE confirmed_at IS NULL AND seq IN ({where})",
                    (op.at, op.at, op.odo, *op.seqs),
                ).rowcount
                self._count_confirmed(n)
            else:
                self.conn.execute(
                    f"UPDATE readings SET delivered_at = ? WHERE delivered_at IS NULL "
                    f"AND seq IN ({','.join('?' * len(op.seqs))})",
                    (op.at, *op.seqs),
                )
        if filed and filed > self._meta("intake_filed"):
            self._set_meta("intake_filed", filed)
        return len(self._waiting)

    def _waiting_written(self, n: int) -> None:
        """The first ``n`` things waiting are committed: the readings of their marks may be
        taken again once pending."""
        in_flight = self._in_flight()
        for op in self._waiting[:n]:
            if isinstance(op, _Mark):
                self._leased_seqs.difference_update(set(op.seqs) - in_flight)
        del self._waiting[:n]

    def _count_confirmed(self, n: int) -> None:
        if n:
            self._set_meta("delivered_total", self._meta("delivered_total") + n)
        self._set_meta("odometer", int(self.odometer()))

    def nack(self, batch: Batch) -> None:
        """Delivery of ``batch`` failed: it goes back, ahead of newer readings."""
        with self._lock:
            self._unlease(batch)

    def release_all(self, keep: Iterable[Batch] = ()) -> int:
        """Return every leased batch but ``keep`` (the connection carrying them is gone)."""
        with self._lock:
            kept = {batch.first for batch in keep}
            batches = [batch for first, batch in self._leased.items() if first not in kept]
            for batch in batches:
                self._unlease(batch)
            return len(batches)

    # -- confirmation --------------------------------------------------------------------

    def apply_confirmation(self, confirmation: Confirmation) -> ConfirmOutcome:
        """Mark what the centre confirms; re-open confirmed readings it no longer holds.

        Applied only when newer (``rev``) than the last confirmation applied, so a stale
        one (two collectors publishing out of order, a retained copy) changes nothing.
        Raises :class:`BufferError` when the buffer cannot be written.
        """
        c = confirmation
        with self._lock:
            if c.rev <= self._confirm_rev:
                return ConfirmOutcome(False)
            now, odo = time.time(), self.odometer()
            try:
                # What it changes is worked out now; it is written with what waits.
                with self._with_waiting(strict=True):
                    confirmed, reopened = self._confirm(c, now, odo)
                self._wait(_Confirming(c, now, odo))
                self._confirm_rev = c.rev
                # Re-opened, they may be taken again, although the acknowledgement it undoes waits still.
                self._leased_seqs.difference_update(set(reopened) - self._in_flight())
                if confirmed:
                    self._last_confirmed_at = now
                self._commit_waiting()
            except (sqlite3.OperationalError, OSError) as exc:
                if self._waiting and isinstance(self._waiting[-1], _Confirming) and self._waiting[-1].confirmation is c:
                    self._waiting.pop()
                    self._confirm_rev = self._meta("confirm_rev")
                raise BufferError(f"cannot write to the buffer {self.path}: {exc}") from None
            ranges = seq_ranges.from_seqs(reopened)
            if reopened:
                log.warning("the centre no longer holds %d readings it had confirmed (seq %s): sending them again",
                            len(reopened), seq_ranges.text(ranges))
            return ConfirmOutcome(True, confirmed, ranges)

    def _confirm(self, c: Confirmation, at: float, odo: float) -> tuple[int, list[int]]:
        """Apply ``c`` (in the transaction open): how many readings it confirms, and the seqs
        of those confirmed before that it no longer covers."""
        covered, params = _covered_sql(c)
        confirmed = self.conn.execute(
            "UPDATE readings SET delivered_at = coalesce(delivered_at, ?), confirmed_at = ?, "
            f"confirmed_odo = ? WHERE confirmed_at IS NULL AND {covered}",
            (at, at, odo, *params),
        ).rowcount
        reopened = [row[0] for row in self.conn.execute(
            "UPDATE readings SET confirmed_at = NULL, confirmed_odo = NULL, delivered_at = NULL "
            f"WHERE confirmed_at IS NOT NULL AND NOT ({covered}) RETURNING seq",
            params,
        ).fetchall()]
        # Re-opened readings leave the count, so a reading confirmed twice counts once.
        self._count_confirmed(confirmed - len(reopened))
        self._set_meta("confirm_rev", c.rev)
        return confirmed, reopened

    def resend(self, seqs: Iterable[int]) -> int:
        """Make delivered but unconfirmed readings pending again; returns how many."""
        items = sorted(set(seqs))
        if not items:
            return 0
        with self._lock:
            n = 0
            try:
                with self._transaction(durable=False):
                    for start in range(0, len(items), 500):
                        part = items[start:start + 500]
                        n += self.conn.execute(
                            f"UPDATE readings SET delivered_at = NULL WHERE confirmed_at IS NULL "
                            f"AND delivered_at IS NOT NULL AND seq IN ({','.join('?' * len(part))})",
                            part,
                        ).rowcount
            except (sqlite3.OperationalError, OSError) as exc:
                raise BufferError(f"cannot write to the buffer {self.path}: {exc}") from None
            return n

    def awaiting_confirmation(self) -> list[int]:
        """Seqs acknowledged by the broker and not yet confirmed by the centre, ascending."""
        with self._lock, self._with_waiting():
            return [row[0] for row in self.conn.execute(
                "SELECT seq FROM readings WHERE confirmed_at IS NULL AND delivered_at IS NOT NULL ORDER BY seq")]

    def _prune_due(self, now: float) -> None:
        """Delete confirmed readings older than ``keep_delivered``, once a minute at most; call
        it in a transaction (an append's: the prune rides on the reading's commit)."""
        if now - self._last_prune <= 60:
            return
        self._last_prune = now
        self._deleted([row[0] for row in self.conn.execute(
            "DELETE FROM readings WHERE confirmed_at IS NOT NULL AND confirmed_odo < ? RETURNING seq",
            (self.odometer() - self.keep_delivered,),
        )])

    def _prune_now_and_then(self, now: float) -> None:
        try:
            with self._transaction(durable=False):
                self._prune_due(now)
        except (sqlite3.OperationalError, OSError) as exc:
            log.debug("cannot prune old confirmed readings: %s", exc)

    # -- inspection ----------------------------------------------------------------------

    def pending_count(self) -> int:
        """Readings the broker has not acknowledged yet."""
        with self._lock, self._with_waiting():
            return self.conn.execute(f"SELECT count(*) FROM readings WHERE {PENDING}").fetchone()[0]

    def stats(self) -> BufferStats:
        """The buffer's figures; :func:`read_stats` gives the same from the file alone."""
        with self._lock, self._with_waiting():
            return _stats(self.conn, self.max_bytes)

    def backlog(self) -> dict[str, Any]:
        """The figures of :class:`BufferStats` that readings, acknowledgements and
        confirmations change (pending, oldest_pending_time, unconfirmed, last_seq, kept_from,
        delivered_total, last_delivered_at), what waits in memory included; cheap enough to ask
        every second (indexes only), so the agent's state file can tell ``blankspot status``
        what the file does not say yet."""
        with self._lock, self._with_waiting():
            figures = _backlog(self.conn)
            figures["delivered_total"] = self._meta("delivered_total")
            kept_from = self.conn.execute("SELECT min(seq) FROM readings").fetchone()[0]
        figures["last_seq"] = self._next_seq - 1
        figures["kept_from"] = self._next_seq if kept_from is None else kept_from
        if self._last_confirmed_at is not None:
            figures["last_delivered_at"] = format_time_epoch(self._last_confirmed_at)
        return figures

    def readings(self) -> list[StoredReading]:
        """The readings held, oldest first, each with its state, as :func:`read_readings` gives
        them from the file once the marks waiting in memory are written."""
        with self._lock, self._with_waiting():
            return list(_stored_readings(self.conn, self.path))

    def close(self) -> None:
        with self._lock:
            try:
                with self._transaction():  # what waits, durable: not sent again after a reboot
                    self._set_meta("odometer", int(self.odometer()))
            except sqlite3.Error as exc:
                log.warning("buffer %s: the last marks could not be written (%s); those readings "
                            "will be sent again (readings in the intake are filed at the next start)", self.path, exc)
            if self._intake is not None:
                self._intake.close()
            self.conn.close()

    def __enter__(self) -> "ReadingBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def intake_path(path: Path) -> Path:
    """The intake of the buffer at ``path`` (:mod:`agent.unit.intake`)."""
    return path.with_name(path.name + ".intake")


def _insert_rows(conn: sqlite3.Connection, records: Iterable[IntakeRecord]) -> None:
    # OR IGNORE: a reading the intake still holds after the buffer filed it (a copy kept
    # through a power cut) is stored once.
    conn.executemany("INSERT OR IGNORE INTO readings(seq, kind, time, body, boot, boottime) VALUES (?, ?, ?, ?, ?, ?)",
                     [r.row for r in records])


def _covered_sql(c: Confirmation) -> tuple[str, list[int]]:
    """An SQL condition on ``seq`` true for what ``c`` covers, and its parameters."""
    condition = "(seq <= ? OR (seq <= ?"
    params = [c.upto, c.top]
    for first, last in c.holes:
        condition += " AND seq NOT BETWEEN ? AND ?"
        params += [first, last]
    return condition + "))", params


def _fit(rows: list[tuple[int, str]], max_bytes: int) -> list[tuple[int, str]]:
    total = 0
    for count, (_, body) in enumerate(rows):
        total += len(body) + 1
        if total > max_bytes and count:
            return rows[:count]
    return rows


def _backlog(conn: sqlite3.Connection) -> dict[str, Any]:
    pending, oldest = conn.execute(f"SELECT count(*), min(time) FROM readings WHERE {PENDING}").fetchone()
    unconfirmed = conn.execute(
        "SELECT count(*) FROM readings WHERE confirmed_at IS NULL AND delivered_at IS NOT NULL").fetchone()[0]
    return {"pending": pending, "oldest_pending_time": oldest, "unconfirmed": unconfirmed}


def _stats(conn: sqlite3.Connection, max_bytes: int) -> BufferStats:
    """The buffer's figures; the same queries for the agent and for a read-only look."""
    backlog = _backlog(conn)
    kept, last_confirmed = conn.execute(
        "SELECT count(*), max(confirmed_at) FROM readings WHERE confirmed_at IS NOT NULL").fetchone()
    kept_from = conn.execute("SELECT min(seq) FROM readings").fetchone()[0]
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    last_seq = _next_seq(conn) - 1
    return BufferStats(
        pending=backlog["pending"], delivered_kept=kept, oldest_pending_time=backlog["oldest_pending_time"],
        last_seq=last_seq,
        dropped_total=int(meta.get("dropped_total", 0)), delivered_total=int(meta.get("delivered_total", 0)),
        used_bytes=_used_bytes(conn), max_bytes=max_bytes,
        last_delivered_at=None if last_confirmed is None else format_time_epoch(last_confirmed),
        unconfirmed=backlog["unconfirmed"], kept_from=kept_from if kept_from is not None else last_seq + 1,
        confirm_rev=int(meta.get("confirm_rev", 0)),
    )


def _next_seq(conn: sqlite3.Connection) -> int:
    """The seq the next reading gets: above every seq stored, and above ``meta.next_seq``,
    which is written only when the newest readings are deleted (or a new database continues
    another's numbering)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
    top = conn.execute("SELECT max(seq) FROM readings").fetchone()[0]
    return max(int(row[0]) if row else 1, (top or 0) + 1)


def _used_bytes(conn: sqlite3.Connection) -> int:
    """The bytes of the pages in use: what ``max_bytes`` bounds."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size


def read_stats(path: Path | str) -> BufferStats:
    """Stats of a buffer file and its intake, opened read-only (safe while the agent is writing it)."""
    with _read_only(path) as conn:
        stats = _stats(conn, 0)
        unfiled = _unfiled(conn, Path(path))
    if not unfiled:
        return stats
    return replace(
        stats, pending=stats.pending + len(unfiled),
        oldest_pending_time=min(t for t in (stats.oldest_pending_time, unfiled[0].time) if t is not None),
        last_seq=max(stats.last_seq, unfiled[-1].seq), kept_from=min(stats.kept_from or unfiled[0].seq, unfiled[0].seq))


def read_readings(path: Path | str) -> Iterator[StoredReading]:
    """The readings a buffer file holds, oldest first, each with its state.

    The file is opened read-only, so this is safe while the agent is writing it; the readings
    are one consistent view of the file, and the file is closed once they are all read.  A file
    that cannot be read raises :class:`BufferError`, as :func:`read_stats` does.
    """
    with _read_only(path) as conn:
        unfiled = [StoredReading(r.seq, r.kind, "pending", _unpack_from(path, r.seq, r.body))
                   for r in _unfiled(conn, Path(path))]
        yield from heapq.merge(_stored_readings(conn, Path(path)), unfiled, key=lambda stored: stored.seq)


def read_stored_bodies(path: Path | str, pending_only: bool = False) -> Iterator[tuple[int, str | bytes]]:
    """``(seq, stored body)`` of each reading in a buffer file, oldest first, as stored
    (:func:`agent.unit.stored_body.unpack_body` reads a body).

    Unlike :func:`read_readings`, any layout will do: a buffer of any blankspot version, or
    what ``sqlite3``'s ``.dump`` or ``.recover`` saved of a damaged one.  ``pending_only``:
    the readings the broker never acknowledged.
    """
    with _read_only(path, any_layout=True) as conn:
        where = " WHERE delivered_at IS NULL" if pending_only else ""
        unfiled = [(r.seq, r.body) for r in _unfiled(conn, Path(path))]
        yield from heapq.merge(conn.execute(f"SELECT seq, body FROM readings{where} ORDER BY seq"), unfiled,
                               key=lambda row: row[0])


def _unfiled(conn: sqlite3.Connection, path: Path) -> list[IntakeRecord]:
    """The readings in the intake of the buffer at ``path`` that its database lacks, oldest first."""
    try:
        records = read_intake(intake_path(path))
    except IntakeError as exc:
        raise BufferError(str(exc)) from None
    if not records:
        return []
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'intake_filed'").fetchone()
    except sqlite3.Error:  # a layout without it: a file saved from a damaged buffer
        row = None
    filed = int(row[0]) if row else 0
    return [r for r in records if r.seq > filed
            and conn.execute("SELECT 1 FROM readings WHERE seq = ?", (r.seq,)).fetchone() is None]


def _stored_readings(conn: sqlite3.Connection, path: Path) -> Iterator[StoredReading]:
    for seq, kind, state, body in conn.execute(
            "SELECT seq, kind, CASE WHEN confirmed_at IS NOT NULL THEN 'confirmed' "
            "WHEN delivered_at IS NOT NULL THEN 'delivered' ELSE 'pending' END, body FROM readings ORDER BY seq"):
        yield StoredReading(seq, kind, state, _unpack_from(path, seq, body))


def _unpack_from(path: Path | str, seq: int, body: str | bytes) -> str:
    try:
        return unpack_body(body)
    except StoredBodyError as exc:
        raise BufferError(f"buffer {path}: reading seq {seq}: {exc}") from None


def _steps_lacking(conn: sqlite3.Connection, path: Path) -> tuple[Step, ...]:
    """The schema steps the buffer file on ``conn`` lacks; a file newer than this code is refused."""
    try:
        return buffer_schema.pending(conn)
    except ValueError as exc:  # never written, nor read, with the wrong idea of its columns
        raise BufferError(f"buffer {path}: {exc}") from None


@contextmanager
def _read_only(path: Path | str, any_layout: bool = False) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a buffer file (of the current layout unless ``any_layout``);
    every failure a :class:`BufferError`."""
    path = Path(path)
    if not path.exists():
        raise BufferError(f"no buffer at {path} (has the agent run with this config?)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise BufferError(f"cannot open the buffer {path}: {exc}") from None
    try:
        if not any_layout and _steps_lacking(conn, path):
            raise BufferError(f"buffer {path} was written by an older blankspot: start the agent once to upgrade it")
        yield conn
    except sqlite3.Error as exc:
        raise BufferError(f"cannot read the buffer {path}: {exc}") from None
    finally:
        conn.close()
