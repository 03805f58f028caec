"""Positions from gpsd's JSON socket, for units that already run gpsd (e.g. to discipline chrony).

gpsd owns the receiver then, so the serial port is not ours to open.  ``GpsdReader`` connects
to gpsd (``localhost:2947`` by default), asks ``?WATCH={"enable":true,"json":true}`` and turns
each ``TPV`` report into the same ``Fix`` the NMEA reader makes, so the rest of the agent
does not care where positions come from.

- ``mode`` 0/1 is ``"none"`` (no position, even if gpsd repeats an old one), 2 ``"2d"``, 3
  ``"3d"``.
- ``alt_m`` is ``altMSL`` (the geoid height GGA reports), falling back to ``alt`` from older
  gpsd versions; ``speed`` (m/s) becomes km/h, ``track`` the course.
- gpsd may send several TPVs for one epoch (one per sentence that completed it: with a
  MediaTek receiver, after GGA and again after RMC) and the epoch's SKY after them.  The
  reader holds a TPV until one with another time arrives or the burst has been quiet for
  ``BURST_QUIET_S``, merging TPVs of the same time, then adds HDOP and satellites used from
  the device's latest SKY: one fix per epoch, as from the NMEA reader.

``parse_report`` and ``fix_from_tpv`` are pure; a line that is not a gpsd JSON object raises
``GpsdProtocolError`` (counted and skipped by the reader).  A gpsd that cannot be reached or
closes the connection raises ``GpsPortGone``, as a vanished serial port does.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import socket
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

from agent.shared.clock import boottime

from .fix import NO_FIX, Fix, FixMode
from .reader import GpsError, GpsPortGone, fixes_from, pass_raw

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2947
WATCH = b'?WATCH={"enable":true,"json":true}\n'
MAX_REPORT_BYTES = 64 * 1024  # gpsd's largest reports (SKY with 60+ satellites) are a few kB
# gpsd writes an epoch's reports within milliseconds; this much quiet means the burst is over.
BURST_QUIET_S = 0.25
_MODES: dict[int, FixMode] = {0: "none", 1: "none", 2: "2d", 3: "3d"}


class GpsdProtocolError(GpsError):
    """A line from gpsd that is not one of its JSON reports."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``:PORT`` (IPv6 in brackets) -> (host, port); ValueError if bad."""
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"gpsd address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"gpsd address {text!r}: expected [HOST]:PORT")
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(text, port_text)
    return host or DEFAULT_HOST, port


def _port(text: str, value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"gpsd address {text!r}: port must be 1-65535")
    return int(value)


def parse_report(line: bytes | str) -> dict[str, Any]:
    """One gpsd report: a JSON object with a string ``class``."""
    try:
        report = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GpsdProtocolError(f"not JSON: {exc}") from None
    if not isinstance(report, dict) or not isinstance(report.get("class"), str):
        raise GpsdProtocolError("not a gpsd report (expected a JSON object with a 'class')")
    return report


def _number(report: dict[str, Any], key: str) -> float | None:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        moment = dt.datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return None
    return moment.astimezone(dt.timezone.utc)


def sky_figures(report: dict[str, Any]) -> tuple[float | None, int | None]:
    """(HDOP, satellites used) from a SKY report."""
    hdop = _number(report, "hdop")
    used = report.get("uSat")
    if isinstance(used, bool) or not isinstance(used, int):
        satellites = report.get("satellites")
        used = sum(1 for s in satellites if isinstance(s, dict) and s.get("used") is True) \
            if isinstance(satellites, list) else None
    return hdop, used


def fix_from_tpv(report: dict[str, Any], sky: tuple[float | None, int | None] = (None, None),
                 received: float | None = None) -> Fix:
    """The ``Fix`` a TPV report describes; a report without a usable position is ``"none"``."""
    mode_value = report.get("mode")
    mode = _MODES.get(mode_value, "none") if isinstance(mode_value, int) and not isinstance(mode_value, bool) else "none"
    when = _time(report.get("time"))
    lat, lon = _number(report, "lat"), _number(report, "lon")
    if mode == "none" or lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return Fix(when, None, None, None, None, None, None, None, "none", received=received)
    speed = _number(report, "speed")
    alt = _number(report, "altMSL")
    hdop, sats = sky
    return Fix(
        time=when,
        lat=lat,
        lon=lon,
        alt_m=alt if alt is not None else _number(report, "alt"),
        hdop=hdop,
        sats=sats,
        speed_kmh=None if speed is None else speed * 3.6,
        course_deg=_number(report, "track"),
        fix=mode,
        received=received,
    )


