"""Throughput on the loopback: when a rate counts as settled, the speed server's routes, the
http backend's byte cap and failures, and speedtest-cli driven without speedtest.net.

The accuracy over shaped links is in test_throughput_netlab.py.
"""
from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import speedtest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.centre.speed_server import MAX_BYTES, MINI_JPEG_BYTES, RunningSpeedServer
from agent.unit.measure.http_speed import (
    HEAD_ALLOWANCE, WIRE_FACTOR, HttpSpeedTest, TcpCounters, body_budget, parse_tcp_info,
)
from agent.unit.measure.speedtest_backend import PrivateSpeedtest, mini_config, run_speedtest
from agent.unit.measure.target import server_url
from agent.unit.measure.rate import RateMeter, Stability
from agent.unit.measure.throughput import ThroughputPlan
from agent.shared.reading import Throughput

RULE = Stability(window_s=0.5, step_s=0.1, count=4, tolerance=0.03, min_s=1.0, max_s=12.0)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSpeedServer]:
    with RunningSpeedServer() as running:
        yield running


def feed(meter: RateMeter, rate_at, until: float, step: float = 0.01) -> float | None:
    """Feed ``meter`` bytes arriving at ``rate_at(t)`` bytes/s; the time it became stable."""
    t, total = 0.0, 0.0
    meter.add(t, total)
    while t < until:
        total += rate_at(t) * step
        t = round(t + step, 9)
        meter.add(t, total)
        if meter.stable:
            return t
    return None


# -- when a rate is stable ----------------------------------------------------------------------

def test_a_constant_rate_settles_after_the_minimum_and_is_exact() -> None:
    meter = RateMeter(RULE)
    settled = feed(meter, lambda t: 125_000.0, until=5.0)
    print(f"settled after {settled} s at {meter.rate()} bytes/s")
    assert settled == pytest.approx(max(RULE.min_s, RULE.span_s), abs=0.02)
    assert meter.rate() == pytest.approx(125_000.0, rel=1e-9)


def test_slow_start_is_waited_out_and_left_out_of_the_figure() -> None:
    """Doubling every 50 ms up to the link rate, as TCP's slow start on a 50 ms round trip."""
    meter = RateMeter(RULE)
    settled = feed(meter, lambda t: min(2_500_000.0, 10_000.0 * 2 ** (t / 0.05)), until=5.0)
    print(f"settled after {settled} s at {meter.rate():.0f} bytes/s")
    assert settled is not None and settled > 0.4 + RULE.window_s
    assert meter.rate() == pytest.approx(2_500_000.0, rel=1e-6)


def test_a_burst_at_the_start_delays_stability_until_it_leaves_the_window() -> None:
    """A token bucket lets a burst through at line speed first, then holds the rate."""
    meter = RateMeter(RULE)
    settled = feed(meter, lambda t: 1_000_000.0 if t < 0.1 else 125_000.0, until=5.0)
    print(f"settled after {settled} s at {meter.rate():.0f} bytes/s")
    assert settled is not None and settled >= 0.1 + RULE.window_s + (RULE.count - 1) * RULE.step_s - 0.02
    assert meter.rate() == pytest.approx(125_000.0, rel=1e-6)


def test_a_rate_swinging_more_than_the_tolerance_never_settles() -> None:
    meter = RateMeter(RULE)
    assert feed(meter, lambda t: 100_000.0 if int(t / 0.3) % 2 else 140_000.0, until=12.0) is None
    assert meter.rate() is not None


def test_nothing_is_known_before_two_samples_and_time_or_bytes_cannot_go_back() -> None:
    meter = RateMeter(RULE)
    assert meter.rate() is None and not meter.stable
    meter.add(1.0, 100)
    assert meter.rate() is None
    with pytest.raises(ValueError):
        meter.add(0.5, 200)
    with pytest.raises(ValueError):
        meter.add(2.0, 50)
    with pytest.raises(ValueError):
        Stability(count=1)


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(1e3, 1e8), gaps=st.lists(st.floats(0.001, 0.25), min_size=40, max_size=400))
def test_any_sampling_of_a_constant_rate_gives_that_rate(rate: float, gaps: list[float]) -> None:
    """However unevenly the bytes are sampled, a constant rate is what comes out, once stable."""
    meter = RateMeter(RULE)
    t = 0.0
    meter.add(t, 0.0)
    for gap in gaps:
        t += gap
        meter.add(t, rate * t)
    if meter.elapsed >= RULE.window_s:
        assert meter.rate() == pytest.approx(rate, rel=1e-6)
    if meter.elapsed >= RULE.span_s + RULE.step_s * 2 + max(gaps) * RULE.count:
        assert meter.stable


