"""NMEA 0183 sentences as typed values.

``parse_sentence`` wraps pynmea2 for framing and checksum, then converts the fields itself,
because pynmea2 accepts sentences without a checksum, keeps numbers as strings and turns an
empty position into 0°, 0°. Here a checksum is required, numbers are ``float``/``int``, and a
field the receiver left empty is ``None``.

Only the position-relevant sentence types are accepted (GGA, RMC, GNS, GLL, GSA, VTG, GSV),
from the talkers in ``TALKERS``. Each type has a minimum field count; shorter sentences are
rejected rather than guessed at. Speeds are converted from knots to km/h.

A position that was not measured is not a fix: RMC/GLL status V, the NMEA 2.3 mode indicator
N (not valid), M (manual input) or S (simulator), and GGA quality 0, 7 (manual) or 8
(simulator) all say so (a Garmin in simulator mode sends a full position with quality 8 and
mode S).

The one exception raised is ``NmeaError`` (a ``ValueError``); its message says what was wrong.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Callable, Union

import pynmea2

KNOT_KMH = 1.852

# Satellite systems: GPS, combined GNSS, GLONASS, Galileo, BeiDou (GB and the older BD),
# QZSS (GQ in NMEA 4.11; receivers such as the Telit SL869 send QZ).  IN is "integrated
# navigation": a sonar or chart plotter passing on its GPS's fix (Humminbird sends every
# sentence, positions included, as IN).
TALKERS = frozenset({"GP", "GN", "GL", "GA", "GB", "BD", "GQ", "QZ", "IN"})

# NMEA 2.3+ mode indicator letters that mean the position was not measured: N not valid,
# M manual input, S simulator.  (E, estimated by dead reckoning, is still the receiver's own.)
UNMEASURED_MODES = frozenset("NMS")
# GGA quality: 0 no fix, 7 manual input, 8 simulator.
UNMEASURED_QUALITIES = frozenset({0, 7, 8})


class NmeaError(ValueError):
    """A line that is not a usable NMEA sentence (framing, checksum, type or field content)."""


@dataclass(frozen=True)
class Gga:
    """Fix data: ``quality`` 0 (no fix), 7 (manual) or 8 (simulator) means no measured
    position (``has_fix``); ``alt_m`` is above mean sea level."""

    talker: str
    time: dt.time | None
    lat: float | None
    lon: float | None
    quality: int | None
    sats: int | None
    hdop: float | None
    alt_m: float | None

    @property
    def has_fix(self) -> bool:
        return self.quality not in UNMEASURED_QUALITIES


@dataclass(frozen=True)
class Rmc:
    """Recommended minimum: ``status_valid`` is False for status V (or a mode indicator N,
    M or S)."""

    talker: str
    time: dt.time | None
    date: dt.date | None
    status_valid: bool
    lat: float | None
    lon: float | None
    speed_kmh: float | None
    course_deg: float | None


@dataclass(frozen=True)
class Gll:
    """Geographic position: ``status_valid`` is False for status V (or a mode indicator N, M
    or S).  Some receivers (SiRF, Garmin, Magellan, Humminbird) send it alone in some epochs."""

    talker: str
    time: dt.time | None
    status_valid: bool
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class Gns:
    """Multi-constellation fix data; ``mode`` has one letter per system; none measured
    (each ``N``, ``M`` or ``S``) = no fix."""

    talker: str
    time: dt.time | None
    lat: float | None
    lon: float | None
    mode: str
    sats: int | None
    hdop: float | None
    alt_m: float | None

    @property
    def has_fix(self) -> bool:
        return any(c not in UNMEASURED_MODES for c in self.mode)


@dataclass(frozen=True)
class Gsa:
    """DOP and active satellites: ``mode`` 1 = no fix, 2 = 2D, 3 = 3D (None if empty)."""

    talker: str
    mode: int | None
    pdop: float | None
    hdop: float | None
    vdop: float | None


@dataclass(frozen=True)
class Vtg:
    """Course and speed over ground."""

    talker: str
    speed_kmh: float | None
    course_deg: float | None


@dataclass(frozen=True)
class Gsv:
    """Satellites in view, as reported by one message of a GSV group."""

    talker: str
    sats_in_view: int | None


Sentence = Union[Gga, Rmc, Gll, Gns, Gsa, Vtg, Gsv]


def _float(value: str, name: str) -> float | None:
    if value == "":
        return None
    try:
        out = float(value)
    except ValueError:
        raise NmeaError(f"{name} is not a number: {value!r}") from None
    if not math.isfinite(out):
        raise NmeaError(f"{name} is not a finite number: {value!r}")
    return out


def _int(value: str, name: str) -> int | None:
    if value == "":
        return None
    if not value.isdigit() or not value.isascii():
        raise NmeaError(f"{name} is not a whole number: {value!r}")
    return int(value)


def _time(value: str) -> dt.time | None:
    if value == "":
        return None
    head, _, frac = value.partition(".")
    if len(head) != 6 or not head.isdigit() or not head.isascii() or (frac and not frac.isdigit()):
        raise NmeaError(f"UTC time is not hhmmss[.sss]: {value!r}")
    hh, mm, ss = int(head[:2]), int(head[2:4]), int(head[4:6])
    if hh > 23 or mm > 59 or ss > 59:
        raise NmeaError(f"UTC time out of range: {value!r}")
    micro = int((frac + "000000")[:6]) if frac else 0
    return dt.time(hh, mm, ss, micro, tzinfo=dt.timezone.utc)


def _date(value: str) -> dt.date | None:
    if value == "":
        return None
    if len(value) != 6 or not value.isdigit() or not value.isascii():
        raise NmeaError(f"date is not ddmmyy: {value!r}")
    dd, mm, yy = int(value[:2]), int(value[2:4]), int(value[4:6])
    # Two-digit years: NMEA receivers predate 1980 only in theory.
    year = 2000 + yy if yy < 80 else 1900 + yy
    try:
        return dt.date(year, mm, dd)
    except ValueError:
        raise NmeaError(f"date out of range: {value!r}") from None


def _coord(value: str, hemi: str, *, lat: bool) -> float | None:
    name = "latitude" if lat else "longitude"
    if value == "" and hemi == "":
        return None
    if value == "" or hemi == "":
        raise NmeaError(f"{name} has a value or a hemisphere but not both: {value!r},{hemi!r}")
    if hemi not in ("NS" if lat else "EW"):
        raise NmeaError(f"{name} hemisphere is not {'N/S' if lat else 'E/W'}: {hemi!r}")
    deg_digits = 2 if lat else 3
    head, _, frac = value.partition(".")
    if len(head) != deg_digits + 2 or not head.isdigit() or not head.isascii() or (
        frac and (not frac.isdigit() or not frac.isascii())
    ):
        raise NmeaError(f"{name} is not {'dd' if lat else 'ddd'}mm.mmmm: {value!r}")
    degrees = int(head[:deg_digits])
    minutes = float(value[deg_digits:])
    if minutes >= 60.0:
        raise NmeaError(f"{name} minutes out of range: {value!r}")
    out = degrees + minutes / 60.0
    if out > (90.0 if lat else 180.0):
        raise NmeaError(f"{name} out of range: {value!r}")
    return -out if hemi in "SW" else out


def _position(f: list[str], i: int) -> tuple[float | None, float | None]:
    lat = _coord(f[i], f[i + 1], lat=True)
    lon = _coord(f[i + 2], f[i + 3], lat=False)
    if (lat is None) != (lon is None):
        raise NmeaError("position has a latitude or a longitude but not both")
    return lat, lon


def _knots(value: str, name: str) -> float | None:
    knots = _float(value, name)
    return None if knots is None else knots * KNOT_KMH


def _gga(t: str, f: list[str]) -> Gga:
    lat, lon = _position(f, 1)
    return Gga(t, _time(f[0]), lat, lon, _int(f[5], "GGA quality"), _int(f[6], "GGA satellites"),
               _float(f[7], "GGA HDOP"), _float(f[8], "GGA altitude"))


def _status_valid(f: list[str], status: int, mode: int, kind: str) -> bool:
    if f[status] not in ("A", "V", ""):
        raise NmeaError(f"{kind} status is not A or V: {f[status]!r}")
    # NMEA 2.3+ adds a mode indicator; N, M or S (nothing measured) overrides a stray A.
    return f[status] == "A" and not (len(f) > mode and f[mode] in UNMEASURED_MODES)


def _rmc(t: str, f: list[str]) -> Rmc:
    valid = _status_valid(f, 1, 11, "RMC")
    lat, lon = _position(f, 2)
    return Rmc(t, _time(f[0]), _date(f[8]), valid, lat, lon,
               _knots(f[6], "RMC speed"), _float(f[7], "RMC course"))


def _gll(t: str, f: list[str]) -> Gll:
    valid = _status_valid(f, 5, 6, "GLL")
    lat, lon = _position(f, 0)
    return Gll(t, _time(f[4]), valid, lat, lon)


def _gns(t: str, f: list[str]) -> Gns:
    lat, lon = _position(f, 1)
    mode = f[5]
    if not mode.isascii() or not mode.isalpha():
        if mode:
            raise NmeaError(f"GNS mode is not letters: {mode!r}")
    return Gns(t, _time(f[0]), lat, lon, mode, _int(f[6], "GNS satellites"),
               _float(f[7], "GNS HDOP"), _float(f[8], "GNS altitude"))


def _gsa(t: str, f: list[str]) -> Gsa:
    mode = _int(f[1], "GSA fix type")
    if mode is not None and mode not in (1, 2, 3):
        raise NmeaError(f"GSA fix type is not 1, 2 or 3: {f[1]!r}")
    return Gsa(t, mode, _float(f[14], "GSA PDOP"), _float(f[15], "GSA HDOP"), _float(f[16], "GSA VDOP"))


def _vtg(t: str, f: list[str]) -> Vtg:
    speed = _float(f[6], "VTG speed km/h")
    if speed is None:
        speed = _knots(f[4], "VTG speed knots")
    return Vtg(t, speed, _float(f[0], "VTG course"))


def _gsv(t: str, f: list[str]) -> Gsv:
    return Gsv(t, _int(f[2], "GSV satellites in view"))


# (minimum data fields after the address, converter)
_TABLE: dict[str, tuple[int, Callable[[str, list[str]], Sentence]]] = {
    "GGA": (9, _gga),
    "RMC": (9, _rmc),
    # Before NMEA 2.0, GLL had no time and no status: without a status it cannot say
    # whether the position is valid, so it is too short.
    "GLL": (6, _gll),
    "GNS": (9, _gns),
    "GSA": (17, _gsa),
    "VTG": (8, _vtg),
    "GSV": (3, _gsv),
}

SENTENCE_TYPES = frozenset(_TABLE)


def parse_sentence(line: str) -> Sentence:
    """Parse one line of receiver output (trailing CR/LF allowed) into a sentence value.

    Raises ``NmeaError`` for a missing or wrong checksum, an unknown talker or sentence type,
    too few fields, or a field that cannot be read.
    """
    text = line.strip()
    if not text.startswith("$"):
        raise NmeaError(f"not an NMEA sentence (no leading '$'): {text[:40]!r}")
    if not text.isascii() or not text.isprintable():
        raise NmeaError(f"sentence has non-printable or non-ASCII characters: {text[:40]!r}")
    if "*" not in text:
        raise NmeaError(f"sentence has no checksum: {text[:40]!r}")
    try:
        msg = pynmea2.parse(text, check=True)
    except pynmea2.ChecksumError:
        raise NmeaError(f"bad checksum: {text[:80]!r}") from None
    except ValueError:
        # pynmea2.ParseError is a ValueError; its text repeats the line, so say it once.
        raise NmeaError(f"cannot parse sentence: {text[:80]!r}") from None
    talker = getattr(msg, "talker", None)
    kind = getattr(msg, "sentence_type", None)
    if talker not in TALKERS:
        raise NmeaError(f"talker not supported: {text[:40]!r}")
    if kind not in _TABLE:
        raise NmeaError(f"sentence type not supported: {talker}{kind}")
    min_fields, convert = _TABLE[kind]
    fields = [str(x) for x in msg.data]
    if len(fields) < min_fields:
        raise NmeaError(f"{talker}{kind} has {len(fields)} fields, needs at least {min_fields}")
    return convert(talker, fields)
