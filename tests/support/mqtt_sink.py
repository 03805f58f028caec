"""ReadingSink: a separate MQTT subscriber that records every reading and status it sees.

It stands where the collector will stand: subscribed to every unit's topics with a
persistent session (so a broker with persistence keeps its messages across restarts),
decoding batches with the protocol module and counting duplicates per device.
"""
from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.shared.polling import wait_until
from agent.shared.protocol import decode_batch, split_topic


class ReadingSink:
    def __init__(self, port: int, prefix: str = "blankspot/v1", client_id: str = "test-sink",
                 persistent: bool = True, host: str = "127.0.0.1") -> None:
        self.prefix = prefix
        self.arrivals: dict[str, list[int]] = defaultdict(list)
        self.received: dict[str, list] = defaultdict(list)  # the readings themselves, in arrival order
        self.statuses: list[dict] = []
        self.bad: list[str] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect_async(host, port, keepalive=10)

    def start(self, timeout: float = 10.0) -> "ReadingSink":
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            raise RuntimeError("test subscriber could not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(f"{self.prefix}/+/readings", 1), (f"{self.prefix}/+/status", 1)])

    def _on_message(self, client, userdata, message) -> None:
        try:
            device, what = split_topic(self.prefix, message.topic)
            if what == "readings":
                readings = decode_batch(message.payload, device)
                with self._lock:
                    self.arrivals[device].extend(r.seq for r in readings)
                    self.received[device].extend(readings)
            else:
                with self._lock:
                    self.statuses.append(json.loads(message.payload))
        except Exception as exc:  # recorded, and asserted empty by tests
            self.bad.append(f"{message.topic}: {exc}")

    # -- what was seen ---------------------------------------------------------------

    def seqs(self, device: str) -> list[int]:
        with self._lock:
            return list(self.arrivals[device])

    def readings(self, device: str) -> list:
        with self._lock:
            return list(self.received[device])

    def unique(self, device: str) -> set[int]:
        return set(self.seqs(device))

    def duplicates(self, device: str) -> int:
        counts = Counter(self.seqs(device))
        return sum(n - 1 for n in counts.values())

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return wait_until(predicate, timeout)

    def wait_for_seqs(self, device: str, expected: set[int], timeout: float) -> bool:
        return self.wait_for(lambda: expected <= self.unique(device), timeout)
