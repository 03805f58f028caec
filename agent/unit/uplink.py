"""MqttUplink: drains the reading buffer to the broker whenever a connection exists.

One thread owns the paho client and does everything network-side in order: connect,
publish the retained ``online`` status, publish batches (as many readings, and as many
unacknowledged, as :mod:`agent.unit.link_plan` finds the link carries, within
``batch_size`` and ``max_inflight``), and hand each batch back to the buffer as delivered only when the broker's
PUBACK for it arrives with a success code.  Because every paho callback runs inside the
client's ``loop_read``, ``loop_write`` or ``loop_misc`` on this same thread, there are no
races between publishing a batch and its acknowledgement.

The thread sleeps in ``poll`` on the client's socket and a wake-up pipe of its own until the
socket can be read (or written, when paho has bytes waiting), until :meth:`MqttUplink.wake`
(new readings in the buffer) or :meth:`MqttUplink.stop`, or until the next thing it must do on
time: a keepalive check, the status message, a reconnect attempt, the end of a hold, a batch
gone stale, a re-send the delivery tracker will ask for.  An idle connected unit wakes a few
times a minute, and a reading buffered while connected is published at once.

Delivery ends in the centre's database, not at the broker.  The thread also subscribes to
the unit's own ``confirm`` topic; each confirmation a collector publishes there is applied to
the buffer (confirmed readings may be pruned later; confirmed readings the centre turns out
not to hold are sent again) and to a :class:`DeliveryTracker`, which decides which
acknowledged readings were lost on the way and must be sent again.  A PUBACK with reason
0x10 (*No matching subscribers*: no collector is subscribed, for example just after the
broker restarted) is not a delivery: the batch is held and retried with backoff.

A buffer that cannot be written (disk full, card gone) holds the uplink back with the same
backoff: nothing is sent that could not be marked, so a persistent fault never turns into the
same backlog sent again and again.

A connection is one paho client.  When it is lost the batches it carried go back to the
buffer and a fresh client is made for the next attempt, so the buffer is the only place an
undelivered reading lives (paho's in-memory queue would be lost by a crash anyway).
Reconnection waits double from ``backoff_min`` to ``backoff_max`` with jitter, so a fleet
coming back after a broker outage does not reconnect in lock-step.
"""
from __future__ import annotations

import logging
import os
import random
import select
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.shared import seq_ranges
from agent.shared.backoff import Backoff
from agent.shared.installed import doc
from agent.shared.mqtt import new_client, secure
from agent.unit.buffer import Batch, BufferError, ReadingBuffer
from agent.unit.config import UplinkConfig
from agent.unit.config_files import check_tls_files
from agent.unit.delivery import DeliveryTracker
from agent.unit.link_plan import LinkMeter, plan_sending
from agent.unit.tcp_info import read_tcp_info
from agent.shared.polling import wait_until
from agent.shared.protocol import (
    CONTENT_TYPES, Confirmation, PayloadError, confirm_topic, decode_confirmation, encode_for_wire, encode_status, readings_topic, status_topic,
)
from agent.shared.reading import format_time

log = logging.getLogger(__name__)

# Well under the collector's limit (agent.shared.protocol.MAX_BATCH_BYTES) and kind to slow links.
MAX_MESSAGE_BYTES = 1_000_000
NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass
class UplinkStats:
    connects: int = 0
    connection_failures: int = 0
    disconnects: int = 0
    batches_sent: int = 0
    batches_acked: int = 0
    readings_acked: int = 0
    batches_refused: int = 0
    batches_returned: int = 0
    bytes_sent: int = 0  # MQTT PUBLISH packets of readings handed to the connection, for the data budget
    bytes_received: int = 0  # confirmations received, for the data budget
    batches_unrouted: int = 0  # PUBACK 0x10: the broker had no subscriber for them
    confirmations: int = 0  # confirmations applied
    readings_confirmed: int = 0
    readings_resent: int = 0  # acknowledged readings sent again because the centre lacked them
    last_delivery: str | None = None
    last_error: str | None = None
    wakeups: int = 0  # times the thread's wait ended: what an idle unit must keep small


