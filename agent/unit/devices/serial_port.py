"""What the modem's AT channel and the GPS reader both do with a pyserial port."""
from __future__ import annotations

import os
import termios

import serial

# What a port that is gone (a modem or receiver unplugged, reset, its USB link dropped) raises
# from pyserial: its own errors, the OS's, and termios.error from the terminal calls pyserial
# makes (tcdrain when a write is flushed, tcsetattr when a port is opened), which is not an
# OSError.
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)


def port_failure(exc: BaseException) -> str:
    """Why a port could not be opened or read, in a few words.

    pyserial's own message repeats the port name and the errno text; the errno alone says it.
    """
    errno = getattr(exc, "errno", None)
    if not isinstance(errno, int) and exc.args and isinstance(exc.args[0], int):
        errno = exc.args[0]  # termios.error carries (errno, text) as its arguments only
    if isinstance(errno, int):
        return os.strerror(errno)
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


def close_quietly(port: serial.SerialBase | None) -> None:
    """Close ``port``; a port that is already gone (unplugged) cannot fail to close."""
    if port is not None:
        try:
            port.close()
        except PORT_ERRORS:
            pass
