"""SMS PDUs of 3GPP TS 23.040, as a modem in PDU mode (``AT+CMGF=0``) prints and takes them.

- :func:`decode_deliver` reads an SMS-DELIVER as ``AT+CMGL`` / ``AT+CMGR`` print it: the
  service centre's address first (TS 27.005 3.1, ``<pdu>``), then the TPDU.
- :func:`encode_submit` builds the SMS-SUBMIT that ``AT+CMGS=<n>`` takes, with ``00`` in place
  of the service centre (the SIM's own is used); :func:`decode_submit` reads one back.
- :func:`encode_deliver` builds what a modem would print for a received message, for a
  simulated modem.

Pure functions over hex text.  Every bad input raises :class:`SmsPduError`, whose message
says what was expected and at which octet (counted from 0, the service centre's length).

Reading is tolerant where real networks differ and strict where the bytes cannot mean
anything: an alphanumeric sender of any type-of-number ``0x5?`` plan, reserved data coding
groups (read as the default alphabet, as TS 23.038 4 tells a receiver to), octets after the
user data (some modems pad) are fine; a short PDU, a length past the end, a date that does
not exist, a UCS2 text of an odd number of octets, compressed text are not.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from agent.shared.gsm_alphabet import GsmAlphabetError, from_septets, is_gsm7, to_septets

__all__ = [
    "Coding", "DeliveredSms", "SmsPduError", "decode_deliver", "decode_submit", "encode_deliver", "encode_submit",
]

Coding = Literal["gsm7", "ucs2", "8bit"]

MAX_SEPTETS = 160
MAX_OCTETS = 140
_MAX_ADDRESS_DIGITS = 20  # TS 23.040 9.1.2.5: an address value of at most 10 octets
_MAX_SMSC_OCTETS = 11  # TS 24.011 8.2.5.1: RP address, type octet and 10 of digits
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*", re.ASCII)
_NUMBER = re.compile(r"\+?[0-9]{1,20}", re.ASCII)
# Semi-octets 0xA..0xE of an address (TS 23.040 9.1.2.3); 0xF fills the last octet.
_SEMI_OCTET = "0123456789*#abc"
_MTI = {0: "SMS-DELIVER", 1: "SMS-SUBMIT", 2: "SMS-STATUS-REPORT", 3: "a reserved message type"}
_TON_INTERNATIONAL = 1
_TON_ALPHANUMERIC = 5
_EPOCH_YEAR = 2000  # the SCTS has two digits of the year; messages are read long after 1999


class SmsPduError(ValueError):
    """A PDU (or what should become one) is not what TS 23.040 allows; the message says where."""


@dataclass(frozen=True)
class DeliveredSms:
    """One received short message (one part of a concatenated one: see ``part``)."""

    sender: str  # "+6281234567" (international), "1800" (other numbers), "TELKOMSEL" (alphanumeric)
    service_centre: str | None  # the SMSC that delivered it, None when the PDU leaves it out
    sent_at: datetime  # the service centre time stamp, in the zone the SMSC gave
    text: str
    coding: Coding  # "8bit" text is the octets read as Latin-1
    part: tuple[int, int, int] | None  # (reference, total, sequence number) of a concatenated message
    raw: str  # the hex as given


# -- reading -----------------------------------------------------------------------------------

class _Octets:
    """The octets of a PDU and where reading has got to."""

    def __init__(self, pdu_hex: object) -> None:
        if not isinstance(pdu_hex, str):
            raise SmsPduError(f"expected the PDU as hex text, got {type(pdu_hex).__name__}")
        text = pdu_hex.strip()
        if not text:
            raise SmsPduError("expected the PDU as hex digits, got nothing")
        if not _HEX.fullmatch(text):
            raise SmsPduError(f"expected an even number of hex digits, got {_show(pdu_hex)}")
        self.data = bytes.fromhex(text)
        self.at = 0

    def take(self, count: int, what: str) -> bytes:
        if self.at + count > len(self.data):
            raise SmsPduError(f"expected {count} octet{'s' if count != 1 else ''} of {what} at octet {self.at}, "
                              f"the PDU ends after {len(self.data) - self.at}")
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def octet(self, what: str) -> int:
        return self.take(1, what)[0]


def _show(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _semi_octets(data: bytes, digits: int, what: str, at: int) -> str:
    out = []
    for index in range(digits):
        octet = data[index // 2]
        nibble = octet & 0x0F if index % 2 == 0 else octet >> 4
        if nibble == 0xF:
            if index == digits - 1 and index % 2:
                break  # a length that counted the filler of an odd number of digits
            raise SmsPduError(f"{what} at octet {at}: expected {digits} digits, found the filler F after {index}")
        out.append(_SEMI_OCTET[nibble])
    return "".join(out)


def _read_smsc(octets: _Octets) -> str | None:
    start = octets.at
    length = octets.octet("service centre address length")
    if length == 0:
        return None
    if length > _MAX_SMSC_OCTETS:
        raise SmsPduError(f"service centre address at octet {start}: expected at most {_MAX_SMSC_OCTETS} octets, "
                          f"got {length}")
    kind = octets.octet("service centre type of address")
    data = octets.take(length - 1, "service centre address")
    if not data:
        return None
    digits = 2 * len(data) - (1 if data[-1] >> 4 == 0xF else 0)
    number = _semi_octets(data, digits, "service centre address", start)
    return ("+" if (kind >> 4) & 0x07 == _TON_INTERNATIONAL else "") + number


def _read_address(octets: _Octets, what: str) -> str:
    start = octets.at
    digits = octets.octet(f"{what} length")
    if digits > _MAX_ADDRESS_DIGITS:
        raise SmsPduError(f"{what} at octet {start}: expected at most {_MAX_ADDRESS_DIGITS} semi-octets, "
                          f"got {digits}")
    kind = octets.octet(f"{what} type of address")
    data = octets.take((digits + 1) // 2, what)
    ton = (kind >> 4) & 0x07
    if ton == _TON_ALPHANUMERIC:
        # TS 23.040 9.1.2.5: GSM 7-bit characters packed into the semi-octets counted.
        return from_septets(_unpack(data, digits * 4 // 7))
    number = _semi_octets(data, digits, what, start)
    return ("+" if ton == _TON_INTERNATIONAL else "") + number


def _read_scts(octets: _Octets, what: str) -> datetime:
    start = octets.at
    data = octets.take(7, what)
    fields = []
    for index, octet in enumerate(data[:6]):
        low, high = octet & 0x0F, octet >> 4
        if low > 9 or high > 9:
            raise SmsPduError(f"{what} at octet {start + index}: expected two decimal semi-octets, got {octet:02X}")
        fields.append(low * 10 + high)
    zone = data[6]
    if zone >> 4 > 9:
        raise SmsPduError(f"{what} at octet {start + 6}: expected a time zone in quarter hours, got {zone:02X}")
    quarters = (zone & 0x07) * 10 + (zone >> 4)
    if zone & 0x08:
        quarters = -quarters
    year, month, day, hour, minute, second = fields
    try:
        return datetime(_EPOCH_YEAR + year, month, day, hour, minute, second,
                        tzinfo=timezone(timedelta(minutes=15 * quarters)))
    except ValueError:
        raise SmsPduError(f"{what} at octet {start}: not a real time, got {data.hex().upper()}") from None


def _dcs(dcs: int, at: int) -> Coding:
    """The text's coding from TP-DCS (TS 23.038 4)."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding, also marked for automatic deletion (01xx)
        if dcs & 0x20:
            raise SmsPduError(f"data coding scheme at octet {at}: compressed text (TS 23.042) is not supported, "
                              f"got {dcs:02X}")
        alphabet = (dcs >> 2) & 0x03
        return "8bit" if alphabet == 1 else "ucs2" if alphabet == 2 else "gsm7"  # 3 is reserved: default
    if group == 0xE:  # message waiting indication, store message, UCS2 text
        return "ucs2"
    if group == 0xF:  # data coding / message class
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"  # 1000..1011 reserved, 1100/1101 message waiting with default alphabet


