"""The collector's store, on a real SQLite file and a real PostgreSQL (one schema per test).

Every behaviour is checked on both backends: readings stored once per (device, seq) and
duplicates counted, streamed back in order, columns for queries, quarantine with capped raw
bytes, unit statuses where the later one wins, data the database cannot hold refused whole,
concurrent writers, collectors starting together on a new file, schema migrations up from an old version and refusal of a newer one.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.centre.coverage import Thresholds
from agent.centre.store import open_store, schema
from agent.centre.store.base import (
    QUARANTINE_RAW_BYTES, DatabaseUrl, SchemaTooNew, StoreDataError, StoreError, StoreUrlError, parse_db_url,
)
from agent.centre.store.postgres import PostgresStore
from agent.centre.store.sqlite import SqliteStore
from agent.shared.operators import codes_of_numbers
from agent.shared.reading import SCHEMA_1, Event, Reading, Signal
from agent.sim.broker import free_port
from tests.support.postgres import db_url, postgres_url, store  # noqa: F401  (fixtures)
from tests.support.readings_factory import ALL_KINDS, T0, latency_reading, no_service_reading, signal_reading

SQL_INJECTION = "'; DROP TABLE readings; --"


def numbered(make, device: str, seq: int) -> Reading:
    return dataclasses.replace(make(device), seq=seq)


def run(readings_per_device: dict[str, range], make=signal_reading) -> list[Reading]:
    return [numbered(make, device, seq) for device, seqs in readings_per_device.items() for seq in seqs]


def sql(db_url: str, query: str, params: tuple = ()) -> list[tuple]:
    """Run SQL beside the store, as an integrator would: only for tests of the schema itself (its
    columns and migrations); every other test goes through the store's methods."""
    parsed = parse_db_url(db_url)
    if parsed.backend == "sqlite":
        with sqlite3.connect(parsed.target) as conn:
            return conn.execute(query.replace("%s", "?"), params).fetchall()
    import psycopg

    with psycopg.connect(parsed.target) as conn:
        return conn.execute(query, params).fetchall()


# -- URLs -------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("sqlite:///var/lib/blankspot/c.db", DatabaseUrl("sqlite", "/var/lib/blankspot/c.db")),
    ("sqlite:////var/lib/blankspot/c.db", DatabaseUrl("sqlite", "//var/lib/blankspot/c.db")),
    ("sqlite:collector.db", DatabaseUrl("sqlite", "collector.db")),
    ("/var/lib/blankspot/c.db", DatabaseUrl("sqlite", "/var/lib/blankspot/c.db")),
    ("collector.db", DatabaseUrl("sqlite", "collector.db")),
    ("postgresql://postgres@db.example/blankspot", DatabaseUrl("postgres", "postgresql://postgres@db.example/blankspot")),
    ("postgres://u:pw@h:5433/d", DatabaseUrl("postgres", "postgres://u:pw@h:5433/d")),
])
def test_database_urls(url: str, expected: DatabaseUrl) -> None:
    assert parse_db_url(url) == expected


@pytest.mark.parametrize("url, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("mysql://u@h/d", "unsupported scheme 'mysql'"),
    ("sqlite://", "sqlite:///absolute/path.db"),
    ("sqlite://host/c.db", "sqlite:///absolute/path.db"),
    ("sqlite:", "names no file"),
    ("postgresql:db", "expected postgresql://"),
    ("http://u:secret@h/d", "unsupported scheme"),
])
def test_bad_database_urls_are_the_callers_mistake(url: str, message: str) -> None:
    with pytest.raises(StoreUrlError, match=message) as caught:
        open_store(url)
    assert "secret" not in str(caught.value)


@given(st.text(max_size=60))
def test_any_text_is_a_database_url_or_a_url_error(text: str) -> None:
    try:
        parsed = parse_db_url(text)
    except StoreUrlError:
        return
    assert parsed.backend in ("sqlite", "postgres") and parsed.target


@pytest.mark.parametrize("url, message", [
    ("postgresql://postgres@127.0.0.1:notaport/test", "port 'notaport' is not a number"),
    ("postgresql://postgres@127.0.0.1/test?nosuchparameter=1", "invalid URI query parameter"),
])
def test_bad_postgres_urls_are_the_callers_mistake(url: str, message: str) -> None:
    with pytest.raises(StoreUrlError, match=message):
        open_store(url)


def test_unreachable_postgres_is_a_runtime_failure() -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/test"
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert not isinstance(caught.value, StoreUrlError)
    assert "cannot connect to PostgreSQL" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("content, message", [
    (b"this is not a database, just some text that fills a page" * 100, "file is not a database"),
])
def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=message):
        open_store(str(path))


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "nope" / "c.db"))


# -- readings ---------------------------------------------------------------------------

def test_every_kind_round_trips(store) -> None:
    readings = [numbered(make, "boat-07", seq) for seq, make in enumerate(ALL_KINDS, start=1)]
    assert store.insert_readings(readings) == (len(readings), 0)
    assert list(store.iter_readings()) == readings


def test_a_reading_is_stored_once_and_duplicates_counted(store) -> None:
    first = run({"boat-07": range(1, 101)})
    again = run({"boat-07": range(51, 151)})
    assert store.insert_readings(first) == (100, 0)
    assert store.insert_readings(again) == (50, 50)
    assert store.insert_readings(first) == (0, 100)
    counts = store.counts()
    assert counts["readings"] == 150 and counts["duplicates"] == 150 and counts["readings_inserted"] == 150
    assert [r.seq for r in store.iter_readings()] == list(range(1, 151))


@pytest.mark.parametrize("size", [3, 99, 100, 1000])
def test_small_and_large_batches_count_duplicates_alike(store, size: int) -> None:
    """PostgreSQL inserts small batches row by row and large ones through COPY."""
    assert store.insert_readings(run({"boat-07": range(1, size + 1)})) == (size, 0)
    assert store.insert_readings(run({"boat-07": range(2, size + 2)})) == (1, size - 1)
    assert store.insert_readings(run({"boat-07": range(1, size + 2)}) * 2) == (0, 2 * (size + 1))


def test_the_first_copy_is_kept(store) -> None:
    original = numbered(signal_reading, "boat-07", 7)
    changed = dataclasses.replace(original, time=T0 + timedelta(hours=1))
    store.insert_readings([original])
    assert store.insert_readings([changed]) == (0, 1)
    assert list(store.iter_readings()) == [original]


def test_readings_come_back_ordered_by_device_then_seq_and_filtered(store) -> None:
    readings = run({"village-2": range(30, 0, -1), "boat-07": range(1, 11)})
    readings += [numbered(latency_reading, "boat-07", seq) for seq in range(11, 16)]
    store.insert_readings(readings)
    keys = [(r.device, r.seq) for r in store.iter_readings()]
    assert keys == sorted(keys) and len(keys) == 45
    assert [r.seq for r in store.iter_readings(device="village-2")] == list(range(1, 31))
    assert [r.seq for r in store.iter_readings(kind="latency")] == list(range(11, 16))
    assert [r.seq for r in store.iter_readings(device="boat-07", kind="signal")] == list(range(1, 11))
    assert list(store.iter_readings(device="nobody")) == []


def test_a_pass_left_unfinished_when_the_store_closes_ends_quietly(db_url: str) -> None:
    """A reader that stops early (``export --out - | head``, a missing grid library) closes
    the store with a pass still open: that pass is let go without an error."""
    s = open_store(db_url)
    s.insert_readings(run({"boat-07": range(1, 3001)}))
    rows = s.iter_rows()
    assert next(rows)[:2] == ("boat-07", 1)
    s.close()
    rows.close()  # what the garbage collector does later, where an error would only be printed


def test_the_keys_of_the_stored_readings_and_their_runs_in_the_ledger(store) -> None:
    store.insert_readings(run({"village-2": range(3, 0, -1), "boat-07": [1, 2, 5, 9, 8]}))
    assert store.reading_keys() == [("boat-07", 1), ("boat-07", 2), ("boat-07", 5), ("boat-07", 8), ("boat-07", 9),
                                    ("village-2", 1), ("village-2", 2), ("village-2", 3)]
    assert store.reading_keys("village-2") == [("village-2", 1), ("village-2", 2), ("village-2", 3)]
    assert store.stored_ranges("boat-07") == [(1, 2), (5, 5), (8, 9)]
    assert store.reading_keys("nobody") == [] and store.stored_ranges("nobody") == []


def test_many_readings_stream_back_in_steps(store) -> None:
    store.insert_readings(run({"boat-07": range(1, 2501)}))
    seqs = [r.seq for r in store.iter_readings()]
    assert seqs == list(range(1, 2501))


def test_each_units_first_home_registration_naming_its_network(store) -> None:
    def home(device: str, seq: int, **changed) -> Reading:
        part = dataclasses.replace(Signal(registration="home", operator="TELKOMSEL", mcc="510", mnc="10", rat="LTE",
                                          quality="good"), **changed)
        return Reading(device, T0, "gps", part, None, seq=seq)

    store.insert_readings([
        numbered(no_service_reading, "boat-07", 1),
        home("boat-07", 2, error="modem did not answer"),
        home("boat-07", 3, registration="roaming"),
        home("boat-07", 4, mcc=None, mnc=None, operator=" "),   # names no network
        home("boat-07", 5, mcc="000", operator=None),           # no PLMN, no name
        home("boat-07", 6, mnc="01", operator="INDOSAT", registration="sms_only_home"),  # at home, SMS only
        home("boat-07", 7),
        home("village-2", 9, mcc=None, mnc=None, operator="Telkomsel"),
        numbered(latency_reading, "village-2", 10),
        numbered(no_service_reading, "probe-3", 1),             # never at home
        home("probe-3", 2, registration="sms_only_roaming"),
        home("probe-3", 3, registration="emergency_only"),
    ])
    assert store.first_home_signals() == [("boat-07", 6, "510", "01", "INDOSAT"),
                                          ("village-2", 9, None, None, "Telkomsel")]


def test_columns_for_queries(store, db_url: str) -> None:
    store.insert_readings([
        numbered(signal_reading, "boat-07", 1),
        numbered(no_service_reading, "boat-07", 2),
        numbered(latency_reading, "boat-07", 3),
        Reading("boat-07", T0, "ntp", Signal(error="modem did not answer", quality=None, rat=None), None, seq=4),
        Reading("boat-07", T0, "gps", Event("tag", "kantor desa", {"button": "short"}), None, seq=5),
    ])
    rows = sql(db_url, "SELECT seq, kind, lat, lon, fix, registration, operator, mcc, mnc, rat, rsrp_dbm, quality, "
                       "error, rtt_avg_ms, loss_pct, event_type, event_message FROM readings ORDER BY seq")
    assert rows == [
        (1, "signal", -0.503, 117.146, "3d", "home", "TELKOMSEL", "510", "10", "LTE", -99.0, "fair", None, None, None, None, None),
        (2, "signal", -0.503, 117.146, "3d", "searching", None, None, None, "NONE", None, "none", None, None, None, None, None),
        (3, "latency", None, None, None, None, None, None, None, None, None, None, None, 55.0, 20.0, None, None),
        (4, "signal", None, None, None, "unknown", None, None, None, None, None, None, "modem did not answer",
         None, None, None, None),
        (5, "event", None, None, None, None, None, None, None, None, None, None, None, None, None, "tag", "kantor desa"),
    ]


def test_the_codes_are_kept_as_the_digits_broadcast(store, db_url: str) -> None:
    """510-01 stays 510-01, and 310-026 and 310-26 stay two networks, in the columns and the bodies."""
    codes = [("510", "01"), ("310", "026"), ("310", "26"), ("510", "010")]
    store.insert_readings([Reading("boat-07", T0, "gps", Signal(registration="roaming", mcc=mcc, mnc=mnc, rat="LTE",
                                                                quality="good"), None, seq=seq)
                           for seq, (mcc, mnc) in enumerate(codes, start=1)])
    assert sql(db_url, "SELECT mcc, mnc FROM readings ORDER BY seq") == codes
    assert [(r.part.mcc, r.part.mnc) for r in store.iter_readings()] == codes


