"""SmsNetwork: the operator's SMS service between simulated modems, joined by their numbers.

A message a modem sends (``AT+CMGS``, PDU or text mode) reaches the network with the sending
SIM's number; after ``delay_s`` the network hands it, as an SMS-DELIVER stamped with the
sender's number and the service centre's time, to the modem attached under the number it is
addressed to.  Like a real service centre it:

- keeps a message whose recipient's storage is full, and tries again every ``retry_s``;
- accepts a message for a number nobody has, and drops it (counted in ``stats``): the
  sender has its ``+CMGS`` already, as on a real network;
- refuses every send while ``down`` (the modem answers ``+CMS ERROR: 38``, network out of
  order) and holds what is in flight until it is up again;
- loses or duplicates messages when asked (``loss``, ``duplicate``, seeded by ``seed``).

:meth:`SmsNetwork.send_from_operator` plays the operator's own messages from an alphanumeric
sender (a quota warning from ``TELKOMSEL``).  One thread delivers; every method is
thread-safe, and no lock of the network is held while a modem is called, so a modem may call
the network while holding its own.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Protocol

from agent.shared.gsm_alphabet import is_gsm7, septets
from agent.shared.sms_pdu import encode_deliver

log = logging.getLogger(__name__)

NETWORK_DOWN_CODE = 38  # +CMS ERROR: "network out of order", as a real modem answered an outage (gammu issue 537)
SERVICE_CENTRE = "+6281100000"
# The service centre's clock: Kalimantan, where the Mahakam scenario is, keeps UTC+8 (WITA).
WITA = timezone(timedelta(hours=8))


class SmsReceiver(Protocol):
    """What the network needs of a modem: to store an SMS-DELIVER (False: its storage is full)."""

    def deliver_sms(self, pdu: str) -> bool: ...


@dataclass(frozen=True)
class SmsNetworkStats:
    """What the network did with the messages it was given, since it started."""

    submitted: int = 0  # accepted from modems and the operator
    refused_down: int = 0  # sends refused while the network was down
    delivered: int = 0  # stored by the recipient's modem (a duplicate counts again)
    lost: int = 0  # dropped on purpose (``loss``)
    duplicated: int = 0  # delivered a second time on purpose (``duplicate``)
    unknown_number: int = 0  # addressed to no attached number: dropped
    storage_full: int = 0  # delivery attempts the recipient refused for a full storage (kept, tried again)


@dataclass(order=True)
class _InFlight:
    due: float
    order: int
    sender: str
    to: str
    text: str
    sent_at: datetime


def _coding(text: str) -> str:
    """GSM 7-bit when every character has a septet and it fits one message, else UCS2."""
    return "gsm7" if is_gsm7(text) and septets(text) <= 160 else "ucs2"


class SmsNetwork:
    """Simulated modems joined by their MSISDN.  Use as a context manager, or call :meth:`close`."""

    def __init__(self, *, delay_s: float = 0.05, loss: float = 0.0, duplicate: float = 0.0, seed: int | None = None,
                 retry_s: float = 0.5, service_centre: str = SERVICE_CENTRE,
                 clock: Callable[[], datetime] | None = None) -> None:
        for name, value in (("loss", loss), ("duplicate", duplicate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability from 0 to 1, not {value!r}")
        self.delay_s = delay_s
        self.loss = loss
        self.duplicate = duplicate
        self.retry_s = retry_s
        self.service_centre = service_centre
        self.clock = clock or (lambda: datetime.now(WITA))
        self._random = random.Random(seed)
        self._order = itertools.count()
        self._receivers: dict[str, SmsReceiver] = {}
        self._queue: list[_InFlight] = []
        self._stats = SmsNetworkStats()
        self._down = False
        self._delivering = 0
        self._stop = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="sim-sms-network", daemon=True)
        self._thread.start()

    # -- joining -------------------------------------------------------------------------------

    def attach(self, number: str, modem: SmsReceiver) -> None:
        """Messages to ``number`` go to ``modem`` from now on."""
        with self._changed:
            self._receivers[number] = modem
            self._changed.notify_all()

    def detach(self, number: str) -> None:
        with self._changed:
            self._receivers.pop(number, None)

    # -- what the network does -----------------------------------------------------------------

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        with self._changed:
            self._down = value
            self._changed.notify_all()

    @property
    def stats(self) -> SmsNetworkStats:
        with self._changed:
            return self._stats

    @property
    def in_flight(self) -> int:
        """Messages accepted and not yet stored, dropped or lost."""
        with self._changed:
            return len(self._queue) + self._delivering

    def submit(self, sender: str, to: str, text: str) -> int | None:
        """A modem hands over a message: None when the network took it, else the +CMS ERROR code."""
        with self._changed:
            if self._down:
                self._count(refused_down=1)
                return NETWORK_DOWN_CODE
            self._accept(sender, to, text)
            return None

    def send_from_operator(self, sender: str, text: str, *, to: str) -> None:
        """The operator's own message, from an alphanumeric ``sender`` (at most 11 GSM characters).

        Raises :class:`agent.shared.sms_pdu.SmsPduError` when it cannot be one SMS, so a test
        finds out now rather than from a message that never arrives.
        """
        encode_deliver(sender, text, self.clock(), coding=_coding(text), service_centre=self.service_centre)
        with self._changed:
            self._accept(sender, to, text)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is in flight (a message kept for a full storage stays in flight)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._queue or self._delivering:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def close(self) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SmsNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the delivering thread -----------------------------------------------------------------

    def _count(self, **more: int) -> None:
        self._stats = replace(self._stats, **{name: getattr(self._stats, name) + n for name, n in more.items()})

    def _accept(self, sender: str, to: str, text: str) -> None:
        self._count(submitted=1)
        if self.loss and self._random.random() < self.loss:
            self._count(lost=1)
            log.debug("simulated SMS to %s lost", to)
            return
        copies = 1
        if self.duplicate and self._random.random() < self.duplicate:
            copies = 2
            self._count(duplicated=1)
        sent_at = self.clock()
        for copy in range(copies):
            due = time.monotonic() + self.delay_s * (1 + copy)
            heapq.heappush(self._queue, _InFlight(due, next(self._order), sender, to, text, sent_at))
        self._changed.notify_all()

    def _next(self) -> _InFlight | None:
        """The next message due (None when stopping); waits for it."""
        with self._changed:
            while not self._stop:
                now = time.monotonic()
                if self._queue and self._queue[0].due <= now and not self._down:
                    self._delivering += 1
                    return heapq.heappop(self._queue)
                wait = None if not self._queue or self._down else self._queue[0].due - now
                self._changed.wait(wait)
            return None

    def _run(self) -> None:
        while (message := self._next()) is not None:
            try:
                self._deliver(message)
            except Exception:  # a bug here must show, not silently stop every delivery
                log.exception("simulated SMS network failed on a message to %s", message.to)
            finally:
                with self._changed:
                    self._delivering -= 1
                    self._changed.notify_all()

    def _deliver(self, message: _InFlight) -> None:
        with self._changed:
            receiver = self._receivers.get(message.to)
            if receiver is None:
                self._count(unknown_number=1)
                log.debug("simulated SMS to unknown number %s dropped", message.to)
                return
        pdu = encode_deliver(message.sender, message.text, message.sent_at, coding=_coding(message.text),
                             service_centre=self.service_centre)
        stored = receiver.deliver_sms(pdu)  # outside our lock: the modem takes its own
        with self._changed:
            if stored:
                self._count(delivered=1)
                return
            # The recipient's storage is full: the service centre keeps the message and retries.
            self._count(storage_full=1)
            message.due = time.monotonic() + self.retry_s
            heapq.heappush(self._queue, message)
