"""Pure parsers for the 3GPP TS 27.007 answers every cellular modem gives.

Each parser takes the information text of one response (the lines between the command and
its final result, joined with ``\\n``; no echo, no ``OK``) and returns a value, or raises
:class:`AtParseError` - never anything else, whatever the text.  Lines that do not start with
the parser's prefix are ignored (a stray URC, a blank line); when no line has it, that is an
AtParseError.

Tolerance rules, shared by every parser here:

- spaces anywhere around fields, no space after the colon, ``\\r``, lower-case hex, fields
  quoted or not, missing optional trailing fields;
- a *required* field that is not what the standard says (a non-numeric ``<stat>``, an
  undefined ``+CSQ`` index) is an AtParseError: the line is not what we think it is;
- an *optional* field that cannot be read (a garbled ``<lac>``, an ``<AcT>`` of ``B``) is
  None: the rest of the answer is still true, and unknown is never turned into a number.

Level indices become dBm/dB through :mod:`agent.unit.devices.modem.levels` (None for 99/255).
"""
from __future__ import annotations

import re
from collections.abc import Callable

from agent.unit.devices.modem import charsets, levels
from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.values import CurrentOperator, Identity, OperatorChoice, Registration, SignalFacts

__all__ = [
    "parse_cesq", "parse_cgatt", "parse_cgmi", "parse_cgmm", "parse_cgmr", "parse_cimi", "parse_cops",
    "parse_cops_scan", "parse_cpin", "parse_cscs", "parse_csq", "parse_iccid", "parse_identity", "parse_registration",
    "rat_from_act", "registration_from_stat",
]

# TS 27.007 <stat> of +CREG / +CGREG / +CEREG / +C5GREG, each with its word of the reading.
_STAT = {
    0: "not_registered",               # not registered, not searching
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
    6: "sms_only_home",                # registered for "SMS only", home
    7: "sms_only_roaming",             # registered for "SMS only", roaming
    8: "emergency_only",               # attached for emergency bearer services only
    9: "csfb_not_preferred_home",      # registered for "CSFB not preferred", home
    10: "csfb_not_preferred_roaming",  # registered for "CSFB not preferred", roaming
    11: "rlos_only",                   # attached for access to RLOS (Restricted Local Operator Services)
}

# TS 27.007 <AcT> (section 7.3 / 7.2) to the reading's rat names.
_ACT = {
    0: "GSM",
    1: "GSM",          # GSM Compact
    2: "WCDMA",        # UTRAN
    3: "GSM",          # GSM w/EGPRS
    4: "WCDMA",        # UTRAN w/HSDPA
    5: "WCDMA",        # UTRAN w/HSUPA
    6: "WCDMA",        # UTRAN w/HSDPA and HSUPA
    7: "LTE",          # E-UTRAN
    8: "GSM",          # EC-GSM-IoT (A/Gb mode)
    9: "LTE",          # E-UTRAN (NB-S1 mode), NB-IoT
    10: "LTE",         # E-UTRA connected to a 5GCN
    11: "NR5G-SA",     # NR connected to a 5GCN
    12: "NR5G-SA",     # NG-RAN
    13: "NR5G-NSA",    # E-UTRA-NR dual connectivity (EN-DC)
}

_OPERATOR_STATUS = {0: "unknown", 1: "available", 2: "current", 3: "forbidden"}

_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def registration_from_stat(stat: int | None) -> str:
    """TS 27.007 ``<stat>`` as a reading's registration; ``unknown`` for anything undefined."""
    if stat is None:
        return "unknown"
    return _STAT.get(stat, "unknown")


def rat_from_act(act: int | None) -> str | None:
    """TS 27.007 ``<AcT>`` as a reading's rat; None when not given or not defined."""
    if act is None:
        return None
    return _ACT.get(act)


# -- shared helpers ------------------------------------------------------------------------

def _lines(text: str, *, keep_controls: bool = False) -> list[str]:
    if not isinstance(text, str):
        raise AtParseError(f"expected the text of a response, got {type(text).__name__}")
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    if keep_controls:  # septets of the GSM alphabet: 0x00 is '@', 0x11 '_'
        return [line.strip(" \t") for line in unified.split("\n")]
    return [_CONTROL.sub("", line).strip() for line in unified.split("\n")]


