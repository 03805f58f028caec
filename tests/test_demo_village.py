"""``blankspot demo --village``: a probe whose data quota runs out is alive by SMS at the centre.

Run as a user runs it (the command line, in a process of its own); its database is then read
with ``blankspot units`` and the store, and the live map's fleet answer is built from it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from agent.centre.fleet import fleet
from agent.centre.live_answers import fleet_answer
from agent.centre.store import open_store
from agent.sim.demo import MIN_TRIP_SECONDS
from agent.sim.village import PROBE_NUMBER, VILLAGE_DEVICE
from tests.support.broker import require_mosquitto

ROOT = Path(__file__).resolve().parent.parent


def blankspot(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_the_village_probe_runs_out_of_quota_and_is_alive_by_sms(tmp_path: Path) -> None:
    require_mosquitto()
    done = blankspot("demo", "--village", f"--seconds={MIN_TRIP_SECONDS:g}", "--broker", "mosquitto",
                     "--workdir", str(tmp_path))
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(f"village probe {VILLAGE_DEVICE}: SMS from TELKOMSEL \"Kuota internet Anda telah habis" in line
               for line in lines)
    assert any(f"village probe {VILLAGE_DEVICE}: heartbeat SMS from {PROBE_NUMBER} filed" in line for line in lines)
    alive = [line.strip() for line in lines if line.strip().startswith(f"{VILLAGE_DEVICE}: alive by SMS at ")]
    assert len(alive) == 1 and alive[0].endswith("data down: quota exhausted"), lines
    assert ", backlog " in alive[0] and "last signal lte Telkomsel -112 dBm" in alive[0]
    assert lines[-1].split(None, 1)[1] == \
        "every reading arrived exactly once after dedup; the village probe is alive by SMS"

    # The centre's store holds the heartbeat, signed by the probe's key and sent from its SIM.
    db = tmp_path / "collector.db"
    with open_store(str(db)) as store:
        kept = store.heartbeats()[VILLAGE_DEVICE]
        assert kept.sender == PROBE_NUMBER and kept.source == "sms"
        assert kept.heartbeat.reason == "quota_exhausted" and kept.heartbeat.backlog > 0
        assert store.refused_sms() == {}
        # The live map's fleet panel is drawn from this answer.
        answer = fleet_answer(fleet(store), datetime.now(timezone.utc), store.refused_sms())
    probe = next(u for u in answer["units"] if u["device"] == VILLAGE_DEVICE)
    assert probe["alive_by_sms"]["reason"] == "quota_exhausted"
    assert probe["alive_by_sms"]["text"] == alive[0][len(VILLAGE_DEVICE) + 2:]
    assert "alive_by_sms" not in next(u for u in answer["units"] if u["device"] == "demo-boat")

    # blankspot units on the demo's database says what the demo printed.
    units = blankspot("units", "--db", str(db), timeout=60)
    assert units.returncode == 0, units.stderr
    assert f"{alive[0]}\n" in units.stdout

    summary = json.loads((tmp_path / "summary.json").read_text())
    village = summary["village"]
    assert village["device"] == VILLAGE_DEVICE and village["alive_by_sms"]["reason"] == "quota_exhausted"
    assert village["heartbeats_sent"] >= village["heartbeats_filed"] >= 1
    assert summary["delivered_unique"] == summary["readings_taken"], "the boat's readings, counted apart"
