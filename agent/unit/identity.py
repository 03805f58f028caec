"""A name for a unit that has none: derived from the Raspberry Pi's serial number.

``device.id`` has no default (the host name of every fresh Raspberry Pi OS is
``raspberrypi``), so ``blankspot doctor`` proposes one that is unique per board and stays
the same across reinstalls: ``pi-`` and the last 8 hex digits of the SoC's serial number.

The serial is read from ``/proc/cpuinfo`` (its ``Serial`` line) or, where the kernel does not
write that line, from the device tree (``/sys/firmware/devicetree/base/serial-number``).
Both paths are parameters so tests can give their own files.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
DEVICETREE_SERIAL = Path("/sys/firmware/devicetree/base/serial-number")

_SERIAL_LINE = re.compile(r"^Serial\s*:\s*([0-9A-Fa-f]+)\s*$", re.M)
_HEX = re.compile(r"[0-9A-Fa-f]{8,}")


def _serial_from_cpuinfo(text: str) -> str | None:
    match = _SERIAL_LINE.search(text)
    return match.group(1) if match else None


def _serial_from_devicetree(raw: bytes) -> str | None:
    # A device-tree string property: NUL-terminated.
    text = raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    return text if _HEX.fullmatch(text) else None


def _usable(serial: str | None) -> str | None:
    # Boards and virtual machines without a serial show zeros: not an identity.
    if serial is None or len(serial) < 8 or not serial.strip("0"):
        return None
    return serial.lower()


def pi_serial(cpuinfo: Path = CPUINFO, devicetree: Path = DEVICETREE_SERIAL) -> str | None:
    """The board's serial number in lower-case hex, or None where there is none to read."""
    try:
        found = _usable(_serial_from_cpuinfo(cpuinfo.read_text(encoding="ascii", errors="replace")))
    except OSError as exc:
        log.debug("no serial from %s: %s", cpuinfo, exc)
        found = None
    if found is None:
        try:
            found = _usable(_serial_from_devicetree(devicetree.read_bytes()))
        except OSError as exc:
            log.debug("no serial from %s: %s", devicetree, exc)
    return found


def proposed_device_id(serial: str) -> str:
    """``pi-`` and the serial's last 8 hex digits: ``10000000a1b2c3d4`` -> ``pi-a1b2c3d4``."""
    return f"pi-{serial[-8:].lower()}"
