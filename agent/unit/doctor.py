"""``blankspot doctor``: check a unit's parts one by one and say what to do about each failure.

Each check gives one :class:`CheckResult`: ``ok``, ``warn`` (works, but worth a look) or
``fail`` (the unit cannot do its job until someone acts), a one-line detail, and for
anything not ok, advice a technician can follow on the spot.  The *verdict* functions are
pure (facts in, result out) and tested by tables; the *check* functions gather the facts:
they open the serial ports, talk to the modem, read the GPS, connect to the broker.

Rules the checks keep:

- Two programs on one AT port garble each other's answers.  While the agent runs, the modem
  and the GPS are its own: the checks then read the agent's state file instead of opening
  the ports.  Any *other* process holding a port is found in ``/proc/*/fd`` and named.
- Short timeouts everywhere (``DoctorOptions``); nothing retries or resets a device.
- The broker check connects with its own client id and a clean session, so it never takes
  over the agent's session; with MQTT 5 it publishes one message to
  ``<prefix>/<device>/doctor`` to learn whether the broker's ACL lets this unit write.
- No check raises: an unexpected error is a ``fail`` result naming it.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from agent.unit.buffer import BufferError, BufferStats, intake_path, read_stats, sqlite_files
from agent.shared.clock import EARLIEST_PLAUSIBLE, boot_id, kernel_clock_synchronised
from agent.shared.installed import doc
from agent.shared.reading import HOME_REGISTRATIONS, ROAMING_REGISTRATIONS
from agent.unit.config import Config, ConfigError, read_password
from agent.unit.status import AgentLiveness, age_of, agent_liveness, format_age, pid_alive, read_state
from agent.unit.identity import CPUINFO, DEVICETREE_SERIAL, pi_serial, proposed_device_id

log = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
LABELS = {OK: "ok", WARN: "WARN", FAIL: "FAIL"}

MB = 1_000_000
DISK_FAIL_BYTES = 100 * MB
DISK_WARN_BYTES = 500 * MB
DISK_WARN_FRACTION = 0.10
GOOD_QUALITIES = ("excellent", "good", "fair")
SERVICE = "blankspot-agent"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    advice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "advice": self.advice}


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, OK, detail)


def warn(name: str, detail: str, advice: str | None = None) -> CheckResult:
    return CheckResult(name, WARN, detail, advice)


def fail(name: str, detail: str, advice: str | None = None) -> CheckResult:
    return CheckResult(name, FAIL, detail, advice)


@dataclass(frozen=True)
class DoctorOptions:
    gps_wait: float = 15.0       # seconds to wait for a fix with a position
    modem_timeout: float = 5.0   # longest wait for one AT command
    broker_timeout: float = 10.0
    skip_broker: bool = False
    # Where the board's serial number is read, to propose a device.id (tests give their own).
    cpuinfo: Path = CPUINFO
    devicetree_serial: Path = DEVICETREE_SERIAL


# -- who holds a port ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Holder:
    pid: int
    name: str      # /proc/<pid>/comm
    command: str   # /proc/<pid>/cmdline, spaces between arguments

    @property
    def kind(self) -> str:
        """``modemmanager``, ``gpsd``, ``blankspot`` or ``other``."""
        if self.name == "ModemManager":
            return "modemmanager"
        if self.name == "gpsd":
            return "gpsd"
        words = self.command.split()
        if self.name == "blankspot" or any(w.endswith("/blankspot") or w == "blankspot" for w in words[:3]) \
                or " -m agent " in f" {self.command} ":
            return "blankspot"
        return "other"

    def describe(self) -> str:
        label = "another blankspot" if self.kind == "blankspot" else self.name
        return f"{label} (pid {self.pid})"


def port_holders(device: str, proc: Path = Path("/proc"), ignore: Iterable[int] = ()) -> list[Holder]:
    """Processes with ``device`` (its real path) open, except the ``ignore``d pids.

    Processes of other users are invisible unless we are root; that is the usual case for a
    technician who runs ``sudo blankspot doctor``.
    """
    real = os.path.realpath(device)
    skip = set(ignore)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target == real:
                found.append(_holder(entry))
                break
    return sorted(found, key=lambda h: h.pid)


def _holder(entry: Path) -> Holder:
    def read(name: str) -> str:
        try:
            return (entry / name).read_bytes().decode(errors="replace")
        except OSError:
            return ""
    return Holder(int(entry.name), read("comm").strip() or "?", " ".join(read("cmdline").split("\0")).strip())


def holder_advice(holder: Holder, role: str, gps_source: str, agent_pid: int | None = None) -> str:
    if holder.pid == agent_pid:
        return (f"that is the agent, but it has stopped updating its state (hung, or still stopping): "
                f"systemctl restart {SERVICE}")
    if holder.kind == "modemmanager":
        return ("ModemManager owns the modem: install the udev rules from deploy/udev (they set "
                "ID_MM_DEVICE_IGNORE) and replug the modem, or systemctl disable --now ModemManager")
    if holder.kind == "gpsd":
        if role == "nmea":
            return ("gpsd owns the GPS port: set gps.source = \"gpsd\" to read positions through it, "
                    "or stop it: systemctl disable --now gpsd.socket gpsd")
        return "gpsd has opened the modem's AT port: remove that port from gpsd's DEVICES (/etc/default/gpsd)"
    if holder.kind == "blankspot":
        return (f"another blankspot has the port open (a second agent with another config, or a "
                f"'blankspot modem'/'gps' left running): stop it (kill {holder.pid})")
    return f"stop {holder.name} (kill {holder.pid}) or move it off this port: two programs on one port garble each other"


# -- verdicts: facts in, result out ---------------------------------------------------------------

def agent_verdict(agent: AgentLiveness) -> CheckResult:
    if agent.running:
        return ok("agent", f"running (pid {agent.pid}, state written {format_age(agent.last_seen_age_s)})")
    if agent.last_seen is None:
        return warn("agent", f"not running ({agent.not_running_because})",
                    f"systemctl enable --now {SERVICE} starts it, and at every boot")
    return warn("agent", f"not running (last seen {format_age(agent.last_seen_age_s)}: {agent.not_running_because})",
                f"systemctl start {SERVICE}; journalctl -u {SERVICE} -n 50 shows why it stopped")


_PORT_GONE_ADVICE = {
    "at": ("is the modem plugged in and powered? lsusb should list it; with the udev rules from deploy/udev "
           "installed it appears as /dev/blankspot-at (replug it, or udevadm trigger, after installing them)"),
    "nmea": ("is the receiver plugged in? ls -l /dev/blankspot-nmea /dev/ttyACM* /dev/ttyUSB*; a modem's NMEA "
             "port appears only with its GNSS interface enabled"),
}


def port_verdict(name: str, role: str, device: str, exists: bool, holders: list[Holder],
                 gps_source: str = "serial", agent_pid: int | None = None, agent_running: bool = False) -> CheckResult:
    """``holders`` excludes the running agent; ``agent_pid`` is the agent's even when it is not running."""
    if not exists:
        return fail(name, f"{device} does not exist", _PORT_GONE_ADVICE[role])
    if holders:
        who = ", ".join(h.describe() for h in holders)
        return fail(name, f"{device} is held by {who}", holder_advice(holders[0], role, gps_source, agent_pid))
    real = os.path.realpath(device)
    shown = device if real == device else f"{device} -> {real}"
    users = f", in use by the running agent (pid {agent_pid})" if agent_running else ", no other program has it open"
    return ok(name, shown + users)


def sim_state_from_error(error: str | None) -> str | None:
    """The SIM state a signal reading's ``error`` reveals (as ``Modem.sim_state`` says it)."""
    if error is None:
        return "READY"
    if "SIM not inserted" in error:
        return "NOT INSERTED"
    if error.startswith("SIM locked (") and " required)" in error:
        return error[len("SIM locked ("):error.index(" required)")]
    if error.startswith("SIM not ready ("):
        return error[len("SIM not ready ("):].rstrip(")")
    return None


def sim_verdict(state: str) -> CheckResult:
    if state == "READY":
        return ok("SIM", "ready")
    if state == "NOT INSERTED":
        return fail("SIM", "absent (the modem sees no SIM)",
                    "power the unit off, insert the SIM (fully home, contacts as marked on the slot), power on; "
                    "a SIM that is in but not seen is dirty, damaged or the wrong size adapter")
    if state in ("SIM PIN", "SIM PIN2"):
        return fail("SIM", f"PIN-locked ({state})",
                    "the unit cannot type a PIN: put the SIM in a phone, enter the PIN, and turn the SIM PIN "
                    "lock off (Settings > Security > SIM lock)")
    if "PUK" in state:
        return fail("SIM", f"blocked ({state}): wrong PIN entered too often",
                    "unblock it in a phone with the PUK from the SIM's card or the operator, then turn the PIN off")
    return fail("SIM", f"not usable ({state})", "reseat the SIM; if it stays, try another SIM in this unit")


def registration_verdict(signal: dict[str, Any]) -> CheckResult:
    reg = signal.get("registration") or "unknown"
    where = " ".join(str(x) for x in (signal.get("operator"), signal.get("rat")) if x and x != "NONE")
    on = f" on {where}" if where else ""
    # Registered for "SMS only" or "CSFB not preferred": data works, voice or SMS are restricted.
    limited = {"sms_only": " (SMS only: no circuit-switched voice)",
               "csfb_not_preferred": " (voice fallback to 2G/3G not preferred)"}
    kind = next((k for k in limited if reg.startswith(k)), None)
    if reg in HOME_REGISTRATIONS:
        return ok("registration", f"home network{on}{limited[kind] if kind else ''}")
    if reg in ROAMING_REGISTRATIONS:
        return warn("registration", f"roaming{on}{limited[kind] if kind else ''}",
                    "a roaming SIM may be charged more or cut off: use a SIM of an operator that serves here")
    if reg in ("emergency_only", "rlos_only"):
        what = "emergency calls" if reg == "emergency_only" else "the operator's restricted local services"
        return warn("registration", f"attached for {what} only{on}: no service for the public here",
                    "a blank spot for this SIM (the readings record it); if a phone on the same operator has "
                    "service on this spot, check the SIM with the operator")
    if reg == "searching":
        return warn("registration", "searching: no network here",
                    "normal inside a blank spot (the readings record it); if a phone on the same operator has "
                    "service on this spot, check the antenna and its cable")
    if reg == "denied":
        return fail("registration", f"denied by the network{on}",
                    "the SIM is not activated, expired, or blocked: check it with the operator (a phone with this "
                    "SIM shows the same)")
    if reg == "not_registered":
        return warn("registration", "not registered and not searching",
                    "the modem may be in flight mode (AT+CFUN?); power-cycle it, and check the SIM with the operator")
    return warn("registration", "unknown: the modem did not say", "see 'blankspot modem --port PORT --raw'")


