"""Stored readings for the commands that draw and report: a bad row is skipped, never fatal.

``blankspot report``, ``map`` and ``export`` read every stored reading (in one pass,
``agent.centre.survey``).  A row whose body no longer decodes (edited by hand, damaged, or
written by an older blankspot, such as a reading of year 1 stored as ``"1-01-01T..."``) must
not cost the whole map.  :class:`StoredReadings` skips it, counts it once however many
passes meet it, and remembers the first few with the reason, so that
:meth:`StoredReadings.summary` can name them in one line::

    2 stored readings skipped: unreadable (first: boat-1#7: time: expected UTC ISO 8601 ...; also boat-1#9)

It reads raw rows, ``(device, seq, body)`` triples ordered by device then seq, where
``body`` is the reading's JSON text (SQLite) or the already decoded object (PostgreSQL's
jsonb), as ``Store.iter_rows`` gives them.

A row is checked as strictly as the collector checked the reading when it came in
(``reading_from_dict``), but quicker: a body shaped as the store writes it (every field
present, each of its exact JSON type) is checked field by field against tables built once
from the schema, without the error messages the strict reader prepares on the way.  Any
body that is not, such as every row that does not decode, goes through
``reading_from_dict`` itself, so what is refused and why stays exactly the strict reader's.
Bodies of ``blankspot.reading/1`` (every row stored before the collector's upgrade) take the
quick way too, their MCC and MNC converted to digits as the strict reader converts them.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.shared.operators import codes_of_numbers, is_mcc, is_mnc
from agent.shared.reading import (
    DEVICE_RE, MAX_STRING, PART_TYPES, SCHEMA, SCHEMA_1, SIGNAL_FIELDS_1, TIME_SOURCES, Event, Position, Reading,
    ReadingError, Signal, parse_time, reading_from_dict,
)

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


_MAX_INT = 2**53  # the largest integer the strict reader takes in an integer field


def _assemble(cls: type, values: dict[str, Any]) -> Any:
    """An instance of the frozen dataclass ``cls`` holding ``values``, one for each of its
    fields, already checked: what its ``__init__`` makes, without the cost of setting each
    field of a frozen instance through ``object.__setattr__`` (most of a row's decoding)."""
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


@dataclass(frozen=True)
class _Shape:
    """A JSON object of the schema as the store writes it: its field names, and per field
    the type its value has (``int``, ``float`` for a number, ``str``, or a tuple of choices)
    and whether it may be null."""

    builds: type
    names: frozenset[str]
    fields: tuple[tuple[str, Any, bool], ...]
    # What the types alone do not check: the values to build from (converted, or ``table``
    # itself), or None where the strict reader has to look.
    finish: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None

    @classmethod
    def of(cls, part: type, table: tuple[tuple[str, Any], ...] | None = None,
           finish: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None) -> "_Shape":
        fields = []
        table = part.FIELDS if table is None else table
        for name, kind in table:
            if isinstance(kind, tuple):
                fields.append((name, kind, None in kind))
            else:
                base = kind.rstrip("!")
                fields.append((name, {"int": int, "num": float, "str": str}[base], not kind.endswith("!")))
        return cls(part, frozenset(name for name, _ in table), tuple(fields), finish)

    def build(self, table: Any) -> Any:
        """The object ``table`` describes, or None where the strict reader has to look."""
        if type(table) is not dict or table.keys() != self.names:
            return None
        for name, kind, nullable in self.fields:
            value = table[name]
            if value is None:
                if not nullable:
                    return None
            elif kind is float:
                if type(value) is float:
                    if value - value != 0.0:  # NaN or an infinity
                        return None
                elif type(value) is not int or not -_MAX_INT <= value <= _MAX_INT:
                    return None
            elif kind is int:
                if type(value) is not int or not -_MAX_INT <= value <= _MAX_INT:
                    return None
            elif kind is str:
                if type(value) is not str or len(value) > MAX_STRING:
                    return None
            elif value not in kind:
                return None
        if self.finish is not None:
            table = self.finish(table)
            if table is None:
                return None
        return _assemble(self.builds, table)


def _codes(signal: dict[str, Any]) -> dict[str, Any] | None:
    """A /2 signal's MCC and MNC: digits, both or neither."""
    mcc, mnc = signal["mcc"], signal["mnc"]
    if mcc is None and mnc is None:
        return signal
    return signal if is_mcc(mcc) and is_mnc(mnc) else None


def _codes_1(signal: dict[str, Any]) -> dict[str, Any]:
    """A /1 signal with its MCC and MNC as the digits the strict reader makes of them."""
    mcc, mnc = codes_of_numbers(signal["mcc"], signal["mnc"])
    return {**signal, "mcc": mcc, "mnc": mnc}


# Events carry free-form data, rare enough to leave to the strict reader.
_PARTS = {kind: _Shape.of(part, finish=_codes if part is Signal else None)
          for kind, part in PART_TYPES.items() if part is not Event}
_PARTS_OF = {SCHEMA: _PARTS, SCHEMA_1: {**_PARTS, "signal": _Shape.of(Signal, SIGNAL_FIELDS_1, _codes_1)}}
_POSITION = _Shape.of(Position)
_READING_FIELDS = {kind: frozenset({"schema", "device", "seq", "time", "time_source", "kind", "position", kind})
                   for kind in _PARTS}


def _quick_reading(table: Any, device: str, seq: int) -> Reading | None:
    """The reading of a body shaped as the store writes it, for the row ``(device, seq)``;
    None for any other body (``reading_from_dict`` then decides)."""
    parts = _PARTS_OF.get(table.get("schema")) if type(table) is dict and type(table.get("schema")) is str else None
    if parts is None:
        return None
    kind = table.get("kind")
    shape = parts.get(kind) if type(kind) is str else None
    if shape is None or table.keys() != _READING_FIELDS[kind]:
        return None
    if table["device"] != device or type(device) is not str or not DEVICE_RE.fullmatch(device):
        return None
    if table["seq"] != seq or type(table["seq"]) is not int or not 1 <= seq < 2**63:
        return None
    if table["time_source"] not in TIME_SOURCES:
        return None
    position = table["position"]
    if position is not None:
        position = _POSITION.build(position)
        if position is None or not (-90 <= position.lat <= 90 and -180 <= position.lon <= 180):
            return None
    part = shape.build(table[kind])
    if part is None:
        return None
    try:
        time = parse_time(table["time"])
    except ReadingError:
        return None
    return _assemble(Reading, {"device": device, "time": time, "time_source": table["time_source"], "part": part,
                               "position": position, "seq": seq, "boottime": None})


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
    reading = _quick_reading(body, device, seq) or reading_from_dict(body)
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
    def of(cls, store: Any) -> "StoredReadings":
        """The readings of ``store`` (an ``agent.centre.store.base.Store``: named, not imported,
        as the store reads its own rows through this module)."""
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
                self.skip(SkippedRow(device, seq, str(exc)))

    def skip(self, row: SkippedRow) -> None:
        """Count ``row`` as skipped (once, however often it is met)."""
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
