"""The fleet as the centre sees it: each unit's last status, what is stored, and its holes explained.

``blankspot units`` prints it; ``blankspot report`` ends with its holes section.  Everything
comes from the collector's database: the units' last statuses (backlog as the unit reported
it), the seq ledger (:mod:`agent.centre.ledger`), and the heartbeats units sent by SMS when
their data link was down (:mod:`agent.centre.sms_inbox`): a unit whose latest heartbeat
arrived after its last status and its last reading is shown "alive by SMS".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TextIO

from agent.centre.store.sms_kept import KeptHeartbeat
from agent.shared.operators import operator_name

from agent.centre.ledger import CORRUPT, DROPPED, LOST, REFUSED, REPLACED, RESEND, UNKNOWN, Hole
from agent.centre.store.base import Store
from agent.shared.reading import format_time

REASON_TEXT = {
    DROPPED: "dropped by the unit (its buffer was full)",
    CORRUPT: "in a buffer file the unit moved aside as unusable, or never numbered (recoverable by hand "
             "from that file)",
    REPLACED: "gone with a buffer file that was missing on the unit",
    REFUSED: "refused by the centre (quarantined)",
    LOST: "lost for good: the unit no longer keeps them",
    RESEND: "waiting to be sent again: the unit still keeps them",
    UNKNOWN: "not yet known: no status from the unit says what it keeps",
}


@dataclass
class UnitView:
    device: str
    state: str | None
    last_seen: str | None
    stored: int
    top: int
    backlog: dict[str, Any] | None
    fault: str | None
    holes: list[Hole] = field(default_factory=list)
    # The latest heartbeat by SMS, when newer than the last status and the last reading.
    alive_by_sms: dict[str, Any] | None = None

    @property
    def missing(self) -> int:
        return sum(h.count for h in self.holes)

    def as_dict(self) -> dict[str, Any]:
        table = asdict(self)
        table["holes"] = [{"first": h.first, "last": h.last, "count": h.count, "reason": h.reason}
                          for h in self.holes]
        table["missing"] = self.missing
        if self.alive_by_sms is None:  # units without heartbeats keep the keys they had
            del table["alive_by_sms"]
        return table


def fleet(store: Store) -> list[UnitView]:
    """Every unit the centre has heard of, by status or by readings, sorted by device."""
    statuses = {u["device"]: u for u in store.units()}
    ledger = store.ledger()
    heartbeats = store.heartbeats()
    received = store.last_received_per_unit() if heartbeats else {}
    views = []
    for device in sorted(set(statuses) | set(ledger) | set(heartbeats)):
        status = statuses.get(device)
        payload = status["status"] if status else {}
        entry = ledger.get(device, {})
        backlog = payload.get("backlog") if isinstance(payload.get("backlog"), dict) else None
        fault = payload.get("fault") if isinstance(payload.get("fault"), str) else None
        seen: datetime | None = status["last_seen"] if status else None
        views.append(UnitView(
            device=device, state=status["state"] if status else None,
            last_seen=format_time(seen) if seen else None,
            stored=entry.get("stored", 0), top=entry.get("top", 0), backlog=backlog, fault=fault,
            holes=store.holes(device),
            alive_by_sms=_alive_by_sms(heartbeats.get(device), seen, received.get(device)),
        ))
    return views


def _alive_by_sms(kept: KeptHeartbeat | None, status_at: datetime | None,
                  reading_at: datetime | None) -> dict[str, Any] | None:
    """The heartbeat as ``blankspot units --json`` gives it, when it came after the unit's last
    status and last reading (all three as the centre received them: one clock)."""
    if kept is None or any(at is not None and at >= kept.received_at for at in (status_at, reading_at)):
        return None
    hb = kept.heartbeat
    mcc, mnc = (hb.operator[:3], hb.operator[3:]) if hb.operator else (None, None)
    return {
        "time": format_time(hb.time), "received_at": format_time(kept.received_at), "sender": kept.sender,
        "source": kept.source, "counter": hb.counter, "backlog": hb.backlog,
        "oldest": format_time(hb.oldest) if hb.oldest else None,
        "oldest_age_s": int((hb.time - hb.oldest).total_seconds()) if hb.oldest else None,
        "last_seq": hb.last_seq, "lat": hb.lat, "lon": hb.lon, "rat": hb.rat,
        "operator": f"{mcc}-{mnc}" if mcc else None, "operator_name": operator_name(mcc, mnc),
        "level_dbm": hb.level_dbm, "uptime_s": hb.uptime_s, "reason": hb.reason,
    }


def alive_by_sms_text(sms: dict[str, Any]) -> str:
    """``alive by SMS at <time>, backlog N (oldest <age>), last signal <rat> <operator> <level>
    dBm, data down: <reason>``; the age is the oldest waiting reading's when the unit wrote it."""
    backlog = f"backlog {sms['backlog']}"
    if sms.get("oldest_age_s") is not None:
        backlog += f" (oldest {age_text(sms['oldest_age_s'])})"
    signal = [sms.get("rat"), sms.get("operator_name") or sms.get("operator"),
              f"{sms['level_dbm']} dBm" if sms.get("level_dbm") is not None else None]
    known = " ".join(str(part) for part in signal if part)
    return (f"alive by SMS at {sms['time']}, {backlog}, last signal {known or 'not known'}, "
            f"data down: {sms['reason'].replace('_', ' ')}")