# -- TCP_INFO and the cap ------------------------------------------------------------------------

def test_tcp_info_fields_are_read_from_their_offsets() -> None:
    raw = bytearray(232)
    raw[5] = 1  # TCPI_OPT_TIMESTAMPS
    struct.pack_into("=IIII", raw, 16, 1448, 1400, 0, 3)  # snd_mss, rcv_mss, unacked, sacked
    struct.pack_into("=QQ", raw, 120, 10_000, 20_000)  # bytes_acked, bytes_received
    struct.pack_into("=II", raw, 136, 30, 40)  # segs_out, segs_in
    struct.pack_into("=I", raw, 152, 15)  # data_segs_in
    struct.pack_into("=Q", raw, 200, 11_000)  # bytes_sent
    counters = parse_tcp_info(bytes(raw))
    assert counters == TcpCounters(11_000, 10_000, 20_000, 30, 40, 52, 1448, 1400, 3, 15)
    assert counters.wire_bytes == 11_000 + 20_000 + 70 * 52
    assert counters.bytes_delivered == 10_000 + 3 * 1448
    assert counters.bytes_arrived == 15 * 1400, "15 segments of 1400 bytes, some behind a hole"
    assert parse_tcp_info(bytes(raw), ipv6=True).header_bytes == 72
    assert parse_tcp_info(bytes(raw[:200])).bytes_sent == 10_000, "kernels before 4.19: acked stands in"
    assert parse_tcp_info(bytes(raw[:143])) is None


def test_tcp_info_of_a_real_connection_counts_what_it_moved(server: RunningSpeedServer) -> None:
    host, port = server.server.server_address[:2]
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"GET /bytes?n=100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = 0
        while chunk := sock.recv(65536):
            got += len(chunk)
        counters = parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256))
    print(counters)
    assert counters is not None
    # The SYN and the FIN count one byte each in TCP's sequence space, and so here.
    assert got > 100_000 and counters.bytes_received in (got, got + 1)
    assert counters.bytes_sent == 60 and counters.bytes_acked in (60, 61)
    assert counters.wire_bytes > got


@given(raw=st.binary(max_size=300), ipv6=st.booleans())
def test_any_tcp_info_bytes_give_counters_or_none(raw: bytes, ipv6: bool) -> None:
    counters = parse_tcp_info(raw, ipv6)
    assert counters is None or counters.wire_bytes >= 0


@given(text=st.text(max_size=60))
def test_a_target_is_a_url_or_a_value_error(text: str) -> None:
    try:
        url = server_url(text)
    except ValueError:
        return
    assert url.startswith("http://") and "/" in url[len("http://"):]


@pytest.mark.parametrize("cap, body", [
    (10_000_000, int((10_000_000 - HEAD_ALLOWANCE) / WIRE_FACTOR)),
    (HEAD_ALLOWANCE, 0),
    (100, 0),
])
def test_body_budget_leaves_room_for_headers(cap: int, body: int) -> None:
    assert body_budget(cap) == body


# -- the speed server --------------------------------------------------------------------------

