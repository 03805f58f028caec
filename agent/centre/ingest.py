"""The collector's MQTT subscriber: every unit's batches and statuses into the store, once.

- Subscribes with an MQTT 5 shared subscription, ``$share/<group>/<prefix>/+/readings`` and
  ``.../+/status``, so the broker spreads the messages over every collector of the group.
- Persistent session (``clean_start`` false, a session expiry) and manual acknowledgement:
  a message is acknowledged (PUBACK) only after the transaction holding all of it has
  committed.  A collector killed at any moment loses nothing; the broker sends again what
  it had not acknowledged, and the store's key ``(device, seq)`` turns that into counted
  duplicates.
- Every payload is decoded with :mod:`agent.shared.protocol` (strict reading validation, device of
  topic, batch and readings alike).  A payload that fails is not an error of the collector:
  it goes to the quarantine table with its first bytes and the reason, and is acknowledged.

After each commit the collector tells each unit what the database now holds: a retained QoS 1
:class:`~agent.shared.protocol.Confirmation` on ``<prefix>/<device>/confirm``, computed in the same
transaction from the seq ledger (:mod:`agent.centre.ledger`).  To keep it cheap on a
metered link, a unit gets at most one every ``confirm_interval_s``, sooner when its status
shows it is behind or when a hole opens; the unit sends again what the confirmation says is
missing.  A reading dated outside the plausible window (:func:`implausible_time`) is
quarantined on its own, the rest of its batch stored, and its seq told to the unit as settled.

Two threads: paho's network thread decodes each message as it arrives (:func:`classify`)
and queues it; the writer thread (the caller of :meth:`Collector.run`) takes whatever has
queued, commits it in one transaction and acknowledges it.  The broker sends at most
``inflight`` unacknowledged messages (MQTT 5 Receive Maximum), which bounds the queue, and
a transaction takes in what arrived while the previous one committed.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.centre.choices import COLLECTOR_GROUP, COLLECTOR_INFLIGHT, COLLECTOR_MESSAGES_PER_COMMIT
from agent.centre.store.base import (
    QUARANTINE_RAW_BYTES, Quarantined, Store, StoreDataError, StoreError, UnitStatus, Work, now_utc,
)
from agent.shared import seq_ranges
from agent.shared.mqtt import new_client, secure
from agent.centre.ledger import LedgerChange
from agent.shared.protocol import (
    DEFAULT_PREFIX, Confirmation, PayloadError, confirm_topic, decode_batch, decode_status, encode_confirmation,
    split_topic,
)
from agent.shared.reading import Reading, ReadingError, format_time, parse_time
from agent.shared.watchdog import SystemdNotifier, Watchdog

log = logging.getLogger(__name__)

DEFAULT_GROUP = COLLECTOR_GROUP
MAX_STATUS_BYTES = 65_536
_NOT_IN_GROUP = ("/", "+", "#")


# -- what a message is -----------------------------------------------------------------

# The plausible window of a reading's time (docs/collector.md): a Raspberry Pi without a
# clock starts at 1970, and a GPS or NTP time before 2020 is a receiver's week-rollover bug.
EARLIEST_UNSYNCED = datetime(1970, 1, 1, tzinfo=timezone.utc)
EARLIEST_TRUSTED = datetime(2020, 1, 1, tzinfo=timezone.utc)
LATEST_AHEAD = timedelta(days=1)
# A unit that has this many readings stored since its last confirmation is draining a
# backlog: it is told within seconds rather than at the next interval (one confirmation per
# this many readings costs it well under 0.1 % of the bytes).
DRAIN_CONFIRM_READINGS = 1000
# A unit's status that reports an older rev this long after the collector published a newer
# one means the unit did not get it; a shorter while is a status crossing it on the way.
STATUS_CROSSING_S = 30.0
# Seconds without arrivals before the collector brings the kept tracks up to date: long
# enough that a unit pushing its backlog in many messages is not interrupted at each one.
QUIET_S = 2.0


def implausible_time(reading: Reading, received: datetime) -> str | None:
    """Why a reading's time cannot be stored as it is, or None."""
    try:
        written = format_time(reading.time)
        if parse_time(written) != reading.time.replace(microsecond=reading.time.microsecond // 1000 * 1000):
            return f"time {written} does not read back as written"
    except (ReadingError, ValueError, OverflowError) as exc:
        return f"time cannot be written and read back: {exc}"
    earliest = EARLIEST_UNSYNCED if reading.time_source == "unsynced" else EARLIEST_TRUSTED
    if reading.time < earliest:
        return (f"time {written} ({reading.time_source}) is before {format_time(earliest)[:10]}, "
                "outside the plausible window")
    if reading.time > received + LATEST_AHEAD:
        return f"time {written} is more than a day after it was received, outside the plausible window"
    return None


@dataclass(frozen=True)
class BatchMessage:
    device: str
    readings: list[Reading]
    refused: tuple[tuple[Reading, str], ...] = ()  # readings quarantined on their own, with why


@dataclass(frozen=True)
class StatusMessage:
    device: str
    state: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class RefusedMessage:
    topic: str
    raw: bytes
    reason: str


Inbound = BatchMessage | StatusMessage | RefusedMessage


def classify(prefix: str, topic: str, payload: bytes, content_type: str | None = None) -> Inbound:
    """Decode one MQTT message; never raises: what does not follow the protocol is refused.

    ``content_type`` is the MQTT 5 property; a batch without one is known by its first byte.
    """
    try:
        device, what = split_topic(prefix, topic)
        if what == "readings":
            readings = decode_batch(payload, device, content_type)
            received = now_utc()
            refused = [(r, why) for r in readings if (why := implausible_time(r, received))]
            if refused:
                keep = [r for r in readings if not any(r is bad for bad, _ in refused)]
                return BatchMessage(device, keep, tuple(refused))
            return BatchMessage(device, readings)
        if len(payload) > MAX_STATUS_BYTES:
            raise PayloadError(f"status payload of {len(payload)} bytes exceeds {MAX_STATUS_BYTES}")
        status = decode_status(payload, device)
        return StatusMessage(device, status["state"], status)
    except PayloadError as exc:
        return RefusedMessage(topic, payload, str(exc))
    except RecursionError:
        return RefusedMessage(topic, payload, "not JSON: nested too deeply")
    except Exception as exc:  # a hostile payload must never stop the collector
        return RefusedMessage(topic, payload, f"cannot decode: {type(exc).__name__}: {exc}")


# -- settings --------------------------------------------------------------------------

@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]``, ``mqtts://host[:port]`` (TLS), or ``host[:port]``; ``ValueError``."""
    text = url.strip()
    if "://" not in text:
        text = "mqtt://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"broker {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"broker {url!r}: expected mqtt://host[:port] or mqtts://host[:port] "
                         "(give the login with --username and --password-file)")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


