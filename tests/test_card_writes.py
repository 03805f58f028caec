"""What the agent writes to its SD card: one flush per reading, state in RAM, usage batched.

A cheap card in a unit that measures all day wears out by its flushes and small rewrites;
these specify how few the agent makes without giving up what docs/buffer.md promises.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.commands.unit import make_service
from agent.shared.polling import wait_until
from agent.shared.clock import boot_id
from agent.shared.protocol import Confirmation
from agent.shared.reading import format_time_epoch
from agent.unit import buffer as buffer_module
from agent.unit.buffer import PAGE_SIZE, ReadingBuffer, read_readings, read_stats
from agent.unit.config import load_config
from agent.unit.measure.usage import UsageLedger
from agent.unit.service import STATE_EVERY_S, live_state_path, state_path
from agent.unit.status import collect_status
from tests.support.readings_factory import signal_reading
from tests.support.unit_config import write_config

REPO = Path(__file__).resolve().parent.parent

# Runs in a child process under strace: warm up, then CYCLES times what one reading costs at
# live cadence: appended, leased, acknowledged by the broker, confirmed by the centre.  The
# stat() calls of two marker paths delimit the part that is counted.
_CYCLES_CHILD = textwrap.dedent("""
    import os, sys
    from agent.shared.protocol import Confirmation
    from agent.unit.buffer import ReadingBuffer
    from tests.support.readings_factory import signal_reading

    path, start, end, cycles = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    buf = ReadingBuffer(path, "unit-1")
    def cycle(rev):
        stored = buf.append(signal_reading())
        batch = buf.take(10)
        buf.ack(batch)
        buf.apply_confirmation(Confirmation("unit-1", rev, stored.seq, stored.seq))
    for rev in range(1, 11):
        cycle(rev)
    os.path.exists(start)
    for rev in range(11, 11 + cycles):
        cycle(rev)
    os.path.exists(end)
    buf.close()
""")


def _syncs_between_markers(trace: str, start: str, end: str) -> list[str]:
    inside = False
    syncs = []
    for line in trace.splitlines():
        if start in line:
            inside = True
        elif end in line:
            inside = False
        elif inside and ("fsync(" in line or "fdatasync(" in line or "sync_file_range(" in line):
            syncs.append(line)
    return syncs


def test_a_reading_its_acknowledgement_and_its_confirmation_cost_the_card_one_flush(tmp_path: Path) -> None:
    """The acknowledgement and the confirmation wait in memory and are committed with the
    readings they came with, minutes later (here, at the close): no flush of their own."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (package strace); the test command installs it (deploy/quickstart.sh test)")
    cycles = 30
    trace_file = tmp_path / "trace"
    start, end = str(tmp_path / "counting-starts"), str(tmp_path / "counting-ends")
    run = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,sync_file_range,stat,newfstatat,statx",
         "-o", str(trace_file), sys.executable, "-c", _CYCLES_CHILD, str(tmp_path / "buffer.db"), start, end,
         str(cycles)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    syncs = _syncs_between_markers(trace_file.read_text(), start, end)
    assert len(syncs) == cycles, "\n".join(syncs)
    with ReadingBuffer(tmp_path / "buffer.db", "unit-1") as buf:
        stats = buf.stats()
    assert stats.pending == 0 and stats.unconfirmed == 0 and stats.delivered_total == cycles + 10


def test_a_power_cut_takes_marks_never_a_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a power cut may take: what waits in memory (acknowledgements, confirmations) and
    marks committed since SQLite's last flush, never a reading.

    A reading is flushed to the intake when it is taken; SQLite gets it with the marks that
    waited with it, in a flushed commit.  An acknowledgement that is committed between two
    filings is not flushed by itself.  The card keeps the intake and the log up to its last
    flushed commit; opening that copy finds every reading, at worst pending again (sent again;
    the centre keeps one copy per seq)."""
    path = tmp_path / "buffer.db"
    buf = ReadingBuffer(path, "unit-1")
    seqs = [buf.append(signal_reading()).seq for _ in range(5)]  # in the intake
    buf.ack(buf.take(10))  # waits in memory
    monkeypatch.setattr(buffer_module, "HOLD_S", 0.0)
    seqs.append(buf.append(signal_reading()).seq)  # files seq 1-6 and the acknowledgement: flushed
    buf.ack(buf.take(10))  # committed, not flushed
    monkeypatch.setattr(buffer_module, "HOLD_S", 300.0)
    seqs += [buf.append(signal_reading()).seq for _ in range(2)]  # in the intake
    buf.apply_confirmation(Confirmation("unit-1", 1, seqs[4], seqs[4]))  # waits in memory
    copy = tmp_path / "after-power-cut"
    copy.mkdir()
    for name in (path.name, path.name + ".seq", path.name + ".intake"):
        shutil.copy(tmp_path / name, copy / name)
    log = path.with_name(path.name + "-wal").read_bytes()
    (copy / (path.name + "-wal")).write_bytes(log[:_commit_ends(log, _page_size(path))[-2]])
    buf.close()
    with ReadingBuffer(copy / path.name, "unit-1") as after_cut:
        states = {stored.seq: stored.state for stored in after_cut.readings()}
    assert states == {**{seq: "delivered" for seq in seqs[:5]}, **{seq: "pending" for seq in seqs[5:]}}
    states = {stored.seq: stored.state for stored in read_readings(path)}
    assert states == {**{seq: "confirmed" for seq in seqs[:5]}, seqs[5]: "delivered",
                      **{seq: "pending" for seq in seqs[6:]}}, "closing writes every mark"


def _page_size(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return size


def _commit_ends(log: bytes, page_size: int) -> list[int]:
    """Where each commit in a write-ahead log ends: after each frame whose header holds the database's size."""
    ends = []
    offset = 32  # the log's header
    while offset + 24 + page_size <= len(log):
        if int.from_bytes(log[offset + 4:offset + 8], "big"):
            ends.append(offset + 24 + page_size)
        offset += 24 + page_size
    return ends


