"""Talking to a (simulated) modem's port with raw pyserial, as any client program does."""
from __future__ import annotations

import time
from typing import Callable

import serial


def read_until(port: serial.Serial, done: Callable[[bytes], bool], within: float = 3.0) -> bytes:
    """Bytes read from ``port`` until ``done`` says they are enough; fails after ``within`` seconds."""
    data = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        data += port.read(max(1, port.in_waiting))
        if done(data):
            return data
    raise AssertionError(f"nothing conclusive within {within}s; got {data!r}")


def quiet_for(port: serial.Serial, seconds: float) -> bytes:
    """Everything that arrives during ``seconds``."""
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data += port.read(max(1, port.in_waiting))
    return data
