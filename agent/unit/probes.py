"""FieldProbes: the modem, the GPS and the network measurements of a unit, on the schedule.

The main loop (:mod:`agent.unit.service`) knows only the :class:`Probes` interface, which
FieldProbes fulfils and so does the simulator's synthetic source.

The main loop calls :meth:`FieldProbes.tick` a few times a second.  It collects the readings
of measurements that finished (or were abandoned), asks the :class:`~agent.unit.schedule.Scheduler`
what is due, and starts it on its own :class:`~agent.unit.probe_runner.ProbeRunner`.  Every
reading is stamped, and given the GPS position, when its measurement *starts*: a throughput
test that takes a minute on a moving boat belongs where it began.

- A reading is taken with no GPS fix (position null) and with no service: that is the point.
- A modem that does not answer gives a signal reading with ``error`` set (never a blank
  spot), after the modem's recovery ladder (reopen the port, reset through the profile);
  every rung climbed is also recorded as a ``modem_recovery`` event.
- The modem's own GNSS is switched on through its profile after connecting and again after
  every reset (a reset turns it off).
- With ``sms.numbers`` set, an :class:`~agent.unit.sms_duty.SmsDuty` attached by the service
  runs as one more kind ("sms") on its own runner: the SIM's inbox and the heartbeat SMS, on
  the modem's AT channel, whose lock lets signal readings in between its commands.
- What the GPS feed has to tell (a receiver whose dates are corrected for the week rollover)
  is recorded as an event, placed at the current fix.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from agent.shared.clock import Timestamp, TimeKeeper
from agent.unit.config import Config
from agent.unit.devices.gps.fix import Fix
from agent.unit.devices.gps.reader import GpsError, enable_modem_gnss
from agent.unit.devices.modem.device import Modem, ModemUnavailable, open_modem
from agent.unit.devices.modem.errors import ModemError
from agent.unit.devices.modem.profiles import port_for
from agent.unit.devices.modem.signal import error_signal
from agent.unit.gps_feed import GpsFeed
from agent.unit.probe_runner import Outcome, ProbeRunner
from agent.shared.reading import Event, Part, Position, Reading, Signal
from agent.unit.schedule import Scheduler, UnitState

if TYPE_CHECKING:
    from agent.unit.sms_duty import SmsDuty

log = logging.getLogger(__name__)

# On the move, how often the schedule is asked what is due (distance and cell change at any time).
FIELD_TICK_S = 0.2

Measure = Callable[[], Part]


class Probes(Protocol):
    """What the main loop asks of whatever takes the readings."""

    @property
    def gps(self) -> GpsFeed | None:
        """The GPS feed whose state the panel and ``blankspot status`` show; None without a GPS."""

    @property
    def last_signal_reading(self) -> Reading | None:
        """The latest signal reading taken, for the panel and ``blankspot status``."""

    def start(self) -> "Probes":
        """Open what runs in the background (the GPS feed); before the first ``tick``."""

    def tick(self) -> list[Reading]:
        """The readings ready to buffer; called by the loop a few times a second."""

    def next_in(self) -> float:
        """Seconds until it wants the next ``tick``; the loop sleeps no longer than that."""

    def fix(self) -> Fix | None:
        """The current GPS fix, for placing events; None without one."""

    def collect(self) -> list[Reading]:
        """The readings finished since the last ``tick``, starting nothing new (when stopping)."""

    def stop(self, wait: float = 5.0) -> None:
        """Give running measurements up to ``wait`` seconds, then let go of the devices."""


@dataclass(frozen=True)
class Started:
    """What a measurement is stamped with: the moment and the place it began."""

    stamp: Timestamp
    position: Position | None


def position_of(fix: Fix) -> Position | None:
    if fix.fix == "none" or fix.lat is None or fix.lon is None:
        return None
    return Position(fix.lat, fix.lon, fix.alt_m, fix.hdop, fix.sats, fix.speed_kmh, fix.course_deg, fix.fix)


def serving_cell(signal: Signal) -> tuple | None:
    """The serving cell's identity (network, technology, cell, PCI); None without service or an answer."""
    if signal.error is not None or signal.rat in (None, "NONE"):
        return None
    return (signal.mcc, signal.mnc, signal.rat, signal.cell_id, signal.pci)


