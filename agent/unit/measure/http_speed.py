"""The ``http`` throughput backend: download and upload against the operator's speed server.

The server is :mod:`agent.centre.speed_server` (``blankspot speed-server``).  Each direction
is one TCP connection: ``GET /bytes?n=N`` for the download, ``POST /upload`` with a body of
``N`` bytes for the upload.  ``N`` is set from the byte cap so that the whole test, TCP/IP
headers and acknowledgements included, stays within the cap even if it never stops early;
normally it stops much sooner, as soon as the rate estimate is stable
(:class:`agent.unit.measure.rate.RateMeter`), and then resets the connection so that the
server stops sending and nothing left in the send buffer goes out.

Rates come from ``TCP_INFO``.  The download counts the data segments that arrived, also
those waiting behind a lost one (the bytes the application can read stall for a round trip
at every loss, then jump); the upload counts what the server's TCP has acknowledged,
selectively acknowledged segments included, not the bytes handed to the socket, which run
ahead of the link by the size of the send buffer.

``bytes_used`` is this backend's own count of the bytes on the wire at the IP level: TCP
payload both ways (retransmissions included) plus an IP and TCP header for every segment
sent and received, from ``TCP_INFO`` just before each connection is closed.  Bytes still in
flight when a direction stops early arrive after that and are not in it; the interface
counters (``--interface``) see them.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent import __version__
from agent.unit.measure.interface import bind_to_interface
from agent.unit.measure.rate import RateMeter, Stability, mbps
from agent.shared.reading import Throughput

log = logging.getLogger(__name__)

# Bytes on the wire per payload byte, with room: a 1500-byte packet carries 1448 bytes of
# payload behind 52 bytes of IP and TCP headers (plus 14 of Ethernet on a LAN), and the
# receiver answers every second packet with a 52-byte acknowledgement.
WIRE_FACTOR = 1.10
HEAD_ALLOWANCE = 2048  # handshake, request and response heads, FIN or RST: per connection
MIN_BODY = 16 * 1024
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux's value; Python 3.11 lacks the name
_PAYLOAD = os.urandom(256 * 1024)
_POLL_S = 0.02


class SpeedTestError(Exception):
    """One direction of the test failed; ``str()`` says why, for ``Throughput.error``."""


@dataclass(frozen=True)
class TcpCounters:
    """What a connection's ``TCP_INFO`` says it has moved."""

    bytes_sent: int  # payload, retransmissions included
    bytes_acked: int  # payload the peer has acknowledged cumulatively
    bytes_received: int  # payload received in order
    segs_out: int
    segs_in: int
    header_bytes: int  # IP + TCP header (and options) per segment
    snd_mss: int = 0
    rcv_mss: int = 0
    sacked: int = 0  # segments the peer holds beyond a hole (selective acknowledgement)
    data_segs_in: int = 0  # data segments received, in order or not

    @property
    def bytes_delivered(self) -> int:
        """Payload the peer has, counting what it holds beyond a lost segment."""
        return self.bytes_acked + self.sacked * self.snd_mss

    @property
    def bytes_arrived(self) -> int:
        """Payload that reached this end, counting what waits behind a lost segment."""
        return max(self.bytes_received, self.data_segs_in * self.rcv_mss)

    @property
    def wire_bytes(self) -> int:
        return self.bytes_sent + self.bytes_received + (self.segs_out + self.segs_in) * self.header_bytes


def parse_tcp_info(raw: bytes, ipv6: bool = False) -> TcpCounters | None:
    """The counters in a Linux ``struct tcp_info`` (``linux/tcp.h``); None if it is too short
    to hold them (kernels before 4.2)."""
    if len(raw) < 144:
        return None
    timestamps = raw[5] & 1  # tcpi_options & TCPI_OPT_TIMESTAMPS
    snd_mss, rcv_mss, _, sacked = struct.unpack_from("=IIII", raw, 16)
    bytes_acked, bytes_received = struct.unpack_from("=QQ", raw, 120)
    segs_out, segs_in = struct.unpack_from("=II", raw, 136)
    data_segs_in = struct.unpack_from("=I", raw, 152)[0] if len(raw) >= 156 else 0
    bytes_sent = struct.unpack_from("=Q", raw, 200)[0] if len(raw) >= 208 else bytes_acked  # 4.19+
    header = (40 if ipv6 else 20) + 20 + (12 if timestamps else 0)
    return TcpCounters(bytes_sent, bytes_acked, bytes_received, segs_out, segs_in, header,
                       snd_mss, rcv_mss, sacked, data_segs_in)


