"""Sending over one network interface (the cellular one), never the Pi's Wi-Fi."""
from __future__ import annotations

import errno
import socket


def bind_to_interface(sock: socket.socket, interface: str) -> str | None:
    """Tie ``sock`` to ``interface`` (SO_BINDTODEVICE); the reason as a sentence when it cannot be."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return f"interface {interface} not found"
        if exc.errno == errno.EPERM:
            return f"binding to interface {interface} needs CAP_NET_RAW on this kernel"
        return f"cannot bind to interface {interface}: {exc.strerror}"
    return None
