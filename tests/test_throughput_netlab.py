"""Throughput over a shaped link: both backends against the true rate, the byte cap, the budget.

The link is tests/support/netlab.py's: client and server namespaces joined by an emulated link with a
50 ms round trip, ``tbf`` setting its rate in each direction.  The speed server
(``blankspot speed-server``) runs in the server namespace, ``blankspot measure throughput``
in the client namespace, which has no route anywhere else: no Internet.

The true rate.  ``tbf`` limits the bytes of whole Ethernet frames, so a link shaped to
``R`` Mbit/s carries TCP payload at ``R × 1448 / 1514``: a full frame is 1514 bytes (1500
of IP packet + 14 of Ethernet header) and carries 1448 bytes of payload behind 20 bytes of
IP header, 20 of TCP header and 12 of TCP timestamp option.  Both backends report payload
goodput, as every speed test does, so that is what they are compared with: 0.956 Mbit/s on
a 1 Mbit/s link.  (On a cellular interface there is no Ethernet header: 1448 / 1500.)
"""
from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from agent.unit.measure.usage import UsageLedger
from agent.shared.reading import Reading, reading_from_dict
from tests.support.netlab import NetLab, require_netlab

PORT = 8080
GOODPUT_PER_LINE_BYTE = 1448 / 1514
TOLERANCE = 0.10
SPEEDTEST_UPLOAD_TOLERANCE = 0.20


