"""ReadingBuffer: durable, numbered, leased, bounded, and never silent about a loss."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.buffer import ReadingBuffer, read_stats
from agent.reading import reading_from_json
from tests.readings_factory import event_reading, latency_reading, signal_reading


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


def test_stored_body_is_the_reading_json(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "b.db") as buf:
        stored = buf.append(signal_reading())
        batch = buf.take(10)
    assert batch is not None and batch.seqs == (1,)
    assert reading_from_json(batch.bodies[0]) == stored


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
    with open_buffer(tmp_path / "b.db") as buf:
        assert buf.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert buf.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def _used_by_pending(buf: ReadingBuffer) -> int:
    return buf.conn.execute("SELECT count(*) FROM readings WHERE delivered_at IS NULL").fetchone()[0]


BIG = replace(signal_reading(), part=replace(signal_reading().part, operator="X" * 200))  # ~850 bytes on disk


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
        kept = [r[0] for r in buf.conn.execute("SELECT seq FROM readings ORDER BY seq")]
        events = [json.loads(r[0]) for r in buf.conn.execute("SELECT body FROM readings WHERE kind='event' ORDER BY seq")]
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


def test_read_stats_of_missing_buffer_is_a_clear_error(tmp_path: Path) -> None:
    from agent.buffer import BufferError

    with pytest.raises(BufferError, match="no buffer at"):
        read_stats(tmp_path / "nope.db")


class BufferMachine(RuleBasedStateMachine):
    """Any mix of appends, takes, acks, nacks and restarts keeps the buffer's promises."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.path = self.dir / "b.db"
        self.buf = open_buffer(self.path)
        self.appended: list[int] = []
        self.delivered: set[int] = set()
        self.leased: list = []

    @rule(n=st.integers(1, 5))
    def append(self, n: int) -> None:
        seqs = [r.seq for r in self.buf.append_many([signal_reading()] * n)]
        assert not self.appended or seqs[0] > self.appended[-1]
        self.appended += seqs

    @rule(n=st.integers(1, 7))
    def take(self, n: int) -> None:
        batch = self.buf.take(n)
        if batch is not None:
            assert list(batch.seqs) == sorted(batch.seqs)
            assert not set(batch.seqs) & self.delivered
            self.leased.append(batch)

    @precondition(lambda self: self.leased)
    @rule(i=st.integers(0, 10), ok=st.booleans())
    def settle(self, i: int, ok: bool) -> None:
        batch = self.leased.pop(i % len(self.leased))
        if ok:
            self.buf.ack(batch)
            self.delivered |= set(batch.seqs)
        else:
            self.buf.nack(batch)

    @rule()
    def restart(self) -> None:
        self.buf.close()
        self.buf = open_buffer(self.path)
        self.leased.clear()

    @invariant()
    def nothing_lost(self) -> None:
        pending = {r[0] for r in self.buf.conn.execute("SELECT seq FROM readings WHERE delivered_at IS NULL")}
        assert pending | self.delivered == set(self.appended)
        assert not pending & self.delivered

    def teardown(self) -> None:
        # drain: everything not delivered comes out exactly once more
        self.buf.release_all()
        seen: list[int] = []
        while (batch := self.buf.take(3)) is not None:
            seen += batch.seqs
            self.buf.ack(batch)
        assert sorted(seen) == sorted(set(self.appended) - self.delivered)
        assert len(seen) == len(set(seen))
        self.buf.close()


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


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
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with open_buffer(path) as buf:
        assert buf.append(signal_reading()).seq > 3


def test_take_can_cap_the_batch_in_bytes(tmp_path: Path) -> None:
    size = len(replace(signal_reading(), seq=1).to_json()) + 1
    with open_buffer(tmp_path / "b.db") as buf:
        buf.append_many([signal_reading()] * 10)
        assert buf.take(10, max_bytes=3 * size).seqs == (1, 2, 3)
        assert buf.take(10, max_bytes=1).seqs == (4,), "a batch always carries at least one reading"
        assert buf.take(10).seqs == (5, 6, 7, 8, 9, 10)
