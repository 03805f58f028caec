"""The heartbeat SMS a unit sends while its data link is down: the policy, and the agent with
two simulated modems joined by a simulated SMS network, its broker out of reach."""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import serial

from agent.shared.clock import TimeKeeper
from agent.shared.heartbeat import Heartbeat, counter_from_time, decode_heartbeat, new_key, read_key
from agent.shared.polling import wait_until
from agent.shared.reading import Signal
from agent.shared.sms_pdu import decode_deliver
from agent.sim.modem import SimulatedModem
from agent.sim.scenario import Radio, mahakam_scenario
from agent.sim.sms_network import SmsNetwork
from agent.unit.buffer import read_readings
from agent.unit.config import ConfigError, load_config
from agent.unit.devices.modem.parse_sms import parse_cmgl_pdu
from agent.unit.service import AgentService
from agent.unit.sms_heartbeat import (
    HeartbeatFile, Ledger, Outage, SmsPolicy, decide, heartbeat_path, is_quota_notice, next_counter, reason,
)
from tests.support.unit_config import write_config

UNIT = "+6281234500001"
CENTRE = "+6281234500002"
SERVED = Radio(mahakam_scenario().towers[0], rsrp_dbm=-95.0, rsrq_db=-10.0, sinr_db=8.0, rssi_dbm=-67.0)
DAY = "2026-05-01"


def SYNCED() -> TimeKeeper:
    """The clock of a unit whose system time NTP has set: trusted, so counters start from it."""
    return TimeKeeper(synchronised=lambda: True)


# -- the policy ------------------------------------------------------------------------------------

POLICY = SmsPolicy(("+6281234500002",), after_s=3600, every_s=6 * 3600, max_per_day=4, max_per_month=60,
                   retry_first_s=1800)


@pytest.mark.parametrize("outage,ledger,now,expected", [
    # down for less than `after`: wait for the rest of it
    (Outage(down_since=0), Ledger(), 1000, ("wait", 2600)),
    (Outage(down_since=0), Ledger(), 3600, ("send", 0)),
    # sent at 3600: the next one `every` later
    (Outage(down_since=0, last_sent=3600, last_tried=3600), Ledger(), 3600 + 100, ("wait", 6 * 3600 - 100)),
    (Outage(down_since=0, last_sent=3600, last_tried=3600), Ledger(), 3600 + 6 * 3600, ("send", 0)),
    # a confirmation since (down_since moved on): `after` again, not `every`
    (Outage(down_since=5000, last_sent=3600, last_tried=3600), Ledger(), 5000 + 3599, ("wait", 1)),
    # failures: 30 min, then 1 h, then 2 h ... never more than `every`
    (Outage(down_since=0, last_tried=4000, failures=1), Ledger(), 4000 + 1799, ("wait", 1)),
    (Outage(down_since=0, last_tried=4000, failures=2), Ledger(), 4000 + 1800, ("wait", 1800)),
    (Outage(down_since=0, last_tried=4000, failures=9), Ledger(), 4000 + 6 * 3600, ("send", 0)),
    # the budget, counted per calendar day and month
    (Outage(down_since=0), Ledger(day=DAY, sent_day=4, month=DAY[:7], sent_month=4), 3600, ("skip", "max_per_day")),
    (Outage(down_since=0), Ledger(day="2026-04-30", sent_day=4, month=DAY[:7], sent_month=4), 3600, ("send", 0)),
    (Outage(down_since=0), Ledger(day=DAY, sent_day=1, month=DAY[:7], sent_month=60), 3600, ("skip", "max_per_month")),
    (Outage(down_since=0), Ledger(day="2026-04-30", sent_day=1, month="2026-04", sent_month=60), 3600, ("send", 0)),
])
def test_when_a_heartbeat_is_due(outage: Outage, ledger: Ledger, now: float, expected: tuple) -> None:
    decision = decide(POLICY, outage, ledger, now, DAY)
    detail = decision.wait_s if decision.action == "wait" else decision.why or 0
    assert (decision.action, detail) == expected


def test_no_numbers_no_heartbeat() -> None:
    off = SmsPolicy(())
    assert decide(off, Outage(down_since=0), Ledger(), 10**9, DAY).action == "off"


