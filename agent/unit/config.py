"""The agent's configuration: one TOML file, validated once at start.

Every key is declared here with its type, default and description; ``docs/configuration.md``
and ``deploy/agent.example.toml`` describe the same keys, and a test keeps them in step.
"""
from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.shared.reading import DEVICE_RE
from agent.shared.installed import example_config
from agent.unit.config_schema import SettingError, build, line_of, section, setting, toml_error

DEFAULT_PATH = Path("/etc/blankspot/agent.toml")


class ConfigError(Exception):
    """The config file cannot be used. ``str()`` is the one line to show the user."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line




@dataclass(frozen=True)
class DeviceConfig:
    id: str = setting(
        "",
        "Unit name, unique in the fleet: letters, digits, '-', '_', '.'; used in MQTT topics "
        "and as the dedup key with seq. Required: 'blankspot doctor' proposes one from the Pi's serial number.",
        "str",
    )


@dataclass(frozen=True)
class BufferConfig:
    path: Path = setting(
        Path("/var/lib/blankspot/buffer.db"),
        "SQLite file holding every reading until the broker has acknowledged it.",
        "path",
    )
    max_size: int = setting(
        200_000_000,
        "Most disk the buffer may use. When full, delivered readings are pruned first, "
        "then the oldest undelivered; every drop is counted and reported.",
        "size",
        minimum=1_000_000,
    )
    keep_delivered: float = setting(
        30 * 86400.0,
        "How long readings the broker already acknowledged stay on the unit for local "
        "inspection (they are pruned earlier if space runs out).",
        "duration",
        minimum=0,
    )


@dataclass(frozen=True)
class UplinkConfig:
    enabled: bool = setting(True, "Push readings to the broker. false keeps them only in the buffer.", "bool")
    host: str = setting("localhost", "Broker host name or address.", "str")
    port: int = setting(1883, "Broker TCP port (usually 1883, or 8883 with TLS).", "int", minimum=1, maximum=65535)
    protocol: str = setting("5", "MQTT protocol version.", "choice", choices=("5", "3.1.1"))
    client_id: str = setting(
        "", "MQTT client id; must be stable for the broker to keep the session. Empty means 'blankspot-<device id>'.", "str"
    )
    username: str = setting("", "Username for the broker; empty for none.", "str")
    password: str = setting("", "Password for the broker; prefer password_file.", "str")
    password_file: Path | None = setting(
        None, "File whose first line is the broker password (kept out of the config file).", "path", optional=True
    )
    tls: bool = setting(False, "Connect with TLS.", "bool")
    ca_file: Path | None = setting(
        None, "CA certificate(s) that signed the broker's certificate; empty uses the system store.", "path", optional=True
    )
    cert_file: Path | None = setting(None, "Client certificate for TLS client authentication.", "path", optional=True)
    key_file: Path | None = setting(None, "Private key of cert_file.", "path", optional=True)
    topic_prefix: str = setting("blankspot/v1", "Prefix of every topic: <prefix>/<device>/readings and /status.", "str")
    keepalive: float = setting(60.0, "MQTT keepalive; a silent link is declared dead after 1.5 times this.", "duration", minimum=2, maximum=65535)
    session_expiry: float = setting(
        7 * 86400.0, "How long the broker keeps this unit's session while it is offline (MQTT 5).", "duration", minimum=0
    )
    connect_timeout: float = setting(20.0, "Give up a connection attempt (TCP, TLS, CONNACK) after this long.", "duration", minimum=1)
    batch_size: int = setting(200, "Readings per MQTT message at most (a message is also kept under 1 MB).", "int", minimum=1, maximum=2000)
    encoding: str = setting(
        "json",
        "How batches are written: 'compact' (columns, compressed: about 12-25 bytes a reading; what field "
        "units are installed with) or 'json' (about 580 bytes a reading, readable with mosquitto_sub). "
        "Collectors read both.",
        "choice", choices=("compact", "json"),
    )
    max_inflight: int = setting(
        8, "Batches sent but not yet acknowledged at most; more hides round-trip time on slow links.", "int", minimum=1, maximum=100
    )
    backoff_min: float = setting(1.0, "First wait before reconnecting after a failure.", "duration", minimum=0.05)
    backoff_max: float = setting(300.0, "Longest wait between reconnection attempts (doubling, with jitter).", "duration", minimum=0.1)
    status_interval: float = setting(300.0, "How often the retained status message is refreshed while connected.", "duration", minimum=1)
    confirm: bool = setting(
        True,
        "Keep each reading until the centre's collector confirms its database holds it, and send again what it "
        "lacks. false trusts the broker's acknowledgement (only for a feed without blankspot collect).",
        "bool",
    )
    confirm_grace: float = setting(
        60.0,
        "A reading the broker acknowledged is sent again when the centre has confirmed readings sent this much "
        "later but not it (doubling each time it is sent again).",
        "duration", minimum=1,
    )
    confirm_timeout: float = setting(
        900.0,
        "When the centre confirms nothing for this long while readings wait for it, the oldest waiting batch is "
        "sent again as a probe (the wait doubles up to 6 hours while it stays silent).",
        "duration", minimum=1,
    )


@dataclass(frozen=True)
class SourceConfig:
    kind: str = setting(
        "devices",
        "Where readings come from: 'devices' is the modem and GPS of [modem] and [gps], scheduled by "
        "[schedule]; 'synthetic' simulates a boat on the Mahakam route (demo and testing).",
        "choice",
        choices=("synthetic", "devices"),
    )
    interval: float = setting(10.0, "Synthetic source: time between readings.", "duration", minimum=0.001)
    speed_kmh: float = setting(400.0, "Synthetic source: boat speed along the route (time-compressed trips go fast).", "float", minimum=0)


@dataclass(frozen=True)
class LogConfig:
    level: str = setting("info", "Log level.", "choice", choices=("debug", "info", "warning", "error"))


_GPIO = dict(minimum=0, maximum=27)


@dataclass(frozen=True)
class PanelConfig:
    enabled: bool = setting(False, "Drive the status lights and read the button (Raspberry Pi GPIO).", "bool")
    gps_led: int = setting(0, "BCM GPIO number of the GPS fix light; 0 when not fitted.", "int", **_GPIO)
    signal_led: int = setting(0, "BCM GPIO number of the signal quality light; 0 when not fitted.", "int", **_GPIO)
    uplink_led: int = setting(0, "BCM GPIO number of the broker connection light; 0 when not fitted.", "int", **_GPIO)
    backlog_led: int = setting(0, "BCM GPIO number of the backlog (readings waiting) light; 0 when not fitted.", "int", **_GPIO)
    button_pin: int = setting(
        0, "BCM GPIO number of the push button (wired to ground): a short press tags the spot; 0 when not fitted.",
        "int", **_GPIO,
    )
    hold_time: float = setting(
        3.0, "Holding the button this long shuts the unit down safely.", "duration", minimum=1, maximum=30
    )
    bounce_time: float = setting(
        0.05, "A press shorter than this is contact bounce or noise, and ignored.", "duration", minimum=0, maximum=0.5
    )
    tag_label: str = setting("marked spot", "Message of the tag event a short press records.", "str")
    power_pin: int = setting(
        0, "BCM GPIO number of an ignition or external-power sense input; 0 when not fitted.", "int", **_GPIO
    )
    power_present_level: str = setting(
        "high", "Level power_pin reads while external power is present.", "choice", choices=("high", "low")
    )
    power_fail_delay: float = setting(
        30.0, "Shut down safely once external power has been gone this long.", "duration", minimum=1
    )
    shutdown_command: str = setting(
        "systemctl poweroff", "Command run (without a shell) to power the unit off after the buffer is flushed.", "str"
    )


@dataclass(frozen=True)
class ModemConfig:
    port: str = setting(
        "", "AT port of the modem (/dev/blankspot-at from the udev rules, /dev/ttyUSB2 ...). Empty: found by "
        "the USB ids of firmware_configs/.", "str",
    )
    baud: int = setting(115200, "Baud rate of the AT port (USB modems ignore it).", "int", minimum=1200)
    model: str = setting("", "Model profile in firmware_configs/ (quectel-ec25 ...). Empty: detected.", "str")


@dataclass(frozen=True)
class GpsConfig:
    source: str = setting(
        "modem", "Where positions come from: 'serial' (a receiver on gps.port), 'modem' (the modem's own "
        "GNSS, switched on through its profile, NMEA on gps.port), 'gpsd', or 'none'.", "choice",
        choices=("serial", "modem", "gpsd", "none"),
    )
    port: str = setting(
        "", "NMEA port (/dev/blankspot-nmea, /dev/ttyACM0 ...) for 'serial' and 'modem'. Empty with 'modem': "
        "the modem's NMEA port, found by the USB ids of firmware_configs/.", "str",
    )
    baud: int = setting(9600, "Baud rate of the NMEA port.", "int", minimum=1200)
    gpsd: str = setting("127.0.0.1:2947", "gpsd address for source 'gpsd'.", "str")
    max_age: float = setting(
        5.0, "A fix older than this is no fix: readings then carry no position.", "duration", minimum=1
    )


@dataclass(frozen=True)
class ScheduleConfig:
    mode: str = setting(
        "mobile", "'mobile' (boat, vehicle: by time and distance) or 'fixed' (a probe left at a kantor desa: "
        "by interval).", "choice", choices=("mobile", "fixed"),
    )
    signal_interval: float = setting(10.0, "Signal reading at least this often.", "duration", minimum=0.05)
    signal_distance: float = setting(
        100.0, "Mobile: also a signal reading every this many metres travelled.", "float", minimum=1
    )
    latency_interval: float = setting(
        900.0, "Latency measurement at least this often (mobile: also on every change of serving cell).",
        "duration", minimum=0.05,
    )
    throughput_interval: float = setting(
        21600.0, "Throughput test at most this often (mobile: only when nearly stationary with a good "
        "enough signal; both modes: only within the data budget).", "duration", minimum=0.05,
    )
    throughput_min_quality: str = setting(
        "fair", "Mobile: no throughput test on a signal worse than this.", "choice",
        choices=("excellent", "good", "fair", "poor"),
    )
    stationary_speed: float = setting(
        3.0, "Mobile: below this speed (km/h) the unit counts as stationary.", "float", minimum=0
    )
    scan_interval: float = setting(
        21600.0, "Operator scan (which other operator serves here?) at most this often; mobile: only when "
        "stationary in a blank spot. 0 disables it.", "duration", minimum=0,
    )
    quiet_after_start: float = setting(
        300.0, "Fixed: no throughput test or scan this soon after the agent starts (a unit that reboots "
        "in a loop must not burn its data quota).", "duration", minimum=0,
    )
    jitter: float = setting(
        0.1, "Fixed: intervals vary by up to this fraction, so a fleet does not measure in lockstep.",
        "float", minimum=0, maximum=0.5,
    )
    probe_timeout: float = setting(
        180.0, "A measurement still running after this long is abandoned and recorded as timed out.",
        "duration", minimum=1,
    )


@dataclass(frozen=True)
class LatencyConfig:
    target: str = setting(
        "", "Host to measure (HOST, or HOST:PORT for TCP). Empty: the broker host, TCP to its port.", "str"
    )
    method: str = setting(
        "auto", "'icmp', 'tcp', or 'auto' (ICMP, falling back to TCP when ICMP gets no answer).", "choice",
        choices=("auto", "icmp", "tcp"),
    )
    count: int = setting(10, "Probes per measurement.", "int", minimum=1, maximum=1000)
    interface: str = setting(
        "", "Network interface to measure over (wwan0, ppp0, usb0), so Wi-Fi is never measured. Empty: "
        "the default route.", "str",
    )


@dataclass(frozen=True)
class BudgetConfig:
    daily: int = setting(
        0, "Most mobile data the unit may use in a day, all traffic counted; a throughput test that could "
        "break it is skipped. 0: no limit.", "size", minimum=0,
    )
    monthly: int = setting(0, "Most mobile data the unit may use in a quota month. 0: no limit.", "size", minimum=0)
    uplink_reserve: int = setting(
        5_000_000, "Data kept free each day for pushing readings: measurements may not use it (the monthly "
        "limit keeps one reserve per day left).", "size", minimum=0,
    )
    throughput_cap: int = setting(
        10_000_000, "Most data one throughput test with the http backend may use.", "size", minimum=100_000,
    )
    interface: str = setting(
        "", "Network interface whose byte counters count all the unit's data (wwan0, ppp0, usb0). Empty: only "
        "what measurements and the uplink record.", "str",
    )
    timezone: str = setting(
        "Asia/Makassar", "Time zone of the operator's quota: days and quota months begin at its midnight.", "str",
    )
    month_start_day: int = setting(
        1, "Day of the month on which the quota month begins.", "int", minimum=1, maximum=28,
    )
    ledger: Path = setting(
        Path("/var/lib/blankspot/usage.db"), "SQLite file counting the data used per day.", "path",
    )


@dataclass(frozen=True)
class ThroughputConfig:
    backend: str = setting(
        "http", "'http' (the operator's own speed server, cheap in data) or 'speedtest' (speedtest-cli: "
        "Ookla's servers, or a private one given as url).", "choice", choices=("http", "speedtest"),
    )
    url: str = setting(
        "", "Speed server (blankspot speed-server on the collector host), e.g. http://collector:8080/. Empty "
        "with 'http': no throughput tests.", "str",
    )


@dataclass(frozen=True)
class SmsConfig:
    numbers: tuple[str, ...] = setting(
        (), "Numbers, in international format (+62...), that get the signed heartbeat SMS while the data link "
        "is down: the centre's SMS gateway. Empty: no heartbeats.", "strings",
    )
    after: float = setting(
        3600.0, "The first heartbeat when the centre has confirmed no batch for this long (since the agent "
        "started, when none yet).", "duration", minimum=1,
    )
    every: float = setting(21600.0, "Then another heartbeat this often while the data stays down.", "duration", minimum=1)
    max_per_day: int = setting(
        4, "Most heartbeats a day (each goes to every number); more are skipped, and an event reading says so.",
        "int", minimum=0, maximum=1000,
    )
    max_per_month: int = setting(60, "Most heartbeats a calendar month.", "int", minimum=0, maximum=30000)
    key_file: Path = setting(
        Path("/etc/blankspot/heartbeat.key"), "The unit's heartbeat key (64 hex digits; the centre holds a copy). "
        "Read at start when numbers is set.", "path",
    )
    check_interval: float = setting(
        300.0, "How often the SIM is read for messages that arrived (also at once on +CMTI).", "duration", minimum=1,
    )


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = section(DeviceConfig, "Identity of this unit.")
    buffer: BufferConfig = section(BufferConfig, "The durable on-unit reading buffer.")
    uplink: UplinkConfig = section(UplinkConfig, "MQTT connection to the central broker.")
    source: SourceConfig = section(SourceConfig, "What produces readings.")
    log: LogConfig = section(LogConfig, "Logging.")
    modem: ModemConfig = section(ModemConfig, "The cellular modem (source.kind 'devices').")
    gps: GpsConfig = section(GpsConfig, "Where positions come from (source.kind 'devices').")
    schedule: ScheduleConfig = section(ScheduleConfig, "When each measurement runs (source.kind 'devices').")
    latency: LatencyConfig = section(LatencyConfig, "Latency measurements.")
    throughput: ThroughputConfig = section(ThroughputConfig, "Throughput tests (within [budget]).")
    panel: PanelConfig = section(PanelConfig, "Status lights, push button and power-fail input (Raspberry Pi GPIO).")
    budget: BudgetConfig = section(BudgetConfig, "Mobile data: the limits measurements keep to, and where usage is counted.")
    sms: SmsConfig = section(SmsConfig, "The signed heartbeat SMS a unit sends while its data link is down (source.kind 'devices').")

    @property
    def device_id(self) -> str:
        """``device.id``; empty only in a config parsed with ``require_device_id=False``."""
        return self.device.id

    @property
    def client_id(self) -> str:
        return self.uplink.client_id or f"blankspot-{self.device_id}"


def parse_config(text: str, path: Path | str = "<config>", *, require_device_id: bool = True) -> Config:
    """Validate TOML ``text`` into a :class:`Config`; ``path`` only names the file in errors.

    ``require_device_id=False`` accepts a file without ``device.id``: for commands that
    help set a unit up (``doctor``, ``measure``) rather than run it.
    """
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line = toml_error(exc)
        raise ConfigError(path, f"not valid TOML: {message}", line) from None
    try:
        config = build(Config, table)
        _check(config, require_device_id)
    except SettingError as exc:
        raise ConfigError(path, f"{exc.key}: {exc.message}", line_of(text, exc.key)) from None
    return config


DEVICE_ID_MISSING = (
    "required: a name for this unit, unique in the fleet (1-64 letters, digits, '-', '_' or '.'), "
    "e.g. id = \"boat-07\"; 'blankspot doctor' proposes one from the Pi's serial number"
)


def _check(config: Config, require_device_id: bool = True) -> None:
    """Rules that span several keys."""
    # No default: every fresh Raspberry Pi OS is called "raspberrypi", and two units with
    # one name would have their readings merged by the centre as duplicates.
    if not config.device.id and require_device_id:
        raise SettingError("device.id", DEVICE_ID_MISSING)
    if config.device.id and not DEVICE_RE.fullmatch(config.device.id):
        raise SettingError(
            "device.id",
            f"expected 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit, got {config.device.id!r}",
        )
    up = config.uplink
    if up.backoff_max < up.backoff_min:
        raise SettingError("uplink.backoff_max", "must not be shorter than uplink.backoff_min")
    if bool(up.cert_file) != bool(up.key_file):
        raise SettingError("uplink.cert_file", "cert_file and key_file go together: give both or neither")
    if up.password and up.password_file:
        raise SettingError("uplink.password_file", "give password or password_file, not both")
    if any("+" in p or "#" in p for p in up.topic_prefix.split("/")) or up.topic_prefix.endswith("/"):
        raise SettingError("uplink.topic_prefix", f"expected topic levels without wildcards or a trailing '/', got {up.topic_prefix!r}")
    if config.source.kind == "devices" and config.gps.source == "serial" and not config.gps.port:
        raise SettingError("gps.port", "a receiver on a serial port needs its port, e.g. port = \"/dev/ttyACM0\"")
    _check_panel(config.panel)
    _check_budget(config.budget)
    _check_sms(config.sms, config.device.id)


def _check_sms(sms: SmsConfig, device_id: str = "") -> None:
    if sms.numbers and len(device_id) > 32:
        raise SettingError("sms.numbers", f"a heartbeat names its unit in at most 32 characters; device.id "
                           f"{device_id!r} has {len(device_id)}")
    for index, number in enumerate(sms.numbers):
        if not _INTERNATIONAL.fullmatch(number):
            raise SettingError(f"sms.numbers[{index}]", f"expected a number in international format such as "
                               f"\"+6281234567890\" (a '+', the country code, no spaces), got {number!r}")
    if len(set(sms.numbers)) != len(sms.numbers):
        raise SettingError("sms.numbers", "a number is listed twice")
    if sms.max_per_month and sms.max_per_day > sms.max_per_month:
        raise SettingError("sms.max_per_day", f"{sms.max_per_day} a day is more than sms.max_per_month allows "
                           f"({sms.max_per_month})")


_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{6,14}")  # E.164: a country code and at most 15 digits in all


def read_sms_key(config: Config, source: Path | str = "<config>") -> bytes | None:
    """The heartbeat key of ``sms.key_file`` when ``sms.numbers`` is set (None otherwise);
    a missing or malformed key is a ConfigError naming the file."""
    from agent.shared.heartbeat import HeartbeatKeyError, read_key

    if not config.sms.numbers:
        return None
    path = config.sms.key_file
    try:
        return read_key(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, f"sms.key_file: cannot read the heartbeat key {path}: {reason} (deploy/install.sh "
                          "or the Ansible playbook writes /etc/blankspot/heartbeat.key; sms.numbers is set, so "
                          "heartbeats need it)") from None
    except HeartbeatKeyError as exc:
        raise ConfigError(source, f"sms.key_file: {path} is not a heartbeat key: {exc}") from None


def _check_budget(budget: BudgetConfig) -> None:
    try:
        ZoneInfo(budget.timezone)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise SettingError("budget.timezone", f"unknown time zone {budget.timezone!r}; expected a name such as "
                           "\"Asia/Makassar\" (WITA), \"Asia/Jakarta\" (WIB) or \"UTC\"") from None


PANEL_PINS = ("gps_led", "signal_led", "uplink_led", "backlog_led", "button_pin", "power_pin")


def _check_panel(panel: PanelConfig) -> None:
    used: dict[int, str] = {}
    for key in PANEL_PINS:
        pin = getattr(panel, key)
        if pin == 0:
            continue
        if pin in used:
            raise SettingError(f"panel.{key}", f"GPIO {pin} is already panel.{used[pin]}; each pin can be used once")
        used[pin] = key
    try:
        command = shlex.split(panel.shutdown_command)
    except ValueError as exc:
        raise SettingError("panel.shutdown_command", f"cannot split into words: {exc}") from None
    if not command:
        raise SettingError("panel.shutdown_command", "expected a command such as \"systemctl poweroff\"")


def load_config(path: Path | str, *, require_device_id: bool = True) -> Config:
    """Read and validate the config file (see :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, f"no such file (give --config PATH, or copy {example_config()} there)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read: {exc}") from None
    return parse_config(text, path, require_device_id=require_device_id)


def read_password(config: UplinkConfig, source: Path | str = "<config>") -> str | None:
    if config.password_file:
        try:
            return config.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise ConfigError(source, f"uplink.password_file: cannot read a password from {config.password_file}: {exc}") from None
    return config.password or None