def signal_verdict(signal: dict[str, Any]) -> CheckResult:
    if signal.get("error"):
        return fail("signal", signal["error"], "power-cycle the modem; if it persists, see 'blankspot modem --raw'")
    figures = [f"{name} {signal[key]:g} {unit}" for key, name, unit in
               (("rsrp_dbm", "rsrp", "dBm"), ("rsrq_db", "rsrq", "dB"), ("sinr_db", "sinr", "dB"),
                ("rscp_dbm", "rscp", "dBm"), ("rssi_dbm", "rssi", "dBm"))
               if isinstance(signal.get(key), (int, float))][:2]
    quality = signal.get("quality")
    detail = f"{quality or 'level unknown'}" + (f": {', '.join(figures)}" if figures else "") + \
        (f" ({signal['rat']})" if signal.get("rat") not in (None, "NONE") else "")
    if quality in GOOD_QUALITIES:
        return ok("signal", detail)
    if quality == "poor":
        return warn("signal", detail, "expected at the edge of coverage; otherwise check the antenna and its cable")
    if quality == "none":
        return warn("signal", "no signal", "normal inside a blank spot; elsewhere check the antenna and its cable")
    return warn("signal", detail, "the modem reported no signal level; see 'blankspot modem --raw'")


@dataclass(frozen=True)
class GpsObservation:
    """What reading the receiver for a while showed."""

    source: str                 # "serial" | "modem" | "gpsd"
    where: str                  # port or gpsd address
    waited_s: float
    bytes_read: int | None      # None for gpsd
    epochs: int
    fix: Any = None             # the first Fix with a position, if any
    sats: int | None = None     # satellites in the last epoch
    likely_wrong_baud: bool = False
    baud: int | None = None


def gps_verdict(o: GpsObservation) -> CheckResult:
    if o.fix is not None:
        f = o.fix
        extras = ", ".join(x for x in (f"{f.sats} sats" if f.sats is not None else "",
                                       f"hdop {f.hdop:g}" if f.hdop is not None else "") if x)
        return ok("GPS fix", f"{f.fix} fix at {f.lat:.6f} {f.lon:.6f}" + (f" ({extras})" if extras else "")
                  + f" from {o.where}")
    waited = f"{o.waited_s:g} s"
    if o.source == "gpsd":
        if o.epochs == 0:
            return fail("GPS fix", f"gpsd at {o.where} sent no position reports in {waited}",
                        "no receiver attached to gpsd? 'gpspipe -w' shows what it sends; check DEVICES in "
                        "/etc/default/gpsd")
        return warn("GPS fix", f"gpsd reports no fix after {waited}", _NO_FIX_ADVICE)
    if o.likely_wrong_baud:
        return fail("GPS fix", f"{o.where} sends bytes but no valid NMEA at {o.baud} baud: wrong baud rate?",
                    "set gps.baud to the receiver's rate (often 9600, 4800, 38400 or 115200); "
                    f"'blankspot gps --port {o.where} --baud RATE' shows which one reads")
    if not o.bytes_read:
        if o.source == "modem":
            advice = ("the modem's GNSS is off or streams elsewhere: gps.port must be the modem's NMEA port "
                      "(/dev/blankspot-nmea); the agent switches GNSS on with the profile's commands at start")
        else:
            advice = "check the receiver's power and cable, and that gps.port is its port"
        return fail("GPS fix", f"{o.where} is silent: no bytes in {waited}", advice)
    if o.epochs == 0:
        return warn("GPS fix", f"{o.where} sends NMEA but no complete position epochs in {waited}",
                    "the receiver may send only sentences blankspot does not use (it needs GGA or RMC)")
    sats = f" ({o.sats} satellites used)" if o.sats is not None else ""
    return warn("GPS fix", f"the receiver talks NMEA but has no fix after {waited}{sats}", _NO_FIX_ADVICE)


_NO_FIX_ADVICE = ("give the antenna open sky (not under the boat's roof or a tin roof); a cold start can take "
                  "several minutes; run doctor again with --gps-wait 120")


def gps_state_verdict(state: str | None, fix: dict[str, Any] | None, now: float, pid: int | None) -> CheckResult:
    """The GPS as the running agent last saw it (from its state file)."""
    ours = f"(the running agent's, pid {pid})"
    if state in ("2d", "3d") and fix is not None and fix.get("lat") is not None:
        return ok("GPS fix", f"{state} fix at {fix['lat']:.6f} {fix['lon']:.6f}, {format_age(age_of(fix.get('time'), now))} "
                  + ours)
    if state == "absent":
        return fail("GPS fix", f"the agent cannot open the receiver {ours}",
                    f"journalctl -u {SERVICE} | grep GPS says why; check gps.port and the cable")
    return warn("GPS fix", f"no fix {ours}", _NO_FIX_ADVICE)


def clock_verdict(synchronised: bool | None, agent_source: str | None, wall: float) -> CheckResult:
    now = datetime.fromtimestamp(wall, timezone.utc)
    if now < EARLIEST_PLAUSIBLE:
        return warn("clock", f"system time is {now:%Y-%m-%d %H:%M} UTC, before {EARLIEST_PLAUSIBLE:%Y}: not set",
                    "readings get GPS time once there is a fix, but TLS to the broker fails until the clock is "
                    "right (certificates look not yet valid): get NTP (chrony) or a GPS fix")
    if synchronised:
        return ok("clock", "synchronised (NTP/chrony)" + (f"; the agent stamps readings '{agent_source}'"
                                                          if agent_source else ""))
    if synchronised is None:
        return warn("clock", "cannot ask the kernel whether the clock is synchronised (adjtimex)",
                    f"readings fall back to GPS time; see {doc('time.md')}")
    if agent_source == "gps":
        return warn("clock", "kernel clock not synchronised; the agent stamps readings with GPS time",
                    f"fine in the field; for NTP time run chrony (with gpsd's refclock if gpsd is used), {doc('time.md')}")
    if agent_source == "unsynced":
        return warn("clock", "kernel clock not synchronised and no GPS time yet: readings are stamped 'unsynced'",
                    "they are re-stamped once a GPS fix or NTP arrives in this boot; get the GPS a fix (see "
                    "above) and run chrony or systemd-timesyncd")
    return warn("clock", "kernel clock not synchronised (NTP/chrony)",
                f"the agent uses GPS time while it has a fix; run chrony or systemd-timesyncd for NTP ({doc('time.md')})")


