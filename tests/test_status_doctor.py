"""`blankspot status` and `blankspot doctor` on real parts: a simulated boat (modem and GPS on
pseudo-terminals), a real Mosquitto, the agent's own state file and buffer.

- status shows whether the agent runs (state file says so, its process lives, the file is
  fresh), the last fix and signal with their ages, the clock source, the uplink, the backlog
  and the last delivery; `--json` prints the same as one object with stable keys.
- doctor prints one line per check, advice under each failure, and exits 1 when any check
  fails: a missing port, a port another program holds (named), a SIM absent or locked, a
  silent GPS or one at the wrong baud rate, a broker that is down or refuses the password.
  While the agent runs it leaves the modem alone and reads the agent's state instead.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.unit.buffer import BufferStats, ReadingBuffer
from agent.commands.main import main
from agent.unit.config import load_config, parse_config
from agent.unit.devices.gps.fix import Fix
from agent.unit.doctor import (
    FAIL, OK, WARN, BrokerOutcome, DoctorOptions, GpsObservation, Holder, broker_verdict, buffer_verdict, clock_verdict,
    config_verdict, disk_verdict, gps_verdict, port_verdict, registration_verdict, run_doctor, signal_verdict,
    sim_state_from_error, sim_verdict,
)
from agent.shared.polling import wait_until
from agent.shared.reading import parse_time
from agent.unit.service import AgentService, state_path
from agent.sim.boat import SimulatedBoat
from agent.sim.broker import LocalBroker, free_port
from agent.unit.status import agent_liveness, build_status, format_age, status_lines
from agent.unit.identity import pi_serial, proposed_device_id
from tests.support.broker import password_broker, require_mosquitto  # noqa: F401  (password_broker: a fixture)
from tests.support.collector import CollectorProcess
from tests.support.field_unit import SCENARIO, TOWN, field_config, run_in_thread

NOW = parse_time("2026-11-18T07:06:40.000Z").timestamp()
BOOT = "boot-a"


# -- pure parts: tables -----------------------------------------------------------------------------

@pytest.mark.parametrize("state, alive, running, because", [
    (None, True, False, "no state file"),
    ({"running": False, "pid": 10, "boot_id": BOOT, "written": "2026-11-18T07:06:30.000Z"}, True, False,
     "stopped normally"),
    ({"running": True, "pid": 10, "boot_id": "boot-b", "written": "2026-11-18T07:06:30.000Z"}, True, False,
     "rebooted"),
    ({"running": True, "pid": 10, "boot_id": BOOT, "written": "2026-11-18T07:06:30.000Z"}, False, False,
     "process 10 is gone"),
    ({"running": True, "pid": 10, "boot_id": BOOT, "written": "2026-11-18T07:05:00.000Z"}, True, False,
     "not being updated"),
    ({"running": True, "pid": 10, "boot_id": BOOT, "written": "2026-11-18T07:06:30.000Z"}, True, True, None),
])
def test_the_agent_runs_only_when_the_state_file_says_so_its_process_lives_and_writes(
        state, alive, running, because) -> None:
    liveness = agent_liveness(state, NOW, lambda pid: alive, BOOT)
    assert liveness.running is running
    assert (because is None) == (liveness.not_running_because is None)
    if because:
        assert because in liveness.not_running_because


@pytest.mark.parametrize("seconds, text", [
    (None, "at an unknown time"), (-5, "in the future (clock stepped back?)"), (0, "0 s ago"), (12.7, "12 s ago"),
    (119, "119 s ago"), (120, "2 min ago"), (3599, "59 min ago"), (3600, "1 h ago"), (3 * 3600 + 20 * 60, "3 h 20 min ago"),
    (86400, "1 d ago"), (2 * 86400 + 5 * 3600 + 59, "2 d 5 h ago"),
])
def test_ages_read_at_a_glance(seconds, text) -> None:
    assert format_age(seconds) == text


@pytest.mark.parametrize("error, state, status", [
    (None, "READY", OK),
    ("SIM not inserted", "NOT INSERTED", FAIL),
    ("SIM locked (SIM PIN required); unlock it or disable the PIN", "SIM PIN", FAIL),
    ("SIM locked (SIM PUK required); unlock it or disable the PIN", "SIM PUK", FAIL),
    ("SIM not ready (SIM FAILURE)", "SIM FAILURE", FAIL),
    ("modem on /dev/ttyUSB2 does not answer: timeout", None, None),
])
def test_the_sim_state_is_read_back_from_a_signal_readings_error(error, state, status) -> None:
    """The agent's state file has only the signal reading; its error says what the SIM is."""
    assert sim_state_from_error(error) == state
    if state is not None:
        result = sim_verdict(state)
        assert result.status == status and (status == OK or result.advice)


