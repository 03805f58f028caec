"""What the modem's AT channel and the GPS reader both do with a pyserial port."""
from __future__ import annotations

import os

import serial


def port_failure(exc: BaseException) -> str:
    """Why a port could not be opened or read, in a few words.

    pyserial's own message repeats the port name and the errno text; the errno alone says it.
    """
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int):
        return os.strerror(errno)
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


def close_quietly(port: serial.SerialBase | None) -> None:
    """Close ``port``; a port that is already gone (unplugged) cannot fail to close."""
    if port is not None:
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass
