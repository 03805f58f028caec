"""Time on a unit without a real-time clock: GPS time when the system clock is not synchronised,
earlier readings re-stamped once a trusted time appears, seq untouched by clock steps."""
from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.unit.buffer import ReadingBuffer, read_readings
from agent.shared.clock import EARLIEST_PLAUSIBLE, TimeKeeper, Timestamp, boottime
from agent.unit.devices.gps.fix import Fix
from agent.unit.devices.gps.reader import GpsReader
from agent.unit.gps_feed import GpsFeed
from agent.shared.reading import Event, Reading, Signal, parse_time, reading_from_json
from agent.unit.stored_body import pack_body
from agent.sim.gps import SimulatedGps
from agent.sim.route import mahakam_route

# After the release date: the GPS reader takes an earlier date for a week rollover.
GPS_NOW = datetime(2026, 12, 4, 3, 0, 0, tzinfo=timezone.utc)
EPOCH_1970 = 120.0  # a Pi without RTC after a power cut: two minutes into 1970


@dataclass
class FakeBoot:
    """CLOCK_BOOTTIME the test moves by hand."""

    value: float = 1000.0

    def __call__(self) -> float:
        return self.value


def fix_at(when: datetime | None, received: float, mode: str = "3d") -> Fix:
    lat, lon = (None, None) if mode == "none" else (-0.5, 117.1)
    return Fix(when, lat, lon, None, None, None, None, None, mode, received=received)  # type: ignore[arg-type]


# -- the time keeper -----------------------------------------------------------------------

def test_synchronised_system_clock_is_ntp() -> None:
    keeper = TimeKeeper(synchronised=lambda: True, wall=lambda: GPS_NOW.timestamp(), boot=FakeBoot())
    stamp = keeper.now()
    assert (stamp.time, stamp.source, stamp.boottime) == (GPS_NOW, "ntp", 1000.0)


def test_unsynchronised_clock_without_gps_is_marked_unsynced() -> None:
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=FakeBoot())
    stamp = keeper.now()
    assert stamp.source == "unsynced" and stamp.time.year == 1970 and not stamp.trusted


def test_a_synchronised_flag_with_a_1970_date_is_not_believed() -> None:
    keeper = TimeKeeper(synchronised=lambda: True, wall=lambda: EPOCH_1970, boot=FakeBoot())
    assert keeper.now().source == "unsynced"


def test_unsynchronised_clock_takes_gps_time_carried_on_boottime() -> None:
    boot = FakeBoot(1000.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    assert keeper.gps_fix(fix_at(GPS_NOW, received=999.5))
    boot.value = 1010.25
    stamp = keeper.now()
    assert stamp.source == "gps"
    assert stamp.time == GPS_NOW + timedelta(seconds=10.75)


@pytest.mark.parametrize("fix, why", [
    (fix_at(GPS_NOW, 999.0, mode="none"), "a receiver without a fix only guesses the time"),
    (fix_at(None, 999.0), "no date yet (no RMC seen)"),
    (fix_at(GPS_NOW - timedelta(weeks=1024), 999.0), "GPS week rollover: 19.6 years early"),
    (Fix(GPS_NOW, -0.5, 117.1, None, None, None, None, None, "3d"), "no receipt time"),
])
def test_gps_times_that_are_not_trusted(fix: Fix, why: str) -> None:
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=FakeBoot())
    assert not keeper.gps_fix(fix), why
    assert keeper.now().source == "unsynced"


def test_earliest_plausible_date_is_not_in_the_future() -> None:
    assert EARLIEST_PLAUSIBLE < datetime.now(timezone.utc)


