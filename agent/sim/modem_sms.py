"""The short-message side of the simulated modem: TS 27.005 commands, the SIM's message
storage, and the faults a field unit meets when it sends.

:class:`SmsSide` answers ``AT+CMGF``, ``AT+CSCA``, ``AT+CPMS``, ``AT+CNMI``, ``AT+CMGL``,
``AT+CMGR`` and ``AT+CMGD``, checks an ``AT+CMGS`` before the modem prints its ``> ``
prompt, and sends what the host typed after it.  The pseudo-terminal, the prompt and the
timing stay in :mod:`agent.sim.modem`; everything here is called with the modem's lock held.

Each answer's layout is copied from a real capture in ``tests/data/sms/answers.jsonl``; the
comment beside it names the row.  Where no capture shows a form, the layout is TS 27.005's
and the comment says so.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from agent.shared.gsm_alphabet import GsmAlphabetError, is_gsm7, to_septets
from agent.shared.sms_pdu import SmsPduError, decode_deliver, decode_submit
from agent.unit.devices.modem import charsets
from agent.unit.devices.modem.parse_sms import CMS_ERRORS

if TYPE_CHECKING:
    from agent.sim.sms_network import SmsNetwork

log = logging.getLogger(__name__)

SmsFault = Literal["no_credit", "no_network", "smsc_unknown", "no_answer"]

# What AT+CMGS answers under each fault.  "no_credit": 21, "short message transfer
# rejected", one of cms_error_kind's "no_credit_or_barred" codes and the one a real modem
# printed for a refused send (answers.jsonl, zabsalahid/serialport-gsm issue 50); operators
# differ (docs/sms-heartbeat.md), so fail_sms takes another code too.  "no_answer": the send
# never finishes, as a Globe SIM out of load did (serialport-gsm issue 119).
FAULT_CODES: dict[str, int | None] = {"no_credit": 21, "no_network": 331, "smsc_unknown": 330, "no_answer": None}

DEFAULT_SMSC = "+6281100000"
DEFAULT_CAPACITY = 30  # a SIM's "SM" storage: 30 on a Huawei E3131 (gammu issue 333), 10 to 50 on others
# AT+CNMI at power-on: forward URCs, store a received message and say so with +CMTI (EC25 default).
DEFAULT_CNMI = (2, 1, 0, 0, 0)

STATUS_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
_SEND = re.compile(r"^AT\+CMGS=(.*)$", re.IGNORECASE)
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_MAX_BODY = 1024  # bytes typed after the prompt; a real modem's buffer is about this size


@dataclass
class SmsModes:
    """Settings the host changes, lost at a reset as a modem loses them."""

    text_mode: bool = False  # AT+CMGF: TS 27.005 3.2.3 makes PDU mode (0) the default
    cnmi: tuple[int, ...] = DEFAULT_CNMI

    @property
    def announces(self) -> bool:
        """Whether a stored message is announced with +CMTI: TS 27.005 3.4.1 <mode> 1..3, <mt> 1."""
        return len(self.cnmi) >= 2 and self.cnmi[0] in (1, 2, 3) and self.cnmi[1] == 1


@dataclass(frozen=True)
class StoredSms:
    """One message in the SIM's storage."""

    index: int
    stat: int  # 0 received unread, 1 received read, 2 stored unsent, 3 stored sent (TS 27.005 3.1)
    pdu: str  # the SMS-DELIVER as AT+CMGL prints it, service centre first
    sender: str
    sent_at: datetime
    text: str

    @property
    def tpdu_octets(self) -> int:
        """<length> of +CMGL/+CMGR: the octets after the service centre's address."""
        return len(self.pdu) // 2 - 1 - int(self.pdu[:2], 16)


@dataclass(frozen=True)
class SentSms:
    """A message the host sent with AT+CMGS, as the modem handed it to the network."""

    to: str
    text: str
    reference: int