@dataclass(frozen=True)
class BrokerOutcome:
    """How a connection attempt to the broker ended.

    ``kind``: ``ok``, ``dns``, ``refused``, ``timeout``, ``unreachable``, ``tls``, ``tls_files``, ``closed``
    (the broker hung up before answering), ``no_connack``, ``credentials``,
    ``not_authorised``, ``connack`` (another refusal), ``publish_refused``.
    """

    kind: str
    message: str = ""
    publish_checked: bool = False


def broker_verdict(o: BrokerOutcome, broker: str, username: str, tls: bool) -> CheckResult:
    name = "broker"
    if o.kind == "ok":
        how = ("TLS, " if tls else "") + (f"user {username}" if username else "anonymous")
        return ok(name, f"{broker} accepted the connection ({how})" +
                  ("; publishing allowed" if o.publish_checked else ""))
    if o.kind == "dns":
        return fail(name, f"cannot resolve the broker's name ({o.message})",
                    "check uplink.host for typos; is the data connection up (ip route; ping the broker)? "
                    "/etc/resolv.conf needs a working DNS server")
    if o.kind == "refused":
        return fail(name, f"{broker} refused the connection: nothing listens there",
                    "check uplink.port (1883 plain, 8883 TLS) and that the broker runs")
    if o.kind == "timeout":
        return fail(name, f"no answer from {broker} ({o.message})",
                    "no data connection here, or a firewall drops the port; 'blankspot measure latency' tells which")
    if o.kind == "unreachable":
        return fail(name, f"cannot reach {broker}: {o.message}",
                    "no route to the broker: is the modem's data connection up (ip route)?")
    if o.kind == "tls":
        advice = ("uplink.ca_file must hold the CA that signed the broker's certificate, and the unit's clock must "
                  "be right (a certificate is 'not yet valid' on a unit that thinks it is 1970)")
        if "WRONG_VERSION_NUMBER" in o.message.upper() or "wrong version number" in o.message:
            advice = "the port speaks plain MQTT, not TLS: set uplink.tls = false, or use the broker's TLS port (8883)"
        elif "certificate required" in o.message or "alert" in o.message.lower():
            advice = ("the broker wants a client certificate it accepts: set uplink.cert_file and uplink.key_file "
                      "to this unit's certificate (signed by the fleet CA)")
        return fail(name, f"TLS with {broker} failed: {o.message}", advice)
    if o.kind == "tls_files":
        return fail(name, f"cannot load the TLS files: {o.message}",
                    "check uplink.ca_file, uplink.cert_file and uplink.key_file: the files must exist, be readable "
                    "by the agent, and the key must belong to the certificate")
    if o.kind == "closed":
        return fail(name, f"{broker} closed the connection before answering ({o.message})",
                    "the broker's log says why: a client certificate missing, or TLS expected (uplink.tls = true)?")
    if o.kind == "no_connack":
        return fail(name, f"{broker} took the connection but sent no MQTT answer ({o.message})",
                    "is this an MQTT port? A TLS port needs uplink.tls = true")
    if o.kind == "credentials":
        return fail(name, f"credentials refused by {broker} ({o.message})",
                    "check uplink.username and the password (uplink.password_file); the broker's password file "
                    "must hold this unit (mosquitto_passwd)")
    if o.kind == "not_authorised":
        if username:
            return fail(name, f"credentials refused by {broker}: {o.message}",
                        "check uplink.username and the password (uplink.password_file) against the broker's "
                        "password file (mosquitto_passwd)")
        return fail(name, f"not authorised by {broker}: it wants a username and password ({o.message})",
                    "set uplink.username and uplink.password_file")
    if o.kind == "publish_refused":
        return fail(name, f"{broker} accepted the login but refuses this unit's topics ({o.message})",
                    "the broker's ACL lets a unit write only under its own name: device.id must equal "
                    "uplink.username (or the certificate's CN)")
    return fail(name, f"{broker} refused the connection: {o.message}", "the broker's log says why")


def disk_verdict(path: Path, free: int, total: int, buffer_used: int, buffer_max: int) -> CheckResult:
    detail = f"{free / MB:,.0f} MB free of {total / MB:,.0f} MB on the buffer's disk ({path})"
    if free < DISK_FAIL_BYTES:
        return fail("disk", detail, "free space now (journalctl --vacuum-size=50M; apt-get clean; old files in "
                                    "/var/log): a full disk cannot store readings")
    if free < DISK_WARN_BYTES or free < DISK_WARN_FRACTION * total:
        return warn("disk", detail, "free space soon (journalctl --vacuum-size=50M; apt-get clean)")
    if buffer_max > free + buffer_used:
        return warn("disk", f"{detail}: less than buffer.max_size ({buffer_max / MB:,.0f} MB)",
                    "lower buffer.max_size below the free space, or the disk fills before the buffer does")
    return ok("disk", detail)