@pytest.mark.parametrize("signal, status, words", [
    ({"registration": "home", "operator": "TELKOMSEL", "rat": "LTE"}, OK, "home network on TELKOMSEL LTE"),
    ({"registration": "roaming", "operator": "XL", "rat": "LTE"}, WARN, "roaming"),
    ({"registration": "searching", "rat": "NONE"}, WARN, "no network here"),
    ({"registration": "denied"}, FAIL, "denied"),
    ({"registration": "not_registered"}, WARN, "not registered"),
    ({"registration": "unknown"}, WARN, "unknown"),
    ({"registration": "sms_only_home", "operator": "TELKOMSEL", "rat": "LTE"}, OK,
     "home network on TELKOMSEL LTE (SMS only"),
    ({"registration": "csfb_not_preferred_home", "rat": "LTE"}, OK, "home network on LTE (voice fallback"),
    ({"registration": "sms_only_roaming", "operator": "XL"}, WARN, "roaming on XL (SMS only"),
    ({"registration": "csfb_not_preferred_roaming"}, WARN, "roaming (voice fallback"),
    ({"registration": "emergency_only", "operator": "XL", "rat": "NONE"}, WARN,
     "attached for emergency calls only on XL: no service"),
    ({"registration": "rlos_only"}, WARN, "restricted local services only"),
])
def test_registration(signal, status, words) -> None:
    result = registration_verdict(signal)
    assert result.status == status and words in result.detail


@pytest.mark.parametrize("signal, status, words", [
    ({"quality": "good", "rsrp_dbm": -95, "rsrq_db": -11, "rat": "LTE"}, OK, "good: rsrp -95 dBm, rsrq -11 dB (LTE)"),
    ({"quality": "poor", "rssi_dbm": -105, "rat": "GSM"}, WARN, "poor: rssi -105 dBm (GSM)"),
    ({"quality": "none", "rat": "NONE"}, WARN, "no signal"),
    ({"quality": None, "rat": "LTE"}, WARN, "level unknown"),
    ({"error": "modem on /dev/ttyUSB2 answered none of its signal commands", "quality": None}, FAIL, "answered none"),
])
def test_signal_quality(signal, status, words) -> None:
    result = signal_verdict(signal)
    assert result.status == status and words in result.detail


FIX = Fix(None, -0.5, 117.15, 12.0, 0.9, 9, 10.0, 45.0, "3d")


@pytest.mark.parametrize("observation, status, words, advice", [
    (GpsObservation("serial", "/dev/ttyACM0", 3.0, 4000, 3, FIX), OK, "3d fix at -0.500000 117.150000 (9 sats, hdop 0.9)", None),
    (GpsObservation("serial", "/dev/ttyACM0", 3.0, 2000, 0, None, None, True, 9600), FAIL, "wrong baud rate", "gps.baud"),
    (GpsObservation("serial", "/dev/ttyACM0", 3.0, 0, 0), FAIL, "silent", "power and cable"),
    (GpsObservation("modem", "/dev/blankspot-nmea", 3.0, 0, 0), FAIL, "silent", "GNSS is off"),
    (GpsObservation("serial", "/dev/ttyACM0", 3.0, 3000, 3, None, 0), WARN, "no fix after 3 s (0 satellites used)", "open sky"),
    (GpsObservation("serial", "/dev/ttyACM0", 3.0, 300, 0), WARN, "no complete position epochs", "GGA or RMC"),
    (GpsObservation("gpsd", "127.0.0.1:2947", 3.0, None, 0), FAIL, "no position reports", "gpspipe"),
    (GpsObservation("gpsd", "127.0.0.1:2947", 3.0, None, 4), WARN, "no fix", "open sky"),
])
def test_gps(observation, status, words, advice) -> None:
    result = gps_verdict(observation)
    assert result.status == status and words in result.detail
    assert advice is None or advice in result.advice


@pytest.mark.parametrize("synchronised, source, wall, status, words", [
    (True, "ntp", NOW, OK, "synchronised"),
    (False, "gps", NOW, WARN, "GPS time"),
    (False, "unsynced", NOW, WARN, "'unsynced'"),
    (False, None, NOW, WARN, "not synchronised"),
    (None, None, NOW, WARN, "cannot ask"),
    (False, "gps", 86400.0, WARN, "1970-01-02"),
])
def test_clock(synchronised, source, wall, status, words) -> None:
    result = clock_verdict(synchronised, source, wall)
    assert result.status == status and words in result.detail


