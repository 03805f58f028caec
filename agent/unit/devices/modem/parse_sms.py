"""Pure parsers for the 3GPP TS 27.005 answers about short messages.

- ``+CMTI`` (a message was stored), ``+CPMS`` (how full the storages are), ``+CSCA`` (the
  service centre's number), ``+CMGS`` (the reference of a message sent);
- ``+CMGL`` / ``+CMGR`` in PDU mode (``AT+CMGF=0``): the stored PDUs, decoded by
  :func:`agent.shared.sms_pdu.decode_deliver`; ``+CMGL`` in text mode (``AT+CMGF=1``);
- ``+CMS ERROR``: the code, what it means, and which kind of trouble it is
  (:func:`cms_error_kind`).

A parser given the information text of a response (the lines between the command and its
final result) finds its own line among others; :func:`parse_cmgl_pdu`,
:func:`parse_cmgr_pdu` and :func:`parse_cmgl_text` take the lines themselves, since a
message's text may span several.  Garbage raises :class:`AtParseError`, nothing else does.
Tolerated, as in :mod:`agent.unit.devices.modem.parse_3gpp`: blanks anywhere around fields,
no blank after the colon, ``\\r``, a prefix in lower case, storage names unquoted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.unit.devices.modem import charsets
from agent.unit.devices.modem.errors import AtParseError

__all__ = [
    "CMS_ERRORS", "CmsKind", "StorageUse", "StoredPdu", "StoredText", "cms_error_kind", "cms_meaning", "parse_cmgl_pdu",
    "parse_cmgl_text", "parse_cmgr_pdu", "parse_cmgs", "parse_cms_error", "parse_cmti", "parse_cpms", "parse_csca",
]

CmsKind = Literal["no_credit_or_barred", "network", "sim_full", "sim", "smsc", "other"]

# TS 27.005 3.2.5 <err>: 0..127 are the network's causes (TS 24.011 E.2), 128..255 the
# service centre's (TS 23.040 9.2.3.22), 300..511 the modem's own.  The ones a field unit
# meets, in plain words.
CMS_ERRORS: dict[int, str] = {
    1: "unassigned number",
    8: "operator determined barring",
    10: "call barred",
    17: "network failure",
    21: "short message transfer rejected",
    22: "memory capacity exceeded",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    111: "protocol error",
    127: "interworking",
    128: "telematic interworking not supported",
    129: "short message type 0 not supported",
    130: "cannot replace short message",
    143: "unspecified TP-PID error",
    144: "data coding scheme not supported",
    145: "message class not supported",
    159: "unspecified TP-DCS error",
    160: "command cannot be actioned",
    161: "command unsupported",
    175: "unspecified TP-Command error",
    176: "TPDU not supported",
    192: "SC busy",
    193: "no SC subscription",
    194: "SC system failure",
    195: "invalid SME address",
    196: "destination SME barred",
    197: "SM rejected - duplicate SM",
    208: "SIM SMS storage full",
    209: "no SMS storage capability in SIM",
    210: "error in MS",
    211: "memory capacity exceeded",
    255: "unspecified error cause",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}

# Which trouble a code is, for deciding what to do next.  TS 24.011 gives the network's
# refusal of a subscriber several causes, and operators differ in which one their charging or
# barring sends back; none of the public field reports found ties a code to an exhausted
# balance for certain (docs/sms-heartbeat.md, "When sending fails").  So every refusal of
# *this subscriber* counts as "no_credit_or_barred": top up or ask the operator before trying
# again.  Congestion and outages are "network": try again later.
_KIND: dict[int, CmsKind] = {
    **dict.fromkeys((8, 10, 21, 29, 50, 69, 193, 196), "no_credit_or_barred"),
    **dict.fromkeys((17, 38, 41, 42, 47, 192, 194, 331, 332), "network"),
    **dict.fromkeys((208, 322), "sim_full"),
    **dict.fromkeys((310, 311, 312, 313, 314, 315, 316, 317, 318), "sim"),
    **dict.fromkeys((330,), "smsc"),
}

_STATS_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
_STORAGE = re.compile(r"[A-Za-z]{2}(?:_[A-Za-z])?", re.ASCII)  # SM, ME, MT, SR, BM, "SM_P"
_INT = re.compile(r"[0-9]{1,6}", re.ASCII)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+", re.ASCII)
_NUMBER = re.compile(r"\+?[0-9*#]{1,40}", re.ASCII)
_VERBOSE = re.compile(r"[A-Za-z][A-Za-z0-9 ,.'()/_-]*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# The verbose texts (AT+CMEE=2) are TS 27.005's words, and some firmware's own for the same code.
_KNOWN_TEXT = {meaning.lower(): code for code, meaning in CMS_ERRORS.items()} | {
    "sim full": 322, "unknown": 500, "sc address unknown": 330, "smsc address unknown": 330,
}


@dataclass(frozen=True)
class StoredPdu:
    """One message of an ``AT+CMGL`` / ``AT+CMGR`` answer in PDU mode."""

    index: int  # where it is stored (AT+CMGR's argument for a +CMGR answer)
    stat: int | None  # 0 received unread, 1 received read, 2 stored unsent, 3 stored sent; None: not printed
    length: int  # octets of the TPDU, as the modem counts them (the service centre's not included)
    pdu: str  # the hex, service centre first: agent.shared.sms_pdu.decode_deliver reads it


@dataclass(frozen=True)
class StoredText:
    """One message of an ``AT+CMGL`` answer in text mode."""

    index: int
    status: str  # "REC UNREAD", "REC READ", "STO UNSENT", "STO SENT"
    sender: str  # the originating (or, for a stored outgoing message, destination) address
    sent_at: str | None  # the service centre time stamp as printed ("24/05/01,10:00:00+28"), None if absent
    text: str


@dataclass(frozen=True)
class StorageUse:
    """One storage of a ``+CPMS`` answer: its name (None when the answer gives none) and counts."""

    name: str | None
    used: int
    total: int


# -- shared helpers ------------------------------------------------------------------------

def _show(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 100 else shown[:97] + "..."


def _clean(line: object) -> str:
    if not isinstance(line, str):
        raise AtParseError(f"expected a line of text, got {type(line).__name__}")
    return _CONTROL.sub("", line).strip()


def _lines_of(text: object) -> list[str]:
    if not isinstance(text, str):
        raise AtParseError(f"expected the text of a response, got {type(text).__name__}")
    return [_clean(line) for line in text.replace("\r", "\n").split("\n")]


def _body(line: str, prefix: str) -> str | None:
    """What follows ``prefix:`` on ``line``, or None when the line does not start with it."""
    m = re.match(rf"{re.escape(prefix)}\s*:(.*)$", line, re.IGNORECASE | re.DOTALL)
    return m.group(1).strip() if m else None


def _prefixed(text: object, prefix: str) -> str:
    for line in _lines_of(text):
        body = _body(line, prefix)
        if body is not None:
            return body
    raise AtParseError(f"no {prefix} line in {_show(text)}")


def _fields(body: str, where: str) -> list[tuple[str, bool]]:
    """Comma-separated fields as (value, was quoted); a quote left open is garbage."""
    fields: list[tuple[str, bool]] = []
    current: list[str] = []
    quoted = was_quoted = False
    for ch in body:
        if ch == '"':
            quoted = not quoted
            was_quoted = True
        elif ch == "," and not quoted:
            fields.append(("".join(current).strip(), was_quoted))
            current, was_quoted = [], False
        else:
            current.append(ch)
    if quoted:
        raise AtParseError(f"{where}: a quote is left open in {_show(body)}")
    fields.append(("".join(current).strip(), was_quoted))
    return fields


def _int(value: str, where: str, low: int = 0, high: int = 999_999) -> int:
    if not _INT.fullmatch(value) or not low <= int(value) <= high:
        raise AtParseError(f"{where}: expected a whole number {low}..{high}, got {value!r}")
    return int(value)


# -- +CMTI, +CMGS, +CSCA ---------------------------------------------------------------------

def parse_cmti(line: str) -> tuple[str, int]:
    """``+CMTI: "SM",3`` -> ("SM", 3): the storage and index of a message just stored.

    ``+CMTI: ,-1`` (SIMCom, a message not stored anywhere AT+CMGR can read) is an
    AtParseError: there is nothing to read.
    """
    fields = _fields(_prefixed(line, "+CMTI"), "+CMTI")
    if len(fields) != 2:
        raise AtParseError(f"+CMTI: expected <mem>,<index>, got {_show(line)}")
    storage = fields[0][0].strip()
    if not _STORAGE.fullmatch(storage):
        raise AtParseError(f"+CMTI: expected a storage such as \"SM\" or \"ME\", got {storage!r}")
    return storage.upper(), _int(fields[1][0], "+CMTI <index>")


def parse_cmgs(line: str) -> int:
    """``+CMGS: 12`` -> 12, the message reference (0..255) the network gave the message sent."""
    fields = _fields(_prefixed(line, "+CMGS"), "+CMGS")
    if len(fields) > 2:  # <mr>[,<scts>] in text mode, <mr>[,<ackpdu>] in PDU mode
        raise AtParseError(f"+CMGS: expected <mr>[,<scts or ackpdu>], got {_show(line)}")
    return _int(fields[0][0], "+CMGS <mr>", 0, 255)


def parse_csca(line: str) -> str | None:
    """``+CSCA: "+6281100000",145`` -> "+6281100000"; None when no service centre is set."""
    fields = _fields(_prefixed(line, "+CSCA"), "+CSCA")
    if len(fields) > 2:
        raise AtParseError(f"+CSCA: expected <sca>[,<tosca>], got {_show(line)}")
    number = fields[0][0].replace(" ", "")
    if not number:
        return None
    if len(fields) == 2 and fields[1][0] and _int(fields[1][0], "+CSCA <tosca>", 0, 255) == 145 \
            and not number.startswith("+"):
        number = "+" + number  # type 145: international, whether or not the '+' was printed
    if not _NUMBER.fullmatch(number):
        raise AtParseError(f"+CSCA: expected a number, got {fields[0][0]!r}")
    return number


# -- +CPMS -----------------------------------------------------------------------------------

def parse_cpms(line: str) -> list[StorageUse]:
    """Used and total of each storage: ``+CPMS: "SM",3,30,"SM",3,30,"SM",3,30`` (read form,
    ``AT+CPMS?``) or ``+CPMS: 3,30,3,30,3,30`` (the answer to setting them, no names).

    The test form's list of storages (``AT+CPMS=?``) is an AtParseError.
    """
    body = _prefixed(line, "+CPMS")
    if "(" in body:
        raise AtParseError(f"+CPMS: expected counts, got the list of storages (AT+CPMS=?) {_show(line)}")
    fields = [value for value, _ in _fields(body, "+CPMS")]
    named = bool(fields) and bool(_STORAGE.fullmatch(fields[0])) and not _INT.fullmatch(fields[0])
    step = 3 if named else 2
    if not fields or fields == [""] or len(fields) % step or len(fields) // step > 3:
        raise AtParseError(f"+CPMS: expected one to three storages with used and total counts, got {_show(line)}")
    uses = []
    for start in range(0, len(fields), step):
        name = fields[start].upper() if named else None
        if named and not _STORAGE.fullmatch(fields[start]):
            raise AtParseError(f"+CPMS: expected a storage name, got {fields[start]!r}")
        used = _int(fields[start + step - 2], "+CPMS <used>")
        total = _int(fields[start + step - 1], "+CPMS <total>")
        if used > total:
            raise AtParseError(f"+CPMS: {used} used of {total} cannot be, in {_show(line)}")
        uses.append(StorageUse(name, used, total))
    return uses


# -- +CMGL / +CMGR in PDU mode ---------------------------------------------------------------

def _pdu_line(line: str, where: str) -> str:
    # gammu's collection has a PDU line that ends in a stray quote; the hex is intact.
    pdu = line.strip().strip('"').replace(" ", "")
    if not _HEX.fullmatch(pdu):
        raise AtParseError(f"{where}: expected the PDU in hex, got {_show(line)}")
    return pdu.upper()


def _significant(lines: object) -> list[str]:
    if not isinstance(lines, (list, tuple)):
        raise AtParseError(f"expected the lines of a response, got {type(lines).__name__}")
    return [line for line in (_clean(raw) for raw in lines) if line and line != "OK"]


def parse_cmgl_pdu(lines: list[str]) -> list[StoredPdu]:
    """The messages of an ``AT+CMGL`` answer in PDU mode: each ``+CMGL: <index>,<stat>,[<alpha>],<length>``
    line and the PDU on the line after it.  No lines (the storage is empty) is an empty list."""
    rows = _significant(lines)
    out = []
    for position in range(0, len(rows), 2):
        body = _body(rows[position], "+CMGL")
        if body is None:
            raise AtParseError(f"+CMGL: expected a +CMGL line, got {_show(rows[position])}")
        fields = [value for value, _ in _fields(body, "+CMGL")]
        if len(fields) not in (3, 4):
            raise AtParseError(f"+CMGL: expected <index>,<stat>,[<alpha>],<length>, got {_show(rows[position])}")
        if position + 1 >= len(rows):
            raise AtParseError(f"+CMGL: the PDU after {_show(rows[position])} is missing")
        out.append(StoredPdu(index=_int(fields[0], "+CMGL <index>"), stat=_int(fields[1], "+CMGL <stat>", 0, 4),
                             length=_int(fields[-1], "+CMGL <length>", 0, 255),
                             pdu=_pdu_line(rows[position + 1], "+CMGL")))
    return out


def parse_cmgr_pdu(lines: list[str], index: int) -> StoredPdu | None:
    """The message ``AT+CMGR=<index>`` read in PDU mode; None when nothing is stored there
    (the answer is a bare ``OK``).

    ``+CMGR: <stat>,[<alpha>],<length>`` and the PDU.  Seen besides: ``+CMGR: ,,92`` and
    ``+CMGR: 24`` (no stat: None), ``+CMGR: 4,1,,151`` (the index first).
    """
    if type(index) is not int or index < 0:
        raise AtParseError(f"+CMGR: the index read must be a whole number from 0, got {_show(index)}")
    rows = _significant(lines)
    if not rows:
        return None
    if len(rows) != 2:
        raise AtParseError(f"+CMGR: expected a +CMGR line and a PDU line, got {len(rows)} lines")
    body = _body(rows[0], "+CMGR")
    if body is None:
        raise AtParseError(f"+CMGR: expected a +CMGR line, got {_show(rows[0])}")
    fields = [value for value, _ in _fields(body, "+CMGR")]
    if len(fields) == 1:
        stat_field = ""
    elif len(fields) in (2, 3):  # <stat>,<length> or <stat>,<alpha>,<length>
        stat_field = fields[0]
    elif len(fields) == 4:  # <index>,<stat>,<alpha>,<length>
        stat_field = fields[1]
    else:
        raise AtParseError(f"+CMGR: expected <stat>,[<alpha>],<length>, got {_show(rows[0])}")
    return StoredPdu(index=index, stat=_int(stat_field, "+CMGR <stat>", 0, 4) if stat_field else None,
                     length=_int(fields[-1], "+CMGR <length>", 0, 255), pdu=_pdu_line(rows[1], "+CMGR"))


# -- +CMGL in text mode ----------------------------------------------------------------------

def parse_cmgl_text(lines: list[str], charset: str | None = None) -> list[StoredText]:
    """The messages of an ``AT+CMGL`` answer in text mode.

    ``+CMGL: <index>,<stat>,<oa/da>,[<alpha>],[<scts>][,<tooa/toda>,<length>]``, then the
    text, which may take several lines (kept, joined with a line break; blank lines at its
    end are the answer's framing and dropped).  The address and the text are in the
    character set of ``AT+CSCS`` (``charset``): UCS2 hex is decoded (:mod:`charsets`).
    """
    if not isinstance(lines, (list, tuple)):
        raise AtParseError(f"expected the lines of a response, got {type(lines).__name__}")
    out: list[StoredText] = []
    header: tuple[int, str, str, str | None] | None = None
    text: list[str] = []

    def close() -> None:
        if header is not None:
            while text and not text[-1]:
                text.pop()
            body = "\n".join(charsets.decode(line, charset) for line in text)
            out.append(StoredText(header[0], header[1], header[2], header[3], body))

    for raw in lines:
        if not isinstance(raw, str):
            raise AtParseError(f"expected a line of text, got {type(raw).__name__}")
        line = raw.rstrip("\r\n")
        body = _body(line.strip(), "+CMGL")
        if body is None:
            if header is None:
                if line.strip() in ("", "OK"):
                    continue
                raise AtParseError(f"+CMGL: expected a +CMGL line first, got {_show(line)}")
            text.append(line)
            continue
        close()
        text = []
        fields = _fields(body, "+CMGL")
        if len(fields) < 3:
            raise AtParseError(f"+CMGL: expected <index>,<stat>,<oa>,..., got {_show(line)}")
        status = fields[1][0].upper()
        if status not in _STATS_TEXT:
            raise AtParseError(f"+CMGL: expected a status such as \"REC UNREAD\", got {fields[1][0]!r}")
        sender = charsets.decode(fields[2][0], charset)
        scts = fields[4][0] if len(fields) > 4 and fields[4][0] else None
        header = (_int(fields[0][0], "+CMGL <index>"), status, sender, scts)
    if text and text[-1].strip() == "OK":
        text.pop()
    close()
    return out


# -- +CMS ERROR ------------------------------------------------------------------------------

def parse_cms_error(line: str) -> tuple[int | None, str]:
    """``+CMS ERROR: 38`` -> (38, "network out of order"); the verbose form
    (``AT+CMEE=2``) ``+CMS ERROR: memory full`` -> (322, "memory full").

    A verbose text the table does not know keeps its words and no code; a number the table
    does not know says which range of TS 27.005 3.2.5 it is in.
    """
    body = _prefixed(line, "+CMS ERROR").strip().strip('"').strip()
    if _INT.fullmatch(body):
        code = int(body)
        return code, cms_meaning(code)
    if not _VERBOSE.fullmatch(body):
        raise AtParseError(f"+CMS ERROR: expected a code or the words of one, got {_show(line)}")
    return _KNOWN_TEXT.get(" ".join(body.lower().split())), body


def cms_meaning(code: int) -> str:
    """What a ``+CMS ERROR`` code means, in plain words."""
    if code in CMS_ERRORS:
        return CMS_ERRORS[code]
    if code <= 127:
        return f"network cause {code}"
    if code <= 255:
        return f"service centre cause {code}"
    if code <= 511:
        return f"modem error {code}"
    return f"manufacturer's error {code}"


def cms_error_kind(code: int | None) -> CmsKind:
    """Which trouble a ``+CMS ERROR`` code is (see the table's comment); None and unknown codes are "other"."""
    if code is None:
        return "other"
    return _KIND.get(code, "other")
