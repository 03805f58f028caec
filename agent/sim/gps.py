"""Simulated GPS receivers on a pseudo-terminal, streaming NMEA as real ones do.

The host opens ``gps.port`` with pyserial exactly like ``/dev/ttyACM0``.  ``port`` is a
symlink in a work folder pointing at the pseudo-terminal, so the receiver can vanish (USB
re-enumeration: pty closed, link removed) and come back at the same path.

:class:`SimulatedGps` walks a boat along a :class:`~agent.sim.route.Route` and writes one
epoch of sentences per tick, in the order and number formats of one of three receivers:

* ``ublox`` (NEO-M8/M9, NMEA 4.10): GNRMC, GNVTG, GNGGA, GNGSA, GPGSV...
* ``mt3339`` (Adafruit Ultimate GPS): GPGGA, GPGSA, GPRMC, GPVTG
* ``quectel`` (EG25-G GNSS): GPGSV..., GPGGA, GPRMC, GPGSA, GPVTG, GNGNS

Inside a ``no_sky`` stretch (canopy over the riverbank) the receiver keeps talking but has
no fix, and says so the way that receiver does: u-blox and MediaTek keep the time and date
and empty the position; the Quectel sends GGA and RMC with no time at all and only GNS
carries the time.

:class:`ReplayGps` plays a raw capture file back into a pseudo-terminal at its own pace.

Both stream continuously like a real receiver: bytes nobody reads pile up in the pty and
are dropped when it is full, and pyserial discards whatever was buffered before it opened
the port.  Misbehaviour on demand: :meth:`inject` (binary noise such as a UBX frame),
:meth:`silence`, :meth:`vanish` / :meth:`reappear`, and ``baud_noise`` (garbled bytes).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import random
import select
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agent.sim.pty import close_linked_pty, open_linked_pty
from agent.sim.route import Route, RoutePoint

log = logging.getLogger(__name__)

STYLES = ("ublox", "mt3339", "quectel")
KNOT_KMH = 1.852
_M_PER_DEG_LAT = 111_320.0
# Probability that a sentence is garbled when ``baud_noise`` is on.
BAUD_NOISE_RATE = 0.05
# GPS PRNs with an elevation/azimuth each: a fixed sky, good enough for GSV and GSA.
_SKY: tuple[tuple[int, int, int], ...] = (
    (2, 67, 12), (5, 48, 201), (6, 22, 318), (9, 81, 95), (12, 35, 160), (13, 15, 40),
    (15, 55, 270), (17, 29, 128), (19, 41, 350), (20, 12, 222), (24, 60, 300), (25, 8, 75),
    (29, 19, 180), (30, 33, 15),
)


def checksum(body: str) -> str:
    """The NMEA checksum of the text between ``$`` and ``*``, as two hex digits."""
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return f"{value:02X}"


def sentence(body: str) -> bytes:
    """``body`` (without ``$``) framed as ``$body*CS\\r\\n``."""
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def _coord(value: float, decimals: int, *, lat: bool) -> tuple[str, str]:
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    magnitude = abs(value)
    degrees = int(magnitude)
    minutes = round((magnitude - degrees) * 60.0, decimals)
    if minutes >= 60.0:  # rounding up to a whole degree
        degrees, minutes = degrees + 1, 0.0
    width = 3 + decimals if decimals else 2
    return f"{degrees:0{2 if lat else 3}d}{minutes:0{width}.{decimals}f}", hemi


class _PtyDevice:
    """A serial device on a pseudo-terminal behind a stable symlink, fed by one thread."""

    def __init__(self, workdir: str | Path | None, name: str, prefix: str) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix) if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = str(self.workdir / name)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._master: int | None = None
        self._slave: int | None = None
        self._pty_name: str | None = None
        self._silent_until = 0.0
        self._thread: threading.Thread | None = None
        self.bytes_written = 0
        self.bytes_dropped = 0
        self._open_pty()

    # -- what a test or demo controls -------------------------------------------------------

    @property
    def present(self) -> bool:
        """The port exists (not vanished)."""
        return self._master is not None

    @property
    def pty_name(self) -> str | None:
        return self._pty_name

    @property
    def silent(self) -> bool:
        return time.monotonic() < self._silent_until

    def inject(self, data: bytes) -> None:
        """Put ``data`` on the line now (a UBX frame, line noise), even while silent."""
        with self._lock:
            self._write(data)

    def silence(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a receiver busy or hung); the clock keeps running."""
        with self._lock:
            self._silent_until = time.monotonic() + seconds

    def vanish(self) -> None:
        """The port disappears, as on USB re-enumeration: pty closed, symlink removed."""
        with self._lock:
            self._close_pty()

    def reappear(self) -> None:
        """The port is back at the same path (a new pseudo-terminal)."""
        with self._lock:
            if self._master is None and not self._stop.is_set():
                self._open_pty()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout=5)
        with self._lock:
            self._close_pty()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pseudo-terminal ---------------------------------------------------------------

    def _start_thread(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=name, daemon=True)
        self._thread.start()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must show, not silently turn the receiver mute
            log.exception("simulated GPS failed")

    def _run(self) -> None:
        raise NotImplementedError

    def _open_pty(self) -> None:
        self._master, self._slave, self._pty_name = open_linked_pty(self.port)
        log.debug("simulated GPS on %s -> %s", self.port, self._pty_name)

    def _close_pty(self) -> None:
        close_linked_pty(self._master, self._slave, self.port)
        self._master = self._slave = None

    def _write(self, data: bytes) -> int:
        """Write what fits now; a receiver has no flow control, so the rest is lost."""
        view = memoryview(data)
        while self._master is not None and view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                break
            except OSError as exc:
                log.debug("simulated GPS write failed: %s", exc)
                break
            self.bytes_written += n
            view = view[n:]
        self.bytes_dropped += len(view)
        return len(data) - len(view)


