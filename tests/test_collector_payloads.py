"""What the collector makes of one MQTT message, and of its command-line addresses.

``classify`` never raises: a message is a batch, a status, or refused with a reason that
ends up in the quarantine table.  Bad inputs first.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.centre.ingest import (
    MAX_STATUS_BYTES, BatchMessage, BrokerAddress, CollectorSettings, RefusedMessage, StatusMessage, classify,
    parse_broker_url,
)
from agent.shared.protocol import encode_batch, encode_status
from tests.support.readings_factory import ALL_KINDS, signal_reading

PREFIX = "blankspot/v1"
TOPIC = f"{PREFIX}/boat-07/readings"
STATUS = f"{PREFIX}/boat-07/status"


def body(device: str = "boat-07", seq: int = 1, **changes) -> dict:
    table = dataclasses.replace(signal_reading(device), seq=seq).to_dict()
    table.update(changes)
    return table


def batch(*bodies: dict, device: str = "boat-07") -> bytes:
    return encode_batch(device, [json.dumps(b) for b in bodies])


GOOD = batch(body(seq=1), body(seq=2))

REFUSED = [
    # (case, topic, payload, reason contains)
    ("empty payload", TOPIC, b"", "not JSON"),
    ("truncated JSON", TOPIC, GOOD[: len(GOOD) // 2], "not JSON"),
    ("not UTF-8", TOPIC, b'{"schema": "\xff\xfe"}', "not JSON"),
    ("a JSON list", TOPIC, b"[1, 2, 3]", "expected an object with schema"),
    ("another schema version", TOPIC, GOOD.replace(b"blankspot.batch/1", b"blankspot.batch/2"), "schema"),
    ("no readings", TOPIC, batch(), "non-empty list"),
    ("seq as a string", TOPIC, batch(body(seq="5")), "seq: expected a positive integer"),
    ("seq zero", TOPIC, batch(body(seq=0)), "seq: expected a positive integer"),
    ("rsrp as a string", TOPIC, batch(body(signal={**body()["signal"], "rsrp_dbm": "-99"})), "rsrp_dbm"),
    ("time without Z", TOPIC, batch(body(time="2026-11-24 03:04:05")), "time"),
    ("unknown field", TOPIC, batch(body(extra=1)), "unknown field 'extra'"),
    ("operator of 10,000 characters", TOPIC,
     batch(body(signal={**body()["signal"], "operator": "X" * 10_000})), "longer than 256"),
    ("another device in the payload than in the topic", TOPIC, batch(body(device="boat-08"), device="boat-08"),
     "does not match topic device"),
    ("a reading of another device in the batch", TOPIC, batch(body(seq=1), body(device="boat-08", seq=2)),
     "is not the batch's"),
    ("payload over 4 MB", TOPIC, b" " * 4_000_001, "exceeds"),
    ("JSON nested 100,000 deep", TOPIC, b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("device not allowed in a topic", f"{PREFIX}/bad device!/readings", GOOD, "expected blankspot/v1/<device>"),
    ("another prefix", "other/v1/boat-07/readings", GOOD, "is not under"),
    ("status of another state", STATUS, encode_status("boat-07", "sleeping"), "state"),
    ("status of another device", STATUS, encode_status("boat-08", "online"), "does not match topic device"),
    ("status over 64 KB", STATUS, encode_status("boat-07", "online", pad="x" * MAX_STATUS_BYTES), "exceeds"),
    ("status not JSON", STATUS, b"online", "not JSON"),
]


@pytest.mark.parametrize("case, topic, payload, reason", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused(case: str, topic: str, payload: bytes, reason: str) -> None:
    result = classify(PREFIX, topic, payload)
    assert isinstance(result, RefusedMessage), case
    assert reason in result.reason
    assert result.topic == topic and result.raw == payload


def test_a_batch_of_every_kind() -> None:
    bodies = [dataclasses.replace(make("boat-07"), seq=seq).to_json() for seq, make in enumerate(ALL_KINDS, start=1)]
    result = classify(PREFIX, TOPIC, encode_batch("boat-07", bodies))
    assert isinstance(result, BatchMessage) and result.device == "boat-07"
    assert [r.seq for r in result.readings] == [1, 2, 3, 4, 5]


def test_sql_looking_strings_are_valid_readings() -> None:
    """They are data: stored as they are (parameters, never SQL text), not refused."""
    hostile = "'; DROP TABLE readings; --"
    result = classify(PREFIX, TOPIC, batch(body(signal={**body()["signal"], "operator": hostile})))
    assert isinstance(result, BatchMessage) and result.readings[0].part.operator == hostile


def test_statuses() -> None:
    online = classify(PREFIX, STATUS, encode_status("boat-07", "online", backlog={"pending": 3}))
    will = classify(PREFIX, STATUS, encode_status("boat-07", "offline", reason="connection lost"))
    assert online == StatusMessage("boat-07", "online", json.loads(encode_status("boat-07", "online", backlog={"pending": 3})))
    assert isinstance(will, StatusMessage) and will.state == "offline" and will.payload["reason"] == "connection lost"


@settings(max_examples=300)
@given(topic=st.sampled_from([TOPIC, STATUS, f"{PREFIX}/x/readings", "a/b"]), payload=st.binary(max_size=300))
def test_any_bytes_are_classified_without_raising(topic: str, payload: bytes) -> None:
    assert isinstance(classify(PREFIX, topic, payload), (BatchMessage, StatusMessage, RefusedMessage))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["schema", "device", "seq", "time", "kind", "signal", "position", "x"]),
                       json_values, max_size=8))
def test_any_json_reading_is_classified_without_raising(reading: dict) -> None:
    payload = encode_batch("boat-07", [json.dumps(reading)])
    assert isinstance(classify(PREFIX, TOPIC, payload), (BatchMessage, RefusedMessage))


# -- broker addresses and settings -------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("mqtt://broker.example", BrokerAddress("broker.example", 1883, False)),
    ("mqtt://127.0.0.1:18830", BrokerAddress("127.0.0.1", 18830, False)),
    ("mqtts://broker.example", BrokerAddress("broker.example", 8883, True)),
    ("mqtts://broker.example:9883/", BrokerAddress("broker.example", 9883, True)),
    ("broker.example", BrokerAddress("broker.example", 1883, False)),
    ("127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884, False)),
    ("mqtt://[::1]:1883", BrokerAddress("::1", 1883, False)),
])
def test_broker_urls(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url, message", [
    ("http://broker.example", "expected mqtt://"),
    ("mqtt://", "expected mqtt://"),
    ("mqtt://broker.example:port", "Port could not be cast"),
    ("mqtt://broker.example:99999", "out of range"),
    ("mqtt://user:pw@broker.example", "--username"),
    ("mqtt://broker.example/blankspot", "expected mqtt://"),
])
def test_bad_broker_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_broker_url(url)


@given(st.text(max_size=40))
def test_any_text_is_a_broker_or_a_value_error(text: str) -> None:
    try:
        address = parse_broker_url(text)
    except ValueError:
        return
    assert address.host and 0 <= address.port <= 65535


@pytest.mark.parametrize("changes, message", [
    ({"group": "a/b"}, "group"),
    ({"group": ""}, "group"),
    ({"prefix": "blankspot/#"}, "prefix"),
    ({"prefix": "/blankspot"}, "prefix"),
    ({"client_id": ""}, "client id"),
    ({"inflight": 0}, "inflight"),
])
def test_settings_no_broker_would_accept(changes: dict, message: str) -> None:
    settings_ = CollectorSettings(**{"broker": BrokerAddress("h", 1883, False), "client_id": "c1", **changes})
    with pytest.raises(ValueError, match=message):
        settings_.check()


def test_topics_are_shared_subscriptions() -> None:
    settings_ = CollectorSettings(BrokerAddress("h", 1883, False), "c1", group="centre", prefix="kukar/v1")
    assert settings_.topics() == ["$share/centre/kukar/v1/+/readings", "$share/centre/kukar/v1/+/status"]
