"""The simulated GPS receiver: a pseudo-terminal that pyserial opens like /dev/ttyACM0 and
that streams NMEA as a u-blox, MediaTek or Quectel receiver on a boat would.

Everything is read through plain pyserial and judged with the agent's own NMEA parser and
FixState, so the tests pin down what the GPS reader will actually meet: valid sentences,
each receiver's talkers and order, positions on the route, no fix under canopy and a fix
again after it, a replayed capture byte for byte, and the failures a field unit sees
(binary noise, a silent receiver, USB re-enumeration, garbled bytes).
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import threading
import time
from pathlib import Path

import pytest
import serial

from agent.unit.devices.gps.fix import Fix, FixState
from agent.unit.devices.gps.nmea import NmeaError, parse_sentence
from agent.shared.geo import haversine_m
from agent.sim.gps import ReplayGps, SimulatedGps
from agent.sim.route import mahakam_route
from tests.support.data import NMEA

# Crosses midnight; after the release date, as every date a receiver sends the agent is (an
# earlier one is taken for a week rollover: tests/test_nmea.py).
START = dt.datetime(2027, 3, 1, 23, 59, 30, tzinfo=dt.UTC)

# Each receiver's sentences in the order of one epoch (a GSV group counts once).
PATTERNS = {
    "ublox": ["GNRMC", "GNVTG", "GNGGA", "GNGSA", "GPGSV"],
    "mt3339": ["GPGGA", "GPGSA", "GPRMC", "GPVTG"],
    "quectel": ["GPGSV", "GPGGA", "GPRMC", "GPGSA", "GPVTG", "GNGNS"],
}


def read_lines(port: serial.Serial, seconds: float) -> list[tuple[float, bytes]]:
    """Every complete line that arrives within ``seconds``, with its arrival time."""
    out: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = port.readline()
        if line.endswith(b"\n"):
            out.append((time.monotonic(), line))
    return out


def fixes_of(lines: list[bytes]) -> list[Fix]:
    state = FixState()
    fixes = []
    for line in lines:
        done = state.update(parse_sentence(line.decode("ascii")))
        if done is not None:
            fixes.append(done)
    last = state.flush()
    if last is not None:
        fixes.append(last)
    return fixes


def collapse(addresses: list[str]) -> list[str]:
    return [a for i, a in enumerate(addresses) if i == 0 or addresses[i - 1] != a]


@pytest.mark.parametrize("style", ["ublox", "mt3339", "quectel"])
def test_each_style_streams_its_talkers_on_the_route_and_loses_the_fix_under_canopy(style: str) -> None:
    """Every line is a sentence with a valid checksum, in that receiver's talkers and order.
    FixState over the stream gives 3D fixes within 20 m of the route at the simulated
    distance (speed and course from the route), "none" for every epoch inside the no_sky
    stretch, and fixes again after it."""
    route = mahakam_route()
    no_sky = (700.0, 1300.0)
    # 20 epochs a second, each 3 simulated seconds at 72 km/h: 60 m of river per epoch.
    with SimulatedGps(route, 72.0, rate_hz=20, style=style, no_sky=[no_sky], start_time=START,
                      time_scale=60.0) as gps, serial.Serial(gps.port, 9600, timeout=0.05) as port:
        lines = [line for _, line in read_lines(port, 1.6)]
    if lines and not lines[0].startswith(b"$"):
        lines = lines[1:]  # opened mid-line
    addresses = [parse_sentence(line.decode("ascii")) and line[1:6].decode() for line in lines]
    pattern = PATTERNS[style]
    flow = collapse(addresses)
    start = flow.index(pattern[0])
    body = flow[start:]
    assert body == (pattern * (len(body) // len(pattern) + 1))[: len(body)]
    assert set(addresses) == set(pattern)

    fixes = fixes_of(lines)
    before = inside = after = 0
    worst = 0.0
    for fix in fixes[1:-1]:  # the first and last epochs may be cut by the read window
        assert fix.time is not None
        distance = gps.distance_at(fix.time)
        if no_sky[0] <= distance <= no_sky[1]:
            assert fix.fix == "none" and fix.lat is None, (distance, fix)
            inside += 1
            continue
        assert fix.fix == "3d", (distance, fix)
        assert fix.lat is not None and fix.lon is not None
        expected = route.at(distance)
        off = haversine_m(fix.lat, fix.lon, expected.lat, expected.lon)
        worst = max(worst, off)
        assert off < 20.0, (distance, off)
        assert fix.speed_kmh == pytest.approx(72.0, abs=0.2)
        assert fix.course_deg == pytest.approx(expected.course_deg, abs=0.2)
        assert 7 <= (fix.sats or 0) <= 12 and 0.8 <= (fix.hdop or 0) <= 1.5
        assert 10.0 <= (fix.alt_m or 0) <= 15.0
        if distance < no_sky[0]:
            before += 1
        else:
            after += 1
    print(f"{style}: {len(lines)} sentences, {len(fixes)} epochs: {before} fixes before the canopy, "
          f"{inside} without fix under it, {after} fixes after; worst offset {worst:.1f} m")
    assert before >= 3 and inside >= 5 and after >= 3
    # The trip crossed midnight: the date rolled over with it.
    assert fixes[-2].time is not None and fixes[-2].time.date() == dt.date(2027, 3, 2)


def test_boat_stops_at_the_end_of_the_route() -> None:
    """Past the end of the route the boat stays at the last waypoint with speed 0."""
    route = mahakam_route()
    # 36 km/h and 5000 simulated seconds per epoch: 50 km per epoch, the end in two.
    with SimulatedGps(route, 36.0, rate_hz=20, start_time=START, time_scale=1e5, style="mt3339") as gps, \
            serial.Serial(gps.port, 9600, timeout=0.05) as port:
        lines = [line for _, line in read_lines(port, 0.4)]
    # The first epoch or two may still be under way, depending on when the port opened.
    fixes = [f for f in fixes_of(lines[1:])[1:-1] if f.time and gps.distance_at(f.time) == route.length_m]
    end = route.waypoints[-1]
    print(f"{len(fixes)} fixes at the end of the route")
    assert len(fixes) >= 3
    for fix in fixes:
        assert fix.fix == "3d"
        assert haversine_m(fix.lat, fix.lon, end.lat, end.lon) < 20.0  # type: ignore[arg-type]
        assert fix.speed_kmh == 0.0


def capture_lines(path: Path) -> list[bytes]:
    return [line.rstrip(b"\r") for line in path.read_bytes().split(b"\n")
            if line.strip() and not line.startswith(b"#")]


def replay_and_read(path: Path, pace: float, limit_s: float) -> tuple[list[bytes], float, ReplayGps]:
    with ReplayGps(path, pace=pace, autostart=False) as gps, serial.Serial(gps.port, 9600, timeout=0.05) as port:
        began = time.monotonic()
        gps.start()
        got: list[bytes] = []
        deadline = began + limit_s
        while time.monotonic() < deadline:
            line = port.readline()
            if line:
                got.append(line)
            elif gps.finished.is_set():
                break
        return got, time.monotonic() - began, gps


@pytest.fixture
def mt3339_log() -> Path:
    return NMEA / "mt3339.log"


def test_replay_gives_the_capture_line_for_line(mt3339_log: Path) -> None:
    """Replaying a capture as fast as possible gives the file's sentences, in order, each
    ended by CR LF, comment lines left out."""
    expected = capture_lines(mt3339_log)
    got, elapsed, gps = replay_and_read(mt3339_log, pace=0, limit_s=5.0)
    print(f"replayed {len(got)} of {len(expected)} lines in {len(gps.epochs)} epochs, {elapsed:.2f} s")
    assert all(line.endswith(b"\r\n") for line in got)
    assert [line[:-2] for line in got] == expected


def test_replay_keeps_one_epoch_per_tick(mt3339_log: Path) -> None:
    """At pace 40 the capture's epochs (a new GGA/RMC time each) come 1/40 s apart: the
    replay takes about (epochs - 1) / 40 s and still carries every line."""
    expected = capture_lines(mt3339_log)
    got, elapsed, gps = replay_and_read(mt3339_log, pace=40, limit_s=8.0)
    epochs = len(gps.epochs)
    times = {line.split(b",")[1] for line in expected if line[3:6] in (b"GGA", b"RMC") and line.split(b",")[1]}
    print(f"{epochs} epochs ({len(times)} distinct GGA/RMC times) in {elapsed:.2f} s at pace 40")
    assert epochs == len(times)
    assert elapsed >= 0.9 * (epochs - 1) / 40
    assert [line[:-2] for line in got] == expected


def test_injected_binary_lands_between_sentences() -> None:
    """A UBX frame injected into the stream arrives as is, glued to the next sentence (it
    has no line end): that line is rejected, and the sentence after its '$' still parses."""
    ubx = b"\xb5b\x01\x07\x04\x00\x01\x02\x03\x04\x16\x4e"
    with SimulatedGps(mahakam_route(), 20.0, rate_hz=20, start_time=START) as gps, \
            serial.Serial(gps.port, 9600, timeout=0.05) as port:
        read_lines(port, 0.2)
        gps.inject(ubx)
        lines = [line for _, line in read_lines(port, 0.3)]
    hit = [line for line in lines if ubx in line]
    print(f"{len(lines)} lines after the injection, {len(hit)} carrying the UBX frame")
    assert len(hit) == 1 and hit[0].startswith(ubx)
    with pytest.raises(NmeaError):
        parse_sentence(hit[0].decode("latin-1"))
    parse_sentence(hit[0][hit[0].index(b"$"):].decode("ascii"))
    for line in lines:
        if line is not hit[0]:
            parse_sentence(line.decode("ascii"))


def test_silence_stops_the_stream_and_the_clock_runs_on() -> None:
    """During silence(0.6) nothing arrives; then sentences resume with the simulated time
    moved on by the silent stretch (skipped epochs, not delayed ones)."""
    with SimulatedGps(mahakam_route(), 20.0, rate_hz=10, start_time=START, time_scale=10.0) as gps, \
            serial.Serial(gps.port, 9600, timeout=0.05) as port:
        timer = threading.Timer(0.4, gps.silence, args=(0.6,))
        timer.start()
        try:
            timed = read_lines(port, 1.6)
        finally:
            timer.cancel()
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(timed)]
    longest = max(gaps)
    i = gaps.index(longest)
    stamps = [f.time for f in fixes_of([line for _, line in timed[1:]])[1:-1]]
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]  # type: ignore[operator]
    print(f"longest gap {longest:.2f} s after {i + 1} lines; simulated steps {min(steps):.1f} s "
          f"normally, {max(steps):.1f} s across the silence; {len(timed) - i - 1} lines after")
    assert longest >= 0.5
    assert i >= 10 and len(timed) - i - 1 >= 10
    assert min(steps) == pytest.approx(1.0)
    assert max(steps) >= 0.5 * 10.0
    assert sorted(steps)[-2] == pytest.approx(1.0)  # one jump, not a drift


def test_vanish_and_reappear_at_the_same_path() -> None:
    """USB re-enumeration: the open port fails and the path is gone; after reappear() the
    same path leads to a new pseudo-terminal that streams sentences again."""
    with SimulatedGps(mahakam_route(), 20.0, rate_hz=20, start_time=START, style="quectel") as gps:
        path = gps.port
        first = serial.Serial(path, 9600, timeout=0.05)
        assert read_lines(first, 0.2)
        gps.vanish()
        assert not os.path.exists(path) and not gps.present
        with pytest.raises(serial.SerialException):
            read_lines(first, 0.3)
        first.close()
        with pytest.raises(serial.SerialException):
            serial.Serial(path, 9600)
        gps.reappear()
        assert os.path.realpath(path) == gps.pty_name
        with serial.Serial(path, 9600, timeout=0.05) as again:
            lines = [line for _, line in read_lines(again, 0.4)]
    print(f"{len(lines)} sentences after reappearing")
    assert len(lines) >= 10
    for line in lines[1:]:
        parse_sentence(line.decode("ascii"))


def test_baud_noise_garbles_some_sentences_and_fixes_survive() -> None:
    """With baud_noise a few sentences arrive with a garbled byte; the parser rejects
    exactly those, and the rest still make fixes on the route."""
    route = mahakam_route()
    with SimulatedGps(route, 36.0, rate_hz=20, start_time=START, baud_noise=True) as gps, \
            serial.Serial(gps.port, 9600, timeout=0.05) as port:
        lines = [line for _, line in read_lines(port, 1.0)]
    good, bad = [], 0
    for line in lines[1:]:
        try:
            parse_sentence(line.decode("latin-1"))
            good.append(line)
        except NmeaError:
            bad += 1
    fixes = [f for f in fixes_of(good) if f.fix != "none"]
    print(f"{len(lines)} lines, {bad} garbled and rejected, {len(fixes)} fixes from the rest")
    assert 0 < bad < len(lines) // 5
    assert len(fixes) >= 10