def buffer_verdict(path: Path, stats: BufferStats | None, error: str | None, now: float) -> CheckResult:
    if error is not None:
        return fail("buffer", error, f"{doc('buffer.md')}, 'A damaged database', says how to recover its readings")
    if stats is None:
        return ok("buffer", f"none yet at {path}: the agent creates it when it first runs")
    waiting = f"{stats.pending} readings waiting" + (
        f" (oldest {format_age(age_of(stats.oldest_pending_time, now))})" if stats.pending else "")
    delivered = "never delivered" if stats.last_delivered_at is None else \
        f"last delivery {format_age(age_of(stats.last_delivered_at, now))}"
    if stats.dropped_total:
        return warn("buffer", f"{stats.dropped_total} readings were dropped when the buffer was full; {waiting}",
                    "raise buffer.max_size, and find out why the unit could not deliver for so long (broker, above)")
    return ok("buffer", f"{waiting}, {delivered}")


def config_verdict(config_path: str, device_id: str, source_kind: str, serial: str | None) -> CheckResult:
    """The config file (already valid apart from ``device.id``); ``serial`` is the board's, if known."""
    if device_id:
        return ok("config", f"{config_path} is valid (device {device_id}, source {source_kind})")
    detail = f"{config_path}: device.id is not set, and the agent does not start without it"
    where = f"under [device] in {config_path}"
    if serial:
        return fail("config", detail, f"set id = \"{proposed_device_id(serial)}\" {where} (from this Pi's serial "
                                      f"number {serial}), or another name unique in the fleet")
    return fail("config", detail, f"set id = \"boat-07\" {where}, or another name unique in the fleet (this "
                                  "machine has no serial number to derive one from)")


# -- the checks: gather facts, give verdicts --------------------------------------------------------

@dataclass
class Context:
    config: Config
    config_path: str
    options: DoctorOptions
    state: dict[str, Any] | None
    agent: AgentLiveness
    now: Callable[[], float] = time.time
    ignore_pids: set[int] = field(default_factory=set)


def make_context(config: Config, config_path: str, options: DoctorOptions) -> Context:
    from agent.unit.service import state_path

    state, _ = read_state(state_path(config))
    agent = agent_liveness(state, time.time(), pid_alive, boot_id())
    ignore = {os.getpid()} | ({agent.pid} if agent.running and agent.pid is not None else set())
    return Context(config, config_path, options, state, agent, ignore_pids=ignore)


def check_config(ctx: Context) -> CheckResult:
    serial = None
    if not ctx.config.device_id:
        serial = pi_serial(ctx.options.cpuinfo, ctx.options.devicetree_serial)
    return config_verdict(ctx.config_path, ctx.config.device_id, ctx.config.source.kind, serial)


def check_agent(ctx: Context) -> CheckResult:
    return agent_verdict(ctx.agent)


def _is_url(port: str) -> bool:
    return "://" in port


def _port_check(ctx: Context, name: str, role: str, device: str) -> CheckResult:
    if _is_url(device):
        return ok(name, f"{device} (a pyserial URL: not checked)")
    exists = os.path.exists(device)
    holders = port_holders(device, ignore=ctx.ignore_pids) if exists else []
    return port_verdict(name, role, device, exists, holders, ctx.config.gps.source, ctx.agent.pid, ctx.agent.running)


def modem_port(config: Config) -> str | None:
    from agent.unit.devices.modem.profiles import port_for

    return port_for("at", config.modem.port)


def check_modem(ctx: Context) -> list[CheckResult]:
    config = ctx.config
    port = modem_port(config)
    if port is None:
        return [fail("modem port", "no modem found: no USB serial port matches a profile in firmware_configs/",
                     "plug the modem in (lsusb lists it?); set modem.port, or add a firmware_configs/ profile "
                     "with its USB id")]
    port_result = _port_check(ctx, "modem port", "at", port)
    if port_result.status == FAIL:
        return [port_result]
    if ctx.agent.running:
        return [port_result, *modem_from_state(ctx)]
    return [port_result, *talk_to_modem(ctx, port)]


def modem_from_state(ctx: Context) -> list[CheckResult]:
    state = ctx.state or {}
    signal = state.get("signal") if isinstance(state.get("signal"), dict) else None
    not_opened = f"not opened: the running agent (pid {ctx.agent.pid}) has it, and two programs on one AT port " \
                 "garble each other"
    if signal is None:
        return [warn("modem", f"{not_opened}; it has no signal reading yet",
                     "run doctor again in a minute, or stop the agent to let doctor talk to the modem")]
    age = format_age(age_of(signal.get("time"), ctx.now()))
    sim = sim_state_from_error(signal.get("error"))
    if sim is None:  # the modem itself failed, not the SIM
        return [fail("modem", f"{not_opened}; its last signal reading ({age}) says: {signal['error']}",
                     "the agent reopens and resets a silent modem by itself; if this stays, power-cycle the unit")]
    results = [ok("modem", f"{not_opened}; its last signal reading {age}"), sim_verdict(sim)]
    if sim == "READY":
        results += [registration_verdict(signal), signal_verdict(signal)]
    return results


