"""A pseudo-terminal behind a stable path, as a simulated USB serial device.

A real ``/dev/ttyUSB2`` keeps its name when the device comes back; a pty gets a new
``/dev/pts/N`` every time.  The simulators therefore publish a symlink (``link``) that is
swapped atomically to each new pty, and removed while the device is "unplugged".
"""
from __future__ import annotations

import os
import tty


def open_linked_pty(link: str) -> tuple[int, int, str]:
    """A new raw pty with ``link`` pointing at it: (master fd, slave fd, slave name).

    The master is non-blocking.  The caller keeps the slave open too, so writes never fail
    while no host has the port open.
    """
    master, slave = os.openpty()
    # Raw from the start: with the default line discipline our own output would be echoed
    # back as if the host had typed it, and \r\n would become \r\r\n.
    tty.setraw(slave)
    os.set_blocking(master, False)
    name = os.ttyname(slave)
    tmp = f"{link}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(name, tmp)
    os.replace(tmp, link)
    return master, slave, name


def close_linked_pty(master: int | None, slave: int | None, link: str) -> None:
    """Close both ends and remove ``link``: an open host sees the device disappear."""
    for fd in (master, slave):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    try:
        os.unlink(link)
    except FileNotFoundError:
        pass