def test_the_counter_only_grows_and_survives_a_lost_file(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert next_counter(Ledger(), now) == counter_from_time(now), "seeded from the clock"
    assert next_counter(Ledger(counter=counter_from_time(now) + 50), now) == counter_from_time(now) + 51
    assert next_counter(Ledger(counter=7), None) == 8, "an untrusted clock adds nothing"
    file = HeartbeatFile(tmp_path / "buffer.db.sms")
    file.write(Ledger(counter=12, day=DAY, sent_day=1))
    assert HeartbeatFile(file.path).read() == Ledger(counter=12, day=DAY, sent_day=1)
    file.path.write_text("{not json")
    assert HeartbeatFile(file.path).read() == Ledger(), "a damaged file starts again from the clock"


@pytest.mark.parametrize("error,signal,quota_age,expected", [
    ("cannot reach broker 10.0.0.1:1883: [Errno 111] Connection refused", None, None, "broker_unreachable"),
    ("broker 10.0.0.1:1883 refused the connection: Not authorized", None, None, "login_refused"),
    ("broker 10.0.0.1:1883 refused the connection: Bad user name or password", None, None, "login_refused"),
    ("cannot reach broker c.example:1883: [Errno -3] Temporary failure in name resolution", None, None, "no_data_service"),
    ("cannot reach broker 10.0.0.1:1883: [Errno 101] Network is unreachable", None, None, "no_data_service"),
    ("cannot reach broker 10.0.0.1:1883: [Errno 111] Connection refused", Signal(registration="searching"), None, "no_signal"),
    ("cannot reach broker 10.0.0.1:1883: [Errno 111] Connection refused", None, 3600.0, "quota_exhausted"),
    ("cannot reach broker 10.0.0.1:1883: [Errno 111] Connection refused", None, 5 * 86400.0, "broker_unreachable"),
    (None, None, None, "unknown"),
])
def test_why_the_data_is_down(error: str | None, signal: Signal | None, quota_age: float | None, expected: str) -> None:
    assert reason(uplink_error=error, signal=signal, quota_notice_age_s=quota_age) == expected


@pytest.mark.parametrize("text,quota", [
    ("Kuota internet Anda telah habis. Beli paket di *363#", True),
    ("Sisa pulsa Anda Rp0", True),
    ("Your data quota is used up", True),
    ("Selamat datang di Telkomsel", False),
])
def test_operator_quota_notices(text: str, quota: bool) -> None:
    assert is_quota_notice(text) is quota


# -- the agent, its broker out of reach ------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def network(tmp_path: Path):
    with SmsNetwork(delay_s=0.05) as net:
        unit = SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path / "unit",
                                          time_scale=0.01, number=UNIT, sms_network=net)
        centre = SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path / "centre",
                                            time_scale=0.01, number=CENTRE, sms_network=net)
        yield net, unit, centre
        unit.close()
        centre.close()


def unit_config(tmp_path: Path, modem: SimulatedModem, **sms: object) -> Path:
    key = tmp_path / "heartbeat.key"
    if not key.exists():
        key.write_text(new_key())
    values = {"numbers": [CENTRE], "after": "2s", "every": "3s", "key_file": str(key), "check_interval": "1s"}
    values.update(sms)
    path = write_config(tmp_path / "agent.toml", _closed_port(), tmp_path / "buffer.db", {
        "source": {"kind": "devices"},
        "modem": {"port": modem.port, "model": "quectel-ec25"},
        "gps": {"source": "none"},
        "schedule": {"signal_interval": "300ms", "latency_interval": "1h", "scan_interval": "0s"},
        "sms": {},
    }, device="boat_7")
    # write_config has no lists: the [sms] table is written here
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text(path.read_text().replace("[sms]\n", "[sms]\n" + "\n".join(lines) + "\n"))
    return path


def run_agent(config_path: Path, seconds: float | None = None, until=None) -> AgentService:
    service = AgentService(load_config(config_path), config_path=str(config_path), clock=SYNCED())
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        if until is not None:
            assert wait_until(lambda: until(service), seconds or 20), "the awaited events were recorded"
        else:
            time.sleep(seconds or 0)
    finally:
        stop.set()
        service.wake()
        thread.join(20)
    assert not thread.is_alive()
    return service


def events(config_path: Path, kind: str | None = None) -> list[dict]:
    config = load_config(config_path)
    found = [json.loads(r.body) for r in read_readings(config.buffer.path) if r.kind == "event"]
    return [b["event"] | {"time": b["time"]} for b in found if kind is None or b["event"]["type"] == kind]


def centre_inbox(centre: SimulatedModem) -> list[str]:
    """The texts in the centre modem's storage, read with raw AT+CMGL over its pty."""
    with serial.Serial(centre.port, 115200, timeout=0.1) as port:
        out = b""
        for command in (b"AT+CMGF=0\r", b"AT+CMGL=4\r"):
            port.write(command)
            out = b""
            deadline = time.monotonic() + 3
            while not re.search(rb"\r\n(OK|ERROR)\r\n$", out) and time.monotonic() < deadline:
                out += port.read(max(1, port.in_waiting))
    lines = [line for line in out.decode("ascii").splitlines() if line and not line.startswith("AT+")]
    return [decode_deliver(stored.pdu).text for stored in parse_cmgl_pdu(lines)]


def heartbeats(texts: list[str], key: bytes) -> list[Heartbeat]:
    return [decode_heartbeat(text, lambda unit: key if unit == "boat_7" else None) for text in texts]


