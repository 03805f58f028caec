"""The demo's village probe: a fixed unit whose data quota runs out, alive by SMS.

``blankspot demo --village`` runs it beside the boat trip (:mod:`agent.sim.demo`):

- a probe left at the kantor desa of Sebulu (``desa-sebulu``), on the edge of the Tenggarong
  cell, with a simulated Quectel EC25 whose SIM has a number on a simulated SMS network;
- its uplink reaches the demo's broker through a link of its own, so it delivers readings at
  first; a fifth of the way into the trip the operator (TELKOMSEL) sends "Kuota internet Anda
  telah habis ..." and the link stops, as a prepaid SIM's data does;
- the agent keeps measuring into its buffer and, with ``[sms]`` set to the defaults scaled
  as the trip scales time (``after`` one hour, ``every`` six hours), sends its signed
  heartbeat to the centre's number;
- the centre's SMS gateway (:class:`agent.gateway.sms_gateway.SmsGateway`) reads a second
  simulated modem on the same network and files the heartbeat into the collector's database,
  with the probe's key (``new_key``) in a keys folder in the demo's work folder.

``blankspot units`` on the demo's database then says the probe is alive by SMS, with its
backlog and "data down: quota exhausted"; so does the fleet panel of ``blankspot serve``.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from agent.centre.fleet import fleet, write_units
from agent.centre.store.base import Store
from agent.shared.heartbeat import new_key
from agent.sim.broker import LocalBroker
from agent.sim.demo_units import unit_toml
from agent.sim.link import LinkProxy
from agent.sim.modem import SimulatedModem
from agent.sim.scenario import Radio, mahakam_scenario
from agent.sim.sms_network import SmsNetwork
from agent.unit.buffer import read_readings
from agent.unit.config import parse_config
from agent.unit.service import AgentService

VILLAGE_DEVICE = "desa-sebulu"
PROBE_NUMBER = "+6281234500101"
CENTRE_NUMBER = "+6281234500001"
OPERATOR = "TELKOMSEL"
QUOTA_NOTICE = "Kuota internet Anda telah habis. Beli paket data di *363# atau aplikasi MyTelkomsel."
QUOTA_AT = 0.2  # of the trip: when the quota runs out
# The unit's defaults (sms.after 1 h, sms.every 6 h, the SIM read every 5 min), in trip time.
AFTER_S, EVERY_S, CHECK_S = 3600.0, 21600.0, 300.0
# A rooftop antenna at the kantor desa reaches Tenggarong's cell, weakly.
TENGGARONG = next(t for t in mahakam_scenario().towers if t.name == "Tenggarong")
VILLAGE_RADIO = Radio(TENGGARONG, rsrp_dbm=-112.0, rsrq_db=-15.0, sinr_db=1.0, rssi_dbm=-84.0)
# Where the package is: the gateway's process finds it there, installed or not.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class VillageProbe:
    """The probe, its SMS network and the centre's gateway; :meth:`poll` from the demo's loop."""

    device = VILLAGE_DEVICE
    number = PROBE_NUMBER
    centre_number = CENTRE_NUMBER
    operator = OPERATOR

    def __init__(self, work: Path, broker: LocalBroker, db: Path, trip_seconds: float, time_scale: float) -> None:
        self.work = work / "village"
        self.work.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.trip_seconds = trip_seconds
        self.time_scale = time_scale
        self.quota_at = trip_seconds * QUOTA_AT
        self.quota_gone = False
        self.after = self._scaled(AFTER_S)
        self.every = self._scaled(EVERY_S)
        self.filed_counters: set[int] = set()  # the probe's heartbeats the centre filed (the latest each look)
        self._looked = 0.0
        self._stack = ExitStack()
        self._stop = threading.Event()
        try:
            self._start(broker)
        except BaseException:
            self.close()
            raise

    def _start(self, broker: LocalBroker) -> None:
        stack = self._stack
        self.network = stack.enter_context(SmsNetwork(delay_s=0.2))
        self.modem = SimulatedModem.for_profile("quectel-ec25", radio=lambda: VILLAGE_RADIO,
                                                workdir=self.work / "devices", time_scale=0.05,
                                                number=PROBE_NUMBER, sms_network=self.network)
        stack.callback(self.modem.close)
        self.centre_modem = SimulatedModem.for_profile("quectel-ec25", radio=lambda: VILLAGE_RADIO,
                                                       workdir=self.work / "centre-modem", time_scale=0.05,
                                                       number=CENTRE_NUMBER, sms_network=self.network)
        stack.callback(self.centre_modem.close)
        self.link = LinkProxy(broker.port).start()
        stack.callback(self.link.close)
        # The probe's key, and the centre's copy in its keys folder.
        key = new_key()
        self.key_file = self.work / "sms.key"
        self.key_file.write_text(key + "\n", encoding="ascii")
        self.keys_dir = self.work / "heartbeat-keys"
        self.keys_dir.mkdir(exist_ok=True)
        (self.keys_dir / f"{VILLAGE_DEVICE}.key").write_text(key + "\n", encoding="ascii")
        # The centre's gateway: blankspot sms-gateway on the centre's modem, as a site runs it.
        self.gateway_log = self.work / "sms-gateway.log"
        with self.gateway_log.open("w") as log:
            self.gateway = subprocess.Popen(
                [sys.executable, "-m", "agent", "sms-gateway", "--port", self.centre_modem.port, "--db", str(self.db),
                 "--keys-dir", str(self.keys_dir), "--list-every", "1s", "--retry-max", "2s"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_SOURCE_ROOT,
                                                                             os.environ.get("PYTHONPATH")]))))
        stack.callback(self._stop_gateway)
        # The probe's agent.
        self.config = self._config(broker)
        self.service = AgentService(self.config, config_path="demo village config")
        self._agent_thread = threading.Thread(target=self.service.run, args=(self._stop, 30.0),
                                              name="village-agent", daemon=True)
        self._agent_thread.start()
        stack.callback(self._agent_thread.join, 45)
        stack.callback(self.service.wake)
        stack.callback(self._stop.set)

    def _stop_gateway(self) -> None:
        if self.gateway.poll() is None:
            self.gateway.terminate()
        try:
            self.gateway.wait(15)
        except subprocess.TimeoutExpired:
            self.gateway.kill()
            self.gateway.wait()

    def _scaled(self, seconds: float) -> str:
        return f"{max(1.0, seconds / self.time_scale):.2f}s"

    def _config(self, broker: LocalBroker):
        work = self.work
        return parse_config(
            unit_toml(VILLAGE_DEVICE, work, self.link.port, broker, self.modem.port) + f"""
            [gps]
            source = "none"
            [schedule]
            mode = "fixed"
            signal_interval = "{max(0.2, self.trip_seconds / 60):.2f}s"
            latency_interval = "{self.trip_seconds:.1f}s"
            scan_interval = "0s"
            [latency]
            method = "tcp"
            count = 3
            target = "127.0.0.1:{self.link.port}"
            [sms]
            numbers = ["{CENTRE_NUMBER}"]
            after = "{self.after}"
            every = "{self.every}"
            check_interval = "{self._scaled(CHECK_S)}"
            key_file = "{self.key_file}"
            """,
            "demo village config",
        )

    def poll(self, elapsed: float, store: Store) -> list[str]:
        """What happened to the probe since the last call, as the demo's lines."""
        news = []
        if not self.quota_gone and elapsed >= self.quota_at:
            self.quota_gone = True
            self.network.send_from_operator(OPERATOR, QUOTA_NOTICE, to=PROBE_NUMBER)
            self.link.set_up(False)  # the operator stops the SIM's data
            news.append(f"  {elapsed:5.1f}s  village probe {VILLAGE_DEVICE}: SMS from {OPERATOR} "
                        f"\"{QUOTA_NOTICE[:31]}\"; its mobile data stops")
        if time.monotonic() - self._looked >= 0.5:
            self._looked = time.monotonic()
            kept = store.heartbeats().get(VILLAGE_DEVICE)
            if kept is not None and kept.heartbeat.counter not in self.filed_counters:
                self.filed_counters.add(kept.heartbeat.counter)
                hb = kept.heartbeat
                news.append(f"  {elapsed:5.1f}s  village probe {VILLAGE_DEVICE}: heartbeat SMS from {kept.sender} "
                            f"filed by the centre's SMS gateway: backlog {hb.backlog}, data down: "
                            f"{hb.reason.replace('_', ' ')}")
        return news

    def gateway_running(self) -> bool:
        return self.gateway.poll() is None

    def wait_filed(self, store: Store, timeout: float) -> bool:
        """Wait up to ``timeout`` for the centre to have filed a heartbeat of the probe."""
        deadline = time.monotonic() + timeout
        while True:
            kept = store.heartbeats().get(VILLAGE_DEVICE)
            if kept is not None:
                self.filed_counters.add(kept.heartbeat.counter)
                return True
            if time.monotonic() >= deadline or not self.gateway_running():
                return False
            time.sleep(0.2)

    def heartbeats_sent(self) -> int:
        """The heartbeats the probe's agent recorded as sent (its event readings)."""
        return sum(1 for stored in read_readings(self.config.buffer.path)
                   if stored.kind == "event" and json.loads(stored.body)["event"]["type"] == "sms_heartbeat_sent")

    def close(self) -> None:
        self._stop.set()
        self._stack.close()


def units_text(store: Store) -> str:
    """``blankspot units`` of the demo's database."""
    text = io.StringIO()
    write_units(fleet(store), text, store.refused_sms())
    return text.getvalue()