@dataclass
class GpsdStats:
    reports: int = 0       # JSON reports read
    bad_reports: int = 0   # lines that were not gpsd JSON (skipped)
    epochs: int = 0        # epochs (one or more TPVs of one time) turned into fixes
    fixes_with_position: int = 0


class GpsdReader:
    """Fixes from gpsd; the same interface as ``GpsReader`` (``read_fix``, ``fixes``, ``current``).

    ``device`` restricts to one of gpsd's devices (a path) when it serves several.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, device: str | None = None,
                 max_age_s: float = 5.0, raw: Callable[[str], None] | None = None,
                 connect_timeout: float = 5.0) -> None:
        self.address = f"{host}:{port}"
        self.device = device
        self.max_age_s = max_age_s
        self.raw = raw
        self.stats = GpsdStats()
        self._pending = b""
        self._ready: deque[Fix] = deque()
        self._sky: dict[str, tuple[float | None, int | None]] = {}
        self._last: Fix | None = None
        self._last_at = 0.0
        self._open: tuple[dict[str, Any], str, float] | None = None  # TPV, device, when received
        try:
            self._sock: socket.socket | None = socket.create_connection((host, port), timeout=connect_timeout)
            self._sock.sendall(WATCH)
        except OSError as exc:
            raise GpsPortGone(f"cannot reach gpsd at {self.address}: {exc.strerror or exc} "
                              "(is gpsd running? systemctl status gpsd)") from None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> "GpsdReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Also offered by GpsReader; gpsd does its own baud hunting.
    likely_wrong_baud = False

    def read_fix(self, timeout: float) -> Fix | None:
        """The next TPV as a fix, or None when none arrives within ``timeout`` seconds."""
        deadline = boottime() + timeout
        while not self._ready:
            now = boottime()
            if self._open is not None and now - self._open[2] >= BURST_QUIET_S:
                self._finish()
                continue
            wait = deadline - now
            if wait <= 0:
                return None
            self._receive(min(wait, BURST_QUIET_S))
        return self._ready.popleft()

    def fixes(self, count: int | None = None, seconds: float | None = None) -> Iterator[Fix]:
        return fixes_from(self.read_fix, count, seconds)

    def current(self) -> Fix:
        if self._last is None or boottime() - self._last_at > self.max_age_s:
            return NO_FIX
        return self._last

    def _receive(self, wait: float) -> None:
        if self._sock is None:
            raise GpsPortGone(f"gpsd connection to {self.address} is closed")
        self._sock.settimeout(wait)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return
        except OSError as exc:
            self.close()
            raise GpsPortGone(f"lost gpsd at {self.address}: {exc.strerror or exc}") from None
        if not data:
            self.close()
            raise GpsPortGone(f"gpsd at {self.address} closed the connection (gpsd restarted?)")
        now = boottime()
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        if len(self._pending) > MAX_REPORT_BYTES:
            self.stats.bad_reports += 1
            self._pending = b""
        for line in lines:
            line = line.strip()
            if line:
                self._line(line, now)

    def _line(self, line: bytes, now: float) -> None:
        pass_raw(self.raw, line.decode("utf-8", errors="backslashreplace"))
        try:
            report = parse_report(line)
        except GpsdProtocolError as exc:
            self.stats.bad_reports += 1
            log.debug("gpsd: skipped %s", exc)
            return
        self.stats.reports += 1
        device = report.get("device") if isinstance(report.get("device"), str) else ""
        if self.device is not None and device != self.device:
            return
        if report["class"] == "SKY":
            self._sky[device] = sky_figures(report)
        elif report["class"] == "TPV":
            held = self._open
            if held is not None and held[1] == device and report.get("time") is not None \
                    and held[0].get("time") == report.get("time"):
                self._open = ({**held[0], **report}, device, held[2])
                return
            self._finish()
            self._open = (report, device, now)

    def _finish(self) -> None:
        if self._open is None:
            return
        report, device, received = self._open
        self._open = None
        fix = fix_from_tpv(report, self._sky.get(device, (None, None)), received=received)
        self.stats.epochs += 1
        if fix.fix != "none":
            self.stats.fixes_with_position += 1
        self._last, self._last_at = fix, received
        self._ready.append(fix)