def fetch(server: RunningSpeedServer, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = server.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("method, path, status, length_or_text", [
    ("GET", "/bytes?n=0", 200, 0),
    ("GET", "/bytes?n=123457", 200, 123457),
    ("GET", "/bytes?n=-1", 400, None),
    ("GET", "/bytes?n=1e6", 400, None),
    ("GET", "/bytes?n=1&n=2", 400, None),
    ("GET", f"/bytes?n={MAX_BYTES + 1}", 400, None),
    ("GET", "/bytes", 400, None),
    ("GET", "/speedtest/latency.txt?x=1700000000000.0", 200, b"test=test\n"),
    ("GET", "/speedtest/random350x350.jpg?x=1.0", 200, MINI_JPEG_BYTES[350]),
    ("GET", "/speedtest/random100x100.jpg", 200, 19800),
    ("GET", "/speedtest/random350x500.jpg", 404, None),
    ("GET", "/speedtest/upload.php", 200, b"size=0\n"),
    ("GET", "/nothing-here", 404, None),
    ("HEAD", "/bytes?n=5000", 200, 0),
])
def test_speed_server_routes(server: RunningSpeedServer, method: str, path: str, status: int, length_or_text) -> None:
    got_status, body = fetch(server, method, path)
    assert got_status == status
    if isinstance(length_or_text, int):
        assert len(body) == length_or_text
    elif length_or_text is not None:
        assert body == length_or_text


def test_speed_server_index_names_the_upload_extension_as_speedtest_cli_looks_for_it(server: RunningSpeedServer) -> None:
    status, body = fetch(server, "GET", "/")
    assert status == 200 and b'upload_extension: "php"' in body


@pytest.mark.parametrize("path", ["/upload", "/speedtest/upload.php?x=1.0"])
def test_speed_server_takes_uploads_and_says_how_much_arrived(server: RunningSpeedServer, path: str) -> None:
    body = b"content1=" + b"A" * 300_000
    assert fetch(server, "POST", path, body) == (200, f"size={len(body)}\n".encode())
    assert fetch(server, "POST", "/elsewhere", b"x")[0] == 404


def test_generated_bytes_do_not_compress(server: RunningSpeedServer) -> None:
    import zlib

    _, body = fetch(server, "GET", "/bytes?n=200000")
    assert len(zlib.compress(body)) > 0.99 * len(body)


# -- the http backend on the loopback ----------------------------------------------------------

@pytest.mark.parametrize("cap", [100_000, 1_000_000, 20_000_000])
def test_http_backend_never_asks_for_more_than_its_cap(server: RunningSpeedServer, cap: int) -> None:
    result = HttpSpeedTest(server.url, cap_bytes=cap).run()
    print(result)
    assert result.backend == "http" and result.server == server.url and result.error is None
    assert result.down_mbps > 0 and result.up_mbps > 0
    assert 0 < result.bytes_used <= cap
    assert result.duration_s < 5


def test_http_backend_failures_are_readings_not_exceptions(server: RunningSpeedServer) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    refused = HttpSpeedTest(f"http://127.0.0.1:{port}/").run()
    assert refused.down_mbps is None and refused.up_mbps is None and refused.bytes_used == 0
    assert refused.error == f"download: cannot connect to 127.0.0.1:{port}: Connection refused"
    wrong_path = HttpSpeedTest(server.url + "not/here/").run()
    assert wrong_path.error == "download: the server answered HTTP 404"
    tiny = HttpSpeedTest(server.url, cap_bytes=20_000).run()
    assert tiny.error is not None and tiny.error.startswith("download: byte cap too small")
    no_interface = HttpSpeedTest(server.url, interface="nosuchif0").run()
    assert no_interface.error == "download: interface nosuchif0 not found"
    unresolvable = HttpSpeedTest("http://no-such-host.invalid/").run()
    assert unresolvable.error.startswith("download: cannot resolve no-such-host.invalid")
    for reading in (refused, wrong_path, tiny, no_interface, unresolvable):
        assert isinstance(reading, Throughput) and reading.backend == "http"


def test_a_server_that_hangs_up_midway_is_an_error() -> None:
    class HangUp(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "5000000")
            self.end_headers()
            self.wfile.write(b"x" * 10_000)
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), HangUp)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        result = HttpSpeedTest(f"http://127.0.0.1:{httpd.server_address[1]}/").run()
    finally:
        httpd.shutdown()
        httpd.server_close()
    print(result)
    assert result.error == "download: the server closed the connection after 10000 of 5000000 bytes"
    assert result.up_mbps is None, "no upload after a failed download"


@pytest.mark.parametrize("url", ["https://example.org/", "ftp://x/", "http:///nohost", "example.org"])
def test_http_backend_wants_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        HttpSpeedTest(url)


@pytest.mark.parametrize("target, url", [
    ("10.0.0.2", "http://10.0.0.2:8080/"),
    ("speed.example.id:9000", "http://speed.example.id:9000/"),
    ("http://speed.example.id:9000", "http://speed.example.id:9000/"),
    ("http://speed.example.id/speed/", "http://speed.example.id/speed/"),
    ("[2001:db8::1]:8080", "http://[2001:db8::1]:8080/"),
])
def test_a_target_becomes_the_speed_servers_url(target: str, url: str) -> None:
    assert server_url(target) == url


@pytest.mark.parametrize("target", ["https://x/", "host:port", "host/path", "host:99999"])
def test_a_target_that_is_no_speed_server_url_is_refused(target: str) -> None:
    with pytest.raises(ValueError):
        server_url(target)


def test_a_plan_is_checked() -> None:
    with pytest.raises(ValueError):
        ThroughputPlan(backend="iperf", target="http://x/")
    with pytest.raises(ValueError):
        ThroughputPlan(backend="http", target=None)
    assert ThroughputPlan(backend="speedtest").target is None


# -- speedtest-cli without speedtest.net ---------------------------------------------------------

