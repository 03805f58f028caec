"""Round-trip time to a host: ICMP echo, or the TCP three-way handshake.

:func:`measure_latency` always returns a :class:`~agent.shared.reading.Latency`.  A probe that could
not run (name not found, interface missing, no route, no permission) is a reading with 100 %
loss and ``error`` saying why; nothing is raised.

Methods (``Latency.method``):

- ``icmp``: echo requests, like ``ping``.  A datagram ICMP socket (``SOCK_DGRAM``,
  ``IPPROTO_ICMP``) when ``net.ipv4.ping_group_range`` includes the process's group, else a
  raw socket, which needs ``CAP_NET_RAW``.  IPv4 only.  The round trip is taken from the
  kernel's receive timestamp, so a busy process does not inflate it.
- ``tcp``: the time ``connect()`` takes to a host and port (SYN out, SYN-ACK or RST back),
  then the connection is closed.  Works where ICMP is blocked, and measures exactly the path
  to a service such as the broker.  A probe whose SYN had to be sent again is counted as lost:
  which SYN was answered cannot be known, so the round trip cannot be either.
- ``auto`` (asked for, never reported): ICMP; if it got no answer at all, or ICMP is not
  permitted here, TCP with the same count.  The reading says which method produced it.

Probes go out every ``interval`` seconds; one is lost when no answer came within ``timeout``
of sending it.  ``interface`` binds the probes to a network interface (``SO_BINDTODEVICE``:
measure over the modem even when another route is the default), ``source`` to a local address.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Protocol

from agent.unit.measure.icmp_packet import ECHO_REPLY, ERROR_TYPES, IcmpParseError, build_echo_request, parse_icmp
from agent.unit.measure.interface import bind_to_interface
from agent.unit.measure.rtt_stats import summarize
from agent.unit.measure.target import Target, parse_target
from agent.shared.reading import Latency
from agent.shared.installed import doc

log = logging.getLogger(__name__)

METHODS = ("auto", "icmp", "tcp")
ICMP_SOCKETS = ("auto", "dgram", "raw")
DEFAULT_TCP_PORT = 443
PAYLOAD_SIZE = 56  # like ping: 64-byte ICMP messages
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: native struct timespec
_TIMESPEC = struct.Struct("@ll")
SOL_RAW = 255
ICMP_FILTER = 1
_TCPI_TOTAL_RETRANS = 100  # offset of tcpi_total_retrans in struct tcp_info (Linux)
PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"


class ProbeError(Exception):
    """A measurement cannot go on; ``str()`` is the reading's ``error``.  ``icmp_only`` when
    it is a reason ICMP cannot run that would not stop a TCP probe (permission, ICMP refused)."""

    def __init__(self, message: str, icmp_only: bool = False) -> None:
        super().__init__(message)
        self.icmp_only = icmp_only


@dataclass
class ProbeRun:
    sent: int = 0
    rtts_ms: list[float | None] = field(default_factory=list)
    error: str | None = None
    note: str | None = None  # a reason for losses (ICMP unreachable, ...) worth reporting if all were lost
    icmp_only: bool = False


class Prober(Protocol):
    def send(self, seq: int) -> None: ...
    def wait(self, timeout: float) -> list[tuple[int, float]]: ...
    def forget(self, seq: int) -> None: ...
    def close(self) -> None: ...
    note: str | None


# -- addresses and sockets ------------------------------------------------------------------

def resolve(host: str, family: int, port: int | None = None) -> tuple[int, tuple]:
    """(family, sockaddr) of ``host``; raises :class:`ProbeError` when the name is unknown."""
    try:
        infos = socket.getaddrinfo(host, port or 0, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError:
        raise ProbeError(f"cannot resolve {host}: not a valid host name") from None
    if not infos:
        raise ProbeError(f"cannot resolve {host}: no address")
    return infos[0][0], infos[0][4]


def _bind(sock: socket.socket, interface: str | None, source: str | None) -> None:
    if interface:
        failure = bind_to_interface(sock, interface)
        if failure is not None:
            raise ProbeError(failure)
    if source:
        try:
            sock.bind((source, 0))
        except OSError as exc:
            raise ProbeError(f"cannot use source address {source}: {exc.strerror}") from None
        except (socket.gaierror, ValueError) as exc:
            raise ProbeError(f"cannot use source address {source}: {exc}") from None


def _send_failure(exc: OSError, what: str) -> ProbeError:
    if exc.errno == errno.EPERM:
        # A local firewall rule, not the network: TCP may still get through.
        return ProbeError(f"{what}: sending refused by a local firewall rule", icmp_only=True)
    return ProbeError(f"{what}: {exc.strerror or exc}")


def ping_group_range() -> str:
    try:
        with open(PING_GROUP_RANGE) as handle:
            return " ".join(handle.read().split())
    except OSError:
        return "unknown"


# -- ICMP ------------------------------------------------------------------------------------

class IcmpProber:
    """Echo requests on one socket; replies matched by identifier, sequence and a token."""

    def __init__(self, address: str, kind: str = "auto", interface: str | None = None,
                 source: str | None = None) -> None:
        if kind not in ICMP_SOCKETS:
            raise ValueError(f"ICMP socket kind {kind!r}")
        self.address = address
        self.sock, self.kind = self._open(kind)
        self.note: str | None = None
        self.token = os.urandom(8)
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.sent_real: dict[int, float] = {}
        self.sent_mono: dict[int, float] = {}
        try:
            _bind(self.sock, interface, source)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if self.kind == "raw":
                # Only echo replies and the errors that may concern them reach this socket.
                wanted = (1 << ECHO_REPLY) | sum(1 << t for t in ERROR_TYPES)
                try:
                    self.sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~wanted & 0xFFFFFFFF))
                except OSError:
                    pass
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    @staticmethod
    def _open(kind: str) -> tuple[socket.socket, str]:
        problems = []
        if kind in ("auto", "dgram"):
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), "dgram"
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT):
                    raise ProbeError(f"cannot open an ICMP socket: {exc.strerror}") from None
                problems.append(f"net.ipv4.ping_group_range ({ping_group_range()}) does not include group {os.getegid()}")
        if kind in ("auto", "raw"):
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), "raw"
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM):
                    raise ProbeError(f"cannot open a raw ICMP socket: {exc.strerror}") from None
                problems.append("no CAP_NET_RAW for a raw socket")
        raise ProbeError("ICMP not permitted: " + " and ".join(problems) + f" (see {doc('measurement.md')})",
                         icmp_only=True)

    def send(self, seq: int) -> None:
        payload = self.token + seq.to_bytes(2, "big") + bytes(PAYLOAD_SIZE - len(self.token) - 2)
        packet = build_echo_request(self.ident, seq & 0xFFFF, payload)
        self.sent_real[seq], self.sent_mono[seq] = time.time(), time.monotonic()
        try:
            self.sock.sendto(packet, (self.address, 0))
        except OSError as exc:
            raise _send_failure(exc, f"cannot send to {self.address}") from None
        if self.kind == "dgram":
            self.ident = self.sock.getsockname()[1]  # the kernel's identifier for this socket

    def forget(self, seq: int) -> None:
        self.sent_real.pop(seq, None)
        self.sent_mono.pop(seq, None)

    def wait(self, timeout: float) -> list[tuple[int, float]]:
        answers: list[tuple[int, float]] = []
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return answers
        while True:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                return answers
            except OSError as exc:  # an ICMP error reported on the socket
                self.note = exc.strerror or str(exc)
                return answers
            now_mono = time.monotonic()
            answer = self._match(data)
            if answer is None or answer not in self.sent_mono:
                continue
            rtt = now_mono - self.sent_mono[answer]
            stamp = _kernel_time(ancdata)
            if stamp is not None and 0 <= stamp - self.sent_real[answer] <= rtt + 0.001:
                rtt = stamp - self.sent_real[answer]
            self.forget(answer)
            answers.append((answer, rtt * 1000.0))

    def _match(self, data: bytes) -> int | None:
        try:
            message = parse_icmp(data, ip_header=self.kind == "raw")
        except IcmpParseError as exc:
            log.debug("ignoring ICMP message: %s", exc)
            return None
        if message.type in ERROR_TYPES:
            if message.quoted and message.quoted[0] == self.ident:
                self.note = message.describe()
            return None
        if message.type != ECHO_REPLY or message.ident != self.ident or not message.payload.startswith(self.token):
            return None
        return int.from_bytes(message.payload[8:10], "big") if len(message.payload) >= 10 else None

    def close(self) -> None:
        self.sock.close()


def _kernel_time(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec + nsec / 1e9
    return None


# -- TCP -------------------------------------------------------------------------------------

class TcpProber:
    """One non-blocking ``connect()`` per probe; the handshake's duration is the round trip."""

    def __init__(self, family: int, sockaddr: tuple, interface: str | None = None,
                 source: str | None = None) -> None:
        self.family, self.sockaddr = family, sockaddr
        self.interface, self.source = interface, source
        self.pending: dict[int, tuple[socket.socket, float]] = {}
        self.note: str | None = None
        self._check_binding()

    def _check_binding(self) -> None:
        """Fail before the first probe when the interface or source address cannot be used."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            _bind(sock, self.interface, self.source)
        finally:
            sock.close()

    def send(self, seq: int) -> None:
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors: too many probes waiting at once
            raise ProbeError(f"cannot open a TCP socket: {exc.strerror}") from None
        try:
            _bind(sock, self.interface, self.source)
            sock.setblocking(False)
            started = time.monotonic()
            code = sock.connect_ex(self.sockaddr)
        except BaseException:
            sock.close()
            raise
        if code in (0, errno.EINPROGRESS, errno.ECONNREFUSED):
            self.pending[seq] = (sock, started)
            return
        sock.close()
        raise _send_failure(OSError(code, os.strerror(code)), f"cannot connect to {_show(self.sockaddr)}")

    def forget(self, seq: int) -> None:
        entry = self.pending.pop(seq, None)
        if entry:
            entry[0].close()

    def wait(self, timeout: float) -> list[tuple[int, float]]:
        if not self.pending:
            time.sleep(timeout)
            return []
        by_fd = {sock.fileno(): seq for seq, (sock, _) in self.pending.items()}
        poller = select.poll()  # not select(): probes in flight may outnumber FD_SETSIZE
        for fd in by_fd:
            poller.register(fd, select.POLLOUT)
        events = poller.poll(math.ceil(timeout * 1000))
        now = time.monotonic()
        answers = []
        for fd, _ in events:
            seq = by_fd[fd]
            sock, started = self.pending[seq]
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            # A RST is an answer too: the host is there and took one round trip to say no.
            answered = code in (0, errno.ECONNREFUSED) and _syn_retransmits(sock) == 0
            if code not in (0, errno.ECONNREFUSED):
                self.note = f"{_show(self.sockaddr)}: {os.strerror(code)}"
            self.forget(seq)
            if answered:
                answers.append((seq, (now - started) * 1000.0))
        return answers

    def close(self) -> None:
        for seq in list(self.pending):
            self.forget(seq)


def _syn_retransmits(sock: socket.socket) -> int:
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_TOTAL_RETRANS + 4)
    except OSError:
        return 0
    if len(info) < _TCPI_TOTAL_RETRANS + 4:
        return 0
    return struct.unpack_from("I", info, _TCPI_TOTAL_RETRANS)[0]


def _show(sockaddr: tuple) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the probe schedule ----------------------------------------------------------------------

def run_probes(prober: Prober, count: int, interval: float, timeout: float) -> ProbeRun:
    """Send ``count`` probes ``interval`` apart and collect answers until each is answered or
    ``timeout`` old.  A send that fails stops the sending; answers still on their way count."""
    run = ProbeRun(rtts_ms=[None] * count)
    outstanding: dict[int, float] = {}
    next_seq, next_send = 0, time.monotonic()
    try:
        while True:
            now = time.monotonic()
            for seq, sent_at in list(outstanding.items()):
                if now - sent_at > timeout:
                    del outstanding[seq]
                    prober.forget(seq)
            if next_seq < count and now >= next_send:
                try:
                    prober.send(next_seq)
                except ProbeError as exc:
                    run.error, run.icmp_only = str(exc), exc.icmp_only
                    next_seq = count
                    continue
                outstanding[next_seq] = now
                run.sent += 1
                next_seq += 1
                next_send = max(next_send + interval, now)  # late: no burst to catch up
                continue
            if next_seq >= count and not outstanding:
                break
            wakes = [sent_at + timeout for sent_at in outstanding.values()]
            if next_seq < count:
                wakes.append(next_send)
            for seq, rtt_ms in prober.wait(max(min(wakes) - now, 0.0)):
                if seq in outstanding and rtt_ms <= timeout * 1000.0:
                    del outstanding[seq]
                    run.rtts_ms[seq] = rtt_ms
    finally:
        prober.close()
    run.note = prober.note
    return run


# -- the measurement -------------------------------------------------------------------------

def _icmp(target: Target, count: int, interval: float, timeout: float, interface: str | None,
          source: str | None, icmp_socket: str) -> tuple[Latency, bool]:
    """The ICMP reading, and whether TCP should be tried instead (in ``auto``)."""
    name = target.host
    try:
        _, sockaddr = resolve(target.host, socket.AF_INET)
        prober = IcmpProber(sockaddr[0], icmp_socket, interface, source)
    except ProbeError as exc:
        return summarize(name, "icmp", 0, [], str(exc)), exc.icmp_only
    log.debug("ICMP to %s over a %s socket", sockaddr[0], prober.kind)
    run = run_probes(prober, count, interval, timeout)
    nothing_back = all(r is None for r in run.rtts_ms)
    return _reading(name, "icmp", run), run.icmp_only or (run.error is None and nothing_back)


def _tcp(target: Target, count: int, interval: float, timeout: float, interface: str | None,
         source: str | None) -> Latency:
    target = target.with_port(DEFAULT_TCP_PORT)
    name = str(target)
    try:
        family, sockaddr = resolve(target.host, socket.AF_UNSPEC, target.port)
        prober = TcpProber(family, sockaddr, interface, source)
    except ProbeError as exc:
        return summarize(name, "tcp", 0, [], str(exc))
    return _reading(name, "tcp", run_probes(prober, count, interval, timeout))


def _reading(name: str, method: str, run: ProbeRun) -> Latency:
    error = run.error
    if error is None and run.note and all(r is None for r in run.rtts_ms):
        error = run.note  # nothing came back, and the network said why
    return summarize(name, method, run.sent, run.rtts_ms, error)


def measure_latency(target: Target | str, method: str = "auto", count: int = 10, interval: float = 0.2,
                    timeout: float = 2.0, interface: str | None = None, source: str | None = None,
                    icmp_socket: str = "auto") -> Latency:
    """One latency reading of ``target`` (see the module docstring).  Its port is the TCP port
    (default 443); ICMP ignores it.  A text target that is not ``HOST[:PORT]`` raises
    :class:`~agent.unit.measure.target.TargetError`, and so do impossible arguments (ValueError):
    those are the caller's mistakes, not the network's."""
    if isinstance(target, str):
        target = parse_target(target)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if icmp_socket not in ICMP_SOCKETS:
        raise ValueError(f"icmp_socket must be one of {', '.join(ICMP_SOCKETS)}, got {icmp_socket!r}")
    if not 1 <= count <= 0xFFFF or interval <= 0 or timeout <= 0:
        raise ValueError("count (at most 65535), interval and timeout must be positive")
    try:
        if method == "tcp":
            return _tcp(target, count, interval, timeout, interface, source)
        reading, try_tcp = _icmp(target, count, interval, timeout, interface, source, icmp_socket)
        if method == "auto" and try_tcp:
            log.info("no ICMP answer from %s (%s); measuring the TCP handshake instead",
                     target.host, reading.error or f"{reading.sent} probes lost")
            return _tcp(target, count, interval, timeout, interface, source)
        return reading
    except OSError as exc:  # the system refused something unforeseen: still a reading
        log.warning("latency measurement of %s failed: %s", target, exc)
        return summarize(str(target), "tcp" if method == "tcp" else "icmp", 0, [], f"measurement failed: {exc}")
