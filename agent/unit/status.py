"""What ``blankspot status`` shows: the unit at a glance, from the files the agent leaves.

Two files, both read without disturbing the agent: the state file the running agent rewrites
every few seconds (:func:`agent.unit.service.state_path`; under systemd that file, written at
start, names the one in the runtime folder the agent rewrites, which is read instead), and
the reading buffer (opened read-only).  Data usage comes from the usage ledger.

- :func:`collect_status` does the reading, and returns one JSON-ready dict whose keys are
  documented in ``docs/operating.md``; every age in it is computed there, once.
- :func:`agent_liveness` decides whether the agent is running: the state file says so, its
  process is alive in this boot, and it wrote the file recently.  A state file left by an
  agent killed with ``kill -9`` still says ``running``; the other two tests catch that.
- :func:`status_lines` turns the dict into aligned text, with no I/O and no clock.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from agent.unit.buffer import BufferError, read_stats
from agent.shared.clock import boot_id, kernel_clock_synchronised
from agent.unit.config import Config
from agent.shared.reading import ReadingError, format_time_epoch, parse_time

log = logging.getLogger(__name__)

# The agent rewrites its state file every 2 s; this much silence means it is hung or gone.
STALE_AFTER_S = 30.0
LABEL_WIDTH = 18


@dataclass(frozen=True)
class AgentLiveness:
    running: bool
    pid: int | None
    last_seen: str | None           # when the state file was last written
    last_seen_age_s: float | None
    not_running_because: str | None  # None while running


def read_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The agent's state as a dict, or (None, why not): from the state file, or from the live
    one it names, while that exists."""
    state, problem = _read_state_file(path)
    live = state.get("live") if state is not None else None
    if isinstance(live, str):
        current, live_problem = _read_state_file(Path(live))
        if current is not None:
            return current, None
        if live_problem:
            return state, live_problem
    return state, problem


