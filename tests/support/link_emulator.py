"""A userspace link emulator: delay, jitter and loss between two network interfaces.

The kernel of the test machines has no ``netem`` qdisc, so the middle namespace of
:class:`tests.support.netlab.NetLab` runs this program instead.  It bridges two interfaces at layer 2
with AF_PACKET sockets: every frame received on one is sent out of the other after the
configured delay, or dropped.

What the figures mean (all are *round-trip* figures, what a ping across the link sees):

- ``delay_ms``: added round-trip time.  Half of it is applied in each direction.
- ``jitter_ms``: each direction adds a uniform random offset in ``[-jitter/2, +jitter/2]``,
  so the round trip varies within ``delay ± jitter`` (triangular distribution, mean
  ``delay``).  Frames of one direction leave in the order they came (a frame is held behind
  an earlier one with a longer delay), like a real link, unless ``--reorder`` is given.
- ``loss_pct``: chance that a request/reply round trip is lost.  Each direction drops a frame
  with probability ``1 - sqrt(1 - loss)``, independently, from a seeded random generator.

Accuracy: each frame is stamped by the kernel on receipt (``SO_TIMESTAMPNS``) and released
at ``receipt + delay`` by one scheduler loop (a heap and ``select`` with sub-millisecond
timeouts), never by sleeping per frame.  The lateness of every release is recorded; the
``stats`` command reports it.

Rate limiting is not done here: ``tbf`` on the interfaces' egress does it, after the delay.

Control: one JSON object per line on stdin, one answer line on stdout.
``{"delay_ms": 80}`` (any of delay_ms, jitter_ms, loss_pct) changes the link from now on and
answers ``"ok"``; ``"stats"`` answers a JSON object; ``"quit"`` or end of input stops.
Answers are JSON too; the program prints ``"ready"`` once both interfaces are open.

Usage: ``python -m tests.support.link_emulator --a c-side-if --b s-side-if --delay-ms 50 --seed 1``
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import heapq
import json
import math
import os
import random
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: native struct timespec, on x86 and ARM alike
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
PR_SET_TIMERSLACK = 29
TIMESPEC = struct.Struct("@ll")
MAX_FRAME = 65536
BATCH = 256  # frames read from one socket before the scheduler looks at its heap again


@dataclass
class LinkParams:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    def one_way_loss(self) -> float:
        return 1.0 - math.sqrt(1.0 - min(self.loss_pct, 100.0) / 100.0)


@dataclass
class Direction:
    """Frames from ``source`` to ``sink``: counters and the order-keeping release time."""

    name: str
    source: socket.socket
    sink: socket.socket
    rng: random.Random
    forwarded: int = 0
    lost: int = 0
    queue_drops: int = 0
    send_errors: int = 0
    last_release: float = 0.0
    lateness: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, object]:
        late = sorted(self.lateness)
        return {
            "forwarded": self.forwarded,
            "lost": self.lost,
            "queue_drops": self.queue_drops,
            "send_errors": self.send_errors,
            "late_ms_mean": round(1000 * sum(late) / len(late), 4) if late else None,
            "late_ms_p50": round(1000 * late[len(late) // 2], 4) if late else None,
            "late_ms_p99": round(1000 * late[min(len(late) - 1, int(len(late) * 0.99))], 4) if late else None,
            "late_ms_max": round(1000 * late[-1], 4) if late else None,
        }


def open_interface(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((name, ETH_P_ALL))
    try:
        # Our own transmissions on this interface are not traffic to forward.
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # older kernels: the pkttype check in the receive loop does the same
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    # Frames waiting in tbf's queue are charged to the sending socket: a small send buffer
    # would cap the emulated queue, a small receive buffer would drop bursts.
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 16 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    sock.setblocking(False)
    while True:  # frames that arrived before bind() narrowed the socket to this interface
        try:
            sock.recv(MAX_FRAME)
        except BlockingIOError:
            break
    return sock


def tighten_timing() -> None:
    """Wake on time even on a busy machine: 1 ns timer slack (select() then wakes within
    microseconds, not 50 us) and a low real-time priority, so that other tests' processes
    cannot hold a frame back.  The loop sleeps between frames, and the kernel keeps 5 % of
    each CPU for ordinary processes anyway.  Both are best effort."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
    except (OSError, AttributeError):
        pass


