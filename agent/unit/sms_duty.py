"""SmsDuty: the heartbeat SMS and the SIM's inbox, on the modem's AT channel.

It runs as its own measurement kind ("sms") on a :class:`~agent.unit.probe_runner.ProbeRunner`
thread of :class:`~agent.unit.probes.FieldProbes`, so the main loop never waits for it; the
AT channel's lock lets a signal reading in between its commands, and holds it out only for
one ``AT+CMGS`` (at most :data:`~agent.unit.devices.modem.sms.SEND_TIMEOUT_S`).

Each run it reads the SIM's messages when ``+CMTI`` said one arrived or ``sms.check_interval``
has passed, and sends a heartbeat when :func:`agent.unit.sms_heartbeat.decide` says so.
What happens is an event reading, appended to the buffer from this thread: a received
message is deleted from the SIM only after the buffer took its event.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from agent.shared.clock import Timestamp
from agent.shared.heartbeat import EPOCH, MAX_COUNT, MAX_SEQ, Heartbeat, encode_heartbeat
from agent.shared.reading import Event, Position, Reading, Signal, parse_time
from agent.shared.sms_pdu import SmsPduError, decode_deliver
from agent.unit.config import Config
from agent.unit.devices.modem.at import AtChannel
from agent.unit.devices.modem.errors import AtCommandError, AtParseError, ModemError
from agent.unit.devices.modem.sms import (
    SendResult, announce_new_messages, delete_message, list_messages, send_text, use_pdu_mode,
)
from agent.unit.sms_heartbeat import (
    Decision, HeartbeatFile, Ledger, Outage, SmsPolicy, decide, heartbeat_path, is_quota_notice, level_dbm,
    next_counter, rat_word, reason,
)

log = logging.getLogger(__name__)

# How often the service's figures are looked at for a confirmation, at most (the main loop asks more often).
OBSERVE_EVERY_S = 1.0


@dataclass(frozen=True)
class LinkView:
    """What the service says of its data link, cheap to ask every second."""

    confirmed: str | None  # when the centre last confirmed a batch in this run (any value that changes)
    idle: bool  # connected with nothing waiting and nothing unconfirmed: the data is up, just quiet
    error: str | None  # the uplink's last failure


@dataclass(frozen=True)
class UnitView:
    """What a heartbeat says, as the service knows it when the heartbeat is written."""

    stamp: Timestamp
    position: Position | None
    backlog: dict[str, Any]  # ReadingBuffer.backlog()
    signal: Signal | None
    uptime_s: int


Append = Callable[[list[Reading]], object]  # appends to the buffer or raises; returns when stored


def policy_of(config: Config) -> SmsPolicy:
    sms = config.sms
    return SmsPolicy(tuple(sms.numbers), sms.after, sms.every, sms.max_per_day, sms.max_per_month)


class SmsDuty:
    def __init__(self, config: Config, key: bytes, channel: Callable[[], AtChannel], *, link: Callable[[], LinkView],
                 unit: Callable[[], UnitView], append: Append, clock: Callable[[], float] = time.monotonic,
                 wake: Callable[[], None] | None = None) -> None:
        self.config = config
        self.device = config.device_id
        self.key = key
        self.policy = policy_of(config)
        self.channel = channel
        self.link = link
        self.unit = unit
        self.append = append
        self.clock = clock
        self.wake = wake
        self.file = HeartbeatFile(heartbeat_path(Path(config.buffer.path)))
        self.zone = ZoneInfo(config.budget.timezone)
        now = clock()
        self.outage = Outage(down_since=now)
        self._confirmed: str | None = None
        self._observed = -OBSERVE_EVERY_S
        self._next_inbox = now  # the SIM may hold messages from before the start
        self._inbox_flag = threading.Event()
        self._quota_seen: float | None = None
        self._set_up: AtChannel | None = None
        self._lock = threading.Lock()  # the main loop's due_in and the runner's run

    # -- when ------------------------------------------------------------------------------

    def observe(self) -> None:
        """Follow the centre's confirmations: each one ends an outage."""
        now = self.clock()
        if now - self._observed < OBSERVE_EVERY_S:
            return
        self._observed = now
        view = self.link()
        with self._lock:
            if view.idle or view.confirmed != self._confirmed:
                if view.confirmed != self._confirmed and self.outage.failures + (self.outage.last_sent is not None) > 0:
                    log.info("the centre confirms readings again: heartbeats stop")
                self._confirmed = view.confirmed
                self.outage = Outage(down_since=now)

    def due_in(self) -> float:
        """Seconds until :meth:`run` has something to do."""
        self.observe()
        now = self.clock()
        if self._inbox_flag.is_set():
            return 0.0
        with self._lock:
            decision = decide(self.policy, self.outage, self.file.read(), now, self._day())
        heartbeat = {"wait": decision.wait_s, "off": float("inf")}.get(decision.action, 0.0)
        return max(0.0, min(heartbeat, self._next_inbox - now))

    def on_urc(self, line: str) -> None:
        """``+CMTI``: a message was stored; read the SIM at the next run."""
        if line.upper().startswith("+CMTI:"):
            self._inbox_flag.set()
            if self.wake is not None:
                self.wake()

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        """Read the inbox if due, send a heartbeat if due; the number of events recorded."""
        self.observe()
        try:
            channel = self._ready()
        except ModemError as exc:
            log.debug("SMS: no modem: %s", exc)
            self._next_inbox = self.clock() + self.config.sms.check_interval
            return 0
        recorded = 0
        now = self.clock()
        if self._inbox_flag.is_set() or now >= self._next_inbox:
            self._inbox_flag.clear()
            self._next_inbox = now + self.config.sms.check_interval
            try:
                recorded += self._read_inbox(channel)
            except ModemError as exc:
                log.warning("SMS: cannot read the SIM's messages: %s", exc)
        with self._lock:
            ledger = self.file.read()
            decision = decide(self.policy, self.outage, ledger, self.clock(), self._day())
        if decision.action == "send":
            recorded += self._send(channel, ledger)
        elif decision.action == "skip":
            recorded += self._skip(decision, ledger)
        return recorded

    def _ready(self) -> AtChannel:
        channel = self.channel()
        if self._set_up is not channel or not channel.is_open:  # a new modem (the agent connected, or reconnected)
            use_pdu_mode(channel)
            try:
                announce_new_messages(channel)
            except AtCommandError as exc:
                log.info("SMS: the modem refused AT+CNMI=2,1 (%s); the SIM is read every %.0f s", exc,
                         self.config.sms.check_interval)
            channel.on_urc = self.on_urc
            self._set_up = channel
        return channel

    def _day(self) -> str:
        return datetime.now(self.zone).date().isoformat()

    # -- incoming ------------------------------------------------------------------------------

    def _read_inbox(self, channel: AtChannel) -> int:
        try:
            stored = list_messages(channel)
        except AtParseError as exc:
            log.warning("SMS: cannot read the SIM's messages: %s", exc)
            return 0
        if not stored:
            return 0
        stamp = self.unit().stamp
        readings = []
        for message in stored:
            try:
                sms = decode_deliver(message.pdu)
            except SmsPduError as exc:
                event = Event("sms_received", f"SMS at index {message.index} unreadable: {exc}"[:300],
                              {"index": message.index, "error": str(exc)[:300], "pdu": message.pdu[:400]})
            else:
                event = Event("sms_received", f"SMS from {sms.sender}: {sms.text}"[:300],
                              {"sender": sms.sender, "text": sms.text, "sent_at": sms.sent_at.isoformat()})
                if sms.sender not in self.policy.numbers and is_quota_notice(sms.text):
                    log.warning("SMS from %s says the data quota ran out: %s", sms.sender, sms.text)
                    self._quota_seen = self.clock()
            readings.append(Reading.taken(self.device, stamp, event))
        try:
            self.append(readings)
        except Exception as exc:  # kept on the SIM: read again at the next check
            log.error("SMS: %d received messages not recorded (%s); they stay on the SIM", len(readings), exc)
            return 0
        for message in stored:
            try:
                delete_message(channel, message.index)
            except AtCommandError as exc:
                log.warning("SMS: cannot delete message %d from the SIM: %s", message.index, exc)
        return len(readings)

    # -- the heartbeat ----------------------------------------------------------------------------

    def _send(self, channel: AtChannel, ledger: Ledger) -> int:
        view = self.unit()
        link = self.link()
        counter = next_counter(ledger, view.stamp.time if view.stamp.trusted else None)
        ledger.counter = counter
        ledger = ledger.on(self._day())
        try:
            self.file.write(ledger)  # before sending: a counter is never used twice
        except OSError as exc:
            return self._failed_round(view, [Event("sms_failed", f"heartbeat not sent: cannot keep its counter: {exc}",
                                                   {"counter": counter, "kind": "counter_file", "error": str(exc)})])
        why = reason(uplink_error=link.error, signal=view.signal,
                     quota_notice_age_s=None if self._quota_seen is None else self.clock() - self._quota_seen)
        text = encode_heartbeat(self._heartbeat(view, counter, why), self.key)
        sent, events = [], []
        for number in self.policy.numbers:
            try:
                result = send_text(channel, number, text)
            except ModemError as exc:  # the port went away, or AT+CMGF was refused
                result = SendResult(False, meaning=str(exc)[:200], kind="modem")
            if result.ok:
                sent.append(number)
                continue
            log.warning("SMS heartbeat %d to %s failed: %s %s (%s)", counter, number, result.code, result.meaning,
                        result.kind)
            events.append(Event("sms_failed", f"heartbeat to {number} refused: {result.meaning}"[:300],
                                {"number": number, "counter": counter, "code": result.code,
                                 "meaning": result.meaning[:200], "kind": result.kind}))
        if not sent:
            return self._failed_round(view, events)
        with self._lock:
            self.outage.last_sent = self.outage.last_tried = self.clock()
            self.outage.failures = 0
        ledger.sent_day += 1
        ledger.sent_month += 1
        try:
            self.file.write(ledger)
        except OSError as exc:
            log.error("SMS: cannot count the heartbeat sent in %s: %s", self.file.path, exc)
        log.info("SMS heartbeat %d sent to %s (%s)", counter, ", ".join(sent), why)
        events.append(Event("sms_heartbeat_sent", f"heartbeat {counter} sent to {', '.join(sent)} ({why})",
                            {"counter": counter, "numbers": sent, "reason": why, "text": text}))
        return self._record(view, events)

    def _failed_round(self, view: UnitView, events: list[Event]) -> int:
        with self._lock:
            self.outage.failures += 1
            self.outage.last_tried = self.clock()
        return self._record(view, events)

    def _skip(self, decision: Decision, ledger: Ledger) -> int:
        day = self._day()
        with self._lock:
            self.outage.last_tried = self.clock()
            self.outage.failures = 0
        if ledger.skip_said == day:
            return 0
        ledger = ledger.on(day)
        ledger.skip_said = day
        try:
            self.file.write(ledger)
        except OSError as exc:
            log.error("SMS: cannot write %s: %s", self.file.path, exc)
        limit = self.policy.max_per_day if decision.why == "max_per_day" else self.policy.max_per_month
        log.warning("SMS heartbeat skipped: %s (%d) reached", decision.why, limit)
        return self._record(self.unit(), [Event(
            "sms_skipped", f"heartbeat skipped: sms.{decision.why} ({limit}) reached",
            {"why": decision.why, "limit": limit, "sent_day": ledger.sent_day, "sent_month": ledger.sent_month})])

    def _record(self, view: UnitView, events: list[Event]) -> int:
        readings = [Reading.taken(self.device, view.stamp, event, view.position) for event in events]
        try:
            self.append(readings)
        except Exception as exc:
            log.error("SMS: %d events not recorded: %s", len(readings), exc)
            return 0
        return len(readings)

    def _heartbeat(self, view: UnitView, counter: int, why: str) -> Heartbeat:
        signal = view.signal if view.signal is not None and view.signal.error is None else None
        operator = None
        if signal is not None and signal.mcc and signal.mnc:
            operator = signal.mcc + signal.mnc
        oldest = view.backlog.get("oldest_pending_time")
        return Heartbeat(
            device=self.device, counter=min(counter, MAX_COUNT), time=_in_range(view.stamp.time) or EPOCH,
            lat=None if view.position is None else view.position.lat,
            lon=None if view.position is None else view.position.lon,
            backlog=min(int(view.backlog.get("pending") or 0), MAX_COUNT),
            oldest=_in_range(parse_time(oldest)) if isinstance(oldest, str) else None,
            last_seq=min(max(int(view.backlog.get("last_seq") or 0), 0), MAX_SEQ),
            rat=rat_word(signal.rat) if signal is not None else None,
            operator=operator if operator and operator.isdigit() and len(operator) in (5, 6) else None,
            level_dbm=level_dbm(signal) if signal is not None else None,
            uptime_s=min(max(view.uptime_s, 0), MAX_COUNT), reason=why,
        )


def _in_range(moment: datetime) -> datetime | None:
    """A time the message can carry (2020..2099), or None: a Pi without a clock says 1970."""
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return utc if EPOCH <= utc.replace(microsecond=0) < datetime(2100, 1, 1, tzinfo=timezone.utc) else None


def boot_uptime_s(fallback: float) -> int:
    """Seconds since the unit booted (``/proc/uptime``), else ``fallback``."""
    try:
        return int(float(Path("/proc/uptime").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return int(fallback)
