"""Modem model profiles: one TOML file per model in ``firmware_configs/``, validated strictly.

A profile says which USB interface is the AT port and which the NMEA port, which commands
set the modem up, switch GNSS, read the signal (in order of preference), reset it and scan
for operators.  ``firmware_configs/README.md`` describes the format key by key.

Profiles are looked up in these folders, earlier ones winning for the same name:

1. every folder in ``$BLANKSPOT_FIRMWARE_CONFIGS`` (``os.pathsep``-separated),
2. ``/etc/blankspot/firmware_configs`` (local additions and overrides on a unit),
3. the installed data folder, ``<prefix>/share/blankspot/firmware_configs``,
4. ``firmware_configs/`` of the source tree.

Every problem is a :class:`ProfileError` with one line naming the file, the line where
possible, and the key.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import agent
from agent.unit.devices.modem.errors import ProfileError
from agent.unit.devices.modem.signal import has_parser
from agent.unit.devices.modem.transcript import Transcript, load_transcript
from agent.unit.config_schema import SettingError, build, line_of, section, setting, tables, toml_error, walk

ENV_VAR = "BLANKSPOT_FIRMWARE_CONFIGS"
LOCAL_DIR = Path("/etc/blankspot/firmware_configs")
FALLBACK = "generic-3gpp"
DRIVERS = ("generic", "quectel", "simcom", "huawei", "telit", "sierra")

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_HEX4_RE = re.compile(r"(?:0x)?([0-9a-fA-F]{4})")


# -- the file's schema (keys, types, defaults, descriptions) ---------------------------------

@dataclass(frozen=True)
class UsbSpec:
    vid: str = setting("", "USB vendor id, 4 hex digits (as lsusb shows it).", "str")
    pid: str = setting("", "USB product id, 4 hex digits.", "str")
    at_interface: int | None = setting(
        None, "bInterfaceNumber of the port that takes AT commands.", "int", minimum=0, maximum=255, optional=True
    )
    nmea_interface: int | None = setting(
        None, "bInterfaceNumber of the port that streams NMEA; omit when the model has none.", "int",
        minimum=0, maximum=255, optional=True,
    )


@dataclass(frozen=True)
class AtSpec:
    init: tuple[str, ...] = setting((), "Commands sent once after the port is opened, in order.", "strings")
    timeout: float = setting(5.0, "Default time a command may take before it counts as unanswered.", "duration", minimum=0.1, maximum=600)
    ready_delay: float = setting(0.0, "Wait after the port appears before the first command.", "duration", minimum=0, maximum=120)
    probe_tries: int = setting(3, "How many times a plain AT is tried before the modem counts as silent.", "int", minimum=1, maximum=20)
    extra_final: tuple[str, ...] = setting(
        (), "Model-specific final results besides OK, ERROR, +CME ERROR, +CMS ERROR, NO CARRIER.", "strings"
    )


@dataclass(frozen=True)
class GnssSpec:
    on: tuple[str, ...] = setting((), "Commands that start the GNSS receiver; empty when the model has none.", "strings")
    off: tuple[str, ...] = setting((), "Commands that stop it.", "strings")


@dataclass(frozen=True)
class SignalSpec:
    commands: tuple[str, ...] = setting(
        (), "Commands that describe the serving cell and signal, most informative first.", "strings"
    )


@dataclass(frozen=True)
class ResetSpec:
    commands: tuple[str, ...] = setting((), "Commands that restart the modem when it stops answering.", "strings")
    wait: float = setting(30.0, "How long the modem is gone after a reset.", "duration", minimum=0, maximum=600)


@dataclass(frozen=True)
class ScanSpec:
    command: str = setting("AT+COPS=?", "Command that lists the operators visible here.", "str")
    timeout: float = setting(180.0, "How long the scan may take.", "duration", minimum=1, maximum=900)


@dataclass(frozen=True)
class QuirksSpec:
    notes: tuple[str, ...] = setting((), "Known oddities of the model, one per string, for the people who maintain it.", "strings")


@dataclass(frozen=True)
class ProfileSpec:
    name: str = setting("", "Profile name; must equal the file name without .toml.", "str")
    vendor: str = setting("", "Manufacturer as people call it.", "str")
    model: str = setting("", "Model as people call it.", "str")
    driver: str = setting(
        "generic",
        "Vendor family whose answers the simulator gives to the dynamic signal commands (blankspot demo, tests); "
        "the agent itself sends the commands of [signal].",
        "choice", choices=DRIVERS,
    )
    cgmm: tuple[str, ...] = setting(
        (), "Substrings of the AT+CGMM answer that identify this model (case-insensitive); empty for the fallback.", "strings"
    )
    transcript: str = setting("", "File beside this one with the model's recorded answers.", "str")
    usb: tuple[UsbSpec, ...] = tables(UsbSpec, "USB identities of the model, one [[usb]] block each.")
    at: AtSpec = section(AtSpec, "The AT channel.")
    gnss: GnssSpec = section(GnssSpec, "The built-in GNSS receiver.")
    signal: SignalSpec = section(SignalSpec, "Signal commands.")
    reset: ResetSpec = section(ResetSpec, "Recovery by restarting the modem.")
    scan: ScanSpec = section(ScanSpec, "Operator scan.")
    quirks: QuirksSpec = section(QuirksSpec, "Notes.")


# -- what the rest of the agent uses ----------------------------------------------------------

@dataclass(frozen=True)
class UsbIdentity:
    vid: str                       # 4 lower-case hex digits
    pid: str
    at_interface: int
    nmea_interface: int | None = None


@dataclass(frozen=True)
class ModemProfile:
    name: str
    vendor: str
    model: str
    driver: str
    cgmm: tuple[str, ...]
    usb: tuple[UsbIdentity, ...]
    init: tuple[str, ...]
    timeout: float
    ready_delay: float
    probe_tries: int
    extra_final: tuple[str, ...]
    gnss_on: tuple[str, ...]
    gnss_off: tuple[str, ...]
    signal_commands: tuple[str, ...]
    reset_commands: tuple[str, ...]
    reset_wait: float
    scan_command: str
    scan_timeout: float
    quirks: tuple[str, ...]
    transcript: Transcript = field(repr=False, compare=False)
    path: Path = field(compare=False)
    transcript_file: str = field(default="", compare=False)

    @property
    def transcript_path(self) -> Path:
        return self.path.parent / self.transcript_file

    def cgmm_match(self, text: str) -> int:
        """Length of the longest of this model's CGMM patterns found in ``text``; 0 for none."""
        upper = text.upper()
        return max((len(p) for p in self.cgmm if p.upper() in upper), default=0)

    def usb_identity(self, vid: str, pid: str) -> UsbIdentity | None:
        for identity in self.usb:
            if identity.vid == vid and identity.pid == pid:
                return identity
        return None


