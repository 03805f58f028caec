"""What the kernel knows about a TCP connection: its round trip, losses and delivery rate.

Linux keeps these for every connection (``struct tcp_info``, ``getsockopt(TCP_INFO)``);
the uplink reads them from its broker connection to size what it sends.  Only the fields
present since Linux 4.19 (every Raspberry Pi OS) are read; on an older kernel, another
system, or a socket that is not TCP, :func:`read_tcp_info` gives None.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

# struct tcp_info (include/uapi/linux/tcp.h), native byte order: the byte holding
# delivery_rate_app_limited at 7, rtt (us) at 68, min_rtt (us) at 148, delivery_rate at 160,
# bytes_sent and bytes_retrans at 200 and 208.
_SIZE = 232


@dataclass(frozen=True)
class TcpInfo:
    rtt_ms: float  # smoothed round trip
    min_rtt_ms: float  # lowest round trip seen: the link's own, without queues
    delivery_rate: int  # bytes/s the connection recently delivered
    app_limited: bool  # the rate was limited by what there was to send, not by the link
    bytes_sent: int
    bytes_retrans: int

    @property
    def loss_pct(self) -> float:
        """Bytes sent again, as a share of all sent: the link's loss as TCP saw it."""
        return 100.0 * self.bytes_retrans / self.bytes_sent if self.bytes_sent else 0.0


def read_tcp_info(sock: socket.socket | None) -> TcpInfo | None:
    """The kernel's figures for ``sock``; None when it has none to give."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except (OSError, ValueError):
        return None
    if len(raw) < 216:  # before Linux 4.19: no bytes_sent / bytes_retrans
        return None
    flags = raw[7]
    rtt_us, = struct.unpack_from("=I", raw, 68)
    min_rtt_us, = struct.unpack_from("=I", raw, 148)
    delivery_rate, = struct.unpack_from("=Q", raw, 160)
    bytes_sent, bytes_retrans = struct.unpack_from("=QQ", raw, 200)
    return TcpInfo(rtt_ms=rtt_us / 1000, min_rtt_ms=min_rtt_us / 1000, delivery_rate=delivery_rate,
                   app_limited=bool(flags & 1), bytes_sent=bytes_sent, bytes_retrans=bytes_retrans)