def test_sql_looking_strings_are_only_data(store) -> None:
    reading = dataclasses.replace(
        numbered(signal_reading, "boat-07", 1),
        part=dataclasses.replace(signal_reading().part, operator=SQL_INJECTION),
    )
    event = Reading("boat-07", T0, "ntp", Event(SQL_INJECTION, SQL_INJECTION + '"); --', {SQL_INJECTION: 1}), None, seq=2)
    assert store.insert_readings([reading, event]) == (2, 0)
    assert list(store.iter_readings()) == [reading, event]
    assert store.first_home_signals() == [("boat-07", 1, "510", "10", SQL_INJECTION)]  # its operator column


@pytest.mark.parametrize("bad, why", [
    (Signal(operator="TELKOM\x00SEL"), "NUL"),
    (Signal(operator="\ud800"), "surrogate"),
    (Event("tag", None, {"x\x00": 1}), "NUL"),
    (Event("tag", None, {"level": float("nan")}), "NaN"),
])
def test_what_the_database_cannot_hold_is_refused_whole(store, bad, why: str) -> None:
    good = numbered(signal_reading, "boat-07", 1)
    hostile = Reading("boat-07", T0, "ntp", bad, None, seq=2)
    with pytest.raises(StoreDataError, match=why):
        store.insert_readings([good, hostile])
    assert store.counts()["readings"] == 0
    assert store.insert_readings([good]) == (1, 0)


def test_a_reading_without_seq_is_refused(store) -> None:
    with pytest.raises(StoreDataError, match="no seq"):
        store.insert_readings([signal_reading()])


