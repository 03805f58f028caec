"""The centre's ledger of each unit's seq numbers: what is stored, what is gone, what is missing.

Kept in the same transaction as the readings (tables ``seq_ranges``, ``gone`` and
``unit_ledger``), so it is always exactly what the database holds.  From it come:

- the :class:`~agent.shared.protocol.Confirmation` a collector publishes to the unit after a commit;
- the holes at the centre, each with why it is there (``blankspot units``, ``report``), and
  the log lines when a hole opens or is filled.

A seq the centre does not hold is **settled** when the unit can never send it: the unit said it
dropped it (``buffer_overflow`` event), its buffer was unusable or replaced below some seq
(``buffer_corrupt``, ``buffer_replaced``), it lies below the lowest seq the unit still keeps
(``kept_from`` in its status), or the centre itself refused it (quarantined).  Otherwise it is
**missing**, and the confirmation lists it so the unit sends it again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from agent.shared import seq_ranges
from agent.shared.protocol import MAX_CONFIRM_HOLES, Confirmation
from agent.shared.reading import Event, Reading
from agent.shared.seq_ranges import Range

log = logging.getLogger(__name__)

# Why a seq is not at the centre, as shown by `blankspot units` and the report.
DROPPED = "dropped"      # the unit's buffer was full
CORRUPT = "corrupt"      # in a buffer file the unit had to move aside (recoverable by hand from it)
REPLACED = "replaced"    # the unit's buffer file was missing: gone with it
REFUSED = "refused"      # the centre quarantined it
LOST = "lost"            # the unit no longer keeps it, and did not say why: lost for good
RESEND = "resend"        # the unit still keeps it: waiting to be sent again
UNKNOWN = "unknown"      # no status from the unit yet says what it keeps
SETTLED_REASONS = (DROPPED, CORRUPT, REPLACED, REFUSED)

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Hole:
    first: int
    last: int
    reason: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class View:
    """What the centre holds of one unit, as a confirmation says it."""

    upto: int
    top: int
    holes: tuple[Range, ...]  # at most MAX_CONFIRM_HOLES, above upto
    missing: list[Range]  # every missing seq up to top, unlisted ones included


def gone_ranges(reading: Reading) -> list[tuple[int, int, str]]:
    """Seq ranges a unit's event says it can never send: ``(first, last, reason)``."""
    part = reading.part
    if not isinstance(part, Event):
        return []
    data = part.data if isinstance(part.data, dict) else {}
    if part.type == "buffer_overflow":
        ranges = data.get("ranges")
        if isinstance(ranges, list):
            return [(r[0], r[1], DROPPED) for r in ranges
                    if isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r) and 1 <= r[0] <= r[1]]
    elif part.type in ("buffer_corrupt", "buffer_replaced"):
        next_seq = data.get("next_seq")
        if type(next_seq) is int and next_seq > 1:
            return [(1, next_seq - 1, CORRUPT if part.type == "buffer_corrupt" else REPLACED)]
    return []


def settled(gone: Iterable[tuple[int, int, str]], kept_from: int | None) -> list[Range]:
    below = [(1, kept_from - 1)] if kept_from is not None and kept_from > 1 else []
    return seq_ranges.normalize([(g[0], g[1]) for g in gone] + below)


def centre_view(stored: list[Range], gone: Iterable[tuple[int, int, str]], kept_from: int | None) -> View:
    """Pure: the confirmation's ``upto``, ``top`` and ``holes`` from the ledger's rows."""
    done = settled(gone, kept_from)
    top = stored[-1][1] if stored else 0
    known = seq_ranges.union(stored, done)
    upto = known[0][1] if known and known[0][0] == 1 else 0
    missing = seq_ranges.subtract([(1, top)], known) if top else []
    holes = tuple(h for h in missing if h[0] > upto)
    if len(holes) > MAX_CONFIRM_HOLES:
        # Say less rather than something wrong: above the last hole listed nothing is claimed.
        top = holes[MAX_CONFIRM_HOLES][0] - 1
        holes = holes[:MAX_CONFIRM_HOLES]
    return View(upto, top, holes, missing)


