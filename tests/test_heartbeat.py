"""The signed heartbeat SMS (agent.shared.heartbeat, docs/sms-heartbeat.md).

What a unit encodes the centre decodes to the same heartbeat; every valid heartbeat fits one
SMS of characters every operator carries; anything altered, cut, replayed or unsigned is
refused with its reason, and nothing but HeartbeatError comes out of the decoder.  The
example and the verifier in docs/sms-heartbeat.md are run as written.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.shared.gsm_alphabet import is_gsm7
from agent.shared.heartbeat import (
    MAX_LENGTH, RATS, REASONS, Heartbeat, HeartbeatError, HeartbeatKeyError, accept_counter, counter_from_time,
    decode_heartbeat, encode_heartbeat, new_key, read_key,
)
from tests.support.docs import DOCS, python_block, run_python_block

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SAFE = set(string.ascii_letters + string.digits + " +-.:;,=/")
UTC = timezone.utc


def keys_of(**units: bytes) -> Any:
    return lambda device: units.get(device)


def heartbeat(**changes: Any) -> Heartbeat:
    fields: dict[str, Any] = dict(
        device="boat-7", counter=1043, time=datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC), lat=-0.50123,
        lon=117.15321, backlog=4312, oldest=datetime(2026, 4, 30, 6, 12, 0, tzinfo=UTC), last_seq=987654,
        rat="lte", operator="51010", level_dbm=-112, uptime_s=259217, reason="quota_exhausted")
    fields.update(changes)
    return Heartbeat(**fields)


def sign(body: str, key: bytes = KEY) -> str:
    """A message the format allows in its signature, whatever its fields say (the spec's words)."""
    digest = hmac.new(key, body.encode("utf-8"), hashlib.sha256).digest()
    return body + " " + base64.b32encode(digest).decode("ascii")[:12]


def refused(text: Any, reason: str, keys: Any = keys_of(**{"boat-7": KEY, "boat_7": KEY})) -> None:
    with pytest.raises(HeartbeatError) as error:
        decode_heartbeat(text, keys)
    assert error.value.reason == reason, str(error.value)


# -- the documented example ---------------------------------------------------------------------

def test_the_example_in_the_doc_is_what_the_code_writes_and_reads() -> None:
    text = (DOCS / "sms-heartbeat.md").read_text(encoding="utf-8")
    key = bytes.fromhex(re.search(r"^key +([0-9a-f]+)$", text, re.M).group(1))
    message = re.search(r"^message +(BS1 .+)$", text, re.M).group(1)
    expected = heartbeat(device="boat_7")
    assert decode_heartbeat(message, keys_of(boat_7=key)) == expected
    assert encode_heartbeat(expected, key) == message


def test_the_documented_verifier_checks_what_the_code_signs() -> None:
    """The standard-library snippet of docs/sms-heartbeat.md, run as written."""
    code = python_block("sms-heartbeat.md", after="verify it with")
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    scope = run_python_block("sms-heartbeat.md", after="verify it with")
    message = encode_heartbeat(heartbeat(), KEY)
    assert scope["verify"](message, KEY)
    assert not scope["verify"](message, OTHER_KEY)
    assert not scope["verify"](message.replace("b=3BS", "b=3BT"), KEY)
    assert scope["fields"](message) == {"t": "3AY940", "p": "-12OB,6Z3LL", "b": "3BS", "o": "3AW3W0", "s": "L62U",
                                        "r": "lte", "n": "51010", "l": "-112", "u": "5K0H", "w": "quota"}


# -- what is refused, and why -------------------------------------------------------------------

GOOD = encode_heartbeat(heartbeat(), KEY)
BODY = GOOD.rsplit(" ", 1)[0]

REFUSALS = [
    # not ours: the caller keeps these as ordinary messages
    ("", "not_heartbeat"),
    ("Kuota internet Anda tinggal 10MB. Beli paket di *363#", "not_heartbeat"),
    ("You have less than 79390 MB Anytime data remaining.", "not_heartbeat"),
    ("bs1 boat-7 SZ", "not_heartbeat"),
    ("BS1x boat-7", "not_heartbeat"),
    (" BS", "not_heartbeat"),
    (None, "not_heartbeat"),
    (GOOD.encode(), "not_heartbeat"),
    # ours, another version
    ("BS2 boat-7 SZ t=3AY940 ABCDEFGHIJKL", "version"),
    ("BS10 " + GOOD[4:], "version"),
    # cut short
    ("BS1", "truncated"),
    ("BS1 boat-7", "truncated"),
    (GOOD[:-1], "truncated"),
    (GOOD[:-12], "truncated"),
    (GOOD[:60], "truncated"),
    (BODY, "truncated"),
    (BODY + " " + GOOD[-12:].lower(), "truncated"),
    # no key for the unit, or not its key
    (GOOD.replace("boat-7", "boat-8"), "unknown_unit"),
    (encode_heartbeat(heartbeat(), OTHER_KEY), "bad_signature"),
    (GOOD.replace("b=3BS", "b=3BT"), "bad_signature"),
    (GOOD.replace(" w=quota", " w=quota "), "bad_signature"),
    (GOOD.replace(" r=lte", ""), "bad_signature"),
    # signed, but a field is not what the format says
    ("BS1 boat!7 SZ ABCDEFGHIJKL", "malformed"),
    ("BS1 " + "b" * 33 + " SZ ABCDEFGHIJKL", "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U u=5K0H"), "malformed"),                # no w=
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U u=5K0H w=bogus"), "malformed"),
    (sign("BS1 boat-7 SZ b=3BS t=3AY940 s=L62U u=5K0H w=quota"), "malformed"),        # out of order
    (sign("BS1 boat-7 SZ t=3AY940 t=3AY940 b=3BS s=L62U u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 x=1 b=3BS s=L62U u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U u=5K0H w=quota extra"), "malformed"),
    (sign("BS1 boat-7 SZ  t=3AY940 b=3BS s=L62U u=5K0H w=quota"), "malformed"),        # two spaces
    (sign("BS1 boat-7 0SZ t=3AY940 b=3BS s=L62U u=5K0H w=quota"), "malformed"),        # a leading zero
    (sign("BS1 boat-7 sz t=3AY940 b=3BS s=L62U u=5K0H w=quota"), "malformed"),         # lower case
    (sign("BS1 boat-7 -1 t=3AY940 b=3BS s=L62U u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 1Z141Z4 t=3AY940 b=3BS s=L62U u=5K0H w=quota"), "malformed"),   # 2**32
    (sign("BS1 boat-7 SZ t=15R3400 b=3BS s=L62U u=5K0H w=quota"), "malformed"),       # 2100
    (sign("BS1 boat-7 SZ t=-1 b=3BS s=L62U u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 p=-12OB b=3BS s=L62U u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 p=5CWG1,0 b=3BS s=L62U u=5K0H w=quota"), "malformed"),  # 90.00001
    (sign("BS1 boat-7 SZ t=3AY940 p=-0,0 b=3BS s=L62U u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U r=5g u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U n=5101 u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U l=5 u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U l=-201 u=5K0H w=quota"), "malformed"),
    (sign("BS1 boat-7 SZ t=3AY940 b=3BS s=L62U l=x u=5K0H w=quota"), "malformed"),
]


