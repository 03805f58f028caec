"""AT response framing: which line ends a command, which is an unsolicited result, which is echo.

Pure functions over lines; the I/O lives in :mod:`agent.unit.devices.modem.at`.

- A *final result* ends a command: ``OK``, ``ERROR``, ``+CME ERROR: n``, ``+CMS ERROR: n``,
  ``NO CARRIER``, ``BUSY``, ``NO ANSWER``, ``NO DIALTONE``, plus any model-specific strings
  from its profile (Huawei's ``COMMAND NOT SUPPORT``).
- An *unsolicited result code* (URC) may arrive at any time, also inside or right after a
  reply: ``+CEREG: 1`` after ``OK`` in the same read is the classic case.  While a command runs,
  a line that starts with that command's own prefix is its answer (``AT+CREG?`` is answered by
  ``+CREG: 2,1,...``); any other line with a known URC prefix is a URC.  Between commands every
  line is a URC.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from agent.unit.devices.modem.errors import AtCommandError

STANDARD_FINALS_OK = ("OK",)
STANDARD_FINALS_ERROR = ("ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")

URC_PREFIXES = (
    "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+CPIN:", "+CGEV:", "+CMTI:", "+CMT:", "+CDS:", "+CBM:",
    "+CRING:", "RING", "+CLIP:", "+CUSD:", "+CIEV:", "+CTZV:", "+CTZE:", "+CTZEU:", "+NITZ", "*PSUTTZ:", "+PACSP",
    "RDY", "POWERED DOWN", "NORMAL POWER DOWN", "+QIND:", "+QUSIM:", "+QSTAT:", "+QGPSURC:", "+QNITZ:",
    "+CPIN: ", "PB DONE", "SMS DONE", "+CNSMOD:", "+CSQN:", "+CGPSINFO:", "^RSSI:", "^HCSQ:", "^MODE:",
    "^SRVST:", "^SIMST:", "^BOOT:", "^DSFLOWRPT:", "^NWTIME:", "^SYSSTART", "#QSS:", "+CSCON:",
)

# TS 27.007 section 9.2: the +CME ERROR codes a field unit meets (numeric form, AT+CMEE=1).
CME_TEXT = {
    0: "phone failure", 1: "no connection to phone", 3: "operation not allowed", 4: "operation not supported",
    5: "PH-SIM PIN required", 10: "SIM not inserted", 11: "SIM PIN required", 12: "SIM PUK required",
    13: "SIM failure", 14: "SIM busy", 15: "SIM wrong", 16: "incorrect password", 17: "SIM PIN2 required",
    18: "SIM PUK2 required", 20: "memory full", 21: "invalid index", 22: "not found", 23: "memory failure",
    30: "no network service", 31: "network timeout", 32: "network not allowed - emergency calls only",
    100: "unknown", 103: "illegal MS", 106: "illegal ME", 107: "GPRS services not allowed",
    111: "PLMN not allowed", 112: "location area not allowed", 113: "roaming not allowed in this location area",
}

# Some firmware writes the prefix in mixed case ("+CMS Error: 500"); the code is what counts.
_ERROR_RE = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*)$", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Final:
    """How a command ended."""

    ok: bool
    kind: str            # "OK", "ERROR", "+CME ERROR", "+CMS ERROR", or the model's own string
    code: int | None = None
    text: str | None = None

    def error_for(self, command: str) -> AtCommandError:
        return AtCommandError(command, self.kind, self.code, self.text)


def clean_line(raw: str) -> str:
    """A line as received, without control characters and surrounding blanks."""
    return _CONTROL_RE.sub("", raw).strip()


def final_result(line: str, extra_finals: tuple[str, ...] = ()) -> Final | None:
    """The final result this line is, or None when it is not one."""
    if line in STANDARD_FINALS_OK:
        return Final(True, "OK")
    if line in STANDARD_FINALS_ERROR or line in extra_finals:
        return Final(False, line)
    m = _ERROR_RE.match(line)
    if m:
        family = m.group(1).upper()
        kind = f"+{family} ERROR"
        detail = m.group(2).strip().strip('"')
        if detail.isdigit():
            code = int(detail)
            return Final(False, kind, code, CME_TEXT.get(code) if family == "CME" else None)
        return Final(False, kind, None, detail or None)
    return None


def command_prefix(command: str) -> str | None:
    """The prefix of the lines that answer ``command``: ``AT+CREG?`` -> ``+CREG``; ``ATI`` -> None."""
    body = command.strip()
    if body[:2].upper() != "AT":
        return None
    body = body[2:]
    if not body or body[0] not in "+^#!$%*":
        return None
    m = re.match(r"[+^#!$%*][A-Za-z0-9_]+", body)
    return m.group(0).upper() if m else None


def is_urc(line: str, running_prefix: str | None) -> bool:
    """Whether ``line`` is unsolicited, given the prefix of the command running (None if idle)."""
    if running_prefix is not None and line.upper().startswith(running_prefix + ":"):
        return False
    return line.startswith(URC_PREFIXES)


def is_echo(line: str, command: str) -> bool:
    return line.replace(" ", "").upper() == command.replace(" ", "").upper()


class ResponseLines:
    """One command's response as its lines arrive (each already through :func:`clean_line`):
    its echo left out, unsolicited results told apart, information lines kept, up to the
    final result.  :meth:`add` says what each line was: ``"echo"``, ``"urc"``, ``"info"`` or
    ``"final"`` (then :attr:`final` holds it; lines after it are not this response's)."""

    def __init__(self, command: str, extra_finals: tuple[str, ...] = ()) -> None:
        self.command = command
        self.prefix = command_prefix(command)
        self.extra_finals = extra_finals
        self.lines: list[str] = []
        self.final: Final | None = None
        self._echo_seen = False

    def add(self, line: str) -> str:
        if not self._echo_seen and not self.lines and is_echo(line, self.command):
            self._echo_seen = True
            return "echo"
        final = final_result(line, self.extra_finals)
        if final is not None:
            self.final = final
            return "final"
        if is_urc(line, self.prefix):
            return "urc"
        self.lines.append(line)
        return "info"
