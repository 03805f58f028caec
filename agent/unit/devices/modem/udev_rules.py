"""udev rules for the modems that have a profile: stable port names, ModemManager kept off.

Every USB identity in ``firmware_configs/`` gets rules that name its AT port
``/dev/blankspot-at`` and its NMEA port ``/dev/blankspot-nmea`` (whichever ttyUSB number
the kernel handed out this boot), and tell ModemManager to leave the modem alone, so two
programs never talk AT on one port at the same time.  A new profile gets rules by running

    python -m agent.commands.udev_rules --profiles firmware_configs > deploy/udev/90-blankspot.rules

Two ways to share the modem with ModemManager:

- ``device`` (the default): ModemManager ignores the whole modem (``ID_MM_DEVICE_IGNORE``).
  The unit's data connection then comes from elsewhere: the modem's own router mode
  (ECM/RNDIS), or a dialer such as ``qmicli``.
- ``ports``: ModemManager ignores only the AT and NMEA ports blankspot uses
  (``ID_MM_PORT_IGNORE``) and keeps managing the data connection through the others
  (QMI/MBIM, the second AT port).

Why the rules look the way they do:

- ``ATTRS{idVendor}`` and ``ATTRS{bInterfaceNumber}`` live on different parent devices (the
  USB device and the USB interface); udev requires all ``ATTRS`` keys of one rule to match
  on the *same* parent, so a rule holding both never matches.  The interface number is
  taken from ``ENV{ID_USB_INTERFACE_NUM}`` instead, which udev's ``usb_id`` builtin sets
  (two hex digits: interface 10 is ``0a``).
- The file is numbered 90 so it runs after 60-serial.rules (which imports ``usb_id``) and
  after ModemManager's 77-mm-*.rules; it imports ``usb_id`` itself all the same.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.unit.devices.modem.profiles import ModemProfile, load_profile_file

MODES = ("device", "ports")
AT_LINK = "blankspot-at"
NMEA_LINK = "blankspot-nmea"
FILE_NAME = "90-blankspot.rules"


class UdevRulesError(Exception):
    """The profiles cannot be turned into consistent rules (one line, names the profiles)."""


@dataclass(frozen=True)
class PortLayout:
    """One USB identity and where its ports are, with every profile that lists it."""

    vid: str
    pid: str
    at_interface: int
    nmea_interface: int | None
    models: tuple[str, ...]      # "Quectel EC25 (quectel-ec25)"


def port_layouts(profiles: Iterable[ModemProfile]) -> list[PortLayout]:
    """Every USB identity once, sorted by id; UdevRulesError when two profiles disagree on it."""
    found: dict[tuple[str, str], PortLayout] = {}
    for profile in sorted(profiles, key=lambda p: p.name):
        model = f"{profile.vendor} {profile.model} ({profile.name})"
        for usb in profile.usb:
            key = (usb.vid, usb.pid)
            known = found.get(key)
            if known is None:
                found[key] = PortLayout(usb.vid, usb.pid, usb.at_interface, usb.nmea_interface, (model,))
                continue
            if (known.at_interface, known.nmea_interface) != (usb.at_interface, usb.nmea_interface):
                raise UdevRulesError(
                    f"{usb.vid}:{usb.pid} has AT/NMEA interfaces {known.at_interface}/{known.nmea_interface} in "
                    f"{', '.join(known.models)} but {usb.at_interface}/{usb.nmea_interface} in {model}; "
                    "udev cannot tell the models apart, so their layouts must agree"
                )
            found[key] = PortLayout(known.vid, known.pid, known.at_interface, known.nmea_interface,
                                    known.models + (model,))
    return [found[key] for key in sorted(found)]


def _port_rule(layout: PortLayout, interface: int, link: str, role: str, mode: str) -> str:
    keys = [
        'SUBSYSTEM=="tty"',
        f'ATTRS{{idVendor}}=="{layout.vid}"',
        f'ATTRS{{idProduct}}=="{layout.pid}"',
        f'ENV{{ID_USB_INTERFACE_NUM}}=="{interface:02x}"',
        f'SYMLINK+="{link}"',
        f'ENV{{BLANKSPOT_PORT}}="{role}"',
    ]
    if mode == "ports":
        keys.append('ENV{ID_MM_PORT_IGNORE}="1"')
    return ", ".join(keys)


def udev_rules(profiles: Iterable[ModemProfile], mode: str = "device") -> str:
    """The text of ``90-blankspot.rules`` for ``profiles``; pure."""
    if mode not in MODES:
        raise UdevRulesError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    layouts = port_layouts(profiles)
    regenerate = "python -m agent.commands.udev_rules" + (" --share-modem" if mode == "ports" else "")
    lines = [
        "# blankspot: stable names for the modem's ports, and ModemManager kept off them.",
        f"# Generated from firmware_configs/ by `{regenerate}`; do not edit.",
        f"#   /dev/{AT_LINK}    the port that takes AT commands",
        f"#   /dev/{NMEA_LINK}  the port that streams NMEA (models with built-in GNSS)",
        "# ModemManager: " + (
            "it ignores the whole modem (ID_MM_DEVICE_IGNORE); the data connection is not its job."
            if mode == "device" else
            "it ignores only these two ports (ID_MM_PORT_IGNORE) and keeps the data connection."),
        "# Interface numbers come from ENV{ID_USB_INTERFACE_NUM}, two hex digits: ATTRS{bInterfaceNumber}",
        "# sits on another parent than ATTRS{idVendor}, and one rule cannot match both.",
        "",
        'ACTION=="remove", GOTO="blankspot_end"',
        'SUBSYSTEM=="tty", SUBSYSTEMS=="usb", ENV{ID_USB_INTERFACE_NUM}=="", IMPORT{builtin}="usb_id"',
    ]
    for layout in layouts:
        ports = f"AT on interface {layout.at_interface}"
        if layout.nmea_interface is not None:
            ports += f", NMEA on interface {layout.nmea_interface}"
        lines += ["", f"# {layout.vid}:{layout.pid}: {', '.join(layout.models)}; {ports}"]
        if mode == "device":
            lines.append(f'SUBSYSTEMS=="usb", ATTRS{{idVendor}}=="{layout.vid}", ATTRS{{idProduct}}=="{layout.pid}", '
                         'ENV{ID_MM_DEVICE_IGNORE}="1"')
        lines.append(_port_rule(layout, layout.at_interface, AT_LINK, "at", mode))
        if layout.nmea_interface is not None:
            lines.append(_port_rule(layout, layout.nmea_interface, NMEA_LINK, "nmea", mode))
    lines += ["", 'LABEL="blankspot_end"', ""]
    return "\n".join(lines)


def profiles_in(folder: Path) -> list[ModemProfile]:
    """Every profile file in ``folder`` (not the search path: what is shipped, nothing local)."""
    return [load_profile_file(path) for path in sorted(Path(folder).glob("*.toml"))]