@pytest.mark.parametrize("text,reason", REFUSALS)
def test_a_message_is_refused_with_its_reason(text: Any, reason: str) -> None:
    refused(text, reason)


def test_a_minimal_signed_message_is_read() -> None:
    """The five fields always there, nothing else: no fix, nothing waiting, nothing known of the radio."""
    hb = decode_heartbeat(sign("BS1 boat-7 0 t=0 b=0 s=0 u=0 w=unknown"), keys_of(**{"boat-7": KEY}))
    assert hb == Heartbeat(device="boat-7", counter=0, time=datetime(2020, 1, 1, tzinfo=UTC), lat=None, lon=None,
                           backlog=0, oldest=None, last_seq=0, rat=None, operator=None, level_dbm=None, uptime_s=0,
                           reason="unknown")


def test_surrounding_blanks_are_not_part_of_the_message() -> None:
    assert decode_heartbeat(f"\r\n{GOOD} \n", keys_of(**{"boat-7": KEY})) == heartbeat()


def test_an_id_with_an_underscore_travels_as_a_slash() -> None:
    message = encode_heartbeat(heartbeat(device="pier_3.b-1"), KEY)
    assert message.split(" ")[1] == "pier/3.b-1"
    asked: list[str] = []
    assert decode_heartbeat(message, lambda device: asked.append(device) or KEY).device == "pier_3.b-1"
    assert asked == ["pier_3.b-1"]


