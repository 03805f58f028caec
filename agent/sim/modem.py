"""SimulatedModem: a cellular modem on a pseudo-terminal, answering as a given model would.

The host opens ``modem.port`` with pyserial exactly like ``/dev/ttyUSB2``.  ``port`` is a
symlink in a work folder pointing at the pseudo-terminal, so the modem can vanish (USB
re-enumeration: the pty is closed and the link removed) and come back at the same path.

One thread plays the modem.  It reads command lines ended by ``\\r`` and answers them with
V.250 verbose framing: information text as ``\\r\\n<line>\\r\\n`` (several lines separated by
``\\r\\n``), then ``\\r\\nOK\\r\\n``, ``\\r\\nERROR\\r\\n`` or ``\\r\\n+CME ERROR: <err>\\r\\n`` (numeric or
text per AT+CMEE).  Answers come from, in order:

* the modem's own settings: ``AT``, ``ATE0``/``ATE1``, ``AT+CMEE``, ``AT+CREG=<n>`` and its
  siblings, ``AT+COPS=3,<format>``, ``AT+CSCS`` (operator names in IRA, GSM or UCS2), ``AT+CPIN``;
* the radio, for dynamic signal commands (:mod:`agent.sim.modem_answers`), unless the
  transcript records that the model answers ``ERROR`` to that command (no 5G, say);
* the model's transcript, for everything else; unknown commands get ``ERROR``.

Lines that do not start with ``AT`` are ignored, as modems ignore line noise.  Without a
ready SIM, network commands (the dynamic ones, operator scans, IMSI/ICCID) answer
``+CME ERROR: SIM PIN required`` or ``SIM not inserted``.  Answers take time
(:data:`DEFAULT_DELAYS`, scaled by ``time_scale``) and the modem handles one command at a
time, as a real one does.

Short messages (:mod:`agent.sim.modem_sms`): the TS 27.005 commands, a SIM storage that
announces arrivals with ``+CMTI``, and ``AT+CMGS``, after which the modem prints ``> `` and
takes the message typed up to Ctrl-Z (ESC cancels).  With ``number`` and ``sms_network``
(:class:`agent.sim.sms_network.SmsNetwork`) what it sends reaches the modem of that number.

Misbehaviour on demand: :meth:`mute`, :meth:`send_garbage`, :meth:`urc_inside_next_reply`,
:meth:`vanish` / :meth:`reappear`, the profile's reset command (gone for ``reset_s``,
then boot messages such as ``RDY``), and refused or unanswered sends (:meth:`fail_sms`).
"""
from __future__ import annotations

import logging
import os
import re
import select
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.unit.devices.modem.transcript import Transcript
from agent.sim.pty import close_linked_pty, open_linked_pty
from agent.sim.scenario import Radio
from agent.sim.modem_answers import (
    AnswerModes,
    dynamic_answer,
    dynamic_commands,
    normalise,
)
from agent.sim.modem_sms import (
    DEFAULT_CAPACITY,
    DEFAULT_SMSC,
    FAULT_CODES,
    SentSms,
    SmsFault,
    SmsModes,
    SmsSide,
    StoredSms,
    cms_line,
    is_send,
)
from agent.sim.sms_network import SmsNetwork

log = logging.getLogger(__name__)

# Seconds from the end of a command line to the start of its answer, on a real unit.
# A network scan searches every band; EC25s take 10 s to 3 minutes.
DEFAULT_DELAY = 0.01
DEFAULT_DELAYS: dict[str, float] = {
    "AT+COPS=?": 15.0,
    'AT+QENG="SERVINGCELL"': 0.05,
    "AT+CPSI?": 0.05,
    "AT+COPS?": 0.03,
    "AT+CFUN=0": 1.0,
    "AT+CFUN=1": 1.0,
}

# What each vendor prints after a reset, once the port is back ({cpin} is the SIM state).
BOOT_MESSAGES: dict[str, tuple[str, ...]] = {
    "quectel": ("RDY", "+CFUN: 1", "+CPIN: {cpin}", "+QUSIM: 1", "+QIND: SMS DONE"),
    "simcom": ("RDY", "+CPIN: {cpin}", "SMS DONE", "PB DONE"),
    "huawei": ("^SYSSTART",),
    "generic": ("RDY",),
    "telit": (),
    "sierra": (),
}

