"""The demo is the product's first impression: it must tell the truth about delivery."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.sim.demo import run_demo
from tests.support.broker import require_mosquitto


@pytest.mark.parametrize("broker_kind", ["mosquitto", "amqtt"])
def test_demo_trip_delivers_every_blank_spot_reading(broker_kind: str, tmp_path: Path) -> None:
    """Mosquitto speaks MQTT 5 and the embedded amqtt only 3.1.1: both paths deliver everything."""
    if broker_kind == "mosquitto":
        require_mosquitto()
    lines: list[str] = []
    assert run_demo(trip_seconds=20, workdir=str(tmp_path), broker_kind=broker_kind, out=lines.append) == 0
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