def test_a_new_buffer_has_small_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    with ReadingBuffer(tmp_path / "new.db", "unit-1") as buf:
        buf.append(signal_reading())
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:  # a file made with SQLite's default pages
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE scratch (x)")
        conn.execute("DROP TABLE scratch")
    conn.close()
    with ReadingBuffer(old, "unit-1") as buf:
        buf.append(signal_reading())
        buf.ack(buf.take(10))
    for path, size in ((tmp_path / "new.db", PAGE_SIZE), (old, 4096)):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA page_size").fetchone()[0] == size
        conn.close()
    assert read_stats(old).last_seq == 1 and read_stats(old).pending == 0


def test_under_systemd_the_state_is_rewritten_in_ram_and_the_card_only_names_it(tmp_path: Path) -> None:
    """With a runtime folder (RuntimeDirectory=), the file beside the buffer is written when the
    agent starts and when it stops; ``blankspot status`` still reads a fresh state."""
    path = write_config(tmp_path / "agent.toml", 1, tmp_path / "card" / "buffer.db",
                        {"uplink": {"enabled": False}, "source": {"interval": "200ms"}})
    config = load_config(path)
    runtime = tmp_path / "run"
    runtime.mkdir()
    service = make_service(config, environ={"RUNTIME_DIRECTORY": str(runtime)})
    live = live_state_path(config, {"RUNTIME_DIRECTORY": str(runtime)})
    assert live is not None and live.parent == runtime
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: live.exists() and state_path(config).exists(), 20)
        on_card = state_path(config).stat().st_mtime_ns
        first = json.loads(live.read_text())["written"]
        assert wait_until(lambda: json.loads(live.read_text())["written"] != first, 3 * STATE_EVERY_S + 5)
        assert state_path(config).stat().st_mtime_ns == on_card
        assert json.loads(state_path(config).read_text())["live"] == str(live)
        status = collect_status(config, state_path(config))
    finally:
        stop.set()
        thread.join(30)
    assert status["agent"]["running"] is True, status
    assert status["agent"]["last_seen_age_s"] < 3 * STATE_EVERY_S
    stopped = json.loads(state_path(config).read_text())
    assert stopped["running"] is False and "live" not in stopped
    assert collect_status(config, state_path(config))["agent"]["running"] is False


def test_an_acknowledgement_waiting_in_memory_is_counted_by_the_agent_and_by_blankspot_status(tmp_path: Path) -> None:
    """The file shows the reading pending until the next commit; the agent's figures, and
    ``blankspot status`` while the agent runs, count it as delivered."""
    path = write_config(tmp_path / "agent.toml", 1, tmp_path / "buffer.db", {"uplink": {"enabled": False}})
    config = load_config(path)
    with ReadingBuffer(config.buffer.path, config.device_id) as buf:
        buf.append_many([signal_reading()] * 3)
        buf.ack(buf.take(2))
        assert read_stats(config.buffer.path).pending == 3, "not written yet"
        assert (buf.stats().pending, buf.stats().unconfirmed, buf.pending_count()) == (1, 2, 1)
        assert buf.backlog() == {"pending": 1, "unconfirmed": 2, "oldest_pending_time": buf.stats().oldest_pending_time,
                                 "last_seq": 3, "kept_from": 1, "delivered_total": 0}
        assert buf.take(10).seqs == (3,), "acknowledged readings are not taken again"
        state = {"running": True, "pid": os.getpid(), "boot_id": boot_id(),
                 "written": format_time_epoch(time.time()), "backlog": buf.backlog()}
        state_path(config).write_text(json.dumps(state))
        running = collect_status(config, state_path(config))["buffer"]
        state_path(config).write_text(json.dumps({**state, "running": False}))
        stopped = collect_status(config, state_path(config))["buffer"]
    assert (running["pending"], running["unconfirmed"], running["last_seq"]) == (1, 2, 3)
    assert (stopped["pending"], stopped["unconfirmed"]) == (3, 0), "a stopped agent's last figures are not used"
    assert (read_stats(config.buffer.path).pending, read_stats(config.buffer.path).unconfirmed) == (1, 2), \
        "closing the buffer writes the marks"


def test_usage_recorded_in_one_transaction_is_kept_whole_or_not_at_all(tmp_path: Path) -> None:
    when = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    with UsageLedger(tmp_path / "usage.db") as ledger:
        with ledger.transaction():
            ledger.record("uplink", 1000, when)
            ledger.record("throughput/http", 500, when)
        with pytest.raises(RuntimeError), ledger.transaction():
            ledger.record("uplink", 7, when)
            raise RuntimeError("the card went away")
        totals = ledger.totals(when)
    assert dict(totals.day_bytes) == {"uplink": 1000, "throughput/http": 500}


def test_the_agent_keeps_its_usage_ledger_open_and_records_the_uplink_when_it_stops(tmp_path: Path, broker) -> None:
    path = write_config(tmp_path / "agent.toml", broker.port, tmp_path / "buffer.db", {"source": {"interval": "50ms"}})
    config = load_config(path)
    service = make_service(config)
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: service.uplink is not None and service.uplink.stats.bytes_sent > 0, 20)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(30)
    assert service.uplink is not None
    with UsageLedger(config.budget.ledger) as ledger:
        recorded = ledger.totals(datetime.now(timezone.utc)).day_bytes.get("uplink", 0)
    assert recorded == service.uplink.stats.bytes_sent + service.uplink.stats.bytes_received > 0