# 3GPP TS 27.007 section 9.2 codes, with the texts modems print under AT+CMEE=2.
CME_TEXT: dict[int, str] = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    13: "SIM failure",
    16: "incorrect password",
    30: "no network service",
    50: "Incorrect parameters",
    100: "unknown",
}

# Commands that need the SIM besides the dynamic ones: they fail the same way without it.
SIM_COMMANDS = frozenset({"AT+CIMI", "AT+CCID", "AT+ICCID", "AT+QCCID", "AT+CICCID", "AT^ICCID?", "AT+CNUM"})

_FINALS = re.compile(r"^(OK|ERROR|NO CARRIER|BUSY|NO ANSWER|NO DIALTONE|COMMAND NOT SUPPORT|\+CM[ES] ERROR:.*)$")
_REG_SET = re.compile(r"^AT\+(CREG|CGREG|CEREG|C5GREG)=(\d+)$")
_CPIN_SET = re.compile(r'^AT\+CPIN="?([^",]*)"?')
_CSCS_SET = re.compile(r'^AT\+CSCS="?([A-Z0-9\-]*)"?$')
CHARSETS = ("IRA", "GSM", "UCS2")
_MAX_LINE = 2048
_CTRL_Z = 0x1A  # ends a message typed after the > prompt (TS 27.005 3.5.1)
_ESC = 0x1B  # cancels it
_PROMPT = b"\r\n> "  # TS 27.005 3.5.1: <CR><LF>, the greater-than sign and a space, no line end
_SEND_KEY = "AT+CMGS"  # the delay of a send's answer after Ctrl-Z (set_delay, delay_sms)


@dataclass
class _Reply:
    due: float
    data: bytes
    then: Callable[[], None] | None = None


@dataclass
class _State:
    echo: bool = True
    cmee: int = 0
    modes: AnswerModes = field(default_factory=AnswerModes)
    sms: SmsModes = field(default_factory=SmsModes)


@dataclass
class _Typing:
    """An AT+CMGS and the message the host types after it, until Ctrl-Z or ESC."""

    line: str
    body: bytearray = field(default_factory=bytearray)
    ended: str | None = None  # "sent" (Ctrl-Z) or "cancelled" (ESC)
    prompted: bool = False