def talk_to_modem(ctx: Context, port: str) -> list[CheckResult]:
    from agent.unit.devices.modem.device import ModemUnavailable, open_modem
    from agent.unit.devices.modem.errors import ModemError, PortGone, ProfileError
    from agent.unit.devices.modem.profiles import FALLBACK
    from agent.shared.reading import part_dict

    config = ctx.config
    try:
        modem = open_modem(port, config.modem.model, config.modem.baud, command_timeout=ctx.options.modem_timeout)
    except PortGone as exc:
        return [fail("modem", f"cannot open {port}: {exc}", _PORT_GONE_ADVICE["at"])]
    except ModemUnavailable:
        return [fail("modem", f"no answer to AT on {port}",
                     "is this the AT port (not the NMEA or diagnostic port)? A modem still booting answers after "
                     "~20 s; a hung one needs a power cycle")]
    except ModemError as exc:
        # With modem.model set, a ProfileError is that profile's; without, one met while
        # detecting the model is reported like any other failure of the modem.
        if isinstance(exc, ProfileError) and config.modem.model:
            return [fail("modem", f"modem.model: {exc}", "set modem.model to a file name in firmware_configs/, or "
                                                         "leave it empty to detect the model")]
        return [_modem_failed(port, exc)]
    try:
        found = modem.profile
        if found.name == FALLBACK and not config.modem.model:
            results = [warn("modem", f"answers AT on {port}, model not recognised: using the generic 3GPP profile",
                            "set modem.model, or add firmware_configs/<model>.toml for it (firmware_configs/README.md)")]
        else:
            results = [ok("modem", f"answers AT on {port}: {found.vendor} {found.model} (profile {found.name})")]
        sim = modem.sim_state()
        results.append(sim_verdict(sim))
        if sim == "READY":
            signal = part_dict(modem.signal())
            if not signal.get("error"):
                results.append(registration_verdict(signal))
            results.append(signal_verdict(signal))
            if config.sms.numbers:
                results.append(_service_centre(modem))
        if config.gps.source == "modem":
            results.append(switch_gnss_on(modem))
        return results
    except ModemError as exc:
        return [_modem_failed(port, exc)]
    finally:
        modem.close()


def service_centre_verdict(number: str | None) -> CheckResult:
    if number is None:
        return warn("SMS centre", "the SIM has no SMS service centre; heartbeats cannot be sent",
                    "ask the operator for its SMS centre number and set it: AT+CSCA=\"+62...\",145")
    return ok("SMS centre", f"the SIM's SMS service centre is {number}")


