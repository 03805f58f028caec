"""udev rules from the modem profiles: stable port names, ModemManager kept off.

The rules are checked by the real udev: ``udevadm test`` runs every rules file of the
machine plus ours against a fake sysfs tree that looks like a plugged-in modem (USB
device, interfaces, ttyUSB ports), inside a private mount namespace so that nothing it
writes (/dev links, /run/udev) reaches this machine.

Required behaviour:
- deploy/udev/90-blankspot.rules is exactly what the generator makes of firmware_configs/,
  so a new profile cannot ship without its rules;
- for every USB identity of every profile, the AT interface's tty gets /dev/blankspot-at
  and the NMEA interface's tty /dev/blankspot-nmea, and no other port gets either;
- ModemManager is told to ignore the whole modem (USB device and every port), or with
  --share-modem only the AT and NMEA ports;
- a modem without a profile is left alone;
- udev finds nothing to complain about in the file;
- two profiles that list one USB id with different layouts are refused.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.commands.udev_rules import main
from agent.unit.devices.modem.profiles import UsbIdentity
from agent.unit.devices.modem.udev_rules import (
    AT_LINK,
    FILE_NAME,
    NMEA_LINK,
    PortLayout,
    UdevRulesError,
    port_layouts,
    profiles_in,
    udev_rules,
)

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "firmware_configs"
COMMITTED = ROOT / "deploy" / "udev" / FILE_NAME


# -- a fake sysfs with USB modems, and udevadm run against it --------------------------------

@dataclasses.dataclass(frozen=True)
class FakePort:
    syspath: str          # /sys/devices/...; what udevadm test is given
    interface: int
    tty: str


@dataclasses.dataclass(frozen=True)
class FakeModem:
    vid: str
    pid: str
    device: str           # syspath of the USB device
    ports: tuple[FakePort, ...]


class FakeSysfs:
    """A tree shaped like /sys for USB serial modems driven by the ``option`` driver."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modems: list[FakeModem] = []
        self._next_tty = 0
        for folder in ("bus/usb/drivers/usb", "bus/usb/drivers/option", "bus/usb-serial/drivers/option1", "class/tty"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def _write(self, folder: Path, subsystem: str, driver: str | None, **attributes: str) -> None:
        folder.mkdir(parents=True)
        for name, value in attributes.items():
            (folder / name).write_text(value + "\n")
        # Absolute links into the tree: inside the namespace it is mounted on /sys.
        os.symlink(f"/sys/{subsystem}", folder / "subsystem")
        if driver:
            os.symlink(f"/sys/{driver}", folder / "driver")

    def plug(self, vid: str, pid: str, interfaces: int) -> FakeModem:
        number = len(self.modems) + 1
        rel = f"devices/platform/soc/usb1/1-{number}"
        device = self.root / rel
        product = f"{vid}/{int(pid, 16):x}/318"
        self._write(device, "bus/usb", "bus/usb/drivers/usb",
                    uevent=f"MAJOR=189\nMINOR={number}\nDEVNAME=bus/usb/001/{number + 1:03d}\nDEVTYPE=usb_device\n"
                           f"DRIVER=usb\nPRODUCT={product}\nTYPE=0/0/0\nBUSNUM=001\nDEVNUM={number + 1:03d}",
                    idVendor=vid, idProduct=pid, manufacturer="Maker", product=f"Modem {vid}:{pid}",
                    serial=f"SN{number:04d}", bcdDevice="0318", bDeviceClass="00", busnum="1",
                    devnum=str(number + 1), dev=f"189:{number}")
        ports = []
        for interface in range(interfaces):
            itf = device / f"1-{number}:1.{interface}"
            self._write(itf, "bus/usb", "bus/usb/drivers/option",
                        uevent=f"DEVTYPE=usb_interface\nDRIVER=option\nPRODUCT={product}\nTYPE=0/0/0\n"
                               "INTERFACE=255/255/255",
                        bInterfaceNumber=f"{interface:02x}", bInterfaceClass="ff", bInterfaceSubClass="ff",
                        bInterfaceProtocol="ff", bAlternateSetting=" 0", bNumEndpoints="03")
            tty = f"ttyUSB{self._next_tty}"
            self._next_tty += 1
            serial_port = itf / tty
            self._write(serial_port, "bus/usb-serial", "bus/usb-serial/drivers/option1", uevent="DRIVER=option1",
                        port_number="0")
            node = serial_port / "tty" / tty
            minor = int(tty[6:])
            self._write(node, "class/tty", None, uevent=f"MAJOR=188\nMINOR={minor}\nDEVNAME={tty}", dev=f"188:{minor}")
            ports.append(FakePort(f"/sys/{node.relative_to(self.root)}", interface, tty))
        modem = FakeModem(vid, pid, f"/sys/{rel}", tuple(ports))
        self.modems.append(modem)
        return modem


@dataclasses.dataclass
class UdevResult:
    properties: dict[str, dict[str, str]]     # syspath -> udev properties after every rule ran
    log: str

    def links(self, syspath: str) -> set[str]:
        return set(self.properties[syspath].get("DEVLINKS", "").split())

    def complaints(self, rules_file: str) -> list[str]:
        """udev's complaints about ``rules_file`` while loading or applying it."""
        return [line for line in self.log.splitlines()
                if rules_file in line and "Reading rules file" not in line
                and re.search(r"(?i)invalid|ignoring|dropping|failed|error|unknown|no matching label", line)]


def require_udevadm() -> str:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        pytest.fail("udevadm is not installed; the test command installs it (apt-get install udev)")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and unshare(1) to run udevadm in a private mount namespace")
    return udevadm


def run_udev(tmp_path: Path, sysfs: FakeSysfs, rules: dict[str, str]) -> UdevResult:
    """``udevadm test --action=add`` on every fake device, with ``rules`` added to the machine's."""
    udevadm = require_udevadm()
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    for name, text in rules.items():
        (rules_dir / name).write_text(text)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "null").touch()
    syspaths = [p for m in sysfs.modems for p in [m.device] + [port.syspath for port in m.ports]]
    script = "\n".join([
        "set -e",
        "mount --make-rprivate /",
        # udevadm test writes links into /dev and its database into /run/udev: keep both in here.
        "mount -t tmpfs tmpfs /run",
        f"mount --bind /dev/null {dev}/null",
        f"mount --rbind {dev} /dev",
        f"mount --bind {sysfs.root} /sys",
        f"mount --bind {rules_dir} /etc/udev/rules.d",
        *[f"echo '@@@ {path}'; {udevadm} test --action=add {path} 2>&1" for path in syspaths],
    ])
    # The fake tree is not a sysfs mount; this tells sd-device to accept it (systemd's own tests do so).
    env = dict(os.environ, SYSTEMD_DEVICE_VERIFY_SYSFS="0", SYSTEMD_LOG_LEVEL="debug")
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    properties: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("@@@ "):
            current = properties.setdefault(line[4:].strip(), {})
            continue
        m = re.fullmatch(r"([A-Z_.][A-Z0-9_.]*)=(.*)", line)
        if m:
            current[m.group(1)] = m.group(2)
    return UdevResult(properties, done.stdout)