def test_a_date_corrected_for_the_week_rollover_is_taken_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """The reader moved the receiver's date 1024 weeks forward: the time is taken (its time of
    day is right), and the first such fix logs a warning a technician can act on."""
    boot = FakeBoot(1000.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    corrected = dataclasses.replace(fix_at(GPS_NOW, received=999.0), date_corrected_weeks=1024)
    with caplog.at_level(logging.WARNING, logger="agent.shared.clock"):
        assert keeper.gps_fix(corrected)
        assert keeper.gps_fix(dataclasses.replace(corrected, time=GPS_NOW + timedelta(seconds=1), received=1000.0))
    assert keeper.now() == Timestamp(GPS_NOW + timedelta(seconds=1), "gps", 1000.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    print(warnings)
    assert len(warnings) == 1
    assert warnings[0].startswith("GPS receiver reports dates 1024 weeks early (a firmware week-rollover bug); "
                                  "dates corrected by 1024 weeks (it says 2007-04-20, taken as 2026-12-04)")


def test_ntp_wins_over_gps_once_synchronised() -> None:
    synced = [False]
    keeper = TimeKeeper(synchronised=lambda: synced[0], wall=lambda: GPS_NOW.timestamp() + 0.3, boot=FakeBoot())
    keeper.gps_fix(fix_at(GPS_NOW, 1000.0))
    assert keeper.now().source == "gps"
    synced[0] = True
    assert keeper.now().source == "ntp"


def test_spans_are_measured_on_a_clock_that_steps_of_the_wall_clock_do_not_move() -> None:
    wall = [EPOCH_1970]
    keeper = TimeKeeper(synchronised=lambda: True, wall=lambda: wall[0], boot=FakeBoot())
    before = keeper.monotonic()
    wall[0] = GPS_NOW.timestamp()  # NTP steps the clock 56 years ahead
    assert 0.0 <= keeper.monotonic() - before < 1.0


# -- re-stamping buffered readings ---------------------------------------------------------

def event(keeper: TimeKeeper, n: int) -> Reading:
    return Reading.taken("unit-1", keeper.now(), Event("probe", f"reading {n}", {}))


def pending_bodies(buffer: ReadingBuffer) -> list[dict]:
    """What the uplink would send next, oldest first."""
    return [json.loads(r.body) for r in read_readings(buffer.path) if r.state == "pending"]


def test_readings_taken_before_a_gps_fix_are_re_stamped_with_gps_time(tmp_path: Path) -> None:
    boot = FakeBoot(1000.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as buffer:
        for n in range(3):
            boot.value = 1000.0 + 7.5 * n  # 1000, 1007.5, 1015
            assert buffer.append(event(keeper, n)).time_source == "unsynced"
        assert {b["time_source"] for b in pending_bodies(buffer)} == {"unsynced"}

        boot.value = 1030.0
        keeper.gps_fix(fix_at(GPS_NOW, received=1029.0))  # the fix arrived a second ago
        boot.value = 1031.0
        trusted = buffer.append(event(keeper, 3))
        assert trusted.time_source == "gps" and trusted.time == GPS_NOW + timedelta(seconds=2)

        bodies = pending_bodies(buffer)
        oldest = buffer.stats().oldest_pending_time
    assert oldest == bodies[0]["time"], "the time column is re-stamped with the body"
    assert [b["seq"] for b in bodies] == [1, 2, 3, 4], "seq is untouched by the correction"
    assert [b["time_source"] for b in bodies] == ["gps"] * 4
    times = [parse_time(b["time"]) for b in bodies]
    assert times[:3] == [GPS_NOW - timedelta(seconds=29 - 7.5 * n) for n in range(3)]
    for body in bodies:
        reading_from_json(json.dumps(body))  # still valid readings


def test_a_stored_reading_the_schema_refuses_keeps_its_unsynced_time(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Re-stamping decodes each reading; one the schema refuses (data over 4 KB) is left as it
    was, to be sent and judged at the centre, and the others are corrected all the same."""
    boot = FakeBoot(100.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    oversized = Reading.taken("unit-1", keeper.now(), Event("probe", "too much", {"x": "y" * 5000}))
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as buffer:
        buffer.append_many([event(keeper, 0), oversized, event(keeper, 2)])
        keeper.gps_fix(fix_at(GPS_NOW, received=100.0))
        assert buffer.correct_times(keeper.now()) == 2
        bodies = pending_bodies(buffer)
    assert [b["time_source"] for b in bodies] == ["gps", "unsynced", "gps"]
    assert any(r.levelname == "ERROR" and "seq 2 cannot be re-stamped" in r.getMessage() for r in caplog.records)


def test_a_reading_stored_before_an_upgrade_is_re_stamped_too(tmp_path: Path) -> None:
    """The agent was upgraded without a reboot: a reading it stored unsynced as
    blankspot.reading/1 is read, converted and re-stamped with the rest."""
    boot = FakeBoot(100.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    path = tmp_path / "b.db"
    with ReadingBuffer(path, "unit-1", clock=keeper) as buffer:
        signal = Signal(registration="home", operator="INDOSAT", mcc="510", mnc="01", rat="LTE", quality=None)
        stored = buffer.append(Reading.taken("unit-1", keeper.now(), signal))
    earlier = stored.to_dict()  # as the earlier version wrote it into the buffer's file
    earlier["schema"] = "blankspot.reading/1"
    earlier["signal"].update(mcc=510, mnc=1)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE readings SET body = ? WHERE seq = ?", (pack_body(json.dumps(earlier)), stored.seq))
    conn.close()
    with ReadingBuffer(path, "unit-1", clock=keeper) as buffer:
        keeper.gps_fix(fix_at(GPS_NOW, received=100.0))
        assert buffer.correct_times(keeper.now()) == 1
        (body,) = pending_bodies(buffer)
    assert body["schema"] == "blankspot.reading/2" and body["time_source"] == "gps"
    assert (body["signal"]["mcc"], body["signal"]["mnc"]) == ("510", "01")
    assert reading_from_json(json.dumps(body)).part == signal


def test_correction_survives_a_crash_in_the_same_boot(tmp_path: Path) -> None:
    boot = FakeBoot(500.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    buffer = ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper)
    buffer.append(event(keeper, 0))
    buffer.conn.close()  # no clean close: as after kill -9
    keeper.gps_fix(fix_at(GPS_NOW, received=600.0))
    boot.value = 600.0
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as reopened:
        reopened.append(event(keeper, 1))
        first = pending_bodies(reopened)[0]
    assert first["time_source"] == "gps" and parse_time(first["time"]) == GPS_NOW - timedelta(seconds=100)


def test_readings_of_an_earlier_boot_stay_unsynced(tmp_path: Path) -> None:
    boot = FakeBoot(50.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper, this_boot="an-earlier-boot") as buffer:
        buffer.append(event(keeper, 0))
    keeper.gps_fix(fix_at(GPS_NOW, received=50.0))
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as buffer:
        buffer.append(event(keeper, 1))
        bodies = pending_bodies(buffer)
    assert [b["time_source"] for b in bodies] == ["unsynced", "gps"]
    assert bodies[0]["time"].startswith("1970-"), "kept as measured, and marked"


def test_a_batch_in_flight_during_the_correction_is_resent_corrected(tmp_path: Path) -> None:
    boot = FakeBoot(10.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as buffer:
        buffer.append(event(keeper, 0))
        in_flight = buffer.take(10)
        assert in_flight is not None and '"unsynced"' in in_flight.bodies[0]
        keeper.gps_fix(fix_at(GPS_NOW, received=10.0))
        assert buffer.correct_times(keeper.now()) == 1
        buffer.nack(in_flight)  # the broker never acknowledged it
        again = buffer.take(10)
    assert again is not None and json.loads(again.bodies[0])["time_source"] == "gps"


def test_delivered_readings_are_left_as_sent(tmp_path: Path) -> None:
    boot = FakeBoot(10.0)
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970, boot=boot)
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as buffer:
        buffer.append(event(keeper, 0))
        batch = buffer.take(10)
        assert batch is not None
        buffer.ack(batch)
        keeper.gps_fix(fix_at(GPS_NOW, received=10.0))
        assert buffer.correct_times(keeper.now()) == 0


def test_clock_steps_do_not_reorder_seq(tmp_path: Path) -> None:
    """NTP stepping the clock back an hour between readings: seq still follows the order taken."""
    walls = iter([GPS_NOW.timestamp(), GPS_NOW.timestamp() - 3600, GPS_NOW.timestamp() + 7200, GPS_NOW.timestamp() - 1])
    keeper = TimeKeeper(synchronised=lambda: True, wall=lambda: next(walls), boot=boottime)
    with ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as buffer:
        stored = [buffer.append(event(keeper, n)) for n in range(4)]
        bodies = pending_bodies(buffer)
    assert [r.seq for r in stored] == [1, 2, 3, 4]
    assert [b["event"]["message"] for b in bodies] == [f"reading {n}" for n in range(4)]


# -- end to end: a simulated receiver on a pseudo-terminal ---------------------------------

def test_gps_receiver_gives_the_time_and_corrects_readings_taken_under_canopy(tmp_path: Path) -> None:
    """The Pi boots in 1970 under canopy; the receiver gets a fix after ~1.5 s; readings taken
    before it end up with the receiver's time for the moment they were taken."""
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970)
    taken_at: dict[int, float] = {}
    stop = threading.Event()
    sim_started = boottime()
    with SimulatedGps(mahakam_route(), 36.0, rate_hz=5, start_time=GPS_NOW, no_sky=[(0.0, 15.0)],
                      workdir=tmp_path) as gps, GpsReader(gps.port, 9600) as reader, \
            ReadingBuffer(tmp_path / "b.db", "unit-1", clock=keeper) as buffer:

        def feed() -> None:
            while not stop.is_set():
                fix = reader.read_fix(0.5)
                if fix is not None:
                    keeper.gps_fix(fix)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                stamp = keeper.now()
                stored = buffer.append(Reading.taken("unit-1", stamp, Event("probe", None, {})))
                taken_at[stored.seq] = stamp.boottime  # type: ignore[assignment]
                if stamp.source == "gps" and len(taken_at) > 20:
                    break
                time.sleep(0.1)  # readings paced in real time: the simulated receiver runs on it
        finally:
            stop.set()
            feeder.join(2)
        bodies = pending_bodies(buffer)
    assert bodies[0]["time_source"] == "gps", "the first reading, taken in 1970 under canopy, was corrected"
    assert all(b["time_source"] == "gps" for b in bodies)
    worst = 0.0
    for body in bodies:
        truth = GPS_NOW + timedelta(seconds=taken_at[body["seq"]] - sim_started)
        worst = max(worst, abs((parse_time(body["time"]) - truth).total_seconds()))
    print(f"{len(bodies)} readings, worst error against the receiver's time {worst * 1000:.0f} ms")
    assert worst < 0.25


def test_a_receiver_with_the_week_rollover_bug_still_gives_the_time_and_one_event(tmp_path: Path) -> None:
    """A receiver whose firmware sends dates 1024 weeks early (2007 for 2026), read through the
    GPS feed: the time keeper gets the corrected time, and the feed has one
    ``gps_date_corrected`` event for the run, however many fixes follow."""
    keeper = TimeKeeper(synchronised=lambda: False, wall=lambda: EPOCH_1970)
    early = GPS_NOW - timedelta(weeks=1024)
    with SimulatedGps(mahakam_route(), 36.0, rate_hz=5, start_time=early, workdir=tmp_path) as gps:
        feed = GpsFeed(lambda: GpsReader(gps.port, 9600), gps.port, keeper).start()
        try:
            deadline = time.monotonic() + 15
            events: list[Event] = []
            while time.monotonic() < deadline and (not events or feed.epochs < 10):
                events += feed.new_events()
                time.sleep(0.1)
            events += feed.new_events()
        finally:
            feed.stop()
    stamp = keeper.now()
    print(f"{feed.epochs} epochs, time {stamp.time} ({stamp.source}), events {events}")
    assert stamp.source == "gps" and abs(stamp.time - GPS_NOW) < timedelta(minutes=1)
    assert feed.epochs >= 10
    assert [(e.type, e.data) for e in events] == [("gps_date_corrected", {
        "receiver_date": "2007-04-20", "corrected_date": "2026-12-04", "weeks": 1024})]
    assert events[0].message == ("GPS receiver reports dates 1024 weeks early (a firmware week-rollover bug): "
                                 "its 2007-04-20 is taken as 2026-12-04")