@dataclass(frozen=True)
class ModemPort:
    """A serial port of a connected modem, as :func:`find_ports` sees it."""

    device: str                    # /dev/ttyUSB2
    vid: str
    pid: str
    interface: int
    profile: ModemProfile
    role: str                      # "at" | "nmea"
    candidates: tuple[str, ...]    # every profile with this USB id; more than one until AT+CGMM tells


# -- search path and loading ------------------------------------------------------------------

def search_path() -> list[Path]:
    """Folders searched for profiles, the first holding a name wins."""
    folders: list[Path] = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    folders.append(LOCAL_DIR)
    for prefix in (sys.prefix, sysconfig.get_paths().get("data", sys.prefix)):
        folders.append(Path(prefix) / "share" / "blankspot" / "firmware_configs")
    folders.append(Path(agent.__file__).resolve().parent.parent / "firmware_configs")
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def _profile_files() -> dict[str, Path]:
    """Every profile name to the file that wins for it."""
    found: dict[str, Path] = {}
    for folder in search_path():
        try:
            files = sorted(folder.glob("*.toml"))
        except OSError:
            continue
        for path in files:
            found.setdefault(path.stem, path)
    return found


def load_profile(name: str) -> ModemProfile:
    """The profile called ``name``; ProfileError when there is none or it is wrong."""
    files = _profile_files()
    if name not in files:
        names = sorted(files)
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ProfileError(
            f"unknown modem model {name!r}{hint}; known models: {', '.join(names) or 'none'} "
            f"(searched {', '.join(str(p) for p in search_path())})"
        )
    return load_profile_file(files[name])


def all_profiles() -> list[ModemProfile]:
    """Every profile on the search path, sorted by name."""
    return [load_profile_file(path) for _, path in sorted(_profile_files().items())]


_cache: dict[Path, tuple[tuple[int, ...], ModemProfile]] = {}


def load_profile_file(path: Path | str) -> ModemProfile:
    """Read and validate one profile file (and the transcript it names); cached until either changes."""
    path = Path(path)
    cached = _cache.get(path)
    if cached is not None and cached[0] == _stamp(path, cached[1].transcript_path):
        return cached[1]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from None
    profile = parse_profile(text, path)
    _cache[path] = (_stamp(path, profile.transcript_path), profile)
    return profile


