"""The centre's seq ledger: what it holds of each unit, what is gone for good, and what a unit must send again.

The pure parts first, by tables: which events say seqs are gone, which seqs are settled, the
confirmation a collector publishes (``centre_view``), and why each hole is there
(``explain_holes``).  Then the properties that make a confirmation safe to act on: a unit must
never be told the centre holds a reading it does not.  Last, :class:`SeqLedger` in a real
SQLite collector database, through :class:`SqliteStore`.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.shared import seq_ranges
from agent.centre.ledger import (
    CORRUPT, DROPPED, LOST, REFUSED, REPLACED, RESEND, SETTLED_REASONS, UNKNOWN, Hole, UnitWork, View,
    _clip_restarts, centre_view, explain_holes, gone_ranges, settled, unit_work_of,
)
from agent.centre.store.base import UnitStatus, Work
from agent.centre.store.sqlite import SqliteStore
from agent.shared.protocol import MAX_CONFIRM_HOLES, Confirmation, decode_confirmation, encode_confirmation
from agent.shared.reading import Event, Reading
from tests.support.readings_factory import T0, signal_reading


def event(kind: str, data, seq: int = 50, device: str = "unit-1") -> Reading:
    return Reading(device, T0, "ntp", Event(kind, "", data), None, seq=seq)


def reading(seq: int, device: str = "unit-1") -> Reading:
    return dataclasses.replace(signal_reading(device), seq=seq)


# -- gone_ranges: what a unit's event says it can never send -----------------------------

@pytest.mark.parametrize("item, expected", [
    # malformed event data says nothing
    (event("buffer_overflow", {}), []),
    (event("buffer_overflow", {"ranges": "4-9"}), []),
    (event("buffer_overflow", {"ranges": {"4": 9}}), []),
    (event("buffer_overflow", {"ranges": [[4]]}), []),
    (event("buffer_overflow", {"ranges": [[4, 9, 12]]}), []),
    (event("buffer_overflow", {"ranges": [[9, 4]]}), []),                  # backwards
    (event("buffer_overflow", {"ranges": [[0, 4]]}), []),                  # seqs start at 1
    (event("buffer_overflow", {"ranges": [["4", "9"]]}), []),
    (event("buffer_overflow", {"ranges": [[4.0, 9]]}), []),
    (event("buffer_overflow", {"ranges": [[True, 9]]}), []),
    (event("buffer_overflow", {"ranges": [(4, 9)]}), []),                  # only JSON's lists
    (event("buffer_overflow", None), []),
    (event("buffer_overflow", ["ranges", [[4, 9]]]), []),
    (event("buffer_corrupt", {}), []),
    (event("buffer_corrupt", {"next_seq": "1007"}), []),
    (event("buffer_corrupt", {"next_seq": 1007.0}), []),
    (event("buffer_corrupt", {"next_seq": True}), []),
    (event("buffer_corrupt", {"next_seq": -5}), []),
    (event("buffer_corrupt", {"next_seq": 1}), []),                        # nothing below seq 1
    (event("buffer_replaced", {"next_seq": None}), []),
    # other readings and events say nothing
    (reading(50), []),
    (event("tag", {"next_seq": 1007, "ranges": [[4, 9]]}), []),
    (event("modem_recovery", {"action": "reset"}), []),
    # what the unit says it dropped or lost
    (event("buffer_overflow", {"dropped": 6, "ranges": [[4, 9]]}), [(4, 9, DROPPED)]),
    (event("buffer_overflow", {"ranges": [[4, 9], [12, 12]]}), [(4, 9, DROPPED), (12, 12, DROPPED)]),
    (event("buffer_overflow", {"ranges": [[4, 9], "x", [12, 12], [3]]}), [(4, 9, DROPPED), (12, 12, DROPPED)]),
    (event("buffer_corrupt", {"kept_as": "/var/lib/blankspot/buffer.db.corrupt-20261124T030405Z",
                              "next_seq": 1007}), [(1, 1006, CORRUPT)]),
    (event("buffer_corrupt", {"next_seq": 2}), [(1, 1, CORRUPT)]),
    (event("buffer_replaced", {"next_seq": 1007}), [(1, 1006, REPLACED)]),
])
def test_gone_ranges(item: Reading, expected: list) -> None:
    assert gone_ranges(item) == expected


# -- settled ---------------------------------------------------------------------------------

@pytest.mark.parametrize("gone, kept_from, expected", [
    ([], None, []),
    ([], 1, []),                                                        # the unit keeps everything
    ([], 40, [(1, 39)]),                                                # below what the unit keeps
    ([(4, 9, DROPPED)], None, [(4, 9)]),
    ([(4, 9, DROPPED), (10, 12, REFUSED), (20, 20, CORRUPT)], None, [(4, 12), (20, 20)]),
    ([(4, 9, DROPPED), (30, 50, REPLACED)], 20, [(1, 19), (30, 50)]),
    ([(4, 9, DROPPED), (4, 9, CORRUPT)], None, [(4, 9)]),
])
def test_settled(gone: list, kept_from: int | None, expected: list) -> None:
    assert settled(gone, kept_from) == expected


# -- centre_view: the confirmation -------------------------------------------------------

def every_other(first: int, count: int) -> list[tuple[int, int]]:
    """``count`` single seqs first, first + 2, first + 4, ..."""
    return [(s, s) for s in range(first, first + 2 * count, 2)]


@pytest.mark.parametrize("stored, gone, kept_from, expected", [
    # nothing yet
    ([], [], None, View(0, 0, (), [])),
    ([], [], 1, View(0, 0, (), [])),
    # all there
    ([(1, 10)], [], None, View(10, 10, (), [])),
    # a hole
    ([(1, 5), (8, 10)], [], None, View(5, 10, ((6, 7),), [(6, 7)])),
    # missing from the start: nothing is upto
    ([(3, 10)], [], None, View(0, 10, ((1, 2),), [(1, 2)])),
    # ... unless the unit no longer keeps those
    ([(3, 10)], [], 3, View(10, 10, (), [])),
    # upto runs through settled gaps: dropped, refused, below kept_from
    ([(1, 5), (8, 10)], [(6, 7, DROPPED)], None, View(10, 10, (), [])),
    ([(1, 5), (10, 12)], [(6, 9, DROPPED)], None, View(12, 12, (), [])),
    ([(2, 5), (7, 7), (9, 12)], [(6, 6, REFUSED), (8, 8, CORRUPT)], 2, View(12, 12, (), [])),
    # settled seqs above everything stored: upto goes past top
    ([(1, 5)], [], 20, View(19, 5, (), [])),
    ([], [(1, 1006, REPLACED)], None, View(1006, 0, (), [])),
    # holes are listed only above upto, and settled ones are not holes
    ([(1, 3), (5, 6), (9, 10)], [(4, 4, DROPPED)], None, View(6, 10, ((7, 8),), [(7, 8)])),
    ([(1, 3), (6, 6), (9, 12)], [(7, 8, DROPPED)], None, View(3, 12, ((4, 5),), [(4, 5)])),
    # exactly MAX_CONFIRM_HOLES holes: all listed, top stands
    (every_other(2, MAX_CONFIRM_HOLES), [], None,
     View(0, 128, tuple(every_other(1, MAX_CONFIRM_HOLES)), every_other(1, MAX_CONFIRM_HOLES))),
    # more: the first 64 are listed and top is lowered below the 65th, so nothing wrong is claimed
    (every_other(2, 70), [], None,
     View(0, 128, tuple(every_other(1, MAX_CONFIRM_HOLES)), every_other(1, 70))),
    (every_other(2, 70) + [(200, 300)], [], None,
     View(0, 128, tuple(every_other(1, MAX_CONFIRM_HOLES)), every_other(1, 70) + [(141, 199)])),
])
def test_centre_view(stored: list, gone: list, kept_from: int | None, expected: View) -> None:
    assert centre_view(stored, gone, kept_from) == expected


# -- explain_holes: why each missing seq is missing --------------------------------------

@pytest.mark.parametrize("stored, gone, kept_from, expected", [
    ([], [(1, 9, DROPPED)], 5, []),                                       # nothing stored: nothing to explain
    ([(1, 10)], [], None, []),
    # no status yet: nobody knows
    ([(5, 10)], [], None, [Hole(1, 4, UNKNOWN)]),
    # the unit keeps from 3: below is lost for good, the rest it will send again
    ([(5, 10)], [], 3, [Hole(1, 2, LOST), Hole(3, 4, RESEND)]),
    ([(5, 10)], [], 1, [Hole(1, 4, RESEND)]),
    ([(5, 10)], [], 5, [Hole(1, 4, LOST)]),
    # what the unit said
    ([(1, 3), (10, 10)], [(4, 6, DROPPED), (7, 8, REFUSED)], 1,
     [Hole(4, 6, DROPPED), Hole(7, 8, REFUSED), Hole(9, 9, RESEND)]),
    # gone ranges above the highest stored are no holes (yet)
    ([(1, 3)], [(4, 6, DROPPED)], None, []),
    ([(1, 3), (10, 10)], [(5, 20, REPLACED)], None, [Hole(4, 4, UNKNOWN), Hole(5, 9, REPLACED)]),
    # precedence where reasons overlap: dropped, corrupt, replaced, refused, then lost / resend
    ([(10, 10)], [(1, 9, CORRUPT), (3, 4, DROPPED)], None,
     [Hole(1, 2, CORRUPT), Hole(3, 4, DROPPED), Hole(5, 9, CORRUPT)]),
    ([(10, 10)], [(1, 9, REPLACED), (2, 3, CORRUPT)], None,
     [Hole(1, 1, REPLACED), Hole(2, 3, CORRUPT), Hole(4, 9, REPLACED)]),
    ([(10, 10)], [(5, 5, REFUSED), (1, 9, REPLACED)], None, [Hole(1, 9, REPLACED)]),
    ([(10, 10)], [(5, 5, REFUSED)], 8, [Hole(1, 4, LOST), Hole(5, 5, REFUSED), Hole(6, 7, LOST),
                                        Hole(8, 9, RESEND)]),
])
def test_explain_holes(stored: list, gone: list, kept_from: int | None, expected: list[Hole]) -> None:
    assert explain_holes(stored, gone, kept_from) == expected


# -- unit_work_of: a commit's content per unit ---------------------------------------------

def test_a_commit_is_grouped_by_unit() -> None:
    units = unit_work_of(
        [reading(3), reading(1, "unit-2"), event("buffer_overflow", {"ranges": [[1, 2]]}, seq=4), reading(5)],
        [("unit-1", 6), ("unit-3", 9)],
        [],
    )
    assert units == {
        "unit-1": UnitWork(seqs=[3, 4, 5], gone=[(1, 2, DROPPED), (6, 6, REFUSED)]),
        "unit-2": UnitWork(seqs=[1]),
        "unit-3": UnitWork(gone=[(9, 9, REFUSED)]),               # only a refused reading
    }


@pytest.mark.parametrize("payload, kept_from, unit_rev", [
    # malformed parts are ignored
    ({}, None, None),
    ({"backlog": "full", "confirm": 7}, None, None),
    ({"backlog": {"kept_from": "40"}, "confirm": {"rev": "7"}}, None, None),
    ({"backlog": {"kept_from": 40.0}, "confirm": {"rev": 7.5}}, None, None),
    ({"backlog": {"kept_from": True}, "confirm": {"rev": True}}, None, None),
    ({"backlog": {"kept_from": 0}, "confirm": {"rev": -1}}, None, None),
    ({"backlog": {"kept_from": None}, "confirm": {"rev": None}}, None, None),
    # what a unit says
    ({"backlog": {"kept_from": 1}, "confirm": {"rev": 0}}, 1, 0),   # rev 0: nothing applied yet
    ({"backlog": {"pending": 3, "kept_from": 40}, "confirm": {"rev": 7}}, 40, 7),
])
def test_what_a_status_says(payload: dict, kept_from: int | None, unit_rev: int | None) -> None:
    units = unit_work_of([], [], [("unit-1", payload)])
    assert units == {"unit-1": UnitWork(kept_from=kept_from, unit_rev=unit_rev, status=True)}


def test_the_last_status_of_a_commit_speaks_for_the_unit() -> None:
    units = unit_work_of([], [], [("unit-1", {"backlog": {"kept_from": 40}, "confirm": {"rev": 7}}),
                                  ("unit-1", {"backlog": {"kept_from": 45}, "confirm": {"rev": 8}}),
                                  ("unit-1", {"state": "offline"})])  # the last will says nothing of these
    assert units["unit-1"] == UnitWork(kept_from=45, unit_rev=8, status=True)


# -- _clip_restarts: a new buffer's "everything below next_seq is gone" -----------------------

@pytest.mark.parametrize("gone, kept_from, prev_kept, expected", [
    # nothing known of the old buffer: all of it
    ([(1, 1006, CORRUPT)], None, None, [(1, 1006, CORRUPT)]),
    # the old buffer held from 40: below, the earlier reason stands
    ([(1, 1006, CORRUPT)], 40, None, [(40, 1006, CORRUPT)]),
    ([(1, 1006, REPLACED)], 40, 12, [(40, 1006, REPLACED)]),
    # the new buffer's status came first (kept_from is its own, above the range): the one before counts
    ([(1, 1006, CORRUPT)], 1007, 40, [(40, 1006, CORRUPT)]),
    ([(1, 1006, CORRUPT)], 1007, None, [(1, 1006, CORRUPT)]),
    # all of it below what the old buffer held: nothing left
    ([(1, 30, REPLACED)], 1007, 40, []),
    # other reasons are the unit's word, unclipped
    ([(4, 9, DROPPED), (12, 12, REFUSED)], 40, 30, [(4, 9, DROPPED), (12, 12, REFUSED)]),
])
def test_clip_restarts(gone: list, kept_from: int | None, prev_kept: int | None, expected: list) -> None:
    assert _clip_restarts(gone, kept_from, prev_kept) == expected


# -- properties ----------------------------------------------------------------------------

@st.composite
def ledgers(draw) -> tuple[list, list, int | None]:
    """A stored set with many holes (often more than a confirmation lists), gone ranges, kept_from."""
    size = draw(st.integers(0, 40))
    bits = int.from_bytes(draw(st.binary(min_size=size, max_size=size)), "little")  # up to 320 seqs, ~half held
    stored = seq_ranges.from_seqs(seq for seq in range(1, 321) if bits >> (seq - 1) & 1)
    gone = draw(st.lists(st.tuples(st.integers(1, 320), st.integers(0, 30), st.sampled_from(SETTLED_REASONS))
                         .map(lambda t: (t[0], t[0] + t[1], t[2])), max_size=6))
    kept_from = draw(st.none() | st.integers(1, 320))
    return stored, gone, kept_from


def as_set(ranges) -> set[int]:
    return {seq for first, last in ranges for seq in range(first, last + 1)}


@settings(max_examples=300)
@given(ledgers())
def test_a_confirmation_never_claims_what_the_centre_does_not_hold(ledger: tuple) -> None:
    stored, gone, kept_from = ledger
    view = centre_view(stored, gone, kept_from)
    confirmation = Confirmation("unit-1", 1, view.upto, view.top, view.holes)
    known = as_set(stored) | as_set(settled(gone, kept_from))
    claimed = as_set(confirmation.covered())
    assert claimed <= known, f"claims {seq_ranges.text(seq_ranges.from_seqs(claimed - known))} it does not hold"
    assert decode_confirmation(encode_confirmation(confirmation), "unit-1") == confirmation, "always valid"


@settings(max_examples=300)
@given(ledgers())
def test_every_missing_seq_is_a_listed_hole_or_above_top(ledger: tuple) -> None:
    stored, gone, kept_from = ledger
    view = centre_view(stored, gone, kept_from)
    highest = stored[-1][1] if stored else 0
    missing = set(range(1, highest + 1)) - as_set(stored) - as_set(settled(gone, kept_from))
    assert as_set(view.missing) == missing
    listed = as_set(view.holes)
    assert {seq for seq in missing if seq <= view.top} <= listed
    assert len(view.holes) <= MAX_CONFIRM_HOLES
    assert view.top == highest or len(view.holes) == MAX_CONFIRM_HOLES, "top is lowered only for the hole limit"


@settings(max_examples=300)
@given(ledgers())
def test_explain_holes_partitions_what_the_centre_lacks(ledger: tuple) -> None:
    stored, gone, kept_from = ledger
    holes = explain_holes(stored, gone, kept_from)
    highest = stored[-1][1] if stored else 0
    assert [h.first for h in holes] == sorted(h.first for h in holes)
    seqs = [seq for h in holes for seq in range(h.first, h.last + 1)]
    assert len(seqs) == len(set(seqs)), "no seq explained twice"
    assert set(seqs) == set(range(1, highest + 1)) - as_set(stored), "every missing seq explained"
    for hole in holes:
        span = as_set([(hole.first, hole.last)])
        if hole.reason in SETTLED_REASONS:
            assert span <= as_set([(g[0], g[1]) for g in gone if g[2] == hole.reason])
        elif hole.reason == LOST:
            assert kept_from is not None and hole.last < kept_from
        elif hole.reason == RESEND:
            assert kept_from is not None and hole.first >= kept_from
        else:
            assert hole.reason == UNKNOWN and kept_from is None
    assert sum(h.count for h in holes) == len(seqs)


# -- SeqLedger in a real collector database ------------------------------------------------

@pytest.fixture
def centre(tmp_path: Path):
    store = SqliteStore(tmp_path / "centre.db")
    yield store
    store.close()


def status(rev: int | None = None, kept_from: int | None = None, minutes: int = 0) -> UnitStatus:
    payload: dict = {"schema": "blankspot.status/1", "device": "unit-1", "state": "online"}
    if kept_from is not None:
        payload["backlog"] = {"kept_from": kept_from}
    if rev is not None:
        payload["confirm"] = {"rev": rev}
    return UnitStatus("unit-1", "online", T0 + timedelta(minutes=minutes), payload)


def commit(store: SqliteStore, *seqs: int, units: list[UnitStatus] | None = None, items: list[Reading] = ()):
    result = store.commit(Work(readings=[reading(s) for s in seqs] + list(items), units=units or [], batches=1))
    [change] = result.changes
    return change


def test_readings_out_of_order_open_then_fill_a_hole(centre: SqliteStore) -> None:
    first = commit(centre, 1, 2, 3)
    assert (first.confirmation, first.changed, first.opened, first.filled) == (
        Confirmation("unit-1", 1, 3, 3, ()), True, [], [])
    gap = commit(centre, 6)
    assert (gap.confirmation, gap.opened, gap.filled) == (Confirmation("unit-1", 2, 3, 6, ((4, 5),)), [(4, 5)], [])
    assert centre.holes("unit-1") == [Hole(4, 5, UNKNOWN)]
    half = commit(centre, 5)
    assert (half.confirmation, half.opened, half.filled) == (Confirmation("unit-1", 3, 3, 6, ((4, 4),)), [], [(5, 5)])
    full = commit(centre, 4)
    assert (full.confirmation, full.opened, full.filled) == (Confirmation("unit-1", 4, 6, 6, ()), [], [(4, 4)])
    assert centre.holes("unit-1") == []
    assert centre.ledger() == {"unit-1": {"rev": 4, "kept_from": None, "unit_rev": None, "stored": 6, "top": 6}}
    counters = centre.counters()[""]
    assert (counters["holes_opened"], counters["holes_filled"]) == (2, 2)


def test_the_rev_grows_only_when_the_view_changes(centre: SqliteStore) -> None:
    assert commit(centre, 1, 2, 3).confirmation.rev == 1
    again = commit(centre, 2, 3)                                   # duplicates
    assert (again.confirmation.rev, again.changed, again.restored) == (1, False, False)
    quiet = commit(centre, units=[status(rev=1, kept_from=1)])      # a status that changes nothing
    assert (quiet.confirmation.rev, quiet.changed, quiet.restored) == (1, False, False)
    above = commit(centre, 9)
    assert (above.confirmation.rev, above.changed) == (2, True)
    kept = commit(centre, units=[status(rev=2, kept_from=9, minutes=1)])  # 4..8 now settled: a change
    assert (kept.confirmation, kept.changed, kept.restored) == (Confirmation("unit-1", 3, 9, 9, ()), True, False)
    assert centre.holes("unit-1") == [Hole(4, 8, LOST)]


def test_a_status_alone_gives_a_first_rev(centre: SqliteStore) -> None:
    change = commit(centre, units=[status(rev=0, kept_from=1)])
    assert (change.confirmation, change.changed) == (Confirmation("unit-1", 1, 0, 0, ()), True)


def test_a_database_restored_from_a_backup_continues_above_the_units_rev(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "centre.db"
    with SqliteStore(path) as store:
        commit(store, 1, 2, 3)
    shutil.copy(path, tmp_path / "backup.db")                      # last night's backup: rev 1, seqs 1-3
    with SqliteStore(path) as store:
        assert [commit(store, seq).confirmation.rev for seq in (4, 5, 6)] == [2, 3, 4]
    with SqliteStore(tmp_path / "backup.db") as restored, caplog.at_level(logging.WARNING):
        change = commit(restored, units=[status(rev=4)])          # the unit has applied rev 4
        assert change.confirmation == Confirmation("unit-1", 5, 3, 3, ())   # above 4, so the unit applies it
        assert (change.changed, change.restored) == (True, True)
        assert "restored from a backup" in caplog.text
        later = commit(restored, units=[status(rev=5, minutes=1)])
        assert (later.confirmation.rev, later.changed, later.restored) == (5, False, False)
        assert restored.ledger()["unit-1"]["unit_rev"] == 5


def test_a_units_status_says_which_rev_it_applied_without_a_new_rev(centre: SqliteStore) -> None:
    """The collector decides from it whether the unit missed a confirmation it published."""
    for seq in (1, 3, 5):
        commit(centre, seq)
    change = commit(centre, units=[status(rev=1)])
    assert (change.confirmation.rev, change.changed, change.restored, change.unit_rev) == (3, False, False, 1)
    without_status = commit(centre, 1)
    assert without_status.unit_rev is None, "only a status says what the unit applied"


def test_a_full_buffer_settles_what_it_dropped(centre: SqliteStore) -> None:
    commit(centre, 1, 2, 3)
    change = commit(centre, 11, items=[event("buffer_overflow", {"dropped": 6, "ranges": [[4, 9]]}, seq=10)])
    assert change.confirmation == Confirmation("unit-1", 2, 11, 11, ())
    assert centre.holes("unit-1") == [Hole(4, 9, DROPPED)]


@pytest.mark.parametrize("status_first", [False, True], ids=["event first", "new buffer's status first"])
def test_a_unit_whose_buffer_was_moved_aside(centre: SqliteStore, status_first: bool) -> None:
    """The old buffer held 40 onwards (1-39 were confirmed and pruned); the centre got 40-45 of it."""
    commit(centre, *range(40, 46), units=[status(rev=0, kept_from=40)])
    corrupt = event("buffer_corrupt", {"kept_as": "buffer.db.corrupt-20261124T030405Z", "next_seq": 1007}, seq=1007)
    new_status = status(rev=1, kept_from=1007, minutes=5)
    if status_first:
        commit(centre, units=[new_status])
        change = commit(centre, items=[corrupt])
    else:
        change = commit(centre, items=[corrupt], units=[new_status])
    assert change.confirmation.upto == 1007
    assert centre.holes("unit-1") == [Hole(1, 39, LOST), Hole(46, 1006, CORRUPT)]


commits = st.lists(
    st.tuples(
        st.sets(st.integers(1, 60), max_size=8),                     # readings that arrive
        st.none() | st.tuples(st.integers(1, 60), st.integers(0, 5)),  # a unit's overflow event: [first, first + n]
        st.none() | st.integers(1, 70),                              # a status's kept_from
    ),
    min_size=1, max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(commits)
def test_in_the_database_the_ledger_is_what_the_readings_table_holds(tmp_path_factory, history: list) -> None:
    """After any commits, the stored ranges are exactly the readings table's, and each confirmation
    published claims only readings in that table or settled by what the unit said."""
    path = tmp_path_factory.mktemp("centre") / "centre.db"
    said_gone: set[int] = set()
    kept = 0
    event_seq = 1000
    with SqliteStore(path) as store:
        for minute, (seqs, overflow, kept_from) in enumerate(history):
            items = [reading(s) for s in sorted(seqs)]
            if overflow is not None:
                first, n = overflow
                event_seq += 1
                items.append(event("buffer_overflow", {"ranges": [[first, first + n]]}, seq=event_seq))
                said_gone |= set(range(first, first + n + 1))
            units = [status(kept_from=kept_from, minutes=minute)] if kept_from is not None else []
            kept = max(kept, kept_from or 0)
            result = store.commit(Work(readings=items, units=units, batches=1))
            held = {seq for _, seq in store.reading_keys("unit-1")}
            claimed = as_set(result.changes[0].confirmation.covered()) if result.changes else set()
            assert claimed <= held | said_gone | set(range(1, kept)), "a confirmation claims what is not there"
            assert store.stored_ranges("unit-1") == seq_ranges.from_seqs(held)
