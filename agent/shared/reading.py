"""The reading: one measurement, its position and time, as in schema ``blankspot.reading/2``.

``Reading.to_dict`` / ``reading_from_dict`` are the JSON form.  ``reading_from_dict``
validates strictly (it is what the collector trusts) and raises :class:`ReadingError` only.
The JSON Schema in ``agent/schema/reading.schema.json`` says the same for integrators.

Units write ``blankspot.reading/2``.  ``reading_from_dict`` reads ``blankspot.reading/1`` as
well (``agent/schema/reading-1.schema.json``), converted as it is read: its registration
words are a subset of /2's, and its MCC and MNC, integers there, become the digits the
network broadcasts (:func:`agent.shared.operators.codes_of_numbers`).  So the collector, the
buffer's clock correction and every reader take bodies stored before an upgrade.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from agent.shared.operators import codes_of_numbers, is_mcc, is_mnc

if TYPE_CHECKING:
    from agent.shared.clock import Timestamp

SCHEMA = "blankspot.reading/2"
SCHEMA_1 = "blankspot.reading/1"  # read, converted; no longer written
SCHEMAS = (SCHEMA, SCHEMA_1)
TIME_SOURCES = ("gps", "ntp", "unsynced")
KINDS = ("signal", "latency", "throughput", "event")
FIXES = ("none", "2d", "3d")
# The registration words of blankspot.reading/1: TS 27.007 <stat> 0..5.
REGISTRATIONS_1 = ("home", "roaming", "searching", "denied", "not_registered", "unknown")
# blankspot.reading/2 adds <stat> 6..11, in their order: registered for "SMS only" (home,
# roaming), attached for emergency bearer services only, registered for "CSFB not
# preferred" (home, roaming), attached for access to Restricted Local Operator Services.
REGISTRATIONS = REGISTRATIONS_1 + ("sms_only_home", "sms_only_roaming", "emergency_only",
                                   "csfb_not_preferred_home", "csfb_not_preferred_roaming", "rlos_only")
# What each word means for coverage (docs/signal-quality.md), the one place every comparison
# of registrations takes its sets from.  Registered on the SIM's own network: the centre
# learns a unit's home operator from these.
HOME_REGISTRATIONS = frozenset({"home", "sms_only_home", "csfb_not_preferred_home"})
ROAMING_REGISTRATIONS = frozenset({"roaming", "sms_only_roaming", "csfb_not_preferred_roaming"})
# In service: the data bearer is there ("SMS only" and "CSFB not preferred" differ only in
# circuit-switched voice and SMS).
SERVED_REGISTRATIONS = HOME_REGISTRATIONS | ROAMING_REGISTRATIONS
# No service for the public: a blank spot on the map.  Attached for emergency calls or for
# the restricted local operator services only is no service a villager can use.
NO_SERVICE_REGISTRATIONS = frozenset({"searching", "denied", "not_registered", "emergency_only", "rlos_only"})
# "unknown" says neither: the technology and the levels the modem reports decide.
RATS = ("GSM", "WCDMA", "LTE", "NR5G-NSA", "NR5G-SA", "NONE")
QUALITIES = ("excellent", "good", "fair", "poor", "none")
DEVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)  # use fullmatch
_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z")
MAX_STRING = 256


class ReadingError(ValueError):
    """A reading (or its JSON form) follows neither ``blankspot.reading/2`` nor ``/1``."""


def format_time(moment: datetime) -> str:
    """UTC, ISO 8601 with milliseconds and ``Z``: ``2026-11-24T03:04:05.678Z``.

    The year always has four digits (``0001-01-01T00:00:00.000Z``): ``strftime("%Y")``
    writes year 1 as ``1`` on glibc, a time no parser of the format reads back.
    """
    if moment.tzinfo is None:
        raise ValueError("reading times must be timezone-aware")
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:  # year 1 at UTC+8 is year 0 in UTC
        raise ValueError(f"reading time {moment.isoformat()} is out of range in UTC") from None
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
            f".{utc.microsecond // 1000:03d}Z")



def format_time_epoch(seconds: float) -> str:
    """A POSIX timestamp (``time.time()``) as :func:`format_time` writes it."""
    return format_time(datetime.fromtimestamp(seconds, timezone.utc))

def parse_time(text: str) -> datetime:
    """The time :func:`format_time` wrote; anything else raises :class:`ReadingError`."""
    match = _TIME_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ReadingError(f"time: expected UTC ISO 8601 with milliseconds and 'Z', got {short_json(text)}")
    year, month, day, hour, minute, second, millis = map(int, match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=timezone.utc)
    except ValueError:
        raise ReadingError(f"time: not a real date, got {text!r}") from None


# (name, type, allowed values or None).  Types: "int", "num", "str", or a tuple of choices.
_Field = tuple[str, Any]


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    alt_m: float | None = None
    hdop: float | None = None
    sats: int | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    fix: str = "3d"

    FIELDS: ClassVar[tuple[_Field, ...]] = (
        ("lat", "num!"), ("lon", "num!"), ("alt_m", "num"), ("hdop", "num"), ("sats", "int"),
        ("speed_kmh", "num"), ("course_deg", "num"), ("fix", FIXES),
    )


@dataclass(frozen=True)
class Signal:
    registration: str = "unknown"
    operator: str | None = None
    mcc: str | None = None  # three digits, "510"
    mnc: str | None = None  # two or three digits as the network broadcasts them, "01"; both or neither
    rat: str | None = "NONE"  # None: in service, technology not known
    band: int | None = None
    earfcn: int | None = None
    pci: int | None = None
    cell_id: int | None = None
    tac: int | None = None
    lac: int | None = None
    rssi_dbm: float | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    rscp_dbm: float | None = None
    ecio_db: float | None = None
    csq: int | None = None
    quality: str | None = "none"  # None: no level known, or the modem did not answer
    error: str | None = None

    FIELDS: ClassVar[tuple[_Field, ...]] = (
        ("registration", REGISTRATIONS), ("operator", "str"), ("mcc", "str"), ("mnc", "str"),
        ("rat", RATS + (None,)), ("band", "int"), ("earfcn", "int"), ("pci", "int"), ("cell_id", "int"),
        ("tac", "int"), ("lac", "int"), ("rssi_dbm", "num"), ("rsrp_dbm", "num"),
        ("rsrq_db", "num"), ("sinr_db", "num"), ("rscp_dbm", "num"), ("ecio_db", "num"),
        ("csq", "int"), ("quality", QUALITIES + (None,)), ("error", "str"),
    )


# The signal part as blankspot.reading/1 has it: MCC and MNC as integers, six registration words.
SIGNAL_FIELDS_1: tuple[_Field, ...] = tuple(
    (name, "int") if name in ("mcc", "mnc") else (name, REGISTRATIONS_1) if name == "registration" else (name, kind)
    for name, kind in Signal.FIELDS
)


@dataclass(frozen=True)
class Latency:
    target: str
    method: str
    sent: int
    received: int
    loss_pct: float
    rtt_min_ms: float | None = None
    rtt_avg_ms: float | None = None
    rtt_max_ms: float | None = None
    jitter_ms: float | None = None
    error: str | None = None

    FIELDS: ClassVar[tuple[_Field, ...]] = (
        ("target", "str!"), ("method", "str!"), ("sent", "int!"), ("received", "int!"),
        ("loss_pct", "num!"), ("rtt_min_ms", "num"), ("rtt_avg_ms", "num"), ("rtt_max_ms", "num"),
        ("jitter_ms", "num"), ("error", "str"),
    )
    MAY_BE_ABSENT: ClassVar[tuple[str, ...]] = ("error",)


@dataclass(frozen=True)
class Throughput:
    backend: str
    server: str | None = None
    down_mbps: float | None = None
    up_mbps: float | None = None
    bytes_used: int | None = None
    duration_s: float | None = None
    error: str | None = None

    FIELDS: ClassVar[tuple[_Field, ...]] = (
        ("backend", "str!"), ("server", "str"), ("down_mbps", "num"), ("up_mbps", "num"),
        ("bytes_used", "int"), ("duration_s", "num"), ("error", "str"),
    )
    MAY_BE_ABSENT: ClassVar[tuple[str, ...]] = ("error",)


@dataclass(frozen=True)
class Event:
    """Something that happened on the unit: ``type`` names it, ``data`` holds its figures."""

    type: str
    message: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[tuple[_Field, ...]] = (("type", "str!"), ("message", "str"), ("data", "obj!"))


PART_TYPES: dict[str, type] = {"signal": Signal, "latency": Latency, "throughput": Throughput, "event": Event}
Part = Signal | Latency | Throughput | Event


@dataclass(frozen=True)
class Reading:
    """One measurement.  ``seq`` is assigned by the buffer when the reading is stored.

    ``boottime`` (``CLOCK_BOOTTIME`` at measurement) stays on the unit: it is never part of
    the JSON form, and only lets the buffer correct an ``unsynced`` time later.
    """

    device: str
    time: datetime
    time_source: str
    part: Part
    position: Position | None = None
    seq: int | None = None
    boottime: float | None = field(default=None, compare=False)

    @classmethod
    def taken(cls, device: str, stamp: "Timestamp", part: Part, position: Position | None = None) -> "Reading":
        """A reading stamped by the agent's clock."""
        return cls(device, stamp.time, stamp.source, part, position, boottime=stamp.boottime)

    @property
    def kind(self) -> str:
        for kind, cls in PART_TYPES.items():
            if isinstance(self.part, cls):
                return kind
        raise ReadingError(f"unknown part type {type(self.part).__name__}")

    def at_precision(self) -> "Reading":
        """This reading with its numbers rounded to what the instruments resolve (:data:`DECIMALS`)."""
        part = at_precision(self.part)
        position = None if self.position is None else at_precision(self.position)
        if part is self.part and position is self.position:
            return self
        return dataclasses.replace(self, part=part, position=position)

    def to_dict(self) -> dict[str, Any]:
        if self.seq is None:
            raise ReadingError("seq: a reading gets its seq when it is buffered")
        kind = self.kind
        return {
            "schema": SCHEMA,
            "device": self.device,
            "seq": self.seq,
            "time": format_time(self.time),
            "time_source": self.time_source,
            "kind": kind,
            "position": None if self.position is None else part_dict(self.position),
            kind: part_dict(self.part),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# What the instruments resolve, in decimals, for every field that is a number with a
# fraction (docs/protocol.md, "Precision").  The unit keeps and sends no more
# (:meth:`Reading.at_precision`): digits past these are noise of the float arithmetic
# (``25.000148000000003`` km/h) or of the receiver, and the compact encoding sends each as a
# whole number of these steps.
DECIMALS: dict[str, dict[str, int]] = {
    "position": {"lat": 6, "lon": 6, "alt_m": 1, "hdop": 2, "speed_kmh": 1, "course_deg": 1},
    "signal": {"rssi_dbm": 1, "rsrp_dbm": 1, "rsrq_db": 1, "sinr_db": 1, "rscp_dbm": 1, "ecio_db": 1},
    "latency": {"loss_pct": 2, "rtt_min_ms": 2, "rtt_avg_ms": 2, "rtt_max_ms": 2, "jitter_ms": 2},
    "throughput": {"down_mbps": 3, "up_mbps": 3, "duration_s": 2},
    "event": {},
}


def part_dict(part: Part | Position) -> dict[str, Any]:
    """The JSON form of a reading's part (``signal``, ``latency`` ...) or position: its fields
    by name (values as they are: every field is a JSON scalar, or an event's ``data``)."""
    fields = _FIELDS_OF.get(type(part))
    if fields is None:
        fields = _FIELDS_OF[type(part)] = _fields_of(type(part))
    return {name: getattr(part, name) for name in fields[0]}


def at_precision(part: Any) -> Any:
    """``part`` (or a position) with its numbers rounded to :data:`DECIMALS`."""
    fields = _FIELDS_OF.get(type(part))
    if fields is None:
        fields = _FIELDS_OF[type(part)] = _fields_of(type(part))
    changes = {}
    for name, decimals in fields[1]:
        value = getattr(part, name)
        if type(value) is float:
            rounded = round(value, decimals)
            if rounded != value:
                changes[name] = rounded
    return dataclasses.replace(part, **changes) if changes else part


def _fields_of(cls: type) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    group = "position" if cls is Position else next(k for k, c in PART_TYPES.items() if c is cls)
    names = tuple(f.name for f in dataclasses.fields(cls))
    return names, tuple(DECIMALS[group].items())


# Read once per class: dataclasses.fields() costs more than the copying, a reading at a time.
_FIELDS_OF: dict[type, tuple[tuple[str, ...], tuple[tuple[str, int], ...]]] = {}


def _check_value(where: str, kind: Any, value: Any) -> Any:
    required = isinstance(kind, str) and kind.endswith("!")
    kind = kind.rstrip("!") if isinstance(kind, str) else kind
    if value is None:
        if required or (isinstance(kind, tuple) and None not in kind):
            raise ReadingError(f"{where}: required, got null")
        return None
    if isinstance(kind, tuple):
        if value not in kind:
            names = ", ".join("null" if k is None else k for k in kind)
            raise ReadingError(f"{where}: expected one of {names}, got {short_json(value)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReadingError(f"{where}: expected an integer or null, got {short_json(value)}")
        if abs(value) > 2**53:
            raise ReadingError(f"{where}: integer out of range")
        return value
    if kind == "num":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise ReadingError(f"{where}: expected a number or null, got {short_json(value)}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ReadingError(f"{where}: expected a string or null, got {short_json(value)}")
        if len(value) > MAX_STRING:
            raise ReadingError(f"{where}: string longer than {MAX_STRING} characters")
        return value
    if kind == "obj":
        if not isinstance(value, dict):
            raise ReadingError(f"{where}: expected an object, got {short_json(value)}")
        if len(json.dumps(value)) > 4096:
            raise ReadingError(f"{where}: object larger than 4096 bytes")
        return value
    raise AssertionError(kind)


def _finite(number: int | float) -> bool:
    """Whether a float holds ``number``: an integer past a float's range is not a number here
    (``math.isfinite`` raises ``OverflowError`` for it)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def short_json(value: Any) -> str:
    """``value`` as JSON for an error message, cut to 40 characters."""
    text = json.dumps(value) if not isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _build(cls: type, where: str, table: Any, fields: tuple[_Field, ...] | None = None) -> Any:
    if not isinstance(table, dict):
        raise ReadingError(f"{where}: expected an object, got {short_json(table)}")
    fields = cls.FIELDS if fields is None else fields
    names = {name for name, _ in fields}
    extra = sorted(set(table) - names)
    if extra:
        raise ReadingError(f"{where}: unknown field {extra[0]!r}")
    missing = [name for name in names - set(table) if name not in getattr(cls, "MAY_BE_ABSENT", ())]
    if missing:
        raise ReadingError(f"{where}: missing field {sorted(missing)[0]!r} (unknown values are null, not absent)")
    values = {name: _check_value(f"{where}.{name}", kind, table.get(name)) for name, kind in fields}
    if cls is Position:
        if not -90 <= values["lat"] <= 90 or not -180 <= values["lon"] <= 180:
            raise ReadingError(f"{where}: lat/lon out of range")
    if cls is Signal:
        if fields is SIGNAL_FIELDS_1:
            values["mcc"], values["mnc"] = codes_of_numbers(values["mcc"], values["mnc"])
        else:
            check_codes(where, values["mcc"], values["mnc"])
    return cls(**values)


def check_codes(where: str, mcc: Any, mnc: Any) -> None:
    """A signal's MCC and MNC as /2 has them: three digits and two or three, both or neither."""
    if mcc is not None and not is_mcc(mcc):
        raise ReadingError(f"{where}.mcc: expected three digits or null, got {short_json(mcc)}")
    if mnc is not None and not is_mnc(mnc):
        raise ReadingError(f"{where}.mnc: expected two or three digits or null, got {short_json(mnc)}")
    if (mcc is None) != (mnc is None):
        raise ReadingError(f"{where}: mcc and mnc are both known or both null, got {short_json(mcc)} and "
                           f"{short_json(mnc)}")


def reading_from_dict(table: Any) -> Reading:
    """Validate and build a reading from its JSON form, ``blankspot.reading/2`` or
    ``blankspot.reading/1`` (converted as it is read); raises :class:`ReadingError`."""
    if not isinstance(table, dict):
        raise ReadingError(f"reading: expected an object, got {short_json(table)}")
    schema = table.get("schema")
    if schema not in SCHEMAS:
        raise ReadingError(f"schema: expected {SCHEMA!r} (or the earlier {SCHEMA_1!r}), got {short_json(schema)}")
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in PART_TYPES:
        raise ReadingError(f"kind: expected one of {', '.join(KINDS)}, got {short_json(kind)}")
    allowed = {"schema", "device", "seq", "time", "time_source", "kind", "position", kind}
    extra = sorted(set(table) - allowed)
    if extra:
        raise ReadingError(f"unknown field {extra[0]!r}")
    device = table.get("device")
    if not isinstance(device, str) or not DEVICE_RE.fullmatch(device):
        raise ReadingError(f"device: expected 1-64 letters, digits, '-', '_' or '.', got {short_json(device)}")
    seq = table.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 2**63:
        raise ReadingError(f"seq: expected a positive integer, got {short_json(seq)}")
    time_source = table.get("time_source")
    if time_source not in TIME_SOURCES:
        raise ReadingError(f"time_source: expected one of {', '.join(TIME_SOURCES)}, got {short_json(time_source)}")
    position = table.get("position")
    return Reading(
        device=device,
        seq=seq,
        time=parse_time(table.get("time")),
        time_source=time_source,
        position=None if position is None else _build(Position, "position", position),
        part=_build(PART_TYPES[kind], kind, table.get(kind), SIGNAL_FIELDS_1 if kind == "signal" and schema == SCHEMA_1
                    else None),
    )


def reading_from_json(text: str | bytes) -> Reading:
    try:
        table = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReadingError(f"not JSON: {exc}") from None
    return reading_from_dict(table)