@dataclass
class SmsSide:
    """The SIM's message storage and service centre, and what AT+CMGS does with a message.

    ``number`` is the SIM's own MSISDN, the sender the network stamps on what it sends.
    ``smsc`` None is a SIM without a service centre number: a PDU that names none cannot go.
    """

    number: str | None = None
    network: SmsNetwork | None = None
    smsc: str | None = DEFAULT_SMSC
    capacity: int = DEFAULT_CAPACITY
    fault: SmsFault | None = None
    fault_code: int | None = None
    messages: dict[int, StoredSms] = field(default_factory=dict)
    sent: list[SentSms] = field(default_factory=list)
    references: int = 0

    # -- storage -----------------------------------------------------------------------------

    def store(self, pdu: str) -> int | None:
        """Keep a received SMS-DELIVER; its index, or None when the storage is full."""
        message = decode_deliver(pdu)
        if len(self.messages) >= self.capacity:
            return None
        index = next(i for i in range(1, self.capacity + 1) if i not in self.messages)
        self.messages[index] = StoredSms(index, 0, pdu.upper(), message.sender, message.sent_at, message.text)
        return index

    # -- commands ----------------------------------------------------------------------------

    def handles(self, key: str) -> bool:
        return key.startswith(("AT+CMGF", "AT+CSCA", "AT+CPMS", "AT+CNMI", "AT+CMGL", "AT+CMGR", "AT+CMGD"))

    def answer(self, key: str, modes: SmsModes, charset: str, cmee: int) -> list[str]:
        """The answer to one of the commands :meth:`handles`, updating ``modes``."""
        def error(code: int) -> list[str]:
            return [cms_line(code, cmee)]

        if key == "AT+CMGF?":
            return [f"+CMGF: {int(modes.text_mode)}", "OK"]  # TS 27.005 3.2.3
        if key == "AT+CMGF=?":
            return ["+CMGF: (0-1)", "OK"]
        if key in ("AT+CMGF=0", "AT+CMGF=1"):
            modes.text_mode = key.endswith("1")
            return ["OK"]
        if key == "AT+CSCA?":
            return [self._csca(charset), "OK"]
        if key.startswith("AT+CSCA="):
            return self._set_csca(key, charset, error)
        if key == "AT+CPMS?":
            # Names with used and total of each of the three, as a TP-Link TL-MR6400 prints them
            # (answers.jsonl, obsy/sms_tool issue 3: +CPMS: "SM",0,20,"SM",0,20,"SM",0,20).
            used = len(self.messages)
            return [f'+CPMS: "SM",{used},{self.capacity},"SM",{used},{self.capacity},"SM",{used},{self.capacity}',
                    "OK"]
        if key == "AT+CPMS=?":
            return ['+CPMS: ("SM"),("SM"),("SM")', "OK"]  # the test form of a Brovi E3372 (gammu tests/at-cpms)
        if key.startswith("AT+CPMS="):
            names = [name.strip().strip('"') for name in key[len("AT+CPMS="):].split(",")]
            if not 1 <= len(names) <= 3 or any(name != "SM" for name in names):
                return error(302)  # only the SIM's storage is simulated
            # The set form has no names, always three pairs (gnokii issue 1: +CPMS: 2,10,2,10,2,10).
            used = len(self.messages)
            return [f"+CPMS: {used},{self.capacity},{used},{self.capacity},{used},{self.capacity}", "OK"]
        if key == "AT+CNMI?":
            return ["+CNMI: " + ",".join(str(value) for value in modes.cnmi), "OK"]
        if key == "AT+CNMI=?":
            return ["+CNMI: (0-2),(0-1),(0),(0-1),(0-1)", "OK"]
        if key.startswith("AT+CNMI="):
            return self._set_cnmi(key, modes, error)
        if key.startswith("AT+CMGL"):
            return self._list(key, modes, charset, error)
        if key.startswith("AT+CMGR="):
            return self._read(key, modes, charset, error)
        if key.startswith("AT+CMGD="):
            return self._delete(key, error)
        return ["ERROR"]

    def _csca(self, charset: str) -> str:
        # As an Indosat SIM answers (answers.jsonl, gammu issue 242: +CSCA: "+62816124",145).
        # A SIM without a number prints an empty one of type 129, as unknown numbers are typed.
        if self.smsc is None:
            return '+CSCA: "",129'
        return f'+CSCA: "{_in_charset(self.smsc, charset)}",{145 if self.smsc.startswith("+") else 129}'

    def _set_csca(self, key: str, charset: str, error: Callable[[int], list[str]]) -> list[str]:
        value = key[len("AT+CSCA="):].split(",")[0].strip().strip('"')
        number = charsets.decode(value, charset)
        if number == "":
            self.smsc = None
            return ["OK"]
        if not _NUMBER.fullmatch(number):
            return error(304)
        self.smsc = number
        return ["OK"]

    def _set_cnmi(self, key: str, modes: SmsModes, error: Callable[[int], list[str]]) -> list[str]:
        values = key[len("AT+CNMI="):].split(",")
        if not values or len(values) > 5 or not all(v.strip().isdigit() or v.strip() == "" for v in values):
            return ["ERROR"]
        numbers = [int(v) if v.strip() else default for v, default in zip(values, DEFAULT_CNMI)]
        numbers += list(DEFAULT_CNMI[len(numbers):])
        # <mt> 2 and 3 route a message to the host (+CMT) without storing it: not simulated.
        if numbers[0] > 3 or numbers[1] > 1:
            return error(303)
        modes.cnmi = tuple(numbers)
        return ["OK"]

    def _selected(self, stat: int) -> list[StoredSms]:
        return [self.messages[i] for i in sorted(self.messages) if stat == 4 or self.messages[i].stat == stat]

    def _mark_read(self, message: StoredSms) -> None:
        # TS 27.005 3.4.2 and 3.4.3: a received unread message listed or read becomes read.
        if message.stat == 0:
            self.messages[message.index] = replace(message, stat=1)

    def _list(self, key: str, modes: SmsModes, charset: str, error: Callable[[int], list[str]]) -> list[str]:
        argument = key[len("AT+CMGL="):] if key.startswith("AT+CMGL=") else ""
        if argument == "?":
            if modes.text_mode:
                return ['+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")', "OK"]
            return ["+CMGL: (0-4)", "OK"]
        if modes.text_mode:
            wanted = argument.strip('"') if argument else "REC UNREAD"  # TS 27.005 4.1: the default
            if wanted not in (*STATUS_TEXT, "ALL"):
                return error(305)
            stat = 4 if wanted == "ALL" else STATUS_TEXT.index(wanted)
        else:
            if argument and not argument.isdigit() or argument and int(argument) > 4:
                return error(304)
            stat = int(argument) if argument else 0
        lines: list[str] = []
        for message in self._selected(stat):
            if modes.text_mode:
                # As a SIM900 lists in text mode (answers.jsonl, MarcoMartines/GSM-GPRS-GPS-Shield
                # issue 30): index, status, sender, an empty <alpha>, the time stamp; the text below.
                lines.append(f'+CMGL: {message.index},"{STATUS_TEXT[message.stat]}",'
                             f'"{_in_charset(message.sender, charset)}","","{scts_text(message.sent_at)}"')
                lines.append(_in_charset(message.text, charset))
            else:
                # As a Huawei E1752 lists in PDU mode (answers.jsonl, gammu issue 126:
                # +CMGL: 0,0,,23 and the PDU on the next line).
                lines.append(f"+CMGL: {message.index},{message.stat},,{message.tpdu_octets}")
                lines.append(message.pdu)
            self._mark_read(message)
        return lines + ["OK"]

    def _read(self, key: str, modes: SmsModes, charset: str, error: Callable[[int], list[str]]) -> list[str]:
        argument = key[len("AT+CMGR="):]
        if not argument.isdigit():
            return error(305 if modes.text_mode else 304)
        index = int(argument)
        if not 1 <= index <= self.capacity:
            return error(321)
        message = self.messages.get(index)
        if message is None:
            return ["OK"]  # an empty place answers a bare OK (parse_cmgr_pdu reads it as nothing there)
        self._mark_read(message)
        if modes.text_mode:
            # TS 27.005 3.4.3's layout for an SMS-DELIVER without AT+CSDH=1; no capture shows it.
            return [f'+CMGR: "{STATUS_TEXT[message.stat]}","{_in_charset(message.sender, charset)}","",'
                    f'"{scts_text(message.sent_at)}"', _in_charset(message.text, charset), "OK"]
        # As the gammu collection's modems read in PDU mode (tests/at-sms/01.dump: +CMGR: 1,,78).
        return [f"+CMGR: {message.stat},,{message.tpdu_octets}", message.pdu, "OK"]

    def _delete(self, key: str, error: Callable[[int], list[str]]) -> list[str]:
        parts = key[len("AT+CMGD="):].split(",")
        if not parts[0].isdigit() or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("", "0", "1", "2", "3", "4")):
            return error(304)
        index = int(parts[0])
        flag = int(parts[1]) if len(parts) == 2 and parts[1] else 0
        if flag == 0 and not 1 <= index <= self.capacity:
            return error(321)
        # TS 27.005 3.5.4 <delflag>: 1 every read message, 2 also sent, 3 also unsent, 4 all.
        doomed = {1: {1}, 2: {1, 3}, 3: {1, 2, 3}, 4: {0, 1, 2, 3}}.get(flag)
        if doomed is None:
            self.messages.pop(index, None)
        else:
            for i in [i for i, m in self.messages.items() if m.stat in doomed]:
                del self.messages[i]
        return ["OK"]

    # -- sending -----------------------------------------------------------------------------

    def refuse_before_prompt(self, line: str, modes: SmsModes, charset: str, sim: str, cmee: int) -> list[str] | None:
        """Why ``AT+CMGS=...`` gets no prompt (an error answer), or None: the modem prints ``> ``."""
        if sim != "ready":
            return [cms_line(310 if sim == "absent" else 311, cmee)]
        argument = _SEND.match(line.strip())
        assert argument is not None
        value = argument.group(1).strip()
        if modes.text_mode:
            number = charsets.decode(value.split(",")[0].strip().strip('"'), charset)
            if not _NUMBER.fullmatch(number):
                return [cms_line(305, cmee)]
        elif not value.isdigit() or not 7 <= int(value) <= 164:
            return [cms_line(304, cmee)]  # a TPDU is 7 (empty) to 164 octets
        return None

    def send(self, line: str, body: bytes, modes: SmsModes, charset: str, cmee: int) -> list[str] | None:
        """The answer to a message typed after the prompt and ended by Ctrl-Z; None: no answer ever comes."""
        match = _SEND.match(line.strip())
        assert match is not None
        value = match.group(1).strip()
        if modes.text_mode:
            to = charsets.decode(value.split(",")[0].strip().strip('"'), charset)
            text = _typed_text(body, charset)
            if text is None or not 0 < _length(text) <= (160 if is_gsm7(text) else 70):
                return [cms_line(305, cmee)]
        else:
            pdu = "".join(chr(b) for b in body if chr(b) not in " \r\n\t")
            try:
                to, text = decode_submit(pdu)
                names_smsc = int(pdu[:2], 16) > 0
                if len(pdu) // 2 - 1 - int(pdu[:2], 16) != int(value):
                    raise SmsPduError(f"AT+CMGS={value} but the TPDU has {len(pdu) // 2 - 1 - int(pdu[:2], 16)} octets")
            except (SmsPduError, ValueError) as exc:
                log.debug("simulated modem refused a PDU: %s", exc)
                return [cms_line(304, cmee)]
            if not names_smsc and self.smsc is None:
                return [cms_line(330, cmee)]
        if modes.text_mode and self.smsc is None:
            return [cms_line(330, cmee)]
        if self.fault is not None:
            code = self.fault_code if self.fault_code is not None else FAULT_CODES[self.fault]
            return None if code is None else [cms_line(code, cmee)]
        if self.network is not None:
            refused = self.network.submit(self.number or "", to, text)
            if refused is not None:
                return [cms_line(refused, cmee)]
        self.references = (self.references + 1) % 256
        self.sent.append(SentSms(to, text, self.references))
        # As a modem in a vendor's troubleshooting log answers (answers.jsonl, Ozeki: +CMGS: 134).
        return [f"+CMGS: {self.references}", "OK"]


