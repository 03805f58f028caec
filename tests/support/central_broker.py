"""The central broker of deploy/mosquitto/ for tests: its shipped config on test ports, the
accounts the tests create, and a bare MQTT 5 client that records what the broker answers."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.shared.polling import wait_until
from agent.sim.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "mosquitto"
ETC = "/etc/mosquitto/blankspot/"
PASSWORDS = {"unit-1": "river-mahakam-1", "unit-2": "tenggarong-2", "collector": "collect-all-3"}


@dataclass
class CentralBroker:
    broker: LocalBroker
    tls_port: int
    local_port: int
    ca: Path


def shipped_config(folder: Path, tls_port: int, local_port: int, text: str | None = None) -> str:
    """deploy/mosquitto/blankspot.conf (or ``text``, a deployed copy of it) with its files in
    ``folder`` and test ports on loopback."""
    text = (SHIPPED / "blankspot.conf").read_text() if text is None else text
    for old, new in ((ETC, f"{folder}/"),
                     ("\nlistener 8883\n", f"\nlistener {tls_port} 127.0.0.1\n"),
                     ("\nlistener 1883 127.0.0.1\n", f"\nlistener {local_port} 127.0.0.1\n")):
        assert old in text, f"deploy/mosquitto/blankspot.conf no longer has {old.strip()!r}; update this test"
        text = text.replace(old, new)
    return text


class Client:
    """A bare MQTT 5 client: what the broker answers to CONNECT, PUBLISH and SUBSCRIBE."""

    def __init__(self, central: CentralBroker, username: str | None, password: str | None = None,
                 tls: bool = True, client_id: str | None = None) -> None:
        self.port = central.tls_port if tls else central.local_port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{username}-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5)
        if tls:
            self.client.tls_set(ca_certs=str(central.ca))
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: queue.Queue = queue.Queue()
        self.connack_properties: Properties | None = None
        self.session_present: bool | None = None
        self.acks: dict[int, object] = {}
        self.granted: queue.Queue = queue.Queue()
        self.messages: list[tuple[str, bytes]] = []
        self.retained: list[tuple[str, bytes]] = []     # those of the messages that came retained
        self.disconnects: list[str] = []                 # reasons the broker gave for ending the connection
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = lambda c, u: self.connack.put("connection failed")
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.append(str(rc))
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.granted.put(rcs)
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack_properties = properties
        self.session_present = flags.session_present
        self.connack.put(reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self.messages.append((message.topic, message.payload))
        if message.retain:
            self.retained.append((message.topic, message.payload))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acked:
            self.acks[mid] = reason_code
            self._acked.notify_all()

    def connect(self, timeout: float = 10.0, session_expiry: int | None = None) -> str:
        """The CONNACK reason ('Success', 'Bad user name or password', ...).  With
        ``session_expiry`` (seconds) the session is persistent, as a collector's: clean_start
        false, kept that long by the broker while the client is away."""
        if session_expiry is None:
            self.client.connect_async("127.0.0.1", self.port, keepalive=10)
        else:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = session_expiry
            self.client.connect_async("127.0.0.1", self.port, keepalive=10, clean_start=False,
                                      properties=properties)
        self.client.loop_start()
        try:
            result = self.connack.get(timeout=timeout)
        except queue.Empty:
            result = "no CONNACK"
        if str(result) != "Success":
            self.client.disconnect()
            self.client.loop_stop()
        return str(result)

    def publish(self, topic: str, payload: bytes = b"{}", timeout: float = 10.0, retain: bool = False) -> str:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._acked:
            self._acked.wait_for(lambda: info.mid in self.acks, timeout)
        return str(self.acks.get(info.mid, "no PUBACK"))

    def subscribe(self, topic_filter: str, timeout: float = 10.0) -> list[str]:
        self.client.subscribe(topic_filter, qos=1)
        return [str(rc) for rc in self.granted.get(timeout=timeout)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    return wait_until(predicate, timeout, interval=0.02)