class MqttUplink:
    """Push buffered readings to the broker; see the module docstring."""

    def __init__(
        self,
        config: UplinkConfig,
        device: str,
        buffer: ReadingBuffer,
        *,
        client_id: str,
        password: str | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.device = device
        self.buffer = buffer
        self.client_id = client_id
        self.password = password
        self.status_fields = status or (lambda: {})
        self.stats = UplinkStats()
        self._backoff = Backoff(config.backoff_min, config.backoff_max, rng or random.Random())
        self._hold = Backoff(config.backoff_min, config.backoff_max, rng or random.Random())
        # Unexpected errors back off on their own: a reconnect must not reset their wait.
        self._trouble = Backoff(config.backoff_min, config.backoff_max, rng or random.Random())
        self._readings_topic = readings_topic(config.topic_prefix, device)
        self._status_topic = status_topic(config.topic_prefix, device)
        self._confirm_topic = confirm_topic(config.topic_prefix, device)
        self.tracker = DeliveryTracker(config.confirm_grace, config.confirm_timeout, now=time.monotonic())
        if config.confirm:
            self.tracker.acknowledged(buffer.awaiting_confirmation(), time.monotonic())
        self._unmarked: list[Batch] = []  # acknowledged, but the buffer could not record it yet
        self._pending_confirm: Confirmation | None = None  # a confirmation the buffer could not record yet
        self.buffer_fault: str | None = None
        self._unrouted_logged = False
        # After a refusal or a 0x10, one batch at a time until the broker takes one again: a
        # full window of refusals would cost a metered SIM eight batches per attempt.
        self._probing = False
        self._client: mqtt.Client | None = None
        # The content type of each encoding; 3.1.1 has no properties, and there the payload's
        # first byte says the encoding.
        self._batch_properties: dict[str, Properties] = {}
        # Fixed header, topic, packet id, properties: a handful of bytes beside the payload.
        self._publish_overhead = len(self._readings_topic) + 8
        if config.protocol == "5":
            for encoding, content_type in CONTENT_TYPES.items():
                properties = self._batch_properties[encoding] = Properties(PacketTypes.PUBLISH)
                properties.ContentType = content_type
            self._publish_overhead += len(CONTENT_TYPES[config.encoding]) + 3
        self._ready = False
        self._connect_started = 0.0
        self._next_attempt = 0.0
        self._hold_until = 0.0
        self._next_status = 0.0
        self._online_since: str | None = None
        self._inflight: dict[int, tuple[Batch, float]] = {}
        self._status_mids: set[int] = set()
        # What the link does, and the batch size and window chosen from it (agent.unit.link_plan).
        self._meter = LinkMeter()
        self.plan = plan_sending(None, config.batch_size, config.max_inflight)
        self._next_plan = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure_streak_logged = False
        # The pipe's ends exist while the thread runs; the lock keeps wake() from writing to a
        # descriptor number the thread has just closed (and the system may have reused).
        self._wake_lock = threading.Lock()
        self._wake_r: int | None = None
        self._wake_w: int | None = None

    # -- public --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ready

    def start(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the buffer now (readings were just stored), not at the next deadline."""
        with self._wake_lock:
            if self._wake_w is None:
                return
            try:
                os.write(self._wake_w, b"!")
            except BlockingIOError:  # the pipe is full: the thread has wake-ups enough to read
                pass

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (when connected), disconnect cleanly and end the thread."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout + 2)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return wait_until(predicate, timeout)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # a fault of the agent: keep trying, never die silently, never spin
                log.exception("uplink error")
                self._lost(f"uplink error: {exc}")
                self._next_attempt = max(self._next_attempt, time.monotonic() + self._trouble.next_delay())
        try:
            self._shutdown()
        except Exception:
            log.exception("uplink error while stopping")
        finally:
            with self._wake_lock:
                for fd in (self._wake_r, self._wake_w):
                    if fd is not None:
                        os.close(fd)
                self._wake_r = self._wake_w = None

    def _step(self) -> None:
        now = time.monotonic()
        if self._client is None:
            if now < self._next_attempt:
                self._wait(None, self._next_attempt - now)
                return
            self._connect()
            return
        rc = self._io(self._client, self._next_deadline(now) - now)
        if self._client is None:  # a callback dropped the connection
            return
        now = time.monotonic()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            if not self._ready:
                # With TLS 1.3 a rejected client certificate only shows as a closed connection.
                hint = " (TLS: check ca_file, cert_file and key_file against the broker's)" if self.config.tls else ""
                self._lost(f"broker {self.config.host}:{self.config.port} closed the connection before accepting it{hint}")
            else:
                self._lost(f"connection lost ({mqtt.error_string(rc)})")
            return
        if not self._ready:
            if now - self._connect_started > self.config.connect_timeout:
                self._lost(f"no answer from the broker within {self.config.connect_timeout:g}s")
            return
        if now >= self._next_status:
            self._publish_status()
        self._check_stale(now)
        if now >= self._hold_until and self._mark_leftovers():
            if self.config.confirm:
                self._resend(self.tracker.due(now), "the centre confirmed nothing for a while: probing with")
            self._pump()

    # -- waiting -------------------------------------------------------------------------

    def _next_deadline(self, now: float) -> float:
        """When this connection next needs the thread, whatever the socket and wake() do."""
        if not self._ready:
            return self._connect_started + self.config.connect_timeout + 0.01
        # paho's keepalive runs in loop_misc; a quarter of it late still pings well inside the
        # broker's 1.5 times keepalive.
        times = [now + self.config.keepalive / 4, self._next_status]
        if self._inflight:
            times.append(min(sent for _batch, sent in self._inflight.values()) + self._stale_after + 0.01)
        if self._hold_until > now:
            times.append(self._hold_until)
        elif self.config.confirm:
            due = self.tracker.next_due(now)
            if due is not None:
                times.append(due)
        return min(times)

    def _wait(self, sock: Any, timeout: float) -> tuple[bool, bool]:
        """Sleep until ``sock`` is readable (writable too when paho has bytes to send), a
        wake-up or ``timeout`` seconds; (readable, writable)."""
        self.stats.wakeups += 1
        poller = select.poll()
        if self._wake_r is not None:
            poller.register(self._wake_r, select.POLLIN)
        want_write = False
        if sock is not None:
            want_write = self._client is not None and self._client.want_write()
            poller.register(sock, select.POLLIN | (select.POLLOUT if want_write else 0))
        events = poller.poll(max(0.0, timeout) * 1000)
        readable = writable = False
        for fd, mask in events:
            if fd == self._wake_r:
                self._drain_wakeups()
            else:
                # An error or hang-up is found by reading it.
                readable = bool(mask & (select.POLLIN | select.POLLERR | select.POLLHUP | select.POLLNVAL))
                writable = bool(mask & select.POLLOUT)
        return readable, writable

    def _drain_wakeups(self) -> None:
        assert self._wake_r is not None
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _io(self, client: mqtt.Client, timeout: float) -> MQTTErrorCode:
        """What ``Client.loop`` does, sleeping in :meth:`_wait` instead of a fixed ``select``."""
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # TLS may hold decrypted bytes the socket no longer shows as readable.
        pending = sock.pending() if hasattr(sock, "pending") else 0
        readable, writable = self._wait(sock, 0.0 if pending else timeout)
        if readable or pending:
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc if rc != MQTTErrorCode.MQTT_ERR_SUCCESS else MQTTErrorCode.MQTT_ERR_CONN_LOST
        if writable or client.want_write():
            rc = client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc if rc != MQTTErrorCode.MQTT_ERR_SUCCESS else MQTTErrorCode.MQTT_ERR_CONN_LOST
        return client.loop_misc()

    def _connect(self) -> None:
        cfg = self.config
        v5 = cfg.protocol == "5"
        if cfg.tls:
            # Read again at every attempt: a certificate copied in later is used without a restart.
            problems = check_tls_files(cfg)
            if problems:
                self._failed("cannot connect with TLS: " + "; ".join(problems))
                return
        client = new_client(self.client_id, protocol=cfg.protocol, persistent=True, reconnect=False)
        client.connect_timeout = cfg.connect_timeout
        client.max_inflight_messages_set(cfg.max_inflight + 4)
        client.max_queued_messages_set(0)
        try:
            secure(client, username=cfg.username or None, password=self.password, tls=cfg.tls,
                   ca_file=cfg.ca_file, cert_file=cfg.cert_file, key_file=cfg.key_file)
        except (OSError, ssl.SSLError, ValueError) as exc:  # changed between the check and here
            self._failed(f"cannot connect with TLS: {exc}")
            return
        client.will_set(self._status_topic, encode_status(self.device, "offline", reason="connection lost"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        options: dict[str, Any] = {}
        if v5:  # 3.1.1 keeps the session through new_client(persistent=True) above
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = int(cfg.session_expiry)
            options = {"clean_start": False, "properties": properties}
        self._connect_started = time.monotonic()
        try:
            client.connect(cfg.host, cfg.port, keepalive=int(cfg.keepalive), **options)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._failed(f"cannot reach broker {cfg.host}:{cfg.port}: {exc}")
            return
        self._client = client

    def _failed(self, reason: str) -> None:
        self.stats.connection_failures += 1
        self.stats.last_error = reason
        delay = self._backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        level = logging.DEBUG if self._failure_streak_logged else logging.WARNING
        log.log(level, "%s; retrying in %.1fs", reason, delay)
        self._failure_streak_logged = True

    def _lost(self, reason: str) -> None:
        """Drop this connection: its batches go back to the buffer; reconnect later."""
        client, self._client = self._client, None
        was_ready, self._ready = self._ready, False
        if client is not None:
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        returned = self.buffer.release_all(keep=self._unmarked)
        self.stats.batches_returned += returned
        self._inflight.clear()
        self._status_mids.clear()
        if was_ready:
            self.stats.disconnects += 1
            self.stats.last_error = reason
            delay = self._backoff.next_delay()
            self._next_attempt = time.monotonic() + delay
            log.warning("%s; %d batches back to the buffer; reconnecting in %.1fs", reason, returned, delay)
            self._failure_streak_logged = True
        else:
            self._failed(reason)

    # -- paho callbacks (run inside loop_read, loop_write or loop_misc on this thread) -----

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if client is not self._client:
            return
        if reason_code.is_failure:
            self._lost(f"broker {self.config.host}:{self.config.port} refused the connection: {reason_code}")
            return
        self._ready = True
        self._meter.connected()
        self._backoff.reset()
        self._failure_streak_logged = False
        self.stats.connects += 1
        self._online_since = format_time(datetime.now(timezone.utc))
        pending = self.buffer.pending_count()
        log.info(
            "connected to broker %s:%d as %s; %d readings waiting to be sent",
            self.config.host, self.config.port, self.client_id, pending,
        )
        # The centre sees the unit alive at once, before the backlog drains.
        self._publish_status()
        if self.config.confirm:
            client.subscribe(self._confirm_topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if client is not self._client:
            return
        for code in reason_codes:
            if getattr(code, "is_failure", False) or code == 0x80:
                log.error("broker refused the subscription to %s (%s): the centre's confirmations cannot reach this "
                          "unit, so it keeps every reading; let the unit read its confirm topic in the broker's ACL "
                          "(%s)", self._confirm_topic, code, doc("collector.md"))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is not self._client:
            return
        self.stats.bytes_received += len(message.payload) + len(self._confirm_topic) + 4
        if message.topic != self._confirm_topic:
            return
        try:
            confirmation = decode_confirmation(bytes(message.payload), self.device)
        except PayloadError as exc:
            log.warning("ignored a malformed confirmation on %s: %s", self._confirm_topic, exc)
            return
        self._apply(confirmation)

    def _apply(self, confirmation: Confirmation) -> bool:
        """Apply a confirmation; False when the buffer could not record it (kept for a retry)."""
        try:
            outcome = self.buffer.apply_confirmation(confirmation)
        except BufferError as exc:
            self._pending_confirm = confirmation
            self._buffer_failed(str(exc))
            return False
        self._pending_confirm = None
        if not outcome.applied:
            return True
        self.stats.confirmations += 1
        self.stats.readings_confirmed += outcome.confirmed
        now = time.monotonic()
        self.tracker.reopened(seq for first, last in outcome.reopened for seq in range(first, last + 1))
        self._resend(self.tracker.confirmed(confirmation, now), "the centre lacks")
        return True

    def _resend(self, seqs: list[int], why: str) -> None:
        if not seqs:
            return
        try:
            n = self.buffer.resend(seqs)
        except BufferError as exc:
            self._buffer_failed(str(exc))
            return
        self.stats.readings_resent += n
        log.warning("%s %d readings the broker had acknowledged (seq %s): sending them again",
                    why, n, seq_ranges.text(seq_ranges.from_seqs(seqs)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if client is self._client and not self._stop.is_set():
            self._lost(f"connection to broker lost ({reason_code})")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if client is not self._client:
            return
        if mid in self._status_mids:
            self._status_mids.discard(mid)
            if reason_code.is_failure:
                log.error("broker refused the status message on %s: %s", self._status_topic, reason_code)
            return
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        batch, _sent = entry
        if reason_code == NO_MATCHING_SUBSCRIBERS:
            # Accepted and forwarded to nobody: the collectors' shared subscription is not there
            # (a broker restart forgets it until they subscribe again).  Not delivered.
            self.stats.batches_unrouted += 1
            self._probing = True
            self.buffer.nack(batch)
            delay = self._hold.next_delay()
            self._hold_until = time.monotonic() + delay
            level = logging.DEBUG if self._unrouted_logged else logging.WARNING
            log.log(level, "broker has no collector subscribed to %s (PUBACK 0x10): holding readings seq %d-%d, "
                    "retrying in %.1fs", self._readings_topic, batch.first, batch.last, delay)
            self._unrouted_logged = True
            return
        if reason_code.is_failure:
            self.stats.batches_refused += 1
            self.stats.last_error = f"broker refused readings on {self._readings_topic}: {reason_code}"
            self._probing = True
            self.buffer.nack(batch)
            delay = self._hold.next_delay()
            self._hold_until = time.monotonic() + delay
            log.error(
                "broker refused %d readings (seq %d-%d) on %s: %s. Check device.id and the broker's ACL "
                "for this unit; readings stay buffered, retrying in %.1fs",
                len(batch), batch.first, batch.last, self._readings_topic, reason_code, delay,
            )
            return
        self._hold.reset()
        self._trouble.reset()
        self._probing = False
        if self._unrouted_logged:
            log.info("broker forwards readings to the collectors again")
            self._unrouted_logged = False
        self.stats.batches_acked += 1
        self.stats.readings_acked += len(batch)
        self.stats.last_delivery = format_time(datetime.now(timezone.utc))
        self._replan(client)
        if not self._mark(batch):
            self._unmarked.append(batch)  # still leased: not sent again while it waits

    # -- marking in the buffer ------------------------------------------------------------

    def _mark(self, batch: Batch) -> bool:
        try:
            self.buffer.ack(batch, confirmed=not self.config.confirm)
        except BufferError as exc:
            self._buffer_failed(str(exc))
            return False
        if self.config.confirm:
            self.tracker.acknowledged(batch.seqs, time.monotonic())
        return True

    def _mark_leftovers(self) -> bool:
        """Record what could not be recorded before; True when nothing is left waiting."""
        if self._pending_confirm is not None and not self._apply(self._pending_confirm):
            return False
        while self._unmarked:
            if not self._mark(self._unmarked[0]):
                return False
            self._unmarked.pop(0)
        if self.buffer_fault is not None:
            log.warning("buffer %s can be written again; sending resumes", self.buffer.path)
            self.buffer_fault = None
            self._hold.reset()
        return True

    def _buffer_failed(self, reason: str) -> None:
        delay = self._hold.next_delay()
        self._hold_until = time.monotonic() + delay
        if self.buffer_fault is None:
            log.error("%s: holding the uplink until it can be written (retrying with backoff); "
                      "readings already sent are not sent again", reason)
        self.buffer_fault = reason
        self.stats.last_error = reason

    # -- publishing ----------------------------------------------------------------------

    def _pump(self) -> None:
        assert self._client is not None
        window = 1 if self._probing else self.plan.window
        while len(self._inflight) < window:
            batch = self.buffer.take(self.plan.batch, MAX_MESSAGE_BYTES)
            if batch is None:
                return
            encoding, payload = encode_for_wire(self.device, batch.bodies, self.config.encoding)
            properties = self._batch_properties.get(encoding)
            info = self._client.publish(self._readings_topic, payload, qos=1, properties=properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.buffer.nack(batch)
                self._lost(f"publish failed ({mqtt.error_string(info.rc)})")
                return
            self._inflight[info.mid] = (batch, time.monotonic())
            self.stats.batches_sent += 1
            self.stats.bytes_sent += len(payload) + self._publish_overhead
            self._meter.sent(len(payload) + self._publish_overhead, len(batch))

    def _replan(self, client: mqtt.Client) -> None:
        """Size batches and window from the link as it is now (at most once a second)."""
        now = time.monotonic()
        if now < self._next_plan:
            return
        self._next_plan = now + 1.0
        self._meter.observed(read_tcp_info(client.socket()))
        plan = plan_sending(self._meter.estimate(), self.config.batch_size, self.config.max_inflight)
        if plan != self.plan:
            log.debug("link %s: batches of %d readings, %d in flight", self._meter.estimate(), plan.batch, plan.window)
            self.plan = plan

    @property
    def _stale_after(self) -> float:
        """A batch unacknowledged this long means a dead connection."""
        return max(30.0, 2 * self.config.keepalive)

    def _check_stale(self, now: float) -> None:
        limit = self._stale_after
        for batch, sent in self._inflight.values():
            if now - sent > limit:
                self._lost(f"no acknowledgement for readings seq {batch.first}-{batch.last} after {limit:.0f}s")
                return

    def _status_payload(self, state: str) -> bytes:
        fields: dict[str, Any] = {"time": format_time(datetime.now(timezone.utc))}
        if state == "online":
            fields["since"] = self._online_since
        stats = self.buffer.stats()
        fields["backlog"] = {
            "pending": stats.pending,
            "oldest": stats.oldest_pending_time,
            "last_seq": stats.last_seq,
            "dropped_total": stats.dropped_total,
            "unconfirmed": stats.unconfirmed,
            "kept_from": stats.kept_from,
        }
        if self.config.confirm:
            fields["confirm"] = {"rev": stats.confirm_rev}
        fields["link"] = self.plan.as_status(self._meter.estimate())
        if self.buffer_fault is not None:
            fields["fault"] = self.buffer_fault
        try:
            fields.update(self.status_fields())
        except Exception:  # a status detail must never stop delivery
            log.exception("status provider failed")
        return encode_status(self.device, state, **fields)

    def _publish_status(self) -> None:
        assert self._client is not None
        info = self._client.publish(self._status_topic, self._status_payload("online"), qos=1, retain=True)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._status_mids.add(info.mid)
        self._next_status = time.monotonic() + self.config.status_interval

    def _shutdown(self) -> None:
        client = self._client
        if client is None or not self._ready:
            if client is not None:
                self._lost("stopping")
            return
        # Let acknowledgements already on their way land, so the goodbye's backlog is true.
        deadline = time.monotonic() + 2.0
        while self._inflight and time.monotonic() < deadline and self._client is client:
            self._io(client, deadline - time.monotonic())
        if self._client is not client:
            return
        info = client.publish(self._status_topic, self._status_payload("offline"), qos=1, retain=True)
        deadline = time.monotonic() + 3.0
        while not info.is_published() and time.monotonic() < deadline and self._client is client:
            self._io(client, deadline - time.monotonic())
        if self._client is client:
            client.disconnect()
            self._io(client, 0.0)
        self._client = None
        self._ready = False
        self.buffer.release_all()
        log.info("disconnected from broker (stopping)")