def is_send(line: str) -> bool:
    """``AT+CMGS=...``: the command after which the host types a message."""
    return _SEND.match(line.strip()) is not None


def cms_line(code: int, cmee: int) -> str:
    """``+CMS ERROR: <code>``; under AT+CMEE=2 the words, as a SIM800L prints them
    (answers.jsonl, jakhax/raspberry-pi-sim800l-gsm-module issue 4)."""
    if cmee == 2 and code in CMS_ERRORS:
        return f"+CMS ERROR: {CMS_ERRORS[code]}"
    return f"+CMS ERROR: {code}"


def scts_text(moment: datetime) -> str:
    """A service centre time stamp as text mode prints it: ``yy/MM/dd,hh:mm:ss±zz`` (zone in quarter hours)."""
    offset = moment.utcoffset()
    quarters = int(offset.total_seconds()) // 900 if offset is not None else 0
    sign = "-" if quarters < 0 else "+"
    return moment.strftime("%y/%m/%d,%H:%M:%S") + f"{sign}{abs(quarters):02d}"


def _length(text: str) -> int:
    try:
        return len(to_septets(text))
    except GsmAlphabetError:
        return len(text)


def _in_charset(text: str, charset: str) -> str:
    """A string parameter or text as the modem prints it in the AT+CSCS character set."""
    if charset == "UCS2":
        return text.encode("utf-16-be").hex().upper()
    if charset == "GSM" and is_gsm7(text):
        return "".join(chr(code) for code in to_septets(text))
    return "".join(ch if " " <= ch <= "~" or ch == "\n" else "?" for ch in text)


def _typed_text(body: bytes, charset: str) -> str | None:
    """What the host typed in text mode, read in the AT+CSCS character set; None if it is not that."""
    raw = body.decode("latin-1")
    if charset == "UCS2":
        return charsets.ucs2("".join(raw.split()))
    if charset == "GSM":
        return charsets.gsm_default(raw)
    return raw
