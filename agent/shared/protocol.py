"""The MQTT wire protocol: topic names and payloads (``docs/protocol.md``).

- ``<prefix>/<device>/readings``: a batch, ``{"schema": "blankspot.batch/1", "device": ...,
  "readings": [reading, ...]}``, or the same readings as columns, compressed
  (:mod:`agent.shared.batch_columns`); QoS 1, not retained, readings oldest first.
- ``<prefix>/<device>/status``: ``{"schema": "blankspot.status/1", "device": ..., "state":
  "online" | "offline", ...}``, QoS 1, retained; ``offline`` is also the last will.
- ``<prefix>/<device>/confirm``: ``{"schema": "blankspot.confirm/1", "device": ..., "rev": ...,
  "upto": ..., "top": ..., "holes": [[first, last], ...]}``, QoS 1, retained, published by the
  collectors: which of the unit's readings the centre's database holds (:class:`Confirmation`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from agent.shared import seq_ranges
from agent.shared.batch_columns import CONTENT_TYPE as COLUMNS_CONTENT_TYPE, CONTENT_TYPES as COLUMNS_CONTENT_TYPES
from agent.shared.batch_columns import ColumnsError, decode_columns, encode_columns
from agent.shared.reading import DEVICE_RE, Reading, ReadingError, reading_from_dict

BATCH_SCHEMA = "blankspot.batch/1"
STATUS_SCHEMA = "blankspot.status/1"
CONFIRM_SCHEMA = "blankspot.confirm/1"
# A confirmation lists at most this many holes; the rest is said by lowering ``top``.
MAX_CONFIRM_HOLES = 64
MAX_CONFIRM_BYTES = 8192
DEFAULT_PREFIX = "blankspot/v1"
MAX_BATCH_BYTES = 4_000_000
# How a batch is written on the wire; MQTT 5 says which in the message's content type.
CONTENT_TYPES = {"compact": COLUMNS_CONTENT_TYPE, "json": "application/json"}
ENCODINGS = tuple(CONTENT_TYPES)
# Every content type a batch may come with: each version of the compact encoding, JSON.
_READ_CONTENT_TYPES = {**{t: ("compact", v) for v, t in COLUMNS_CONTENT_TYPES.items()},
                       CONTENT_TYPES["json"]: ("json", None)}


class PayloadError(ValueError):
    """An MQTT payload or topic does not follow the protocol."""


def readings_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/readings"


def status_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/status"


def confirm_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/confirm"


def split_topic(prefix: str, topic: str) -> tuple[str, str]:
    """``(device, "readings" | "status")`` from a topic under ``prefix``."""
    head = prefix + "/"
    if not topic.startswith(head):
        raise PayloadError(f"topic {topic!r} is not under {prefix!r}")
    parts = topic[len(head):].split("/")
    if len(parts) != 2 or parts[1] not in ("readings", "status") or not DEVICE_RE.fullmatch(parts[0]):
        raise PayloadError(f"topic {topic!r}: expected {prefix}/<device>/readings or /status")
    return parts[0], parts[1]


def encode_batch(device: str, bodies: Sequence[str], encoding: str = "json") -> bytes:
    """A batch payload from readings already in their JSON form (as the buffer keeps them).

    ``encoding`` is ``json`` (the object below, readable by any MQTT client) or ``compact``
    (:mod:`agent.shared.batch_columns`; :class:`ColumnsError` for a batch it cannot carry
    exactly, see :func:`encode_for_wire`).
    """
    if encoding == "compact":
        return encode_columns(device, [json.loads(body) for body in bodies])
    if encoding != "json":
        raise ValueError(f"encoding: expected one of {', '.join(ENCODINGS)}, got {encoding!r}")
    return (
        '{"schema":"' + BATCH_SCHEMA + '","device":' + json.dumps(device) + ',"readings":[' + ",".join(bodies) + "]}"
    ).encode("utf-8")


def encode_for_wire(device: str, bodies: Sequence[str], encoding: str) -> tuple[str, bytes]:
    """``(encoding used, payload)``: as :func:`encode_batch`, but a batch the compact encoding
    cannot carry exactly (a number past its range) goes as JSON rather than not at all."""
    try:
        return encoding, encode_batch(device, bodies, encoding)
    except ColumnsError:
        return "json", encode_batch(device, bodies, "json")


def batch_encoding(payload: bytes, content_type: str | None = None) -> str:
    """Which encoding a batch payload is in: from its MQTT 5 content type when it has one,
    else from its first byte (a JSON batch starts with ``{``, a compact one with its version)."""
    if content_type:
        known = _READ_CONTENT_TYPES.get(content_type)
        if known is None:
            raise PayloadError(f"content type {content_type!r}: expected "
                               + " or ".join(repr(t) for t in _READ_CONTENT_TYPES))
        return known[0]
    if payload[:1] and payload[0] in COLUMNS_CONTENT_TYPES:
        return "compact"
    return "json"


def decode_batch(payload: bytes, topic_device: str | None = None, content_type: str | None = None) -> list[Reading]:
    """Validate a batch payload in either encoding; every reading must belong to the batch's
    device (and topic's)."""
    if len(payload) > MAX_BATCH_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_BATCH_BYTES}")
    if batch_encoding(payload, content_type) == "compact":
        try:
            # Over MQTT 5 the content type names the version too: the first byte must agree.
            device, items = decode_columns(payload, _READ_CONTENT_TYPES[content_type][1] if content_type else None)
        except ColumnsError as exc:
            raise PayloadError(f"compact batch: {exc}") from None
    else:
        table = _json_object(payload, BATCH_SCHEMA)
        device = table.get("device")
        items = table.get("readings")
        if not isinstance(items, list) or not items:
            raise PayloadError("readings: expected a non-empty list")
    if topic_device is not None and device != topic_device:
        raise PayloadError(f"batch device {_short(device)} does not match topic device {topic_device!r}")
    readings = []
    for index, item in enumerate(items):
        try:
            reading = reading_from_dict(item)
        except ReadingError as exc:
            raise PayloadError(f"readings[{index}]: {exc}") from None
        if reading.device != device:
            raise PayloadError(f"readings[{index}]: device {reading.device!r} is not the batch's {device!r}")
        readings.append(reading)
    return readings


def _json_object(payload: bytes, schema: str) -> dict[str, Any]:
    """The JSON object ``payload`` holds, which must name ``schema``."""
    try:
        table = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(table, dict) or table.get("schema") != schema:
        raise PayloadError(f"expected an object with schema {schema!r}")
    return table


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def encode_status(device: str, state: str, **fields: Any) -> bytes:
    body = {"schema": STATUS_SCHEMA, "device": device, "state": state}
    body.update(fields)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_status(payload: bytes, topic_device: str | None = None) -> dict[str, Any]:
    table = _json_object(payload, STATUS_SCHEMA)
    if table.get("state") not in ("online", "offline"):
        raise PayloadError("state: expected 'online' or 'offline'")
    if topic_device is not None and table.get("device") != topic_device:
        raise PayloadError(f"status device {table.get('device')!r} does not match topic device {topic_device!r}")
    return table


@dataclass(frozen=True)
class Confirmation:
    """What the centre's database holds of one unit's readings.

    Every seq up to ``upto`` is stored or settled (the unit said it dropped it, or can no
    longer send it, or the centre refused it); above ``upto``, every seq up to ``top`` is
    stored except those in ``holes``.  Nothing is said about seqs above ``max(upto, top)``.
    ``rev`` grows with every change in the centre's database; a unit applies only a
    confirmation newer than the last one it applied.
    """

    device: str
    rev: int
    upto: int
    top: int
    holes: tuple[tuple[int, int], ...] = ()

    @property
    def bound(self) -> int:
        return max(self.upto, self.top)

    def covers(self, seq: int) -> bool:
        if seq <= self.upto:
            return True
        return seq <= self.top and not seq_ranges.contains(list(self.holes), seq)

    def covered(self) -> list[tuple[int, int]]:
        """The covered seqs as ranges."""
        return seq_ranges.subtract([(1, self.bound)], self.holes) if self.bound else []


def encode_confirmation(confirmation: Confirmation) -> bytes:
    c = confirmation
    return json.dumps(
        {"schema": CONFIRM_SCHEMA, "device": c.device, "rev": c.rev, "upto": c.upto, "top": c.top,
         "holes": [list(h) for h in c.holes]},
        separators=(",", ":"),
    ).encode("utf-8")


def decode_confirmation(payload: bytes, topic_device: str | None = None) -> Confirmation:
    """Validate a confirmation payload; :class:`PayloadError` says what is wrong."""
    if len(payload) > MAX_CONFIRM_BYTES:
        raise PayloadError(f"confirmation of {len(payload)} bytes exceeds {MAX_CONFIRM_BYTES}")
    try:
        table = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(table, dict) or table.get("schema") != CONFIRM_SCHEMA:
        raise PayloadError(f"expected an object with schema {CONFIRM_SCHEMA!r}")
    device = table.get("device")
    if not isinstance(device, str) or not DEVICE_RE.fullmatch(device):
        raise PayloadError(f"device: expected a device id, got {device!r}")
    if topic_device is not None and device != topic_device:
        raise PayloadError(f"confirmation device {device!r} does not match topic device {topic_device!r}")
    numbers = {}
    for key, low in (("rev", 1), ("upto", 0), ("top", 0)):
        value = table.get(key)
        if type(value) is not int or not low <= value < 2**63:
            raise PayloadError(f"{key}: expected a whole number from {low}, got {value!r}")
        numbers[key] = value
    holes = table.get("holes")
    if not isinstance(holes, list) or len(holes) > MAX_CONFIRM_HOLES:
        raise PayloadError(f"holes: expected a list of at most {MAX_CONFIRM_HOLES} [first, last] pairs")
    previous = numbers["upto"]
    parsed = []
    for index, hole in enumerate(holes):
        if (not isinstance(hole, list) or len(hole) != 2 or any(type(v) is not int for v in hole)
                or not previous < hole[0] <= hole[1] <= numbers["top"]):
            raise PayloadError(f"holes[{index}]: expected [first, last] ascending, above upto "
                               f"and up to top, got {hole!r}")
        parsed.append((hole[0], hole[1]))
        previous = hole[1] + 1
    return Confirmation(device, numbers["rev"], numbers["upto"], numbers["top"], tuple(parsed))