def plug_every_layout(sysfs: FakeSysfs) -> list[tuple[PortLayout, FakeModem]]:
    plugged = []
    for layout in port_layouts(profiles_in(PROFILES)):
        highest = max(layout.at_interface, layout.nmea_interface or 0)
        plugged.append((layout, sysfs.plug(layout.vid, layout.pid, interfaces=highest + 2)))
    return plugged


# -- the tests -------------------------------------------------------------------------------

def test_committed_rules_are_in_step_with_the_profiles() -> None:
    expected = udev_rules(profiles_in(PROFILES))
    assert COMMITTED.read_text() == expected, (
        f"{COMMITTED.relative_to(ROOT)} is stale; regenerate it with "
        f"`python -m agent.commands.udev_rules --profiles firmware_configs > deploy/udev/{FILE_NAME}`"
    )


def test_every_usb_identity_of_every_profile_is_in_the_rules() -> None:
    text = COMMITTED.read_text()
    for profile in profiles_in(PROFILES):
        for usb in profile.usb:
            at = f'ATTRS{{idVendor}}=="{usb.vid}", ATTRS{{idProduct}}=="{usb.pid}", ENV{{ID_USB_INTERFACE_NUM}}=="{usb.at_interface:02x}", SYMLINK+="{AT_LINK}"'
            assert at in text, f"{profile.name}: no AT rule for {usb.vid}:{usb.pid}"


