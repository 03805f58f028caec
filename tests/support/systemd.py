"""systemd's side of sd_notify(3) for tests: a datagram socket where ``$NOTIFY_SOCKET`` points."""
from __future__ import annotations

import socket
import threading
import time

from agent.shared.polling import wait_until


class FakeSystemd:
    """A notify socket that records every datagram with its arrival time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    @property
    def env_value(self) -> str:
        return "@" + self.address[1:] if self.address.startswith("\0") else self.address

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        wait_until(lambda: len(self.messages) >= count, timeout, interval=0.01)
        return [m for _, m in self.messages]

    def pings(self) -> list[float]:
        return [t for t, m in self.messages if "WATCHDOG=1" in m.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