def _stamp(*paths: Path) -> tuple[int, ...]:
    stamp: list[int] = []
    for candidate in paths:
        try:
            info = candidate.stat()
            stamp += [info.st_mtime_ns, info.st_size]
        except OSError:
            stamp += [-1, -1]
    return tuple(stamp)


def parse_profile(text: str, path: Path | str) -> ModemProfile:
    """Validate a profile's TOML ``text``; ``path`` names it in errors and locates the transcript."""
    path = Path(path)
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line = toml_error(exc)
        where = f"{path}:{line}" if line else str(path)
        raise ProfileError(f"{where}: not valid TOML: {message}") from None
    try:
        spec: ProfileSpec = build(ProfileSpec, table)
        usb = _check(spec, path)
    except SettingError as exc:
        line = line_of(text, exc.key, enclosing=True)
        where = f"{path}:{line}" if line else str(path)
        raise ProfileError(f"{where}: {exc.key}: {exc.message}") from None
    transcript = load_transcript(path.parent / spec.transcript)
    return ModemProfile(
        name=spec.name,
        vendor=spec.vendor,
        model=spec.model,
        driver=spec.driver,
        cgmm=spec.cgmm,
        usb=usb,
        init=spec.at.init,
        timeout=spec.at.timeout,
        ready_delay=spec.at.ready_delay,
        probe_tries=spec.at.probe_tries,
        extra_final=spec.at.extra_final,
        gnss_on=spec.gnss.on,
        gnss_off=spec.gnss.off,
        signal_commands=spec.signal.commands,
        reset_commands=spec.reset.commands,
        reset_wait=spec.reset.wait,
        scan_command=spec.scan.command,
        scan_timeout=spec.scan.timeout,
        quirks=spec.quirks.notes,
        transcript=transcript,
        path=path,
        transcript_file=spec.transcript,
    )


def _check(spec: ProfileSpec, path: Path) -> tuple[UsbIdentity, ...]:
    """Rules the types alone do not catch; returns the USB identities, normalised."""
    stem = path.stem
    if not spec.name:
        raise SettingError("name", f"missing; every profile names itself, here name = {stem!r}")
    if spec.name != stem:
        raise SettingError("name", f"must equal the file name without .toml ({stem!r}), got {spec.name!r}")
    if not NAME_RE.fullmatch(spec.name):
        raise SettingError("name", f"expected lower-case letters, digits and '-', got {spec.name!r}")
    for key in ("vendor", "model"):
        if not getattr(spec, key).strip():
            raise SettingError(key, "missing; say what people call it")
    if not spec.transcript:
        raise SettingError("transcript", f"missing; name the transcript file beside this one, e.g. {stem + '.transcript'!r}")
    if "/" in spec.transcript or "\\" in spec.transcript or spec.transcript.startswith("."):
        raise SettingError("transcript", f"expected a file name beside the profile, got {spec.transcript!r}")
    if not (path.parent / spec.transcript).is_file():
        raise SettingError("transcript", f"file {spec.transcript!r} not found beside {path.name}")
    for index, pattern in enumerate(spec.cgmm):
        if not pattern.strip():
            raise SettingError(f"cgmm[{index}]", "must not be empty (it would match every modem)")
    usb: list[UsbIdentity] = []
    for index, entry in enumerate(spec.usb):
        key = f"usb[{index}]"
        vid = _hex4(entry.vid, f"{key}.vid")
        pid = _hex4(entry.pid, f"{key}.pid")
        if entry.at_interface is None:
            raise SettingError(f"{key}.at_interface", "missing; give the bInterfaceNumber of the AT port")
        if entry.nmea_interface == entry.at_interface:
            raise SettingError(f"{key}.nmea_interface", "must differ from at_interface")
        if any(u.vid == vid and u.pid == pid for u in usb):
            raise SettingError(f"{key}.pid", f"{vid}:{pid} is listed twice")
        usb.append(UsbIdentity(vid, pid, entry.at_interface, entry.nmea_interface))
    if not spec.signal.commands:
        raise SettingError("signal.commands", "missing; list at least one signal command (AT+CSQ always works)")
    _commands("at.init", spec.at.init)
    _commands("gnss.on", spec.gnss.on)
    _commands("gnss.off", spec.gnss.off)
    _commands("signal.commands", spec.signal.commands)
    _commands("reset.commands", spec.reset.commands)
    _commands("scan.command", (spec.scan.command,), indexed=False)
    for index, command in enumerate(spec.signal.commands):
        if not has_parser(command):
            raise SettingError(f"signal.commands[{index}]", f"no parser for {command}; see firmware_configs/README.md")
    for index, final in enumerate(spec.at.extra_final):
        if not final.strip() or final.strip() != final:
            raise SettingError(f"at.extra_final[{index}]", f"expected the result text without surrounding blanks, got {final!r}")
    return tuple(usb)


