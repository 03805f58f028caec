"""The link lab itself: the figures a test sets are the figures the link has.

Latency and throughput tests trust tests/support/netlab.py, so it is checked on its own: the round
trip across it is the configured delay (the emulator's own error well under a millisecond),
``tbf`` sets the rate per direction, and nothing it creates outlives it.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from agent.shared.polling import wait_until
from tests.support.netlab import NetLab, remove_stale_namespaces, require_netlab

CONNECT_TIMES = """
import socket, sys, time
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    socket.create_connection((sys.argv[1], 7000), timeout=5).close()
    times.append((time.perf_counter() - start) * 1000)
    time.sleep(0.01)
print(" ".join(f"{t:.3f}" for t in times))
"""

# Receive one connection, print bytes and seconds from the first byte to the last.
SINK = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(1)
print("listening", flush=True)
conn = server.accept()[0]
total, first = 0, None
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    first = first or time.perf_counter()
    total += len(chunk)
print(total, time.perf_counter() - first, flush=True)
"""

SOURCE = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
conn.sendall(bytes(int(sys.argv[3])))
conn.close()
"""

# TCP payload per full frame over the frame tbf counts: 1448 bytes of 1514 (timestamps on).
GOODPUT_SHARE = 1448 / 1514


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def namespace_pids(name: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()


def test_round_trip_across_the_lab_is_the_configured_delay() -> None:
    with NetLab(delay_ms=40.0) as lab:
        lab.accept_tcp(7000)
        result = lab.run(lab.client_ns, [sys.executable, "-c", CONNECT_TIMES, lab.server_ip, "20"])
        assert result.returncode == 0, result.stderr
        times = sorted(float(t) for t in result.stdout.split())
        stats = lab.link_stats()
    median = times[len(times) // 2]
    print(f"TCP connect across a 40 ms link: median {median:.3f} ms, min {times[0]:.3f}, max {times[-1]:.3f}; "
          f"emulator lateness p50/p99/max up {stats['up']['late_ms_p50']}/{stats['up']['late_ms_p99']}/"
          f"{stats['up']['late_ms_max']} ms, down {stats['down']['late_ms_p50']}/{stats['down']['late_ms_p99']}/"
          f"{stats['down']['late_ms_max']} ms")
    assert 40.0 <= times[0] and median < 41.0
    for direction in ("up", "down"):
        assert stats[direction]["forwarded"] > 0 and stats[direction]["send_errors"] == 0
        assert stats[direction]["late_ms_p50"] < 0.5


def test_loss_and_delay_can_change_while_the_lab_runs() -> None:
    with NetLab(delay_ms=10.0) as lab:
        lab.accept_tcp(7000)
        lab.set_link(delay_ms=70.0, loss_pct=0.0)
        result = lab.run(lab.client_ns, [sys.executable, "-c", CONNECT_TIMES, lab.server_ip, "3"])
        assert min(float(t) for t in result.stdout.split()) >= 70.0
        assert lab.link_stats()["params"] == {"delay_ms": 70.0, "jitter_ms": 0.0, "loss_pct": 0.0}
        lab.set_link(loss_pct=100.0)
        result = lab.run(lab.client_ns, [sys.executable, "-c", CONNECT_TIMES, lab.server_ip, "1"])
        assert result.returncode != 0  # nothing gets through


def transfer_mbit(lab: NetLab, sender_ns: str, receiver_ns: str, receiver_ip: str, size: int, port: int) -> float:
    sink = lab.popen(receiver_ns, [sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "listening"
    sent = lab.run(sender_ns, [sys.executable, "-c", SOURCE, receiver_ip, str(port), str(size)], timeout=30)
    assert sent.returncode == 0, sent.stderr
    total, seconds = sink.stdout.readline().split()
    assert int(total) == size
    return size * 8 / float(seconds) / 1e6


def test_tbf_sets_the_rate_of_each_direction() -> None:
    with NetLab(delay_ms=2.0, rate_mbit=8.0) as lab:
        lab.shape(8.0, up_mbit=4.0)
        up = transfer_mbit(lab, lab.client_ns, lab.server_ns, lab.server_ip, 600_000, 7001)
        down = transfer_mbit(lab, lab.server_ns, lab.client_ns, lab.client_ip, 1_200_000, 7002)
        lab.shape(None)
        started = time.monotonic()
        unshaped = transfer_mbit(lab, lab.client_ns, lab.server_ns, lab.server_ip, 1_200_000, 7003)
        print(f"goodput up {up:.2f} Mbit/s (tbf 4), down {down:.2f} Mbit/s (tbf 8), "
              f"unshaped {unshaped:.1f} Mbit/s in {time.monotonic() - started:.2f} s")
    assert 0.9 * 4.0 * GOODPUT_SHARE <= up <= 4.0 * 1.02
    assert 0.9 * 8.0 * GOODPUT_SHARE <= down <= 8.0 * 1.02
    assert unshaped > 12.0


def test_everything_is_removed_also_after_a_failure() -> None:
    with pytest.raises(ZeroDivisionError):
        with NetLab(delay_ms=5.0) as lab:
            created = {lab.client_ns, lab.mid_ns, lab.server_ns}
            assert created <= namespaces()
            emulator = lab._emulator
            listener = lab.accept_tcp(7000)
            1 / 0
    assert not created & namespaces()
    assert emulator.poll() is not None and listener.poll() is not None


def test_namespaces_of_a_killed_run_are_removed_at_the_next_start() -> None:
    require_netlab()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = f"bslab-{dead.pid}-1-m"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "60"])
    assert wait_until(lambda: str(sleeper.pid) in namespace_pids(stale), 5), "the sleeper is inside"
    assert stale in remove_stale_namespaces()
    assert sleeper.wait(timeout=5) != 0  # its processes were killed with it
    assert stale not in namespaces()


def test_each_lab_has_its_own_names() -> None:
    with NetLab() as first, NetLab() as second:
        assert len({first.client_ns, first.server_ns, second.client_ns, second.server_ns}) == 4
        ping = second.run(second.client_ns, [sys.executable, "-m", "agent", "measure", "latency", "--json",
                                             "--target", second.server_ip, "--count", "2", "--interval", "0.01"])
        assert '"received": 2' in ping.stdout