def explain_holes(stored: list[Range], gone: Iterable[tuple[int, int, str]], kept_from: int | None) -> list[Hole]:
    """Every seq up to the highest stored that the centre lacks, in ranges with their reason."""
    top = stored[-1][1] if stored else 0
    if not top:
        return []
    absent = seq_ranges.subtract([(1, top)], stored)
    pieces: list[Hole] = []
    remaining = absent
    for reason in SETTLED_REASONS:
        mine = seq_ranges.intersect(remaining, [(g[0], g[1]) for g in gone if g[2] == reason])
        pieces += [Hole(a, b, reason) for a, b in mine]
        remaining = seq_ranges.subtract(remaining, mine)
    if kept_from is None:
        pieces += [Hole(a, b, UNKNOWN) for a, b in remaining]
    else:
        below = seq_ranges.intersect(remaining, [(1, kept_from - 1)]) if kept_from > 1 else []
        pieces += [Hole(a, b, LOST) for a, b in below]
        pieces += [Hole(a, b, RESEND) for a, b in seq_ranges.subtract(remaining, below)]
    return sorted(pieces, key=lambda h: h.first)


@dataclass
class LedgerChange:
    """What one commit changed for one unit."""

    device: str
    confirmation: Confirmation
    changed: bool  # the confirmation says something the last one did not
    restored: bool = False  # the unit applied a rev this database never gave: tell it now
    unit_rev: int | None = None  # the rev the unit's status in this commit says it applied
    opened: list[Range] = field(default_factory=list)
    filled: list[Range] = field(default_factory=list)
    readings: int = 0  # of this unit in the commit


@dataclass
class UnitWork:
    """What a commit brings for one unit."""

    seqs: list[int] = field(default_factory=list)
    gone: list[tuple[int, int, str]] = field(default_factory=list)
    kept_from: int | None = None
    unit_rev: int | None = None  # the confirmation rev the unit last applied, from its status
    status: bool = False


def unit_work_of(readings: Iterable[Reading], refused: Iterable[tuple[str, int]],
                 statuses: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, UnitWork]:
    """Group a commit's content by unit; statuses in the order they were taken."""
    units: dict[str, UnitWork] = {}
    for reading in readings:
        unit = units.setdefault(reading.device, UnitWork())
        unit.seqs.append(reading.seq)  # type: ignore[arg-type]
        unit.gone += gone_ranges(reading)
    for device, seq in refused:
        units.setdefault(device, UnitWork()).gone.append((seq, seq, REFUSED))
    for device, payload in statuses:
        unit = units.setdefault(device, UnitWork())
        unit.status = True
        backlog = payload.get("backlog")
        kept_from = backlog.get("kept_from") if isinstance(backlog, dict) else None
        if type(kept_from) is int and kept_from >= 1:
            unit.kept_from = kept_from
        confirm = payload.get("confirm")
        rev = confirm.get("rev") if isinstance(confirm, dict) else None
        if type(rev) is int and rev >= 0:
            unit.unit_rev = rev
    return units


