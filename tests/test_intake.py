"""The intake: where a reading is on the card the moment it is taken, until SQLite files it.

docs/buffer.md promises that a reading, once ``append`` returned, survives a crash and a power
cut, and is stored once.  These specify the intake's records (what a scan keeps and where it
stops), the file itself (fixed size, written in place), and the buffer around it: what it
files when, and what it finds when it is opened after a crash, a power cut, a damaged
database or a full card.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.unit import buffer as buffer_module
from agent.unit.buffer import ReadingBuffer, intake_path, read_readings, read_stats, sqlite_files
from agent.unit.intake import HEADER, INTAKE_BYTES, IntakeLog, IntakeRecord, frame_record, parse_records, read_intake
from tests.support.readings_factory import signal_reading
from tests.support.small_card import fill, small_card  # noqa: F401  (small_card: a fixture)

REPO = Path(__file__).resolve().parent.parent


def record(seq: int, body: bytes = b"\x01body", boot: str | None = None, boottime: float | None = None) -> IntakeRecord:
    return IntakeRecord(seq, "signal", "2026-12-05T10:00:00.000Z", body, boot, boottime)


def image(*records: IntakeRecord) -> bytes:
    return HEADER + b"".join(frame_record(r) for r in records)


# -- records ---------------------------------------------------------------------------------

def test_a_record_keeps_every_value_of_its_row() -> None:
    kept = [record(1), record(2, b"x" * 300, boot="0e6d1c1e-7d2b-4a53-9d2e-4bb2a1c0e001", boottime=1234.5)]
    assert parse_records(image(*kept)) == kept


def _cut(data: bytes) -> bytes:
    return data[:-3]


def _flip_last_body_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def _older_after(data: bytes) -> bytes:
    return data + frame_record(record(1))


def _zero_mark(data: bytes) -> bytes:
    return data[:len(HEADER)] + b"\0" + data[len(HEADER) + 1:]


# (what happened to an intake holding seq 5, 6, 7; the seqs a scan keeps)
DAMAGE = [
    ("a power cut while the last record was written: cut short", _cut, [5, 6]),
    ("a bit of the last record changed", _flip_last_body_byte, [5, 6]),
    ("an older record, already filed, after the newest", _older_after, [5, 6, 7]),
    ("the first mark zeroed when the intake was written from its start", _zero_mark, []),
    ("zeros after the newest record", lambda data: data + bytes(64), [5, 6, 7]),
    ("nothing at all", lambda data: data[:len(HEADER)], []),
]


@pytest.mark.parametrize("damage, kept", [(d, k) for _, d, k in DAMAGE], ids=[why for why, _, _ in DAMAGE])
def test_a_scan_keeps_the_whole_records_in_order_and_stops_at_the_first_that_is_not(damage, kept) -> None:
    data = damage(image(record(5), record(6), record(7)))
    assert [r.seq for r in parse_records(data)] == kept


def test_the_intake_written_again_from_its_start_shows_only_the_new_records() -> None:
    """The new record may be exactly as long as the old one it overwrites: what follows is an
    old, whole record, which the scan stops at because its seq is lower."""
    old = image(record(5), record(6), record(7))
    new = frame_record(record(8))
    data = old[:len(HEADER)] + new + old[len(HEADER) + len(new):]
    assert [r.seq for r in parse_records(data)] == [8]


records_strategy = st.lists(
    st.builds(IntakeRecord, st.integers(1, 2**62), st.sampled_from(["signal", "latency", "event", "throughput"]),
              st.just("2026-12-05T10:00:00.000Z"), st.binary(max_size=600),
              st.none() | st.just("0e6d1c1e-7d2b-4a53-9d2e-4bb2a1c0e001"),
              st.none() | st.floats(0, 1e9, allow_nan=False)),
    max_size=20, unique_by=lambda r: r.seq,
).map(lambda rs: sorted(rs, key=lambda r: r.seq))


@settings(max_examples=300, deadline=None)
@given(records_strategy)
def test_records_read_back_as_they_were_framed(records: list[IntakeRecord]) -> None:
    assert parse_records(image(*records)) == records


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), records_strategy)
def test_a_scan_of_any_bytes_never_raises_and_keeps_only_whole_records(noise: bytes, records: list) -> None:
    assert isinstance(parse_records(noise, 0), list)
    data = image(*records) + noise
    assert parse_records(data)[:len(records)] == records


# -- the file --------------------------------------------------------------------------------

def test_the_intake_is_made_whole_and_its_appends_never_change_its_size(tmp_path: Path) -> None:
    path = tmp_path / "b.db.intake"
    intake = IntakeLog(path)
    try:
        assert path.stat().st_size == INTAKE_BYTES
        blocks = path.stat().st_blocks
        intake.append([record(1), record(2)])
        intake.append([record(3)])
        assert (path.stat().st_size, path.stat().st_blocks) == (INTAKE_BYTES, blocks)
        assert [r.seq for r in read_intake(path)] == [1, 2, 3]
        intake.restart()
        assert read_intake(path) == [], "written from its start again, the old records no longer count"
        intake.append([record(4)])
        assert [r.seq for r in read_intake(path)] == [4]
    finally:
        intake.close()
    reopened = IntakeLog(path)
    try:
        assert [r.seq for r in reopened.records] == [4]
    finally:
        reopened.close()


def test_an_intake_that_does_not_fit_is_refused_whole(tmp_path: Path) -> None:
    intake = IntakeLog(tmp_path / "i", size=1024)
    try:
        big = [record(seq, b"x" * 200) for seq in range(1, 6)]
        assert not intake.append(big)
        assert read_intake(tmp_path / "i") == [], "nothing of them written"
        assert intake.append(big[:3])
        assert [r.seq for r in read_intake(tmp_path / "i")] == [1, 2, 3]
    finally:
        intake.close()


def test_a_file_that_is_not_an_intake_is_written_anew(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "i"
    path.write_bytes(b"something else entirely")
    with caplog.at_level(logging.WARNING):
        intake = IntakeLog(path)
    intake.close()
    assert intake.records == [] and path.read_bytes().startswith(HEADER)
    assert "not an intake file" in caplog.text


# -- the buffer around it --------------------------------------------------------------------

def test_a_reading_is_in_the_intake_until_what_waits_is_filed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "b.db"
    with ReadingBuffer(path, "unit-1") as buf:
        stored = [buf.append(signal_reading()) for _ in range(3)]
        assert [r.seq for r in read_intake(intake_path(path))] == [1, 2, 3]
        assert _rows_in_sqlite(path) == 0
        assert read_stats(path).pending == 3 and read_stats(path).last_seq == 3, "read from the file, intake included"
        monkeypatch.setattr(buffer_module, "HOLD_S", 0.0)
        buf.append(signal_reading())
        assert _rows_in_sqlite(path) == 4
        assert read_intake(intake_path(path)) == []
    assert [r.body for r in read_readings(path)][:3] == [r.to_json() for r in stored]


def test_the_intake_is_filed_when_it_is_three_quarters_full(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with ReadingBuffer(path, "unit-1", intake_bytes=4096) as buf:
        for _ in range(40):
            buf.append(signal_reading())
        assert 0 < len(read_intake(intake_path(path))) < 25
        assert _rows_in_sqlite(path) + len(read_intake(intake_path(path))) == 40


def test_many_readings_at_once_go_to_sqlite_directly(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with ReadingBuffer(path, "unit-1") as buf:
        buf.append(signal_reading())
        buf.append_many([signal_reading()] * 2000)
        assert _rows_in_sqlite(path) == 2001, "with the reading that waited in the intake, in order"
        assert [r.seq for r in buf.readings()] == list(range(1, 2002))


_KILLED_CHILD = textwrap.dedent("""
    import os, sys
    from agent.shared.protocol import Confirmation
    from agent.unit.buffer import ReadingBuffer
    from tests.support.readings_factory import signal_reading

    buf = ReadingBuffer(sys.argv[1], "unit-1")
    for _ in range(int(sys.argv[2])):
        buf.append(signal_reading())
    buf.ack(buf.take(5))
    buf.apply_confirmation(Confirmation("unit-1", 1, 3, 3))
    print("stored", flush=True)
    os.kill(os.getpid(), 9)
