"""The compact batch: a batch's readings as columns, compressed (``docs/protocol.md``).

A batch of the JSON encoding repeats every key and every null in every reading and spells
numbers out in full; over a weak link of a blank spot's edge that is twenty times the
bytes the readings hold.  Here each field of the reading is one column (a list with one
entry per reading), every number is a whole number of the steps its instrument resolves
(:data:`agent.shared.reading.DECIMALS`) written as the difference from the column's
previous number, columns with nothing in them are left out, and the whole is compressed
with zlib (RFC 1950, in every language's standard library).

Payload: one byte, the version, then the zlib stream of a UTF-8 JSON object
``{"device": ..., "n": <readings>, "columns": {<column>: [...], ...}}``.

The version says the reading schema the columns follow, and so which columns are numbers:
``0x02`` (:data:`VERSION`, what units write) is ``blankspot.reading/2``, whose MCC and MNC
are strings of digits and go as text; ``0x01``, written by units before it, is
``blankspot.reading/1``, whose MCC and MNC are integers and go as numbers.  Both are read.

:func:`encode_columns` takes readings in their JSON form (as the unit's buffer keeps them);
a reading of ``/1`` stored before an upgrade goes as the ``/2`` reading the centre reads it
as.  :func:`decode_columns` gives them back in their JSON form, of the schema the version
says, to be validated by ``reading_from_dict`` like those of a JSON batch.  It raises
:class:`ColumnsError` only.
"""
from __future__ import annotations

import json
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from agent.shared.reading import (
    DECIMALS, PART_TYPES, SCHEMA, SCHEMA_1, SIGNAL_FIELDS_1, Position, ReadingError, format_time, parse_time,
    reading_from_dict, short_json,
)

VERSION = 0x02
# Each version: the reading schema its columns follow, and its MQTT 5 content type.
SCHEMAS = {0x01: SCHEMA_1, 0x02: SCHEMA}
CONTENT_TYPES = {version: f"application/vnd.blankspot.columns.v{version}+zlib" for version in SCHEMAS}
CONTENT_TYPE = CONTENT_TYPES[VERSION]
# Decompressed, a batch is never larger than this: a payload that inflates past it is refused
# before it is read (a few kilobytes of zeros can inflate to gigabytes).
MAX_INFLATED_BYTES = 8_000_000
MAX_READINGS = 100_000
_LIMIT = 2**63
_EXACT = 2**53
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ColumnsError(ValueError):
    """A compact batch that does not follow the encoding."""


def _column_table(schema: str) -> dict[str, tuple[str, int | None]]:
    """Every column of ``schema``'s readings: ``name -> (type, decimals)``; type is ``int``
    (whole numbers in steps of 10**-decimals, differences), ``str`` (text and choices) or
    ``obj`` (an event's data)."""
    table: dict[str, tuple[str, int | None]] = {
        "seq": ("int", 0), "time": ("int", 0), "time_source": ("str", None), "kind": ("str", None),
    }
    groups: list[tuple[str, type]] = [("position", Position), *PART_TYPES.items()]
    for group, cls in groups:
        fields = SIGNAL_FIELDS_1 if group == "signal" and schema == SCHEMA_1 else cls.FIELDS
        for name, kind in fields:
            kind = kind.rstrip("!") if isinstance(kind, str) else "str"
            if kind in ("int", "num"):
                table[f"{group}.{name}"] = ("int", DECIMALS[group].get(name, 0))
            else:
                table[f"{group}.{name}"] = (kind, None)
    return table


COLUMNS_OF = {version: _column_table(schema) for version, schema in SCHEMAS.items()}
COLUMNS = COLUMNS_OF[VERSION]
_GROUP_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    group: tuple((name, f"{group}.{name}") for name, _ in cls.FIELDS)
    for group, cls in [("position", Position), *PART_TYPES.items()]
}


def encode_columns(device: str, readings: Sequence[dict[str, Any]], level: int = 9) -> bytes:
    """The compact payload of ``readings`` (their JSON form, all of ``device``), version
    :data:`VERSION`: a reading of ``blankspot.reading/1`` goes as the ``/2`` reading the
    centre reads it as.

    :class:`ColumnsError` for a number too large to come back exactly (a field of 10**10 km/h),
    or a stored reading of ``/1`` that does not read: such a batch goes as JSON.
    """
    n = len(readings)
    columns: dict[str, list[Any]] = {}

    def put(name: str, index: int, value: Any) -> None:
        if value is None:
            return
        column = columns.get(name)
        if column is None:
            column = columns[name] = [None] * n
        column[index] = value

    for index, reading in enumerate(readings):
        if reading.get("schema") != SCHEMA:
            reading = _current(reading)
        put("seq", index, reading["seq"])
        put("time", index, _millis(reading["time"]))
        put("time_source", index, reading["time_source"])
        kind = reading["kind"]
        put("kind", index, kind)
        for group in ("position", kind):
            part = reading.get(group)
            if part is None:
                continue
            for name, column in _GROUP_FIELDS[group]:
                put(column, index, part.get(name))
    for name, values in columns.items():
        kind, decimals = COLUMNS[name]
        if kind == "int":
            columns[name] = list(_differences(_steps(name, values, decimals or 0)))
    body = {"device": device, "n": n, "columns": columns}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return bytes((VERSION,)) + zlib.compress(text.encode("utf-8"), level)


