"""How the buffer stores a reading: deflated against a frozen dictionary, read back byte for byte.

And ``blankspot readings``, which prints what a buffer file holds as the unit sends it.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.unit import buffer as buffer_module
from agent.unit.buffer import PAGE_SIZE, ReadingBuffer, read_readings
from agent.unit.stored_body import DICTIONARY_V1, StoredBodyError, pack_body, unpack_body
from tests.support.readings_factory import (
    event_reading, latency_reading, no_service_reading, signal_reading, throughput_reading,
)

ROOT = Path(__file__).resolve().parent.parent
FACTORIES = (signal_reading, no_service_reading, latency_reading, throughput_reading, event_reading)


def as_sent(reading, seq: int = 4711) -> str:
    return replace(reading.at_precision(), seq=seq).to_json()


def test_the_dictionary_of_format_1_never_changes() -> None:
    """Every body a unit stored with it would become unreadable."""
    assert hashlib.sha256(DICTIONARY_V1).hexdigest()[:16] == "77c70e9a412a834a"


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_each_kind_of_reading_is_stored_small_and_read_back_byte_for_byte(factory) -> None:
    text = as_sent(factory())
    stored = pack_body(text)
    print(f"{factory.__name__}: {len(text)} bytes of JSON stored in {len(stored)}")
    assert unpack_body(stored) == text
    assert stored[0] == 1
    assert len(stored) < 120, "eight readings share a 1 KiB page"


def test_a_body_stored_as_text_by_an_older_version_is_read_as_it_is() -> None:
    text = as_sent(signal_reading())
    assert unpack_body(text) == text


def test_eight_readings_share_a_page_of_a_new_buffer(tmp_path: Path) -> None:
    with ReadingBuffer(tmp_path / "b.db", "unit-1") as buffer:
        before = buffer.used_bytes()
        buffer.append_many([signal_reading()] * 800)
        used = buffer.used_bytes() - before
    print(f"800 readings use {used} bytes of pages: {used / 800:.0f} bytes each")
    assert used / PAGE_SIZE <= 800 / 7


DAMAGED = [
    (b"", "a stored body is a BLOB or TEXT"),
    (None, "a stored body is a BLOB or TEXT, not NoneType"),
    (42, "a stored body is a BLOB or TEXT, not int"),
    (b"\x02" + pack_body("{}")[1:], "unknown stored body format 2 (this version reads 1)"),
    (b"{\"seq\":1}", "unknown stored body format 123"),
    (pack_body(as_sent(signal_reading()))[:-4], "truncated"),
    (pack_body(as_sent(signal_reading())) + b"\x00", "too long"),
    (b"\x01\xff\xff\xff", "stored body damaged"),
]


@pytest.mark.parametrize("value, said", DAMAGED)
def test_a_damaged_body_is_refused_with_what_is_wrong(value, said: str) -> None:
    with pytest.raises(StoredBodyError) as refused:
        unpack_body(value)
    assert said in str(refused.value)


def test_a_body_that_is_not_utf8_is_refused() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=DICTIONARY_V1)
    with pytest.raises(StoredBodyError, match="not UTF-8"):
        unpack_body(b"\x01" + packer.compress(b"\xff\xfe{}") + packer.flush())


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_text_is_read_back_as_it_was_stored(text: str) -> None:
    assert unpack_body(pack_body(text)) == text


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"\x01" + b))
def test_any_bytes_are_read_or_refused_with_the_documented_error(value: bytes) -> None:
    try:
        unpack_body(value)
    except StoredBodyError:
        pass


# -- blankspot readings ------------------------------------------------------------------------

def blankspot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_readings_prints_a_buffer_as_the_unit_sends_it_while_the_agent_holds_it_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "buffer.db"
    with ReadingBuffer(path, "unit-1") as buffer:
        stored = buffer.append_many([signal_reading(), latency_reading(), event_reading()])
        buffer.ack(buffer.take(2))
        monkeypatch.setattr(buffer_module, "HOLD_S", 0.0)
        buffer.append(signal_reading())  # files the readings and the acknowledgement
        monkeypatch.setattr(buffer_module, "HOLD_S", 300.0)
        buffer.append(signal_reading())  # into the intake only
        everything = blankspot("readings", str(path))
        pending = blankspot("readings", "--pending", str(path))
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.splitlines()[:3] == [r.to_json() for r in stored]
    assert [json.loads(line)["seq"] for line in everything.stdout.splitlines()] == [1, 2, 3, 4, 5]
    assert [json.loads(line)["seq"] for line in pending.stdout.splitlines()] == [3, 4, 5]
    assert [r.body for r in read_readings(path)] == everything.stdout.splitlines()


def test_readings_names_each_damaged_body_and_prints_the_others(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with ReadingBuffer(path, "unit-1") as buffer:
        buffer.append_many([signal_reading()] * 3)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE readings SET body = substr(body, 1, 20) WHERE seq = 2")  # cut short
    conn.close()
    done = blankspot("readings", str(path))
    assert done.returncode == 1
    assert [json.loads(line)["seq"] for line in done.stdout.splitlines()] == [1, 3]
    assert done.stderr.splitlines() == [
        "blankspot readings: seq 2: stored body damaged: truncated, too long, or larger than any reading",
        "blankspot: 1 readings could not be read (each named above)",
    ]


def test_readings_of_a_file_that_is_not_there_is_a_usage_error(tmp_path: Path) -> None:
    done = blankspot("readings", str(tmp_path / "nothing.db"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == f"blankspot readings: no buffer file at {tmp_path / 'nothing.db'}"


def test_readings_of_a_file_that_is_no_database_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    done = blankspot("readings", str(path))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip() == f"blankspot: cannot read the buffer {path}: file is not a database"