def _unpack(data: bytes, count: int) -> list[int]:
    """The first ``count`` septets packed into ``data`` (TS 23.038 6.1.2.1.1)."""
    value = int.from_bytes(data, "little")
    return [(value >> (7 * index)) & 0x7F for index in range(count)]


def _pack(codes: list[int], skip_bits: int = 0) -> bytes:
    value = 0
    for index, code in enumerate(codes):
        value |= code << (skip_bits + 7 * index)
    length = math.ceil((skip_bits + 7 * len(codes)) / 8)
    return value.to_bytes(length, "little")


def _concatenation(header: bytes, at: int) -> tuple[int, int, int] | None:
    """The concatenation information element of a user data header (TS 23.040 9.2.3.24.1, .8)."""
    part = None
    index = 0
    while index < len(header):
        if index + 2 > len(header):
            raise SmsPduError(f"user data header at octet {at + index}: an information element is cut short")
        iei, length = header[index], header[index + 1]
        data = header[index + 2:index + 2 + length]
        if len(data) != length:
            raise SmsPduError(f"user data header at octet {at + index}: information element {iei:02X} says "
                              f"{length} octets, {len(data)} are left")
        if iei == 0x00 or iei == 0x08:
            expected = 3 if iei == 0x00 else 4
            if length != expected:
                raise SmsPduError(f"user data header at octet {at + index}: concatenation element {iei:02X} "
                                  f"expected {expected} octets, got {length}")
            reference = data[0] if iei == 0x00 else int.from_bytes(data[:2], "big")
            total, sequence = data[-2], data[-1]
            # TS 23.040 9.2.3.24.1: a receiver ignores an element whose numbers cannot be.
            if 1 <= sequence <= total:
                part = (reference, total, sequence)
        index += 2 + length
    return part


