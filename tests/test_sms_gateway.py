"""The centre's SMS gateway: heartbeats from a unit's modem, over the simulated SMS network, to
the centre's modem, into the collector's database; deleted from the SIM only once stored.

The gateway runs as a real process (``python -m agent sms-gateway``) on the pseudo-terminal of
a simulated modem; the unit's side is a second simulated modem talked to over pyserial, or the
network itself (``SmsNetwork.submit``).  The database is a real SQLite file read back through
the store's methods.  ``sms-inbox`` runs with the environment gammu-smsd's RunOnReceive sets.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import serial

from agent.centre.store import open_store
from agent.shared.heartbeat import Heartbeat, encode_heartbeat, read_key
from agent.shared.polling import wait_until
from agent.shared.sms_pdu import encode_submit
from agent.sim.modem import SimulatedModem
from agent.sim.sms_network import SmsNetwork
from agent.sim.broker import free_port
from tests.support.systemd import FakeSystemd
from tests.support.raw_modem import read_until
from tests.support.heartbeat_keys import keys_folder

ROOT = Path(__file__).resolve().parent.parent
UNIT = "+6281234500001"
CENTRE = "+6281234500002"


def heartbeat(counter: int, device: str = "boat_7", backlog: int = 4312) -> Heartbeat:
    return Heartbeat(device=device, counter=counter, time=datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc),
                     lat=-0.50123, lon=117.15321, backlog=backlog,
                     oldest=datetime(2026, 4, 30, 6, 12, tzinfo=timezone.utc), last_seq=987654, rat="lte",
                     operator="51010", level_dbm=-112, uptime_s=259217, reason="quota_exhausted")


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def network():
    with SmsNetwork(delay_s=0.02, retry_s=0.1) as net:
        yield net


@pytest.fixture
def centre(tmp_path: Path, network: SmsNetwork):
    with SimulatedModem.for_profile("quectel-ec25", workdir=tmp_path / "centre", time_scale=0.1, number=CENTRE,
                                    sms_network=network) as modem:
        yield modem


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return keys_folder(tmp_path)


def key(keys_dir: Path, device: str = "boat_7") -> bytes:
    return read_key((keys_dir / f"{device}.key").read_text(encoding="ascii"))


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/collector.db"


class Gateway:
    """``blankspot sms-gateway`` as a process; its log in a file, read as it grows."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = log.open("a")
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._log,
                                        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 15.0) -> None:
        ok = wait_until(lambda: len(re.findall(pattern, self.log)) >= count or self.process.poll() is not None,
                        timeout, interval=0.05)
        assert ok and len(re.findall(pattern, self.log)) >= count, f"no {pattern!r} in:\n{self.log}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        finally:
            self._log.close()