""")


def test_readings_in_the_intake_when_the_agent_is_killed_are_filed_when_it_starts_again(tmp_path: Path) -> None:
    """kill -9 after 7 readings, 5 of them acknowledged and 3 confirmed: the acknowledgements
    and the confirmation waited in memory and are gone, every reading is there, pending."""
    path = tmp_path / "b.db"
    run = subprocess.run([sys.executable, "-c", _KILLED_CHILD, str(path), "7"], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert run.returncode == -9 and run.stdout == "stored\n", run.stderr
    assert _rows_in_sqlite(path) == 0
    assert read_stats(path).pending == 7
    with ReadingBuffer(path, "unit-1") as buf:
        assert [(r.seq, r.state) for r in buf.readings()] == [(seq, "pending") for seq in range(1, 8)]
        assert buf.append(signal_reading()).seq == 8
    assert _rows_in_sqlite(path) == 8


def test_readings_both_filed_and_still_in_the_intake_are_stored_once(tmp_path: Path) -> None:
    """A power cut after SQLite's flushed commit, before the intake's first record was spoiled:
    the intake still shows readings SQLite holds, some of them deleted since by a prune."""
    path = tmp_path / "b.db"
    with ReadingBuffer(path, "unit-1") as buf:
        for _ in range(4):
            buf.append(signal_reading())
        kept = intake_path(path).read_bytes()
    intake_path(path).write_bytes(kept)  # as the card had it before the filing
    with ReadingBuffer(path, "unit-1") as buf:
        buf.conn.execute("DELETE FROM readings WHERE seq = 1")  # pruned since
        assert [r.seq for r in buf.readings()] == [2, 3, 4]
    with ReadingBuffer(path, "unit-1") as buf:
        assert [r.seq for r in buf.readings()] == [2, 3, 4]
        assert buf.append(signal_reading()).seq == 5


def test_a_damaged_database_gets_the_intakes_readings_it_never_held(tmp_path: Path) -> None:
    """The agent crashed with readings in the intake, and the database is found damaged: the
    new database has them, below the numbering that continues after the reservation."""
    path = tmp_path / "b.db"
    with ReadingBuffer(path, "unit-1") as buf:
        waiting = [buf.append(signal_reading()).seq for _ in range(5)]
        kept = intake_path(path).read_bytes()
    intake_path(path).write_bytes(kept)  # as the crash left it
    for file in sqlite_files(path):
        file.unlink(missing_ok=True)
    path.write_bytes(b"not a database at all")
    with ReadingBuffer(path, "unit-1") as buf:
        readings = buf.readings()
    assert [r.seq for r in readings][:5] == waiting
    assert readings[5].kind == "event" and readings[5].seq > 1000 and len(readings) == 6


def test_a_full_card_leaves_readings_in_the_intake_until_sqlite_can_be_written(
        small_card: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The intake's blocks exist already: with the card full, readings are still stored, one
    error says why they are not filed, and once space returns they are."""
    monkeypatch.setattr(buffer_module, "HOLD_S", 0.0)
    path = small_card / "b.db"
    with ReadingBuffer(path, "unit-1") as buf:
        buf.append_many([signal_reading()] * 10)
        buf.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill(small_card)
        with caplog.at_level(logging.WARNING):
            seqs = [buf.append(signal_reading()).seq for _ in range(20)]
        assert seqs == list(range(11, 31))
        assert caplog.text.count("cannot file the intake's readings") == 1
        assert read_stats(path).pending == 30
        filler.unlink()
        buf.append(signal_reading())
        assert "filed again" in caplog.text
        assert _rows_in_sqlite(path) == 31
    assert [r.seq for r in read_readings(path)] == list(range(1, 32))