def _read_user_data(octets: _Octets, coding: Coding, has_header: bool) -> tuple[str, tuple[int, int, int] | None]:
    start = octets.at
    length = octets.octet("user data length")
    if coding == "gsm7":
        if length > MAX_SEPTETS:
            raise SmsPduError(f"user data length at octet {start}: expected at most {MAX_SEPTETS} septets, "
                              f"got {length}")
        data = octets.take(math.ceil(length * 7 / 8), "user data")
    else:
        if length > MAX_OCTETS:
            raise SmsPduError(f"user data length at octet {start}: expected at most {MAX_OCTETS} octets, "
                              f"got {length}")
        data = octets.take(length, "user data")
    part = None
    header_octets = 0
    if has_header:
        if not data:
            raise SmsPduError(f"user data at octet {start + 1}: the header indicator is set, the user data is empty")
        header_octets = data[0] + 1
        if header_octets > len(data):
            raise SmsPduError(f"user data header at octet {start + 1}: says {data[0]} octets, "
                              f"{len(data) - 1} are there")
        part = _concatenation(data[1:header_octets], start + 2)
    if coding == "gsm7":
        skip = math.ceil(header_octets * 8 / 7)  # the header, then fill bits to a septet boundary
        if skip > length:
            raise SmsPduError(f"user data length at octet {start}: {length} septets cannot hold the "
                              f"{header_octets}-octet header")
        codes = _unpack(data, length)[skip:]
        return from_septets(codes), part
    body = data[header_octets:]
    if coding == "8bit":
        return body.decode("latin-1"), part
    if len(body) % 2:
        raise SmsPduError(f"user data at octet {start + 1 + header_octets}: expected UCS2, an even number of octets, "
                          f"got {len(body)}")
    # A concatenated message may split a surrogate pair between two parts: such a half is shown
    # as U+FFFD rather than kept as a lone surrogate no UTF-8 can carry.
    return body.decode("utf-16-be", errors="replace"), part


def _message_type(first: int, expected: int, at: int) -> None:
    mti = first & 0x03
    if mti != expected:
        raise SmsPduError(f"first octet at octet {at}: expected an {_MTI[expected]} (TP-MTI {expected:02b}), "
                          f"got an {_MTI[mti]} (TP-MTI {mti:02b}, octet {first:02X})")


