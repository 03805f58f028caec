"""IntakeLog: where a reading is made durable the moment it is taken, before SQLite files it.

A commit to SQLite costs the card the log pages it changed plus the log's index and, now and
then, a checkpoint; a unit that takes one reading every 10 s and commits each would write
some 12 KiB a reading.  The intake is a small file of fixed size, filled with zeros when it
is made, that readings are written into one after another: each append overwrites bytes
the file already has (so the file system changes no block map and no size), then flushes
the file's data once (``fdatasync``).  That is one page written and one flush a reading.
The buffer files the intake's readings into SQLite in one transaction every few minutes
(:mod:`agent.unit.buffer`), and then writes the intake again from its start.

Layout (all integers little-endian):

- a header of 16 bytes: ``BSINTAKE``, the format (1), seven zero bytes;
- records, one after another from offset 16::

      0xB7 | length (2) | crc32 (4) | seq (8) | body of `length` bytes

  where the body is ``kind`` and ``time`` (each a length byte and ASCII), ``boot`` (a length
  byte, 0 for none, and ASCII), ``boottime`` (an 8-byte float, NaN for none) and the reading's
  stored body (:mod:`agent.unit.stored_body`), and the CRC covers ``seq`` and the body.

A scan from the start keeps records while each is whole and its seq is higher than the one
before.  A record cut short by a power cut fails its CRC and ends the scan; it was never
reported stored.  The intake is written again from its start only after SQLite holds every
record in it (and its first record's mark is zeroed then), so what follows the newest
records is older ones already filed (lower seqs, or the middle of one): the scan stops there.
Which of the records found are already in SQLite, the buffer knows (``meta.intake_filed``).

Like SQLite's write-ahead log, this relies on a flushed sector surviving the next write to
the same sector ("powersafe overwrite"): what a decent card or any ext4 file system gives.
"""
from __future__ import annotations

import logging
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from agent.unit.durable_file import sync_folder

log = logging.getLogger(__name__)

INTAKE_BYTES = 64 * 1024  # ~450 readings of a moving unit, ~2 days of a fixed probe's
HEADER = b"BSINTAKE\x01" + bytes(7)
_MARK = 0xB7
_PREFIX = struct.Struct("<BHIq")  # mark, length, crc32, seq
_BOOTTIME = struct.Struct("<d")
_BLOCK = 4096


class IntakeError(Exception):
    """The intake file cannot be made, read or written."""


@dataclass(frozen=True)
class IntakeRecord:
    """One reading as the buffer files it: the values of its row in ``readings``."""

    seq: int
    kind: str
    time: str
    body: bytes  # as stored (agent.unit.stored_body)
    boot: str | None = None  # set for a reading whose time waits for a trusted clock
    boottime: float | None = None

    @property
    def row(self) -> tuple[int, str, str, bytes, str | None, float | None]:
        return self.seq, self.kind, self.time, self.body, self.boot, self.boottime


def _short(text: str | None) -> bytes:
    raw = (text or "").encode("ascii")
    if len(raw) > 255:
        raise ValueError(f"intake record field too long ({len(raw)} bytes): {text[:40]!r}")
    return bytes([len(raw)]) + raw


def frame_record(record: IntakeRecord) -> bytes:
    """``record`` as the intake holds it."""
    boottime = math.nan if record.boottime is None else record.boottime
    body = (_short(record.kind) + _short(record.time) + _short(record.boot) + _BOOTTIME.pack(boottime)
            + record.body)
    seq = struct.pack("<q", record.seq)
    return _PREFIX.pack(_MARK, len(body), zlib.crc32(seq + body), record.seq) + body


def parse_records(data: bytes, start: int = len(HEADER)) -> list[IntakeRecord]:
    """The whole records at the start of ``data`` (from ``start``), in order, up to the first
    that is damaged, cut short, or not newer than the one before.  Never raises."""
    records: list[IntakeRecord] = []
    offset = start
    last = None
    while offset + _PREFIX.size <= len(data):
        mark, length, crc, seq = _PREFIX.unpack_from(data, offset)
        body = data[offset + _PREFIX.size:offset + _PREFIX.size + length]
        if mark != _MARK or len(body) != length or zlib.crc32(data[offset + 7:offset + 15] + body) != crc:
            break
        if last is not None and seq <= last:
            break
        record = _record(seq, body)
        if record is None:
            break
        records.append(record)
        last = seq
        offset += _PREFIX.size + length
    return records