@pytest.fixture
def start_gateway(tmp_path: Path, centre: SimulatedModem, db: str, keys_dir: Path):
    started: list[Gateway] = []

    def start(*more: str, argv: list[str] | None = None, env: dict[str, str] | None = None) -> Gateway:
        argv = argv or [sys.executable, "-m", "agent", "sms-gateway", "--port", centre.port, "--db", db,
                        "--keys-dir", str(keys_dir), "--list-every", "2s", *more]
        gateway = Gateway(argv, tmp_path / "gateway.log", env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait()


def stored_and_sim_empty(db: str, centre: SimulatedModem, devices: set[str], timeout: float = 15.0) -> dict:
    with open_store(db) as store:
        assert wait_until(lambda: set(store.heartbeats()) >= devices and not centre.sms_messages, timeout,
                          interval=0.1), (store.heartbeats(), centre.sms_messages)
        return store.heartbeats()


# -- a unit's modem, as the unit's uplink drives it ------------------------------------------

def send_from_unit(port: serial.Serial, text: str, to: str = CENTRE) -> None:
    """AT+CMGS in PDU mode: the command, the prompt, the PDU and Ctrl-Z, then +CMGS and OK."""
    pdu, length = encode_submit(to, text)
    port.write(f"AT+CMGS={length}\r".encode("ascii"))
    assert read_until(port, lambda d: d.endswith(b"> ")) == b"\r\n> "
    port.write(pdu.encode("ascii") + b"\x1a")
    answer = read_until(port, lambda d: d.endswith(b"OK\r\n") or b"ERROR" in d)
    assert b"+CMGS:" in answer, answer


# -- heartbeats stored ---------------------------------------------------------------------------

def test_heartbeats_a_unit_sends_are_stored_and_deleted_from_the_sim(tmp_path, network, centre, db, keys_dir,
                                                                        start_gateway) -> None:
    gateway = start_gateway()
    gateway.wait_log(r"ready: PDU mode, storage SM")
    with SimulatedModem.for_profile("quectel-ec25", workdir=tmp_path / "unit", time_scale=0.1, number=UNIT,
                                    sms_network=network) as unit, \
            serial.Serial(unit.port, 115200, timeout=0.05) as port:
        port.write(b"ATE0\r")
        read_until(port, lambda d: d.endswith(b"OK\r\n"))
        send_from_unit(port, encode_heartbeat(heartbeat(1043), key(keys_dir)))
    network.submit(UNIT, CENTRE, encode_heartbeat(heartbeat(7, "probe-2", backlog=0), key(keys_dir, "probe-2")))

    kept = stored_and_sim_empty(db, centre, {"boat_7", "probe-2"})
    assert kept["boat_7"].heartbeat == heartbeat(1043)
    assert kept["boat_7"].sender == UNIT and kept["boat_7"].source == "sms"
    assert kept["probe-2"].heartbeat == heartbeat(7, "probe-2", backlog=0)
    gateway.wait_log(r"listing of \d messages: stored \d heartbeats? \(")
    assert gateway.stop() == 0
    print(f"\ngateway log:\n{textwrap.indent(gateway.log, '  ')}")
    assert "Traceback" not in gateway.log
    assert "SMS gateway stopped" in gateway.log


def test_forged_replayed_truncated_and_ucs2_messages_are_refused_counted_and_deleted(
        network, centre, db, keys_dir, start_gateway) -> None:
    gateway = start_gateway()
    gateway.wait_log(r"ready: PDU mode")
    genuine = encode_heartbeat(heartbeat(1043), key(keys_dir))
    network.submit(UNIT, CENTRE, genuine)
    stored_and_sim_empty(db, centre, {"boat_7"})
    forged = encode_heartbeat(heartbeat(1044, backlog=1), bytes(32))  # someone without the unit's key
    # UCS2 holds 70 characters: a heartbeat's start with one character outside the GSM alphabet.
    for text in (forged, genuine, genuine[:60], genuine[:40] + " ✓"):
        network.submit(UNIT, CENTRE, text)
    network.send_from_operator("TELKOMSEL", "Kuota internet Anda telah habis.", to=CENTRE)

    with open_store(db) as store:
        expected = {"bad_signature": 1, "replayed": 1, "truncated": 1, "ucs2": 1, "not_heartbeat": 1}
        assert wait_until(lambda: store.refused_sms() == expected and not centre.sms_messages, 15,
                          interval=0.1), (store.refused_sms(), centre.sms_messages)
        assert store.heartbeats()["boat_7"].heartbeat.counter == 1043, "nothing refused was stored"
    assert gateway.stop() == 0
    assert "refused" in gateway.log and "Traceback" not in gateway.log


def test_it_speaks_the_notify_protocol_of_its_systemd_unit(tmp_path, centre, start_gateway) -> None:
    """Type=notify with WatchdogSec=: READY=1, watchdog pings while the loop turns, STOPPING=1
    and exit 0 on SIGTERM."""
    systemd = FakeSystemd(str(tmp_path / "notify.sock"))
    try:
        gateway = start_gateway(env={"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "1000000"})
        assert wait_until(lambda: any(m.startswith("READY=1") for _, m in systemd.messages), 15), systemd.messages
        assert wait_until(lambda: len(systemd.pings()) >= 3, 10), systemd.messages
        assert gateway.stop() == 0
        assert wait_until(lambda: any("STOPPING=1" in m for _, m in systemd.messages), 5), systemd.messages
    finally:
        systemd.close()


# -- crashes and vanishing modems ------------------------------------------------------------------

def test_killed_between_commit_and_delete_stores_the_heartbeat_once(tmp_path, network, centre, db, keys_dir,
                                                                    start_gateway) -> None:
    # The same gateway, held after its commit by its after_commit hook, as a real process.
    held = tmp_path / "held"
    script = textwrap.dedent(f"""
        import logging, pathlib, threading, time
        from agent.centre.sms_inbox import KeyFolder
        from agent.centre.store import open_store
        from agent.gateway.sms_gateway import GatewaySettings, SmsGateway
        logging.basicConfig(level=logging.INFO)
        def hold(listing):
            pathlib.Path({str(held)!r}).write_text(repr(listing.to_delete))
            time.sleep(600)
        SmsGateway(GatewaySettings({centre.port!r}, list_every_s=2), open_store({db!r}),
                   KeyFolder({str(keys_dir)!r}), after_commit=hold).run(threading.Event())
    """)
    first = start_gateway(argv=[sys.executable, "-c", script])
    network.submit(UNIT, CENTRE, encode_heartbeat(heartbeat(1043), key(keys_dir)))
    assert wait_until(held.exists, 15, interval=0.05), first.log
    first.process.kill()  # SIGKILL: committed, not deleted
    first.process.wait()
    assert len(centre.sms_messages) == 1, "still on the SIM"
    with open_store(db) as store:
        assert store.heartbeats()["boat_7"].heartbeat.counter == 1043

    second = start_gateway()
    with open_store(db) as store:
        assert wait_until(lambda: not centre.sms_messages, 15, interval=0.1), second.log
        assert store.heartbeats()["boat_7"].heartbeat == heartbeat(1043)
        assert store.refused_sms() == {"replayed": 1}, "read again: replayed, so stored once"
    assert second.stop() == 0


def test_a_modem_that_vanishes_is_reopened_with_backoff(network, centre, db, keys_dir, start_gateway) -> None:
    gateway = start_gateway()
    gateway.wait_log(r"ready: PDU mode")
    centre.vanish()
    gateway.wait_log(r"modem port .* is gone")
    time.sleep(6.5)  # the port stays away this long: a tight loop would try it hundreds of times
    centre.reappear()
    gateway.wait_log(r"ready: PDU mode", count=2, timeout=20)
    network.submit(UNIT, CENTRE, encode_heartbeat(heartbeat(1043), key(keys_dir)))
    stored_and_sim_empty(db, centre, {"boat_7"})
    assert gateway.stop() == 0
    attempts = re.findall(r"cannot be opened \(attempt (\d+)\)", gateway.log)
    waits = [float(s) for s in re.findall(r"again in ([0-9.]+)s", gateway.log)]
    print(f"\nopen attempts while the port was away: {len(attempts)}, waits {waits}")
    assert 3 <= len(attempts) <= 5, gateway.log
    assert waits[:3] == [1.0, 2.0, 4.0], "doubling"


def test_a_database_that_fails_leaves_the_messages_on_the_sim_until_it_works(
        tmp_path, network, centre, db, keys_dir, start_gateway) -> None:
    # Another writer holding the SQLite file (a backup, a stuck script) is a failure the
    # test can switch on and off; a read-only folder is not, when tests run as root.
    import sqlite3

    db = f"sqlite:///{tmp_path}/collector.db"
    gateway = start_gateway()
    gateway.wait_log(r"ready: PDU mode")
    blocker = sqlite3.connect(tmp_path / "collector.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    network.submit(UNIT, CENTRE, encode_heartbeat(heartbeat(1043), key(keys_dir)))
    gateway.wait_log(r"database unavailable, 1 left on the SIM", timeout=60)
    assert len(centre.sms_messages) == 1
    blocker.execute("ROLLBACK")
    blocker.close()
    stored_and_sim_empty(db, centre, {"boat_7"}, timeout=60)
    assert gateway.stop() == 0


# -- gammu-smsd's RunOnReceive ----------------------------------------------------------------------

def sms_inbox(db: str, keys_dir: Path, env: dict[str, str], *ids: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", "sms-inbox", "--db", db, "--keys-dir", str(keys_dir), *ids],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def gammu_env(*messages: tuple[str, str | None]) -> dict[str, str]:
    """What gammu-smsd sets for RunOnReceive (gammu-smsd-run(7))."""
    env = {"SMS_MESSAGES": str(len(messages)), "DECODED_PARTS": "0"}
    for n, (number, text) in enumerate(messages, start=1):
        env[f"SMS_{n}_NUMBER"] = number
        env[f"SMS_{n}_CLASS"] = "-1"
        if text is not None:
            env[f"SMS_{n}_TEXT"] = text
    return env


def test_sms_inbox_files_what_gammu_received(db, keys_dir) -> None:
    genuine = encode_heartbeat(heartbeat(1043), key(keys_dir))
    done = sms_inbox(db, keys_dir, gammu_env((UNIT, genuine)), "IN20260501_100005_00_+6281234500001_00.txt")
    assert done.returncode == 0, done.stderr
    assert "stored 1 heartbeat (boat_7)" in done.stderr
    done = sms_inbox(db, keys_dir, gammu_env((UNIT, genuine), (UNIT, "Kuota habis ✓"), (UNIT, None)))
    assert done.returncode == 0, done.stderr
    with open_store(db) as store:
        assert store.heartbeats()["boat_7"].heartbeat == heartbeat(1043)
        assert store.refused_sms() == {"replayed": 1, "ucs2": 1, "8bit": 1}


def test_sms_inbox_fails_when_the_database_does_not_answer(keys_dir) -> None:
    genuine = encode_heartbeat(heartbeat(1043), key(keys_dir))
    done = sms_inbox(f"postgresql://postgres@127.0.0.1:{free_port()}/blankspot", keys_dir, gammu_env((UNIT, genuine)))
    assert done.returncode == 1, "non-zero: gammu-smsd logs the failure"
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


# -- bad arguments ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["no port", "db folder missing", "db url", "keys dir missing", "list-every",
                                  "inbox without gammu"])
def test_bad_arguments_say_one_line_and_exit_2(tmp_path, keys_dir, case) -> None:
    db = f"sqlite:///{tmp_path}/collector.db"
    args = {
        "no port": ["sms-gateway", "--db", db, "--keys-dir", str(keys_dir)],
        "db folder missing": ["sms-gateway", "--port", "/dev/ttyUSB2", "--db", f"sqlite:///{tmp_path}/no/c.db",
                              "--keys-dir", str(keys_dir)],
        "db url": ["sms-gateway", "--port", "/dev/ttyUSB2", "--db", "mysql://x/y", "--keys-dir", str(keys_dir)],
        "keys dir missing": ["sms-gateway", "--port", "/dev/ttyUSB2", "--db", db, "--keys-dir", str(tmp_path / "nope")],
        "list-every": ["sms-gateway", "--port", "/dev/ttyUSB2", "--db", db, "--keys-dir", str(keys_dir),
                       "--list-every", "0s"],
        "inbox without gammu": ["sms-inbox", "--db", db, "--keys-dir", str(keys_dir)],
    }[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMS_")}
    done = subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**env, "PYTHONPATH": str(ROOT)})
    print(f"\n{case}: {done.stderr.strip()}")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not Path(f"{tmp_path}/collector.db").exists(), "nothing created"