def _hex4(value: str, key: str) -> str:
    m = _HEX4_RE.fullmatch(value.strip()) if value else None
    if not m:
        raise SettingError(key, f"expected 4 hex digits such as \"2c7c\", got {value!r}")
    return m.group(1).lower()


def _commands(key: str, commands: Iterable[str], indexed: bool = True) -> None:
    for index, command in enumerate(commands):
        where = f"{key}[{index}]" if indexed else key
        if not command.upper().startswith("AT") or any(c in command for c in "\r\n"):
            raise SettingError(where, f"expected one AT command on one line, got {command!r}")


# -- detection --------------------------------------------------------------------------------

def _norm_id(value: int | str) -> str:
    if isinstance(value, int):
        return f"{value:04x}"
    m = _HEX4_RE.fullmatch(value.strip())
    return m.group(1).lower() if m else value.strip().lower()


def detect_by_usb(vid: int | str, pid: int | str, cgmm: str | None = None) -> ModemProfile | None:
    """The profile for a USB id (``0x2c7c`` or ``"2c7c"``); None when no profile lists it.

    Several models may share one id (Quectel EC25 and EG25-G both enumerate as 2c7c:0125):
    then the AT+CGMM answer decides, and without one the first of them by name is returned
    (they share the port layout, so ports are still found right).
    """
    vid_s, pid_s = _norm_id(vid), _norm_id(pid)
    candidates = [p for p in all_profiles() if p.usb_identity(vid_s, pid_s) is not None]
    if not candidates:
        return None
    if cgmm and len(candidates) > 1:
        best = max(candidates, key=lambda p: p.cgmm_match(cgmm))
        if best.cgmm_match(cgmm) > 0:
            return best
    return candidates[0]


def detect_by_cgmm(text: str) -> ModemProfile:
    """The profile whose CGMM pattern is the longest found in ``text``; else generic-3gpp."""
    best: ModemProfile | None = None
    best_len = 0
    for profile in all_profiles():
        length = profile.cgmm_match(text or "")
        if length > best_len:
            best, best_len = profile, length
    return best if best is not None else load_profile(FALLBACK)


def interface_number(location: str | None) -> int | None:
    """bInterfaceNumber from pyserial's ``location`` (``"1-1.2:1.3"`` -> 3); None if absent."""
    if not location or ":" not in location:
        return None
    _, _, tail = location.rpartition(":")
    number = tail.rpartition(".")[2]
    return int(number) if number.isdigit() else None


def find_ports(ports: Iterable[Any] | None = None) -> list[ModemPort]:
    """AT and NMEA ports of the connected modems that have a profile, sorted by device.

    ``ports`` are pyserial ``ListPortInfo`` objects; by default ``comports()`` of this machine.
    """
    if ports is None:
        from serial.tools import list_ports

        ports = list_ports.comports()
    profiles = all_profiles()
    found: list[ModemPort] = []
    for info in ports:
        if info.vid is None or info.pid is None:
            continue
        number = interface_number(getattr(info, "location", None))
        if number is None:
            continue
        vid, pid = _norm_id(info.vid), _norm_id(info.pid)
        matching = [p for p in profiles if p.usb_identity(vid, pid) is not None]
        if not matching:
            continue
        identity = matching[0].usb_identity(vid, pid)
        assert identity is not None
        if number == identity.at_interface:
            role = "at"
        elif number == identity.nmea_interface:
            role = "nmea"
        else:
            continue
        found.append(ModemPort(info.device, vid, pid, number, matching[0], role, tuple(p.name for p in matching)))
    return sorted(found, key=lambda port: port.device)


def port_for(role: str, configured: str = "", ports: Iterable[Any] | None = None) -> str | None:
    """The port to open for ``role`` ("at" or "nmea"): ``configured`` when set, else the first
    such port :func:`find_ports` finds (among ``ports``, by default this machine's); None when none is.
    """
    if configured:
        return configured
    return next((port.device for port in find_ports(ports) if port.role == role), None)


def profile_keys() -> list[str]:
    """Every key a profile file may hold, dotted (``usb.vid`` for keys of a [[usb]] block)."""
    return [key for key, spec, _ in walk(ProfileSpec) if spec.kind not in ("section", "tables")]

