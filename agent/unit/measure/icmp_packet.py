"""ICMP echo messages (RFC 792) for IPv4: build a request, parse what comes back.

Pure functions.  :func:`parse_icmp` raises :class:`IcmpParseError` and nothing else, whatever
the bytes; a datagram ICMP socket hands over the ICMP message alone, a raw socket the IPv4
header in front of it (``ip_header=True``).
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
ERROR_TYPES = (DEST_UNREACHABLE, TIME_EXCEEDED)

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_UNREACHABLE_CODES = {
    0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
    4: "fragmentation needed", 5: "source route failed", 6: "destination network unknown",
    7: "destination host unknown", 9: "network administratively prohibited",
    10: "host administratively prohibited", 13: "communication administratively prohibited",
}


class IcmpParseError(ValueError):
    """The bytes are not an ICMP message we can read (truncated, bad checksum, not ICMP)."""


@dataclass(frozen=True)
class IcmpMessage:
    """An ICMP message.  ``ident``/``seq`` for echo messages; for errors (destination
    unreachable, time exceeded) ``quoted`` is the ``(ident, seq)`` of the echo request the
    error is about, when it quotes one.  ``source`` is the sender, when the IP header was there."""

    type: int
    code: int
    ident: int | None = None
    seq: int | None = None
    payload: bytes = b""
    quoted: tuple[int, int] | None = None
    source: str | None = None

    def describe(self) -> str:
        """The error in words, e.g. ``host unreachable (from 10.0.0.1)``."""
        if self.type == DEST_UNREACHABLE:
            text = _UNREACHABLE_CODES.get(self.code, f"destination unreachable (code {self.code})")
        elif self.type == TIME_EXCEEDED:
            text = "time to live exceeded"
        else:
            text = f"ICMP type {self.type} code {self.code}"
        return f"{text} (from {self.source})" if self.source else text


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo_request(ident: int, seq: int, payload: bytes = b"") -> bytes:
    """An echo request with its checksum filled in (a datagram socket recomputes it anyway)."""
    if not 0 <= ident <= 0xFFFF or not 0 <= seq <= 0xFFFF:
        raise ValueError("ident and seq are 16-bit numbers")
    header = _HEADER.pack(ECHO_REQUEST, 0, 0, ident, seq)
    return _HEADER.pack(ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def _strip_ip_header(data: bytes) -> tuple[bytes, bytes, str]:
    """(ip header, rest, source address) of an IPv4 datagram carrying ICMP."""
    if len(data) < 20:
        raise IcmpParseError(f"IPv4 header truncated: {len(data)} bytes")
    version, ihl = data[0] >> 4, (data[0] & 0x0F) * 4
    if version != 4:
        raise IcmpParseError(f"not IPv4 (version {version})")
    if ihl < 20 or len(data) < ihl:
        raise IcmpParseError(f"bad IPv4 header length {ihl}")
    if data[9] != 1:
        raise IcmpParseError(f"not ICMP (IP protocol {data[9]})")
    return data[:ihl], data[ihl:], str(ipaddress.IPv4Address(data[12:16]))


def _quoted_echo(body: bytes) -> tuple[int, int] | None:
    """The (ident, seq) of the echo request quoted in an ICMP error, if that is what it quotes."""
    try:
        _, inner, _ = _strip_ip_header(body)
    except IcmpParseError:
        return None
    if len(inner) < _HEADER.size or inner[0] != ECHO_REQUEST:
        return None
    _, _, _, ident, seq = _HEADER.unpack_from(inner)
    return ident, seq


def parse_icmp(data: bytes, ip_header: bool = False, verify_checksum: bool = True) -> IcmpMessage:
    """Read one ICMP message; raises :class:`IcmpParseError` only."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise IcmpParseError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    source = None
    if ip_header:
        _, data, source = _strip_ip_header(data)
    if len(data) < _HEADER.size:
        raise IcmpParseError(f"ICMP message truncated: {len(data)} bytes")
    if verify_checksum and checksum(data) != 0:
        raise IcmpParseError("ICMP checksum does not match")
    kind, code, _, ident, seq = _HEADER.unpack_from(data)
    body = data[_HEADER.size:]
    if kind in (ECHO_REPLY, ECHO_REQUEST):
        return IcmpMessage(kind, code, ident, seq, body, source=source)
    if kind in ERROR_TYPES:
        return IcmpMessage(kind, code, payload=body, quoted=_quoted_echo(body), source=source)
    return IcmpMessage(kind, code, payload=body, source=source)