def _record(seq: int, body: bytes) -> IntakeRecord | None:
    fields: list[str] = []
    offset = 0
    try:
        for _ in range(3):
            n = body[offset]
            fields.append(body[offset + 1:offset + 1 + n].decode("ascii"))
            offset += 1 + n
        (boottime,) = _BOOTTIME.unpack_from(body, offset)
    except (IndexError, UnicodeDecodeError, struct.error):
        return None
    kind, time, boot = fields
    return IntakeRecord(seq, kind, time, body[offset + _BOOTTIME.size:], boot or None,
                        None if math.isnan(boottime) else boottime)


def read_intake(path: Path) -> list[IntakeRecord]:
    """The records in the intake at ``path`` (none when there is no intake); read-only."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise IntakeError(f"cannot read the intake {path}: {exc}") from None
    return parse_records(data) if data.startswith(HEADER) else []


class IntakeLog:
    """The intake file of one buffer, open for appending.

    ``records`` are those found when it was opened.  ``append`` returns once its records are
    on the card; ``restart`` makes the next append write from the start again (call it once
    every record appended is filed durably elsewhere).
    """

    def __init__(self, path: Path, size: int = INTAKE_BYTES) -> None:
        self.path = path
        self.size = size
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise IntakeError(f"cannot open the intake {path}: {exc}") from None
        try:
            self.records = self._prepare()
        except OSError as exc:
            os.close(self._fd)
            raise IntakeError(f"cannot prepare the intake {path}: {exc}") from None
        self._offset = len(HEADER)

    def _prepare(self) -> list[IntakeRecord]:
        """Read what the file holds, then make sure every byte of it exists on the card."""
        data = os.pread(self._fd, self.size + 1, 0)
        records = parse_records(data) if data.startswith(HEADER) else []
        if not data.startswith(HEADER):
            if data.strip(b"\0"):
                log.warning("intake %s: not an intake file; it is written anew", self.path)
            os.pwrite(self._fd, HEADER, 0)
        if len(data) < self.size:
            # Written, not fallocate()d: a block that was only reserved is converted on its
            # first write, and that is a change of the file's block map, to the journal.
            zeros = bytes(_BLOCK)
            offset = max(len(data), len(HEADER))
            while offset < self.size:
                offset += os.pwrite(self._fd, zeros[:min(_BLOCK - offset % _BLOCK, self.size - offset)], offset)
        os.fsync(self._fd)
        sync_folder(self.path.parent)
        # What was read sits in the page cache in large pieces; the appends then dirty one
        # such piece each, and the kernel counts it whole.  Dropped, the cache is refilled a
        # page at a time by the appends.
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return records

    @property
    def used(self) -> int:
        """Bytes written since the last restart, header included."""
        return self._offset

    def append(self, records: list[IntakeRecord]) -> bool:
        """Write ``records`` after the last ones and flush them (one ``fdatasync``); False,
        and nothing written, when they do not all fit."""
        data = b"".join(frame_record(r) for r in records)
        if self._offset + len(data) > self.size:
            return False
        try:
            written = os.pwrite(self._fd, data, self._offset)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
            os.fdatasync(self._fd)
        except OSError as exc:
            raise IntakeError(f"cannot write the intake {self.path}: {exc}") from None
        self._offset += len(data)
        return True

    def restart(self) -> None:
        """The next append writes from the start.  The first record is spoiled at once, without
        a flush of its own: a database that had to be started afresh before then is not handed
        readings it holds already (they would only be sent twice; the centre keeps one)."""
        self._offset = len(HEADER)
        try:
            os.pwrite(self._fd, b"\0", self._offset)
        except OSError as exc:
            log.debug("intake %s: cannot spoil the first record: %s", self.path, exc)

    def close(self) -> None:
        os.close(self._fd)

