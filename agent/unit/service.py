"""The agent's main loop: take readings on schedule, buffer them, keep the uplink going.

One loop that never blocks: measurements run on their own threads (:mod:`agent.unit.probes`),
the uplink on its own (:mod:`agent.unit.uplink`).  Each turn it buffers the readings that are
ready (and wakes the uplink to send them), shows the state on the panel, tells systemd's
watchdog it is alive, and every few seconds writes the state file ``blankspot status`` reads.
Between turns it sleeps until the next of these is due (the probes say when they next want a
turn), or until a panel button, a power failure or a stop wakes it.

What it writes, it writes sparingly, for the SD card's sake: under systemd the state file
lives in the service's runtime folder (``RuntimeDirectory=``, tmpfs), and the file beside the
buffer is written only when the agent starts and stops, pointing to it; the data used is
counted every ``USAGE_EVERY_S`` in memory and added to the usage ledger every
``LEDGER_EVERY_S`` (and when the agent stops) in one commit on a ledger kept open.

The readings come from a :class:`~agent.unit.probes.Probes`: the unit's devices
(``source.kind = "devices"``), or whatever a factory passed in builds (the simulator's
synthetic source, through ``agent.commands.unit.make_service``).

Stopping (SIGTERM, the panel's long press, power failing): measurements in flight get a few
seconds to finish and are otherwise abandoned; everything already buffered stays buffered;
the uplink publishes ``offline`` and disconnects; with ``drain_timeout`` the backlog first
gets that long to reach the broker.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from agent.unit.buffer import BufferError, ReadingBuffer
from agent.shared.clock import TimeKeeper, boot_id
from agent.unit.config import Config, read_password, read_sms_key
from agent.unit.probes import FieldProbes, Probes, default_latency, default_throughput, position_of
from agent.shared.reading import Event, Reading, format_time, format_time_epoch, part_dict
from agent.unit.uplink import MqttUplink
from agent.shared.watchdog import SystemdNotifier, Watchdog

if TYPE_CHECKING:
    from agent.unit.measure.usage import CounterSample, UsageLedger

log = logging.getLogger(__name__)

STATE_EVERY_S = 2.0
USAGE_EVERY_S = 60.0  # the interface's counters sampled (in memory): a reset loses at most this long
# A power cut loses at most this long of data usage not yet in the ledger (docs/measurement.md).
LEDGER_EVERY_S = 600.0
STOP_WAIT_S = 5.0
# The longest a stop set without wake() goes unnoticed (the command and the demo call wake()).
STOP_NOTICED_S = 1.0


def state_path(config: Config) -> Path:
    """Where the running agent leaves its state for ``blankspot status``."""
    return config.buffer.path.with_name(config.buffer.path.stem + ".state.json")


def live_state_path(config: Config, environ: Mapping[str, str]) -> Path | None:
    """Where the running agent rewrites its state every few seconds when systemd gave it a
    runtime folder (in RAM): the file at :func:`state_path` then only points to it."""
    folder = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(folder) / state_path(config).name if folder else None


# What builds the probes: (config, device id, the service's clock) -> Probes.
ProbesFactory = Callable[[Config, str, TimeKeeper], Probes]


class AgentService:
    def __init__(self, config: Config, *, probes: ProbesFactory | None = None, clock: TimeKeeper | None = None,
                 config_path: str = "<config>", pin_factory: Any = None, latency: Callable | None = None,
                 throughput: Callable | None = None, notifier: SystemdNotifier | None = None,
                 environ: dict[str, str] | None = None) -> None:
        self.config = config
        self.device = config.device_id
        self.clock = clock or TimeKeeper()
        # Before anything is opened: a missing key is a config error (exit status 2).
        sms_key = read_sms_key(config, config_path) if config.source.kind == "devices" else None
        if probes is not None:
            self.probes: Probes = probes(config, self.device, self.clock)
        elif config.source.kind == "devices":
            field_probes = FieldProbes(config, self.device, self.clock, latency=latency or default_latency(config),
                                       throughput=throughput or default_throughput(config))
            field_probes.wake_on_finish(self.wake)
            self.probes = field_probes
        else:
            raise ValueError(f"source.kind {config.source.kind!r} needs its probes passed in: "
                             "build the service with agent.commands.unit.make_service")
        self.buffer = ReadingBuffer(
            config.buffer.path, self.device, max_bytes=config.buffer.max_size,
            keep_delivered=config.buffer.keep_delivered, clock=self.clock,
        )
        self.last: Reading | None = None
        self.taken = 0
        self.turns = 0  # of the main loop: what an idle unit must keep small
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.stop_event: threading.Event | None = None
        self.shutdown_requested: str | None = None  # "button" | "power" after the panel asked
        self.uplink: MqttUplink | None = None
        if config.uplink.enabled:
            self.uplink = MqttUplink(
                config.uplink, self.device, self.buffer, client_id=config.client_id,
                password=read_password(config.uplink, config_path), status=self.status_fields,
            )
        self.notifier = notifier or SystemdNotifier.from_environment(environ)
        self.watchdog = Watchdog.from_environment(self.notifier, environ)
        self.panel = None
        if config.panel.enabled:
            from agent.unit.devices.panel import Panel

            self.panel = Panel.from_config(config.panel, pin_factory, on_tag=self.tag,
                                           on_shutdown=lambda: self._halt("button"),
                                           on_power_fail=lambda: self._halt("power"), clock=self.clock.monotonic)
        self._pending_parts: list[Event] = []
        self._uplink_bytes_counted = 0
        self._ledger: UsageLedger | None = None
        self._next_ledger_write = time.monotonic() + LEDGER_EVERY_S
        self._first_sample: CounterSample | None = None  # this run's first, measured against the ledger's
        self._last_sample: CounterSample | None = None
        self._interface_unrecorded = 0  # bytes the interface moved since its first sample, not yet recorded
        self._live_state = live_state_path(config, os.environ if environ is None else environ)
        self._pointer_written: bool | None = None  # the `running` the file beside the buffer says
        self._parts_lock = threading.Lock()
        self._woken = threading.Event()
        self.sms = None
        if sms_key is not None and isinstance(self.probes, FieldProbes) and self.uplink is not None:
            self.sms = self._sms_duty(self.probes, sms_key)

    def _sms_duty(self, probes: FieldProbes, key: bytes) -> Any:
        """The heartbeat SMS, run by the probes on the modem's channel (agent.unit.sms_duty)."""
        from agent.unit.sms_duty import LinkView, SmsDuty, UnitView, boot_uptime_s

        uplink = self.uplink
        assert uplink is not None

        def link() -> LinkView:
            backlog = self.buffer.backlog()
            idle = uplink.connected and not backlog["pending"] and not backlog["unconfirmed"]
            return LinkView(backlog.get("last_delivered_at"), idle, uplink.stats.last_error)

        def unit() -> UnitView:
            fix = probes.fix()
            reading = probes.last_signal_reading
            signal = reading.part if reading is not None and reading.kind == "signal" else None
            return UnitView(self.clock.now(), None if fix is None else position_of(fix), self.buffer.backlog(),
                            signal, boot_uptime_s(time.monotonic() - self.started))  # type: ignore[arg-type]

        duty = SmsDuty(self.config, key, lambda: probes.modem.connected().channel, link=link, unit=unit,
                       append=self._append_now, wake=self.wake)
        probes.attach_sms(duty)
        return duty

    def _append_now(self, readings: list[Reading]) -> object:
        """Append from another thread, raising BufferError: the caller acts only once they are stored."""
        stored = self.buffer.append_many(readings)
        for reading in stored:
            log.info("event %s: %s", reading.part.type, reading.part.message)  # type: ignore[union-attr]
        if self.uplink is not None:
            self.uplink.wake()
        return stored

    # -- what other parts ask ------------------------------------------------------------

    def status_fields(self) -> dict[str, Any]:
        last = self.last
        if last is None:
            return {}
        return {
            "position": None if last.position is None else asdict(last.position),
            "last_reading": format_time(last.time),
            "signal": part_dict(last.part) if last.kind == "signal" else None,
        }

    def tag(self, event: Event) -> None:
        """Record a tag event (the panel button, or the demo) at the current position."""
        with self._parts_lock:
            self._pending_parts.append(event)
        self.wake()

    def wake(self) -> None:
        """End the loop's sleep now: a tag is waiting, or ``stop`` was just set."""
        self._woken.set()

    def _halt(self, why: str) -> None:
        log.warning("shutdown requested (%s): flushing the buffer, then powering off", why)
        self.shutdown_requested = why
        if self.stop_event is not None:
            self.stop_event.set()
        self.wake()

    # -- readings ------------------------------------------------------------------------

    def store(self, readings: list[Reading]) -> None:
        if not readings:
            return
        try:
            stored = self.buffer.append_many(readings)
        except BufferError as exc:
            log.critical("%d readings NOT stored: %s", len(readings), exc)
            return
        for reading in stored:
            log.debug("buffered seq=%d kind=%s", reading.seq, reading.kind)
            if reading.kind == "event":
                log.info("event %s: %s", reading.part.type, reading.part.message)  # type: ignore[union-attr]
        self.last = stored[-1]
        self.taken += len(stored)
        if self.uplink is not None:
            self.uplink.wake()

    def _events_from_panel(self) -> list[Reading]:
        with self._parts_lock:
            parts, self._pending_parts = self._pending_parts, []
        if not parts:
            return []
        fix = self.probes.fix()
        position = None if fix is None else position_of(fix)
        return [Reading.taken(self.device, self.clock.now(), part, position) for part in parts]

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, drain_timeout: float = 0.0) -> None:
        """Run until ``stop`` is set; then stop the uplink cleanly and close the buffer.

        With ``drain_timeout``, readings still waiting are given that long to reach the
        broker first (when a connection exists), as before a planned power-off.  Whoever sets
        ``stop`` calls :meth:`wake` to be heard at once; otherwise the loop notices within
        ``STOP_NOTICED_S``.
        """
        self.stop_event = stop
        log.info("agent %s starting (%s source): buffer %s, %d readings waiting", self.device,
                 self.config.source.kind, self.config.buffer.path, self.buffer.pending_count())
        if self.uplink is not None:
            self.uplink.start()
        self.probes.start()
        self.watchdog.start()
        self.notifier.ready(f"taking readings, {self.buffer.pending_count()} waiting")
        next_state = 0.0
        next_usage = time.monotonic() + USAGE_EVERY_S
        try:
            while not stop.is_set():
                self.turns += 1
                self.watchdog.heartbeat()
                now = time.monotonic()
                self.store(self.probes.tick() + self._events_from_panel())
                if now >= next_state:
                    self._show_state()
                    next_state = now + STATE_EVERY_S
                if now >= next_usage:
                    self._account_usage()
                    next_usage = now + USAGE_EVERY_S
                self._sleep(min(next_state, next_usage) - time.monotonic())
        finally:
            self._stop(drain_timeout if not self.shutdown_requested else max(drain_timeout, 30.0))

    def _sleep(self, until_due: float) -> None:
        """Sleep until the probes, ``until_due`` seconds or the watchdog want the next turn."""
        wait = min(until_due, self.probes.next_in(), STOP_NOTICED_S)
        if self.watchdog.policy is not None:
            # Heartbeats four times per ping interval keep the pings going with a margin.
            wait = min(wait, self.watchdog.policy.interval / 4)
        self._woken.wait(max(0.0, wait))
        self._woken.clear()

    def _stop(self, drain_timeout: float) -> None:
        self.notifier.stopping("stopping: finishing measurements, keeping the buffer")
        self.probes.stop(STOP_WAIT_S)
        self.store(self.probes.collect())
        if self.uplink is not None:
            if drain_timeout > 0 and self.uplink.connected:
                self.uplink.wait_until(lambda: self.buffer.pending_count() == 0, drain_timeout)
            self.uplink.stop()
        self._account_usage(write=True)
        self._close_ledger()
        self.watchdog.stop()
        self._show_state(running=False)
        if self.panel is not None and not self.shutdown_requested:
            self.panel.close()
        stats = self.buffer.stats()
        self.buffer.close()
        log.info("agent stopped: %d readings taken this run, %d waiting in the buffer", self.taken, stats.pending)
        if self.shutdown_requested:
            self._power_off()

    def _power_off(self) -> None:
        command = shlex.split(self.config.panel.shutdown_command)
        log.warning("running %s", " ".join(command))
        try:
            subprocess.run(command, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("shutdown command failed: %s", exc)

    # -- data usage ------------------------------------------------------------------------

    def _account_usage(self, write: bool = False) -> None:
        """Count the uplink's bytes and the interface's counters; add them to the day's data usage
        in the ledger when ``LEDGER_EVERY_S`` has passed, or when ``write``."""
        from datetime import datetime, timezone

        from agent.unit.measure.usage import INTERFACE_KIND, InterfaceCounters, counter_delta, open_ledger

        # Everything on the link counts, re-sends and the centre's confirmations included.
        sent = self.uplink.stats.bytes_sent + self.uplink.stats.bytes_received if self.uplink is not None else 0
        sample = InterfaceCounters(self.config.budget.interface).read() if self.config.budget.interface else None
        if sample is not None:
            if self._last_sample is None:
                self._first_sample = sample
            else:
                self._interface_unrecorded += counter_delta(self._last_sample, sample)
            self._last_sample = sample
        if not write and time.monotonic() < self._next_ledger_write:
            return
        self._next_ledger_write = time.monotonic() + LEDGER_EVERY_S
        new_bytes = sent - self._uplink_bytes_counted
        if not new_bytes and self._last_sample is None:
            return
        now = datetime.now(timezone.utc)
        try:
            if self._ledger is None:
                self._ledger = open_ledger(self.config)
            with self._ledger.transaction():
                if new_bytes:
                    self._ledger.record("uplink", new_bytes, now)
                if self._first_sample is not None:  # against the ledger's sample, from an earlier run
                    self._ledger.record_counters(self._first_sample, now)
                if self._last_sample is not None:
                    if self._interface_unrecorded:
                        self._ledger.record(INTERFACE_KIND + self._last_sample.interface,
                                            self._interface_unrecorded, now)
                    self._ledger.remember_counters(self._last_sample, now)
        except Exception as exc:  # accounting must never stop the readings
            log.warning("cannot record data usage in %s: %s", self.config.budget.ledger, exc)
            self._close_ledger()
            return
        self._uplink_bytes_counted = sent
        self._first_sample = None
        self._interface_unrecorded = 0

    def _close_ledger(self) -> None:
        if self._ledger is not None:
            try:
                self._ledger.close()
            except Exception as exc:
                log.debug("closing the usage ledger: %s", exc)
            self._ledger = None

    # -- state for the panel and for `blankspot status` -----------------------------------

    def state(self, running: bool = True) -> dict[str, Any]:
        fix = self.probes.fix()
        gps_state = "absent" if self.probes.gps is None else self.probes.gps.state
        signal_reading = self.probes.last_signal_reading
        uplink = "disabled" if self.uplink is None else ("connected" if self.uplink.connected else "connecting")
        return {
            "running": running,
            "pid": os.getpid(),
            "boot_id": boot_id(),
            "device": self.device,
            "source": self.config.source.kind,
            "mode": self.config.schedule.mode if self.config.source.kind == "devices" else None,
            "started": format_time_epoch(self.started_wall),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "written": format_time_epoch(time.time()),
            "clock_source": self.clock.now().source,
            "gps": gps_state,
            "fix": None if fix is None or fix.fix == "none" else {
                "lat": fix.lat, "lon": fix.lon, "fix": fix.fix, "sats": fix.sats, "hdop": fix.hdop,
                "time": None if fix.time is None else format_time(fix.time)},
            "signal": None if signal_reading is None else {"time": format_time(signal_reading.time),
                                                           **part_dict(signal_reading.part)},
            "uplink": uplink,
            "readings_this_run": self.taken,
            # Acknowledgements and confirmations wait in memory for the buffer's next filing
            # (minutes): the file alone would show readings pending after they were delivered.
            "backlog": self.buffer.backlog(),
        }

    def _show_state(self, running: bool = True) -> None:
        try:
            self._publish_state(running)
        except Exception:  # the lights and the state file must never stop the readings
            log.exception("could not show the unit's state")

    def _publish_state(self, running: bool) -> None:
        state = self.state(running)
        if self.panel is not None:
            from agent.unit.devices.panel_policy import PanelState

            used = self.buffer.used_bytes()
            signal = state["signal"]
            self.panel.show(PanelState(
                gps_fix=state["gps"], signal_quality=None if signal is None or signal.get("error") else signal["quality"],
                uplink=state["uplink"], backlog=state["backlog"]["pending"],
                backlog_full=used > 0.9 * self.config.buffer.max_size))
        self.notifier.status(f"{self.taken} readings this run; uplink {state['uplink']}; GPS {state['gps']}")
        if self._live_state is not None and _write_json(self._live_state, state):
            # The card's copy changes only when the agent starts or stops: a rename every
            # couple of seconds is a journal commit and a flush of the card each time.
            if self._pointer_written is not running:
                if _write_json(state_path(self.config), {**state, "live": str(self._live_state)} if running else state):
                    self._pointer_written = running
            return
        _write_json(state_path(self.config), state)
        self._pointer_written = running


def _write_json(path: Path, content: dict[str, Any]) -> bool:
    """Replace ``path`` with ``content`` at once (a reader sees the old file or the new one)."""
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(content, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("cannot write %s: %s", path, exc)
        return False
    return True
