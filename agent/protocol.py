"""The MQTT wire protocol: topic names and payloads (``docs/protocol.md``).

- ``<prefix>/<device>/readings``: a batch, ``{"schema": "blankspot.batch/1", "device": ...,
  "readings": [reading, ...]}``, QoS 1, not retained, readings oldest first.
- ``<prefix>/<device>/status``: ``{"schema": "blankspot.status/1", "device": ..., "state":
  "online" | "offline", ...}``, QoS 1, retained; ``offline`` is also the last will.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from agent.reading import DEVICE_RE, Reading, ReadingError, reading_from_dict

BATCH_SCHEMA = "blankspot.batch/1"
STATUS_SCHEMA = "blankspot.status/1"
DEFAULT_PREFIX = "blankspot/v1"
MAX_BATCH_BYTES = 4_000_000


class PayloadError(ValueError):
    """An MQTT payload or topic does not follow the protocol."""


def readings_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/readings"


def status_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/status"


def split_topic(prefix: str, topic: str) -> tuple[str, str]:
    """``(device, "readings" | "status")`` from a topic under ``prefix``."""
    head = prefix + "/"
    if not topic.startswith(head):
        raise PayloadError(f"topic {topic!r} is not under {prefix!r}")
    parts = topic[len(head):].split("/")
    if len(parts) != 2 or parts[1] not in ("readings", "status") or not DEVICE_RE.fullmatch(parts[0]):
        raise PayloadError(f"topic {topic!r}: expected {prefix}/<device>/readings or /status")
    return parts[0], parts[1]


def encode_batch(device: str, bodies: Sequence[str]) -> bytes:
    """A batch payload from readings already in their JSON form (as the buffer keeps them)."""
    return (
        '{"schema":"' + BATCH_SCHEMA + '","device":' + json.dumps(device) + ',"readings":[' + ",".join(bodies) + "]}"
    ).encode("utf-8")


def decode_batch(payload: bytes, topic_device: str | None = None) -> list[Reading]:
    """Validate a batch payload; every reading must belong to the batch's device (and topic's)."""
    if len(payload) > MAX_BATCH_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_BATCH_BYTES}")
    try:
        table = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(table, dict) or table.get("schema") != BATCH_SCHEMA:
        raise PayloadError(f"expected an object with schema {BATCH_SCHEMA!r}")
    device = table.get("device")
    if topic_device is not None and device != topic_device:
        raise PayloadError(f"batch device {device!r} does not match topic device {topic_device!r}")
    items = table.get("readings")
    if not isinstance(items, list) or not items:
        raise PayloadError("readings: expected a non-empty list")
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


def encode_status(device: str, state: str, **fields: Any) -> bytes:
    body = {"schema": STATUS_SCHEMA, "device": device, "state": state}
    body.update(fields)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_status(payload: bytes, topic_device: str | None = None) -> dict[str, Any]:
    try:
        table = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(table, dict) or table.get("schema") != STATUS_SCHEMA:
        raise PayloadError(f"expected an object with schema {STATUS_SCHEMA!r}")
    if table.get("state") not in ("online", "offline"):
        raise PayloadError("state: expected 'online' or 'offline'")
    if topic_device is not None and table.get("device") != topic_device:
        raise PayloadError(f"status device {table.get('device')!r} does not match topic device {topic_device!r}")
    return table
