"""The signed heartbeat SMS: a unit's state in one text message, for when its data link is down.

A unit whose mobile data is dead but whose SMS still works sends the centre this message; the
centre's SMS gateway reads it from its own modem.  It fits one SMS of 160 GSM 7-bit
characters, uses only characters every operator carries unchanged (letters, digits, space,
``+-.:;,=/``), and is signed with the unit's key.  docs/sms-heartbeat.md is the integrators'
description; this docstring is the exact format.

The format, version 1, ASCII, single spaces between tokens::

    BS1 <device> <counter> t=<time> [p=<lat>,<lon>] b=<backlog> [o=<oldest>] s=<last_seq>
        [r=<rat>] [n=<operator>] [l=<level_dbm>] u=<uptime_s> w=<reason> <sig>

    BS1          the version: "BS" and 1
    <device>     the unit id, 1..32 of A-Z a-z 0-9 . - /   ("_" of an id is sent as "/")
    <counter>    base 36 (0-9 then A-Z, upper case, no leading zeros), 0..2**32-1
    t=           the unit's time, seconds since 2020-01-01T00:00:00Z, base 36 (2020..2099)
    p=           latitude and longitude in units of 0.00001 degree, base 36 with "-" for
                 negative; left out when the unit has no fix
    b=           readings waiting to be sent, base 36, 0..2**32-1
    o=           the oldest of them, as t=; left out when none waits
    s=           the seq of the last reading buffered, base 36, 0..2**40-1
    r=           gsm, umts, lte, nr or none; left out when not known
    n=           the operator's MCC and MNC, 5 or 6 digits; left out when not known
    l=           the level in dBm (RSRP on LTE/NR, RSSI on GSM/UMTS), decimal, -200..0
    u=           seconds since the unit's boot, base 36, 0..2**32-1
    w=           why data is down: nodata, quota, broker, login, nosignal, unknown
    <sig>        the first 12 characters of the RFC 4648 base32 of
                 HMAC-SHA256(key, every character before the space that precedes <sig>)

Fields come in the order above.  The longest message (a 32-character id, every field at its
widest) is 158 characters: tests/test_heartbeat.py proves every valid :class:`Heartbeat`
fits 160.  12 base32 characters are 60 bits: a forger who cannot read the key must send about
2**59 messages, each a paid SMS, to have one accepted; 12 is the most the message keeps room
for beside a 32-character id with a margin of two.

Replay: a captured heartbeat sent again has a counter the centre has already seen, and
:func:`accept_counter` refuses it.  So a unit must never use a counter twice: it persists the
last one it sent before sending (the caller's job), and after a reinstall, which loses that
file, it starts from :func:`counter_from_time` (seconds since 2020), larger than any counter
it can have used unless it sent more than one heartbeat a second.

Pure; every refusal is a :class:`HeartbeatError` with a ``reason``; a key file that is not a
key is a :class:`HeartbeatKeyError`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "MAX_LENGTH", "REASONS", "RATS", "SIGNATURE_CHARS", "VERSION", "Heartbeat", "HeartbeatError", "HeartbeatKeyError",
    "accept_counter", "counter_from_time", "decode_heartbeat", "encode_heartbeat", "new_key", "read_key",
]

VERSION = "BS1"
MAX_LENGTH = 160
SIGNATURE_CHARS = 12
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
LAST_TIME = datetime(2099, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
MAX_COUNT = 2**32 - 1
MAX_SEQ = 2**40 - 1
KEY_BYTES = 32

# Why the unit's data is down, and the word the message carries for it (no "_": some
# operators' service centres lose it).
REASONS: dict[str, str] = {
    "no_data_service": "nodata",
    "quota_exhausted": "quota",
    "broker_unreachable": "broker",
    "login_refused": "login",
    "no_signal": "nosignal",
    "unknown": "unknown",
}
RATS = ("gsm", "umts", "lte", "nr", "none")
ERROR_REASONS = ("not_heartbeat", "version", "malformed", "truncated", "unknown_unit", "bad_signature")

_DIGITS36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE36 = re.compile(r"-?(?:0|[1-9A-Z][0-9A-Z]{0,11})", re.ASCII)  # 12 digits hold more than any field
_DEVICE = re.compile(r"[A-Za-z0-9._-]{1,32}", re.ASCII)
_SENT_DEVICE = re.compile(r"[A-Za-z0-9./-]{1,32}", re.ASCII)
_OPERATOR = re.compile(r"[0-9]{5,6}", re.ASCII)
_LEVEL = re.compile(r"-?(?:0|[1-9][0-9]{0,2})", re.ASCII)
_VERSION = re.compile(r"BS([0-9]+)(?= |$)", re.ASCII)
_SIGNATURE = re.compile(rf"[A-Z2-7]{{{SIGNATURE_CHARS}}}", re.ASCII)
_HEX_KEY = re.compile(r"(?:[0-9A-Fa-f]{2}){16,64}", re.ASCII)
_WORD_REASON = {word: reason for reason, word in REASONS.items()}
_KEYS = ("t", "p", "b", "o", "s", "r", "n", "l", "u", "w")
_REQUIRED = frozenset(("t", "b", "s", "u", "w"))


class HeartbeatError(ValueError):
    """A heartbeat refused; ``reason`` says why, one of :data:`ERROR_REASONS`:

    - ``not_heartbeat``: not one of ours at all (an operator's quota message, say); the caller
      keeps those as ordinary messages;
    - ``version``: a heartbeat of a format version this code does not read;
    - ``malformed``: ours, but a field is not what the format says (also: a :class:`Heartbeat`
      that cannot be encoded);
    - ``truncated``: ours, but cut before its signature ends;
    - ``unknown_unit``: no key for the unit it names;
    - ``bad_signature``: the signature does not match: altered, or not signed with that key.
    """

    def __init__(self, reason: str, message: str) -> None:
        assert reason in ERROR_REASONS, reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class HeartbeatKeyError(ValueError):
    """A unit's key file does not hold a key."""


@dataclass(frozen=True)
class Heartbeat:
    """A unit's state as one heartbeat says it.  Times are UTC, whole seconds (normalised so);
    ``lat``/``lon`` are kept to 5 decimals (about a metre); both or neither."""

    device: str
    counter: int
    time: datetime
    lat: float | None
    lon: float | None
    backlog: int
    oldest: datetime | None
    last_seq: int
    rat: str | None
    operator: str | None
    level_dbm: int | None
    uptime_s: int
    reason: str

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            _bad(f"device: expected 1..32 of A-Z a-z 0-9 . _ -, got {self.device!r}")
        _whole(self.counter, "counter", MAX_COUNT)
        object.__setattr__(self, "time", _moment(self.time, "time"))
        if (self.lat is None) != (self.lon is None):
            _bad("lat and lon: both or neither")
        if self.lat is not None:
            object.__setattr__(self, "lat", _degrees(self.lat, "lat", 90))
            object.__setattr__(self, "lon", _degrees(self.lon, "lon", 180))
        _whole(self.backlog, "backlog", MAX_COUNT)
        if self.oldest is not None:
            object.__setattr__(self, "oldest", _moment(self.oldest, "oldest"))
        _whole(self.last_seq, "last_seq", MAX_SEQ)
        if self.rat is not None and self.rat not in RATS:
            _bad(f"rat: expected one of {', '.join(RATS)}, got {self.rat!r}")
        if self.operator is not None and (not isinstance(self.operator, str) or not _OPERATOR.fullmatch(self.operator)):
            _bad(f"operator: expected MCC and MNC, 5 or 6 digits, got {self.operator!r}")
        if self.level_dbm is not None:
            _whole(self.level_dbm, "level_dbm", 0, -200)
        _whole(self.uptime_s, "uptime_s", MAX_COUNT)
        if self.reason not in REASONS:
            _bad(f"reason: expected one of {', '.join(REASONS)}, got {self.reason!r}")


def _bad(message: str) -> None:
    raise HeartbeatError("malformed", message)


def _whole(value: object, name: str, high: int, low: int = 0) -> None:
    if type(value) is not int or not low <= value <= high:
        _bad(f"{name}: expected a whole number {low}..{high}, got {value!r}")


def _moment(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        _bad(f"{name}: expected a timezone-aware datetime, got {value!r}")
    assert isinstance(value, datetime)
    try:
        utc = value.astimezone(timezone.utc).replace(microsecond=0)
    except OverflowError:
        utc = EPOCH.replace(year=1)
    if not EPOCH <= utc <= LAST_TIME:
        _bad(f"{name}: expected a time in 2020..2099 UTC, got {value.isoformat()}")
    return utc


def _degrees(value: object, name: str, limit: int) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not -limit <= value <= limit:
        _bad(f"{name}: expected degrees within ±{limit}, got {value!r}")
    assert isinstance(value, (int, float))
    return round(value * 100_000) / 100_000


# -- base 36 -----------------------------------------------------------------------------------

def _to36(value: int) -> str:
    if value < 0:
        return "-" + _to36(-value)
    digits = []
    while True:
        value, digit = divmod(value, 36)
        digits.append(_DIGITS36[digit])
        if not value:
            return "".join(reversed(digits))


def _from36(text: str, name: str) -> int:
    if not _BASE36.fullmatch(text) or text == "-0":
        _bad(f"{name}: expected base 36 (0-9 A-Z, no leading zeros), got {text!r}")
    return int(text, 36)


# -- the message --------------------------------------------------------------------------------

def _signature(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode("utf-8"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:SIGNATURE_CHARS]


def _seconds(moment: datetime) -> str:
    return _to36(int((moment - EPOCH).total_seconds()))


def encode_heartbeat(hb: Heartbeat, key: bytes) -> str:
    """``hb`` as the text of one SMS, signed with the unit's ``key``."""
    if not isinstance(hb, Heartbeat):
        _bad(f"expected a Heartbeat, got {type(hb).__name__}")
    _check_key(key)
    tokens = [VERSION, hb.device.replace("_", "/"), _to36(hb.counter), "t=" + _seconds(hb.time)]
    if hb.lat is not None and hb.lon is not None:
        tokens.append(f"p={_to36(round(hb.lat * 100_000))},{_to36(round(hb.lon * 100_000))}")
    tokens.append("b=" + _to36(hb.backlog))
    if hb.oldest is not None:
        tokens.append("o=" + _seconds(hb.oldest))
    tokens.append("s=" + _to36(hb.last_seq))
    if hb.rat is not None:
        tokens.append("r=" + hb.rat)
    if hb.operator is not None:
        tokens.append("n=" + hb.operator)
    if hb.level_dbm is not None:
        tokens.append(f"l={hb.level_dbm}")
    tokens += ["u=" + _to36(hb.uptime_s), "w=" + REASONS[hb.reason]]
    body = " ".join(tokens)
    return body + " " + _signature(key, body)


def decode_heartbeat(text: str, keys: Callable[[str], bytes | None]) -> Heartbeat:
    """The heartbeat ``text`` says, once its signature is verified with the key ``keys``
    gives for the unit it names (None: no such unit).  Raises :class:`HeartbeatError`.

    The signature is checked before any field but the unit's id is read, and compared in
    constant time (``hmac.compare_digest``).  Counters are not checked here: see
    :func:`accept_counter`.
    """
    if not isinstance(text, str):
        raise HeartbeatError("not_heartbeat", f"expected text, got {type(text).__name__}")
    message = text.strip()
    version = _VERSION.match(message)
    if version is None:
        raise HeartbeatError("not_heartbeat", f"does not start with {VERSION}: {message[:30]!r}")
    if message[:version.end()] != VERSION:
        raise HeartbeatError("version", f"format {message[:version.end()]}, this reads {VERSION}")
    body, _, signature = message.rpartition(" ")
    tokens = body.split(" ")
    if len(tokens) < 3 or not _SIGNATURE.fullmatch(signature):
        raise HeartbeatError("truncated", f"ends before its {SIGNATURE_CHARS}-character signature: "
                                          f"{message[-20:]!r}")
    if not _SENT_DEVICE.fullmatch(tokens[1]):
        _bad(f"device: expected 1..32 of A-Z a-z 0-9 . / -, got {tokens[1][:40]!r}")
    device = tokens[1].replace("/", "_")
    key = keys(device)
    if key is None:
        raise HeartbeatError("unknown_unit", f"no key for unit {device!r}")
    _check_key(key)
    if not hmac.compare_digest(signature, _signature(key, body)):
        raise HeartbeatError("bad_signature", f"the signature does not match unit {device!r}'s key")
    return _fields(device, tokens[2], tokens[3:])


def _fields(device: str, counter: str, pairs: list[str]) -> Heartbeat:
    values: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or name not in _KEYS:
            _bad(f"expected a field such as t=..., got {pair[:20]!r}")
        if values and _KEYS.index(name) <= _KEYS.index(list(values)[-1]):
            _bad(f"field {name}= out of order or repeated")
        values[name] = value
    missing = _REQUIRED - values.keys()
    if missing:
        _bad(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(sorted(missing))}")
    lat = lon = None
    if "p" in values:
        north, comma, east = values["p"].partition(",")
        if not comma:
            _bad(f"p: expected <lat>,<lon>, got {values['p']!r}")
        lat, lon = _from36(north, "lat") / 100_000, _from36(east, "lon") / 100_000
    if values.get("w") not in _WORD_REASON:
        _bad(f"w: expected one of {', '.join(_WORD_REASON)}, got {values.get('w')!r}")
    level = values.get("l")
    if level is not None and not _LEVEL.fullmatch(level):
        _bad(f"l: expected dBm, a whole number, got {level!r}")
    return Heartbeat(
        device=device, counter=_from36(counter, "counter"), time=_time(values["t"], "t"), lat=lat, lon=lon,
        backlog=_from36(values["b"], "b"), oldest=_time(values["o"], "o") if "o" in values else None,
        last_seq=_from36(values["s"], "s"), rat=values.get("r"), operator=values.get("n"),
        level_dbm=int(level) if level is not None else None, uptime_s=_from36(values["u"], "u"),
        reason=_WORD_REASON[values["w"]],
    )


def _time(text: str, name: str) -> datetime:
    seconds = _from36(text, name)
    if not 0 <= seconds <= (LAST_TIME - EPOCH).total_seconds():
        _bad(f"{name}: {seconds} seconds since 2020 is past 2099")
    return datetime.fromtimestamp(EPOCH.timestamp() + seconds, timezone.utc)


def accept_counter(last_seen: int | None, counter: int) -> bool:
    """Whether a heartbeat's ``counter`` is new for its unit: strictly greater than the last
    one accepted (None: none yet).  The caller keeps ``last_seen`` per unit, durably."""
    return last_seen is None or counter > last_seen


def counter_from_time(moment: datetime) -> int:
    """A counter to start from when the unit has lost the one it kept: seconds since 2020."""
    return max(0, min(MAX_COUNT, int((moment - EPOCH).total_seconds())))


# -- keys ---------------------------------------------------------------------------------------

def new_key() -> str:
    """A new unit key as a provisioning script writes it to a file: 32 random bytes as 64 hex
    digits and a line break.  The unit and the centre each keep a copy."""
    return secrets.token_hex(KEY_BYTES) + "\n"


def read_key(text: str) -> bytes:
    """The key in a key file's ``text`` (what :func:`new_key` wrote: hex, 16 to 64 bytes)."""
    if not isinstance(text, str):
        raise HeartbeatKeyError(f"expected the text of a key file, got {type(text).__name__}")
    value = text.strip()
    if not _HEX_KEY.fullmatch(value):
        raise HeartbeatKeyError("expected a key of 32 to 128 hex digits (16 to 64 bytes), as new_key() writes, "
                                f"got {len(value)} characters" + ("" if value else " (an empty file)"))
    return bytes.fromhex(value)


def _check_key(key: object) -> None:
    if not isinstance(key, bytes) or len(key) < 16:
        raise HeartbeatKeyError(f"expected a key of at least 16 bytes, got {type(key).__name__}"
                                + (f" of {len(key)}" if isinstance(key, bytes) else ""))