def _read_state_file(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"cannot read the agent's state file {path}: {exc}"
    if not isinstance(state, dict):
        return None, f"the agent's state file {path} does not hold a JSON object"
    return state, None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def age_of(text: Any, now: float) -> float | None:
    """Seconds from a reading-style time string to ``now`` (epoch seconds); None if unreadable."""
    if not isinstance(text, str):
        return None
    try:
        return round(now - parse_time(text).timestamp(), 1)
    except ReadingError:
        return None


def agent_liveness(state: dict[str, Any] | None, now: float, alive: Callable[[int], bool],
                   this_boot: str) -> AgentLiveness:
    """Whether the agent that wrote ``state`` is running now (see the module docstring)."""
    if state is None:
        return AgentLiveness(False, None, None, None, "no state file: the agent has not run with this config")
    pid = state.get("pid") if isinstance(state.get("pid"), int) else None
    written = state.get("written") if isinstance(state.get("written"), str) else None
    age = age_of(written, now)
    def stopped(why: str) -> AgentLiveness:
        return AgentLiveness(False, pid, written, age, why)
    if state.get("running") is not True:
        return stopped("it stopped normally")
    if state.get("boot_id") not in (None, this_boot):
        return stopped("the unit has rebooted since")
    if pid is None or not alive(pid):
        return stopped(f"process {pid} is gone: crashed or killed")
    if age is None or age > STALE_AFTER_S:
        return stopped("its state file is not being updated: the agent is hung")
    return AgentLiveness(True, pid, written, age, None)


def _usage(config: Config) -> tuple[dict[str, Any] | None, str | None]:
    try:
        from agent.unit.measure.usage import usage_summary
    except ImportError:
        return None, None
    try:
        return usage_summary(config), None
    except Exception as exc:  # a broken ledger must not hide the rest of the status
        log.debug("usage summary failed", exc_info=True)
        return None, f"data usage: {exc}"


def collect_status(config: Config, state_file: Path, now: float | None = None,
                   alive: Callable[[int], bool] = pid_alive) -> dict[str, Any]:
    """Everything ``blankspot status`` shows, as the JSON object ``--json`` prints.

    Raises ``BufferError`` when there is neither a buffer nor a state file: the agent has
    never run with this config, so there is nothing to show.
    """
    now = time.time() if now is None else now
    errors: list[str] = []
    state, problem = read_state(state_file)
    if problem:
        errors.append(problem)
    try:
        stats: dict[str, Any] | None = asdict(read_stats(config.buffer.path))
    except BufferError as exc:
        if state is None and not config.buffer.path.exists():
            raise
        stats = None
        errors.append(str(exc))
    usage, problem = _usage(config)
    if problem:
        errors.append(problem)
    agent = agent_liveness(state, now, alive, boot_id())
    backlog = (state or {}).get("backlog")
    if stats is not None and agent.running and isinstance(backlog, dict):
        # The running agent's figures count the acknowledgements it has not written yet.
        stats.update((key, value) for key, value in backlog.items() if key in stats)
    return build_status(config, state, stats, usage, agent, kernel_clock_synchronised(), now, errors)


def build_status(config: Config, state: dict[str, Any] | None, stats: dict[str, Any] | None,
                 usage: dict[str, Any] | None, agent: AgentLiveness, synchronised: bool | None,
                 now: float, errors: list[str]) -> dict[str, Any]:
    state = state or {}
    running = agent.running
    fix = state.get("fix") if isinstance(state.get("fix"), dict) else None
    signal = state.get("signal") if isinstance(state.get("signal"), dict) else None
    buffer = None
    if stats is not None:
        buffer = {**stats, "max_bytes": config.buffer.max_size, "path": str(config.buffer.path),
                  "oldest_pending_age_s": age_of(stats.get("oldest_pending_time"), now),
                  "last_delivered_age_s": age_of(stats.get("last_delivered_at"), now)}
    return {
        "device": config.device_id,
        "time": format_time_epoch(now),
        "agent": {
            "running": running,
            "pid": agent.pid,
            "started": state.get("started"),
            "uptime_s": state.get("uptime_s") if running else None,
            "last_seen": agent.last_seen,
            "last_seen_age_s": agent.last_seen_age_s,
            "not_running_because": agent.not_running_because,
            "source": state.get("source", config.source.kind),
            "mode": state.get("mode"),
            "readings_this_run": state.get("readings_this_run"),
        },
        "clock": {"source": state.get("clock_source") if running else None, "kernel_synchronised": synchronised},
        "gps": {"source": config.gps.source, "state": state.get("gps") if running else None},
        "fix": None if fix is None else {**fix, "age_s": age_of(fix.get("time"), now)},
        "signal": None if signal is None else {**signal, "age_s": age_of(signal.get("time"), now)},
        "uplink": {"enabled": config.uplink.enabled, "broker": f"{config.uplink.host}:{config.uplink.port}",
                   "state": state.get("uplink") if running else None},
        "buffer": buffer,
        "data": usage,
        "errors": errors,
    }


# -- text ------------------------------------------------------------------------------------

def format_age(seconds: float | None) -> str:
    """``12 s ago``, ``4 min ago``, ``3 h 20 min ago``, ``2 d 5 h ago``; ``at an unknown time``."""
    if seconds is None:
        return "at an unknown time"
    if seconds < 0:
        return "in the future (clock stepped back?)"
    s = int(seconds)
    if s < 120:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    days, hours = divmod(s // 3600, 24)
    return f"{days} d {hours} h ago" if hours else f"{days} d ago"


def format_span(seconds: float) -> str:
    return format_age(seconds).removesuffix(" ago")


def _line(label: str, text: str) -> str:
    return f"{label:<{LABEL_WIDTH}}{text}"


def _number(value: Any, unit: str, digits: int = 0) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return f"{value:.{digits}f} {unit}"


def _agent_text(agent: dict[str, Any]) -> str:
    if agent["running"]:
        what = ", ".join(x for x in (agent.get("mode"), agent.get("source")) if x)
        uptime = agent.get("uptime_s")
        return (f"running, pid {agent['pid']}" + (f", up {format_span(uptime)}" if isinstance(uptime, (int, float)) else "")
                + (f" ({what})" if what else ""))
    if agent.get("last_seen") is None:
        return f"not running ({agent['not_running_because']})"
    return f"not running (last seen {format_age(agent.get('last_seen_age_s'))}: {agent['not_running_because']})"


def _clock_text(clock: dict[str, Any], running: bool) -> str:
    kernel = {True: "kernel clock synchronised", False: "kernel clock NOT synchronised",
              None: "kernel clock state unknown"}[clock["kernel_synchronised"]]
    if clock["source"] is None:
        return kernel + ("" if running else " (agent not running)")
    meaning = {"ntp": "system clock", "gps": "GPS time", "unsynced": "UNSYNCED: times corrected later if possible"}
    return f"{clock['source']} ({meaning.get(clock['source'], '?')}; {kernel})"


def _fix_text(fix: dict[str, Any] | None) -> str:
    if fix is None:
        return "none"
    where = "no position" if fix.get("lat") is None else f"{fix['lat']:.6f} {fix['lon']:.6f}"
    extras = [f"{fix.get('fix', '?')} fix"]
    if fix.get("sats") is not None:
        extras.append(f"{fix['sats']} sats")
    if fix.get("hdop") is not None:
        extras.append(f"hdop {fix['hdop']}")
    return f"{where}  {', '.join(extras)}, {format_age(fix.get('age_s'))}"


def _signal_text(signal: dict[str, Any] | None) -> str:
    if signal is None:
        return "none yet"
    when = format_age(signal.get("age_s"))
    if signal.get("error"):
        return f"modem error: {signal['error']} ({when})"
    if signal.get("rat") == "NONE":
        return f"no service ({signal.get('registration') or 'unknown'}), {when}"
    parts = [signal.get("operator") or "-", signal.get("rat") or "-"]
    for key, name in (("rsrp_dbm", "rsrp"), ("rssi_dbm", "rssi")):
        value = _number(signal.get(key), "dBm")
        if value is not None:
            parts.append(f"{name} {value}")
            break
    parts.append(signal.get("quality") or "level unknown")
    parts.append(signal.get("registration") or "unknown")
    return "  ".join(parts) + f", {when}"


def _buffer_lines(b: dict[str, Any]) -> list[str]:
    oldest = "" if not b["pending"] else \
        f" (oldest {format_age(b['oldest_pending_age_s'])}, {b['oldest_pending_time']})"
    delivered = "never" if b["last_delivered_at"] is None else \
        f"{format_age(b['last_delivered_age_s'])} ({b['last_delivered_at']})"
    dropped = f"{b['dropped_total']}" + ("  <- buffer overflowed; raise buffer.max_size" if b["dropped_total"] else "")
    return [
        _line("readings waiting", f"{b['pending']}{oldest}"),
        _line("unconfirmed", f"{b.get('unconfirmed', 0)} acknowledged by the broker, not yet confirmed by the centre"),
        _line("last confirmed", delivered),
        _line("confirmed", f"{b['delivered_total']} in all ({b['delivered_kept']} kept on the unit)"),
        _line("last seq", str(b["last_seq"])),
        _line("dropped", dropped),
        _line("buffer size", f"{b['used_bytes'] / 1e6:.1f} MB of {b['max_bytes'] / 1e6:.0f} MB"),
    ]


def _data_lines(usage: dict[str, Any] | None) -> list[str]:
    if usage is None:
        return [_line("data usage", "not recorded")]
    from agent.unit.measure.usage import summary_lines  # usage is only ever set when this imports

    return summary_lines(usage)


def status_lines(status: dict[str, Any]) -> list[str]:
    """``collect_status``'s dict as the aligned text a technician reads."""
    agent = status["agent"]
    running = agent["running"]
    uplink = status["uplink"]
    if not uplink["enabled"]:
        uplink_text = "disabled (uplink.enabled = false): readings stay on the unit"
    elif running:
        uplink_text = f"{uplink['state'] or '?'} ({uplink['broker']})"
    else:
        uplink_text = f"not connected: agent not running ({uplink['broker']})"
    gps = status["gps"]
    gps_text = f"{gps['state'] or '?'} ({gps['source']})" if running else f"{gps['source']} (agent not running)"
    lines = [
        _line("device", status["device"]),
        _line("agent", _agent_text(agent)),
        _line("clock", _clock_text(status["clock"], running)),
        _line("gps", gps_text),
        _line("last fix", _fix_text(status["fix"])),
        _line("last signal", _signal_text(status["signal"])),
        _line("uplink", uplink_text),
    ]
    if status["buffer"] is not None:
        lines.extend(_buffer_lines(status["buffer"]))
    lines.extend(_data_lines(status["data"]))
    lines.extend(_line("problem", error) for error in status["errors"])
    return lines