class Emulator:
    def __init__(self, a: str, b: str, params: LinkParams, seed: int, reorder: bool) -> None:
        self.params = params
        self.reorder = reorder
        sock_a, sock_b = open_interface(a), open_interface(b)
        self.up = Direction("up", sock_a, sock_b, random.Random(f"{seed}-up"))
        self.down = Direction("down", sock_b, sock_a, random.Random(f"{seed}-down"))
        self.by_fd = {sock_a.fileno(): self.up, sock_b.fileno(): self.down}
        self.heap: list[tuple[float, int, Direction, bytes]] = []
        self.counter = 0
        self.control = sys.stdin.buffer
        self.control_buffer = b""
        os.set_blocking(self.control.fileno(), False)

    # -- receive ----------------------------------------------------------------------------

    def receive(self, direction: Direction) -> None:
        base_mono, base_real = time.monotonic(), time.time()
        for _ in range(BATCH):
            try:
                frame, ancdata, _flags, address = direction.source.recvmsg(MAX_FRAME, socket.CMSG_SPACE(TIMESPEC.size))
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENODEV):
                    raise SystemExit(0)  # the namespace is going away
                raise
            if address[2] == PACKET_OUTGOING:
                continue
            received = base_mono
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
                    sec, nsec = TIMESPEC.unpack_from(data)
                    age = base_real - (sec + nsec / 1e9)
                    if abs(age) < 1.0:  # else the wall clock jumped: use the time we read it
                        received = base_mono - age
            self.admit(direction, frame, received)

    def admit(self, direction: Direction, frame: bytes, received: float) -> None:
        p = self.params
        if p.loss_pct > 0 and direction.rng.random() < p.one_way_loss():
            direction.lost += 1
            return
        delay = p.delay_ms / 2.0
        if p.jitter_ms > 0:
            delay += direction.rng.uniform(-p.jitter_ms / 2.0, p.jitter_ms / 2.0)
        release = received + max(delay, 0.0) / 1000.0
        if not self.reorder:
            release = max(release, direction.last_release)
            direction.last_release = release
        self.counter += 1
        heapq.heappush(self.heap, (release, self.counter, direction, frame))

    # -- release ----------------------------------------------------------------------------

    def release_due(self) -> None:
        while self.heap:
            now = time.monotonic()
            release, _, direction, frame = self.heap[0]
            if release > now:
                return
            heapq.heappop(self.heap)
            try:
                direction.sink.send(frame)
            except (BlockingIOError, OSError) as exc:
                if isinstance(exc, BlockingIOError) or exc.errno == errno.ENOBUFS:
                    direction.queue_drops += 1  # tbf's queue is full: a router drops too
                elif exc.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
                    raise SystemExit(0)
                else:
                    direction.send_errors += 1  # EMSGSIZE: offloads left on, frame > MTU
                continue
            direction.forwarded += 1
            if len(direction.lateness) < 200_000:
                direction.lateness.append(now - release)

    # -- control ----------------------------------------------------------------------------

    def read_control(self) -> bool:
        """Handle control lines; False when the controller is gone or said quit."""
        try:
            chunk = os.read(self.control.fileno(), 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.control_buffer += chunk
        while b"\n" in self.control_buffer:
            line, self.control_buffer = self.control_buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                command = json.loads(line)
            except ValueError:
                self.answer({"error": f"not JSON: {line[:60]!r}"})
                continue
            if command == "quit":
                return False
            if command == "stats":
                self.answer({"up": self.up.stats(), "down": self.down.stats(), "params": vars(self.params)})
            elif isinstance(command, dict) and set(command) <= {"delay_ms", "jitter_ms", "loss_pct"}:
                for key, value in command.items():
                    setattr(self.params, key, float(value))
                self.answer("ok")
            else:
                self.answer({"error": f"unknown command {command!r}"})
        return True

    @staticmethod
    def answer(value: object) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    # -- loop -------------------------------------------------------------------------------

    def run(self) -> None:
        sockets = [self.up.source, self.down.source]
        watch = sockets + [self.control]
        self.answer("ready")
        while True:
            self.release_due()
            timeout = None if not self.heap else max(self.heap[0][0] - time.monotonic(), 0.0)
            readable, _, _ = select.select(watch, [], [], timeout)
            for item in readable:
                if item is self.control:
                    if not self.read_control():
                        return
                else:
                    self.receive(self.by_fd[item.fileno()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="link_emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="interface towards the client")
    parser.add_argument("--b", required=True, help="interface towards the server")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reorder", action="store_true", help="let jitter reorder frames")
    args = parser.parse_args(argv)
    tighten_timing()
    emulator = Emulator(args.a, args.b, LinkParams(args.delay_ms, args.jitter_ms, args.loss_pct), args.seed, args.reorder)
    try:
        emulator.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