def _connect(host: str, port: int, timeout: float, interface: str | None) -> socket.socket:
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SpeedTestError(f"cannot resolve {host}: {exc.strerror}") from None
    failure = "no address"
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            if interface:
                _bind_to(sock, interface)
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except SpeedTestError:
            sock.close()
            raise
        except TimeoutError:
            failure = f"timed out after {timeout:g} s"
        except OSError as exc:
            failure = exc.strerror or str(exc)
        sock.close()
    raise SpeedTestError(f"cannot connect to {host}:{port}: {failure}")


def _bind_to(sock: socket.socket, interface: str) -> None:
    failure = bind_to_interface(sock, interface)
    if failure is not None:
        raise SpeedTestError(failure)


def body_budget(cap_bytes: int) -> int:
    """The largest body one direction may ask for when it may cost ``cap_bytes`` on the wire."""
    return max(0, int((cap_bytes - HEAD_ALLOWANCE) / WIRE_FACTOR))


@dataclass
class DirectionResult:
    rate_bps: float | None = None  # payload bytes per second
    stable: bool = False
    wire_bytes: int = 0
    error: str | None = None


class _Connection:
    """One HTTP/1.1 exchange on a plain TCP socket, with its bytes counted."""

    def __init__(self, host: str, port: int, timeout: float, interface: str | None = None) -> None:
        self.sock = _connect(host, port, timeout, interface)
        self.sent = 0
        self.received = 0
        self._last: TcpCounters | None = None

    def counters(self) -> TcpCounters | None:
        try:
            raw = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        except OSError:
            return self._last
        self._last = parse_tcp_info(raw, self.sock.family == socket.AF_INET6) or self._last
        return self._last

    def wire_bytes(self) -> int:
        """IP-level bytes so far: ``TCP_INFO``'s, or the HTTP bytes if the kernel has none."""
        counters = self.counters()
        return counters.wire_bytes if counters else self.sent + self.received

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def read_head(self, limit: int = 16384) -> tuple[int, int | None, bytes]:
        """Status code, Content-Length and the body bytes that came with the head."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SpeedTestError("the server closed the connection before answering")
            data += chunk
            self.received += len(chunk)
            if len(data) > limit:
                raise SpeedTestError("the server's answer has no end of headers")
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise SpeedTestError(f"not an HTTP answer: {lines[0][:60]!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        return int(parts[1]), length, body

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a reset: the peer stops sending, and unsent data is dropped."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


@dataclass
class HttpSpeedTest:
    """One download-then-upload test against a speed server; :meth:`run` never raises."""

    url: str
    cap_bytes: int = 10_000_000
    stability: Stability = field(default_factory=Stability)
    upload: bool = True
    interface: str | None = None  # send over this interface only (SO_BINDTODEVICE)
    connect_timeout: float = 10.0
    idle_timeout: float = 10.0  # a direction with no progress for this long fails

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected the speed server's URL as http://HOST[:PORT]/, got {self.url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.base = parts.path if parts.path.endswith("/") else parts.path + "/"
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == 80 else f"{host}:{self.port}"

    def run(self) -> Throughput:
        started = time.monotonic()
        down_cap = self.cap_bytes // 2 if self.upload else self.cap_bytes
        down = self._direction(self._download, body_budget(down_cap))
        up = DirectionResult()
        if self.upload and down.error is None:
            # Half the cap each way, not "what the download left": bytes still in flight when
            # the download stopped are not in its count, but they are within what it asked for.
            up = self._direction(self._upload, body_budget(self.cap_bytes - down_cap))
        errors = [f"{name}: {r.error}" for name, r in (("download", down), ("upload", up)) if r.error]
        for name, r in (("download", down), ("upload", up)):
            if r.rate_bps is not None and not r.stable:
                log.warning("%s: the rate had not settled when the test ended (cap or time limit)", name)
        return Throughput(
            backend="http",
            server=self.url,
            down_mbps=None if down.rate_bps is None else round(mbps(down.rate_bps, 1.0), 3),
            up_mbps=None if up.rate_bps is None else round(mbps(up.rate_bps, 1.0), 3),
            bytes_used=down.wire_bytes + up.wire_bytes,
            duration_s=round(time.monotonic() - started, 3),
            error="; ".join(errors) or None,
        )

    def _direction(self, method, body: int) -> DirectionResult:
        result = DirectionResult()
        if body < MIN_BODY:
            result.error = f"byte cap too small for a test (room for {body} bytes)"
            return result
        try:
            method(body, result)
        except SpeedTestError as exc:
            result.error = str(exc)
        except OSError as exc:
            result.error = f"{exc.strerror or exc}"
        return result

    def _request_head(self, method: str, path: str, extra: str = "") -> bytes:
        return (f"{method} {self.base}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"User-Agent: blankspot/{__version__}\r\nAccept-Encoding: identity\r\n{extra}"
                f"Connection: close\r\n\r\n").encode("ascii")

    def _download(self, body: int, result: DirectionResult) -> None:
        conn = _Connection(self.host, self.port, self.connect_timeout, self.interface)
        complete = False
        try:
            conn.sock.settimeout(self.idle_timeout)
            asked = time.monotonic()
            conn.sendall(self._request_head("GET", f"bytes?n={body}"))
            _, length, first = self._head(conn)
            if length is None:
                raise SpeedTestError("the server's answer has no Content-Length")
            meter = RateMeter(self.stability)
            got = len(first)
            progress = 0

            def sample() -> None:
                # Count what arrived, also behind a lost segment: in-order bytes alone stall
                # for a round trip at every loss, and make a short window's rate jump.
                nonlocal progress
                counters = conn.counters()
                progress = max(progress, got, counters.bytes_arrived if counters else 0)
                meter.add(time.monotonic(), progress)

            sample()
            buffer = bytearray(64 * 1024)
            while got < length and not meter.stable and meter.elapsed < self.stability.max_s:
                try:
                    count = conn.sock.recv_into(buffer)
                except TimeoutError:
                    raise SpeedTestError(f"no data for {self.idle_timeout:g} s") from None
                if count == 0:
                    raise SpeedTestError(f"the server closed the connection after {got} of {length} bytes")
                got += count
                conn.received += count
                sample()
            result.rate_bps, result.stable = meter.rate(), meter.stable
            if not result.rate_bps and got:
                # Everything came in one or two reads (a small cap on a fast link): all there is
                # to go by is the time from the request to the last byte.
                result.rate_bps = got / max(time.monotonic() - asked, 1e-6)
            log.debug("download: %s", meter)
            complete = got >= length
        finally:
            result.wire_bytes = conn.wire_bytes()
            conn.close() if complete else conn.abort()

    def _upload(self, body: int, result: DirectionResult) -> None:
        conn = _Connection(self.host, self.port, self.connect_timeout, self.interface)
        done = False
        try:
            try:
                # Keep little unsent data queued: the rate comes from acknowledgements anyway,
                # and a reset at the end then drops less.
                conn.sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, 128 * 1024)
            except OSError:
                pass
            head = self._request_head("POST", "upload", f"Content-Type: application/octet-stream\r\nContent-Length: {body}\r\n")
            asked = time.monotonic()
            conn.sendall(head)
            conn.sock.setblocking(False)
            meter = RateMeter(self.stability)
            sent = 0
            progress_at = time.monotonic()
            acked_before = -1
            while not meter.stable and meter.elapsed < self.stability.max_s:
                now = time.monotonic()
                counters = conn.counters()
                # Selectively acknowledged segments count: the server has them, and counting only
                # the cumulative acknowledgement stalls for a round trip at every loss.
                acked = max(acked_before, (counters.bytes_delivered - len(head)) if counters else sent)
                if acked > 0:
                    meter.add(now, acked)
                if acked > acked_before:
                    acked_before, progress_at = acked, now
                elif now - progress_at > self.idle_timeout:
                    raise SpeedTestError(f"no progress for {self.idle_timeout:g} s")
                if acked >= body:
                    break
                if sent < body:
                    _, writable, _ = select.select([], [conn.sock], [], _POLL_S)
                    if writable:
                        chunk = min(body - sent, len(_PAYLOAD))
                        try:
                            count = conn.sock.send(memoryview(_PAYLOAD)[:chunk])
                        except BlockingIOError:
                            count = 0
                        sent += count
                        conn.sent += count
                else:
                    select.select([conn.sock], [], [], _POLL_S)
            result.rate_bps, result.stable = meter.rate(), meter.stable
            if not result.rate_bps and acked > 0:  # as for the download
                result.rate_bps = acked / max(time.monotonic() - asked, 1e-6)
            log.debug("upload: %s", meter)
            if acked >= body:  # all delivered: take the server's answer and part cleanly
                conn.sock.setblocking(True)
                conn.sock.settimeout(self.idle_timeout)
                self._head(conn)
                done = True
        finally:
            result.wire_bytes = conn.wire_bytes()
            conn.close() if done else conn.abort()

    @staticmethod
    def _head(conn: _Connection) -> tuple[int, int | None, bytes]:
        try:
            status, length, first = conn.read_head()
        except TimeoutError:
            raise SpeedTestError("no answer from the server") from None
        if status != 200:
            raise SpeedTestError(f"the server answered HTTP {status}")
        return status, length, first
