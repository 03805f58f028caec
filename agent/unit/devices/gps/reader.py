"""GpsReader: NMEA from a serial port to fixes, surviving noise, silence and a vanishing port.

The port is opened by name or pyserial URL (``/dev/ttyACM0``, ``/dev/ttyUSB1``, ``spy://...``).
Bytes are split into lines at ``\\n`` (a ``\\r`` before it is dropped).  On each line only the
part from the last ``$`` on is a sentence candidate: ``$`` is reserved in NMEA 0183 and never
occurs inside a sentence, so what precedes the last one is binary noise (UBX or SiRF frames a
receiver mixes in, a half line cut off by a reconnect, a wrong baud rate's garbage).  Each
candidate is checked against its checksum before ``parse_sentence`` reads it, so a corrupt
line is counted as such and never becomes a position.

Every candidate and every noise byte is counted in ``stats``.  Sentences go into a
``FixState``; ``read_fix`` returns the next finished epoch.  An epoch also finishes when the
line has been quiet for ``IDLE_FLUSH_S`` after it, so the last fix before a receiver falls
silent is not held back until the next burst.

Exceptions (all ``GpsError``)::

    GpsError              something about the GPS went wrong; str() is fit for a technician
    └── GpsPortGone       the port cannot be opened, or vanished while reading

Silence is not an error: ``read_fix`` returns None at its timeout, for as long as it lasts.

``enable_modem_gnss``/``disable_modem_gnss`` switch a modem's built-in receiver with the
commands of its profile, over an ``AtChannel``.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import serial

from agent.shared.clock import RELEASE_DATE, boottime
from agent.unit.devices.serial_port import PORT_ERRORS, close_quietly, port_failure

from .fix import Fix, FixState
from .nmea import SENTENCE_TYPES, TALKERS, NmeaError, parse_sentence

if TYPE_CHECKING:
    from agent.unit.devices.modem.at import AtChannel
    from agent.unit.devices.modem.profiles import ModemProfile

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.2
# A receiver's burst lasts well under a second; this much quiet after it means the epoch is over.
IDLE_FLUSH_S = 1.5
# NMEA 0183 caps a sentence at 82 characters; a "line" far longer than that is noise.
MAX_LINE_BYTES = 1024
# With no checksum-valid sentence in this many bytes the port is almost surely at the wrong
# baud rate: at the right one a receiver completes a sentence every <= 82 bytes, and
# at 9600 baud this is about half a second of output.
WRONG_BAUD_BYTES = 512


class GpsError(Exception):
    """Something about the GPS went wrong; ``str()`` is fit to show a technician."""


class GpsPortGone(GpsError):
    """The GPS serial port cannot be opened, or vanished (unplugged, USB re-enumeration)."""


@dataclass
class GpsStats:
    """Counts since the reader was opened."""

    bytes_read: int = 0
    sentences_ok: int = 0         # parsed and fed into the fix state
    bad_checksum: int = 0         # a '*hh' that does not match the sentence
    unparseable: int = 0          # a '$' line without checksum, cut short, or with unreadable fields
    unsupported: int = 0          # checksum-valid, but a type or talker parse_sentence does not take
    noise_bytes: int = 0          # bytes outside any sentence candidate (before the last '$', or lines without one)
    epochs: int = 0               # fixes completed (including "none" fixes)
    fixes_with_position: int = 0  # of those, with a 2d/3d position
    bytes_since_valid: int = 0    # bytes since the last checksum-valid sentence (or since opening)


def pass_raw(raw: Callable[[str], None] | None, text: str) -> None:
    """Hand a received line to the ``raw`` listener (a capture file, a debug log)."""
    if raw is None:
        return
    try:
        raw(text)
    except Exception:  # a listener's bug must not stop the fixes
        log.exception("raw line handler failed")


def fixes_from(read_fix: Callable[[float], Fix | None], count: int | None, seconds: float | None,
               clock: Callable[[], float] = boottime) -> Iterator[Fix]:
    """Fixes from ``read_fix(timeout)`` until ``count`` are yielded or ``seconds`` have passed."""
    deadline = None if seconds is None else clock() + seconds
    produced = 0
    while count is None or produced < count:
        wait = 1.0 if deadline is None else deadline - clock()
        if wait <= 0:
            return
        fix = read_fix(wait)
        if fix is not None:
            produced += 1
            yield fix


def _checksum_ok(candidate: bytes) -> bool | None:
    """True/False for a candidate ``$...*hh`` whose checksum matches or not; None without a usable one."""
    star = candidate.rfind(b"*")
    if star < 0:
        return None
    given = candidate[star + 1:star + 3]
    if len(given) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in given):
        return None
    value = 0
    for byte in candidate[1:star]:
        value ^= byte
    return value == int(given, 16)


def _address_supported(candidate: bytes) -> bool:
    address = candidate[1:].split(b",", 1)[0].decode("ascii", errors="replace")
    # A checksum-valid sentence of a type parse_sentence does not convert (ZDA, TXT, a
    # vendor's $PMTK) proves the baud rate right but carries nothing for a fix.
    return address[:2] in TALKERS and address[2:] in SENTENCE_TYPES


class GpsReader:
    """Reads NMEA from ``port`` and turns it into fixes; see the module docstring.

    ``max_age_s`` is how old the last fix may be before ``current()`` says ``"none"``.
    ``clock`` is ``CLOCK_BOOTTIME``, which stamps each fix's ``received`` and ages it; tests give their own.
    ``raw`` is called with every complete line as received (binary shown as escapes), for a
    capture file or a debug log; its exceptions are logged and do not stop the reader.
    ``reference_date`` is the ``FixState``'s: dates before it are taken for a week rollover
    (the release date; a replay of an old recording gives the day it was made).
    """

    def __init__(
        self,
        port: str,
        baud: int = 9600,
        *,
        max_age_s: float = 5.0,
        raw: Callable[[str], None] | None = None,
        clock: Callable[[], float] = boottime,
        reference_date: dt.date = RELEASE_DATE,
    ) -> None:
        self.port = port
        self.baud = baud
        self.max_age_s = max_age_s
        self.raw = raw
        self._clock = clock
        self.stats = GpsStats()
        self._state = FixState(reference_date)
        self._state_lock = threading.Lock()  # current() may be called from another thread
        self._pending = b""
        self._ready: deque[Fix] = deque()
        self._epoch_open = False
        self._last_byte_at = clock()
        try:
            self._serial: serial.SerialBase | None = serial.serial_for_url(port, baud, timeout=READ_TIMEOUT_S)
        except (*PORT_ERRORS, ValueError) as exc:
            raise GpsPortGone(f"cannot open GPS port {port}: {port_failure(exc)}") from None

    # -- port ----------------------------------------------------------------------------

    def close(self) -> None:
        close_quietly(self._serial)
        self._serial = None

    def __enter__(self) -> "GpsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fixes ---------------------------------------------------------------------------

    def read_fix(self, timeout: float) -> Fix | None:
        """The next completed fix, or None when none completes within ``timeout`` seconds.

        May return up to one serial read timeout (0.2 s) after ``timeout``; a zero timeout
        still takes what has already arrived.  Raises
        ``GpsPortGone`` when the port vanishes; silence is never an error.
        """
        deadline = self._clock() + timeout
        while not self._ready:
            data = self._read_chunk()
            now = self._clock()
            if data:
                self._last_byte_at = now
                self._feed(data, now)
            elif self._epoch_open and now - self._last_byte_at >= IDLE_FLUSH_S:
                self._flush(now)
            if not self._ready and now >= deadline:
                return None
        return self._ready.popleft()

    def fixes(self, count: int | None = None, seconds: float | None = None) -> Iterator[Fix]:
        """Fixes as they complete, until ``count`` have been yielded or ``seconds`` have passed
        (either, both or neither: without both it runs until the port vanishes)."""
        return fixes_from(self.read_fix, count, seconds, self._clock)

    def current(self) -> Fix:
        """The latest completed fix, or a ``"none"`` fix when there is none younger than ``max_age_s``."""
        with self._state_lock:
            return self._state.current(self._clock(), self.max_age_s)

    @property
    def likely_wrong_baud(self) -> bool:
        """Many bytes and not one checksum-valid sentence among them: the baud rate is probably
        wrong (or the receiver speaks a binary protocol only)."""
        return self.stats.bytes_since_valid >= WRONG_BAUD_BYTES

    # -- internals -----------------------------------------------------------------------

    def _read_chunk(self) -> bytes:
        if self._serial is None:
            raise GpsPortGone(f"GPS port {self.port} is closed")
        try:
            return self._serial.read(max(1, self._serial.in_waiting))
        except (*PORT_ERRORS, TypeError) as exc:
            # pyserial raises TypeError from in_waiting when the fd is gone mid-call
            self.close()
            raise GpsPortGone(f"GPS port {self.port} is gone: {port_failure(exc)}") from None

    def _feed(self, data: bytes, now: float) -> None:
        self.stats.bytes_read += len(data)
        self.stats.bytes_since_valid += len(data)
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._line(line.rstrip(b"\r"), now)
        if len(self._pending) > MAX_LINE_BYTES:
            # A line this long is binary noise; keep only a sentence that may be starting.
            start = self._pending.rfind(b"$")
            keep = self._pending[start:] if start >= 0 and len(self._pending) - start <= MAX_LINE_BYTES else b""
            self.stats.noise_bytes += len(self._pending) - len(keep)
            self._pending = keep

    def _line(self, line: bytes, now: float) -> None:
        pass_raw(self.raw, line.decode("ascii", errors="backslashreplace"))
        start = line.rfind(b"$")
        if start < 0:
            self.stats.noise_bytes += len(line)
            return
        self.stats.noise_bytes += start
        candidate = line[start:].rstrip()
        checked = _checksum_ok(candidate)
        if checked is None:
            self.stats.unparseable += 1
            return
        if not checked:
            self.stats.bad_checksum += 1
            log.debug("bad checksum: %r", candidate[:90])
            return
        self.stats.bytes_since_valid = 0
        if not _address_supported(candidate):
            self.stats.unsupported += 1
            return
        try:
            sentence = parse_sentence(candidate.decode("ascii"))
        except (NmeaError, UnicodeDecodeError) as exc:
            self.stats.unparseable += 1
            log.debug("skipped: %s", exc)
            return
        self.stats.sentences_ok += 1
        with self._state_lock:
            done = self._state.update(sentence, now)
        self._epoch_open = True
        if done is not None:
            self._completed(done)

    def _flush(self, now: float) -> None:
        with self._state_lock:
            done = self._state.flush(now)
        self._epoch_open = False
        if done is not None:
            self._completed(done)

    def _completed(self, fix: Fix) -> None:
        self.stats.epochs += 1
        if fix.fix != "none":
            self.stats.fixes_with_position += 1
        self._ready.append(fix)


# -- a modem's built-in GNSS --------------------------------------------------------------

# Quectel answers AT+QGPS=1 with +CME ERROR: 504 ("Session is ongoing") when GNSS already
# runs (it keeps running across a restart of the agent, not across a modem reset), and
# AT+QGPSEND with 505 ("Session not active") when it is already off.  Either way the
# receiver is in the state asked for, so these answers count as success: treating them as
# failures would make every agent restart report a broken GPS.
_ALREADY_ON = (504, "session is ongoing")
_ALREADY_OFF = (505, "session not active")


def enable_modem_gnss(channel: "AtChannel", profile: "ModemProfile") -> None:
    """Send the profile's GNSS-on commands; "already on" counts as success.

    Raises ``GpsError`` when the model has no built-in GNSS, ``AtCommandError`` for any
    other error answer, and ``AtTimeout``/``PortGone`` from the channel.
    """
    if not profile.gnss_on:
        raise GpsError(f"modem profile {profile.name} has no GNSS commands (no built-in receiver)")
    _send_gnss(channel, profile.gnss_on, _ALREADY_ON, "already on")


def disable_modem_gnss(channel: "AtChannel", profile: "ModemProfile") -> None:
    """Send the profile's GNSS-off commands (none for a model without GNSS); "already off" is success."""
    _send_gnss(channel, profile.gnss_off, _ALREADY_OFF, "already off")


def _send_gnss(channel: "AtChannel", commands: tuple[str, ...], benign: tuple[int, str], state: str) -> None:
    code, text = benign
    for command in commands:
        response = channel.command(command)
        final = response.final
        if final.ok:
            continue
        if final.kind == "+CME ERROR" and (final.code == code or (final.text or "").strip().lower() == text):
            log.info("%s: GNSS %s (%s)", command, state, final.text or final.code)
            continue
        raise final.error_for(command)