def sms_verdict(numbers: tuple[str, ...], key_problem: str | None, every_s: float, max_per_day: int,
                max_per_month: int) -> CheckResult:
    """The [sms] settings: who gets heartbeats, whether the key can sign them, whether the budget allows them."""
    if not numbers:
        return ok("SMS", "no heartbeat SMS (sms.numbers is empty)")
    if key_problem is not None:
        return fail("SMS", key_problem, "run deploy/install.sh again: it writes /etc/blankspot/heartbeat.key "
                                        "(root:blankspot 0640) when missing and says where the centre's copy "
                                        "goes (a fleet under Ansible: run the playbook); or empty sms.numbers")
    if max_per_day == 0 or max_per_month == 0:
        return warn("SMS", f"heartbeats to {', '.join(numbers)} are configured but the budget allows none",
                    "raise sms.max_per_day and sms.max_per_month")
    wanted = -(-86400 // int(every_s))  # heartbeats a whole day of outage asks for
    if wanted > max_per_day:
        return warn("SMS", f"sms.every asks for up to {wanted} heartbeats a day, sms.max_per_day allows {max_per_day}: "
                           "the rest are skipped", "lengthen sms.every or raise sms.max_per_day")
    return ok("SMS", f"heartbeats to {', '.join(numbers)}, key readable, at most {max_per_day} a day and "
                     f"{max_per_month} a month")


def check_sms(ctx: Context) -> CheckResult:
    from agent.unit.config import ConfigError, read_sms_key

    sms = ctx.config.sms
    problem = None
    try:
        read_sms_key(ctx.config, ctx.config_path)
    except ConfigError as exc:
        problem = str(exc)
    return sms_verdict(tuple(sms.numbers), problem, sms.every, sms.max_per_day, sms.max_per_month)


def _service_centre(modem: Any) -> CheckResult:
    from agent.unit.devices.modem.errors import AtCommandError, AtParseError
    from agent.unit.devices.modem.sms import service_centre

    try:
        return service_centre_verdict(service_centre(modem.channel))
    except (AtCommandError, AtParseError) as exc:
        return warn("SMS centre", f"cannot read the SIM's SMS service centre (AT+CSCA?): {exc}")


def _modem_failed(port: str, exc: Exception) -> CheckResult:
    return fail("modem", f"{port}: {exc}", "power-cycle the modem; 'blankspot modem --port PORT --raw' shows "
                                           "the conversation")


def switch_gnss_on(modem: Any) -> CheckResult:
    from agent.unit.devices.gps.reader import GpsError, enable_modem_gnss
    from agent.unit.devices.modem.errors import ModemError

    try:
        enable_modem_gnss(modem.channel, modem.profile)
    except GpsError as exc:
        return fail("modem GNSS", str(exc), "set gps.source = \"serial\" with a separate receiver on gps.port")
    except ModemError as exc:
        return warn("modem GNSS", f"could not switch it on: {exc}", "the agent tries again when it starts")
    return ok("modem GNSS", "switched on")


def nmea_port(config: Config) -> str | None:
    from agent.unit.devices.modem.profiles import port_for

    return port_for("nmea", config.gps.port)


def check_gps(ctx: Context) -> list[CheckResult]:
    gps = ctx.config.gps
    if gps.source == "none":
        return [ok("GPS", "not used (gps.source = \"none\"): readings carry no position")]
    if ctx.agent.running:
        state = ctx.state or {}
        results = []
        if gps.source != "gpsd":
            port = nmea_port(ctx.config)
            if port is not None:
                results.append(_port_check(ctx, "GPS port", "nmea", port))
        fix = state.get("fix") if isinstance(state.get("fix"), dict) else None
        return results + [gps_state_verdict(state.get("gps"), fix, ctx.now(), ctx.agent.pid)]
    if gps.source == "gpsd":
        return [read_gpsd(ctx)]
    port = nmea_port(ctx.config)
    if port is None:
        return [fail("GPS port", "no NMEA port found by the modem's USB id",
                     "set gps.port (/dev/blankspot-nmea with the udev rules from deploy/udev)")]
    port_result = _port_check(ctx, "GPS port", "nmea", port)
    if port_result.status == FAIL:
        return [port_result]
    return [port_result, read_nmea(ctx, port)]


def read_nmea(ctx: Context, port: str) -> CheckResult:
    from agent.unit.devices.gps.reader import GpsError, GpsReader

    gps, wait = ctx.config.gps, ctx.options.gps_wait
    try:
        reader = GpsReader(port, gps.baud, max_age_s=gps.max_age)
    except GpsError as exc:
        return fail("GPS fix", str(exc), _PORT_GONE_ADVICE["nmea"])
    started = time.monotonic()
    try:
        fix, sats, epochs = _first_position(reader, wait)
    except GpsError as exc:
        return fail("GPS fix", str(exc), _PORT_GONE_ADVICE["nmea"])
    finally:
        reader.close()
    return gps_verdict(GpsObservation(gps.source, port, round(time.monotonic() - started, 1), reader.stats.bytes_read,
                                      epochs, fix, sats, reader.likely_wrong_baud, gps.baud))


def read_gpsd(ctx: Context) -> CheckResult:
    from agent.unit.devices.gps.gpsd import GpsdReader, parse_address
    from agent.unit.devices.gps.reader import GpsError

    gps, wait = ctx.config.gps, ctx.options.gps_wait
    try:
        host, port = parse_address(gps.gpsd)
    except ValueError as exc:
        return fail("GPS fix", f"gps.gpsd: {exc}", "set gps.gpsd to HOST:PORT, e.g. \"127.0.0.1:2947\"")
    try:
        reader = GpsdReader(host, port, max_age_s=gps.max_age, connect_timeout=min(5.0, wait))
    except GpsError as exc:
        return fail("GPS fix", str(exc), "systemctl enable --now gpsd.socket gpsd; or set gps.source")
    started = time.monotonic()
    try:
        fix, sats, epochs = _first_position(reader, wait)
    except GpsError as exc:
        return fail("GPS fix", str(exc), "systemctl restart gpsd; journalctl -u gpsd says why it stopped")
    finally:
        reader.close()
    return gps_verdict(GpsObservation("gpsd", f"{host}:{port}", round(time.monotonic() - started, 1), None,
                                      epochs, fix, sats))


def _first_position(reader: Any, wait: float) -> tuple[Any, int | None, int]:
    """(first fix with a position or None, satellites in the last epoch, epochs seen) within ``wait`` s."""
    deadline = time.monotonic() + wait
    epochs, sats = 0, None
    while (left := deadline - time.monotonic()) > 0:
        fix = reader.read_fix(left)
        if fix is None:
            break
        epochs += 1
        sats = fix.sats
        if fix.fix != "none" and fix.lat is not None and fix.lon is not None:
            return fix, sats, epochs
    return None, sats, epochs


def check_clock(ctx: Context) -> CheckResult:
    source = (ctx.state or {}).get("clock_source") if ctx.agent.running else None
    return clock_verdict(kernel_clock_synchronised(), source, ctx.now())


def check_broker(ctx: Context) -> CheckResult | None:
    up = ctx.config.uplink
    if ctx.options.skip_broker:
        return None
    if not up.enabled:
        return ok("broker", "uplink disabled (uplink.enabled = false): readings stay on the unit")
    try:
        password = read_password(up, ctx.config_path)
    except ConfigError as exc:
        return fail("broker", f"config error: {exc}",
                    "put the broker password on the first line of uplink.password_file, readable by the agent's user")
    outcome = probe_broker(ctx.config, password, ctx.options.broker_timeout)
    return broker_verdict(outcome, f"{up.host}:{up.port}", up.username, up.tls)


def probe_broker(config: Config, password: str | None, timeout: float) -> BrokerOutcome:
    """Connect once as the unit would (TLS, credentials, protocol), with its own client id."""
    from agent.shared.mqtt import new_client, secure

    up = config.uplink
    try:
        socket.getaddrinfo(up.host, up.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return BrokerOutcome("dns", exc.strerror or str(exc))
    v5 = up.protocol == "5"
    name = config.device_id or "unnamed"
    # A one-off client: a kept session would linger on the broker under an id never used again.
    client = new_client(f"blankspot-doctor-{name}-{os.getpid()}", protocol=up.protocol, persistent=False,
                        reconnect=False)
    client.connect_timeout = timeout
    events: dict[str, Any] = {}
    client.on_connect = lambda c, u, flags, rc, props: events.setdefault("connack", rc)
    client.on_disconnect = lambda c, u, flags, rc, props: events.setdefault("disconnect", rc)
    client.on_publish = lambda c, u, mid, rc, props: events.setdefault("puback", rc)
    try:
        secure(client, username=up.username or None, password=password, tls=up.tls,
               ca_file=up.ca_file, cert_file=up.cert_file, key_file=up.key_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return BrokerOutcome("tls_files", str(exc))
    try:
        client.connect(up.host, up.port, keepalive=max(5, int(timeout) * 2))
    except ConnectionRefusedError:
        return BrokerOutcome("refused")
    except ssl.SSLCertVerificationError as exc:
        return BrokerOutcome("tls", exc.verify_message or str(exc))
    except ssl.SSLError as exc:
        return BrokerOutcome("tls", exc.reason or str(exc))
    except TimeoutError:
        return BrokerOutcome("timeout", f"nothing in {timeout:g} s")
    except (ConnectionResetError, BrokenPipeError) as exc:
        return BrokerOutcome("closed", exc.strerror or type(exc).__name__)
    except (OSError, ValueError) as exc:
        return BrokerOutcome("unreachable", getattr(exc, "strerror", None) or str(exc))
    try:
        connack = _loop_until(client, lambda: "connack" in events or "disconnect" in events, timeout)
        if "connack" not in events:
            if "disconnect" in events:
                return BrokerOutcome("closed", str(events["disconnect"]))
            return BrokerOutcome("no_connack", f"nothing in {timeout:g} s" if not connack else "")
        rc = events["connack"]
        if rc.is_failure:
            text = str(rc)
            if rc.value in (0x86, 4):  # Bad user name or password (MQTT 5 / 3.1.1)
                return BrokerOutcome("credentials", text)
            if rc.value in (0x87, 5):  # Not authorized; Mosquitto also says this for a wrong password
                return BrokerOutcome("not_authorised", text)
            return BrokerOutcome("connack", text)
        if not v5:  # a 3.1.1 broker drops a refused publish silently: nothing to learn from it
            return BrokerOutcome("ok")
        if not config.device_id:  # no topics of its own yet: nothing the ACL could be asked about
            return BrokerOutcome("ok")
        topic = f"{up.topic_prefix}/{config.device_id}/doctor"
        client.publish(topic, b'{"doctor":"publish check"}', qos=1)
        _loop_until(client, lambda: "puback" in events or "disconnect" in events, timeout)
        ack = events.get("puback")
        if ack is not None and getattr(ack, "is_failure", False):
            return BrokerOutcome("publish_refused", f"{ack} on {topic}")
        return BrokerOutcome("ok", publish_checked=ack is not None)
    except (OSError, ssl.SSLError) as exc:
        return BrokerOutcome("closed", str(exc))
    finally:
        try:
            client.disconnect()
        except (OSError, ValueError):
            pass


def _loop_until(client: Any, done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        client.loop(0.05)
    return done()


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(ctx: Context) -> CheckResult:
    buffer = ctx.config.buffer
    where = _existing(buffer.path.parent)
    usage = shutil.disk_usage(where)
    used = 0
    for file in (*sqlite_files(buffer.path), intake_path(buffer.path)):
        try:
            used += file.stat().st_size
        except OSError:
            pass
    return disk_verdict(where, usage.free, usage.total, used, buffer.max_size)


def check_buffer(ctx: Context) -> CheckResult:
    path = ctx.config.buffer.path
    if not path.exists():
        folder = _existing(path.parent)
        if not os.access(folder, os.W_OK):
            return fail("buffer", f"none yet, and {folder} is not writable: the agent cannot create {path}",
                        f"create {path.parent} owned by the agent's user (deploy/install.sh does), or set buffer.path")
        return buffer_verdict(path, None, None, ctx.now())
    try:
        stats = read_stats(path)
    except BufferError as exc:
        return buffer_verdict(path, None, str(exc), ctx.now())
    return buffer_verdict(path, stats, None, ctx.now())


# -- running them all ------------------------------------------------------------------------------

def _guarded(name: str, check: Callable[[Context], Any], ctx: Context) -> list[CheckResult]:
    try:
        result = check(ctx)
    except Exception as exc:  # a check's bug must not hide the other checks, nor print a traceback
        log.debug("check %s failed", name, exc_info=True)
        return [fail(name, f"could not check: {type(exc).__name__}: {exc}", "run with --verbose and report it")]
    if result is None:
        return []
    return result if isinstance(result, list) else [result]


def run_doctor(config: Config, config_path: str, options: DoctorOptions,
               on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Every check, in the order a technician fixes things; ``on_result`` sees each as it is made."""
    ctx = make_context(config, config_path, options)
    checks: list[tuple[str, Callable[[Context], Any]]] = [("config", check_config), ("agent", check_agent)]
    if config.source.kind == "devices":
        checks += [("modem", check_modem), ("GPS", check_gps), ("SMS", check_sms)]
    else:
        checks.append(("devices", lambda c: ok("devices", "modem and GPS not used (source.kind = \"synthetic\")")))
    checks += [("clock", check_clock), ("broker", check_broker), ("disk", check_disk), ("buffer", check_buffer)]
    results: list[CheckResult] = []
    for name, check in checks:
        for result in _guarded(name, check, ctx):
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def result_lines(result: CheckResult) -> list[str]:
    lines = [f"{LABELS[result.status]:<4}  {result.name}: {result.detail}"]
    if result.advice and result.status != OK:
        lines.append(f"      -> {result.advice}")
    return lines


def summary_line(results: list[CheckResult]) -> str:
    counts = {status: sum(r.status == status for r in results) for status in (OK, WARN, FAIL)}
    verdict = "the unit is ready" if not counts[FAIL] else "fix the FAIL lines above, then run doctor again"
    return f"{counts[OK]} ok, {counts[WARN]} WARN, {counts[FAIL]} FAIL: {verdict}"


def report_dict(device: str | None, results: list[CheckResult]) -> dict[str, Any]:
    return {
        "device": device,
        "ok": not any(r.status == FAIL for r in results),
        "counts": {status: sum(r.status == status for r in results) for status in (OK, WARN, FAIL)},
        "checks": [r.to_dict() for r in results],
    }


def exit_status(results: list[CheckResult]) -> int:
    return 1 if any(r.status == FAIL for r in results) else 0