def age_text(seconds: int) -> str:
    """``2d 3h``, ``3h 48m``, ``12m``, ``40s``: two units at most."""
    days, rest = divmod(max(0, int(seconds)), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def write_units(views: list[UnitView], out: TextIO, refused_sms: dict[str, int] | None = None) -> None:
    """The fleet as text for an operator: one line per unit, then what it says by SMS, its
    holes, and the SMS refused (when any were)."""
    if not views:
        out.write("No units yet: nothing stored and no status received.\n")
        _write_refused(refused_sms, out)
        return
    out.write(f"{'unit':<20} {'state':<8} {'last seen':<24} {'stored':>9} {'top seq':>9} "
              f"{'waiting':>8} {'unconf.':>8} {'missing':>8}\n")
    for v in views:
        backlog = v.backlog or {}
        out.write(f"{v.device:<20} {v.state or '-':<8} {v.last_seen or '-':<24} {v.stored:>9} {v.top:>9} "
                  f"{_num(backlog.get('pending')):>8} {_num(backlog.get('unconfirmed')):>8} {v.missing:>8}\n")
    for v in views:
        if v.alive_by_sms:
            out.write(f"\n{v.device}: {alive_by_sms_text(v.alive_by_sms)}\n")
        if v.fault:
            out.write(f"\n{v.device}: unit reports a fault: {v.fault}\n")
        if v.holes:
            out.write(f"\n{v.device}: {v.missing} readings up to seq {v.top} are not at the centre:\n")
            write_holes(v.holes, out, indent="  ")
    _write_refused(refused_sms, out)


def _write_refused(refused_sms: dict[str, int] | None, out: TextIO) -> None:
    if refused_sms:
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(refused_sms.items()))
        out.write(f"\nSMS not stored as heartbeats: {counts}\n")


def write_holes(holes: list[Hole], out: TextIO, indent: str = "") -> None:
    for h in holes:
        span = f"seq {h.first}" if h.first == h.last else f"seq {h.first}-{h.last}"
        out.write(f"{indent}{span} ({h.count}): {REASON_TEXT.get(h.reason, h.reason)}\n")


def write_holes_section(views: list[UnitView], out: TextIO) -> None:
    """The report's closing section: which readings each unit took that the centre lacks, and why."""
    out.write("\nReadings missing at the centre (from each unit's numbering):\n")
    with_holes = [v for v in views if v.holes]
    if not with_holes:
        out.write("  none: every unit's readings up to its highest stored seq are here\n")
        return
    for v in with_holes:
        out.write(f"  {v.device}: {v.missing} of seq 1-{v.top}\n")
        write_holes(v.holes, out, indent="    ")


def _num(value: Any) -> str:
    return str(value) if isinstance(value, int) else "-"