def default_client_id() -> str:
    """Stable across restarts on one machine, which is what keeps the broker's session."""
    return f"blankspot-collector-{socket.gethostname()}"[:128]


@dataclass(frozen=True)
class CollectorSettings:
    broker: BrokerAddress
    client_id: str
    group: str = DEFAULT_GROUP
    prefix: str = DEFAULT_PREFIX
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    inflight: int = COLLECTOR_INFLIGHT
    group_messages: int = COLLECTOR_MESSAGES_PER_COMMIT
    group_readings: int = 20_000  # most readings in one transaction
    stats_interval_s: float = 60.0
    confirm_interval_s: float = 300.0  # most one confirmation per unit this often, unless it is behind

    def topics(self) -> list[str]:
        return [f"$share/{self.group}/{self.prefix}/+/readings", f"$share/{self.group}/{self.prefix}/+/status"]

    def check(self) -> None:
        """``ValueError`` for settings no broker would accept."""
        if not self.group or any(c in self.group for c in _NOT_IN_GROUP):
            raise ValueError(f"group {self.group!r}: must be non-empty without '/', '+' or '#'")
        if not self.prefix or any(c in self.prefix for c in ("+", "#")) or self.prefix.startswith("$") \
                or self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"prefix {self.prefix!r}: expected topic levels such as {DEFAULT_PREFIX!r}")
        if not self.client_id:
            raise ValueError("client id must not be empty")
        if not 1 <= self.inflight <= 65535:
            raise ValueError(f"inflight {self.inflight}: expected 1 to 65535")
        if self.group_messages < 1 or self.group_readings < 1:
            raise ValueError("max messages per commit must be at least 1")


