"""`blankspot gps` against the simulated receiver on the Mahakam route: the DESIGN.md contract."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.main import main
from agent.shared.geo import haversine_m
from agent.sim.gps import SimulatedGps
from agent.sim.route import mahakam_route

ROUTE = mahakam_route()
CANOPY = (1_500.0, 3_000.0)  # a stretch of riverbank forest with no sky


def test_positions_on_the_route_and_no_fix_under_canopy(tmp_path: Path) -> None:
    """10 epochs a second, 120 simulated seconds per wall second at 36 km/h: ~4.8 km in 4 s."""
    with SimulatedGps(ROUTE, 36.0, rate_hz=10, time_scale=120, no_sky=[CANOPY], workdir=tmp_path) as gps:
        done = subprocess.run([sys.executable, "-m", "agent", "gps", "--port", gps.port, "--baud", "9600",
                               "--seconds", "4", "--json"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        fixes = [json.loads(line) for line in done.stdout.splitlines()]
        distances = [gps.distance_at(_time(f["time"])) for f in fixes]
    assert len(fixes) >= 20
    assert all(set(f) == {"time", "lat", "lon", "alt_m", "hdop", "sats", "speed_kmh", "course_deg", "fix"} for f in fixes)
    kinds = []
    for fix, d in zip(fixes, distances):
        inside = CANOPY[0] <= d <= CANOPY[1]
        if fix["fix"] == "none":
            assert fix["lat"] is None and fix["lon"] is None, "no fix is never 0,0"
        else:
            point = ROUTE.at(d)
            assert haversine_m(fix["lat"], fix["lon"], point.lat, point.lon) < 25, "positions lie on the route"
        kinds.append("none" if inside else fix["fix"])
        if inside:
            assert fix["fix"] == "none"
    print(f"{len(fixes)} epochs, {kinds.count('none')} under the canopy")
    assert "none" in kinds and kinds[-1] != "none", "the canopy stretch shows, and fixes come back after it"


def _time(text: str):
    from datetime import datetime, timezone

    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def test_count_stops_after_n_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedGps(ROUTE, 12.0, rate_hz=10, workdir=tmp_path) as gps:
        assert main(["gps", "--port", gps.port, "--count", "3", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_unopenable_port_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gps", "--port", str(tmp_path / "ttyACM7"), "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ttyACM7" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["gps"], ["gps", "--port", "/dev/null", "--count", "0"], ["gps", "--port", "/dev/null", "--seconds", "-1"],
     ["gps", "--port", "/dev/null", "--baud", "fast"]],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_raw_echoes_sentences(tmp_path: Path) -> None:
    with SimulatedGps(ROUTE, 12.0, rate_hz=10, workdir=tmp_path, style="mt3339") as gps:
        done = subprocess.run([sys.executable, "-m", "agent", "gps", "--port", gps.port, "--count", "2", "--raw"],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "$GPGGA" in done.stderr and "$GPRMC" in done.stderr
    assert len(done.stdout.splitlines()) == 2