class SimulatedModem:
    """A modem model on a pseudo-terminal; ``port`` is the path to open with pyserial.

    ``radio`` is called for every dynamic command, so a test or a demo moves the unit by
    changing what it returns.  ``cgmm`` makes AT+CGMM answer that model name whatever the
    transcript says.  ``sim`` is ``ready``, ``pin`` (unlocked by ``AT+CPIN="<pin>"``) or
    ``absent``.  ``charset`` is the AT+CSCS character set at power-on (IRA, GSM or UCS2:
    some firmware starts in UCS2).  ``delays`` overrides :data:`DEFAULT_DELAYS` per command; ``time_scale``
    multiplies every command delay (0.01 for fast tests).  After a reset command the port is
    gone ``reset_gap`` seconds after the OK, for ``reset_s`` seconds, and prints
    ``boot_messages`` ``boot_delay`` seconds after it is back.  ``received`` lists every
    command the modem took.

    Short messages: ``number`` is the SIM's MSISDN, under which it joins ``sms_network``;
    ``smsc`` the service centre number on the SIM (None: none, sends answer ``+CMS ERROR:
    330``); ``sms_capacity`` how many messages the SIM stores.  The storage survives resets.
    """

    def __init__(
        self,
        transcript: Transcript,
        driver: str,
        radio: Callable[[], Radio] = lambda: Radio(None),
        workdir: str | Path | None = None,
        cgmm: str | None = None,
        *,
        name: str = "ttyUSB2",
        sim: str = "ready",
        pin: str = "1234",
        charset: str = "IRA",
        delays: Mapping[str, float] | None = None,
        default_delay: float = DEFAULT_DELAY,
        time_scale: float = 1.0,
        reset_commands: Iterable[str] = ("AT+CFUN=1,1",),
        reset_s: float = 1.0,
        reset_gap: float = 0.2,
        boot_delay: float = 0.2,
        boot_messages: Sequence[str] | None = None,
        number: str | None = None,
        sms_network: SmsNetwork | None = None,
        smsc: str | None = DEFAULT_SMSC,
        sms_capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        if sim not in ("ready", "pin", "absent"):
            raise ValueError(f"sim must be ready, pin or absent, not {sim!r}")
        if charset not in CHARSETS:
            raise ValueError(f"charset must be one of {', '.join(CHARSETS)}, not {charset!r}")
        self.charset_at_power_on = charset
        self.transcript = transcript
        self.driver = driver
        self.radio = radio
        self.cgmm = cgmm
        self.pin = pin
        self.time_scale = time_scale  # multiplies the per-command delays, not the reset timings
        self.default_delay = default_delay
        self.reset_s = reset_s
        self.reset_gap = reset_gap  # from the OK of a reset command to the port going away
        self.boot_delay = boot_delay
        self.boot_messages = tuple(BOOT_MESSAGES.get(driver, ("RDY",)) if boot_messages is None else boot_messages)
        self._delays = {normalise(k): v for k, v in DEFAULT_DELAYS.items()}
        self._delays.update({normalise(k): v for k, v in (delays or {}).items()})
        self._reset_commands = frozenset(normalise(c) for c in reset_commands)
        self._dynamic = dynamic_commands(driver)
        self._sim_at_power_on = sim
        self._sim = sim
        self._state = self._power_on_state()
        self.received: list[str] = []  # every command line the modem took, in order
        self.resets = 0
        if sms_capacity < 1:
            raise ValueError(f"sms_capacity must be at least 1, not {sms_capacity!r}")
        self._sms = SmsSide(number=number, network=sms_network, smsc=smsc, capacity=sms_capacity)
        self._typing: _Typing | None = None  # the message being typed, bytes go to it
        self._waiting: _Typing | None = None  # prompted, waiting for its Ctrl-Z

        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="blankspot-modem-") if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = str(self.workdir / name)

        self._lock = threading.RLock()
        self._master: int | None = None
        self._slave: int | None = None
        self._pty_name: str | None = None
        self._muted = False
        self._pending_urc: str | None = None
        self._line = bytearray()
        self._commands: deque[str | _Typing] = deque()
        self._replies: list[_Reply] = []
        self._busy = False
        self._timers: list[tuple[float, Callable[[], None]]] = []
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name=f"sim-modem-{name}", daemon=True)
        self._thread.start()
        if sms_network is not None and number is not None:
            sms_network.attach(number, self)

    @classmethod
    def for_profile(cls, name: str, radio: Callable[[], Radio] = lambda: Radio(None),
                    workdir: str | Path | None = None, **options: object) -> SimulatedModem:
        """The model named by ``firmware_configs/<name>.toml``: its transcript, driver and reset."""
        from agent.unit.devices.modem.profiles import load_profile

        profile = load_profile(name)
        options.setdefault("reset_commands", tuple(getattr(profile, "reset_commands", ()) or ("AT+CFUN=1,1",)))
        cgmm = getattr(profile, "cgmm", None)
        return cls(profile.transcript, profile.driver, radio, workdir,
                   cgmm[0] if cgmm and profile.transcript.answer("AT+CGMM") is None else None,
                   **options)  # type: ignore[arg-type]

    # -- what a test or demo controls -------------------------------------------------------

    @property
    def present(self) -> bool:
        """The port exists (not vanished, not resetting)."""
        return self._master is not None

    @property
    def pty_name(self) -> str | None:
        return self._pty_name

    @property
    def sim(self) -> str:
        return self._sim

    @sim.setter
    def sim(self, state: str) -> None:
        if state not in ("ready", "pin", "absent"):
            raise ValueError(f"sim must be ready, pin or absent, not {state!r}")
        with self._lock:
            self._sim = state
            self._sim_at_power_on = state

    def set_delay(self, command: str, seconds: float) -> None:
        """How long ``command`` takes to answer from now on (before ``time_scale``)."""
        with self._lock:
            self._delays[normalise(command)] = seconds

    def mute(self, on: bool = True) -> None:
        """A hung modem: it keeps reading (and discarding) but never answers or echoes."""
        with self._lock:
            self._muted = on
            if on:
                self._replies.clear()
                self._commands.clear()
                self._busy = False
                self._typing = self._waiting = None
            self._line.clear()

    def send_garbage(self, data: bytes) -> None:
        """Put ``data`` on the line now, as a noisy line or a modem crashing mid-boot does."""
        with self._lock:
            self._write(data)

    def send_urc(self, text: str) -> None:
        """An unsolicited result code now, framed as the modem frames them."""
        with self._lock:
            self._write(_frame(text))

    def urc_inside_next_reply(self, text: str) -> None:
        """Emit ``text`` as a URC inside the next reply (before its final result) and right after it."""
        with self._lock:
            self._pending_urc = text

    def vanish(self) -> None:
        """The port disappears, as on USB re-enumeration: pty closed, symlink removed."""
        with self._lock:
            self._close_pty()
            self._wake()

    def reappear(self) -> None:
        """The port is back at the same path (a new pseudo-terminal)."""
        with self._lock:
            if self._master is None and not self._stop.is_set():
                self._open_pty()
            self._wake()

    def reset(self) -> None:
        """Power-cycle now: gone for ``reset_s``, back with settings at their defaults, then boot messages."""
        with self._lock:
            self._begin_reset()

    # -- short messages --------------------------------------------------------------------

    @property
    def number(self) -> str | None:
        return self._sms.number

    @property
    def smsc(self) -> str | None:
        return self._sms.smsc

    @smsc.setter
    def smsc(self, number: str | None) -> None:
        with self._lock:
            self._sms.smsc = number

    @property
    def sms_messages(self) -> list[StoredSms]:
        """What the SIM stores now, by index."""
        with self._lock:
            return [self._sms.messages[i] for i in sorted(self._sms.messages)]

    @property
    def sms_sent(self) -> list[SentSms]:
        """Every message AT+CMGS handed to the network, in order."""
        with self._lock:
            return list(self._sms.sent)

    def fail_sms(self, fault: SmsFault | None, code: int | None = None) -> None:
        """Sends fail from now on: ``no_credit`` (+CMS ERROR: 21, or ``code``), ``no_network`` (331),
        ``smsc_unknown`` (330), ``no_answer`` (nothing after Ctrl-Z, ever); None: sends work again."""
        if fault is not None and fault not in FAULT_CODES:
            raise ValueError(f"fault must be one of {', '.join(FAULT_CODES)} or None, not {fault!r}")
        with self._lock:
            self._sms.fault = fault
            self._sms.fault_code = code

    def delay_sms(self, seconds: float) -> None:
        """The answer to a send comes ``seconds`` (before ``time_scale``) after its Ctrl-Z."""
        self.set_delay(_SEND_KEY, seconds)

    def deliver_sms(self, pdu: str) -> bool:
        """Store a received SMS-DELIVER (service centre first) and announce it per AT+CNMI.

        False when the storage is full: the message is not stored, and a network keeps it.
        """
        with self._lock:
            index = self._sms.store(pdu)
            if index is None:
                log.debug("simulated modem %s: SMS storage full", self.port)
                return False
            if self._state.sms.announces and not self._muted:
                # As a Huawei announces one (answers.jsonl, bg111/asterisk-chan-dongle issue 31).
                self._write(_frame(f'+CMTI: "SM",{index}'))
            return True

    def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            self._close_pty()
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SimulatedModem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pseudo-terminal ---------------------------------------------------------------

    def _open_pty(self) -> None:
        self._master, self._slave, self._pty_name = open_linked_pty(self.port)
        self._line.clear()
        log.debug("simulated modem on %s -> %s", self.port, self._pty_name)

    def _close_pty(self) -> None:
        close_linked_pty(self._master, self._slave, self.port)
        self._master = self._slave = None
        self._replies.clear()
        self._commands.clear()
        self._busy = False
        self._typing = self._waiting = None
        self._line.clear()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while self._master is not None and view:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                # Nobody reads and the pty buffer is full: a modem without flow control drops it.
                log.debug("simulated modem output dropped: %d bytes", len(view))
                return
            except OSError as exc:
                log.debug("simulated modem write failed: %s", exc)
                return

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # -- the modem's thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                master = self._master
                timeout = self._next_timeout()
            fds = [self._wake_r] + ([master] if master is not None else [])
            try:
                readable, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                readable = []  # the pty was closed under us by vanish(); loop round
            if self._wake_r in readable:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            with self._lock:
                try:
                    if master is not None and master in readable and master == self._master:
                        self._receive()
                    self._run_due()
                except Exception:  # a bug here must show, not silently turn the modem mute
                    log.exception("simulated modem failed")

    def _next_timeout(self) -> float | None:
        dues = [r.due for r in self._replies[:1]] + [t for t, _ in self._timers]
        if not dues:
            return None
        return max(0.0, min(dues) - time.monotonic())

    def _receive(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:
            return  # EIO: the slave side is being torn down
        if self._muted or not data:
            return
        if self._state.echo:
            self._write(data)
        self._take(data)
        self._next_command()

    def _take(self, data: bytes) -> None:
        """Bytes from the host: command lines, or the message typed after an AT+CMGS."""
        for byte in data:
            if self._typing is not None:
                self._type(self._typing, byte)
            elif byte == 0x0D:
                line = self._line.decode("latin-1")
                self._line.clear()
                if is_send(line):
                    # What follows the command line is the message, even before the prompt is out.
                    self._typing = _Typing(line)
                    self._commands.append(self._typing)
                else:
                    self._commands.append(line)
            elif byte == 0x0A:
                continue
            elif byte == 0x08:
                del self._line[-1:]
            elif byte in (_CTRL_Z, _ESC):
                self._line.clear()  # a stray end of message: what was typed before it is dropped
            elif len(self._line) < _MAX_LINE:
                self._line.append(byte)

    def _type(self, typing: _Typing, byte: int) -> None:
        if byte in (_CTRL_Z, _ESC):
            typing.ended = "sent" if byte == _CTRL_Z else "cancelled"
            self._typing = None
            if self._waiting is typing:
                self._waiting = None
                self._end_typing(typing)
        elif byte == 0x0D:
            if self._state.sms.text_mode:
                # Text mode: a line break in the message, and the prompt again (TS 27.005 3.5.1).
                typing.body.append(0x0A)
                if typing.prompted:
                    self._write(_PROMPT)
        elif byte != 0x0A and len(typing.body) < _MAX_LINE:
            typing.body.append(byte)

    def _run_due(self) -> None:
        now = time.monotonic()
        due_timers = [(t, f) for t, f in self._timers if t <= now]
        self._timers = [(t, f) for t, f in self._timers if t > now]
        for _, action in sorted(due_timers, key=lambda item: item[0]):
            action()
        while self._replies and self._replies[0].due <= time.monotonic():
            reply = self._replies.pop(0)
            self._write(reply.data)
            if reply.then is not None:
                reply.then()
        if not self._replies and self._waiting is None:
            self._busy = False
            self._next_command()

    def _next_command(self) -> None:
        while not self._busy and self._commands and self._master is not None:
            item = self._commands.popleft()
            if isinstance(item, _Typing):
                self.received.append(item.line.strip())
                self._start_typing(item)
                continue
            line = item.strip()
            if line[:2].upper() != "AT":
                continue  # line noise: modems look for "AT" and ignore the rest
            self.received.append(line)
            self._handle(line)

    # -- sending a short message -----------------------------------------------------------

    def _start_typing(self, typing: _Typing) -> None:
        """AT+CMGS reached: refuse it, or print the prompt after the usual delay."""
        state = self._state
        refusal = self._sms.refuse_before_prompt(typing.line, state.sms, state.modes.charset, self._sim, state.cmee)
        if refusal is not None:
            self._reply(_SEND_KEY, refusal)
            if self._typing is typing:
                # No prompt, so what the host typed after the command was never a message.
                self._typing = None
                self._take(bytes(typing.body))
            return
        self._busy = True
        due = time.monotonic() + self.default_delay * self.time_scale
        self._replies.append(_Reply(due, _PROMPT, then=lambda: self._prompted(typing)))

    def _prompted(self, typing: _Typing) -> None:
        typing.prompted = True
        if typing.ended is None:
            self._waiting = typing
        else:
            self._end_typing(typing)

    def _end_typing(self, typing: _Typing) -> None:
        """Ctrl-Z sends the message; ESC cancels it and the modem answers OK."""
        if typing.ended == "cancelled":
            self._reply(_SEND_KEY, ["OK"])
            return
        state = self._state
        answer = self._sms.send(typing.line, bytes(typing.body), state.sms, state.modes.charset, state.cmee)
        if answer is None:
            log.debug("simulated modem %s: a send left unanswered", self.port)
            return
        self._reply(_SEND_KEY, answer)

    # -- answering -------------------------------------------------------------------------

    def _delay(self, key: str) -> float:
        return self._delays.get(key, self.default_delay) * self.time_scale

    def _reply(self, key: str, lines: Sequence[str], then: Callable[[], None] | None = None) -> None:
        """Schedule the answer ``lines`` (information lines, then a final result)."""
        info, final = _split_final(lines)
        data = ""
        if info:
            data += "\r\n" + "\r\n".join(info) + "\r\n"
        urc, self._pending_urc = self._pending_urc, None
        if urc is not None:
            data += f"\r\n{urc}\r\n"
        if final is not None:
            data += f"\r\n{final}\r\n"
            if urc is not None:
                data += f"\r\n{urc}\r\n"
        self._busy = True
        self._replies.append(_Reply(time.monotonic() + self._delay(key), data.encode("latin-1", "replace"), then))

    def _cme(self, code: int) -> str:
        if self._state.cmee == 0:
            return "ERROR"
        if self._state.cmee == 1:
            return f"+CME ERROR: {code}"
        return f"+CME ERROR: {CME_TEXT.get(code, 'unknown')}"

    def _sim_error(self) -> str:
        return self._cme(10 if self._sim == "absent" else 11)

    def _handle(self, line: str) -> None:
        key = normalise(line)
        state = self._state
        if key in self._reset_commands:
            self._reply(key, ["OK"], then=lambda: self._later(self.reset_gap, self._begin_reset))
            return
        if key == "AT":
            self._reply(key, ["OK"])
        elif key in ("ATE", "ATE0", "ATE1"):
            state.echo = key == "ATE1"
            self._reply(key, ["OK"])
        elif key.startswith("AT+CMEE"):
            self._reply(key, self._cmee(key))
        elif key.startswith("AT+CSCS"):
            self._reply(key, self._cscs(key))
        elif self._sms.handles(key):
            if self._sim != "ready" and not key.endswith("=?"):
                self._reply(key, [cms_line(310 if self._sim == "absent" else 311, self._state.cmee)])
            else:
                self._reply(key, self._sms.answer(key, self._state.sms, self._state.modes.charset, self._state.cmee))
        elif _REG_SET.match(key):
            match = _REG_SET.match(key)
            assert match is not None
            n = int(match.group(2))
            if n > 5:
                self._reply(key, [self._cme(50)])
            else:
                setattr(state.modes, match.group(1).lower(), n)
                self._reply(key, ["OK"])
        elif key.startswith("AT+COPS=3,"):
            fmt = key.rsplit(",", 1)[1]
            if fmt in ("0", "1", "2"):
                state.modes.cops_format = int(fmt)
                self._reply(key, ["OK"])
            else:
                self._reply(key, [self._cme(50)])
        elif key == "AT+CPIN?":
            if self._sim == "absent":
                self._reply(key, [self._cme(10)])
            else:
                self._reply(key, ["+CPIN: READY" if self._sim == "ready" else "+CPIN: SIM PIN", "OK"])
        elif _CPIN_SET.match(key):
            self._reply(key, self._cpin(line))
        elif key == "AT+CGMM" and self.cgmm is not None:
            self._reply(key, [self.cgmm, "OK"])
        elif self._sim != "ready" and (key in self._dynamic or key in SIM_COMMANDS):
            self._reply(key, [self._sim_error()])
        elif key in self._dynamic and not _refused(self.transcript.answer(key)):
            answer = dynamic_answer(self.driver, key, self.radio(), state.modes)
            assert answer is not None
            self._reply(key, answer)
        else:
            recorded = self.transcript.answer(key)
            self._reply(key, list(recorded) if recorded is not None else ["ERROR"])

    def _power_on_state(self) -> _State:
        state = _State()
        state.modes.charset = self.charset_at_power_on
        return state

    def _cscs(self, key: str) -> list[str]:
        if key == "AT+CSCS?":
            return [f'+CSCS: "{self._state.modes.charset}"', "OK"]
        if key == "AT+CSCS=?":
            return ["+CSCS: (" + ",".join(f'"{name}"' for name in CHARSETS) + ")", "OK"]
        match = _CSCS_SET.match(key)
        if match and match.group(1) in CHARSETS:
            self._state.modes.charset = match.group(1)
            return ["OK"]
        return [self._cme(50)]

    def _cmee(self, key: str) -> list[str]:
        if key == "AT+CMEE?":
            return [f"+CMEE: {self._state.cmee}", "OK"]
        if key == "AT+CMEE=?":
            return ["+CMEE: (0-2)", "OK"]
        if key in ("AT+CMEE=0", "AT+CMEE=1", "AT+CMEE=2"):
            self._state.cmee = int(key[-1])
            return ["OK"]
        return [self._cme(50)]

    def _cpin(self, line: str) -> list[str]:
        if self._sim == "absent":
            return [self._cme(10)]
        if self._sim == "ready":
            return [self._cme(3)]
        match = _CPIN_SET.match(line.strip())
        if match and match.group(1) == self.pin:
            self._sim = "ready"
            return ["OK"]
        return [self._cme(16)]

    # -- reset -----------------------------------------------------------------------------

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        self._timers.append((time.monotonic() + seconds, action))
        self._wake()

    def _begin_reset(self) -> None:
        self.resets += 1
        # A rebooting modem forgets what it was doing: no stale answers after it comes back.
        self._commands.clear()
        self._replies.clear()
        self._busy = False
        self._line.clear()
        self._typing = self._waiting = None
        self._close_pty()
        self._pending_urc = None
        self._state = self._power_on_state()
        self._sim = self._sim_at_power_on
        self._timers.clear()
        self._later(self.reset_s, self._end_reset)

    def _end_reset(self) -> None:
        if self._master is None and not self._stop.is_set():
            self._open_pty()
        cpin = {"ready": "READY", "pin": "SIM PIN", "absent": "NOT READY"}[self._sim]
        for number, message in enumerate(self.boot_messages):
            text = message.format(cpin=cpin)
            self._later(self.boot_delay + 0.05 * number, lambda text=text: self._write(_frame(text)))


def _frame(text: str) -> bytes:
    return f"\r\n{text}\r\n".encode("latin-1", "replace")


def _split_final(lines: Sequence[str]) -> tuple[list[str], str | None]:
    """Information lines (outer blank lines dropped) and the final result, if the answer has one."""
    body = list(lines)
    while body and not body[-1].strip():
        body.pop()
    final = None
    if body and _FINALS.match(body[-1].strip()):
        final = body.pop().strip()
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    return body, final


def _refused(recorded: tuple[str, ...] | None) -> bool:
    """The transcript says the model rejects this command (no information, an error final)."""
    if recorded is None:
        return False
    info, final = _split_final(recorded)
    return not info and final is not None and final != "OK"
