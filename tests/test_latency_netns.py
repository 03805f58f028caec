"""`blankspot measure latency` across an emulated cellular link with a known delay.

Each test builds a tests/support/netlab.py lab (client and server namespaces joined by a link with
set delay, jitter and loss) and runs the real command in the client namespace.  The figures
must match the link: average round trip within max(2 ms, 3 %) of the configured one, loss
within four standard deviations of the binomial expectation.
"""
from __future__ import annotations

import json
import math
import shutil
import sys

import pytest

from agent.shared.installed import doc
from tests.support.netlab import NetLab

ALL_GROUPS = "0 2147483647"


def measure(lab: NetLab, *args: str, privileged: bool = True, timeout: float = 60.0) -> dict:
    """Run the command in the client namespace; without ``privileged``, CAP_NET_RAW is dropped."""
    argv = [sys.executable, "-m", "agent", "measure", "latency", "--json", *args]
    if not privileged:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to drop CAP_NET_RAW")
        argv = ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", *argv]
    result = lab.run(lab.client_ns, argv, timeout=timeout)
    assert result.returncode == 0, result.stderr
    part = json.loads(result.stdout)
    assert (part["error"] is None) == (result.stderr == ""), result.stderr
    return part


def allowed_error_ms(rtt_ms: float) -> float:
    return max(2.0, 0.03 * rtt_ms)


def set_ping_group_range(lab: NetLab, groups: str) -> None:
    """The sysctl is per network namespace: this changes the client's only."""
    result = lab.run(lab.client_ns, ["sysctl", "-w", f"net.ipv4.ping_group_range={groups}"])
    assert result.returncode == 0, result.stderr


# -- accuracy ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["icmp", "tcp"])
def test_round_trip_on_a_50ms_link(backend: str) -> None:
    with NetLab(delay_ms=50.0) as lab:
        lab.accept_tcp(1883)
        part = measure(lab, "--target", f"{lab.server_ip}:1883", "--backend", backend, "--interface", lab.client_if,
                       "--count", "20", "--interval", "0.05", "--timeout", "1")
    error = part["rtt_avg_ms"] - 50.0
    print(f"{backend} on a 50 ms link: avg {part['rtt_avg_ms']} ms (error {error:+.3f} ms), "
          f"min {part['rtt_min_ms']}, max {part['rtt_max_ms']}, jitter {part['jitter_ms']}")
    assert part["method"] == backend and (part["sent"], part["received"], part["loss_pct"]) == (20, 20, 0.0)
    assert abs(error) <= allowed_error_ms(50.0)
    assert part["rtt_min_ms"] >= 50.0 - 0.05  # never faster than the link
    assert part["jitter_ms"] < 1.0


def test_round_trip_and_loss_on_a_300ms_jittery_lossy_link() -> None:
    count, loss, jitter = 400, 5.0, 30.0
    with NetLab(delay_ms=300.0, jitter_ms=jitter, loss_pct=loss, seed=7) as lab:
        part = measure(lab, "--target", lab.server_ip, "--backend", "icmp",
                       "--count", str(count), "--interval", "0.02", "--timeout", "1")
    error = part["rtt_avg_ms"] - 300.0
    sigma = 100.0 * math.sqrt(loss / 100 * (1 - loss / 100) / count)
    # The round trip is 300 ms plus two uniform ±15 ms offsets; the mean absolute difference
    # of two such round trips is 7/15 of 30 ms (a sum of four uniforms), 14 ms.
    expected_jitter = jitter * 7 / 15
    print(f"300 ± 30 ms, 5 % loss: avg {part['rtt_avg_ms']} ms (error {error:+.3f} ms), min {part['rtt_min_ms']}, "
          f"max {part['rtt_max_ms']}, loss {part['loss_pct']} % (expected 5 ± {4 * sigma:.2f}), "
          f"jitter {part['jitter_ms']} ms (expected ~{expected_jitter:.1f})")
    assert part["sent"] == count
    assert abs(error) <= allowed_error_ms(300.0)
    assert abs(part["loss_pct"] - loss) <= 4 * sigma
    assert 300.0 - jitter - 0.05 <= part["rtt_min_ms"]  # never faster than the link (a busy machine can be slower)
    assert 0.75 * expected_jitter <= part["jitter_ms"] <= 1.25 * expected_jitter


def test_a_tcp_probe_whose_syn_was_resent_is_lost_not_a_one_second_round_trip() -> None:
    with NetLab(delay_ms=50.0, loss_pct=30.0, seed=3) as lab:
        lab.accept_tcp(1883)
        part = measure(lab, "--target", f"{lab.server_ip}:1883", "--backend", "tcp",
                       "--count", "30", "--interval", "0.02", "--timeout", "2")
    print(f"tcp, 30 % loss: {part['received']}/{part['sent']} answered, max {part['rtt_max_ms']} ms")
    assert 0 < part["received"] < 30
    assert part["rtt_max_ms"] < 500.0  # an answer to a resent SYN would take about 1050 ms


# -- where ICMP is blocked ---------------------------------------------------------------