def _prefix_re(*prefixes: str) -> re.Pattern[str]:
    names = "|".join(re.escape(p) for p in prefixes)
    return re.compile(rf"^({names})\s*:\s*(.*)$", re.IGNORECASE)


def _prefixed(text: str, pattern: re.Pattern[str], what: str) -> tuple[str, str]:
    """(prefix as written, rest) of the first line with the prefix."""
    for line in _lines(text):
        m = pattern.match(line)
        if m:
            return m.group(1).upper(), m.group(2).strip()
    raise AtParseError(f"no {what} line in {_show(text)}")


def _show(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _split(body: str) -> list[str]:
    """Comma-separated fields, commas inside double quotes kept; each field stripped."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in body:
        if ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if quoted:
        raise AtParseError(f"unbalanced quotes in {_show(body)}")
    fields.append("".join(current).strip())
    return fields


def _is_quoted(field: str) -> bool:
    return len(field) >= 2 and field[0] == '"' and field[-1] == '"'


def _unquote(field: str) -> str:
    return field[1:-1].strip() if _is_quoted(field) else field.strip()


def _decimal(value: str, max_digits: int) -> bool:
    # ASCII digits, at most max_digits of them after leading zeros: firmware pads numbers
    # (Iridium's "001", "0011" for <stat> 11), and a padded number is the same number.
    return bool(_DIGITS.fullmatch(value)) and len(value.lstrip("0")) <= max_digits and len(value) <= max_digits + 4


def _int(field: str, what: str, *, max_digits: int = 6) -> int:
    """A required decimal field (ASCII digits only, bounded length)."""
    value = _unquote(field)
    if not _decimal(value, max_digits):
        raise AtParseError(f"{what} is not a number: {field!r}")
    return int(value)


def _opt_int(field: str | None, *, max_digits: int = 6) -> int | None:
    """An optional decimal field; None when empty or unreadable."""
    if field is None:
        return None
    value = _unquote(field)
    if not _decimal(value, max_digits):
        return None
    return int(value)


def _opt_hex(field: str | None) -> int | None:
    """An optional hex field (<lac>, <tac>, <ci>); None when empty, garbled or all-F.

    All-F values ("FFFF", "FFFFFFFF", "00FFFFFFF") are what several modems print for "no valid
    location" (nRF91 documents FFFFFFFF as invalid), never a real cell.
    """
    if field is None:
        return None
    value = _unquote(field)
    if not _HEX.fullmatch(value) or len(value) > 16:
        return None
    significant = value.lstrip("0")
    if len(significant) >= 4 and set(significant.upper()) == {"F"}:
        return None
    return int(value, 16)


def _area_code(field: str | None) -> int | None:
    # TS 23.003: LAC/TAC 0000 and FFFE are reserved ("deleted" area), not a place.
    value = _opt_hex(field)
    return None if value in (0, 0xFFFE) else value


def _field(fields: list[str], index: int) -> str | None:
    return fields[index] if index < len(fields) else None


def _plmn(numeric: str | None) -> tuple[str | None, str | None]:
    """MCC/MNC digits from a numeric operator: 5 digits is a 2-digit MNC, 6 digits a 3-digit
    one (``"51001"`` is ``"510"``, ``"01"``); MCC 000 is no network."""
    if numeric is None or not _DIGITS.fullmatch(numeric) or len(numeric) not in (5, 6) or numeric[:3] == "000":
        return None, None
    return numeric[:3], numeric[3:]


# -- signal --------------------------------------------------------------------------------

_CSQ = _prefix_re("+CSQ")


def parse_csq(text: str) -> SignalFacts:
    """``+CSQ: <rssi>,<ber>``: the index in ``csq``, its dBm in ``rssi_dbm``; 99 is no signal."""
    _, body = _prefixed(text, _CSQ, "+CSQ")
    fields = _split(body)
    if len(fields) > 2:
        raise AtParseError(f"+CSQ has {len(fields)} fields, expected <rssi>,<ber>: {_show(body)}")
    rssi = _int(fields[0], "+CSQ <rssi>", max_digits=3)
    if len(fields) == 2 and fields[1]:
        _int(fields[1], "+CSQ <ber>", max_digits=3)  # not used, but it must be a number
    if rssi == 99:
        return SignalFacts(no_service=True)
    if rssi > 31:
        raise AtParseError(f"+CSQ <rssi> {rssi} is not defined by TS 27.007 (0..31, 99)")
    return SignalFacts(csq=rssi, rssi_dbm=levels.csq_rssi_dbm(rssi))


def _ss_rsrp_dbm(index: int | None) -> float | None:
    # TS 27.007 8.69 <ss_rsrp> (TS 38.133 10.1.6): 0 is below -156 dBm, n is -157+n (lower
    # edge of its 1 dB range, as levels.py does for LTE), 127 is -30 dBm or more.
    return -157.0 + index if index is not None and 0 <= index <= 127 else None


def _ss_rsrq_db(index: int | None) -> float | None:
    # <ss_rsrq> (TS 38.133 10.1.11): 0 is below -43 dB, n is -43.5+n/2, 127 is 20 dB or more.
    return -43.5 + index / 2 if index is not None and 0 <= index <= 127 else None


def _ss_sinr_db(index: int | None) -> float | None:
    # <ss_sinr> (TS 38.133 10.1.16): 0 is below -23 dB, n is -23.5+n/2, 127 is 40 dB or more.
    return -23.5 + index / 2 if index is not None and 0 <= index <= 127 else None


_CESQ = _prefix_re("+CESQ")


def parse_cesq(text: str) -> SignalFacts:
    """``+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>[,<ss_rsrq>,<ss_rsrp>,<ss_sinr>]``.

    The rat is the one whose levels are known: LTE (rsrp/rsrq), WCDMA (rscp/ecno) or GSM
    (rxlev); NR levels next to LTE ones are EN-DC (NR5G-NSA, levels of the LTE anchor), NR
    levels alone are NR5G-SA.  Nothing known at all is no service.
    """
    _, body = _prefixed(text, _CESQ, "+CESQ")
    fields = _split(body)
    if len(fields) < 6:
        raise AtParseError(f"+CESQ has {len(fields)} fields, expected at least 6: {_show(body)}")
    names = ("rxlev", "ber", "rscp", "ecno", "rsrq", "rsrp", "ss_rsrq", "ss_rsrp", "ss_sinr")
    raw: dict[str, int | None] = {}
    for name, field in zip(names, fields):
        raw[name] = None if field == "" else _int(field, f"+CESQ <{name}>", max_digits=3)
    rssi = levels.cesq_rxlev_dbm(raw["rxlev"])
    rscp = levels.cesq_rscp_dbm(raw["rscp"])
    ecio = levels.cesq_ecno_db(raw["ecno"])
    rsrq = levels.cesq_rsrq_db(raw["rsrq"])
    rsrp = levels.cesq_rsrp_dbm(raw["rsrp"])
    ss_rsrq = _ss_rsrq_db(raw.get("ss_rsrq"))
    ss_rsrp = _ss_rsrp_dbm(raw.get("ss_rsrp"))
    ss_sinr = _ss_sinr_db(raw.get("ss_sinr"))

    lte = rsrp is not None or rsrq is not None
    nr = ss_rsrp is not None or ss_rsrq is not None or ss_sinr is not None
    wcdma = rscp is not None or ecio is not None
    if lte and nr:
        # NSA: the LTE anchor holds the connection, so its levels describe the reading.
        return SignalFacts(rat="NR5G-NSA", rsrp_dbm=rsrp, rsrq_db=rsrq)
    if nr:
        return SignalFacts(rat="NR5G-SA", rsrp_dbm=ss_rsrp, rsrq_db=ss_rsrq, sinr_db=ss_sinr)
    if lte:
        return SignalFacts(rat="LTE", rsrp_dbm=rsrp, rsrq_db=rsrq)
    if wcdma:
        return SignalFacts(rat="WCDMA", rscp_dbm=rscp, ecio_db=ecio)
    if rssi is not None:
        return SignalFacts(rat="GSM", rssi_dbm=rssi)
    return SignalFacts(no_service=True)


# -- registration --------------------------------------------------------------------------

_REG = _prefix_re("+CREG", "+CGREG", "+CEREG", "+C5GREG")


def _is_read_form(fields: list[str]) -> bool:
    """``<n>,<stat>,...`` (answer to ``AT+CxREG?``) rather than ``<stat>,<lac>,...`` (URC).

    In the read form the first field is a bare <n> (0..5) and the second a bare <stat>
    (0..11); in the URC the second is an area code, quoted or four-plus hex digits, or empty.
    A four-digit second field is therefore an area code ("+CEREG: 2, 0001, 00000100, 7",
    Altair) unless the fields after it are quoted and it is not: a modem quotes its area code
    and cell id alike, so that field is a <stat> padded with zeros ("+CGREG:002,0011,"0f0d",...").
    """
    if len(fields) < 2:
        return False
    n, stat = fields[0], fields[1]
    if not (_decimal(n, 1) and _decimal(stat, 2)) or int(n) > 5 or int(stat) > 11:
        return False
    return len(stat) <= 3 or any(_is_quoted(field) for field in fields[2:])


def parse_registration(text: str) -> Registration:
    """+CREG / +CGREG / +CEREG / +C5GREG, read answer or URC, any ``<n>`` form (0..5).

    The area code goes to ``lac`` for CREG/CGREG and to ``tac`` for CEREG/C5GREG.  Cause
    fields (n=3), PSM timers (n=4/5), RAC and NSSAI are read past, not returned.
    """
    prefix, body = _prefixed(text, _REG, "+CREG/+CGREG/+CEREG/+C5GREG")
    fields = _split(body)
    if _is_read_form(fields):
        n: int | None = int(fields[0])
        rest = fields[1:]
    else:
        n = None
        rest = fields
    if not rest or rest[0] == "":
        raise AtParseError(f"{prefix} without <stat>: {_show(body)}")
    stat = _int(rest[0], f"{prefix} <stat>", max_digits=3)
    if stat not in _STAT:
        raise AtParseError(f"{prefix} <stat> {stat} is not defined by TS 27.007 (0..11)")
    area, ci, act = _field(rest, 1), _field(rest, 2), _field(rest, 3)
    if prefix == "+CEREG" and len(rest) == 5 and rest[3] and _DIGITS.fullmatch(rest[4]):
        # Novatel E362 puts an extra field between <tac> and <ci>: "+CEREG: 2,1, 1F00, 20 ,79D903 ,7".
        # TS 27.007 never gives CEREG five fields after <n> (a trailing comma leaves the last empty).
        ci, act = rest[3], rest[4]
    act_number = _opt_int(act, max_digits=3)
    area_code = _area_code(area)
    cell_id = _opt_hex(ci)
    if cell_id == 0 and area_code is None:
        cell_id = None  # "+CREG: 2,0,00,0" (Huawei E160G, not registered): a zero beside no area is no cell
    eps_or_5gs = prefix in ("+CEREG", "+C5GREG")
    return Registration(
        n=n,
        stat=stat,
        registration=registration_from_stat(stat),
        lac=None if eps_or_5gs else area_code,
        tac=area_code if eps_or_5gs else None,
        cell_id=cell_id,
        act=act_number,
        rat=rat_from_act(act_number),
    )


# -- operators -----------------------------------------------------------------------------

_COPS = _prefix_re("+COPS")


def parse_cops(text: str, charset: str | None = None) -> CurrentOperator:
    """``+COPS: <mode>[,<format>,<oper>[,<AcT>]]`` (the ``AT+COPS?`` answer).

    ``name`` is ``<oper>`` as given (long, short or numeric per ``<format>``), decoded from the
    modem's ``AT+CSCS`` ``charset`` (see :func:`parse_cops_scan`); a numeric one (format 2, or
    a long name the modem could only give as digits) also yields mcc/mnc.  Without <AcT> the
    technology is unknown: unlike a scan entry, the read answer has no default for it.
    """
    _, body = _prefixed(text, _COPS, "+COPS")
    if body.startswith("("):
        raise AtParseError("+COPS answer is a scan list (AT+COPS=?), not the current operator")
    fields = _split(body)
    mode = _int(fields[0], "+COPS <mode>", max_digits=2)
    fmt_field = _field(fields, 1)
    if fmt_field not in (None, ""):
        fmt = _int(fmt_field, "+COPS <format>", max_digits=2)
        if fmt > 2:
            raise AtParseError(f"+COPS <format> {fmt} is not defined by TS 27.007 (0..2)")
    oper = _field(fields, 2)
    name = _name(_unquote(oper), charset) if oper is not None else ""
    mcc, mnc = _plmn(name)
    act = _opt_int(_field(fields, 3), max_digits=3)
    return CurrentOperator(mode=mode, name=name or None, mcc=mcc, mnc=mnc, rat=rat_from_act(act))


def _name(value: str, charset: str | None) -> str:
    """A string parameter as text.  With the character set unknown, only a value that
    decodes from UCS2 hex to digits is decoded (a numeric operator: hex digits that happen
    to spell a name would be decoded wrongly, digits cannot be)."""
    if charset is not None:
        return charsets.decode(value, charset).strip()
    decoded = charsets.ucs2(value)
    return decoded if decoded is not None and _DIGITS.fullmatch(decoded) else value


def _groups(body: str) -> list[tuple[str, str]]:
    """Top-level parenthesised groups, each with the text that follows it up to the next one."""
    groups: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    quoted = False
    for ch in body:
        if ch == '"':
            quoted = not quoted
        if current is not None:
            if ch == ")" and not quoted:
                groups.append(("".join(current), []))
                current = None
            else:
                current.append(ch)
        elif ch == "(" and not quoted:
            current = []
        elif groups:
            groups[-1][1].append(ch)
    if quoted or current is not None:
        raise AtParseError(f"unbalanced quotes or parentheses in +COPS list: {_show(body)}")
    return [(inner, "".join(after)) for inner, after in groups]


_STRAY_ACT = re.compile(r"^\s*,\s*([0-9]{1,2})\s*\)")


def _operator_choice(inner: str, after: str, charset: str | None) -> OperatorChoice:
    fields = _split(inner)
    if len(fields) < 4:
        raise AtParseError(f"+COPS entry has {len(fields)} fields, expected 4 or 5: ({_show(inner)})")
    status = _int(fields[0], "+COPS <stat>", max_digits=2)
    if status not in _OPERATOR_STATUS:
        raise AtParseError(f"+COPS <stat> {status} is not defined by TS 27.007 (0..3)")
    long_name, short_name, numeric = (_unquote(f) for f in fields[1:4])
    if charset is None and _name(numeric, None) != numeric:
        # UCS2 character set: the numeric field gives it away; the names are in UCS2 too.
        charset = "UCS2"
    long_name, short_name, numeric = (_name(value, charset) for value in (long_name, short_name, numeric))
    act_field = _field(fields, 4)
    stray = _STRAY_ACT.match(after)
    if act_field is None and stray:
        # TM-506 / F3607gw close the entry before <AcT>: (1,"AT&T","AT&T","310410"),2)
        act_field = stray.group(1)
    # TS 27.007 7.3: an entry without <AcT> (a GSM-only or pre-Release 99 modem) is GSM.
    act = 0 if act_field is None or act_field == "" else _opt_int(act_field, max_digits=3)
    mcc, mnc = _plmn(numeric)
    return OperatorChoice(
        status=_OPERATOR_STATUS[status], long_name=long_name or None, short_name=short_name or None,
        mcc=mcc, mnc=mnc, rat=rat_from_act(act),
    )


def parse_cops_scan(text: str, charset: str | None = None) -> list[OperatorChoice]:
    """``+COPS: (<stat>,long,short,numeric[,<AcT>]),...,,(modes),(formats)`` (``AT+COPS=?``).

    The trailing lists of supported modes and formats are not operators and are skipped; an
    empty scan (``+COPS: ,,(0-4),(0-2)``) is an empty list.  Some modems print one entry per
    ``+COPS:`` line, or continue the list on lines without the prefix: all of it is read.

    An entry without <AcT> is GSM (TS 27.007's default).  Names are in the modem's ``AT+CSCS``
    ``charset``: ``UCS2`` hex and the ``GSM`` default alphabet are decoded to text
    (:mod:`agent.unit.devices.modem.charsets`); with the set unknown (None), a numeric field
    in UCS2 hex gives the set away.  A malformed entry (fewer than four fields, a <stat>
    TS 27.007 does not define, an unclosed quote) refuses the whole answer: a list read in
    part would say that operators the modem saw are absent.
    """
    charset = charsets.normalise_charset(charset)
    parts: list[str] = []
    in_list = False
    for line in _lines(text, keep_controls=charset == "GSM"):
        m = _COPS.match(line)
        if m:
            parts.append(m.group(2).strip())
            in_list = True
        elif in_list and line.startswith(("(", ",")):
            parts.append(line)  # continuation of the list on its own line (Nokia 2720)
        elif line:
            in_list = False
    if not parts:
        raise AtParseError(f"no +COPS line in {_show(text)}")
    body = ",".join(parts)
    groups = _groups(body)
    if not groups and body.strip(" ,"):
        raise AtParseError(f"+COPS answer is not a scan list: {_show(body)}")
    choices = []
    for inner, after in groups:
        if '"' not in inner:
            continue  # (0,1,2,3,4) or (0-2): supported modes / formats
        choices.append(_operator_choice(inner, after, charset))
    return choices


# -- SIM and identity ----------------------------------------------------------------------

_CPIN = _prefix_re("+CPIN")
_CPIN_STATE = re.compile(r"[A-Z0-9][A-Z0-9 \-]*")


def parse_cpin(text: str) -> str:
    """``+CPIN: <code>``: READY, SIM PIN, SIM PUK, PH-SIM PIN, NOT INSERTED ... as the modem says."""
    _, body = _prefixed(text, _CPIN, "+CPIN")
    state = " ".join(_unquote(body).upper().split())
    if not _CPIN_STATE.fullmatch(state) or len(state) > 32:
        raise AtParseError(f"+CPIN state is not a SIM state: {_show(body)}")
    return state


_CSCS = _prefix_re("+CSCS")
_CHARSET = re.compile(r"[A-Z0-9][A-Z0-9\-]{0,15}")


def parse_cscs(text: str) -> str:
    """``+CSCS: "UCS2"``: the character set the modem prints strings in (IRA, GSM, UCS2 ...)."""
    _, body = _prefixed(text, _CSCS, "+CSCS")
    name = charsets.normalise_charset(body) or ""
    if not _CHARSET.fullmatch(name):
        raise AtParseError(f"+CSCS is not a character set name: {_show(body)}")
    return name


_CGATT = _prefix_re("+CGATT")


def parse_cgatt(text: str) -> bool:
    """``+CGATT: <state>``: True when attached to the packet domain."""
    _, body = _prefixed(text, _CGATT, "+CGATT")
    state = _int(_split(body)[0], "+CGATT <state>", max_digits=1)
    if state > 1:
        raise AtParseError(f"+CGATT <state> {state} is neither 0 nor 1")
    return state == 1


_CIMI = _prefix_re("+CIMI")


def parse_cimi(text: str) -> str:
    """The IMSI: the first line of 14 or 15 digits (bare, or after ``+CIMI:`` on some firmware)."""
    for line in _lines(text):
        m = _CIMI.match(line)
        value = _unquote(m.group(2)) if m else line
        if _DIGITS.fullmatch(value) and len(value) in (14, 15):
            return value
    raise AtParseError(f"no IMSI (14-15 digits) in {_show(text)}")


_ICCID = _prefix_re("+CCID", "+QCCID", "+ICCID", "^ICCID")
_ICCID_BODY = re.compile(r"89[0-9A-F]{16,18}")


def _iccid_value(raw: str) -> str | None:
    value = _unquote(raw).upper()
    if not _HEX.fullmatch(value) or not 18 <= len(value) <= 20:
        return None
    if value.startswith("98") and len(value) == 20:
        # Nibble-swapped as stored on the card (EF_ICCID), as some firmware prints it.
        value = "".join(value[i + 1] + value[i] for i in range(0, 20, 2))
    value = value.rstrip("F")  # BCD padding of a 19-digit ICCID
    if not _ICCID_BODY.fullmatch(value) or len(value) < 19:
        return None
    return value


def parse_iccid(text: str) -> str:
    """The SIM's ICCID (19-20 characters, starting 89) from +CCID / +QCCID / +ICCID / ^ICCID or bare.

    Padding ``F`` is dropped and a nibble-swapped ICCID is put right; hex letters inside the
    account number are kept (China Unicom issues "898602F9...").
    """
    bare: str | None = None
    for line in _lines(text):
        m = _ICCID.match(line)
        if m:
            # Sierra adds the eUICC EID after a comma, BG96 an empty field: the ICCID comes first.
            value = _iccid_value(_split(m.group(2))[0])
            if value is None:
                raise AtParseError(f"{m.group(1)} is not an ICCID: {_show(line)}")
            return value
        if bare is None and line:
            bare = _iccid_value(line)
    if bare is not None:
        return bare
    raise AtParseError(f"no ICCID in {_show(text)}")


_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$")
_IDENTITY_KEYS = ("manufacturer", "model", "revision")


def parse_identity(text: str) -> Identity:
    """ATI: ``Manufacturer:``/``Model:``/``Revision:`` lines (SIMCom, Huawei), or Quectel's
    bare manufacturer and model lines before ``Revision:``.  IMEI, +GCAP and the like are skipped.
    """
    found: dict[str, str] = {}
    bare: list[str] = []
    for line in _lines(text):
        if not line or line.upper() in ("ATI", "OK"):
            continue
        m = _KEY_VALUE.match(line)
        if m:
            key = m.group(1).strip().lower()
            if key in _IDENTITY_KEYS and m.group(2).strip() and key not in found:
                found[key] = m.group(2).strip()
            continue
        if line.startswith(("+", "^", "#", "$", "!", "*")) or ":" in line:
            continue
        bare.append(line)
    if "manufacturer" not in found and "model" not in found:
        # Quectel: "Quectel", "EC25", "Revision: ..."; a lone line names the product.
        if len(bare) >= 2:
            found["manufacturer"], found["model"] = bare[0], bare[1]
        elif len(bare) == 1:
            found["model"] = bare[0]
    if not found:
        raise AtParseError(f"no manufacturer, model or revision in {_show(text)}")
    return Identity(manufacturer=found.get("manufacturer"), model=found.get("model"),
                    revision=found.get("revision"))


def _bare_or_prefixed(prefixes: tuple[str, ...], what: str) -> Callable[[str], str]:
    pattern = _prefix_re(*prefixes)

    def parse(text: str) -> str:
        lines = [line for line in _lines(text) if line]
        for line in lines:
            m = pattern.match(line)
            if m:
                value = _unquote(m.group(2))
                if value:
                    return value
                raise AtParseError(f"empty {what} in {_show(text)}")
        for line in lines:
            if line.upper() == "OK" or line.startswith(("+", "^")):
                continue
            value = _unquote(line)
            if value:
                return value
        raise AtParseError(f"no {what} in {_show(text)}")

    parse.__name__ = f"parse_{prefixes[0].lstrip('+').lower()}"
    parse.__doc__ = f"The {what}: a bare line, or after ``{prefixes[0]}:`` as some modems print it."
    return parse


parse_cgmi = _bare_or_prefixed(("+CGMI", "+GMI"), "manufacturer")
parse_cgmm = _bare_or_prefixed(("+CGMM", "+GMM"), "model")
parse_cgmr = _bare_or_prefixed(("+CGMR", "+GMR"), "firmware revision")
