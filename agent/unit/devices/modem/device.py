"""Modem: a model profile driving an AtChannel, with the recovery ladder field units need.

When the modem stops answering or its port vanishes, a query climbs a ladder before it gives
up: wait for the port and reopen it; then send the profile's reset command and wait for the
modem to come back; then report.  Every rung climbed is recorded in ``recoveries`` so the
agent can log it as an event.  Nothing here waits longer than the profile's timeouts, so a
dead modem costs a bounded time, never a hung agent.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from agent.unit.devices.modem.at import AtChannel, RawLog
from agent.unit.devices.modem.errors import AtCommandError, AtParseError, AtTimeout, ModemError, PortGone
from agent.unit.devices.modem.parse_3gpp import parse_cops_scan, parse_cpin, parse_cscs
from agent.unit.devices.modem.profiles import ModemProfile, detect_by_cgmm, detect_by_usb, find_ports, load_profile
from agent.unit.devices.modem.signal import error_signal, facts_from_answer, signal_from_facts
from agent.unit.devices.modem.values import OperatorChoice, SignalFacts
from agent.shared.reading import Signal

log = logging.getLogger(__name__)


class ModemUnavailable(ModemError):
    """The modem did not answer, even after reopening the port and resetting it."""


@dataclass
class Recovery:
    action: str        # "reopen" | "reset"
    reason: str
    ok: bool


@dataclass
class Modem:
    port: str
    profile: ModemProfile | None = None
    baud: int = 115200
    raw_log: RawLog | None = None
    port_wait: float = 10.0
    recover: bool = True   # climb the reopen/reset ladder (the agent); a one-shot query does not
    sleep: Callable[[float], None] = time.sleep
    recoveries: list[Recovery] = field(default_factory=list)
    charset: str | None = None   # AT+CSCS: the character set the modem prints names in, read at connect

    def __post_init__(self) -> None:
        extra = tuple(self.profile.extra_final) if self.profile else ()
        timeout = self.profile.timeout if self.profile else 5.0
        self.channel = AtChannel(self.port, self.baud, timeout=timeout, extra_finals=extra, raw_log=self.raw_log)

    # -- setup ---------------------------------------------------------------------------

    def connect(self) -> ModemProfile:
        """Open the port, find the model if not given, and send its init commands."""
        self.channel.open()
        if self.profile is None:
            self.profile = self._detect()
            self.channel.extra_finals = tuple(self.profile.extra_final)
            self.channel.timeout = self.profile.timeout
        self._initialise()
        return self.profile

    def _detect(self) -> ModemProfile:
        cgmm = self._answer("AT+CGMM")
        real = os.path.realpath(self.port)
        usb = next((p for p in find_ports() if p.device == real), None)
        if usb is not None:
            found = detect_by_usb(usb.vid, usb.pid, cgmm)
            if found is not None:
                return found
        return detect_by_cgmm(cgmm or "")

    def _answer(self, command: str) -> str | None:
        try:
            return self.channel.query(command, 3.0)
        except (AtCommandError, AtTimeout):
            return None

    def _initialise(self, just_appeared: bool = False) -> None:
        assert self.profile is not None
        if just_appeared and self.profile.ready_delay:  # a freshly booted modem answers AT before it is ready
            self.sleep(self.profile.ready_delay)
        for attempt in range(max(1, self.profile.probe_tries)):
            try:
                self.channel.query("AT", 2.0)
                break
            except (AtTimeout, AtCommandError):
                if attempt + 1 == max(1, self.profile.probe_tries):
                    raise ModemUnavailable(f"no answer to AT on {self.port}") from None
        for command in self.profile.init:
            try:
                self.channel.query(command)
            except AtCommandError as exc:  # an optional setting the firmware lacks
                log.info("init command not accepted: %s", exc)
        self.charset = self._read_charset()

    def _read_charset(self) -> str | None:
        """The modem's AT+CSCS character set (operator names are printed in it); None if it will not say."""
        answer = self._answer("AT+CSCS?")
        try:
            return parse_cscs(answer) if answer is not None else None
        except AtParseError:
            return None

    def close(self) -> None:
        self.channel.close()

    # -- queries with recovery ------------------------------------------------------------

    def query(self, command: str, timeout: float | None = None) -> str:
        """Information text of ``command``, climbing the recovery ladder if the modem is gone."""
        try:
            return self.channel.query(command, timeout)
        except (AtTimeout, PortGone) as first:
            reason = str(first)
        if not self.recover:
            raise ModemUnavailable(f"modem on {self.port} does not answer: {reason}")
        if self._reopen(reason):
            try:
                return self.channel.query(command, timeout)
            except (AtTimeout, PortGone) as second:
                reason = str(second)
        if self._reset(reason):
            try:
                return self.channel.query(command, timeout)
            except (AtTimeout, PortGone) as third:
                reason = str(third)
        raise ModemUnavailable(f"modem on {self.port} does not answer: {reason}")

    def _reopen(self, reason: str) -> bool:
        log.warning("modem: %s; reopening %s", reason, self.port)
        self.channel.close()
        deadline = time.monotonic() + self.port_wait
        while True:
            try:
                self.channel.open()
                self.channel.query("AT", 2.0)
                self._record("reopen", reason, True)
                return True
            except (PortGone, AtTimeout, AtCommandError):
                self.channel.close()
                if time.monotonic() >= deadline:
                    self._record("reopen", reason, False)
                    return False
                self.sleep(0.2)

    def _reset(self, reason: str) -> bool:
        profile = self.profile
        if profile is None or not profile.reset_commands:
            return False
        log.warning("modem still silent; resetting it with %s", ", ".join(profile.reset_commands))
        try:
            self.channel.open()
            for command in profile.reset_commands:
                self.channel.command(command, 3.0)
        except (PortGone, AtTimeout):
            pass  # the reset may take the port down before it answers
        self.channel.close()
        self.sleep(min(profile.reset_wait, 2.0))
        ok = self._wait_back(profile.reset_wait)
        self._record("reset", reason, ok)
        if ok:
            try:
                self._initialise(just_appeared=True)
            except ModemUnavailable:
                return False
        return ok

    def _wait_back(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.channel.open()
                self.channel.query("AT", 2.0)
                return True
            except (PortGone, AtTimeout, AtCommandError):
                self.channel.close()
                self.sleep(0.5)
        return False

    def _record(self, action: str, reason: str, ok: bool) -> None:
        self.recoveries.append(Recovery(action, reason, ok))
        (log.info if ok else log.error)("modem %s %s (%s)", action, "worked" if ok else "FAILED", reason)

    # -- measurements --------------------------------------------------------------------

    def sim_state(self) -> str:
        """READY, SIM PIN, SIM PUK, NOT INSERTED ... as the modem says."""
        try:
            return parse_cpin(self.query("AT+CPIN?"))
        except AtCommandError as exc:
            text = (exc.text or exc.kind).upper()
            if exc.code == 10 or "NOT INSERTED" in text:
                return "NOT INSERTED"
            if exc.code == 13 or "FAILURE" in text:
                return "SIM FAILURE"
            return text
        except AtParseError:
            return "UNKNOWN"

    def signal(self) -> Signal:
        """The ``signal`` part of a reading; errors become a reading with ``error`` set."""
        assert self.profile is not None, "connect() first"
        try:
            sim = self.sim_state()
            if sim != "READY":
                return error_signal(_sim_reason(sim), registration="not_registered")
            facts: list[SignalFacts] = []
            for command in self.profile.signal_commands:
                try:
                    facts.append(facts_from_answer(command, self.query(command), self.charset))
                except AtCommandError as exc:
                    log.debug("signal command not answered: %s", exc)
                except AtParseError as exc:
                    log.warning("could not read the answer to %s: %s", command, exc)
        except ModemUnavailable as exc:
            return error_signal(str(exc))
        if not facts:
            return error_signal(f"modem on {self.port} answered none of its signal commands")
        return signal_from_facts(facts)

    def scan(self) -> list[OperatorChoice]:
        """Operators visible here (AT+COPS=?; can take minutes)."""
        assert self.profile is not None, "connect() first"
        return parse_cops_scan(self.query(self.profile.scan_command, self.profile.scan_timeout), self.charset)


def _sim_reason(state: str) -> str:
    if state == "NOT INSERTED":
        return "SIM not inserted"
    if "PIN" in state or "PUK" in state:
        return f"SIM locked ({state} required); unlock it or disable the PIN"
    return f"SIM not ready ({state})"


def open_modem(port: str, model: str | None = None, baud: int = 115200, *, raw_log: RawLog | None = None,
               recover: bool = False, command_timeout: float | None = None) -> Modem:
    """The modem on ``port``, connected: its model found (or the profile ``model`` names), its init sent.

    ``recover`` lets its queries climb the reopen/reset ladder (the agent does; a one-shot
    query reports instead).  ``command_timeout`` caps the profile's command timeout, for a
    caller that must not wait long.  A failure (ProfileError for ``model``, PortGone,
    ModemUnavailable, ...) is raised with the port closed again.
    """
    profile = load_profile(model) if model else None
    modem = Modem(port, profile, baud, raw_log=raw_log, recover=recover)

    def cap_timeout() -> None:
        if command_timeout is not None:
            modem.channel.timeout = min(modem.channel.timeout, command_timeout)

    try:
        cap_timeout()
        modem.connect()
        cap_timeout()  # a detected model brings its own timeout
    except BaseException:
        modem.close()
        raise
    return modem
