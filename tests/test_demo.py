"""The demo is the product's first impression: it must tell the truth about delivery."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.main import main
from agent.sim.demo import MIN_TRIP_SECONDS, run_demo
from tests.support.broker import require_mosquitto


@pytest.mark.parametrize("broker_kind", ["mosquitto", "amqtt"])
def test_demo_trip_delivers_every_blank_spot_reading(broker_kind: str, tmp_path: Path, capsys) -> None:
    """Mosquitto speaks MQTT 5 and the embedded amqtt only 3.1.1: both paths deliver everything."""
    if broker_kind == "mosquitto":
        require_mosquitto()
    lines: list[str] = []
    assert run_demo(trip_seconds=20, workdir=str(tmp_path), broker_kind=broker_kind, out=lines.append) == 0
    drawn = re.search(r"map.html: (\d+) cells \((\d+) blank\)", capsys.readouterr().err)
    # A default export of the demo's database gives the cells its map shows.
    cells = tmp_path / "cells.csv"
    assert main(["export", "--db", str(tmp_path / "collector.db"), "--out", str(cells)]) == 0
    rows = list(csv.DictReader(cells.open(encoding="utf-8", newline="")))
    assert drawn and (int(drawn[1]), int(drawn[2])) == (len(rows), sum(r["class"] == "blank" for r in rows))
    summary = json.loads((tmp_path / "summary.json").read_text())
    print(summary)
    assert summary["taken_in_blank_spot"] > 25, "the trip crosses the Sebulu - Muara Kaman blank spot"
    assert summary["most_buffered_at_once"] >= summary["taken_in_blank_spot"] * 0.9
    assert summary["delivered_unique"] == summary["readings_taken"]
    assert summary["still_buffered"] == 0
    page = Path(summary["map"]).read_text()
    assert page.startswith("<!DOCTYPE html>") and "blankspot demo" in page
    assert any("NO SERVICE" in line and "DOWN" in line for line in lines)
    assert lines[-1].strip().endswith("every reading arrived exactly once after dedup")


@pytest.mark.parametrize("seconds", ["0", "-5", "14.9", "nan", "inf"])
def test_a_trip_too_short_to_configure_is_a_usage_error(seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", f"--seconds={seconds}"]) == 2
    err = capsys.readouterr().err
    assert err == f"blankspot demo: --seconds must be at least {MIN_TRIP_SECONDS:g}, not {float(seconds):g}\n"


def test_without_the_collector_extra_the_demo_delivers_and_names_the_map_as_what_failed(tmp_path: Path) -> None:
    """As after a plain ``pip install blankspot``: no h3, so the trip runs, every reading
    arrives, and only the map is missing; the last line says so rather than blaming delivery."""
    require_mosquitto()
    without_h3 = ("import sys; sys.modules['h3'] = None; from agent.commands.main import main; "
                  "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", without_h3, "demo", f"--seconds={MIN_TRIP_SECONDS:g}",
                           "--broker", "mosquitto", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr == "blankspot: blankspot map: the coverage grid needs h3: pip install 'blankspot[collector]'\n"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["delivered_unique"] == summary["readings_taken"] and summary["map"] is None
    assert done.stdout.splitlines()[-1].split(None, 1)[1] == \
        "every reading arrived exactly once after dedup; the map step failed (reason above)"


def test_the_default_trip_is_the_one_the_help_names() -> None:
    from agent.sim.demo import DEFAULT_TRIP_SECONDS

    done = subprocess.run([sys.executable, "-m", "agent", "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert f"(default {DEFAULT_TRIP_SECONDS:g}:" in " ".join(done.stdout.split())