def test_heartbeats_reach_the_centre_after_and_every(tmp_path: Path, network) -> None:
    net, unit, centre = network
    path = unit_config(tmp_path, unit)
    key = read_key((tmp_path / "heartbeat.key").read_text())
    started = time.monotonic()
    service = run_agent(path, 8.6)
    assert net.wait_idle(5)
    received = heartbeats(centre_inbox(centre), key)
    sent = events(path, "sms_heartbeat_sent")
    # after 2 s, then every 3 s: at about 2, 5 and 8 s
    assert len(received) == len(sent) == 3, [e["message"] for e in sent]
    assert [hb.counter for hb in received] == sorted({hb.counter for hb in received})
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() for e in sent]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(2.5 <= gap <= 4.0 for gap in gaps), gaps
    first = received[0]
    assert first.reason == "broker_unreachable" and first.device == "boat_7"
    assert first.rat == "lte" and first.level_dbm == -95 and first.operator and len(first.operator) in (5, 6)
    assert first.backlog > 0 and first.oldest is not None and first.last_seq > 0
    assert first.lat is None, "no GPS, no position"
    assert sent[0]["data"]["numbers"] == [CENTRE] and sent[0]["data"]["counter"] == first.counter
    assert time.monotonic() - started < 20 and service.sms is not None


def test_budget_skips_are_recorded_once_a_day(tmp_path: Path, network) -> None:
    net, unit, centre = network
    path = unit_config(tmp_path, unit, after="1s", every="1s", max_per_day=2)
    run_agent(path, 5.5)
    assert net.wait_idle(5)
    assert len(centre_inbox(centre)) == 2
    skipped = events(path, "sms_skipped")
    assert len(skipped) == 1 and skipped[0]["data"]["why"] == "max_per_day"
    assert len(events(path, "sms_heartbeat_sent")) == 2


def test_no_credit_is_an_event_and_retried_later_not_in_a_loop(tmp_path: Path, network) -> None:
    net, unit, centre = network
    unit.fail_sms("no_credit")
    path = unit_config(tmp_path, unit, after="1s", every="2s")
    config = load_config(path)
    service = AgentService(config, config_path=str(path), clock=SYNCED())
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(5.5)  # tries at about 1, 3, 5 s
        unit.fail_sms(None)
        assert wait_until(lambda: len(centre.sms_messages) >= 1, 5)
    finally:
        stop.set()
        service.wake()
        thread.join(20)
    failed = events(path, "sms_failed")
    assert 2 <= len(failed) <= 3, [f["message"] for f in failed]
    assert all(f["data"]["code"] == 21 and f["data"]["kind"] == "no_credit_or_barred" for f in failed)
    assert failed[0]["data"]["meaning"]
    assert len(events(path, "sms_heartbeat_sent")) >= 1


def test_an_operator_notice_is_recorded_deleted_and_the_next_heartbeat_says_quota(tmp_path: Path, network) -> None:
    net, unit, centre = network
    path = unit_config(tmp_path, unit, after="3s", every="3s")
    key = read_key((tmp_path / "heartbeat.key").read_text())

    def quota_heartbeat_sent(service: AgentService) -> bool:
        return any(e["data"]["reason"] == "quota_exhausted" for e in events(path, "sms_heartbeat_sent"))

    threading.Timer(1.0, lambda: net.send_from_operator(
        "TELKOMSEL", "Kuota internet Anda telah habis. Beli paket di *363#", to=UNIT)).start()
    run_agent(path, 15, until=quota_heartbeat_sent)
    received = events(path, "sms_received")
    assert [(e["data"]["sender"], e["data"]["text"][:30]) for e in received] == \
        [("TELKOMSEL", "Kuota internet Anda telah habi")]
    assert unit.sms_messages == [], "deleted from the SIM once recorded"
    assert net.wait_idle(5)
    assert heartbeats(centre_inbox(centre), key)[0].reason == "quota_exhausted"


def test_the_counter_is_kept_across_restarts_and_never_reused(tmp_path: Path, network) -> None:
    net, unit, centre = network
    path = unit_config(tmp_path, unit, after="1s", every="1s")
    key = read_key((tmp_path / "heartbeat.key").read_text())
    run_agent(path, 2.6)
    run_agent(path, 2.6)
    config = load_config(path)
    heartbeat_path(config.buffer.path).unlink()  # a reinstall loses it: the clock seeds it again
    time.sleep(2)  # at one heartbeat a second the counters ran a little ahead of the clock (docs/sms-heartbeat.md)
    run_agent(path, 2.6)
    assert net.wait_idle(5)
    counters = [hb.counter for hb in heartbeats(centre_inbox(centre), key)]
    assert len(counters) >= 5 and counters == sorted(set(counters)), counters
    assert counters[0] >= counter_from_time(datetime.now(timezone.utc)) - 60, "seeded from the trusted clock"
    sent = [e["data"]["counter"] for e in events(path, "sms_heartbeat_sent")]
    assert sent == counters


def test_numbers_without_a_key_refuse_to_start(tmp_path: Path, network) -> None:
    net, unit, centre = network
    path = unit_config(tmp_path, unit, key_file=str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="sms.key_file: cannot read the heartbeat key"):
        AgentService(load_config(path), config_path=str(path))
    (tmp_path / "bad.key").write_text("not a key\n")
    path = unit_config(tmp_path, unit, key_file=str(tmp_path / "bad.key"))
    with pytest.raises(ConfigError, match="is not a heartbeat key"):
        AgentService(load_config(path), config_path=str(path))