def test_every_rule_line_is_well_formed() -> None:
    """udev 252 quietly accepts a missing comma between keys; this does not."""
    pair = r'[A-Z_]+(\{[^}]+\})?(==|!=|\+=|-=|:=|=)"[^"]*"'
    for number, line in enumerate(COMMITTED.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        assert re.fullmatch(rf"{pair}(, {pair})*", line), f"{FILE_NAME}:{number}: {line}"


def test_interface_numbers_are_written_in_hex() -> None:
    """usb_id copies sysfs' bInterfaceNumber, printed %02x: interface 10 is "0a", not "10"."""
    profile = profiles_in(PROFILES)[0]
    wide = dataclasses.replace(profile, usb=(UsbIdentity("abcd", "0001", at_interface=10, nmea_interface=12),))
    text = udev_rules([wide])
    assert 'ENV{ID_USB_INTERFACE_NUM}=="0a", SYMLINK+="blankspot-at"' in text
    assert 'ENV{ID_USB_INTERFACE_NUM}=="0c", SYMLINK+="blankspot-nmea"' in text


def test_profiles_sharing_a_usb_id_must_share_the_layout() -> None:
    profiles = {p.name: p for p in profiles_in(PROFILES)}
    ec25, eg25 = profiles["quectel-ec25"], profiles["quectel-eg25g"]
    assert [l.models for l in port_layouts([ec25, eg25])] == [
        ("Quectel EC25 (quectel-ec25)", "Quectel EG25-G (quectel-eg25g)")], "one rule set for both"
    moved = dataclasses.replace(eg25, usb=(UsbIdentity("2c7c", "0125", at_interface=3, nmea_interface=1),))
    with pytest.raises(UdevRulesError, match=r"2c7c:0125 .*quectel-ec25.* but 3/1 in .*quectel-eg25g"):
        port_layouts([ec25, moved])


def test_profile_without_nmea_port_gets_only_an_at_link() -> None:
    profile = profiles_in(PROFILES)[0]
    at_only = dataclasses.replace(profile, usb=(UsbIdentity("abcd", "0002", at_interface=0),))
    text = udev_rules([at_only])
    rules = [line for line in text.splitlines() if not line.startswith("#")]
    assert any(AT_LINK in line for line in rules)
    assert not any(NMEA_LINK in line for line in rules)


def test_command_line_writes_the_committed_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profiles", str(PROFILES)]) == 0
    assert capsys.readouterr().out == COMMITTED.read_text()
    assert main(["--profiles", str(ROOT / "no-such-folder")]) == 0  # no profiles: rules that match nothing
    assert "LABEL" in capsys.readouterr().out


def test_udev_names_the_ports_of_every_profiled_modem_and_keeps_modemmanager_off(tmp_path: Path) -> None:
    sysfs = FakeSysfs(tmp_path / "sysroot")
    plugged = plug_every_layout(sysfs)
    stranger = sysfs.plug("0403", "6001", interfaces=1)          # an FTDI serial cable: not ours
    result = run_udev(tmp_path, sysfs, {FILE_NAME: COMMITTED.read_text()})

    assert result.complaints(FILE_NAME) == []
    for layout, modem in plugged:
        assert result.properties[modem.device].get("ID_MM_DEVICE_IGNORE") == "1", f"{layout.vid}:{layout.pid}"
        for port in modem.ports:
            props = result.properties[port.syspath]
            links = result.links(port.syspath)
            where = f"{layout.vid}:{layout.pid} interface {port.interface} ({port.tty})"
            assert props.get("ID_USB_INTERFACE_NUM") == f"{port.interface:02x}", where
            assert props.get("ID_MM_DEVICE_IGNORE") == "1", where
            assert (f"/dev/{AT_LINK}" in links) == (port.interface == layout.at_interface), (where, links)
            assert (f"/dev/{NMEA_LINK}" in links) == (port.interface == layout.nmea_interface), (where, links)
            assert props.get("BLANKSPOT_PORT") == (
                "at" if port.interface == layout.at_interface else
                "nmea" if port.interface == layout.nmea_interface else None), where
    for path in [stranger.device] + [p.syspath for p in stranger.ports]:
        props = result.properties[path]
        assert "ID_MM_DEVICE_IGNORE" not in props and "BLANKSPOT_PORT" not in props
        assert not any("blankspot" in link for link in result.links(path))
    named = sum(1 for _, m in plugged for p in m.ports if result.properties[p.syspath].get("BLANKSPOT_PORT"))
    print(f"\nudevadm test on {sum(len(m.ports) + 1 for m in sysfs.modems)} fake devices "
          f"({len(plugged)} modem layouts + 1 FTDI cable): {named} ports named, MM ignores the {len(plugged)} modems")


def test_share_modem_keeps_modemmanager_off_only_our_ports(tmp_path: Path) -> None:
    sysfs = FakeSysfs(tmp_path / "sysroot")
    plugged = plug_every_layout(sysfs)
    rules = udev_rules(profiles_in(PROFILES), mode="ports")
    result = run_udev(tmp_path, sysfs, {FILE_NAME: rules})

    assert result.complaints(FILE_NAME) == []
    for layout, modem in plugged:
        assert "ID_MM_DEVICE_IGNORE" not in result.properties[modem.device]
        for port in modem.ports:
            props = result.properties[port.syspath]
            ours = port.interface in (layout.at_interface, layout.nmea_interface)
            assert "ID_MM_DEVICE_IGNORE" not in props
            assert (props.get("ID_MM_PORT_IGNORE") == "1") == ours, (layout, port)


def test_complaints_from_udev_are_caught(tmp_path: Path) -> None:
    """The syntax check is not vacuous: udev's complaints about a broken file are seen."""
    sysfs = FakeSysfs(tmp_path / "sysroot")
    sysfs.plug("2c7c", "0125", interfaces=1)
    broken = COMMITTED.read_text().replace('ATTRS{idVendor}=="2c7c"', 'ATRS{idVendor}=="2c7c"', 1)
    broken = broken.replace('LABEL="blankspot_end"', 'LABEL="blankspot_finish"')
    result = run_udev(tmp_path, sysfs, {FILE_NAME: broken})
    complaints = result.complaints(FILE_NAME)
    assert any("Invalid key 'ATRS'" in c for c in complaints), complaints
    assert any("no matching label" in c for c in complaints), complaints
