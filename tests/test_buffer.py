"""ReadingBuffer: durable, numbered, leased, bounded, and never silent about a loss."""
from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.shared import seq_ranges
from agent.unit import buffer_schema
from agent.unit.buffer import (
    BufferError, ConfirmOutcome, ReadingBuffer, intake_path, read_readings, read_stats, sqlite_files,
)
from agent.shared.protocol import Confirmation
from agent.shared.reading import reading_from_json
from agent.sim.synthetic import SteppedTime
from tests.support.readings_factory import bulky_reading, event_reading, latency_reading, signal_reading


START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def open_buffer(path: Path, **kw) -> ReadingBuffer:
    return ReadingBuffer(path, "unit-1", **kw)


def test_append_assigns_increasing_seq_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with open_buffer(path) as buf:
        seqs = [buf.append(signal_reading()).seq for _ in range(3)]
        seqs += [r.seq for r in buf.append_many([latency_reading(), event_reading()])]
    assert seqs == [1, 2, 3, 4, 5]
    with open_buffer(path) as buf:
        assert buf.append(signal_reading()).seq == 6
        assert buf.pending_count() == 6


def test_the_stored_body_is_the_readings_json_and_its_time_is_the_bodys(tmp_path: Path) -> None:
    """The body is sent as it is stored; the time column (the stats' oldest pending time) is the same text."""
    with open_buffer(tmp_path / "b.db") as buf:
        stored = buf.append(signal_reading())
        batch = buf.take(10)
        oldest = buf.stats().oldest_pending_time
    assert batch is not None and batch.seqs == (1,)
    assert batch.bodies[0] == stored.to_json()
    assert reading_from_json(batch.bodies[0]) == stored
    assert oldest == json.loads(batch.bodies[0])["time"]


def test_take_ack_nack(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 10)
        first = buf.take(4)
        second = buf.take(4)
        assert first.seqs == (1, 2, 3, 4) and second.seqs == (5, 6, 7, 8)
        buf.nack(first)  # a failed delivery goes back ahead of newer readings
        assert buf.take(4).seqs == (1, 2, 3, 4)
        third = buf.take(4)
        assert third.seqs == (9, 10)
        assert buf.take(4) is None
        buf.ack(second)
        assert buf.pending_count() == 6
        stats = buf.stats()
        assert (stats.unconfirmed, stats.delivered_total) == (4, 0), "the broker's PUBACK is not the centre's word"
        buf.ack(third, confirmed=True)  # a unit whose feed has no collector to confirm
        assert buf.stats().delivered_total == 2


def test_release_all_returns_every_lease_oldest_first(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 6)
        buf.take(2), buf.take(2), buf.take(2)
        assert buf.release_all() == 3
        assert [buf.take(2).seqs for _ in range(3)] == [(1, 2), (3, 4), (5, 6)]


def test_leases_are_forgotten_by_a_restart(tmp_path: Path) -> None:
    """A crash between publish and PUBACK means the batch is sent again: at least once."""
    path = tmp_path / "b.db"
    with open_buffer(path) as buf:
        buf.append_many([signal_reading()] * 3)
        assert buf.take(10) is not None
    with open_buffer(path) as buf:
        assert buf.take(10).seqs == (1, 2, 3)


def test_delivered_readings_are_kept_for_inspection(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with open_buffer(path) as buf:
        buf.append_many([signal_reading()] * 3)
        buf.ack(buf.take(2), confirmed=True)
    stats = read_stats(path)
    assert (stats.pending, stats.delivered_kept, stats.delivered_total, stats.last_seq) == (1, 2, 2, 3)


def test_durable_settings(tmp_path: Path) -> None:
    """About the file itself (its journal and its fsyncs), so asked of SQLite directly."""
    with open_buffer(tmp_path / "b.db") as buf:
        assert buf.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert buf.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


BIG = bulky_reading()  # ~500 bytes on disk


def test_full_buffer_prunes_delivered_first(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "b.db", max_bytes=1_000_000) as buf:
        while buf.used_bytes() < 800_000:
            buf.append_many([BIG] * 100)
            buf.ack(buf.take(1000), confirmed=True)
        delivered_before = buf.stats().delivered_kept
        for _ in range(5):
            buf.append_many([BIG] * 100)  # 500 pending fit; together with the delivered they do not
        stats = buf.stats()
    print(f"delivered kept {delivered_before} -> {stats.delivered_kept}, pending {stats.pending}, dropped {stats.dropped_total}")
    assert stats.delivered_kept < delivered_before, "delivered readings were pruned"
    assert stats.pending == 500 and stats.dropped_total == 0, "nothing undelivered went while delivered ones remained"
    assert stats.used_bytes <= 1_000_000


def test_full_buffer_drops_oldest_undelivered_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with open_buffer(path, max_bytes=1_000_000) as buf:
        for _ in range(40):
            buf.append_many([BIG] * 200)
        stats = buf.stats()
    stored = list(read_readings(path))
    kept = [r.seq for r in stored]
    events = [json.loads(r.body) for r in stored if r.kind == "event"]
    dropped = stats.last_seq - len(kept)
    print(f"readings stored {stats.last_seq}, kept {len(kept)}, dropped {dropped}, overflow events kept {len(events)}")
    assert stats.used_bytes <= 1_000_000
    assert dropped > 0 and stats.dropped_total == dropped, "every drop is counted"
    assert kept == list(range(stats.last_seq - len(kept) + 1, stats.last_seq + 1)), "the oldest went first"
    assert events and all(e["event"]["type"] == "buffer_overflow" for e in events)
    assert events[-1]["event"]["data"]["dropped_total"] == dropped, "the latest event carries the running total"
    named = {seq for e in events for first, last in e["event"]["data"]["ranges"] for seq in range(first, last + 1)}
    assert named and named <= set(range(1, stats.last_seq + 1)) - set(kept), "each event names the seqs it dropped"
    assert stats.kept_from == kept[0], "below kept_from the unit holds nothing: the centre can tell what is gone"
    assert read_stats(path).dropped_total == dropped, "the counter is persisted"


def test_corrupt_file_is_moved_aside_and_numbering_continues(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The new file passes SQLite's integrity check: that is about the file itself, so asked in SQL."""
    path = tmp_path / "b.db"
    with open_buffer(path) as buf:
        buf.append_many([signal_reading()] * 5)
    path.write_bytes(b"this is not a database" * 100)
    with open_buffer(path) as buf:
        event = reading_from_json(buf.take(10).bodies[0])
        assert event.part.type == "buffer_corrupt"
        assert event.seq > 5, "seqs of the lost database are never reused"
        assert buf.append(signal_reading()).seq == event.seq + 1
        assert buf.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not")
    assert any(r.levelname == "CRITICAL" and "corrupt" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("look", [read_stats, lambda path: list(read_readings(path))],
                         ids=["read_stats", "read_readings"])
def test_a_read_only_look_at_a_missing_buffer_is_a_clear_error(tmp_path: Path, look) -> None:
    with pytest.raises(BufferError, match="no buffer at"):
        look(tmp_path / "nope.db")


def test_read_readings_gives_each_reading_with_its_state_while_the_buffer_is_open(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with open_buffer(path) as buf:
        stored = buf.append_many([signal_reading(), latency_reading(), event_reading()])
        buf.ack(buf.take(2))
        buf.apply_confirmation(confirm(1, upto=1, top=1))
        seen = list(read_readings(path))
        assert [(r.seq, r.kind, r.state) for r in buf.readings()] == [
            (1, "signal", "confirmed"), (2, "latency", "delivered"), (3, "event", "pending")]
    # The file shows every reading at once (from the intake, until they are filed), and the
    # marks once they are written (here, when the buffer is closed).
    assert [(r.seq, r.kind, r.state) for r in seen] == [(1, "signal", "pending"), (2, "latency", "pending"),
                                                       (3, "event", "pending")]
    assert [r.body for r in seen] == [r.to_json() for r in stored]
    assert [(r.seq, r.state) for r in read_readings(path)] == [(1, "confirmed"), (2, "delivered"), (3, "pending")]


class BufferMachine(RuleBasedStateMachine):
    """Any mix of appends, takes, acks, nacks, confirmations, resends and restarts keeps the buffer's promises.

    Each reading is ``pending`` (not acknowledged by the broker), ``delivered`` (acknowledged, not
    confirmed by the centre) or ``confirmed``; the model says which, the database must agree.
    """

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.path = self.dir / "b.db"
        self.buf = open_buffer(self.path)
        self.appended: list[int] = []
        self.state: dict[int, str] = {}
        self.leased: list = []
        self.rev = 0
        self.confirmations = 0  # readings newly confirmed, summed over confirmations
        self.ever_confirmed: set[int] = set()

    def _leased_seqs(self) -> set[int]:
        return {seq for batch in self.leased for seq in batch.seqs}

    @rule(n=st.integers(1, 5))
    def append(self, n: int) -> None:
        seqs = [r.seq for r in self.buf.append_many([signal_reading()] * n)]
        assert not self.appended or seqs[0] > self.appended[-1]
        self.appended += seqs
        self.state.update((seq, "pending") for seq in seqs)

    @rule(n=st.integers(1, 7))
    def take(self, n: int) -> None:
        expected = sorted(seq for seq, state in self.state.items()
                          if state == "pending" and seq not in self._leased_seqs())[:n]
        batch = self.buf.take(n)
        assert (batch.seqs if batch else ()) == tuple(expected), "the oldest pending readings not leased already"
        if batch is not None:
            self.leased.append(batch)

    @rule(n=st.integers(1, 7))
    def deliver(self, n: int) -> None:
        """Take, publish, and the broker's acknowledgement: the usual path in one step."""
        before = len(self.leased)
        self.take(n)
        if len(self.leased) > before:
            self.settle(before, True)

    @precondition(lambda self: self.leased)
    @rule(i=st.integers(0, 10), ok=st.booleans())
    def settle(self, i: int, ok: bool) -> None:
        batch = self.leased.pop(i % len(self.leased))
        if ok:
            self.buf.ack(batch)
            self.state.update((seq, "delivered") for seq in batch.seqs if self.state[seq] == "pending")
        else:
            self.buf.nack(batch)

    @rule(upto=st.integers(0, 40), top=st.integers(0, 60), hole_bits=st.integers(0, 2**61 - 1), stale=st.booleans())
    def confirm(self, upto: int, top: int, hole_bits: int, stale: bool) -> None:
        holes = seq_ranges.from_seqs(seq for seq in range(upto + 1, top + 1) if hole_bits >> seq & 1)
        rev = self.rev if stale else self.rev + 1
        confirmation = Confirmation("unit-1", rev, upto, top, tuple(holes))
        outcome = self.buf.apply_confirmation(confirmation)
        if stale:
            assert outcome == ConfirmOutcome(False), "a confirmation not newer than the last changes nothing"
            return
        self.rev = rev
        newly = [seq for seq, state in self.state.items() if state != "confirmed" and confirmation.covers(seq)]
        lost = [seq for seq, state in self.state.items() if state == "confirmed" and not confirmation.covers(seq)]
        assert outcome == ConfirmOutcome(True, len(newly), seq_ranges.from_seqs(lost))
        self.state.update((seq, "confirmed") for seq in newly)
        self.state.update((seq, "pending") for seq in lost)
        self.confirmations += len(newly)
        self.ever_confirmed.update(newly)

    @precondition(lambda self: self.state)
    @rule(picks=st.lists(st.integers(0, 100), max_size=8), unknown=st.booleans())
    def resend(self, picks: list[int], unknown: bool) -> None:
        known = sorted(self.state)
        seqs = {known[i % len(known)] for i in picks} | ({10_000} if unknown else set())
        again = [seq for seq in seqs if self.state.get(seq) == "delivered"]
        assert self.buf.resend(seqs) == len(again), "only acknowledged, unconfirmed readings are sent again"
        self.state.update((seq, "pending") for seq in again)

    @rule()
    def restart(self) -> None:
        self.buf.close()
        assert {r.seq: r.state for r in read_readings(self.path)} == self.state, "closing writes every mark"
        self.buf = open_buffer(self.path)
        self.leased.clear()

    @invariant()
    def nothing_lost(self) -> None:
        actual = {r.seq: r.state for r in self.buf.readings()}  # acknowledgements may wait in memory
        assert actual == self.state and set(actual) == set(self.appended)
        stats = self.buf.stats()
        counts = {state: list(self.state.values()).count(state) for state in ("pending", "delivered", "confirmed")}
        # counted apart from the states, so a confirmed reading still pending would show here
        assert (stats.pending, stats.unconfirmed, stats.delivered_kept) == (
            counts["pending"], counts["delivered"], counts["confirmed"])
        # every reading confirmed now counts once; a re-opened one left the count
        assert stats.delivered_total == counts["confirmed"]
        assert stats.confirm_rev == self.rev
        assert self.buf.awaiting_confirmation() == sorted(s for s, state in self.state.items() if state == "delivered")

    def teardown(self) -> None:
        # drain: everything pending comes out exactly once more
        self.buf.release_all()
        seen: list[int] = []
        while (batch := self.buf.take(3)) is not None:
            seen += batch.seqs
            self.buf.ack(batch)
        assert sorted(seen) == sorted(seq for seq, state in self.state.items() if state == "pending")
        assert len(seen) == len(set(seen))
        self.buf.close()


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


def test_a_reservation_of_this_same_database_leaves_no_gap(tmp_path: Path) -> None:
    """Killed between reserving seqs and the first commit: numbering still starts at 1."""
    path = tmp_path / "b.db"
    with open_buffer(path) as buf:
        buf._reserve(2)  # what the first append does before its commit
    with open_buffer(path) as buf:
        assert buf.append(signal_reading()).seq == 1


def test_a_deleted_database_does_not_restart_numbering(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with open_buffer(path) as buf:
        buf.append_many([signal_reading()] * 3)
    for file in sqlite_files(path):
        file.unlink(missing_ok=True)
    with open_buffer(path) as buf:
        assert buf.append(signal_reading()).seq > 3


def test_sqlite_files_are_every_file_of_an_open_buffer_but_its_reservation_and_its_intake(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with open_buffer(path) as buf:
        buf.append(signal_reading())
        assert set(tmp_path.iterdir()) == {*sqlite_files(path), tmp_path / "buffer.db.seq", intake_path(path)}


def test_take_can_cap_the_batch_in_bytes(tmp_path: Path) -> None:
    size = len(replace(signal_reading(), seq=1).to_json()) + 1
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 10)
        assert buf.take(10, max_bytes=3 * size).seqs == (1, 2, 3)
        assert buf.take(10, max_bytes=1).seqs == (4,), "a batch always carries at least one reading"
        assert buf.take(10).seqs == (5, 6, 7, 8, 9, 10)


# -- an unusable buffer file ---------------------------------------------------------------

def _foreign_sqlite(path: Path) -> None:
    """Another program's database in the buffer's place: a file format, so written in SQL."""
    path.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (line TEXT)")
        conn.execute("INSERT INTO notes VALUES ('not a buffer')")
    conn.close()


UNUSABLE = {
    "an empty (0-byte) file": lambda path: path.write_bytes(b""),
    "a file that is not SQLite": lambda path: path.write_bytes(b"PK\x03\x04" + bytes(4000)),
    "an SQLite file without the readings table": _foreign_sqlite,
}


@pytest.mark.parametrize("spoil", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_file_is_kept_aside_and_numbering_continues_above_the_reservation(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil) -> None:
    path = tmp_path / "buffer.db"
    with open_buffer(path) as buf:
        buf.append_many([signal_reading()] * 5)
    reserved = int((tmp_path / "buffer.db.seq").read_text().split()[0])
    spoil(path)
    spoiled = path.read_bytes()
    with open_buffer(path) as buf:
        first = buf.take(10)
        assert first.seqs == (reserved + 1,), "the event is the new buffer's first reading, above the reservation"
        event = reading_from_json(first.bodies[0])
        assert buf.append(signal_reading()).seq == reserved + 2
    kept = [p for p in tmp_path.iterdir() if re.fullmatch(r"buffer\.db\.corrupt-\d{8}T\d{6}Z", p.name)]
    assert len(kept) == 1 and len(kept[0].read_bytes()) == len(spoiled), "kept for forensics"
    assert event.part.type == "buffer_corrupt"
    assert event.part.data == {"kept_as": str(kept[0]), "next_seq": reserved + 1}
    assert any(r.levelname == "CRITICAL" and str(kept[0]) in r.getMessage() for r in caplog.records)


def test_an_unusable_file_is_kept_aside_with_its_wal_and_shm(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    for file, text in zip(sqlite_files(path), ("not a database", "its wal", "its shm")):
        file.write_text(text)
    open_buffer(path).close()
    [kept] = [p for p in tmp_path.iterdir() if re.fullmatch(r"buffer\.db\.corrupt-\d{8}T\d{6}Z", p.name)]
    assert [file.read_text() for file in sqlite_files(kept)] == ["not a database", "its wal", "its shm"]


def test_an_sqlite_file_that_is_not_a_buffer_is_kept_aside_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    path.touch()
    _foreign_sqlite(path)
    spoiled = path.read_bytes()
    open_buffer(path).close()
    [kept] = [p for p in tmp_path.iterdir() if re.fullmatch(r"buffer\.db\.corrupt-\d{8}T\d{6}Z", p.name)]
    assert kept.read_bytes() == spoiled, "kept as it was, for forensics"


# -- confirmations -------------------------------------------------------------------------

def confirm(rev: int, upto: int, top: int = 0, holes: tuple = ()) -> Confirmation:
    return Confirmation("unit-1", rev, upto, top, holes)


def states(buf: ReadingBuffer) -> dict[str, list[int]]:
    """The seqs the buffer holds in each state, ascending, as it sees them itself."""
    stored = buf.readings()
    return {state: [r.seq for r in stored if r.state == state] for state in ("pending", "delivered", "confirmed")}


def test_a_confirmation_marks_what_the_centre_holds(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 12)
        buf.ack(buf.take(10))
        outcome = buf.apply_confirmation(confirm(1, upto=4, top=10, holes=((6, 7),)))
        assert outcome == ConfirmOutcome(True, confirmed=8, reopened=[])
        assert states(buf) == {"pending": [11, 12], "delivered": [6, 7], "confirmed": [1, 2, 3, 4, 5, 8, 9, 10]}
        stats = buf.stats()
        assert (stats.delivered_total, stats.unconfirmed, stats.delivered_kept, stats.confirm_rev) == (8, 2, 8, 1)
        assert stats.last_delivered_at is not None
        assert buf.awaiting_confirmation() == [6, 7]


def test_a_reading_the_centre_confirms_is_not_sent_even_without_the_brokers_acknowledgement(tmp_path: Path) -> None:
    """The PUBACK was lost with the connection, but the reading reached the centre."""
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 3)
        assert buf.apply_confirmation(confirm(1, upto=2, top=2)).confirmed == 2
        assert buf.take(10).seqs == (3,)


@pytest.mark.parametrize("rev", [5, 4, 1], ids=["the same rev", "an older rev", "the first rev"])
def test_a_confirmation_not_newer_than_the_last_applied_changes_nothing(tmp_path: Path, rev: int) -> None:
    """Two collectors publish out of order, or the broker hands back its retained copy."""
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 6)
        buf.ack(buf.take(6))
        buf.apply_confirmation(confirm(5, upto=3, top=3))
        before = states(buf)
        assert buf.apply_confirmation(confirm(rev, upto=0, top=6, holes=((1, 2),))) == ConfirmOutcome(False)
        assert buf.apply_confirmation(confirm(rev, upto=6, top=6)) == ConfirmOutcome(False)
        assert states(buf) == before and buf.stats().confirm_rev == 5


def test_a_confirmation_that_no_longer_covers_confirmed_readings_reopens_them(tmp_path: Path) -> None:
    """The centre's database was restored from a backup: what it lost is sent again, oldest first."""
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 10)
        buf.ack(buf.take(10))
        buf.apply_confirmation(confirm(1, upto=10, top=10))
        buf.append_many([signal_reading()] * 2)  # 11, 12
        outcome = buf.apply_confirmation(confirm(2, upto=2, top=10, holes=((3, 5),)))
        assert outcome == ConfirmOutcome(True, confirmed=0, reopened=[(3, 5)])
        assert states(buf) == {"pending": [3, 4, 5, 11, 12], "delivered": [], "confirmed": [1, 2, 6, 7, 8, 9, 10]}
        assert buf.take(10).seqs == (3, 4, 5, 11, 12)
        stats = buf.stats()
        assert (stats.delivered_kept, stats.unconfirmed, stats.pending) == (7, 0, 5)


def test_resend_makes_acknowledged_unconfirmed_readings_pending_again(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 8)
        buf.ack(buf.take(6))                                  # 7, 8 stay pending
        buf.apply_confirmation(confirm(1, upto=3, top=3))
        assert buf.awaiting_confirmation() == [4, 5, 6]
        assert buf.resend([1, 2, 4, 5, 7, 99]) == 2           # confirmed, pending and unknown seqs are no matter
        assert states(buf) == {"pending": [4, 5, 7, 8], "delivered": [6], "confirmed": [1, 2, 3]}
        assert buf.awaiting_confirmation() == [6]
        assert buf.take(10).seqs == (4, 5, 7, 8)
        assert buf.resend([]) == 0
        assert buf.resend(range(1, 2000)) == 1                # in chunks of SQL parameters
        assert buf.awaiting_confirmation() == []


def test_confirmed_readings_age_on_the_buffers_odometer_not_the_wall_clock(tmp_path: Path) -> None:
    clock = SteppedTime(START)
    with open_buffer(tmp_path / "b.db", keep_delivered=0.2, clock=clock) as buf:
        buf.append_many([signal_reading()] * 4)
        buf.ack(buf.take(3))
        buf.apply_confirmation(confirm(1, upto=2, top=2))    # 1, 2 confirmed; 3 acknowledged; 4 pending
        buf._prune_now_and_then(time.time() + 365 * 86400)   # the wall clock jumps a year ahead
        assert states(buf)["confirmed"] == [1, 2], "a jump of the wall clock prunes nothing"
        clock.elapsed += 0.5                                  # the odometer runs on 0.5 s
        buf._prune_now_and_then(time.time() + 2 * 365 * 86400)  # `now` is only for the once-a-minute limit
        assert states(buf) == {"pending": [4], "delivered": [3], "confirmed": []}, "only confirmed readings age"
        assert buf.stats().kept_from == 3


def test_the_odometer_runs_on_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    first_run = SteppedTime(START)
    with open_buffer(path, keep_delivered=0.5, clock=first_run) as buf:
        buf.append_many([signal_reading()] * 2)
        buf.ack(buf.take(2))
        buf.apply_confirmation(confirm(1, upto=1, top=1))
        assert buf.odometer() == 0.0
        first_run.elapsed += 1.1
    with open_buffer(path, keep_delivered=0.5, clock=SteppedTime(START)) as buf:  # a new boot's monotonic clock
        assert buf.odometer() == 1.0, "whole seconds are kept"
        buf._prune_now_and_then(time.time() + 3600)
        assert states(buf) == {"pending": [], "delivered": [2], "confirmed": []}


# -- the file's layout and its upgrades -------------------------------------------------------
# These tests are about the file format itself, so they read and write it with SQL.

# What a new buffer's readings table is: (name, type, not null, primary key), in order.
FRESH_COLUMNS = [
    ("seq", "INTEGER", 0, 1), ("kind", "TEXT", 1, 0), ("time", "TEXT", 1, 0), ("body", "TEXT", 1, 0),
    ("delivered_at", "REAL", 0, 0), ("boot", "TEXT", 0, 0), ("boottime", "REAL", 0, 0),
    ("confirmed_at", "REAL", 0, 0), ("confirmed_odo", "REAL", 0, 0),
]


def columns_of(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("PRAGMA table_info(readings)").fetchall()
    conn.close()
    return [(name, kind, notnull, pk) for _, name, kind, notnull, _, pk in rows]


def user_version_of(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return version


def test_a_new_buffer_has_the_readings_columns_in_order(tmp_path: Path) -> None:
    open_buffer(tmp_path / "b.db").close()
    assert columns_of(tmp_path / "b.db") == FRESH_COLUMNS
    assert user_version_of(tmp_path / "b.db") == buffer_schema.LATEST


# The layouts buffers were written in before their version was kept (PRAGMA user_version 0),
# as sqlite-utils 3 wrote them: the table, then each column added later.
_READINGS_V1 = ("CREATE TABLE [readings] ([seq] INTEGER PRIMARY KEY, [kind] TEXT NOT NULL, [time] TEXT NOT NULL,"
                " [body] TEXT NOT NULL, [delivered_at] FLOAT)")
_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID"
_PENDING = "CREATE INDEX readings_pending ON readings(seq) WHERE delivered_at IS NULL"
_CLOCK = ("ALTER TABLE [readings] ADD COLUMN [boot] TEXT", "ALTER TABLE [readings] ADD COLUMN [boottime] FLOAT",
          "CREATE INDEX readings_unsynced ON readings(boot) WHERE boot IS NOT NULL")
_CONFIRM = ("ALTER TABLE [readings] ADD COLUMN [confirmed_at] FLOAT",
            "ALTER TABLE [readings] ADD COLUMN [confirmed_odo] FLOAT",
            "CREATE INDEX readings_unconfirmed ON readings(seq) WHERE confirmed_at IS NULL")
BEFORE_CLOCK_CORRECTION = (_READINGS_V1, _META, _PENDING)
BEFORE_CONFIRMATIONS = (*BEFORE_CLOCK_CORRECTION, *_CLOCK)
BEFORE_VERSIONS = (*BEFORE_CONFIRMATIONS, *_CONFIRM)


def has_confirmations(layout: tuple[str, ...]) -> bool:
    return any("confirmed_at" in statement for statement in layout)


def write_old_buffer(path: Path, layout: tuple[str, ...], delivered: int, confirmed: int = 0) -> None:
    """Five signal readings; the first ``delivered`` acknowledged a day ago, the first ``confirmed`` confirmed.

    ``delivered_total`` counts what the broker acknowledged before confirmations, what the
    centre confirmed since.
    """
    conn = sqlite3.connect(path)
    for statement in layout:
        conn.execute(statement)
    acked = time.time() - 86400
    for seq in range(1, 6):
        body = replace(signal_reading(), seq=seq).to_json()
        conn.execute("INSERT INTO readings (seq, kind, time, body, delivered_at) VALUES (?, 'signal', ?, ?, ?)",
                     (seq, json.loads(body)["time"], body, acked if seq <= delivered else None))
        if seq <= confirmed:
            conn.execute("UPDATE readings SET confirmed_at = ?, confirmed_odo = 0 WHERE seq = ?", (acked, seq))
    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                     [("next_seq", 6), ("dropped_total", 0),
                      ("delivered_total", confirmed if has_confirmations(layout) else delivered), ("db_id", 12345)])
    conn.commit()
    conn.close()


# (layout, whether blankspot status can read it before the agent upgraded it, the states after)
OLD_LAYOUTS = {
    "before clock correction": (BEFORE_CLOCK_CORRECTION, False,
                                {"pending": [4, 5], "delivered": [], "confirmed": [1, 2, 3]}),
    "before confirmations": (BEFORE_CONFIRMATIONS, False,
                             {"pending": [4, 5], "delivered": [], "confirmed": [1, 2, 3]}),
    "today's, before its version was kept": (BEFORE_VERSIONS, True,
                                             {"pending": [4, 5], "delivered": [3], "confirmed": [1, 2]}),
}


@pytest.mark.parametrize("layout, readable, after", OLD_LAYOUTS.values(), ids=OLD_LAYOUTS)
def test_a_buffer_written_in_an_older_layout_is_upgraded_in_place(
        tmp_path: Path, layout: tuple[str, ...], readable: bool, after: dict) -> None:
    path = tmp_path / "b.db"
    write_old_buffer(path, layout, delivered=3, confirmed=2 if has_confirmations(layout) else 0)
    if not readable:
        with pytest.raises(BufferError, match="older blankspot: start the agent once"):
            read_stats(path)
    with open_buffer(path) as buf:
        assert states(buf) == after
        assert buf.append(signal_reading()).seq == 6
    # sqlite-utils 3 wrote FLOAT where a new buffer says REAL: the same column affinity
    assert [(name, notnull, pk) for name, _, notnull, pk in columns_of(path)] == \
        [(name, notnull, pk) for name, _, notnull, pk in FRESH_COLUMNS]
    assert user_version_of(path) == buffer_schema.LATEST
    assert read_stats(path).last_seq == 6
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def test_a_buffer_from_before_confirmations_counts_what_the_broker_acknowledged_as_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    write_old_buffer(path, BEFORE_CONFIRMATIONS, delivered=3)
    with open_buffer(path) as buf:
        assert states(buf) == {"pending": [4, 5], "delivered": [], "confirmed": [1, 2, 3]}
        assert buf.awaiting_confirmation() == []
        assert buf.append(signal_reading()).seq == 6
        # the centre's first confirmation re-opens what it turns out not to hold
        assert buf.apply_confirmation(confirm(1, upto=2, top=2)).reopened == [(3, 3)]
        assert buf.take(10).seqs == (3, 4, 5, 6)
    stats = read_stats(path)
    assert (stats.delivered_kept, stats.delivered_total, stats.confirm_rev) == (2, 2, 1), \
        "a re-opened reading leaves the count"


def test_a_buffer_newer_than_the_code_is_refused_in_one_line_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with open_buffer(path) as buf:
        buf.append(signal_reading())
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {buffer_schema.LATEST + 1}")
    conn.close()
    before = path.read_bytes()
    for opening in (open_buffer, read_stats):
        with pytest.raises(BufferError) as refused:
            opening(path)
        assert str(refused.value) == (
            f"buffer {path}: database schema version {buffer_schema.LATEST + 1} is newer than this blankspot "
            f"knows ({buffer_schema.LATEST}): upgrade blankspot on this machine, or use another database")
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