class SeqLedger:
    """The ledger's tables, inside the caller's transaction.  SQL with ``?`` placeholders."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def load(self, device: str) -> tuple[list[Range], list[tuple[int, int, str]], tuple[int, int | None, int | None]]:
        stored = [(r[0], r[1]) for r in self.run(
            "SELECT first_seq, last_seq FROM seq_ranges WHERE device = ? ORDER BY first_seq", (device,))]
        gone = [(r[0], r[1], r[2]) for r in self.run(
            "SELECT first_seq, last_seq, reason FROM gone WHERE device = ? ORDER BY first_seq", (device,))]
        row = self.run("SELECT rev, kept_from, unit_rev, prev_kept_from FROM unit_ledger WHERE device = ?", (device,))
        ledger = (row[0][0], row[0][1], row[0][2], row[0][3]) if row else (0, None, None, None)
        return stored, gone, ledger

    def update(self, device: str, work: UnitWork) -> LedgerChange:
        stored, gone, (rev, kept_from, unit_rev, prev_kept) = self.load(device)
        before = centre_view(stored, gone, kept_from)
        new_stored = seq_ranges.union(stored, seq_ranges.from_seqs(work.seqs)) if work.seqs else stored
        new_kept = max(kept_from or 0, work.kept_from or 0) or None
        if new_kept != kept_from:
            prev_kept = kept_from
        new_gone = [g for g in dict.fromkeys(_clip_restarts(work.gone, kept_from, prev_kept)) if g not in gone]
        after = centre_view(new_stored, gone + new_gone, new_kept)
        changed = (after.upto, after.top, after.holes) != (before.upto, before.top, before.holes)
        # A unit that applied a rev this database never gave (or not yet) has heard from a
        # database that was further along: this one was restored from a backup.  Continue
        # above its rev so that the unit listens, and tell it at once what is missing.
        behind = work.unit_rev is not None and work.unit_rev > rev
        new_rev = (max(rev, work.unit_rev or 0) + 1) if (changed or behind or not rev) else rev
        if behind:
            log.warning("unit %s has applied confirmation rev %d, later than this database's %d: the database is "
                        "older than what the unit was told (restored from a backup?); asking the unit to send "
                        "again what it lacks", device, work.unit_rev, rev)
        if new_stored != stored:
            old = set(stored)
            for first, last in stored:
                if (first, last) not in set(new_stored):
                    self.run("DELETE FROM seq_ranges WHERE device = ? AND first_seq = ?", (device, first))
            for first, last in new_stored:
                if (first, last) not in old:
                    self.run("INSERT INTO seq_ranges (device, first_seq, last_seq) VALUES (?, ?, ?)",
                             (device, first, last))
        for first, last, reason in new_gone:
            self.run("INSERT INTO gone (device, first_seq, last_seq, reason) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT DO NOTHING", (device, first, last, reason))
        self.run("INSERT INTO unit_ledger (device, rev, kept_from, prev_kept_from, unit_rev) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (device) DO UPDATE SET rev = excluded.rev, kept_from = excluded.kept_from, "
                 "prev_kept_from = excluded.prev_kept_from, unit_rev = excluded.unit_rev",
                 (device, new_rev, new_kept, prev_kept, work.unit_rev if work.unit_rev is not None else unit_rev))
        confirmation = Confirmation(device, new_rev, after.upto, after.top, after.holes)
        return LedgerChange(
            device, confirmation, changed or new_rev != rev, behind, work.unit_rev if work.status else None,
            opened=seq_ranges.subtract(after.missing, before.missing),
            filled=seq_ranges.subtract(before.missing, after.missing),
            readings=len(work.seqs),
        )

    def update_all(self, units: dict[str, UnitWork]) -> list[LedgerChange]:
        # In device order: two collectors committing the same units lock their rows alike.
        return [self.update(device, units[device]) for device in sorted(units)]


def _clip_restarts(gone: list[tuple[int, int, str]], kept_from: int | None,
                   prev_kept: int | None) -> list[tuple[int, int, str]]:
    """A new buffer says "everything below ``next_seq`` is gone with the old one"; of that, only
    what the old buffer still held was in it.  Below what it kept, the earlier reason stands
    (dropped, or lost).  The unit's status from the new buffer may come first (it is published
    before any batch), so its kept_from may already be the new buffer's own."""
    clipped = []
    for first, last, reason in gone:
        if reason in (CORRUPT, REPLACED):
            old = kept_from if kept_from is not None and kept_from <= last else prev_kept
            first = max(first, old or 1)
        if first <= last:
            clipped.append((first, last, reason))
    return clipped


def holes_of(run: Run, device: str) -> list[Hole]:
    """The explained holes of one unit, read from the ledger."""
    stored, gone, (_rev, kept_from, _unit_rev, _prev) = SeqLedger(run).load(device)
    return explain_holes(stored, gone, kept_from)