# -- what a Heartbeat can hold ------------------------------------------------------------------

INVALID = [
    dict(device=""), dict(device="b" * 33), dict(device="boat 7"), dict(device="boat/7"), dict(device="bøat"),
    dict(counter=-1), dict(counter=2**32), dict(counter=True), dict(counter=1.0),
    dict(time=datetime(2026, 5, 1)), dict(time=datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC)),
    dict(time=datetime(2100, 1, 1, tzinfo=UTC)), dict(time="2026-05-01T10:00:00Z"),
    dict(time=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))),
    dict(lat=None), dict(lon=None), dict(lat=90.1), dict(lon=-180.00001), dict(lat=float("nan")),
    dict(lon=float("inf")), dict(lat="1.0"),
    dict(backlog=-1), dict(backlog=2**32), dict(oldest=datetime(2026, 5, 1)), dict(last_seq=2**40),
    dict(rat="LTE"), dict(rat="5g"), dict(operator="5101"), dict(operator="5101000"), dict(operator=51010),
    dict(level_dbm=1), dict(level_dbm=-201), dict(level_dbm=-80.5), dict(uptime_s=-1), dict(uptime_s=2**32),
    dict(reason="no data"), dict(reason="quota"),
]


@pytest.mark.parametrize("changes", INVALID, ids=[repr(c) for c in INVALID])
def test_a_heartbeat_the_format_cannot_carry_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(HeartbeatError) as error:
        heartbeat(**changes)
    assert error.value.reason == "malformed"


def test_times_become_utc_whole_seconds_and_positions_five_decimals() -> None:
    hb = heartbeat(time=datetime(2026, 5, 1, 17, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=7))),
                   lat=-0.501234999, lon=117.153207)
    assert hb.time == datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC) and hb.time.tzinfo == UTC
    assert (hb.lat, hb.lon) == (-0.50123, 117.15321)


def test_encode_needs_a_heartbeat_and_a_key() -> None:
    with pytest.raises(HeartbeatError):
        encode_heartbeat("BS1 boat-7", KEY)  # type: ignore[arg-type]
    for key in (b"short", "00" * 32, None):
        with pytest.raises(HeartbeatKeyError):
            encode_heartbeat(heartbeat(), key)  # type: ignore[arg-type]


# -- replay, counters, keys ---------------------------------------------------------------------

@pytest.mark.parametrize("last_seen,counter,accepted", [
    (None, 0, True), (None, 2**32 - 1, True), (5, 6, True), (5, 5, False), (5, 4, False), (0, 0, False),
])
def test_a_counter_is_accepted_only_when_it_is_new(last_seen: int | None, counter: int, accepted: bool) -> None:
    assert accept_counter(last_seen, counter) is accepted


def test_a_unit_that_lost_its_counter_starts_from_the_time() -> None:
    assert counter_from_time(datetime(2020, 1, 1, tzinfo=UTC)) == 0
    assert counter_from_time(datetime(2026, 5, 1, 10, tzinfo=UTC)) == 199_792_800
    assert counter_from_time(datetime(2019, 1, 1, tzinfo=UTC)) == 0
    assert counter_from_time(datetime(2200, 1, 1, tzinfo=UTC)) == 2**32 - 1


def test_a_new_key_is_what_read_key_reads() -> None:
    text = new_key()
    assert re.fullmatch(r"[0-9a-f]{64}\n", text)
    assert len(read_key(text)) == 32 and read_key(text) != read_key(new_key())
    assert read_key("  " + "AB" * 16 + "\r\n") == bytes([0xAB] * 16)


@pytest.mark.parametrize("text", ["", "\n", "xyz", "ab" * 15, "abc" * 11, "ab" * 65, "0x" + "ab" * 16,
                                  "ab " * 16, None, b"ab" * 16])
def test_read_key_says_what_is_wrong_with_a_file_that_is_not_a_key(text: Any) -> None:
    with pytest.raises(HeartbeatKeyError, match="key"):
        read_key(text)


# -- properties ---------------------------------------------------------------------------------

def edge(low: int, high: int) -> st.SearchStrategy[int]:
    return st.sampled_from([low, high]) | st.integers(low, high)