class FieldModem:
    """The modem as the probes share it: found, connected and GNSS-enabled on first use."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.modem: Modem | None = None
        self._recoveries_reported = 0
        self._failing = False
        self._connecting = threading.Lock()  # the signal and the sms runners both ask for the modem

    def _port(self) -> str:
        port = port_for("at", self.config.modem.port)
        if port is None:
            raise ModemUnavailable("no modem found: no USB serial port matches a profile in firmware_configs/ "
                                   "(plug it in, or set modem.port)")
        return port

    def connected(self) -> Modem:
        with self._connecting:
            if self.modem is None:
                modem = open_modem(self._port(), self.config.modem.model, self.config.modem.baud, recover=True)
                self.modem = modem
                log.info("modem: %s on %s", modem.profile.name if modem.profile else "?", modem.port)
                self._enable_gnss()
            return self.modem

    def _enable_gnss(self) -> None:
        if self.config.gps.source != "modem" or self.modem is None or self.modem.profile is None:
            return
        try:
            enable_modem_gnss(self.modem.channel, self.modem.profile)
        except (GpsError, ModemError) as exc:
            log.warning("modem GNSS: %s", exc)

    def signal(self) -> Signal:
        try:
            modem = self.connected()
        except ModemError as exc:
            return self._reported(error_signal(str(exc)))
        signal = modem.signal()
        if any(r.action == "reset" and r.ok for r in modem.recoveries[self._recoveries_reported:]):
            self._enable_gnss()
        return self._reported(signal)

    def _reported(self, signal: Signal) -> Signal:
        # One log line when the modem stops answering and one when it is back, not one per reading.
        failing = signal.error is not None
        if failing and not self._failing:
            log.warning("modem: %s; signal readings carry this error (never counted as a blank spot) "
                        "until it answers again", signal.error)
        elif self._failing and not failing:
            log.info("modem answers again")
        self._failing = failing
        return signal

    def new_recoveries(self) -> list[Event]:
        if self.modem is None:
            return []
        fresh = self.modem.recoveries[self._recoveries_reported:]
        self._recoveries_reported += len(fresh)
        return [Event("modem_recovery", f"modem {r.action} {'worked' if r.ok else 'FAILED'}: {r.reason}",
                      {"action": r.action, "ok": r.ok, "reason": r.reason[:300]}) for r in fresh]

    def scan(self) -> Event:
        modem = self.connected()
        choices = modem.scan()
        operators = [
            {"operator": c.operator, "mcc": c.mcc, "mnc": c.mnc, "rat": c.rat, "status": c.status}
            for c in choices
        ][:20]
        names = ", ".join(sorted({o["operator"] or f"{o['mcc']}-{o['mnc']}" for o in operators})) or "none"
        return Event("operator_scan", f"{len(operators)} operators visible: {names}", {"operators": operators})

    def close(self) -> None:
        if self.modem is not None:
            self.modem.close()


def open_gps_reader(config: Config) -> tuple[Callable[[], object], str]:
    gps = config.gps
    if gps.source == "gpsd":
        from agent.unit.devices.gps.gpsd import GpsdReader, parse_address

        host, port = parse_address(gps.gpsd)
        return (lambda: GpsdReader(host, port, max_age_s=gps.max_age)), f"gpsd at {host}:{port}"
    from agent.unit.devices.gps.reader import GpsPortGone, GpsReader

    def nmea_port() -> str:
        port = port_for("nmea", gps.port)
        if port is None:
            raise GpsPortGone("no modem NMEA port found by USB id (set gps.port)")
        return port

    return (lambda: GpsReader(nmea_port(), gps.baud, max_age_s=gps.max_age)), gps.port or "the modem's NMEA port"


class FieldProbes:
    """Schedules and runs the measurements; ``tick`` returns the readings ready to buffer."""

    def __init__(self, config: Config, device: str, keeper: TimeKeeper, *,
                 latency: Measure | None = None, throughput: Measure | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.device = device
        self.keeper = keeper
        self.clock = clock
        self.modem = FieldModem(config)
        self.gps: GpsFeed | None = None
        if config.gps.source != "none":
            opener, describe = open_gps_reader(config)
            self.gps = GpsFeed(opener, describe, keeper, max_age_s=config.gps.max_age)
        self.scheduler = Scheduler(config.schedule)
        timeout = config.schedule.probe_timeout
        measures: dict[str, Measure] = {"signal": self.modem.signal, "scan": self.modem.scan}
        if latency is not None:
            measures["latency"] = latency
        if throughput is not None:
            measures["throughput"] = throughput
        self.runners = {kind: ProbeRunner(kind, fn, timeout, clock) for kind, fn in measures.items()}
        self.started_at = clock()
        self.last_signal_reading: Reading | None = None
        self.sms: SmsDuty | None = None

    def attach_sms(self, duty: "SmsDuty") -> None:
        """Run ``duty`` as the kind "sms" whenever it says it has something to do."""
        self.sms = duty
        runner = ProbeRunner("sms", duty.run, self.config.schedule.probe_timeout, self.clock)
        runner.on_done = self.runners["signal"].on_done
        self.runners["sms"] = runner

    def start(self) -> "FieldProbes":
        if self.gps is not None:
            self.gps.start()
        return self

    def fix(self) -> Fix | None:
        return None if self.gps is None else self.gps.current()

    def unit_state(self) -> UnitState:
        last = None if self.last_signal_reading is None else self.last_signal_reading.part
        assert last is None or isinstance(last, Signal)
        return UnitState(
            now=self.clock() - self.started_at,
            distance_m=self.gps.distance_m() if self.gps else 0.0,
            speed_kmh=self.gps.speed_kmh() if self.gps else None,
            cell=None if last is None else serving_cell(last),
            quality=None if last is None or last.error else last.quality,
        )

    def collect(self) -> list[Reading]:
        """Readings of the measurements that finished or were abandoned since the last call."""
        readings: list[Reading] = []
        for runner in self.runners.values():
            outcome = runner.poll()
            if outcome is not None:
                readings.extend(self._readings(outcome))
        readings.extend(self._taken(Started(self.keeper.now(), None), e) for e in self.modem.new_recoveries())
        if self.gps is not None:
            fix = self.gps.current()
            readings.extend(self._taken(Started(self.keeper.now(), position_of(fix)), e)
                            for e in self.gps.new_events())
        return readings

    def tick(self) -> list[Reading]:
        """``collect``, then start what the schedule says is due."""
        readings = self.collect()
        state = self.unit_state()
        for kind in self.scheduler.due(state):
            runner = self.runners.get(kind)
            if runner is None or runner.busy:
                continue
            fix = self.fix()
            runner.start(Started(self.keeper.now(), None if fix is None else position_of(fix)))
            self.scheduler.started(kind, state)
        if self.sms is not None and not self.runners["sms"].busy and self.sms.due_in() <= 0:
            self.runners["sms"].start(Started(self.keeper.now(), None))
        return readings

    def next_in(self) -> float:
        """A fixed probe sleeps until its next measurement is due, or one running is given up;
        one finishing wakes the loop (:meth:`wake_on_finish`).  On the move what is due depends
        on the distance travelled and the serving cell: the schedule is asked a few times a
        second."""
        idle = [kind for kind, runner in self.runners.items() if not runner.busy and kind != "sms"]
        due = self.scheduler.next_in(self.unit_state(), idle)
        if due is None and self.config.schedule.mode == "mobile":
            return FIELD_TICK_S
        sms = None if self.sms is None or self.runners["sms"].busy else self.sms.due_in()
        waits = [w for w in [due, sms, *(r.abandon_in() for r in self.runners.values())] if w is not None]
        return min(waits) if waits else FIELD_TICK_S

    def wake_on_finish(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (on the measurement's thread) whenever a measurement ends."""
        for runner in self.runners.values():
            runner.on_done = wake
        if self.sms is not None:
            self.sms.wake = wake

    def _taken(self, started: Started, part: Part) -> Reading:
        return Reading.taken(self.device, started.stamp, part, started.position)

    def _readings(self, outcome: Outcome) -> list[Reading]:
        started: Started = outcome.context
        if outcome.timed_out:
            return [self._taken(started, Event(
                "probe_timeout", f"{outcome.kind} measurement abandoned after {outcome.seconds:.0f} s",
                {"kind": outcome.kind, "seconds": round(outcome.seconds, 1)}))]
        if outcome.kind == "sms" and outcome.error is None:
            return []  # the duty recorded its own events, before deleting what it read from the SIM
        if outcome.error is not None or outcome.result is None:
            return [self._taken(started, Event("probe_failed", f"{outcome.kind}: {outcome.error}"[:500],
                                               {"kind": outcome.kind}))]
        part = outcome.result
        reading = self._taken(started, part)
        if isinstance(part, Signal):
            self.last_signal_reading = reading
        return [reading]

    def stop(self, wait: float = 5.0) -> None:
        """Let running measurements finish for up to ``wait`` seconds, then let go of the devices."""
        deadline = self.clock() + wait
        for runner in self.runners.values():
            runner.wait(max(0.0, deadline - self.clock()))
        if self.gps is not None:
            self.gps.stop()
        if not any(r.busy for r in self.runners.values()):
            self.modem.close()
        else:  # a stuck call still holds the port; the process exit closes it
            log.warning("stopping with a measurement still running; it is abandoned")


def default_latency(config: Config) -> Measure:
    """The latency measurement of ``[latency]``; the broker's host and port when no target is set."""
    from agent.unit.measure.latency import measure_latency

    lat = config.latency
    target = lat.target or f"{config.uplink.host}:{config.uplink.port}"
    method = lat.method if lat.target else "tcp"
    interface = lat.interface or None
    return lambda: measure_latency(target, method=method, count=lat.count, interface=interface)


def default_throughput(config: Config) -> Measure | None:
    """The throughput test of ``[throughput]``, kept to ``[budget]``; None when none is configured."""
    t = config.throughput
    if t.backend == "http" and not t.url:
        return None

    def measure() -> Part:
        from agent.unit.measure.throughput import ThroughputPlan, run_throughput
        from agent.unit.measure.usage import budget_from_config, open_ledger

        plan = ThroughputPlan(backend=t.backend, target=t.url or None, cap_bytes=config.budget.throughput_cap,
                              interface=config.latency.interface or None,
                              count_interface=config.budget.interface or None)
        # The ledger is opened per test: SQLite connections stay in the thread that made them.
        with open_ledger(config) as ledger:
            return run_throughput(plan, ledger, budget_from_config(config))

    return measure