def decode_deliver(pdu_hex: str) -> DeliveredSms:
    """An SMS-DELIVER with its service centre prefix, as ``AT+CMGR`` prints it in PDU mode."""
    octets = _Octets(pdu_hex)
    service_centre = _read_smsc(octets)
    at = octets.at
    first = octets.octet("first octet")
    _message_type(first, 0, at)
    sender = _read_address(octets, "originating address")
    octets.octet("protocol identifier")
    at = octets.at
    coding = _dcs(octets.octet("data coding scheme"), at)
    sent_at = _read_scts(octets, "service centre time stamp")
    text, part = _read_user_data(octets, coding, bool(first & 0x40))
    return DeliveredSms(sender=sender, service_centre=service_centre, sent_at=sent_at, text=text, coding=coding,
                        part=part, raw=pdu_hex)


def decode_submit(pdu_hex: str) -> tuple[str, str]:
    """(destination number, text) of an SMS-SUBMIT with its service centre prefix (``00`` or an address)."""
    octets = _Octets(pdu_hex)
    _read_smsc(octets)
    at = octets.at
    first = octets.octet("first octet")
    _message_type(first, 1, at)
    octets.octet("message reference")
    number = _read_address(octets, "destination address")
    octets.octet("protocol identifier")
    at = octets.at
    coding = _dcs(octets.octet("data coding scheme"), at)
    validity_format = (first >> 3) & 0x03
    if validity_format == 0b10:
        octets.take(1, "relative validity period")
    elif validity_format:  # enhanced (01) and absolute (11) take seven octets
        octets.take(7, "validity period")
    text, _ = _read_user_data(octets, coding, bool(first & 0x40))
    return number, text


# -- writing -----------------------------------------------------------------------------------

def _encode_number(number: object, what: str) -> bytes:
    """Address length (in digits), type of address and the digits as semi-octets."""
    if not isinstance(number, str) or not _NUMBER.fullmatch(number):
        raise SmsPduError(f"{what}: expected '+' and up to 20 digits, or up to 20 digits, got {_show(number)}")
    digits = number.lstrip("+")
    kind = 0x91 if number.startswith("+") else 0x81
    padded = digits + ("F" if len(digits) % 2 else "")
    swapped = "".join(padded[index + 1] + padded[index] for index in range(0, len(padded), 2))
    return bytes((len(digits), kind)) + bytes.fromhex(swapped)


def _encode_smsc(number: str | None) -> bytes:
    if number is None:
        return b"\x00"
    address = _encode_number(number, "service centre")
    return bytes((len(address) - 1,)) + address[1:]  # this length counts octets, type included


def _encode_sender(sender: object) -> bytes:
    if isinstance(sender, str) and _NUMBER.fullmatch(sender):
        return _encode_number(sender, "sender")
    if not isinstance(sender, str) or not sender or not is_gsm7(sender):
        raise SmsPduError(f"sender: expected a number or up to 11 characters of the GSM alphabet, got {_show(sender)}")
    codes = to_septets(sender)
    if len(codes) > 11:
        raise SmsPduError(f"sender: an alphanumeric address holds at most 11 septets, {sender!r} takes {len(codes)}")
    packed = _pack(codes)
    return bytes((math.ceil(len(codes) * 7 / 4), 0xD0)) + packed