def decode_columns(payload: bytes, version: int | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """``(device, readings in their JSON form)`` from a compact payload, each reading of the
    schema its version says; ``version``: the one the payload must have (its MQTT 5 content
    type says), any known one when None.

    Checks the encoding only (sizes, types, ranges); what the readings say is checked by
    ``reading_from_dict`` afterwards, as for a JSON batch.
    """
    wanted = SCHEMAS if version is None else (version,)
    if not payload or payload[0] not in wanted:
        raise ColumnsError(f"expected version byte {' or '.join(format(v, '#04x') for v in wanted)}, got "
                           f"{'nothing' if not payload else format(payload[0], '#04x')}")
    version = payload[0]
    table = COLUMNS_OF[version]
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload[1:], MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise ColumnsError(f"not a zlib stream after the version byte: {exc}") from None
    if inflater.unconsumed_tail:
        raise ColumnsError(f"inflates to more than {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise ColumnsError("the zlib stream is cut short")
    if inflater.unused_data:
        raise ColumnsError(f"{len(inflater.unused_data)} bytes after the end of the zlib stream")
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ColumnsError(f"inflated, not JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != {"device", "n", "columns"}:
        raise ColumnsError('expected an object with exactly "device", "n" and "columns"')
    n, columns = body["n"], body["columns"]
    if type(n) is not int or not 1 <= n <= MAX_READINGS:
        raise ColumnsError(f"n: expected a count of readings from 1 to {MAX_READINGS}, got {n!r}")
    if not isinstance(columns, dict):
        raise ColumnsError("columns: expected an object")
    decoded: dict[str, list[Any]] = {}
    for name, values in columns.items():
        spec = table.get(name)
        if spec is None:
            raise ColumnsError(f"columns: unknown column {name!r}")
        if not isinstance(values, list) or len(values) != n:
            raise ColumnsError(f"columns.{name}: expected a list of {n} entries")
        decoded[name] = _column_values(name, spec, values)
    device = body["device"]
    return device, [_reading(device, decoded, index, SCHEMAS[version]) for index in range(n)]


def _current(reading: dict[str, Any]) -> dict[str, Any]:
    """A stored reading of an earlier schema in the JSON form of :data:`SCHEMA`, as the centre reads it."""
    try:
        return reading_from_dict(reading).to_dict()
    except ReadingError as exc:
        raise ColumnsError(f"stored reading of {short_json(reading.get('schema'))} does not read: {exc}") from None


def _reading(device: Any, columns: dict[str, list[Any]], index: int, schema: str) -> dict[str, Any]:
    def get(name: str) -> Any:
        column = columns.get(name)
        return None if column is None else column[index]

    kind = get("kind")
    millis = get("time")
    reading: dict[str, Any] = {
        "schema": schema,
        "device": device,
        "seq": get("seq"),
        "time": None if millis is None else _time_text(millis, index),
        "time_source": get("time_source"),
        "kind": kind,
        "position": None,
    }
    if get("position.lat") is not None:
        reading["position"] = {name: get(column) for name, column in _GROUP_FIELDS["position"]}
    if isinstance(kind, str) and kind in _GROUP_FIELDS:
        reading[kind] = {name: get(column) for name, column in _GROUP_FIELDS[kind]}
    return reading


def _column_values(name: str, spec: tuple[str, int | None], values: list[Any]) -> list[Any]:
    kind, decimals = spec
    if kind == "int":
        total = 0
        out: list[Any] = []
        scale = 10 ** (decimals or 0)
        for value in values:
            if value is None:
                out.append(None)
                continue
            if type(value) is not int or not -_LIMIT < value < _LIMIT:
                raise ColumnsError(f"columns.{name}: expected whole numbers or null, got {short_json(value)}")
            total += value
            if not -_LIMIT < total < _LIMIT:
                raise ColumnsError(f"columns.{name}: a value passes 2**63")
            out.append(total / scale if decimals else total)
        return out
    wanted = dict if kind == "obj" else str
    for value in values:
        if value is not None and not isinstance(value, wanted):
            raise ColumnsError(f"columns.{name}: expected {'objects' if kind == 'obj' else 'strings'} "
                               f"or null, got {short_json(value)}")
    return values


def _steps(name: str, values: list[Any], decimals: int) -> Iterable[Any]:
    scale = 10**decimals
    for value in values:
        if value is None or (decimals == 0 and type(value) is int):
            yield value
            continue
        steps = round(value * scale)
        # Past 2**53 steps a float no longer comes back exactly from steps / 10**decimals.
        if not -_EXACT <= steps <= _EXACT:
            raise ColumnsError(f"{name}: {value!r} has more steps than the encoding carries exactly")
        yield steps


def _differences(values: Iterable[Any]) -> Iterable[Any]:
    previous = 0
    for value in values:
        if value is None:
            yield None
        else:
            yield value - previous
            previous = value


def _millis(text: str) -> int:
    moment = parse_time(text)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _time_text(millis: int, index: int) -> str:
    try:
        return format_time(_EPOCH + timedelta(milliseconds=millis))
    except (OverflowError, ValueError):
        raise ColumnsError(f"columns.time[{index}]: {millis} ms from 1970 is not a time from year 1 to 9999") from None