def test_concurrent_writers_store_each_reading_once(db_url: str) -> None:
    open_store(db_url).close()  # migrate once before the race
    chunks = [run({"boat-07": range(start, start + 200), "village-2": range(start, start + 200)})
              for start in range(1, 2001, 100)]  # each chunk overlaps the next by half
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def writer(order: list) -> None:
        try:
            with open_store(db_url) as s:
                for chunk in order:
                    results.append(s.insert_readings(chunk))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(chunks,)), threading.Thread(target=writer, args=(chunks[::-1],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with open_store(db_url) as s:
        counts = s.counts()
    assert counts["readings"] == 2 * 2100
    assert sum(inserted for inserted, _ in results) == 2 * 2100
    assert counts["duplicates"] == sum(d for _, d in results) == 2 * 20 * 400 - 2 * 2100


# -- quarantine, units, counts ---------------------------------------------------------

def test_quarantine_keeps_the_first_bytes_and_the_size(store) -> None:
    big = b"{" * (10 * 1024 * 1024)
    store.quarantine("blankspot/v1/boat-07/readings", big, "payload of 10485760 bytes exceeds 4000000")
    store.quarantine("blankspot/v1/boat-07/status", b"\x00\xff not json", "not JSON: \x00 \ud800 " + "x" * 5000)
    first, second = store.quarantined()
    assert first["raw"] == big[:QUARANTINE_RAW_BYTES] and first["size"] == len(big)
    assert first["topic"] == "blankspot/v1/boat-07/readings" and "exceeds" in first["reason"]
    assert second["raw"] == b"\x00\xff not json" and second["size"] == 11
    assert "\x00" not in second["reason"] and len(second["reason"]) <= 1000
    assert first["id"] < second["id"] and first["received_at"].tzinfo is not None
    assert store.counts()["quarantined"] == 2


def test_a_units_later_status_wins(store) -> None:
    store.update_unit("boat-07", "online", T0, {"state": "online", "backlog": {"pending": 12}})
    store.update_unit("boat-07", "offline", T0 + timedelta(minutes=5), {"state": "offline", "reason": "connection lost"})
    store.update_unit("boat-07", "online", T0 + timedelta(minutes=1), {"state": "online"})  # late arrival
    store.update_unit("village-2", "online", T0, {"state": "online"})
    units = store.units()
    assert [(u["device"], u["state"], u["last_seen"]) for u in units] == [
        ("boat-07", "offline", T0 + timedelta(minutes=5)), ("village-2", "online", T0),
    ]
    assert units[0]["status"] == {"state": "offline", "reason": "connection lost"}
    counts = store.counts()
    assert counts["units"] == 2 and counts["units_online"] == 1 and counts["statuses"] == 4


def test_a_status_the_database_cannot_hold_is_refused(store) -> None:
    with pytest.raises(StoreDataError, match="NUL"):
        store.update_unit("boat-07", "online", T0, {"operator": "a\x00b"})
    assert store.units() == []


def test_counts_of_an_empty_store(store) -> None:
    assert store.counts() == {
        "batches": 0, "readings_inserted": 0, "duplicates": 0, "quarantined": 0, "statuses": 0,
        "readings_refused": 0, "holes_opened": 0, "holes_filled": 0,
        "readings": 0, "devices": 0, "units": 0, "units_online": 0,
    }


# -- migrations -------------------------------------------------------------------------

def _open_at(db_url: str, steps):
    parsed = parse_db_url(db_url)
    cls = SqliteStore if parsed.backend == "sqlite" else PostgresStore
    return cls(parsed.target, steps=steps)


def test_an_old_database_is_upgraded_in_place(db_url: str) -> None:
    old = _open_at(db_url, schema.MIGRATIONS[:1])
    assert old.schema_version() == 1
    old.insert_readings(run({"boat-07": range(1, 11)}))
    old.close()
    assert not sql(db_url, "SELECT 1 FROM schema_version WHERE version = 2")
    with open_store(db_url) as upgraded:
        assert upgraded.schema_version() == schema.LATEST == 9
        assert upgraded.keeps_tracks() and upgraded.tracks_up_to_date(), "the kept tracks are built"
        assert [r.seq for r in upgraded.iter_readings(kind="signal")] == list(range(1, 11))
        assert sql(db_url, "SELECT first_seq, last_seq FROM seq_ranges") == [(1, 10)], "the ledger is built"
        assert upgraded.insert_readings(run({"boat-07": range(5, 16)})) == (5, 6)
        assert upgraded.ledger()["boat-07"]["top"] == 15 and upgraded.holes("boat-07") == []
        assert upgraded.coverage(8, Thresholds()).cells, "the coverage figures are built"
    assert [row[0] for row in sql(db_url, "SELECT version FROM schema_version ORDER BY version")] == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def execute(db_url: str, query: str, params: tuple = ()) -> None:
    """A statement beside the store that returns no rows (as :func:`sql`, for tests of the schema)."""
    parsed = parse_db_url(db_url)
    if parsed.backend == "sqlite":
        with sqlite3.connect(parsed.target) as conn:
            conn.execute(query.replace("%s", "?"), params)
        conn.close()
        return
    import psycopg

    with psycopg.connect(parsed.target) as conn:
        conn.execute(query, params)


# (MCC, MNC) as a database before step 8 keeps them, integers as blankspot.reading/1 had them.
OLD_CODES = [(510, 1), (510, 10), (510, 89), (310, 26), (310, 260), (302, 720), (405, 25), (405, 854), (1, 1),
             (0, 10), (1000, 1), (510, -1), (510, 1000), (510, None), (None, 10), (None, None)]


def test_an_older_databases_codes_become_the_digits_a_reading_of_1_is_read_as(db_url: str) -> None:
    """Schema step 8: each row's codes as text, written as its /1 body is read, so the columns
    and the bodies agree, and a /1 and a /2 reading of one network are stored alike."""
    old = _open_at(db_url, schema.MIGRATIONS[:7])
    readings = [Reading("boat-07", T0, "gps", Signal(registration="home", operator="X", mcc=mcc, mnc=mnc, rat="LTE",
                                                     quality="good"), None, seq=seq)
                for seq, (mcc, mnc) in enumerate(OLD_CODES, start=1)]
    old.insert_readings(readings)
    old.close()
    for reading in readings:  # the bodies as the earlier collector stored them
        body = {**reading.to_dict(), "schema": SCHEMA_1}
        execute(db_url, "UPDATE readings SET body = %s WHERE seq = %s", (json.dumps(body), reading.seq))
    with open_store(db_url) as upgraded:
        assert upgraded.schema_version() == schema.LATEST
        digits = [codes_of_numbers(mcc, mnc) for mcc, mnc in OLD_CODES]
        assert sql(db_url, "SELECT mcc, mnc FROM readings ORDER BY seq") == digits
        assert [(r.part.mcc, r.part.mnc) for r in upgraded.iter_readings()] == digits
        assert digits[:4] == [("510", "01"), ("510", "10"), ("510", "89"), ("310", "026")]
        again = dataclasses.replace(readings[0], seq=100, part=dataclasses.replace(readings[0].part, mcc="510",
                                                                                   mnc="01"))
        upgraded.insert_readings([again])
        assert sql(db_url, "SELECT mcc, mnc FROM readings WHERE seq = 100") == [("510", "01")]
        assert upgraded.first_home_signals() == [("boat-07", 1, "510", "01", "X")]


def test_the_home_registrations_of_reading_2_are_in_the_home_index(tmp_path: Path) -> None:
    """The queries for a unit's home registrations are the partial index's: SQLite uses it."""
    from agent.centre.store.aggregates import HOME_REGISTRATION, HOME_ROW

    with open_store(str(tmp_path / "c.db")):
        pass
    with sqlite3.connect(tmp_path / "c.db") as conn:
        (index,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'readings_home'").fetchone()
        # INDEXED BY fails ("no query solution") unless the query's terms imply the index's.
        plan = conn.execute(f"EXPLAIN QUERY PLAN SELECT seq FROM readings INDEXED BY readings_home"
                            f" WHERE device = ? AND {HOME_ROW} ORDER BY seq DESC LIMIT 1", ("boat-07",)).fetchall()
        with pytest.raises(sqlite3.OperationalError, match="no query solution"):
            conn.execute("SELECT seq FROM readings INDEXED BY readings_home WHERE device = ? AND kind = 'signal'"
                         " AND registration = 'roaming'", ("boat-07",))
    conn.close()
    assert index.endswith(f"WHERE {HOME_REGISTRATION}")
    assert HOME_REGISTRATION == ("kind = 'signal' AND registration IN ('csfb_not_preferred_home', 'home', "
                                 "'sms_only_home')")
    assert any("readings_home" in row[-1] for row in plan), plan


def test_opening_again_changes_nothing(db_url: str) -> None:
    open_store(db_url).close()
    with open_store(db_url) as again:
        assert again.schema_version() == schema.LATEST
    assert len(sql(db_url, "SELECT version FROM schema_version")) == len(schema.MIGRATIONS)


def test_two_collectors_starting_together_on_a_new_sqlite_file_both_open_it(tmp_path: Path) -> None:
    """Separate processes, as two collectors on one machine: the first to switch the new
    file to WAL makes the other wait, not fail with "database is locked"."""
    # Both wait, imports done, for one agreed moment: a start-up takes longer than the race.
    opener = ("import sys, time; from agent.centre.store import open_store; "
              "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
              "s = open_store('sqlite:///' + sys.argv[1]); print(s.schema_version()); s.close()")
    for attempt in range(8):
        path = tmp_path / f"collector-{attempt}.db"
        at = str(time.time() + 0.5)
        starts = [subprocess.Popen([sys.executable, "-c", opener, str(path), at], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for start in starts:
            out, err = start.communicate(timeout=60)
            assert start.returncode == 0 and out.strip() == str(schema.LATEST), f"start-up {attempt}: {err[-1000:]}"
        assert len(sql(f"sqlite:///{path}", "SELECT version FROM schema_version")) == len(schema.MIGRATIONS)


def test_a_newer_database_is_refused_clearly(db_url: str) -> None:
    open_store(db_url).close()
    if parse_db_url(db_url).backend == "sqlite":
        with sqlite3.connect(parse_db_url(db_url).target) as conn:
            conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', '2030-01-01T00:00:00.000Z')")
    else:
        import psycopg

        with psycopg.connect(parse_db_url(db_url).target, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', now())")
    with pytest.raises(SchemaTooNew, match=rf"schema version 99 is newer than this blankspot knows \({schema.LATEST}\): upgrade blankspot"):
        open_store(db_url)


def test_migrations_are_numbered_in_order_and_cover_both_backends() -> None:
    versions = [s.version for s in schema.MIGRATIONS]
    assert versions[0] == 1 and all(a < b for a, b in zip(versions, versions[1:]))
    for step in schema.MIGRATIONS:
        assert step.sqlite and step.postgres