def test_auto_falls_back_to_tcp_when_icmp_is_blocked() -> None:
    with NetLab(delay_ms=50.0) as lab:
        lab.block_icmp()
        lab.accept_tcp(1883)
        target = f"{lab.server_ip}:1883"
        icmp = measure(lab, "--target", target, "--backend", "icmp", "--count", "5", "--interval", "0.05", "--timeout", "0.5")
        auto = measure(lab, "--target", target, "--count", "10", "--interval", "0.05", "--timeout", "1")
    print(f"ICMP blocked, auto fell back to {auto['method']}: avg {auto['rtt_avg_ms']} ms "
          f"(error {auto['rtt_avg_ms'] - 50.0:+.3f} ms)")
    # Blocked ICMP alone is a measurement that got nothing back, not an error.
    assert (icmp["method"], icmp["sent"], icmp["received"], icmp["loss_pct"], icmp["error"]) == ("icmp", 5, 0, 100.0, None)
    assert (auto["method"], auto["target"], auto["received"], auto["error"]) == ("tcp", target, 10, None)
    assert abs(auto["rtt_avg_ms"] - 50.0) <= allowed_error_ms(50.0)


# -- the two ICMP sockets and the permission question ------------------------------------

def test_unprivileged_datagram_socket_when_ping_group_range_allows() -> None:
    with NetLab(delay_ms=20.0) as lab:
        set_ping_group_range(lab, ALL_GROUPS)
        forced = measure(lab, "--target", lab.server_ip, "--icmp-socket", "dgram", "--interface", lab.client_if,
                         "--count", "10", "--interval", "0.02", "--timeout", "1", privileged=False)
        auto = measure(lab, "--target", lab.server_ip, "--count", "5", "--interval", "0.02", "--timeout", "1",
                       privileged=False)
    print(f"datagram ICMP socket without CAP_NET_RAW: avg {forced['rtt_avg_ms']} ms on a 20 ms link")
    assert (forced["method"], forced["received"], forced["error"]) == ("icmp", 10, None)
    assert abs(forced["rtt_avg_ms"] - 20.0) <= allowed_error_ms(20.0)
    assert (auto["method"], auto["received"]) == ("icmp", 5)  # auto found the datagram socket


def test_raw_socket() -> None:
    with NetLab(delay_ms=20.0) as lab:
        part = measure(lab, "--target", lab.server_ip, "--icmp-socket", "raw", "--interface", lab.client_if,
                       "--count", "10", "--interval", "0.02", "--timeout", "1")
    print(f"raw ICMP socket: avg {part['rtt_avg_ms']} ms on a 20 ms link")
    assert (part["method"], part["received"], part["error"]) == ("icmp", 10, None)
    assert abs(part["rtt_avg_ms"] - 20.0) <= allowed_error_ms(20.0)


def test_without_any_icmp_permission_the_reading_says_why_and_auto_uses_tcp() -> None:
    with NetLab(delay_ms=20.0) as lab:
        set_ping_group_range(lab, "1 0")  # Debian's and Raspberry Pi OS's default: nobody
        lab.accept_tcp(443)
        icmp = measure(lab, "--target", lab.server_ip, "--backend", "icmp", "--count", "3", privileged=False)
        dgram = measure(lab, "--target", lab.server_ip, "--backend", "icmp", "--icmp-socket", "dgram", "--count", "3")
        auto = measure(lab, "--target", lab.server_ip, "--count", "3", "--interval", "0.02", privileged=False)
    assert (icmp["sent"], icmp["loss_pct"]) == (0, 100.0)
    assert icmp["error"] == ("ICMP not permitted: net.ipv4.ping_group_range (1 0) does not include group 0 "
                             f"and no CAP_NET_RAW for a raw socket (see {doc('measurement.md')})")
    assert dgram["error"].startswith("ICMP not permitted: net.ipv4.ping_group_range (1 0)")
    assert (auto["method"], auto["target"], auto["received"]) == ("tcp", f"{lab.server_ip}:443", 3)


# -- nothing to measure ------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["icmp", "tcp", "auto"])
def test_no_route_is_a_reading_with_an_error(backend: str) -> None:
    with NetLab() as lab:
        part = measure(lab, "--target", "192.0.2.1", "--backend", backend, "--count", "3")
    assert (part["sent"], part["received"], part["loss_pct"]) == (0, 0, 100.0)
    assert part["error"].endswith("Network is unreachable")


def test_missing_interface_is_a_reading_with_an_error() -> None:
    with NetLab() as lab:
        part = measure(lab, "--target", lab.server_ip, "--interface", "wwan0", "--count", "3")
    assert (part["sent"], part["loss_pct"], part["error"]) == (0, 100.0, "interface wwan0 not found")


def test_a_silent_host_is_total_loss_not_an_error() -> None:
    with NetLab(delay_ms=10.0) as lab:
        part = measure(lab, "--target", "10.77.0.99", "--count", "3", "--interval", "0.05", "--timeout", "0.5")
    assert (part["method"], part["sent"], part["received"], part["loss_pct"]) == ("tcp", 3, 0, 100.0)
    assert part["rtt_avg_ms"] is None and part["error"] is None
