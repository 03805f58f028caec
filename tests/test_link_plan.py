"""Batch size and in-flight window chosen from what the link does (agent.unit.link_plan), and
the kernel's figures they are chosen from (agent.unit.tcp_info)."""
from __future__ import annotations

import socket
import threading

import pytest

from agent.unit.link_plan import LinkEstimate, LinkMeter, SendingPlan, plan_sending
from agent.unit.tcp_info import TcpInfo, read_tcp_info

KBIT = 1000 / 8  # bytes/s


def link(rate_kbit: float | None, min_rtt_ms: float, loss_pct: float = 0.0, per_reading: float = 17.0) -> LinkEstimate:
    return LinkEstimate(min_rtt_ms * 1.1, min_rtt_ms, loss_pct, None if rate_kbit is None else rate_kbit * KBIT,
                        per_reading)


@pytest.mark.parametrize("estimate, plan, why", [
    (None, SendingPlan(200, 8), "nothing measured yet: the configured ceilings"),
    (link(None, 300), SendingPlan(200, 8), "no rate while the link was never busy"),
    (link(200, 300), SendingPlan(200, 6), "the edge of a blank spot, compact: 2 x 7.5 KB in flight in 3.4 KB batches, and one more"),
    (link(200, 300, per_reading=580), SendingPlan(86, 2), "the same link, JSON: 2 s of it is 86 readings"),
    (link(200, 300, loss_pct=8, per_reading=580), SendingPlan(43, 2), "lossy: batches of 1 s"),
    (link(20_000, 60), SendingPlan(200, 8), "a fast link: the ceilings"),
    (link(2_000, 600), SendingPlan(200, 8), "a satellite hop: a full window"),
    (link(9.6, 900, per_reading=580), SendingPlan(10, 2), "GPRS at its worst: the floors"),
])
def test_the_plan_fills_the_link_and_no_more(estimate, plan: SendingPlan, why: str) -> None:
    assert plan_sending(estimate, batch_size=200, max_inflight=8) == plan, why


def test_the_configured_ceilings_hold_even_below_the_floors() -> None:
    assert plan_sending(link(9.6, 900), batch_size=5, max_inflight=1) == SendingPlan(5, 1)


def test_the_meter_takes_the_rate_only_from_a_busy_link() -> None:
    meter = LinkMeter()
    meter.sent(3400 + 60, 200)
    assert meter.estimate() is None, "no kernel figures yet"
    idle = TcpInfo(rtt_ms=320, min_rtt_ms=300, delivery_rate=900, app_limited=True, bytes_sent=10_000,
                   bytes_retrans=200)
    meter.observed(idle)
    assert meter.estimate() == LinkEstimate(320, 300, 2.0, None, 17.3)
    meter.observed(TcpInfo(330, 300, 25_000, False, 20_000, 400))
    assert meter.estimate().rate == 25_000
    meter.connected()
    assert meter.estimate() is None, "a new connection's figures start again"


def test_the_status_names_what_was_learnt() -> None:
    estimate = link(200, 300)
    assert plan_sending(estimate, 200, 8).as_status(estimate) == {
        "batch": 200, "window": 6, "rtt_ms": 330.0, "min_rtt_ms": 300.0, "loss_pct": 0.0, "rate_kbit": 200.0,
        "bytes_per_reading": 17.0}
    assert SendingPlan(200, 8).as_status(None) == {"batch": 200, "window": 8}


def test_the_kernel_reports_a_real_connection() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    received = bytearray()

    def read() -> None:
        while len(received) < 200_000:
            received.extend(peer.recv(65536))

    reader = threading.Thread(target=read)
    reader.start()
    client.sendall(b"x" * 200_000)
    reader.join(5)
    info = read_tcp_info(client)
    client.close()
    peer.close()
    server.close()
    assert info is not None
    assert info.bytes_sent >= 200_000 and info.bytes_retrans == 0 and info.loss_pct == 0.0
    assert 0 < info.min_rtt_ms <= info.rtt_ms < 1000


def test_what_is_not_a_tcp_connection_has_no_figures() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert read_tcp_info(udp) is None
    finally:
        udp.close()
    assert read_tcp_info(None) is None


def test_a_unit_behind_a_slow_long_link_says_what_it_learnt(tmp_path) -> None:
    """A real agent drains its backlog over an emulated 1 Mbit/s link with 200 ms round trip;
    its status (read with `blankspot tail --status` beside the broker) carries the round
    trip it measured, the rate while busy, and the batch and window it chose."""
    import dataclasses
    import json
    import subprocess
    import sys

    from agent.shared.reading import Reading
    from agent.unit.buffer import ReadingBuffer
    from tests.support.netlab import LAB_BROKER_PORT, BrokerInNamespace, NetLab
    from tests.support.readings_factory import signal_reading
    from tests.support.unit_config import write_config

    buffer = ReadingBuffer(tmp_path / "buffer.db", "probe-1")
    base: Reading = signal_reading("probe-1")
    buffer.append_many(dataclasses.replace(base, part=dataclasses.replace(base.part, rsrp_dbm=-100.0 - i % 17))
                       for i in range(6000))
    buffer.close()
    with NetLab(delay_ms=200, rate_mbit=1.0, seed=3) as lab:
        BrokerInNamespace(lab, lab.server_ns, tmp_path / "broker").start()
        tail = lab.popen(lab.server_ns, [sys.executable, "-m", "agent", "tail", "--status", "--broker",
                                         f"mqtt://127.0.0.1:{LAB_BROKER_PORT}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "reading" in tail.stderr.readline()
        config = write_config(tmp_path / "agent.toml", LAB_BROKER_PORT, tmp_path / "buffer.db", {
            "uplink": {"host": lab.server_ip, "encoding": "json", "status_interval": "1s"},
            "source": {"kind": "synthetic", "interval": "1h"}}, device="probe-1")
        lab.popen(lab.client_ns, [sys.executable, "-m", "agent", "run", "--config", str(config)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        link = None
        deadline = threading.Timer(60, tail.kill)  # a unit that never says it ends the loop, not the test run
        deadline.start()
        for line in tail.stdout:
            message = json.loads(line)
            if message.get("schema") == "blankspot.status/1" and message.get("link", {}).get("rate_kbit"):
                link = message["link"]
                break
        deadline.cancel()
    assert link is not None
    assert 180 <= link["min_rtt_ms"] <= 400, link
    assert 300 <= link["rate_kbit"] <= 1100, link
    assert 500 < link["bytes_per_reading"] < 700, link
    # 1 Mbit/s is 250 KB in 2 s: JSON readings of ~600 B fill the configured 200; twice the
    # round trip of the link is 50 KB: one batch of ~120 KB and one more.
    assert (link["batch"], link["window"]) == (200, 2), link
