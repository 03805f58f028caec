"""SmsGateway: the centre's modem, read for the units' heartbeat SMS until stopped.

The loop, one modem, one thread::

    open the AT port; ATE0, AT+CMEE=1, AT+CMGF=0 (PDU mode: it says each message's coding),
    AT+CPMS="SM","SM","SM" (or the first storage the modem takes), AT+CNMI=2,1 (+CMTI)
    on every +CMTI, and every list_every_s anyway:
        AT+CMGL=4 -> sms_inbox.process_listing(store, keys) -> AT+CMGD=<i> for each index
        it returned, i.e. only messages whose transaction has returned

Listing on a timer as well as on ``+CMTI`` catches messages announced while the port was
closed or the gateway down, and modems that lost their ``AT+CNMI`` in a reset.

A port that goes away (USB re-enumeration, a modem reset) is reopened with a doubling
delay, ``backoff_first_s`` up to ``backoff_max_s``; a database that cannot be written
leaves the messages on the SIM and the next listing comes after the same kind of delay.
Either way the loop never spins.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from agent.centre.sms_inbox import Keys, Listing, process_listing
from agent.centre.store.base import Store
from agent.shared.backoff import Backoff
from agent.shared.watchdog import SystemdNotifier, Watchdog
from agent.unit.devices.modem.at import AtChannel
from agent.unit.devices.modem.errors import AtCommandError, AtParseError, AtTimeout, PortGone
from agent.unit.devices.modem.parse_sms import parse_cpms
from agent.unit.devices.modem.sms import announce_new_messages, delete_message, list_messages, use_pdu_mode

__all__ = ["GatewaySettings", "SmsGateway", "summary"]

log = logging.getLogger(__name__)

# Storages to try for AT+CPMS, in order: the SIM's (every modem has it, and a message stays
# on the SIM when the modem is swapped), then the modem's own.
STORAGES = ("SM", "ME", "MT")
# +CMGL <stat> of messages the modem stores for sending: not received, never deleted here.
_OUTGOING_STATS = (2, 3)
# A full SIM's listing is some kilobytes at 115200 baud; some firmware takes seconds to
# start answering when the SIM is large.
LIST_TIMEOUT_S = 30.0
POLL_S = 0.2  # how often the idle loop reads the port for +CMTI


@dataclass(frozen=True)
class GatewaySettings:
    """Where the modem is and how often to list its messages."""

    port: str
    baud: int = 115200
    list_every_s: float = 60.0
    backoff_first_s: float = 1.0
    backoff_max_s: float = 60.0
    at_timeout_s: float = 10.0

    def check(self) -> None:
        """Raise ValueError naming the setting that cannot work."""
        if not self.port:
            raise ValueError("the modem's port is empty")
        if self.list_every_s <= 0:
            raise ValueError(f"--list-every must be more than 0 s, got {self.list_every_s:g}")
        if not 0 < self.backoff_first_s <= self.backoff_max_s:
            raise ValueError("the first retry delay must be more than 0 s and at most the longest")


@dataclass
class GatewayStats:
    """What the gateway did since it started (logged when it stops)."""

    opens: int = 0
    listings: int = 0
    stored: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    deleted: int = 0
    store_failures: int = 0


def summary(listing: Listing) -> str:
    """One line a technician reads: ``stored 2 heartbeats (boat_7, probe-2), refused 1
    (bad_signature 1)``."""
    stored = [o.device or o.sender for o in listing.outcomes if o.result == "stored"]
    refused = Counter(o.reason or "unknown" for o in listing.outcomes if o.result == "refused")
    text = f"stored {len(stored)} heartbeat{'s' if len(stored) != 1 else ''}"
    if stored:
        text += f" ({', '.join(sorted(set(stored)))})"
    text += f", refused {sum(refused.values())}"
    if refused:
        text += " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(refused.items())) + ")"
    return text


class SmsGateway:
    """Reads the modem at ``settings.port`` and files its messages into ``store`` with the
    units' ``keys`` until :meth:`run`'s ``stop`` is set.

    ``channel_factory`` makes the AT channel (``AtChannel`` with its on_urc callback);
    ``now`` is the centre's clock for ``received_at``; ``after_commit`` is called with each
    listing once its messages are recorded and before any is deleted (the window a crash
    must survive; tests hold it open there).
    """

    def __init__(self, settings: GatewaySettings, store: Store, keys: Keys, *,
                 notifier: SystemdNotifier | None = None, watchdog: Watchdog | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 channel_factory: Callable[..., AtChannel] = AtChannel,
                 after_commit: Callable[[Listing], None] | None = None) -> None:
        settings.check()
        self.settings = settings
        self.store = store
        self.keys = keys
        self.notifier = notifier or SystemdNotifier(None)
        self.watchdog = watchdog or Watchdog(self.notifier, None)
        self.now = now
        self.channel_factory = channel_factory
        self.after_commit = after_commit
        self.stats = GatewayStats()
        self._channel: AtChannel | None = None
        self._announced = threading.Event()  # a +CMTI arrived since the last listing
        self._port_backoff = Backoff(settings.backoff_first_s, settings.backoff_max_s)
        self._store_backoff = Backoff(settings.backoff_first_s, settings.backoff_max_s)

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: keep the modem open and file what it receives."""
        self.watchdog.start()
        # Ready as soon as the loop runs, modem or not: a gateway waiting for its modem is
        # doing its job, and systemd must not restart it for that.
        self.notifier.ready(f"reading SMS from {self.settings.port} into {self.store.url}")
        log.info("SMS gateway: modem %s, database %s, listing every %gs and on each +CMTI",
                 self.settings.port, self.store.url, self.settings.list_every_s)
        next_listing = 0.0
        try:
            while not stop.is_set():
                self.watchdog.heartbeat()
                if self._channel is None:
                    if not self._connect():
                        stop.wait(self._retry_port())
                        continue
                    next_listing = 0.0  # what arrived while the port was closed
                try:
                    self._channel.poll_urcs()
                    if self._announced.is_set() or time.monotonic() >= next_listing:
                        self._announced.clear()
                        next_listing = time.monotonic() + self._list_and_file()
                except PortGone as exc:
                    log.warning("modem port %s is gone: %s", self.settings.port, exc)
                    self._close()
                    self.notifier.status(f"modem {self.settings.port} gone, reopening")
                    continue
                except AtTimeout as exc:
                    # A modem that stops answering is reset by whoever owns it; reopening the
                    # port is all the gateway can do, and it drops any half-read answer.
                    log.warning("modem %s does not answer: %s; reopening the port", self.settings.port, exc)
                    self._close()
                    stop.wait(self._retry_port())
                    continue
                stop.wait(POLL_S)
        finally:
            self.notifier.stopping("closing the modem")
            self._close()
            self.watchdog.stop()
            s = self.stats
            log.info("SMS gateway stopped: %d listings, %d heartbeats stored, %d refused, %d deleted, "
                     "%d database failures, port opened %d times", s.listings, s.stored, sum(s.refused.values()),
                     s.deleted, s.store_failures, s.opens)

    def _retry_port(self) -> float:
        delay = self._port_backoff.next_delay()
        log.info("trying the modem %s again in %gs", self.settings.port, delay)
        return delay

    # -- the modem -------------------------------------------------------------------------

    def _connect(self) -> bool:
        """Open the port and set the modem up; False (logged) when it cannot be done now."""
        self.stats.opens += 1
        channel = self.channel_factory(self.settings.port, self.settings.baud, timeout=self.settings.at_timeout_s,
                                       on_urc=self._urc)
        try:
            channel.open()
            self._set_up(channel)
        except PortGone as exc:
            level = logging.WARNING if self._port_backoff.failures == 0 else logging.INFO
            log.log(level, "modem %s cannot be opened (attempt %d): %s", self.settings.port,
                    self._port_backoff.failures + 1, exc)
            self.notifier.status(f"waiting for the modem {self.settings.port}")
            channel.close()
            return False
        except (AtTimeout, AtCommandError) as exc:
            log.warning("modem %s refused to be set up (attempt %d): %s", self.settings.port,
                        self._port_backoff.failures + 1, exc)
            self.notifier.status(f"modem {self.settings.port} refused to be set up: {exc}")
            channel.close()
            return False
        self._channel = channel
        self._port_backoff.reset()
        self.notifier.status(f"reading SMS from {self.settings.port}")
        return True

    def _set_up(self, channel: AtChannel) -> None:
        """PDU mode, a storage, and +CMTI for each message stored; what cannot be set is logged."""
        channel.command("ATE0")  # the echo would only be more lines to skip
        channel.command("AT+CMEE=1")  # numeric +CMS ERROR codes; a modem that refuses keeps plain ERROR
        use_pdu_mode(channel)  # without PDU mode the coding of a message is not known
        storage = self._choose_storage(channel)
        try:
            announce_new_messages(channel)
            announced = "announced by +CMTI"
        except AtCommandError as exc:
            log.warning("modem %s does not announce new messages (%s): listing every %gs only",
                        self.settings.port, exc, self.settings.list_every_s)
            announced = "not announced"
        log.info("modem %s ready: PDU mode, storage %s, new messages %s", self.settings.port, storage, announced)

    def _choose_storage(self, channel: AtChannel) -> str:
        for name in STORAGES:
            try:
                answer = channel.query(f'AT+CPMS="{name}","{name}","{name}"')
            except AtCommandError:
                continue
            try:
                use = parse_cpms(answer)[0]
                return f"{name} ({use.used} of {use.total} used)"
            except (AtParseError, IndexError):
                return name
        log.warning("modem %s takes none of the storages %s; keeping its own", self.settings.port,
                    ", ".join(STORAGES))
        return "the modem's default"

    def _urc(self, line: str) -> None:
        if line.upper().startswith("+CMTI:"):
            self._announced.set()

    def _close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # -- one listing -----------------------------------------------------------------------

    def _list_and_file(self) -> float:
        """List, file and delete; seconds until the next listing (sooner after a database
        failure, with its own backoff)."""
        assert self._channel is not None
        channel = self._channel
        try:
            with self.watchdog.busy(LIST_TIMEOUT_S):
                messages = list_messages(channel, LIST_TIMEOUT_S)
        except AtCommandError as exc:
            log.error("modem %s refused the listing: %s", self.settings.port, exc)
            return self.settings.list_every_s
        except AtParseError as exc:
            # Nothing is deleted on a listing that is not understood: it is read again next time.
            log.error("listing of modem %s not understood, nothing deleted: %s", self.settings.port, exc)
            return self.settings.list_every_s
        self.stats.listings += 1
        received = [m for m in messages if m.stat not in _OUTGOING_STATS]
        if not received:
            log.debug("modem %s: no message stored", self.settings.port)
            return self.settings.list_every_s
        listing = process_listing(messages, self.store, self.keys, self.now)
        self._count(listing)
        if self.after_commit is not None:
            self.after_commit(listing)
        self._delete(channel, listing.to_delete)
        left = len(received) - len(listing.to_delete)
        if left:
            self.stats.store_failures += 1
            delay = self._store_backoff.next_delay()
            log.error("listing of %d messages: %s; database unavailable, %d left on the SIM, trying again in %gs",
                      len(received), summary(listing), left, delay)
            self.notifier.status(f"database unavailable, {left} messages wait on the SIM")
            return delay
        self._store_backoff.reset()
        log.info("listing of %d messages: %s; deleted %d from the SIM", len(received), summary(listing),
                 len(listing.to_delete))
        return self.settings.list_every_s

    def _count(self, listing: Listing) -> None:
        for outcome in listing.outcomes:
            if outcome.result == "stored":
                self.stats.stored += 1
            else:
                self.stats.refused[outcome.reason or "unknown"] += 1

    def _delete(self, channel: AtChannel, indexes: list[int]) -> None:
        """AT+CMGD each recorded message.  One the modem refuses to delete is read again at the
        next listing: a heartbeat then is 'replayed', so nothing is stored twice."""
        for index in indexes:
            try:
                delete_message(channel, index)
                self.stats.deleted += 1
            except AtCommandError as exc:
                log.warning("modem %s did not delete message %d (%s): it is read again next time",
                            self.settings.port, index, exc)

