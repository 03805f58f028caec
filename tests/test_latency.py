"""Latency measurement: ICMP messages, round-trip statistics, targets, and the command line.

The pure parts are tested by tables and properties; the probes themselves run against this
host's loopback here, and across an emulated cellular link in tests/test_latency_netns.py.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import threading
from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agent.commands.main import main
from agent.unit.measure.icmp_packet import (
    DEST_UNREACHABLE, ECHO_REPLY, ECHO_REQUEST, TIME_EXCEEDED, IcmpParseError, build_echo_request, checksum,
    parse_icmp,
)
from agent.unit.measure.latency import measure_latency
from agent.unit.measure.rtt_stats import jitter_ms, loss_pct, summarize
from agent.unit.measure.target import Target, TargetError, parse_target
from agent.shared.reading import Latency, part_dict


def ipv4_header(payload_len: int, protocol: int = 1, source: str = "10.0.0.9", options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + payload_len, 1, 0, 64, protocol, 0,
                         socket.inet_aton(source), socket.inet_aton("10.0.0.1")) + options
    return header


def echo_reply(ident: int, seq: int, payload: bytes) -> bytes:
    request = build_echo_request(ident, seq, payload)
    reply = bytes([ECHO_REPLY]) + request[1:2] + b"\0\0" + request[4:]
    return reply[:2] + struct.pack("!H", checksum(reply)) + reply[4:]


def icmp_error(kind: int, code: int, quoted: bytes) -> bytes:
    body = struct.pack("!BBHI", kind, code, 0, 0) + quoted
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


# -- checksum and echo request -----------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"", 0xFFFF),
    (b"\x00\x01\xf2\x03\xf4\xf5\xf6\xf7", 0x220D),  # RFC 1071 section 3 example (sum 0xddf2)
    (b"\xff\xff", 0x0000),
    (b"\x01", 0xFEFF),  # odd length: padded with a zero byte
    (bytes.fromhex("0800000012340001"), 0xE5CA),
])
def test_internet_checksum(data: bytes, expected: int) -> None:
    assert checksum(data) == expected


def test_echo_request_layout_matches_a_captured_ping() -> None:
    # ping -c1 -p 00 127.0.0.1, first 8 bytes of payload replaced: type 8, code 0, id 0x1c2b, seq 1
    payload = bytes(range(56))
    packet = build_echo_request(0x1C2B, 1, payload)
    assert packet[0] == ECHO_REQUEST and packet[1] == 0
    assert packet[4:8] == b"\x1c\x2b\x00\x01"
    assert packet[8:] == payload
    assert checksum(packet) == 0


@pytest.mark.parametrize("ident, seq", [(-1, 0), (0x10000, 0), (0, -1), (0, 0x10000)])
def test_echo_request_fields_are_16_bit(ident: int, seq: int) -> None:
    with pytest.raises(ValueError):
        build_echo_request(ident, seq)


# -- parsing what comes back -------------------------------------------------------------

BAD_MESSAGES = [
    ("empty", b"", False, "truncated"),
    ("7 bytes", echo_reply(1, 1, b"")[:7], False, "truncated"),
    ("bad checksum", echo_reply(1, 1, b"abcd")[:-1] + b"x", False, "checksum"),
    ("IP header too short", ipv4_header(8)[:19], True, "truncated"),
    ("IPv6 where IPv4 expected", b"\x60" + bytes(39), True, "not IPv4"),
    ("IHL below 5", b"\x44" + ipv4_header(8)[1:] + echo_reply(1, 1, b""), True, "header length"),
    ("IHL beyond the data", b"\x4f" + ipv4_header(8)[1:], True, "header length"),
    ("UDP, not ICMP", ipv4_header(8, protocol=17) + echo_reply(1, 1, b""), True, "not ICMP"),
    ("IP header alone", ipv4_header(0), True, "truncated"),
]


@pytest.mark.parametrize("name, data, ip_header, message", BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
def test_parse_rejects(name: str, data: bytes, ip_header: bool, message: str) -> None:
    with pytest.raises(IcmpParseError, match=message):
        parse_icmp(data, ip_header=ip_header)


def test_parse_echo_reply_from_a_datagram_socket() -> None:
    message = parse_icmp(echo_reply(0x0203, 7, b"token-and-data"))
    assert (message.type, message.code, message.ident, message.seq) == (ECHO_REPLY, 0, 0x0203, 7)
    assert message.payload == b"token-and-data" and message.source is None


def test_parse_echo_reply_from_a_raw_socket_with_ip_options() -> None:
    reply = echo_reply(9, 300, b"x" * 56)
    message = parse_icmp(ipv4_header(len(reply), options=b"\x01\x01\x01\x00") + reply, ip_header=True)
    assert (message.ident, message.seq, message.source) == (9, 300, "10.0.0.9")


@pytest.mark.parametrize("kind, code, words", [
    (DEST_UNREACHABLE, 1, "host unreachable (from 10.0.0.9)"),
    (DEST_UNREACHABLE, 13, "communication administratively prohibited (from 10.0.0.9)"),
    (DEST_UNREACHABLE, 12, "destination unreachable (code 12) (from 10.0.0.9)"),
    (TIME_EXCEEDED, 0, "time to live exceeded (from 10.0.0.9)"),
])
def test_icmp_errors_name_the_echo_request_they_are_about(kind: int, code: int, words: str) -> None:
    request = build_echo_request(0xBEEF, 42, b"p" * 56)
    quoted = ipv4_header(len(request)) + request[:8]  # routers quote the IP header and 8 bytes
    error = icmp_error(kind, code, quoted)
    message = parse_icmp(ipv4_header(len(error)) + error, ip_header=True)
    assert message.type == kind and message.quoted == (0xBEEF, 42)
    assert message.describe() == words


def test_an_icmp_error_about_something_else_quotes_nothing() -> None:
    udp = ipv4_header(8, protocol=17) + bytes(8)
    message = parse_icmp(icmp_error(DEST_UNREACHABLE, 3, udp))
    assert message.quoted is None and message.describe() == "port unreachable"


@given(st.binary(max_size=200), st.booleans(), st.booleans())
def test_parse_raises_only_its_own_error(data: bytes, ip_header: bool, verify: bool) -> None:
    try:
        parse_icmp(data, ip_header=ip_header, verify_checksum=verify)
    except IcmpParseError:
        pass


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=100))
def test_a_reply_to_any_request_parses_back(ident: int, seq: int, payload: bytes) -> None:
    assert checksum(build_echo_request(ident, seq, payload)) == 0
    message = parse_icmp(echo_reply(ident, seq, payload))
    assert (message.ident, message.seq, message.payload) == (ident, seq, payload)


@given(st.binary(min_size=8, max_size=64), st.integers(0, 63), st.integers(0, 7))
def test_any_single_bit_flip_is_caught_by_the_checksum(payload: bytes, byte: int, bit: int) -> None:
    packet = bytearray(echo_reply(1, 2, payload))
    packet[byte % len(packet)] ^= 1 << bit
    with pytest.raises(IcmpParseError):
        parse_icmp(bytes(packet))


# -- round-trip statistics ---------------------------------------------------------------

STATS = [
    # sent, rtts (send order), received, loss, min, avg, max, jitter
    (0, [], 0, 100.0, None, None, None, None),
    (5, [None] * 5, 0, 100.0, None, None, None, None),
    (1, [12.5], 1, 0.0, 12.5, 12.5, 12.5, None),
    (4, [10.0, 12.0, 11.0, 15.0], 4, 0.0, 10.0, 12.0, 15.0, (2 + 1 + 4) / 3),
    (4, [10.0, None, 14.0, None], 2, 50.0, 10.0, 12.0, 14.0, 4.0),  # a lost probe is skipped
    (3, [50.0001, 50.0004, 50.0002], 3, 0.0, 50.0, 50.0, 50.0, 0.0),  # microsecond rounding
    (3, [1.0], 1, 66.667, 1.0, 1.0, 1.0, None),  # probes not listed were not answered
]


@pytest.mark.parametrize("sent, rtts, received, loss, low, avg, high, jitter", STATS)
def test_summary(sent, rtts, received, loss, low, avg, high, jitter) -> None:
    reading = summarize("t", "icmp", sent, rtts)
    assert (reading.sent, reading.received, reading.loss_pct) == (sent, received, loss)
    assert (reading.rtt_min_ms, reading.rtt_avg_ms, reading.rtt_max_ms) == (low, avg, high)
    assert reading.jitter_ms == (None if jitter is None else round(jitter, 3))
    assert reading.error is None


def test_summary_keeps_the_error_and_refuses_more_answers_than_probes() -> None:
    assert summarize("t", "tcp", 0, [], "interface wwan0 not found").error == "interface wwan0 not found"
    with pytest.raises(ValueError):
        summarize("t", "icmp", 1, [1.0, 2.0])


@given(st.lists(st.one_of(st.none(), st.floats(0, 60_000)), max_size=50), st.integers(0, 10))
def test_summary_properties(rtts: list[float | None], extra: int) -> None:
    sent = len(rtts) + extra
    reading = summarize("t", "icmp", sent, rtts)
    answered = [r for r in rtts if r is not None]
    assert reading.received == len(answered)
    assert 0.0 <= reading.loss_pct <= 100.0
    if answered:
        assert reading.rtt_min_ms <= reading.rtt_avg_ms <= reading.rtt_max_ms
        assert reading.jitter_ms is None or 0 <= reading.jitter_ms <= reading.rtt_max_ms - reading.rtt_min_ms + 0.002  # each rounded to 0.001
    else:
        assert reading.loss_pct == 100.0 and reading.rtt_avg_ms is None


def test_jitter_and_loss_helpers() -> None:
    assert jitter_ms([]) is None and jitter_ms([5.0]) is None
    assert jitter_ms([1.0, 3.0, 2.0]) == 1.5
    assert loss_pct(0, 0) == 100.0 and loss_pct(3, 3) == 0.0 and loss_pct(3, 2) == 33.333


# -- targets -----------------------------------------------------------------------------

TARGETS = [
    ("broker.example.org", Target("broker.example.org")),
    ("broker.example.org.", Target("broker.example.org.")),
    ("10.0.0.1:1883", Target("10.0.0.1", 1883)),
    ("localhost:65535", Target("localhost", 65535)),
    ("[2001:db8::1]:8883", Target("2001:db8::1", 8883)),
    ("[2001:db8::1]", Target("2001:db8::1")),
    ("2001:db8::1", Target("2001:db8::1")),
    ("fe80::1%wwan0", Target("fe80::1%wwan0")),
]


@pytest.mark.parametrize("text, target", TARGETS)
def test_target(text: str, target: Target) -> None:
    assert parse_target(text) == target
    assert parse_target(str(target)) == target


BAD_TARGETS = [
    ("", "empty"),
    ("host:", "port"),
    ("host:0", "port"),
    ("host:65536", "port"),
    ("host:+80", "port"),
    ("host:8o", "port"),
    ("a b", "host name"),
    ("-host", "host name"),
    ("host..org", "host name"),
    (":80", "host name"),
    ("[2001:db8::1", "missing"),
    ("[10.0.0.1]:80", "brackets"),
    ("[2001:db8::1]80", "after"),
    ("[2001:db8::zz]", "IPv6"),
    ("1:2:3:zz", "IPv6"),
    ("x" * 64 + ".org", "host name"),
]


@pytest.mark.parametrize("text, words", BAD_TARGETS)
def test_bad_target(text: str, words: str) -> None:
    with pytest.raises(TargetError, match=words):
        parse_target(text)


@given(st.text(max_size=60))
def test_target_parser_raises_only_its_own_error(text: str) -> None:
    try:
        parse_target(text)
    except TargetError:
        pass


# -- probes on this host's loopback ------------------------------------------------------

@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except socket.timeout:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def fast(target: Target, method: str, **kw) -> Latency:
    return measure_latency(target, method, count=kw.pop("count", 5), interval=0.01, timeout=kw.pop("timeout", 1.0), **kw)


def test_icmp_on_loopback_over_a_raw_socket() -> None:
    reading = fast(Target("127.0.0.1"), "icmp", icmp_socket="raw")
    assert (reading.method, reading.sent, reading.received, reading.error) == ("icmp", 5, 5, None)
    assert 0 <= reading.rtt_min_ms <= reading.rtt_avg_ms <= reading.rtt_max_ms < 50


def test_tcp_handshake_to_a_listener(listener: int) -> None:
    reading = fast(Target("127.0.0.1", listener), "tcp")
    assert (reading.target, reading.method, reading.received, reading.error) == (f"127.0.0.1:{listener}", "tcp", 5, None)
    assert reading.rtt_max_ms < 50


def test_tcp_reset_from_a_closed_port_is_an_answer() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: the kernel answers SYN with RST
    try:
        reading = fast(Target("127.0.0.1", port), "tcp")
    finally:
        closed.close()
    assert (reading.received, reading.loss_pct, reading.error) == (5, 0.0, None)


@pytest.mark.parametrize("method", ["icmp", "tcp", "auto"])
def test_unknown_host_is_a_reading_with_an_error(method: str) -> None:
    reading = fast(Target("no-such-host.invalid"), method)
    assert (reading.sent, reading.received, reading.loss_pct) == (0, 0, 100.0)
    assert reading.error.startswith("cannot resolve no-such-host.invalid")


@pytest.mark.parametrize("method", ["icmp", "tcp", "auto"])
def test_missing_interface_is_a_reading_with_an_error(method: str, listener: int) -> None:
    reading = fast(Target("127.0.0.1", listener), method, interface="wwan9")
    assert (reading.sent, reading.loss_pct, reading.error) == (0, 100.0, "interface wwan9 not found")


def test_source_address_not_on_this_host_is_a_reading_with_an_error() -> None:
    reading = fast(Target("127.0.0.1"), "icmp", icmp_socket="raw", source="192.0.2.55")
    assert reading.loss_pct == 100.0 and reading.error.startswith("cannot use source address 192.0.2.55")


def test_bad_arguments_to_the_function_are_programming_errors() -> None:
    for kw in ({"count": 0}, {"interval": 0}, {"timeout": -1}):
        with pytest.raises(ValueError):
            measure_latency(Target("127.0.0.1"), "icmp", **kw)
    with pytest.raises(ValueError):
        measure_latency(Target("127.0.0.1"), "udp")
    with pytest.raises(ValueError):
        measure_latency(Target("127.0.0.1"), "icmp", icmp_socket="packet")
    with pytest.raises(TargetError):
        measure_latency("127.0.0.1:http", "tcp")


def test_a_target_may_be_given_as_text(listener: int) -> None:
    reading = measure_latency(f"127.0.0.1:{listener}", "tcp", count=2, interval=0.01)
    assert (reading.target, reading.received) == (f"127.0.0.1:{listener}", 2)


# -- the command -------------------------------------------------------------------------

def latency_schema_errors(part: dict) -> list[str]:
    schema = json.loads((files("agent.schema") / "reading.schema.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator({"$ref": "#/$defs/latency", "$defs": schema["$defs"]})
    return [e.message for e in validator.iter_errors(part)]


def test_cli_prints_the_latency_part_as_json(capsys, listener: int) -> None:
    status = main(["measure", "latency", "--json", "--target", f"127.0.0.1:{listener}", "--backend", "tcp",
                   "--count", "3", "--interval", "0.01"])
    out = capsys.readouterr()
    assert status == 0 and out.err == ""
    part = json.loads(out.out)
    assert latency_schema_errors(part) == []
    assert part["method"] == "tcp" and part["received"] == 3 and part["error"] is None


def test_cli_text_form_and_a_failed_measurement_still_exit_0(capsys) -> None:
    status = main(["measure", "latency", "--target", "no-such-host.invalid", "--count", "1"])
    out = capsys.readouterr()
    assert status == 0
    assert "loss_pct    100.0" in out.out and "error       cannot resolve" in out.out
    assert out.err.strip().startswith("blankspot measure: cannot resolve no-such-host.invalid")


def test_cli_failed_measurement_json_follows_the_schema(capsys) -> None:
    assert main(["measure", "latency", "--json", "--target", "127.0.0.1", "--interface", "wwan9"]) == 0
    part = json.loads(capsys.readouterr().out)
    assert latency_schema_errors(part) == [] and part["error"] == "interface wwan9 not found"


def test_cli_default_target_is_the_configured_broker(tmp_path, capsys, listener: int) -> None:
    """Also on a unit not named yet (no device.id): measuring is part of setting it up."""
    config = tmp_path / "agent.toml"
    config.write_text(f'[uplink]\nhost = "127.0.0.1"\nport = {listener}\n')
    assert main(["measure", "latency", "--json", "--config", str(config), "--backend", "tcp", "--count", "2",
                 "--interval", "0.01"]) == 0
    part = json.loads(capsys.readouterr().out)
    assert part["target"] == f"127.0.0.1:{listener}" and part["received"] == 2


BAD_ARGS = [
    (["--count", "0"], "--count must be 1 to 10000"),
    (["--count", "10001"], "--count must be 1 to 10000"),
    (["--count", "x"], "invalid int value"),
    (["--interval", "0.001"], "--interval must be 0.01 to 3600"),
    (["--timeout", "0"], "--timeout must be more than 0"),
    (["--timeout", "61"], "--timeout must be more than 0"),
    (["--backend", "udp"], "invalid choice"),
    (["--icmp-socket", "packet"], "invalid choice"),
    (["--target", "host:99999"], "--target: port must be a number"),
    (["--target", "a b"], "--target: not a host name"),
]


@pytest.mark.parametrize("argv, words", BAD_ARGS)
def test_cli_bad_arguments_exit_2_with_one_line(argv: list[str], words: str, capsys) -> None:
    status = main(["measure", "latency", "--target", "127.0.0.1", *argv] if "--target" not in argv
                  else ["measure", "latency", *argv])
    err = capsys.readouterr().err
    assert status == 2
    assert words in err and err.count("\n") == 1, err


def test_cli_without_target_or_config_is_a_usage_error(tmp_path, capsys) -> None:
    assert main(["measure", "latency", "--config", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_measure_needs_latency_or_throughput(capsys) -> None:
    assert main(["measure"]) == 2
    assert main(["measure", "speed"]) == 2
    capsys.readouterr()


def test_json_form_round_trips_through_the_reading_part() -> None:
    reading = summarize("10.0.0.1", "icmp", 4, [10.0, None, 11.5, 12.25])
    body = part_dict(reading)
    assert Latency(**json.loads(json.dumps(body))) == reading
    assert not any(isinstance(v, float) and math.isnan(v) for v in body.values())


@pytest.mark.parametrize("what", ["latency", "throughput"])
def test_measure_subcommands_have_an_example(what: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["measure", what, "--help"])
    assert f"Example: blankspot measure {what}" in " ".join(capsys.readouterr().out.split())