def _encode_scts(moment: object) -> bytes:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise SmsPduError(f"sent_at: expected a timezone-aware datetime, got {_show(moment)}")
    offset = moment.utcoffset()
    assert offset is not None
    quarters, rest = divmod(int(offset.total_seconds()), 15 * 60)
    if rest or not -79 <= quarters <= 79:
        raise SmsPduError(f"sent_at: expected a zone of whole quarter hours within 19:45 of UTC, got {offset}")
    if not _EPOCH_YEAR <= moment.year <= _EPOCH_YEAR + 99:
        raise SmsPduError(f"sent_at: the time stamp holds the years {_EPOCH_YEAR}..{_EPOCH_YEAR + 99}, "
                          f"got {moment.year}")
    fields = (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    out = bytes(((value % 10) << 4) | (value // 10) for value in fields)
    size = abs(quarters)
    return out + bytes((((size % 10) << 4) | (size // 10) | (0x08 if quarters < 0 else 0),))


def _validity_period(hours: object) -> int:
    """TP-VP, relative format (TS 23.040 9.2.3.12.1): the shortest period at least ``hours`` long."""
    if type(hours) is not int or hours < 1:
        raise SmsPduError(f"validity_hours: expected a whole number of hours from 1, got {_show(hours)}")
    if hours <= 12:
        return hours * 12 - 1  # (VP + 1) x 5 minutes
    if hours <= 24:
        return 143 + (hours - 12) * 2  # 12 hours + (VP - 143) x 30 minutes
    if hours <= 30 * 24:
        return 166 + max(2, math.ceil(hours / 24))  # (VP - 166) days
    if hours <= 63 * 7 * 24:
        return 192 + max(5, math.ceil(hours / (7 * 24)))  # (VP - 192) weeks
    raise SmsPduError(f"validity_hours: at most 63 weeks ({63 * 7 * 24} hours), got {hours}")


def _gsm7_codes(text: object, what: str) -> list[int]:
    if not isinstance(text, str):
        raise SmsPduError(f"{what}: expected text, got {type(text).__name__}")
    try:
        codes = to_septets(text)
    except GsmAlphabetError as error:
        raise SmsPduError(f"{what}: {error}; only GSM 7-bit text is sent") from None
    if len(codes) > MAX_SEPTETS:
        raise SmsPduError(f"{what}: one message holds {MAX_SEPTETS} septets, this text takes {len(codes)}")
    return codes


def encode_submit(number: str, text: str, *, validity_hours: int | None = 24) -> tuple[str, int]:
    """An SMS-SUBMIT of ``text`` (GSM 7-bit, one message) to ``number``, for ``AT+CMGS=<n>``.

    Returns the hex to send after the prompt, starting with ``00`` (use the SIM's service
    centre), and ``n``: the octets after that ``00``.  A ``+`` number goes as international
    (type 0x91), any other as unknown (0x81).  ``validity_hours`` is rounded up to the next
    period TS 23.040 can express (whole hours to 12, half hours to 24, then days to 30, then
    weeks to 63); None sends no validity period, and the service centre keeps its own.
    """
    codes = _gsm7_codes(text, "text")
    address = _encode_number(number, "number")
    if validity_hours is None:
        head = bytes((0x01, 0x00)) + address + bytes((0x00, 0x00))
    else:
        head = bytes((0x11, 0x00)) + address + bytes((0x00, 0x00, _validity_period(validity_hours)))
    tpdu = head + bytes((len(codes),)) + _pack(codes)
    return "00" + tpdu.hex().upper(), len(tpdu)


def encode_deliver(sender: str, text: str, sent_at: datetime, *, coding: Literal["gsm7", "ucs2"] = "gsm7",
                   service_centre: str | None = "+6281100000") -> str:
    """An SMS-DELIVER as a modem prints it (service centre first), for a simulated modem.

    ``sender`` is a number (``+`` for international) or an alphanumeric name of up to 11
    GSM characters (``"TELKOMSEL"``).  ``sent_at`` keeps its zone, which must be whole quarter
    hours; fractions of a second are dropped, as the time stamp has none.
    """
    if coding == "gsm7":
        codes = _gsm7_codes(text, "text")
        user_data = bytes((len(codes),)) + _pack(codes)
        dcs = 0x00
    elif coding == "ucs2":
        if not isinstance(text, str):
            raise SmsPduError(f"text: expected text, got {type(text).__name__}")
        try:
            encoded = text.encode("utf-16-be")
        except UnicodeEncodeError:
            raise SmsPduError("text: has a lone surrogate, which UCS2 cannot carry") from None
        if len(encoded) > MAX_OCTETS:
            raise SmsPduError(f"text: one message holds {MAX_OCTETS} octets of UCS2, this text takes {len(encoded)}")
        user_data = bytes((len(encoded),)) + encoded
        dcs = 0x08
    else:
        raise SmsPduError(f"coding: expected 'gsm7' or 'ucs2', got {_show(coding)}")
    pdu = (_encode_smsc(service_centre) + b"\x04" + _encode_sender(sender) + bytes((0x00, dcs))
           + _encode_scts(sent_at) + user_data)
    return pdu.hex().upper()