@pytest.mark.parametrize("outcome, username, words, advice", [
    (BrokerOutcome("dns", "Name or service not known"), "", "cannot resolve", "uplink.host"),
    (BrokerOutcome("refused"), "", "nothing listens", "uplink.port"),
    (BrokerOutcome("timeout", "nothing in 5 s"), "", "no answer", "firewall"),
    (BrokerOutcome("tls", "certificate verify failed: unable to get local issuer certificate"), "", "TLS", "ca_file"),
    (BrokerOutcome("tls", "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "", "TLS", "plain MQTT"),
    (BrokerOutcome("tls_files", "No such file"), "", "TLS files", "ca_file"),
    (BrokerOutcome("closed", "reset"), "", "closed the connection", "client certificate"),
    (BrokerOutcome("no_connack", "nothing in 5 s"), "", "no MQTT answer", "uplink.tls"),
    (BrokerOutcome("credentials", "Bad user name or password"), "unit-1", "credentials refused", "password_file"),
    (BrokerOutcome("not_authorised", "Not authorized"), "unit-1", "credentials refused", "password_file"),
    (BrokerOutcome("not_authorised", "Not authorized"), "", "wants a username", "uplink.username"),
    (BrokerOutcome("publish_refused", "Not authorized on blankspot/v1/x/doctor"), "unit-1", "refuses", "device.id"),
    (BrokerOutcome("connack", "Server unavailable"), "", "Server unavailable", "log"),
])
def test_broker_failures_say_what_failed_and_what_to_change(outcome, username, words, advice) -> None:
    result = broker_verdict(outcome, "broker.example:8883", username, True)
    assert result.status == FAIL and words in result.detail and advice in result.advice


@pytest.mark.parametrize("free_mb, total_mb, max_mb, status", [
    (50, 16_000, 200, FAIL), (99, 16_000, 200, FAIL), (400, 16_000, 200, WARN), (1_000, 16_000, 200, WARN),
    (2_000, 16_000, 200, OK), (600, 1_000, 200, OK), (600, 1_000, 900, WARN),
])
def test_disk_space(free_mb, total_mb, max_mb, status) -> None:
    assert disk_verdict(Path("/var/lib/blankspot"), free_mb * 10**6, total_mb * 10**6, 0, max_mb * 10**6).status == status


def test_buffer_health() -> None:
    stats = BufferStats(pending=3, delivered_kept=5, oldest_pending_time="2026-11-18T07:05:40.000Z", last_seq=8,
                        dropped_total=0, delivered_total=5, used_bytes=40_000, max_bytes=0,
                        last_delivered_at="2026-11-18T07:06:00.000Z")
    path = Path("/var/lib/blankspot/buffer.db")
    assert buffer_verdict(path, stats, None, NOW).detail == "3 readings waiting (oldest 60 s ago), last delivery 40 s ago"
    dropped = buffer_verdict(path, BufferStats(**{**stats.__dict__, "dropped_total": 120}), None, NOW)
    assert dropped.status == WARN and "120 readings were dropped" in dropped.detail and "max_size" in dropped.advice
    assert buffer_verdict(path, None, "cannot read the buffer: file is not a database", NOW).status == FAIL
    assert buffer_verdict(path, None, None, NOW).status == OK


# -- a unit without a name: doctor proposes one from the board's serial number -----------------

PI4_CPUINFO = """processor\t: 3
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41

Revision\t: c03114
Serial\t\t: 10000000a1b2c3d4
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


@pytest.mark.parametrize("cpuinfo, devicetree, serial", [
    (PI4_CPUINFO, None, "10000000a1b2c3d4"),
    ("Serial\t\t: 00000000E5F6A7B8\n", None, "00000000e5f6a7b8"),              # older boards, upper case
    ("processor\t: 0\nmodel name\t: ARMv7\n", b"10000000c0ffee42\x00", "10000000c0ffee42"),  # no Serial line
    (None, b"10000000c0ffee42\x00", "10000000c0ffee42"),                         # no cpuinfo at all
    ("Serial\t\t: 0000000000000000\n", None, None),                            # a board without one
    ("model name\t: Intel(R) Core(TM) i5\n", None, None),                       # not a Pi
    (None, b"\xff\xfe\x00", None),
    (None, None, None),
])
def test_the_boards_serial_number_is_read_where_the_kernel_puts_it(tmp_path: Path, cpuinfo: str | None,
                                                                   devicetree: bytes | None, serial: str | None) -> None:
    cpu, tree = tmp_path / "cpuinfo", tmp_path / "serial-number"
    if cpuinfo is not None:
        cpu.write_text(cpuinfo)
    if devicetree is not None:
        tree.write_bytes(devicetree)
    assert pi_serial(cpu, tree) == serial


def test_the_proposed_device_id_is_a_valid_one() -> None:
    assert proposed_device_id("10000000a1b2c3d4") == "pi-a1b2c3d4"
    assert parse_config('[device]\nid = "pi-a1b2c3d4"\n').device_id == "pi-a1b2c3d4"


@pytest.mark.parametrize("device, serial, status, detail, advice", [
    ("boat-7", None, OK, "agent.toml is valid (device boat-7, source devices)", None),
    ("", "10000000a1b2c3d4", FAIL, "agent.toml: device.id is not set, and the agent does not start without it",
     'set id = "pi-a1b2c3d4" under [device] in agent.toml (from this Pi\'s serial number 10000000a1b2c3d4)'),
    ("", None, FAIL, "device.id is not set", 'set id = "boat-07" under [device] in agent.toml'),
])
def test_config_verdict_proposes_a_device_id(device, serial, status, detail, advice) -> None:
    result = config_verdict("agent.toml", device, "devices", serial)
    assert result.status == status and detail in result.detail
    assert (result.advice is None) if advice is None else (advice in result.advice)


def unnamed_unit(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'[buffer]\npath = "{tmp_path / "buffer.db"}"\n[budget]\nledger = "{tmp_path / "usage.db"}"\n'
                    '[source]\nkind = "synthetic"\n')
    return path


def test_doctor_on_a_unit_without_device_id_says_what_to_write_and_where(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = unnamed_unit(tmp_path)
    (tmp_path / "cpuinfo").write_text(PI4_CPUINFO)
    config = load_config(path, require_device_id=False)
    options = DoctorOptions(skip_broker=True, cpuinfo=tmp_path / "cpuinfo", devicetree_serial=tmp_path / "none")
    results = {r.name: r for r in run_doctor(config, str(path), options)}
    assert results["config"].status == FAIL and "device.id is not set" in results["config"].detail
    assert f'set id = "pi-a1b2c3d4" under [device] in {path}' in results["config"].advice
    assert results["disk"].status == OK and results["buffer"].status == OK, "the other checks still run"

    # Through the command: the check's line and advice, exit status 1, no traceback, and
    # `run --check` on the same file refuses it with the config error.
    status, checks = doctor(capsys, path, "--skip-broker")
    assert status == 1 and checks["config"]["status"] == "FAIL"
    assert f"under [device] in {path}" in checks["config"]["advice"]
    assert main(["doctor", "--config", str(path), "--skip-broker", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["device"] is None and report["checks"][0]["name"] == "config"
    assert main(["run", "--check", "--config", str(path)]) == 2
    assert "device.id: required" in capsys.readouterr().err


@pytest.mark.parametrize("name, command, kind", [
    ("ModemManager", "/usr/sbin/ModemManager", "modemmanager"),
    ("gpsd", "/usr/sbin/gpsd -n /dev/ttyACM0", "gpsd"),
    ("blankspot", "/opt/blankspot/bin/python /opt/blankspot/bin/blankspot run", "blankspot"),
    ("python3", "/usr/bin/python3 -m agent modem --port /dev/ttyUSB2", "blankspot"),
    ("python3", "/opt/blankspot/bin/python3 /opt/blankspot/bin/blankspot gps --port /dev/ttyACM0", "blankspot"),
    ("minicom", "minicom -D /dev/ttyUSB2", "other"),
])
def test_port_holders_are_recognised(name, command, kind) -> None:
    assert Holder(42, name, command).kind == kind


@pytest.mark.parametrize("exists, holders, agent_pid, running, status, words, advice", [
    (False, [], None, False, FAIL, "does not exist", "/dev/blankspot-at"),
    (True, [Holder(412, "ModemManager", "/usr/sbin/ModemManager")], None, False, FAIL,
     "held by ModemManager (pid 412)", "ID_MM_DEVICE_IGNORE"),
    (True, [Holder(77, "blankspot", "/opt/blankspot/bin/blankspot run")], 77, False, FAIL,
     "held by another blankspot (pid 77)", "systemctl restart blankspot-agent"),
    (True, [Holder(78, "python3", "python3 -m agent modem --port /dev/ttyUSB2")], 77, False, FAIL,
     "held by another blankspot (pid 78)", "kill 78"),
    (True, [], 77, True, OK, "in use by the running agent (pid 77)", None),
    (True, [], None, False, OK, "no other program has it open", None),
])
def test_who_holds_the_modem_port(exists, holders, agent_pid, running, status, words, advice) -> None:
    result = port_verdict("modem port", "at", "/dev/blankspot-at", exists, holders, "serial", agent_pid, running)
    assert result.status == status and words in result.detail
    assert advice is None or advice in result.advice


def test_status_text_in_a_blank_spot_and_with_a_broken_modem() -> None:
    config = parse_config('[device]\nid = "boat-7"\n[uplink]\nhost = "broker.example"\n')
    state = {"running": True, "pid": 10, "boot_id": BOOT, "written": "2026-11-18T07:06:39.000Z",
             "started": "2026-11-18T05:00:00.000Z", "uptime_s": 7600.0, "source": "devices", "mode": "fixed",
             "clock_source": "unsynced", "gps": "none", "fix": None, "uplink": "connecting",
             "signal": {"time": "2026-11-18T07:06:30.000Z", "registration": "searching", "operator": None,
                        "rat": "NONE", "quality": "none", "error": None}}
    liveness = agent_liveness(state, NOW, lambda pid: True, BOOT)
    status = build_status(config, state, None, None, liveness, False, NOW, ["cannot read the buffer: disk I/O error"])
    lines = status_lines(status)
    print("\n".join(lines))
    assert lines[:7] == [
        "device            boat-7",
        "agent             running, pid 10, up 2 h 6 min (fixed, devices)",
        "clock             unsynced (UNSYNCED: times corrected later if possible; kernel clock NOT synchronised)",
        "gps               none (modem)",
        "last fix          none",
        "last signal       no service (searching), 10 s ago",
        "uplink            connecting (broker.example:1883)",
    ]
    assert lines[7:] == ["data usage        not recorded", "problem           cannot read the buffer: disk I/O error"]
    state["signal"] = {"time": "2026-11-18T07:06:00.000Z", "error": "SIM not inserted", "registration": "not_registered"}
    lines = status_lines(build_status(config, state, None, None, liveness, False, NOW, []))
    assert "last signal       modem error: SIM not inserted (40 s ago)" in lines


# -- real parts ---------------------------------------------------------------------------------

@pytest.fixture
def boat(tmp_path: Path):
    with SimulatedBoat(TOWN, SCENARIO, 20.0, time_scale=1, rate_hz=5, workdir=tmp_path / "dev") as b:
        yield b


def doctor(capsys: pytest.CaptureFixture[str], config: Path, *extra: str) -> tuple[int, dict[str, dict]]:
    """Run doctor in this process (the simulators' own ends of the ptys are ours, and ignored)."""
    status = main(["doctor", "--config", str(config), "--gps-wait", "3", "--broker-timeout", "3", *extra])
    out = capsys.readouterr().out
    print(out, file=sys.stderr)  # shown when a test fails, and not read back by the next readouterr()
    assert "Traceback" not in out
    checks: dict[str, dict] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        label, _, rest = line.partition("  ")
        if label.strip() in ("ok", "WARN", "FAIL"):
            name, _, detail = rest.strip().partition(": ")
            advice = lines[i + 1].strip().removeprefix("-> ") if i + 1 < len(lines) and \
                lines[i + 1].startswith("      -> ") else None
            checks[name] = {"status": label.strip(), "detail": detail, "advice": advice}
    return status, checks


def test_doctor_on_a_healthy_unit_passes(tmp_path: Path, boat: SimulatedBoat, broker,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = field_config(tmp_path, broker.port, boat)
    status, checks = doctor(capsys, config)
    assert status == 0
    assert [n for n, c in checks.items() if c["status"] == "FAIL"] == []
    for name in ("config", "modem port", "modem", "SIM", "registration", "signal", "GPS port", "GPS fix", "broker",
                 "disk", "buffer"):
        assert checks[name]["status"] == "ok", name
    assert "Quectel EC25" in checks["modem"]["detail"] and "publishing allowed" in checks["broker"]["detail"]
    assert checks["agent"]["status"] == "WARN" and "systemctl" in checks["agent"]["advice"]
    assert main(["doctor", "--config", str(config), "--gps-wait", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["device"] == "boat-1"
    assert set(report["checks"][0]) == {"name", "status", "detail", "advice"}
    assert report["counts"]["fail"] == 0 and report["counts"]["ok"] >= 11


def test_doctor_fails_a_missing_modem_port_with_advice(tmp_path: Path, boat: SimulatedBoat,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = field_config(tmp_path, 1, boat, modem={"port": str(tmp_path / "ttyUSB9")})
    status, checks = doctor(capsys, config, "--skip-broker")
    assert status == 1
    assert checks["modem port"]["status"] == "FAIL" and "does not exist" in checks["modem port"]["detail"]
    assert "/dev/blankspot-at" in checks["modem port"]["advice"]
    assert "SIM" not in checks, "nothing is asked of a modem that is not there"
    assert checks["GPS fix"]["status"] == "ok", "the other checks still run"
    assert "broker" not in checks


@pytest.mark.parametrize("sim, detail, advice", [
    ("absent", "absent", "insert the SIM"),
    ("pin", "PIN-locked (SIM PIN)", "SIM PIN lock off"),
])
def test_doctor_fails_a_sim_that_is_absent_or_locked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     sim: str, detail: str, advice: str) -> None:
    with SimulatedBoat(TOWN, SCENARIO, 20.0, rate_hz=5, workdir=tmp_path / "dev", sim=sim) as boat:
        status, checks = doctor(capsys, field_config(tmp_path, 1, boat), "--skip-broker")
    assert status == 1
    assert checks["modem"]["status"] == "ok"
    assert checks["SIM"]["status"] == "FAIL" and detail in checks["SIM"]["detail"] and advice in checks["SIM"]["advice"]
    assert "registration" not in checks


def test_doctor_names_the_program_holding_a_port(tmp_path: Path, boat: SimulatedBoat,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Another program with the AT port open (a terminal left running, ModemManager) garbles the
    modem's answers: doctor names it, does not talk to the modem, and says what to do."""
    fake_mm = tmp_path / "ModemManager"
    fake_gpsd = tmp_path / "gpsd"
    shutil.copy(shutil.which("sleep"), fake_mm)
    shutil.copy(shutil.which("sleep"), fake_gpsd)
    holders = []
    try:
        for program, port in ((fake_mm, boat.modem_port), (fake_gpsd, boat.gps_port)):
            fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
            holders.append(subprocess.Popen([str(program), "30"], stdin=fd))
            os.close(fd)
        status, checks = doctor(capsys, field_config(tmp_path, 1, boat), "--skip-broker")
        modem = checks["modem port"]
        assert modem["status"] == "FAIL" and f"held by ModemManager (pid {holders[0].pid})" in modem["detail"]
        assert "ID_MM_DEVICE_IGNORE" in modem["advice"] and "systemctl disable --now ModemManager" in modem["advice"]
        assert "SIM" not in checks
        gps = checks["GPS port"]
        assert gps["status"] == "FAIL" and f"held by gpsd (pid {holders[1].pid})" in gps["detail"]
        assert 'gps.source = "gpsd"' in gps["advice"]
        assert status == 1
        holders[0].kill()
        holders[0].wait()
        fd = os.open(boat.modem_port, os.O_RDWR | os.O_NOCTTY)
        holders.append(subprocess.Popen(["sleep", "30"], stdin=fd))
        os.close(fd)
        _, checks = doctor(capsys, field_config(tmp_path, 1, boat), "--skip-broker")
        assert f"held by sleep (pid {holders[-1].pid})" in checks["modem port"]["detail"]
        assert f"kill {holders[-1].pid}" in checks["modem port"]["advice"]
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()


def test_doctor_fails_a_silent_gps_and_hints_at_a_wrong_baud_rate(tmp_path: Path, boat: SimulatedBoat,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = field_config(tmp_path, 1, boat)
    boat.gps.silence(60)
    status, checks = doctor(capsys, config, "--skip-broker", "--gps-wait", "1.5")
    assert status == 1
    assert checks["GPS port"]["status"] == "ok"
    assert checks["GPS fix"]["status"] == "FAIL" and "silent: no bytes in" in checks["GPS fix"]["detail"]
    assert "power and cable" in checks["GPS fix"]["advice"]
    # At the wrong baud rate a receiver's output arrives as garbage.
    stop = threading.Event()
    noise = random.Random(3)

    def garble() -> None:
        while not stop.wait(0.1):
            boat.gps.inject(bytes(noise.choice([b for b in range(256) if b not in b"$\n"]) for _ in range(300)))

    thread = threading.Thread(target=garble, daemon=True)
    thread.start()
    try:
        status, checks = doctor(capsys, config, "--skip-broker", "--gps-wait", "1.5")
    finally:
        stop.set()
        thread.join()
    assert status == 1
    assert "wrong baud rate" in checks["GPS fix"]["detail"] and "gps.baud" in checks["GPS fix"]["advice"]


def test_doctor_fails_a_gpsd_that_is_not_running(tmp_path: Path, boat: SimulatedBoat,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = field_config(tmp_path, 1, boat, gps={"source": "gpsd", "gpsd": f"127.0.0.1:{free_port()}"})
    status, checks = doctor(capsys, config, "--skip-broker")
    assert status == 1 and "GPS port" not in checks, "gpsd owns the receiver: its port is not ours to check"
    assert "cannot reach gpsd" in checks["GPS fix"]["detail"] and "systemctl" in checks["GPS fix"]["advice"]


def test_doctor_fails_a_broker_that_is_down(tmp_path: Path, boat: SimulatedBoat,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    status, checks = doctor(capsys, field_config(tmp_path, free_port(), boat))
    assert status == 1
    assert checks["broker"]["status"] == "FAIL" and "refused the connection" in checks["broker"]["detail"]
    unknown = field_config(tmp_path, 1883, boat, uplink={"host": "broker.invalid"})
    status, checks = doctor(capsys, unknown)
    assert status == 1 and "cannot resolve" in checks["broker"]["detail"]


def test_doctor_tells_refused_credentials(tmp_path: Path, boat: SimulatedBoat, request: pytest.FixtureRequest,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    broker: LocalBroker = request.getfixturevalue("password_broker")  # user unit-1, password s3cret-Kukar
    (tmp_path / "pw").write_text("wrong\n")
    uplink = {"username": "unit-1", "password_file": str(tmp_path / "pw")}
    config = field_config(tmp_path, broker.port, boat, uplink=uplink)
    for protocol in ("5", "3.1.1"):
        config = field_config(tmp_path, broker.port, boat, uplink={**uplink, "protocol": protocol})
        status, checks = doctor(capsys, config)
        assert status == 1
        assert checks["broker"]["status"] == "FAIL" and "credentials refused" in checks["broker"]["detail"], protocol
        assert "password_file" in checks["broker"]["advice"]
    (tmp_path / "pw").write_text("s3cret-Kukar\n")
    status, checks = doctor(capsys, config)
    assert status == 0 and "user unit-1" in checks["broker"]["detail"]
    (tmp_path / "pw").unlink()
    status, checks = doctor(capsys, config)
    assert status == 1 and "cannot read a password" in checks["broker"]["detail"]
    assert checks["disk"]["status"] == "ok", "the checks after it still ran"


def test_doctor_tells_when_the_broker_acl_refuses_the_units_topics(tmp_path: Path, boat: SimulatedBoat,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A login the broker accepts is not enough: its ACL must let the unit write under its own
    name (MQTT 5 says so in the PUBACK; the fleet broker's ACL has `pattern write .../%u/doctor`
    for this check, beside the readings and status)."""
    require_mosquitto()
    (tmp_path / "acl").write_text("pattern write blankspot/v1/%u/#\n")  # anonymous: no %u, no writes
    acl_broker = LocalBroker("mosquitto", workdir=tmp_path / "acl-broker",
                             extra_config=f"acl_file {tmp_path / 'acl'}\n").start()
    try:
        status, checks = doctor(capsys, field_config(tmp_path, acl_broker.port, boat))
    finally:
        acl_broker.kill()
    assert status == 1
    assert "refuses this unit's topics" in checks["broker"]["detail"] and "device.id" in checks["broker"]["advice"]


def test_doctor_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--gps-wait", "0"]) == 2
    assert main(["doctor", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_status_while_the_agent_runs_and_after_it_stopped(tmp_path: Path, boat: SimulatedBoat, broker,
                                                          collectors: list, capsys: pytest.CaptureFixture[str]) -> None:
    # A collector stores and confirms the readings: the unit's counters are the centre's word.
    collector = CollectorProcess(tmp_path, broker.port, f"sqlite:///{tmp_path}/collector.db", "collector-1",
                                 "--confirm-interval", "1s")
    collectors.append(collector)
    collector.start()
    path = field_config(tmp_path, broker.port, boat)
    config = load_config(path)
    service = AgentService(config)
    stop, thread = run_in_thread(service)

    def state() -> dict:
        try:
            return json.loads(state_path(config).read_text())
        except (OSError, ValueError):
            return {}

    try:
        assert wait_until(lambda: state().get("fix") is not None and state().get("signal") is not None
                          and state().get("uplink") == "connected" and service.buffer.stats().delivered_total > 0, 30)
        assert main(["status", "--json", "--config", str(path)]) == 0
        status = json.loads(capsys.readouterr().out)
        assert main(["status", "--config", str(path)]) == 0
        text = capsys.readouterr().out
        # While it runs, doctor leaves the modem to the agent and reads its state instead.
        code, checks = doctor(capsys, path)
    finally:
        stop.set()
        thread.join(30)
    print(json.dumps(status, indent=1), text, sep="\n", file=sys.stderr)
    assert set(status) == {"device", "time", "agent", "clock", "gps", "fix", "signal", "uplink", "buffer", "data",
                           "errors"}
    agent = status["agent"]
    assert agent["running"] is True and agent["pid"] == os.getpid() and agent["not_running_because"] is None
    assert agent["uptime_s"] > 0 and agent["last_seen_age_s"] < 30 and agent["mode"] == "mobile"
    assert status["clock"]["source"] in ("gps", "ntp") and status["gps"] == {"source": "serial", "state": "3d"}
    assert status["fix"]["fix"] == "3d" and status["fix"]["lat"] < 0 and 0 <= status["fix"]["age_s"] < 10
    signal = status["signal"]
    assert signal["operator"] == "TELKOMSEL" and signal["rat"] == "LTE" and signal["error"] is None
    assert signal["rsrp_dbm"] is not None and signal["quality"] and 0 <= signal["age_s"] < 10
    assert status["uplink"] == {"enabled": True, "broker": f"127.0.0.1:{broker.port}", "state": "connected"}
    buffer = status["buffer"]
    for key in ("pending", "delivered_kept", "oldest_pending_time", "oldest_pending_age_s", "last_seq", "dropped_total",
                "delivered_total", "used_bytes", "max_bytes", "last_delivered_at", "last_delivered_age_s", "unconfirmed",
                "kept_from", "confirm_rev", "path"):
        assert key in buffer, key
    assert buffer["delivered_total"] > 0 and buffer["last_delivered_at"] and buffer["last_delivered_age_s"] < 30
    assert status["data"]["day"]["used_bytes"] >= 0 and status["errors"] == []
    lines = {line[:18].strip(): line[18:] for line in text.splitlines()}
    assert lines["agent"].startswith(f"running, pid {os.getpid()}, up ")
    assert lines["clock"].startswith(status["clock"]["source"])
    assert lines["last fix"].startswith(f"{status['fix']['lat']:.6f}") and " s ago" in lines["last fix"]
    assert lines["last signal"].startswith("TELKOMSEL  LTE  rsrp ") and "dBm" in lines["last signal"]
    assert lines["uplink"] == f"connected (127.0.0.1:{broker.port})"
    assert lines["last confirmed"].endswith(f"({buffer['last_delivered_at']})") and "s ago" in lines["last confirmed"]
    for label in ("readings waiting", "unconfirmed", "confirmed", "dropped", "buffer size", "data today",
                  "data this month"):
        assert label in lines, label

    assert code == 0
    assert checks["agent"]["status"] == "ok"
    assert f"in use by the running agent (pid {os.getpid()})" in checks["modem port"]["detail"]
    assert "not opened: the running agent" in checks["modem"]["detail"]
    assert checks["SIM"]["status"] == checks["registration"]["status"] == "ok"
    assert checks["GPS fix"]["status"] == "ok" and "running agent" in checks["GPS fix"]["detail"]

    assert main(["status", "--json", "--config", str(path)]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["agent"]["running"] is False and after["agent"]["not_running_because"] == "it stopped normally"
    assert after["uplink"]["state"] is None and after["fix"] is not None, "the last fix is still shown, with its age"
    assert main(["status", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert "not running (last seen " in text and "it stopped normally" in text


def test_status_of_an_agent_that_was_killed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = field_config(tmp_path, 1, _Ports(tmp_path))
    config = load_config(path)
    ReadingBuffer(config.buffer.path, "boat-1").close()
    gone = subprocess.Popen(["true"])
    gone.wait()
    from agent.shared.clock import boot_id
    from agent.shared.reading import format_time_epoch

    state_path(config).write_text(json.dumps({"running": True, "pid": gone.pid, "boot_id": boot_id(),
                                              "written": format_time_epoch(time.time() - 300)}))
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"not running (last seen 5 min ago: process {gone.pid} is gone: crashed or killed)" in out
    assert "data" in out and "readings waiting  0" in out


def test_status_of_a_unit_that_never_ran_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(field_config(tmp_path, 1, _Ports(tmp_path)))]) == 1
    assert "has the agent run with this config?" in capsys.readouterr().err


class _Ports:
    """Port names for a config of a unit whose devices are not needed by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.modem_port = str(tmp_path / "ttyUSB2")
        self.gps_port = str(tmp_path / "ttyACM0")


def test_doctor_checks_the_sms_settings_and_the_sims_service_centre(tmp_path: Path, boat: SimulatedBoat,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from agent.shared.heartbeat import new_key

    config = field_config(tmp_path, 1, boat)
    key = tmp_path / "heartbeat.key"
    config.write_text(config.read_text() + f'\n[sms]\nnumbers = ["+6281234500002"]\nkey_file = "{key}"\n')
    _, checks = doctor(capsys, config, "--skip-broker")
    assert checks["SMS"]["status"] == "FAIL" and "cannot read the heartbeat key" in checks["SMS"]["detail"]
    assert "deploy/install.sh" in checks["SMS"]["advice"] and "/etc/blankspot/heartbeat.key" in checks["SMS"]["advice"]
    key.write_text(new_key())
    _, checks = doctor(capsys, config, "--skip-broker")
    assert checks["SMS"]["status"] == "ok" and "+6281234500002" in checks["SMS"]["detail"]
    assert checks["SMS centre"]["status"] == "ok"
    boat.modem.smsc = None
    _, checks = doctor(capsys, config, "--skip-broker")
    assert checks["SMS centre"]["status"] == "WARN"
    assert checks["SMS centre"]["detail"] == "the SIM has no SMS service centre; heartbeats cannot be sent"
    config.write_text(config.read_text() + 'every = "1h"\n')
    _, checks = doctor(capsys, config, "--skip-broker")
    assert checks["SMS"]["status"] == "WARN" and "sms.max_per_day allows 4" in checks["SMS"]["detail"]