@contextmanager
def speed_lab(rate_mbit: float) -> Iterator[NetLab]:
    require_netlab()
    with NetLab(delay_ms=50.0, rate_mbit=rate_mbit, seed=1) as lab:
        lab.popen(lab.server_ns, [sys.executable, "-m", "agent", "speed-server", "--port", str(PORT),
                                  "--bind", lab.server_ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lab.wait_tcp(lab.server_ns, PORT)
        yield lab


def write_config(tmp_path: Path, budget: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'[budget]\nledger = "{tmp_path / "usage.db"}"\n{budget}')
    return path


def measure(lab: NetLab, config: Path, *args: str, timeout: float = 120.0) -> dict[str, Any]:
    done = lab.run(lab.client_ns, [sys.executable, "-m", "agent", "measure", "throughput", "--json",
                                   "--config", str(config), "--interface", lab.client_if, *args], timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def counters(lab: NetLab) -> int:
    out = lab.run(lab.client_ns, ["cat", f"/sys/class/net/{lab.client_if}/statistics/rx_bytes",
                                  f"/sys/class/net/{lab.client_if}/statistics/tx_bytes"]).stdout.split()
    return int(out[0]) + int(out[1])


def error_of(mbps: float | None, rate_mbit: float) -> float:
    assert mbps is not None
    return mbps / (rate_mbit * GOODPUT_PER_LINE_BYTE) - 1


@pytest.mark.parametrize("rate_mbit, cap", [(1.0, "1MB"), (5.0, "4MB"), (20.0, "15MB")])
def test_http_backend_measures_the_shaped_rate_within_its_cap(rate_mbit: float, cap: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with speed_lab(rate_mbit) as lab:
        part = measure(lab, config, "--target", f"http://{lab.server_ip}:{PORT}/", "--cap", cap)
    down, up = error_of(part["down_mbps"], rate_mbit), error_of(part["up_mbps"], rate_mbit)
    print(f"{rate_mbit} Mbit/s: down {part['down_mbps']} ({down:+.1%}), up {part['up_mbps']} ({up:+.1%}), "
          f"{part['bytes_used']} bytes on {lab.client_if}, {part['duration_s']} s")
    assert part["backend"] == "http" and part["error"] is None
    assert abs(down) <= TOLERANCE and abs(up) <= TOLERANCE
    assert part["bytes_used"] <= int(cap[:-2]) * 1_000_000
    with UsageLedger(tmp_path / "usage.db") as ledger:
        assert ledger.totals(datetime.now(timezone.utc)).day_bytes == {"throughput/http": part["bytes_used"]}


@pytest.mark.slow
@pytest.mark.parametrize("rate_mbit", [1.0, 5.0, 20.0])
def test_speedtest_backend_measures_the_shaped_rate_with_no_internet(rate_mbit: float, tmp_path: Path) -> None:
    """speedtest-cli against the speed server's Speedtest Mini layout, 10 s each way.

    Its upload figure varies more than its download figure: the library starts a new upload
    only when the *oldest* running one has finished, so one connection starved by the
    bottleneck's drops holds the others back, and the link idles for a while.  Runs of
    bench/throughput.py gave upload errors from -13% to +8% (download: -6% to -1.5%), so the
    upload is held to 20% here; see docs/benchmarks.md.
    """
    config = write_config(tmp_path)
    with speed_lab(rate_mbit) as lab:
        part = measure(lab, config, "--backend", "speedtest", "--target", f"http://{lab.server_ip}:{PORT}/")
    down, up = error_of(part["down_mbps"], rate_mbit), error_of(part["up_mbps"], rate_mbit)
    print(f"{rate_mbit} Mbit/s: down {part['down_mbps']} ({down:+.1%}), up {part['up_mbps']} ({up:+.1%}), "
          f"{part['bytes_used']} bytes on {lab.client_if}, {part['duration_s']} s")
    assert part["backend"] == "speedtest" and part["error"] is None
    assert abs(down) <= TOLERANCE and abs(up) <= SPEEDTEST_UPLOAD_TOLERANCE
    # 10 s each way at the full rate, give or take the ramp-up and the cut-off
    assert part["bytes_used"] >= 2 * 10 * rate_mbit * 1e6 / 8 * 0.8


def test_http_backend_stops_at_its_cap(tmp_path: Path) -> None:
    """A cap far below what the rate needs to settle: the test ends when the cap is spent."""
    config = write_config(tmp_path)
    with speed_lab(5.0) as lab:
        part = measure(lab, config, "--target", f"{lab.server_ip}:{PORT}", "--cap", "400KB")
    print(part)
    assert part["error"] is None and part["down_mbps"] > 0 and part["up_mbps"] > 0
    assert part["bytes_used"] <= 400_000, "counted on the interface: headers and acknowledgements included"
    assert part["down_mbps"] <= 5.0 and part["up_mbps"] <= 5.0


def test_an_exhausted_budget_skips_the_test_and_an_event_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'daily = "2MB"\nuplink_reserve = "0B"\n')
    with UsageLedger(tmp_path / "usage.db") as ledger:
        ledger.record("uplink", 1_500_000, datetime.now(timezone.utc))
    with speed_lab(1.0) as lab:
        before = counters(lab)
        part = measure(lab, config, "--target", f"http://{lab.server_ip}:{PORT}/", "--cap", "1MB")
        moved = counters(lab) - before
    print(part, f"bytes on the link meanwhile: {moved}")
    assert part == {
        "type": "budget_skip",
        "message": "http throughput test skipped: it may use 1000000 bytes and this day has used 1500000 of its 2000000",
        "data": {"period": "day", "used": 1_500_000, "limit": 2_000_000, "expected": 1_000_000, "reserve": 0},
    }
    assert moved == 0
    reading = Reading("unit-1", datetime.now(timezone.utc), "ntp", reading_from_dict_part(part), seq=1)
    assert reading_from_dict(reading.to_dict()).part.type == "budget_skip"


def reading_from_dict_part(part: dict[str, Any]):
    from agent.shared.reading import Event

    return Event(**part)


def test_speedtest_without_the_internet_says_why(tmp_path: Path) -> None:
    """Ookla's servers (no --target) from a namespace with no route out: a reading with the reason."""
    config = write_config(tmp_path)
    with speed_lab(5.0) as lab:
        part = measure(lab, config, "--backend", "speedtest", timeout=60)
    print(part)
    assert part["backend"] == "speedtest" and part["down_mbps"] is None
    assert part["error"].startswith("cannot fetch the configuration from speedtest.net")
