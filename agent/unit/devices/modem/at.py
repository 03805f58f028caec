"""AtChannel: one AT command at a time over a serial port, with timeouts that never hang.

The port is opened by name or pyserial URL (``/dev/ttyUSB2``, ``spy:///dev/ttyUSB2``,
``socket://...``).  ``command()`` sends one command and returns its information lines,
raising :class:`AtCommandError` for an error final result, :class:`AtTimeout` when no final
result arrives in time, and :class:`PortGone` when the port disappears.  Unsolicited
result codes are kept apart (``urcs``, and the ``on_urc`` callback) whenever they arrive.
A lock makes the channel safe to share between probes: one command at a time.

``send_after_prompt()`` is the one exchange of two halves (TS 27.005 3.5.1, ``AT+CMGS``):
the command, the modem's ``> `` prompt (no line end after it), then the message and
Ctrl-Z.  The lock is held from the command to the final result, so no other probe's
command lands in the middle of a message.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import serial

from agent.unit.devices.modem.errors import AtTimeout, PortGone
from agent.unit.devices.serial_port import PORT_ERRORS, close_quietly, port_failure
from agent.unit.devices.modem.framing import Final, ResponseLines, clean_line

log = logging.getLogger(__name__)

CTRL_Z = "\x1a"  # ends the message typed after the prompt: send it
ESC = "\x1b"  # abandons it: the modem answers OK and sends nothing

RawLog = Callable[[str, str], None]  # (direction ">" or "<", text)


@dataclass(frozen=True)
class AtResponse:
    command: str
    lines: tuple[str, ...]
    final: Final

    @property
    def text(self) -> str:
        """The information lines joined, as the pure parsers take them."""
        return "\n".join(self.lines)


class AtChannel:
    def __init__(
        self,
        port: str,
        baud: int = 115200,
        *,
        timeout: float = 5.0,
        extra_finals: tuple[str, ...] = (),
        on_urc: Callable[[str], None] | None = None,
        raw_log: RawLog | None = None,
    ) -> None:
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.extra_finals = tuple(extra_finals)
        self.on_urc = on_urc
        self.raw_log = raw_log
        self.urcs: deque[str] = deque(maxlen=200)
        self._serial: serial.SerialBase | None = None
        self._pending = ""
        self._late_answer_possible = False
        self._lock = threading.Lock()

    # -- port ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        if self._serial is not None:
            return
        try:
            self._serial = serial.serial_for_url(self.port, self.baud, timeout=0.05, write_timeout=2)
        except (*PORT_ERRORS, ValueError) as exc:
            raise PortGone(f"cannot open {self.port}: {port_failure(exc)}") from None
        self._pending = ""

    def close(self) -> None:
        close_quietly(self._serial)
        self._serial = None
        self._pending = ""

    def reopen(self) -> None:
        self.close()
        self.open()

    def __enter__(self) -> "AtChannel":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ------------------------------------------------------------------------

    def command(self, command: str, timeout: float | None = None) -> AtResponse:
        """Send ``command``; its information lines, or AtCommandError / AtTimeout / PortGone."""
        with self._lock:
            self._send(command)
            return self._read_response(command, self.timeout if timeout is None else timeout)

    def _send(self, command: str) -> None:
        """Write ``command`` once the line is quiet: call it holding the lock."""
        if self._serial is None:
            self.open()
        if self._late_answer_possible:
            self._discard_late_answer()
        self._drain_urcs()
        self._write(command + "\r")

    def query(self, command: str, timeout: float | None = None) -> str:
        """The information text of ``command`` (raising on error final results)."""
        response = self.command(command, timeout)
        if not response.final.ok:
            raise response.final.error_for(command)
        return response.text

    def send_after_prompt(self, command: str, body: str, *, prompt_timeout: float = 5.0,
                          timeout: float = 60.0) -> AtResponse:
        """Send ``command`` (``AT+CMGS=<n>``), wait for the ``> `` prompt, type ``body`` and
        Ctrl-Z; the response up to its final result (``+CMGS: <mr>`` and OK, or ``+CMS ERROR``).

        A final result before the prompt (the modem refused the command: no SIM, a bad
        length) is returned as the response, and ``body`` is never typed.  No prompt within
        ``prompt_timeout``: ESC, so that the modem does not take the next command as the
        message, then :class:`AtTimeout`.  No final result ``timeout`` seconds after Ctrl-Z
        (a network that never answers): :class:`AtTimeout`, the late answer dropped later.
        """
        with self._lock:
            self._send(command)
            response = ResponseLines(command, self.extra_finals)
            deadline = time.monotonic() + prompt_timeout
            while not self._prompt_seen(response):
                if response.final is not None:
                    return AtResponse(command, tuple(response.lines), response.final)
                if time.monotonic() >= deadline:
                    self._write(ESC)
                    self._late_answer_possible = True  # the OK to the ESC, or a refusal, may follow
                    raise AtTimeout(f"{command}: no prompt from {self.port} within {prompt_timeout:g}s; cancelled")
            self._pending = ""
            self._write(body + CTRL_Z)
            return self._read_response(command, timeout)

    def _prompt_seen(self, response: ResponseLines) -> bool:
        """Read what has come; True once the pending half line is the prompt.  Complete lines
        go to ``response`` (echo, URCs, a final result that refuses the command)."""
        if self._serial is None:
            raise PortGone(f"{self.port} is gone")
        for line in self._lines():
            if response.final is not None:
                self._urc(line)
            elif response.add(line) == "urc":
                self._urc(line)
        return response.final is None and self._pending.strip() == ">"

    def poll_urcs(self) -> list[str]:
        """Read what has arrived between commands; every complete line there is a URC."""
        with self._lock:
            if self._serial is None:
                return []
            before = len(self.urcs)
            self._drain_urcs()
            return list(self.urcs)[before:] if len(self.urcs) >= before else list(self.urcs)

    # -- internals -----------------------------------------------------------------------

    def _write(self, text: str) -> None:
        assert self._serial is not None
        if self.raw_log:
            self.raw_log(">", text.rstrip("\r"))
        try:
            self._serial.write(text.encode("ascii", errors="replace"))
            self._serial.flush()
        except PORT_ERRORS as exc:
            self.close()
            raise PortGone(f"{self.port} is gone: {port_failure(exc)}") from None

    def _read_chunk(self) -> str:
        assert self._serial is not None
        try:
            data = self._serial.read(max(1, self._serial.in_waiting))
        except (*PORT_ERRORS, TypeError) as exc:
            # pyserial raises TypeError from in_waiting when the fd is gone mid-call
            self.close()
            raise PortGone(f"{self.port} is gone: {port_failure(exc)}") from None
        return data.decode("ascii", errors="replace")

    def _lines(self) -> list[str]:
        """Complete lines received so far (partial ones stay pending)."""
        self._pending += self._read_chunk()
        *complete, self._pending = self._pending.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        lines = []
        for raw in complete:
            line = clean_line(raw)
            if line:
                if self.raw_log:
                    self.raw_log("<", line)
                lines.append(line)
        return lines

    def _discard_late_answer(self, quiet: float = 0.3) -> None:
        """After a timeout the old command's answer may still come: let it arrive and drop it,
        so it is not taken for the next command's answer."""
        self._late_answer_possible = False
        give_up = time.monotonic() + 2.0  # a port that never falls quiet must not hang us
        deadline = time.monotonic() + quiet
        while time.monotonic() < min(deadline, give_up):
            for line in self._lines():
                log.debug("dropped late answer line %r", line)
                deadline = time.monotonic() + quiet

    def _urc(self, line: str) -> None:
        self.urcs.append(line)
        log.debug("URC %s", line)
        if self.on_urc is not None:
            try:
                self.on_urc(line)
            except Exception:  # a listener's bug must not break the channel
                log.exception("URC handler failed on %r", line)

    def _drain_urcs(self) -> None:
        assert self._serial is not None
        try:
            waiting = self._serial.in_waiting
        except (*PORT_ERRORS, TypeError) as exc:
            self.close()
            raise PortGone(f"{self.port} is gone: {port_failure(exc)}") from None
        if waiting:
            for line in self._lines():
                self._urc(line)
        # Half a line left from between commands is noise, not the start of our answer.
        self._pending = ""

    def _read_response(self, command: str, timeout: float) -> AtResponse:
        response = ResponseLines(command, self.extra_finals)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._serial is None:
                raise PortGone(f"{self.port} is gone")
            batch = self._lines()
            for index, line in enumerate(batch):
                kind = response.add(line)
                if kind == "final":
                    assert response.final is not None
                    for after in batch[index + 1:]:  # e.g. +CEREG: right after OK in the same read
                        self._urc(after)
                    return AtResponse(command, tuple(response.lines), response.final)
                if kind == "urc":
                    self._urc(line)
        self._late_answer_possible = True
        lines = response.lines
        raise AtTimeout(f"{command}: no answer from {self.port} within {timeout:g}s"
                        + (f" (got {len(lines)} lines, no final result)" if lines else ""))


