"""The agent's main loop: take readings on schedule, buffer them, keep the uplink going."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from typing import Any

from agent.buffer import BufferError, ReadingBuffer
from agent.clock import Clock, TimeKeeper
from agent.config import Config, read_password
from agent.reading import Reading
from agent.sim.coverage import mahakam_scenario
from agent.sim.route import mahakam_route
from agent.sim.synthetic import SyntheticSource
from agent.uplink import MqttUplink

log = logging.getLogger(__name__)


def build_source(config: Config, device: str, clock: Clock) -> SyntheticSource:
    # Only the synthetic source exists so far; config validation restricts source.kind.
    return SyntheticSource(device, mahakam_route(), mahakam_scenario(), config.source.speed_kmh, clock)


class AgentService:
    def __init__(self, config: Config, *, clock: Clock | None = None, config_path: str = "<config>") -> None:
        self.config = config
        self.device = config.device_id
        self.clock = clock or TimeKeeper()
        self.buffer = ReadingBuffer(
            config.buffer.path, self.device, max_bytes=config.buffer.max_size,
            keep_delivered=config.buffer.keep_delivered, clock=self.clock,
        )
        self.source = build_source(config, self.device, self.clock)
        self.last: Reading | None = None
        self.taken = 0
        self.uplink: MqttUplink | None = None
        if config.uplink.enabled:
            self.uplink = MqttUplink(
                config.uplink, self.device, self.buffer, client_id=config.client_id,
                password=read_password(config.uplink, config_path), status=self.status_fields,
            )

    def status_fields(self) -> dict[str, Any]:
        last = self.last
        if last is None:
            return {}
        return {
            "position": None if last.position is None else asdict(last.position),
            "last_reading": last.to_dict()["time"],
            "signal": last.to_dict().get("signal"),
        }

    def take_reading(self) -> Reading | None:
        reading = self.source.read()
        try:
            stored = self.buffer.append(reading)
        except BufferError as exc:
            log.critical("reading NOT stored: %s", exc)
            return None
        self.last = stored
        self.taken += 1
        log.debug("buffered seq=%d kind=%s", stored.seq, stored.kind)
        return stored

    def run(self, stop: threading.Event, drain_timeout: float = 0.0) -> None:
        """Run until ``stop`` is set; then stop the uplink cleanly and close the buffer.

        With ``drain_timeout``, readings still waiting are given that long to reach the
        broker first (when a connection exists), as before a planned power-off.
        """
        log.info("agent %s starting: buffer %s, %d readings waiting", self.device, self.config.buffer.path,
                 self.buffer.pending_count())
        if self.uplink is not None:
            self.uplink.start()
        interval = self.config.source.interval
        due = time.monotonic()
        try:
            while not stop.is_set():
                self.take_reading()
                due += interval
                now = time.monotonic()
                if due < now - interval:  # fell far behind (suspend, slow disk): do not burst
                    due = now
                stop.wait(max(0.0, due - now))
        finally:
            if self.uplink is not None:
                if drain_timeout > 0 and self.uplink.connected:
                    self.uplink.wait_until(lambda: self.buffer.pending_count() == 0, drain_timeout)
                self.uplink.stop()
            stats = self.buffer.stats()
            self.buffer.close()
            log.info("agent stopped: %d readings taken this run, %d waiting in the buffer", self.taken, stats.pending)