@dataclass
class CollectorStats:
    """Counted by this process since it started (the database keeps the totals)."""

    messages: int = 0
    batches: int = 0
    readings_inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    statuses: int = 0
    commits: int = 0
    commit_failures: int = 0
    acks_dropped: int = 0  # committed, but the connection they came on was gone: the broker sends them again
    confirmations: int = 0  # published to units
    holes_opened: int = 0  # seqs found missing at the centre
    holes_filled: int = 0
    readings_refused: int = 0  # quarantined on their own (implausible time)

    def minus(self, other: "CollectorStats") -> "CollectorStats":
        return CollectorStats(**{k: getattr(self, k) - getattr(other, k) for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class _Arrival:
    connection: int  # which connection it came on: an acknowledgement is valid only there
    mid: int
    qos: int
    inbound: Inbound
    topic: str
    head: bytes  # the payload's first bytes, for the quarantine should the database refuse it
    size: int
    received: datetime


@dataclass
class _Group:
    arrivals: list[_Arrival] = field(default_factory=list)
    readings: int = 0

    def work(self) -> Work:
        work = Work()
        for arrival in self.arrivals:
            item = arrival.inbound
            if isinstance(item, BatchMessage):
                work.readings.extend(item.readings)
                work.batches += 1
                for reading, why in item.refused:
                    work.refused.append((reading.device, reading.seq))  # type: ignore[arg-type]
                    raw = reading.to_json().encode("utf-8", "backslashreplace")
                    work.quarantine.append(Quarantined(arrival.topic, raw, f"seq {reading.seq}: {why}", len(raw)))
            elif isinstance(item, StatusMessage):
                work.units.append(UnitStatus(item.device, item.state, arrival.received, item.payload))
            else:
                work.quarantine.append(Quarantined(item.topic, item.raw, item.reason, arrival.size))
        return work


class Collector:
    """Subscribe and store until ``stop`` is set; see the module docstring."""

    def __init__(self, settings: CollectorSettings, store: Store, *, notifier: SystemdNotifier | None = None,
                 watchdog: Watchdog | None = None) -> None:
        settings.check()
        self.settings = settings
        self.store = store
        # Under systemd (Type=notify): READY=1 once subscribed; the watchdog is fed while the
        # writer loop turns, so a collector stuck in a commit is restarted.
        self.notifier = notifier or SystemdNotifier(None)
        self.watchdog = watchdog or Watchdog(self.notifier, None)
        self.stats = CollectorStats()
        self.subscribed = threading.Event()
        self._queue: queue.Queue[_Arrival] = queue.Queue()
        self._lock = threading.Lock()
        self._connection = 0
        self._client: mqtt.Client | None = None
        self._unit_states: dict[str, str] = {}
        self._stop = threading.Event()
        self._quarantine_logged = 0
        self._last_stats = CollectorStats()
        self._next_stats = 0.0
        self._confirm_due: dict[str, tuple[Confirmation, float]] = {}  # device -> latest, when to publish
        self._confirm_sent: dict[str, tuple[int, float]] = {}  # device -> rev, when published
        self._unconfirmed_readings: dict[str, int] = {}  # device -> readings stored since its last confirmation
        self._last_stored: float | None = None  # when readings were last stored, until the kept tracks follow them

    # -- running -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Receive and store until ``stop`` is set, then commit what arrived and disconnect."""
        client = self._make_client()
        self._client = client
        s = self.settings
        log.info("collecting from %s as %r, shared group %r, topics %s; storing into %s",
                 s.broker, s.client_id, s.group, ", ".join(s.topics()), self.store.url)
        if (notice := self.store.figures_notice()) is not None:
            log.warning("%s", notice)
        client.connect_async(s.broker.host, s.broker.port, keepalive=s.keepalive_s,
                             clean_start=False, properties=self._connect_properties())
        client.loop_start()
        self.watchdog.start()
        self._next_stats = time.monotonic() + s.stats_interval_s
        try:
            while not stop.is_set():
                self.watchdog.heartbeat()
                self._write_once(timeout=0.2, stop=stop)
                self._publish_confirmations(time.monotonic())
                self._refresh_kept_when_quiet(time.monotonic())
                self._log_stats()
            # Finish what has arrived, so it is acknowledged now rather than sent again later.
            self.notifier.stopping("storing what has arrived, then disconnecting")
            self._write_once(timeout=0, stop=None)
            self._publish_confirmations(float("inf"))
        finally:
            self._stop.set()
            client.disconnect()
            client.loop_stop()
            self._client = None
            self.watchdog.stop()
            log.info("stopped: %s", self._summary(self.stats))

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        # MQTT 5 for shared subscriptions; acknowledged by hand once committed.
        client = new_client(s.client_id, protocol="5", manual_ack=True)
        # A CA or a client certificate given means TLS, even with an mqtt:// broker.
        secure(client, username=s.username, password=s.password,
               tls=s.broker.tls or s.tls_ca is not None or s.tls_cert is not None,
               ca_file=s.tls_ca, cert_file=s.tls_cert, key_file=s.tls_key)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        properties.ReceiveMaximum = self.settings.inflight
        return properties

    # -- paho callbacks (paho's network thread) -------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s (check --username, --password-file and the "
                      "broker's ACL)", self.settings.broker, reason_code)
            return
        with self._lock:
            self._connection += 1
        log.info("connected to %s (%s)", self.settings.broker,
                 "session resumed" if flags.session_present else "new session")
        options = SubscribeOptions(qos=1)
        client.subscribe([(topic, options) for topic in self.settings.topics()])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning("cannot reach broker %s; retrying", self.settings.broker)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self._connection += 1  # acknowledgements of what came before must not go out on the next connection
        if not self._stop.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self.settings.broker, reason_code)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        failed = [(t, rc) for t, rc in zip(self.settings.topics(), reason_codes) if rc.is_failure]
        for topic, rc in failed:
            log.error("broker refused the subscription to %s: %s (it must speak MQTT 5 with shared "
                      "subscriptions, and its ACL must let this collector read the topic)", topic, rc)
        if not failed:
            log.info("subscribed to %s", ", ".join(self.settings.topics()))
            self.subscribed.set()
            self.notifier.ready(f"subscribed to {self.settings.broker}; storing into {self.store.url}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers refuse such topics; never let one stop the thread
            topic = repr(message._topic)
        payload = bytes(message.payload)
        content_type = getattr(message.properties, "ContentType", None)
        inbound = classify(self.settings.prefix, topic, payload, content_type)
        head = payload[:QUARANTINE_RAW_BYTES]  # a 10 MB payload is not held in memory
        if isinstance(inbound, RefusedMessage):
            inbound = RefusedMessage(inbound.topic, head, inbound.reason)
        self._queue.put(_Arrival(self._connection, message.mid, message.qos, inbound, topic,
                                 head, len(payload), now_utc()))

    # -- the writer (the thread that called run) ------------------------------------------

    def _take_group(self, timeout: float) -> _Group | None:
        try:
            first = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        group = _Group([first], _readings(first))
        while len(group.arrivals) < self.settings.group_messages and group.readings < self.settings.group_readings:
            try:
                arrival = self._queue.get_nowait()
            except queue.Empty:
                break
            group.arrivals.append(arrival)
            group.readings += _readings(arrival)
        return group

    def _write_once(self, timeout: float, stop: threading.Event | None) -> None:
        group = self._take_group(timeout)
        if group is None:
            return
        self._store(group, stop)

    def _store(self, group: _Group, stop: threading.Event | None) -> bool:
        """Commit the group and acknowledge it; retries while the database is unavailable."""
        delay = 0.5
        while True:
            try:
                result = self.store.commit(group.work(), self.settings.client_id)
                break
            except StoreDataError as exc:
                if len(group.arrivals) > 1:
                    # One message holds something the database refuses: find it, keep the rest.
                    log.warning("database refused a group of %d messages (%s); storing them one by one",
                                len(group.arrivals), exc)
                    for arrival in group.arrivals:
                        self._store(_Group([arrival], _readings(arrival)), stop)
                    return True
                arrival = group.arrivals[0]
                group = _Group([_refused(arrival, f"database refused it: {exc}")])
            except StoreError as exc:
                self.stats.commit_failures += 1
                log.error("cannot store %d messages: %s; retrying in %.1fs (they stay unacknowledged)",
                          len(group.arrivals), exc, delay)
                self.notifier.status(f"database unavailable, retrying: {exc}")
                if stop is None or stop.wait(delay):
                    return False
                self.watchdog.heartbeat()  # waiting for the database is not a hang
                delay = min(delay * 2, 30.0)
        self._acknowledge(group)
        self._account(group, result.inserted, result.duplicates)
        if result.inserted:
            self._last_stored = time.monotonic()
        self._follow(result.changes)
        return True

    def _refresh_kept_when_quiet(self, now: float) -> None:
        """Once nothing has arrived for :data:`QUIET_S`, the kept tracks, segments and tags
        follow the readings stored, one unit per turn of the loop (so the watchdog is fed
        and arrivals wait little), then the figures of each day and month, one per turn; map,
        report and serve find them ready."""
        if self._last_stored is None or now - self._last_stored < QUIET_S or not self._queue.empty():
            return
        try:
            if not self.store.refresh_tracks(units=1) and not self.store.refresh_periods(1):
                self._last_stored = None
        except StoreError as exc:
            log.warning("cannot bring the kept tracks or the figures of days and months up to date: %s"
                        " (map and report will read the readings and keys instead)", exc)
            self._last_stored = None

    # -- confirmations ----------------------------------------------------------------------

    def _follow(self, changes: list[LedgerChange]) -> None:
        """Log holes that opened or filled, and plan each unit's next confirmation."""
        now = time.monotonic()
        for change in changes:
            if change.opened:
                self.stats.holes_opened += seq_ranges.count(change.opened)
                log.info("unit %s: readings seq %s missing at the centre (hole opened; the unit is told to send "
                         "them again)", change.device, seq_ranges.text(change.opened))
            if change.filled:
                self.stats.holes_filled += seq_ranges.count(change.filled)
                log.info("unit %s: hole filled, seq %s", change.device, seq_ranges.text(change.filled))
            sent = self._confirm_sent.get(change.device)
            backlog = self._unconfirmed_readings.get(change.device, 0) + change.readings
            self._unconfirmed_readings[change.device] = backlog
            # The unit missed what this collector published (a broker that restarted without
            # persistence has no retained copy for it); a status crossing a confirmation on
            # the way, a moment after it was published, does not count.
            missed = (change.unit_rev is not None and sent is not None and change.unit_rev < sent[0]
                      and now - sent[1] > STATUS_CROSSING_S)
            if not (change.changed or change.restored or missed):
                continue
            if change.restored or missed or sent is None:
                due = now
            elif change.opened or change.filled or backlog >= DRAIN_CONFIRM_READINGS:
                # A hole that opened or closed, or a unit draining a backlog: tell it soon.
                due = now + min(2.0, self.settings.confirm_interval_s)
            else:
                due = sent[1] + self.settings.confirm_interval_s
            previous = self._confirm_due.get(change.device)
            if previous is not None:
                due = min(due, previous[1])
            self._confirm_due[change.device] = (change.confirmation, due)

    def _publish_confirmations(self, now: float) -> None:
        client = self._client
        if client is None or not self._confirm_due:
            return
        for device, (confirmation, due) in list(self._confirm_due.items()):
            if due > now:
                continue
            topic = confirm_topic(self.settings.prefix, device)
            info = client.publish(topic, encode_confirmation(confirmation), qos=1, retain=True)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                continue  # not connected: stays due, published after the reconnection
            del self._confirm_due[device]
            self._confirm_sent[device] = (confirmation.rev, time.monotonic())
            self._unconfirmed_readings[device] = 0
            self.stats.confirmations += 1
            log.debug("confirmed to %s: rev %d, up to %d, top %d, %d holes", device, confirmation.rev,
                      confirmation.upto, confirmation.top, len(confirmation.holes))

    def _acknowledge(self, group: _Group) -> None:
        client = self._client
        with self._lock:
            for arrival in group.arrivals:
                if arrival.connection != self._connection or client is None:
                    self.stats.acks_dropped += 1
                    continue
                if arrival.qos > 0:
                    rc = client.ack(arrival.mid, arrival.qos)
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        self.stats.acks_dropped += 1

    def _account(self, group: _Group, inserted: int, duplicates: int) -> None:
        stats = self.stats
        stats.commits += 1
        stats.messages += len(group.arrivals)
        stats.readings_inserted += inserted
        stats.duplicates += duplicates
        for arrival in group.arrivals:
            item = arrival.inbound
            if isinstance(item, BatchMessage):
                stats.batches += 1
                stats.readings_refused += len(item.refused)
                stats.quarantined += len(item.refused)
                for reading, why in item.refused:
                    self._quarantine_logged += 1
                    if self._quarantine_logged <= 20:
                        log.warning("quarantined reading %s#%s: %s", reading.device, reading.seq, why)
            elif isinstance(item, StatusMessage):
                stats.statuses += 1
                if self._unit_states.get(item.device) != item.state:
                    reason = item.payload.get("reason")
                    log.info("unit %s is %s%s", item.device, item.state, f" ({reason})" if isinstance(reason, str) else "")
                    self._unit_states[item.device] = item.state
            else:
                stats.quarantined += 1
                self._quarantine_logged += 1
                if self._quarantine_logged <= 20:
                    log.warning("quarantined a message on %s (%d bytes): %s", item.topic, arrival.size, item.reason[:300])
                elif self._quarantine_logged == 21:
                    log.warning("more messages quarantined; the next ones are counted in the periodic summary")
        log.debug("committed %d messages: %d readings new, %d duplicates", len(group.arrivals), inserted, duplicates)

    def _log_stats(self) -> None:
        now = time.monotonic()
        if now < self._next_stats:
            return
        self._next_stats = now + self.settings.stats_interval_s
        delta = self.stats.minus(self._last_stats)
        self._last_stats = CollectorStats(**vars(self.stats))
        self._quarantine_logged = 0
        log.log(logging.INFO if delta.messages else logging.DEBUG, "last %.0fs: %s; waiting to be stored: %d messages",
                self.settings.stats_interval_s, self._summary(delta), self._queue.qsize())
        self.notifier.status(f"last {self.settings.stats_interval_s:.0f}s: {self._summary(delta)}")

    @staticmethod
    def _summary(stats: CollectorStats) -> str:
        return (f"{stats.readings_inserted} readings stored from {stats.batches} batches, "
                f"{stats.duplicates} duplicates, {stats.quarantined} quarantined, {stats.statuses} statuses, "
                f"{stats.holes_opened} seqs found missing, {stats.holes_filled} filled, "
                f"{stats.confirmations} confirmations")


def _readings(arrival: _Arrival) -> int:
    return len(arrival.inbound.readings) if isinstance(arrival.inbound, BatchMessage) else 0


def _refused(arrival: _Arrival, reason: str) -> _Arrival:
    return replace(arrival, inbound=RefusedMessage(arrival.topic, arrival.head, reason))