# speedtest.net's configuration as the library downloads it (speedtest-config.php, captured in
# 2019 by a speedtest-cli user; client fields shortened), served through an HTTP proxy so that
# the library's own get_config() parses it.
SPEEDTEST_NET_CONFIG_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<settings>
<client ip="127.0.0.1" lat="-0.5" lon="117.1" isp="Example" isprating="3.7" rating="0" ispdlavg="0" ispulavg="0" loggedin="0" country="ID"/>
<server-config threadcount="4" ignoreids="" notonmap="" forcepingid="" preferredserverid=""/>
<licensekey>f7a45ced624d3a70-1df5b7cd427370f7-b91ee21d6cb22d7b</licensekey>
<customer>speedtest</customer>
<odometer start="19601573884" rate="12"/>
<times dl1="5000000" dl2="35000000" dl3="800000000" ul1="1000000" ul2="8000000" ul3="35000000"/>
<download testlength="10" initialtest="250K" mintestsize="250K" threadsperurl="4"/>
<upload testlength="10" ratio="5" initialtest="0" mintestsize="32K" threads="2" maxchunksize="512K" maxchunkcount="50" threadsperurl="4"/>
<latency testlength="10" waittime="50" timeout="20"/>
</settings>
"""


def test_the_supplied_configuration_is_what_the_library_makes_of_speedtest_nets(monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[str] = []

    class FakeSpeedtestNet(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(SPEEDTEST_NET_CONFIG_XML)))
            self.end_headers()
            self.wfile.write(SPEEDTEST_NET_CONFIG_XML)

        def log_message(self, *args) -> None:
            pass

    proxy = HTTPServer(("127.0.0.1", 0), FakeSpeedtestNet)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        library = speedtest.Speedtest()  # plain http: the proxy sees the request
    finally:
        proxy.shutdown()
        proxy.server_close()
    print(requested)
    assert requested and requested[0].startswith("http://www.speedtest.net/speedtest-config.php")
    ours = mini_config(10)
    for key in ("sizes", "counts", "threads", "length", "upload_max", "ignore_servers"):
        assert ours[key] == library.config[key], key


def test_private_speedtest_never_asks_speedtest_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every HTTP request sent to a closed port, constructing it still works."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(speedtest.ConfigRetrievalError):
        speedtest.Speedtest()
    test = PrivateSpeedtest(seconds=3)
    assert test.config["length"] == {"upload": 3, "download": 3}
    assert test.config["threads"] == {"upload": 2, "download": 8}


def test_speedtest_backend_against_the_mini_layout(server: RunningSpeedServer) -> None:
    result = run_speedtest(server.url, seconds=1.0)
    print(result)
    assert result.backend == "speedtest" and result.server == server.url and result.error is None
    assert result.down_mbps > 10 and result.up_mbps > 10
    assert result.bytes_used > 1_000_000
    assert result.duration_s < 10


def test_speedtest_backend_failures_are_readings() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = run_speedtest(f"http://127.0.0.1:{port}/", seconds=1.0)
    print(result)
    assert result.backend == "speedtest" and result.down_mbps is None
    assert result.error.startswith("SpeedtestMiniConnectFailure: Failed to connect to http://127.0.0.1:")


def test_measure_throughput_prints_the_part_and_records_it(server: RunningSpeedServer, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from agent.commands.main import main
    from agent.unit.measure.usage import UsageLedger

    ledger = tmp_path / "usage.db"
    config = tmp_path / "agent.toml"
    config.write_text(f'[budget]\nledger = "{ledger}"\ndaily = "100MB"\nuplink_reserve = "0B"\n')
    assert main(["measure", "throughput", "--json", "--config", str(config), "--target", server.url, "--cap", "1MB"]) == 0
    part = json.loads(capsys.readouterr().out)
    print(part)
    assert set(part) == {"backend", "server", "down_mbps", "up_mbps", "bytes_used", "duration_s", "error"}
    assert part["backend"] == "http" and 0 < part["bytes_used"] <= 1_000_000
    from datetime import datetime, timezone

    with UsageLedger(ledger) as book:
        assert book.totals(datetime.now(timezone.utc)).day_bytes == {"throughput/http": part["bytes_used"]}


@pytest.mark.parametrize("argv, message", [
    (["--cap", "lots"], "--cap: expected a size"),
    (["--cap", "10KB"], "--cap must be at least 100KB"),
    (["--seconds", "0"], "--seconds must be 1 to 60"),
    (["--target", "https://x/"], "--target: expected an http:// URL"),
])
def test_measure_throughput_argument_mistakes_exit_2(argv: list[str], message: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from agent.commands.main import main

    config = tmp_path / "agent.toml"
    config.write_text(f'[budget]\nledger = "{tmp_path / "usage.db"}"\n')
    assert main(["measure", "throughput", "--config", str(config), *(["--target", "127.0.0.1:9"] if "--target" not in argv else []), *argv]) == 2
    assert message in capsys.readouterr().err
