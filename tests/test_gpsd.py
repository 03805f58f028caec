"""Positions from gpsd's JSON socket: the reports real gpsd 3.22 sends, and a real gpsd on a simulated receiver."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.commands.main import main
from agent.unit.devices.gps.gpsd import GpsdProtocolError, GpsdReader, fix_from_tpv, parse_address, parse_report, sky_figures
from agent.unit.devices.gps.reader import GpsPortGone
from agent.shared.geo import haversine_m
from agent.shared.polling import wait_until
from agent.sim.broker import free_port
from agent.sim.gps import SimulatedGps
from agent.sim.route import mahakam_route

ROUTE = mahakam_route()

# Reports written by gpsd 3.22 (Debian 12) reading the simulated receivers.
TPV_3D = ('{"class":"TPV","device":"/dev/ttyACM0","mode":3,"time":"2026-11-24T21:05:41.430Z","ept":0.005,'
          '"lat":-0.503141800,"lon":117.145861383,"altHAE":79.2000,"altMSL":14.3000,"alt":14.3000,"epx":9.886,'
          '"epy":7.941,"epv":43.700,"track":222.2000,"magtrack":222.4171,"magvar":0.2,"speed":5.556,"climb":0.200,'
          '"eps":19.77,"epc":87.40,"geoidSep":64.900,"eph":15.200,"sep":45.600}')
TPV_NO_FIX = '{"class":"TPV","device":"/dev/ttyACM0","mode":1}'
TPV_NO_TIME = ('{"class":"TPV","device":"/dev/ttyACM0","mode":3,"lat":-0.503116667,"lon":117.145895000,'
               '"altHAE":79.0000,"altMSL":14.1000,"alt":14.1000,"magvar":0.2,"geoidSep":64.900,"eph":28.310}')
TPV_2D_OLD_GPSD = '{"class":"TPV","device":"/dev/ttyUSB1","mode":2,"time":"2026-11-24T03:00:00.000Z","lat":-0.5,"lon":117.1,"speed":0.0}'
SKY = ('{"class":"SKY","device":"/dev/ttyACM0","xdop":0.82,"ydop":0.63,"vdop":1.10,"tdop":1.09,"hdop":0.80,'
       '"gdop":2.17,"pdop":1.40,"nSat":11,"uSat":9,"satellites":[{"PRN":2,"el":67.0,"az":12.0,"ss":34.0,"used":true}]}')
SKY_NO_USAT = ('{"class":"SKY","device":"/dev/ttyACM0","hdop":1.5,"satellites":[{"PRN":2,"used":true},'
               '{"PRN":5,"used":false},{"PRN":6,"used":true}]}')


@pytest.mark.parametrize("line, expected", [
    (TPV_3D, dict(time=datetime(2026, 11, 24, 21, 5, 41, 430000, tzinfo=timezone.utc), lat=-0.5031418,
                  lon=117.145861383, alt_m=14.3, course_deg=222.2, speed_kmh=5.556 * 3.6, fix="3d")),
    (TPV_NO_FIX, dict(time=None, lat=None, lon=None, alt_m=None, speed_kmh=None, fix="none")),
    (TPV_NO_TIME, dict(time=None, lat=-0.503116667, alt_m=14.1, speed_kmh=None, course_deg=None, fix="3d")),
    (TPV_2D_OLD_GPSD, dict(lat=-0.5, lon=117.1, alt_m=None, speed_kmh=0.0, fix="2d")),
    ('{"class":"TPV","mode":3,"lat":91.0,"lon":10.0}', dict(lat=None, fix="none")),
    ('{"class":"TPV","mode":true,"lat":1.0,"lon":10.0}', dict(lat=None, fix="none")),
    ('{"class":"TPV","mode":3,"lat":"-0.5","lon":117.1}', dict(lat=None, fix="none")),
    ('{"class":"TPV","mode":3,"time":"yesterday","lat":-0.5,"lon":117.1}', dict(time=None, lat=-0.5, fix="3d")),
])
def test_tpv_reports_become_fixes(line: str, expected: dict) -> None:
    fix = fix_from_tpv(parse_report(line), (0.8, 9), received=12.5)
    for key, value in expected.items():
        got = getattr(fix, key)
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, key
    assert fix.received == 12.5
    if fix.fix == "none":
        assert fix.hdop is None and fix.sats is None, "no fix carries no figures, and never 0,0"
    else:
        assert (fix.hdop, fix.sats) == (0.8, 9)


@pytest.mark.parametrize("line, expected", [(SKY, (0.8, 9)), (SKY_NO_USAT, (1.5, 2)), ('{"class":"SKY"}', (None, None))])
def test_sky_reports_give_hdop_and_satellites_used(line: str, expected: tuple) -> None:
    assert sky_figures(parse_report(line)) == expected


@pytest.mark.parametrize("line", [b"", b"{", b"[1,2]", b'{"mode":3}', b'{"class":3}', b"\xff\xfe", b"VERSION 3.22"])
def test_lines_that_are_not_reports_are_refused(line: bytes) -> None:
    with pytest.raises(GpsdProtocolError):
        parse_report(line)


@pytest.mark.parametrize("text, expected", [
    ("localhost", ("localhost", 2947)), ("10.0.0.2:3000", ("10.0.0.2", 3000)), (":2948", ("127.0.0.1", 2948)),
    ("[::1]:2947", ("::1", 2947)), ("[::1]", ("::1", 2947)),
])
def test_gpsd_addresses(text: str, expected: tuple) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host:0", "host:99999", "host:abc", "[::1", "[::1]x"])
def test_bad_gpsd_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_line_parses_or_raises_the_documented_error(line: bytes | str) -> None:
    try:
        report = parse_report(line)
    except GpsdProtocolError:
        return
    assert isinstance(report["class"], str)


@given(st.dictionaries(st.sampled_from(["mode", "time", "lat", "lon", "alt", "altMSL", "speed", "track", "class"]), JSON))
def test_any_tpv_gives_a_fix_and_never_a_position_without_mode_2_or_3(report: dict) -> None:
    fix = fix_from_tpv(report)
    if fix.lat is not None:
        assert report.get("mode") in (2, 3) and fix.fix in ("2d", "3d")
    else:
        assert fix.fix == "none" and fix.lon is None


# -- a real gpsd -------------------------------------------------------------------------


@contextmanager
def running_gpsd(device: str, workdir: Path) -> Iterator[int]:
    """gpsd in the foreground on a free port, reading ``device`` at 9600 baud without probing it."""
    exe = shutil.which("gpsd") or ("/usr/sbin/gpsd" if Path("/usr/sbin/gpsd").exists() else None)
    if exe is None:
        pytest.fail("gpsd is not installed; the test command installs it (apt-get install gpsd)")
    port = free_port()
    # -b: read-only, never reconfigure the receiver; -s: fixed speed instead of hunting, which
    # a pseudo-terminal does not need; -n: open the device before any client connects.
    proc = subprocess.Popen([exe, "-N", "-n", "-b", "-s", "9600", "-S", str(port), "-F", str(workdir / "gpsd.sock"),
                             device], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: _accepts(port), 10), "gpsd did not start listening"
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("style", ["ublox", "mt3339", "quectel"])
def test_one_fix_per_epoch_through_gpsd(style: str, tmp_path: Path) -> None:
    with SimulatedGps(ROUTE, 36.0, rate_hz=4, time_scale=2, style=style, workdir=tmp_path) as gps, \
            running_gpsd(gps.port, tmp_path) as port, GpsdReader("127.0.0.1", port) as reader:
        fixes = [f for f in reader.fixes(seconds=4.0)]
    timed = [f for f in fixes if f.time is not None]
    assert len(timed) >= 8
    assert len({f.time for f in timed}) == len(timed), "gpsd's repeated TPVs of one epoch are merged"
    if style != "mt3339":  # the simulated MediaTek sends no GSA/GSV, so gpsd sends no SKY
        assert all(f.hdop is not None and f.sats for f in timed[1:]), "HDOP and satellites from SKY"
    for fix in timed:
        assert fix.fix == "3d"
        point = ROUTE.at(gps.distance_at(fix.time))
        assert haversine_m(fix.lat, fix.lon, point.lat, point.lon) < 25


def test_blankspot_gps_from_gpsd_prints_positions_and_no_fix_under_canopy(tmp_path: Path) -> None:
    canopy = (300.0, 700.0)
    with SimulatedGps(ROUTE, 36.0, rate_hz=5, time_scale=20, no_sky=[canopy], workdir=tmp_path) as gps, \
            running_gpsd(gps.port, tmp_path) as port:
        done = subprocess.run([sys.executable, "-m", "agent", "gps", "--gpsd", f"127.0.0.1:{port}", "--seconds", "5",
                               "--json"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    fixes = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [f["fix"] for f in fixes]
    assert kinds.count("3d") >= 5 and "none" in kinds
    for f in fixes:
        assert set(f) == {"time", "lat", "lon", "alt_m", "hdop", "sats", "speed_kmh", "course_deg", "fix"}
        if f["fix"] == "none":
            assert f["lat"] is None and f["lon"] is None


def test_gpsd_going_away_is_port_gone(tmp_path: Path) -> None:
    with SimulatedGps(ROUTE, 36.0, rate_hz=5, workdir=tmp_path) as gps:
        with running_gpsd(gps.port, tmp_path) as port:
            reader = GpsdReader("127.0.0.1", port)
            assert reader.read_fix(5.0) is not None
        with pytest.raises(GpsPortGone, match="closed the connection"):
            reader.read_fix(5.0)


def test_no_gpsd_is_a_clear_runtime_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gps", "--gpsd", f"127.0.0.1:{free_port()}", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach gpsd" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["gps", "--gpsd", "host:99999"], "port must be 1-65535"),
    (["gps", "--gpsd", "x", "--port", "/dev/ttyACM0"], "not allowed with"),
    (["gps"], "one of the arguments --port --gpsd is required"),
])
def test_bad_gpsd_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