def test_a_reading_costs_one_flush_of_the_intake_and_none_of_sqlite(tmp_path: Path) -> None:
    """Counted with strace: between two marker calls, 30 readings with their acknowledgements
    and confirmations make 30 fdatasync calls, all on the intake (SQLite's commit of them all
    comes minutes later, with the closing here)."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (package strace); the test command installs it (deploy/quickstart.sh test)")
    trace = tmp_path / "trace"
    child = textwrap.dedent("""
        import os, sys
        from agent.shared.protocol import Confirmation
        from agent.unit.buffer import ReadingBuffer
        from tests.support.readings_factory import signal_reading
        buf = ReadingBuffer(sys.argv[1], "unit-1")
        buf.append(signal_reading())  # and the first block of seqs is reserved
        os.path.exists(sys.argv[2])
        for rev in range(1, 31):
            stored = buf.append(signal_reading())
            buf.ack(buf.take(10))
            buf.apply_confirmation(Confirmation("unit-1", rev, stored.seq, stored.seq))
        os.path.exists(sys.argv[3])
        buf.close()
    """)
    start, end = str(tmp_path / "start"), str(tmp_path / "end")
    run = subprocess.run(["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,stat,newfstatat,statx",
                          "-o", str(trace), sys.executable, "-c", child, str(tmp_path / "b.db"), start, end],
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=120)
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    lines = trace.read_text().splitlines()
    inside = lines[next(i for i, l in enumerate(lines) if start in l):next(i for i, l in enumerate(lines) if end in l)]
    syncs = [line for line in inside if "sync(" in line]
    assert len(syncs) == 30 and all("b.db.intake" in line for line in syncs), "\n".join(syncs)


def _rows_in_sqlite(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    finally:
        conn.close()
