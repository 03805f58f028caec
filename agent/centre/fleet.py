"""The fleet as the centre sees it: each unit's last status, what is stored, and its holes explained.

``blankspot units`` prints it; ``blankspot report`` ends with its holes section.  Everything
comes from the collector's database: the units' last statuses (backlog as the unit reported
it) and the seq ledger (:mod:`agent.centre.ledger`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TextIO

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

    @property
    def missing(self) -> int:
        return sum(h.count for h in self.holes)

    def as_dict(self) -> dict[str, Any]:
        table = asdict(self)
        table["holes"] = [{"first": h.first, "last": h.last, "count": h.count, "reason": h.reason}
                          for h in self.holes]
        table["missing"] = self.missing
        return table


def fleet(store: Store) -> list[UnitView]:
    """Every unit the centre has heard of, by status or by readings, sorted by device."""
    statuses = {u["device"]: u for u in store.units()}
    ledger = store.ledger()
    views = []
    for device in sorted(set(statuses) | set(ledger)):
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
        ))
    return views


def write_units(views: list[UnitView], out: TextIO) -> None:
    """The fleet as text for an operator: one line per unit, then its holes."""
    if not views:
        out.write("No units yet: nothing stored and no status received.\n")
        return
    out.write(f"{'unit':<20} {'state':<8} {'last seen':<24} {'stored':>9} {'top seq':>9} "
              f"{'waiting':>8} {'unconf.':>8} {'missing':>8}\n")
    for v in views:
        backlog = v.backlog or {}
        out.write(f"{v.device:<20} {v.state or '-':<8} {v.last_seen or '-':<24} {v.stored:>9} {v.top:>9} "
                  f"{_num(backlog.get('pending')):>8} {_num(backlog.get('unconfirmed')):>8} {v.missing:>8}\n")
    for v in views:
        if v.fault:
            out.write(f"\n{v.device}: unit reports a fault: {v.fault}\n")
        if v.holes:
            out.write(f"\n{v.device}: {v.missing} readings up to seq {v.top} are not at the centre:\n")
            write_holes(v.holes, out, indent="  ")


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
