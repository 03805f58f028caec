"""LinkProxy: a TCP proxy that plays a bad cellular link between a unit and its broker.

It forwards bytes both ways and, on command or at random, cuts every connection, refuses
new ones (no coverage), stalls (bytes held back, sockets kept open), or truncates a
chunk mid-packet and then cuts.  Used by the demo to stage a blank spot and by tests.
"""
from __future__ import annotations

import logging
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class LinkFaults:
    """Random faults per forwarded chunk (probabilities) and how long a stall lasts."""

    cut: float = 0.0
    truncate: float = 0.0
    stall: float = 0.0
    stall_s: float = 2.0


class LinkProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", listen_port: int = 0,
                 faults: LinkFaults | None = None, seed: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.faults = faults or LinkFaults()
        self.rng = random.Random(seed)
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", listen_port))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._up = True
        # Swallow the server's bytes while forwarding the client's: requests arrive, their
        # acknowledgements never do (the case that makes at-least-once send duplicates).
        self.drop_replies = False
        self._stall_until = 0.0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-proxy", daemon=True)
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.cuts = 0
        self.truncations = 0
        self.stalls = 0

    def start(self) -> "LinkProxy":
        self._thread.start()
        return self

    @property
    def up(self) -> bool:
        return self._up

    def set_up(self, up: bool) -> None:
        """Down: existing connections are cut and new ones refused, as in a blank spot."""
        if self._up and not up:
            self.cut()
        self._up = up

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
        if pairs:
            self.cuts += 1

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds
        self.stalls += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.cut()
        self._server.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._server, selectors.EVENT_READ)
        registered: set[socket.socket] = set()
        while not self._stop.is_set():
            with self._lock:
                live = {s: (a, b) for a, b in self._pairs for s in (a, b)}
            for s in list(registered):
                if s not in live:
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                    registered.discard(s)
            stalled = time.monotonic() < self._stall_until
            for s in live:
                if s not in registered and not stalled:
                    try:
                        sel.register(s, selectors.EVENT_READ)
                        registered.add(s)
                    except (ValueError, OSError):
                        pass
                elif s in registered and stalled:
                    sel.unregister(s)
                    registered.discard(s)
            for key, _ in sel.select(timeout=0.05):
                sock = key.fileobj
                if sock is self._server:
                    self._accept()
                    continue
                pair = live.get(sock)  # type: ignore[arg-type]
                if pair is not None:
                    self._forward(sock, pair)  # type: ignore[arg-type]
        sel.close()

    def _accept(self) -> None:
        try:
            client, _ = self._server.accept()
        except OSError:
            return
        if not self._up:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        self.connections += 1
        with self._lock:
            self._pairs.append((client, upstream))

    def _forward(self, sock: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        other = upstream if sock is client else client
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(pair)
            return
        if self.drop_replies and sock is upstream:
            return
        f = self.faults
        roll = self.rng.random()
        if roll < f.cut:
            self._drop(pair)
            self.cuts += 1
            return
        if roll < f.cut + f.truncate and len(data) > 1:
            data = data[: self.rng.randrange(1, len(data))]
            self._send(other, data, sock is client)
            self._drop(pair)
            self.truncations += 1
            return
        if roll < f.cut + f.truncate + f.stall:
            self.stall(f.stall_s)
        if not self._send(other, data, sock is client):
            # A stream with bytes missing in the middle is not something TCP ever delivers:
            # what cannot be passed on ends the connection, as a dead link would.
            self._drop(pair)

    def _send(self, sock: socket.socket, data: bytes, upward: bool) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            return False
        if upward:
            self.bytes_up += len(data)
        else:
            self.bytes_down += len(data)
        return True

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> None:
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for s in pair:
            try:
                s.close()
            except OSError:
                pass
