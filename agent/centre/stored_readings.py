"""Stored readings for the commands that draw and report: a bad row is skipped, never fatal.

``blankspot report``, ``map`` and ``export`` read every stored reading, several times over
(home operators, the grid, tracks, segments, tags).  A row whose body no longer decodes
(edited by hand, damaged, or written by an older blankspot, such as a reading of year 1
stored as ``"1-01-01T..."``) must not cost the whole map.  :class:`StoredReadings` skips it,
counts it once however many passes meet it, and remembers the first few with the reason,
so that :meth:`StoredReadings.summary` can name them in one line::

    2 stored readings skipped: unreadable (first: boat-1#7: time: expected UTC ISO 8601 ...; also boat-1#9)

It reads raw rows, ``(device, seq, body)`` triples ordered by device then seq, where
``body`` is the reading's JSON text (SQLite) or the already decoded object (PostgreSQL's
jsonb), as ``Store.iter_rows`` gives them.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.centre.store.base import Store
from agent.shared.reading import Reading, ReadingError, reading_from_dict

log = logging.getLogger(__name__)

Row = tuple[str, int, Any]  # device, seq, body
RowSource = Callable[[str | None, str | None], Iterable[Row]]  # (device, kind) -> rows

NAMED = 5  # skipped rows named in the summary; the rest are only counted


@dataclass(frozen=True)
class SkippedRow:
    device: str
    seq: int
    reason: str

    @property
    def key(self) -> str:
        return f"{self.device}#{self.seq}"

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


def decode_row(device: str, seq: int, body: Any) -> Reading:
    """The reading a row holds; :class:`ReadingError` says why there is none."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReadingError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise ReadingError(f"body is not JSON: {exc}") from None
    reading = reading_from_dict(body)
    # The row's columns are the dedup key the centre trusts; a body that claims another
    # reading would put its figures under the wrong unit.
    if (reading.device, reading.seq) != (device, seq):
        raise ReadingError(f"body is reading {reading.device}#{reading.seq}, not this row's")
    return reading


class StoredReadings:
    """Readings from a row source, bad rows skipped, counted and remembered (see the module docstring)."""

    def __init__(self, rows: RowSource, named: int = NAMED) -> None:
        self._rows = rows
        self._named = named
        self._skipped: set[tuple[str, int]] = set()
        self.first: list[SkippedRow] = []  # the first ``named`` rows skipped, in the order met

    @classmethod
    def of(cls, store: Store) -> "StoredReadings":
        """The readings of ``store``."""
        return cls(store.iter_rows)

    def iter_readings(self, device: str | None = None, kind: str | None = None) -> Iterator[Reading]:
        """Like ``Store.iter_readings``: ordered by device then seq, but a bad row is skipped."""
        return self.decode(self._rows(device, kind))

    def decode(self, rows: Iterable[Row]) -> Iterator[Reading]:
        """The readings of raw ``(device, seq, body)`` rows, skipping the rows that do not decode."""
        for device, seq, body in rows:
            try:
                yield decode_row(device, seq, body)
            except ReadingError as exc:
                self._skip(SkippedRow(device, seq, str(exc)))

    def _skip(self, row: SkippedRow) -> None:
        if (row.device, row.seq) in self._skipped:  # met again by a later pass
            return
        self._skipped.add((row.device, row.seq))
        log.debug("stored reading skipped: %s", row)
        if len(self.first) < self._named:
            self.first.append(row)

    @property
    def skipped(self) -> int:
        """Rows skipped so far, each counted once."""
        return len(self._skipped)

    def summary(self) -> str | None:
        """One line naming what was skipped, or None when nothing was."""
        count = self.skipped
        if not count:
            return None
        if count == 1:
            return f"1 stored reading skipped: unreadable ({self.first[0]})"
        others = ", ".join(row.key for row in self.first[1:]) + (", ..." if count > len(self.first) else "")
        return f"{count} stored readings skipped: unreadable (first: {self.first[0]}; also {others})"
