"""`blankspot modem` against the simulated modem of every profile: the DESIGN.md contract."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.main import main
from agent.shared.reading import SCHEMA, Signal, reading_from_dict
from agent.sim.scenario import Radio, Tower, mahakam_scenario
from agent.unit.devices.modem.profiles import load_profile
from agent.unit.devices.modem.transcript import parse_transcript
from agent.sim.modem import SimulatedModem

PROFILES = ["quectel-ec25", "quectel-eg25g", "quectel-rm500q", "simcom-sim7600", "huawei-me909s", "telit-le910c1",
            "sierra-em7455", "generic-3gpp"]
TOWER = mahakam_scenario().towers[0]  # Samarinda, Telkomsel LTE band 3
SERVED = Radio(TOWER, rsrp_dbm=-95.0, rsrq_db=-10.0, sinr_db=8.0, rssi_dbm=-67.0)
BLANK = Radio(None)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_valid_signal(body: dict) -> None:
    reading = {"schema": SCHEMA, "device": "unit-1", "seq": 1, "time": "2026-11-24T00:00:00.000Z",
               "time_source": "ntp", "kind": "signal", "position": None, "signal": body}
    assert isinstance(reading_from_dict(reading).part, Signal)


@pytest.mark.parametrize("profile", PROFILES)
def test_served_spot(profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedModem.for_profile(profile, radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01) as sim:
        code, out, err = run(["modem", "--port", sim.port, "--model", profile, "--json"], capsys)
    assert code == 0, err
    body = json.loads(out)
    assert_valid_signal(body)
    assert body["registration"] == "home" and body["rat"] == "LTE" and body["error"] is None
    assert body["rsrp_dbm"] == pytest.approx(-95.0, abs=1.0)
    assert body["quality"] == "fair"
    assert body["operator"].upper() == "TELKOMSEL"
    assert body["cell_id"] == TOWER.cell_id and body["tac"] == TOWER.tac


@pytest.mark.parametrize("profile", PROFILES)
def test_blank_spot_is_a_normal_reading(profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedModem.for_profile(profile, radio=lambda: BLANK, workdir=tmp_path, time_scale=0.01) as sim:
        code, out, err = run(["modem", "--port", sim.port, "--model", profile, "--json"], capsys)
    assert code == 0, err
    body = json.loads(out)
    assert_valid_signal(body)
    assert (body["rat"], body["quality"], body["error"]) == ("NONE", "none", None)
    assert body["registration"] in ("searching", "not_registered", "denied")
    assert body["csq"] is None and body["rsrp_dbm"] is None, "unknown levels are null, never 99 or 255"


@pytest.mark.parametrize("profile", ["quectel-ec25", "simcom-sim7600", "huawei-me909s", "telit-le910c1", "sierra-em7455"])
def test_model_is_detected_without_model_flag(profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedModem.for_profile(profile, radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01) as sim:
        code, out, err = run(["modem", "--port", sim.port], capsys)
    assert code == 0, err
    assert f"model         {profile}" in out


@pytest.mark.parametrize("sim_state,words", [("absent", "SIM not inserted"), ("pin", "SIM locked")])
def test_sim_problems_are_errors_not_blank_spots(sim_state: str, words: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01,
                                    sim=sim_state) as sim:
        code, out, err = run(["modem", "--port", sim.port, "--model", "quectel-ec25", "--json"], capsys)
    assert code == 1
    body = json.loads(out)
    assert words in body["error"] and body["quality"] is None
    assert err.count("\n") == 1 and words in err


def test_silent_modem_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedModem.for_profile("generic-3gpp", workdir=tmp_path, time_scale=0.01) as sim:
        sim.mute(True)
        code, out, err = run(["modem", "--port", sim.port, "--model", "generic-3gpp", "--json"], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "does not answer" in err and "Traceback" not in err


def test_missing_port_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["modem", "--port", str(tmp_path / "ttyUSB9"), "--json"], capsys)
    assert code == 1 and err.count("\n") == 1 and "ttyUSB9" in err


@pytest.mark.parametrize(
    "argv,words",
    [
        (["modem", "--json"], "--port"),
        (["modem", "--port", "/dev/null", "--baud", "fast"], "--baud"),
        (["modem", "--port", "/dev/null", "--baud", "-9600"], "--baud"),
        (["modem", "--port", "/dev/null", "--model", "quectel-ec52"], "quectel-ec25"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and words in err


def test_scan_lists_operators(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01) as sim:
        code, out, err = run(["modem", "--port", sim.port, "--model", "quectel-ec25", "--scan", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert rows and all(set(r) == {"operator", "short", "mcc", "mnc", "rat", "status"} for r in rows)
    assert all(r["status"] in ("available", "current", "forbidden", "unknown") for r in rows)
    assert any(r["mcc"] == "510" and r["mnc"] == "10" and r["status"] == "current" for r in rows)


def test_a_5g_modem_that_answers_only_c5greg_gives_a_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A generic modem on NR standalone that refuses every signal command but +C5GREG? is still
    measured: registered at home on NR5G-SA, not "answered none of its signal commands"."""
    text = load_profile("generic-3gpp").transcript_path.read_text(encoding="utf-8")
    for command in ("AT+CESQ", "AT+CSQ", "AT+CEREG?", "AT+CGREG?", "AT+CREG?", "AT+COPS?"):
        text = re.sub(rf"^> {re.escape(command)}\n.*?\nOK\n", f"> {command}\nERROR\n", text, flags=re.M | re.S)
    transcript = parse_transcript(text)
    assert transcript.answer("AT+CSQ") == ("ERROR",) and transcript.answer("AT+C5GREG?") != ("ERROR",)
    sa = Radio(Tower("sa", 0.0, 0.0, 1, rat="NR5G-SA", cell_id=0x939204254, tac=0x60AA00), -95.0, -11.0, 12.0, -70.0)
    with SimulatedModem(transcript, "generic", lambda: sa, tmp_path, time_scale=0.01) as sim:
        code, out, err = run(["modem", "--port", sim.port, "--model", "generic-3gpp", "--json"], capsys)
    assert code == 0, err
    body = json.loads(out)
    assert_valid_signal(body)
    assert (body["registration"], body["rat"], body["error"]) == ("home", "NR5G-SA", None)
    assert (body["tac"], body["cell_id"]) == (0x60AA00, 0x939204254)


def test_names_from_a_modem_set_to_ucs2_are_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Firmware that starts in AT+CSCS="UCS2" prints operator names in hex: the reading and the
    scan show the names, because the agent reads the character set when it opens the modem."""
    with SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01,
                                    charset="UCS2") as sim:
        code, out, err = run(["modem", "--port", sim.port, "--model", "quectel-ec25", "--json"], capsys)
        assert code == 0, err
        assert json.loads(out)["operator"] == "TELKOMSEL"
        code, out, err = run(["modem", "--port", sim.port, "--model", "quectel-ec25", "--scan", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["operator"], r["mcc"], r["mnc"]) for r in rows] == [("TELKOMSEL", "510", "10")]


def test_raw_shows_the_conversation(tmp_path: Path) -> None:
    with SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01) as sim:
        done = subprocess.run([sys.executable, "-m", "agent", "modem", "--port", sim.port, "--model", "quectel-ec25",
                               "--json", "--raw"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "> AT+CSQ" in done.stderr and "< +CSQ: " in done.stderr
    json.loads(done.stdout)