MOMENT = (st.sampled_from([datetime(2020, 1, 1), datetime(2099, 12, 31, 23, 59, 59)])
          | st.datetimes(datetime(2020, 1, 1), datetime(2099, 12, 31, 23, 59, 59))).map(
    lambda moment: moment.replace(tzinfo=UTC, microsecond=0))
POSITION = st.none() | st.tuples(st.sampled_from([-90.0, 90.0, -89.99999]) | st.floats(-90, 90),
                                 st.sampled_from([-180.0, 180.0, -179.99999]) | st.floats(-180, 180))
HEARTBEATS = st.builds(
    lambda device, counter, time, position, backlog, oldest, last_seq, rat, operator, level, uptime, reason: Heartbeat(
        device=device, counter=counter, time=time, lat=position[0] if position else None,
        lon=position[1] if position else None, backlog=backlog, oldest=oldest, last_seq=last_seq, rat=rat,
        operator=operator, level_dbm=level, uptime_s=uptime, reason=reason),
    st.from_regex(r"\A[A-Za-z0-9._-]{32}\Z") | st.from_regex(r"\A[A-Za-z0-9._-]{1,32}\Z"),
    edge(0, 2**32 - 1), MOMENT, POSITION, edge(0, 2**32 - 1), st.none() | MOMENT, edge(0, 2**40 - 1),
    st.none() | st.sampled_from(RATS), st.none() | st.from_regex(r"\A[0-9]{5,6}\Z"), st.none() | edge(-200, 0),
    edge(0, 2**32 - 1), st.sampled_from(sorted(REASONS)),
)


def test_the_widest_heartbeat_fits_one_sms() -> None:
    widest = Heartbeat(device="W" * 32, counter=2**32 - 1, time=datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
                       lat=-89.99999, lon=-179.99999, backlog=2**32 - 1,
                       oldest=datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC), last_seq=2**40 - 1, rat="none",
                       operator="310260", level_dbm=-200, uptime_s=2**32 - 1, reason="no_signal")
    assert len(encode_heartbeat(widest, KEY)) == 158


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HEARTBEATS)
def test_every_heartbeat_fits_one_sms_of_safe_characters_and_reads_back(hb: Heartbeat) -> None:
    message = encode_heartbeat(hb, KEY)
    assert len(message) <= MAX_LENGTH
    assert set(message) <= SAFE and is_gsm7(message)
    assert decode_heartbeat(message, keys_of(**{hb.device: KEY})) == hb


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HEARTBEATS, st.data())
def test_any_one_character_changed_is_refused(hb: Heartbeat, data: st.DataObject) -> None:
    message = encode_heartbeat(hb, KEY)
    position = data.draw(st.integers(0, len(message) - 1))
    other = data.draw(st.sampled_from(sorted(SAFE | set("_@$\n"))).filter(lambda ch: ch != message[position]))
    tampered = message[:position] + other + message[position + 1:]
    with pytest.raises(HeartbeatError):
        decode_heartbeat(tampered, lambda device: KEY)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HEARTBEATS)
def test_the_documented_verifier_accepts_every_heartbeat(hb: Heartbeat) -> None:
    scope = run_python_block("sms-heartbeat.md", after="verify it with")
    message = encode_heartbeat(hb, KEY)
    assert scope["verify"](message, KEY) and not scope["verify"](message, OTHER_KEY)


@st.composite
def near_heartbeats(draw: st.DrawFn) -> str:
    message = encode_heartbeat(draw(HEARTBEATS), KEY)
    cut = draw(st.integers(0, len(message)))
    kind = draw(st.sampled_from(["cut", "splice", "insert"]))
    if kind == "cut":
        return message[:cut]
    if kind == "insert":
        return message[:cut] + draw(st.text(max_size=5)) + message[cut:]
    return message[:cut] + draw(st.text(max_size=30))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | near_heartbeats() | st.builds(lambda body: sign("BS1 boat-7 " + body), st.text()))
def test_the_decoder_raises_nothing_but_heartbeat_error(text: str) -> None:
    try:
        decode_heartbeat(text, lambda device: KEY if device.startswith("b") else None)
    except HeartbeatError as error:
        assert error.reason in ("not_heartbeat", "version", "malformed", "truncated", "unknown_unit", "bad_signature")
