"""What the centre keeps of the SMS its gateway reads: heartbeats, refusals, other messages.

Three tables (schema step 9), written through ``run(sql, params)`` with ``?`` placeholders
so that SQLite and PostgreSQL share the SQL:

- ``unit_heartbeats``: per unit, the latest verified heartbeat (its counter, the unit's time,
  when and from which number it arrived, ``source`` "sms", every field as JSON).  Its
  ``counter`` is also the highest the centre accepted from that unit: a heartbeat is stored
  only when its counter is greater (:func:`agent.shared.heartbeat.accept_counter`), in the
  same transaction, so a replay or a message read twice is refused however many gateways
  or restarts lie between.
- ``sms_refused``: per reason (:data:`REFUSALS`), how many messages were not stored as a
  heartbeat, and when the last one came.
- ``sms_log``: the newest :data:`KEPT_MESSAGES` messages that were not stored as a
  heartbeat, with their sender, reason and text: an operator's quota notice to the centre's
  SIM, a person's reply, a forgery's text.  Older ones are deleted as new ones arrive.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Literal

from agent.shared.heartbeat import ERROR_REASONS, Heartbeat, accept_counter
from agent.shared.reading import format_time, parse_time

__all__ = [
    "KEPT_MESSAGES", "REFUSALS", "KeptHeartbeat", "heartbeat_fields", "heartbeat_from_fields",
]

Run = Callable[[str, Any], list[tuple[Any, ...]]]
Recorded = Literal["stored", "replayed"]

# Why a received SMS was not stored as a heartbeat: decode_heartbeat's reasons, and the
# centre's own: a counter already seen, a text not in GSM 7-bit (a unit only sends that), a
# PDU that does not decode.
REFUSALS: tuple[str, ...] = (*ERROR_REASONS, "replayed", "ucs2", "8bit", "unreadable")
KEPT_MESSAGES = 100
MAX_TEXT_CHARS = 1000
MAX_SENDER_CHARS = 40


@dataclass(frozen=True)
class KeptHeartbeat:
    """A unit's latest verified heartbeat as the centre keeps it."""

    heartbeat: Heartbeat
    received_at: datetime
    sender: str
    source: str  # "sms"


def heartbeat_fields(hb: Heartbeat) -> dict[str, Any]:
    """``hb``'s fields as JSON values, times as :func:`format_time` writes them."""
    return {
        "device": hb.device, "counter": hb.counter, "time": format_time(hb.time), "lat": hb.lat, "lon": hb.lon,
        "backlog": hb.backlog, "oldest": format_time(hb.oldest) if hb.oldest else None, "last_seq": hb.last_seq,
        "rat": hb.rat, "operator": hb.operator, "level_dbm": hb.level_dbm, "uptime_s": hb.uptime_s,
        "reason": hb.reason,
    }


def heartbeat_from_fields(fields: dict[str, Any]) -> Heartbeat:
    """The :class:`Heartbeat` :func:`heartbeat_fields` wrote."""
    values = dict(fields)
    values["time"] = parse_time(values["time"])
    values["oldest"] = parse_time(values["oldest"]) if values.get("oldest") else None
    return Heartbeat(**values)


def _clean(text: str, limit: int) -> str:
    # As the quarantine's topics: no NUL (PostgreSQL refuses it), valid UTF-8, bounded.
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(run: Run, reason: str, received_at: str) -> None:
    run("INSERT INTO sms_refused (reason, n, last_at) VALUES (?, 1, ?)"
        " ON CONFLICT (reason) DO UPDATE SET n = sms_refused.n + 1, last_at = excluded.last_at", (reason, received_at))


def record_heartbeat(run: Run, hb: Heartbeat, received_at: datetime, sender: str) -> Recorded:
    """Store ``hb`` as its unit's latest heartbeat unless its counter is not new ("replayed",
    counted).  Call within one transaction."""
    when = format_time(received_at)
    rows = run("SELECT counter FROM unit_heartbeats WHERE device = ?", (hb.device,))
    if accept_counter(rows[0][0] if rows else None, hb.counter):
        # The WHERE repeats the check for a second gateway storing the same unit meanwhile
        # (PostgreSQL re-reads the row it waited for): only one of them stores it.
        stored = run(
            "INSERT INTO unit_heartbeats (device, counter, time, received_at, sender, source, fields)"
            " VALUES (?, ?, ?, ?, ?, 'sms', ?) ON CONFLICT (device) DO UPDATE SET counter = excluded.counter,"
            " time = excluded.time, received_at = excluded.received_at, sender = excluded.sender,"
            " source = excluded.source, fields = excluded.fields"
            " WHERE excluded.counter > unit_heartbeats.counter RETURNING device",
            (hb.device, hb.counter, format_time(hb.time), when, _clean(sender, MAX_SENDER_CHARS),
             json.dumps(heartbeat_fields(hb), allow_nan=False)))
        if stored:
            return "stored"
    _count(run, "replayed", when)
    return "replayed"


def count_refused(run: Run, reason: str, received_at: datetime, sender: str, text: str, coding: str) -> None:
    """Count a message not stored as a heartbeat under ``reason`` and keep it in the log
    (the newest :data:`KEPT_MESSAGES`).  Call within one transaction."""
    if reason not in REFUSALS:
        raise ValueError(f"reason: expected one of {', '.join(REFUSALS)}, got {reason!r}")
    when = format_time(received_at)
    _count(run, reason, when)
    run("INSERT INTO sms_log (received_at, sender, reason, coding, text) VALUES (?, ?, ?, ?, ?)",
        (when, _clean(sender, MAX_SENDER_CHARS), reason, _clean(coding, 10), _clean(text, MAX_TEXT_CHARS)))
    run("DELETE FROM sms_log WHERE id <= (SELECT max(id) FROM sms_log) - ?", (KEPT_MESSAGES,))


def refused_counts(run: Run) -> dict[str, int]:
    """Messages not stored as a heartbeat, per reason (only the reasons met)."""
    return {reason: int(n) for reason, n in run("SELECT reason, n FROM sms_refused ORDER BY reason", ())}


def kept_heartbeats(run: Run) -> dict[str, KeptHeartbeat]:
    """Per unit, its latest verified heartbeat."""
    rows = run("SELECT device, received_at, sender, source, fields FROM unit_heartbeats ORDER BY device", ())
    return {device: KeptHeartbeat(heartbeat_from_fields(json.loads(fields)), parse_time(received), sender, source)
            for device, received, sender, source, fields in rows}


def logged_messages(run: Run) -> list[dict[str, Any]]:
    """The messages kept in the log, oldest first: ``received_at``, ``sender``, ``reason``,
    ``coding``, ``text``."""
    rows = run("SELECT received_at, sender, reason, coding, text FROM sms_log ORDER BY id", ())
    return [{"received_at": parse_time(r[0]), "sender": r[1], "reason": r[2], "coding": r[3], "text": r[4]}
            for r in rows]