class SimulatedGps(_PtyDevice):
    """A receiver on a boat moving along ``route`` at ``speed_kmh``; ``port`` is its path.

    Epoch ``n`` is written ``n / rate_hz`` wall seconds after start and describes simulated
    time ``start_time + n * time_scale / rate_hz``; the boat is then ``speed * elapsed``
    metres along the route (clamped at its end, where it stops).  Epochs that fall in a
    :meth:`silence` or while the port is gone are skipped, not delayed.  ``no_sky`` lists
    ``(start_m, end_m)`` stretches of route without a fix.  ``seed`` fixes the small
    position jitter, HDOP, satellite count and altitude.
    """

    def __init__(
        self,
        route: Route,
        speed_kmh: float,
        *,
        rate_hz: float = 1.0,
        style: str = "ublox",
        no_sky: Sequence[tuple[float, float]] = (),
        start_time: dt.datetime | None = None,
        time_scale: float = 1.0,
        workdir: str | Path | None = None,
        name: str = "ttyACM0",
        baud_noise: bool = False,
        seed: int | None = 0,
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
        if rate_hz <= 0 or time_scale <= 0 or speed_kmh < 0:
            raise ValueError("rate_hz and time_scale must be positive and speed_kmh not negative")
        start = dt.datetime.now(dt.UTC) if start_time is None else start_time
        if start.tzinfo is None:
            raise ValueError("start_time must be timezone-aware (UTC)")
        self.route = route
        self.speed_kmh = speed_kmh
        self.rate_hz = rate_hz
        self.style = style
        self.no_sky = tuple((float(a), float(b)) for a, b in no_sky)
        self.start_time = start.astimezone(dt.UTC)
        self.time_scale = time_scale
        self.baud_noise = baud_noise
        self.epochs_sent = 0
        self.sentences_garbled = 0
        self._rng = random.Random(seed)
        super().__init__(workdir, name, "blankspot-gps-")
        self._start_thread(f"sim-gps-{name}")

    @classmethod
    def replay(cls, path: str | Path, pace: float = 1.0, **options: object) -> ReplayGps:
        """A :class:`ReplayGps` of the capture at ``path``."""
        return ReplayGps(path, pace=pace, **options)  # type: ignore[arg-type]

    # -- where the boat is ------------------------------------------------------------------

    def distance_at(self, when: dt.datetime) -> float:
        """Metres along the route at simulated time ``when`` (clamped to the route)."""
        elapsed = (when - self.start_time).total_seconds()
        return min(max(self.speed_kmh / 3.6 * elapsed, 0.0), self.route.length_m)

    def under_canopy(self, distance_m: float) -> bool:
        """``distance_m`` lies in one of the ``no_sky`` stretches."""
        return any(a <= distance_m <= b for a, b in self.no_sky)

    # -- the receiver's thread -------------------------------------------------------------

    def _run(self) -> None:
        t0 = time.monotonic()
        last = -1
        while not self._stop.is_set():
            n = int((time.monotonic() - t0) * self.rate_hz + 1e-9)
            if n > last:
                last = n
                with self._lock:
                    if self._master is not None and not self.silent:
                        self._write(self._garble(self.epoch(n)))
                        self.epochs_sent += 1
            self._stop.wait(max(0.0, t0 + (last + 1) / self.rate_hz - time.monotonic()))

    def epoch(self, n: int) -> list[bytes]:
        """The sentences of epoch ``n`` (public so a demo can print what the port will carry)."""
        when = self.start_time + dt.timedelta(seconds=n * self.time_scale / self.rate_hz)
        distance = self.distance_at(when)
        point = self.route.at(distance)
        moving = self.speed_kmh > 0 and distance < self.route.length_m
        fix = not self.under_canopy(distance)
        build = {"ublox": self._ublox, "mt3339": self._mt3339, "quectel": self._quectel}[self.style]
        return build(when, self._jitter(point), self.speed_kmh if moving else 0.0, fix)

    def _jitter(self, point: RoutePoint) -> RoutePoint:
        # A metre or two of scatter, as a real receiver shows even on a still boat.
        north, east = self._rng.gauss(0.0, 1.0), self._rng.gauss(0.0, 1.0)
        lat = point.lat + north / _M_PER_DEG_LAT
        lon = point.lon + east / (_M_PER_DEG_LAT * max(0.01, math.cos(math.radians(point.lat))))
        return RoutePoint(lat, lon, point.course_deg, point.distance_m, point.leg)

    def _quality(self) -> tuple[int, float, float]:
        sats = self._rng.randint(7, 12)
        hdop = round(self._rng.uniform(0.8, 1.5), 2)
        alt = round(self._rng.uniform(10.0, 15.0), 1)
        return sats, hdop, alt

    def _garble(self, lines: list[bytes]) -> bytes:
        if not self.baud_noise:
            return b"".join(lines)
        out = []
        for line in lines:
            if self._rng.random() < BAUD_NOISE_RATE:
                # A mis-sampled byte: the high bit set inside the sentence, never in its CR/LF.
                chars = bytearray(line)
                i = self._rng.randrange(1, len(chars) - 2)
                chars[i] |= 0x80
                line = bytes(chars)
                self.sentences_garbled += 1
            out.append(line)
        return b"".join(out)

    def _gsv(self, talker: str, sats: int, signal_id: bool) -> list[bytes]:
        in_view = _SKY[: min(len(_SKY), sats + 2)]
        groups = [in_view[i:i + 4] for i in range(0, len(in_view), 4)]
        out = []
        for number, group in enumerate(groups, start=1):
            fields = [f"{talker}GSV", str(len(groups)), str(number), f"{len(in_view):02d}"]
            for k, (prn, elev, azim) in enumerate(group):
                snr = f"{20 + (prn * 7 + k) % 25:02d}" if (number - 1) * 4 + k < sats else ""
                fields += [f"{prn:02d}", f"{elev:02d}", f"{azim:03d}", snr]
            if signal_id:
                fields.append("1")
            out.append(sentence(",".join(fields)))
        return out

    @staticmethod
    def _prns(sats: int) -> list[str]:
        used = [f"{prn:02d}" for prn, _, _ in _SKY[: min(sats, 12)]]
        return used + [""] * (12 - len(used))

    def _ublox(self, when: dt.datetime, p: RoutePoint, speed: float, fix: bool) -> list[bytes]:
        hms = when.strftime("%H%M%S") + f".{when.microsecond // 10000:02d}"
        date = when.strftime("%d%m%y")
        sats, hdop, alt = self._quality()
        gsv = self._gsv("GP", sats, signal_id=True)
        if not fix:
            return [
                sentence(f"GNRMC,{hms},V,,,,,,,{date},,,N,V"),
                sentence("GNVTG,,,,,,,,,N"),
                sentence(f"GNGGA,{hms},,,,,0,00,99.99,,,,,,"),
                sentence("GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1"),
                *gsv,
            ]
        lat, ns = _coord(p.lat, 5, lat=True)
        lon, ew = _coord(p.lon, 5, lat=False)
        knots = f"{speed / KNOT_KMH:.3f}"
        course = f"{p.course_deg:.2f}" if speed > 0 else ""
        return [
            sentence(f"GNRMC,{hms},A,{lat},{ns},{lon},{ew},{knots},{course},{date},,,A,V"),
            sentence(f"GNVTG,{course},T,,M,{knots},N,{speed:.3f},K,A"),
            sentence(f"GNGGA,{hms},{lat},{ns},{lon},{ew},1,{sats:02d},{hdop:.2f},{alt:.1f},M,64.9,M,,"),
            sentence(f"GNGSA,A,3,{','.join(self._prns(sats))},{hdop * 1.6:.2f},{hdop:.2f},{hdop * 1.3:.2f},1"),
            *gsv,
        ]

    def _mt3339(self, when: dt.datetime, p: RoutePoint, speed: float, fix: bool) -> list[bytes]:
        hms = when.strftime("%H%M%S") + f".{when.microsecond // 1000:03d}"
        date = when.strftime("%d%m%y")
        sats, hdop, alt = self._quality()
        if not fix:
            return [
                sentence(f"GPGGA,{hms},,,,,0,0,,,M,,M,,"),
                sentence("GPGSA,A,1,,,,,,,,,,,,,,,"),
                sentence(f"GPRMC,{hms},V,,,,,0.00,0.00,{date},,,N"),
                sentence("GPVTG,0.00,T,,M,0.00,N,0.00,K,N"),
            ]
        lat, ns = _coord(p.lat, 4, lat=True)
        lon, ew = _coord(p.lon, 4, lat=False)
        knots = f"{speed / KNOT_KMH:.2f}"
        course = f"{p.course_deg:.2f}"
        return [
            sentence(f"GPGGA,{hms},{lat},{ns},{lon},{ew},1,{sats:02d},{hdop:.2f},{alt:.1f},M,64.9,M,,"),
            sentence(f"GPGSA,A,3,{','.join(self._prns(sats))},{hdop * 1.6:.2f},{hdop:.2f},{hdop * 1.3:.2f}"),
            sentence(f"GPRMC,{hms},A,{lat},{ns},{lon},{ew},{knots},{course},{date},,,A"),
            sentence(f"GPVTG,{course},T,,M,{knots},N,{speed:.2f},K,A"),
        ]

    def _quectel(self, when: dt.datetime, p: RoutePoint, speed: float, fix: bool) -> list[bytes]:
        hms = when.strftime("%H%M%S") + f".{when.microsecond // 10000:02d}"
        date = when.strftime("%d%m%y")
        sats, hdop, alt = self._quality()
        gsv = self._gsv("GP", sats, signal_id=True)
        if not fix:
            return [
                *gsv,
                sentence("GPGGA,,,,,,0,,,,,,,,"),
                sentence("GPRMC,,V,,,,,,,,,,N"),
                sentence("GPGSA,A,1,,,,,,,,,,,,,,,,"),
                sentence("GPVTG,,T,,M,,N,,K,N"),
                sentence(f"GNGNS,{hms},,,,,NNN,,,,,,"),
            ]
        lat, ns = _coord(p.lat, 6, lat=True)
        lon, ew = _coord(p.lon, 6, lat=False)
        knots = f"{speed / KNOT_KMH:.1f}"
        course = f"{p.course_deg:.1f}"
        return [
            *gsv,
            sentence(f"GPGGA,{hms},{lat},{ns},{lon},{ew},1,{sats:02d},{hdop:.1f},{alt:.1f},M,64.9,M,,"),
            sentence(f"GPRMC,{hms},A,{lat},{ns},{lon},{ew},{knots},{course},{date},,,A,V"),
            sentence(f"GPGSA,A,3,{','.join(self._prns(sats))},{hdop * 1.6:.1f},{hdop:.1f},{hdop * 1.3:.1f},1"),
            sentence(f"GPVTG,{course},T,,M,{knots},N,{speed:.1f},K,A"),
            sentence(f"GNGNS,{hms},{lat},{ns},{lon},{ew},AAN,{sats:02d},{hdop:.1f},{alt:.1f},64.9,,,V"),
        ]


def capture_epochs(lines: Sequence[bytes]) -> list[list[bytes]]:
    """Group capture lines into epochs: a GGA or RMC with a new UTC time starts one."""
    epochs: list[list[bytes]] = []
    current: list[bytes] = []
    stamp: bytes | None = None
    for line in lines:
        t = _stamp(line)
        if t is not None and stamp is not None and t != stamp and current:
            epochs.append(current)
            current = []
            stamp = None
        if t is not None and stamp is None:
            stamp = t
        current.append(line)
    if current:
        epochs.append(current)
    return epochs


def _stamp(line: bytes) -> bytes | None:
    if not line.startswith(b"$") or line[3:6] not in (b"GGA", b"RMC"):
        return None
    fields = line.split(b"*", 1)[0].split(b",")
    return fields[1] if len(fields) > 1 and fields[1] else None


def read_capture(path: str | Path) -> list[bytes]:
    """The lines of a raw capture, without line ends, blank lines or ``#`` comments."""
    out = []
    for raw in Path(path).read_bytes().split(b"\n"):
        line = raw.rstrip(b"\r")
        if line.strip() and not line.startswith(b"#"):
            out.append(line)
    return out


class ReplayGps(_PtyDevice):
    """Plays the capture at ``path`` into a pseudo-terminal, one epoch every ``1 / pace`` s.

    ``pace=0`` writes as fast as the reader takes it.  Unlike :class:`SimulatedGps`, a
    replay waits for room in the pty rather than dropping bytes, so a reader gets the whole
    file (except during :meth:`silence`, where epochs are skipped).  With
    ``autostart=False`` nothing is written until :meth:`start`, which lets a test open the
    port first (pyserial discards input buffered before it opened).  ``finished`` is set
    once the last epoch is written; ``loop`` starts the file over instead.
    """

    def __init__(
        self,
        path: str | Path,
        pace: float = 1.0,
        *,
        workdir: str | Path | None = None,
        name: str = "ttyACM0",
        autostart: bool = True,
        loop: bool = False,
    ) -> None:
        if pace < 0:
            raise ValueError("pace must be 0 (as fast as possible) or positive")
        self.path = Path(path)
        self.pace = pace
        self.loop = loop
        self.epochs = capture_epochs(read_capture(self.path))
        self.epochs_sent = 0
        self.finished = threading.Event()
        super().__init__(workdir, name, "blankspot-gps-")
        if autostart:
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._start_thread(f"sim-gps-replay-{Path(self.port).name}")

    def _run(self) -> None:
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            if self.pace > 0 and self._stop.wait(max(0.0, t0 + n / self.pace - time.monotonic())):
                break
            index = n % len(self.epochs) if self.epochs else 0
            if self.epochs and not self.silent:
                self._send(b"".join(line + b"\r\n" for line in self.epochs[index]))
                self.epochs_sent += 1
            n += 1
            if not self.loop and n >= len(self.epochs):
                break
        self.finished.set()

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            with self._lock:
                master = self._master
                if master is None:
                    return  # the port vanished: the rest of this epoch is lost
                written = self._write(bytes(view))
                # _write counted what did not fit as dropped; here it is only delayed.
                self.bytes_dropped -= len(view) - written
            view = view[written:]
            if view:
                try:
                    select.select([], [master], [], 0.1)
                except (OSError, ValueError):
                    pass
