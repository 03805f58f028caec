"""Throughput tests over shaped links: accuracy and data used, the http backend vs speedtest-cli.

For each link rate, in one network-namespace link lab (tests/support/netlab.py: 50 ms round trip,
tbf in both directions), with the speed server (``blankspot speed-server``) on the far side:

- ours: ``blankspot measure throughput --backend http`` (stops once the rate is stable);
- the obvious alternative: ``blankspot measure throughput --backend speedtest``, speedtest-cli
  against the same server's Speedtest Mini layout, 10 s each way as speedtest.net runs it;
- with ``--as-shipped``, also speedtest-cli exactly as shipped (without the two corrections
  of agent/unit/measure/speedtest_backend.py).

Bytes are counted on the client's interface (both directions, Ethernet frames whole, read
once the link has gone quiet).  The true rate is the payload goodput the shaped link can
carry: rate × 1448 / 1514 (see tests/test_throughput_netlab.py).  Needs root.

    python bench/throughput.py                 # the figures in docs/benchmarks.md
    python bench/throughput.py --quick         # one rate, one run
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import REPO, machine_lines

from tests.support.netlab import NetLab

PORT = 8080
GOODPUT_PER_LINE_BYTE = 1448 / 1514
INNER = "--inner-plan"


@dataclass(frozen=True)
class Result:
    rate_mbit: float
    label: str
    down_mbps: float | None
    up_mbps: float | None
    bytes_used: int
    seconds: float
    error: str | None

    def error_pct(self, mbps: float | None) -> float | None:
        return None if mbps is None else 100 * (mbps / (self.rate_mbit * GOODPUT_PER_LINE_BYTE) - 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 5.0, 20.0], help="link rates, Mbit/s (default 1 5 20)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each backend per rate (default 2)")
    parser.add_argument("--cap", default="15MB", help="the http backend's byte cap (default 15MB)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="added round-trip time (default 50)")
    parser.add_argument("--as-shipped", action="store_true", help="also run speedtest-cli as shipped")
    parser.add_argument("--quick", action="store_true", help="5 Mbit/s only, one run, for a smoke run")
    parser.add_argument(INNER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rates, args.runs = [5.0], 1
    return args


def inner(plan_json: str) -> None:
    """In the client namespace: one test as the agent runs it, counted on the interface."""
    from agent.unit.measure.throughput import ThroughputPlan, run_throughput
    from agent.shared.reading import part_dict

    part = run_throughput(ThroughputPlan(**json.loads(plan_json)))
    print(json.dumps(part_dict(part)))


def measure(lab: NetLab, label: str, rate: float, argv: list[str], config: Path) -> Result:
    started = time.monotonic()
    if argv[0] == INNER:
        command = [sys.executable, str(REPO / "bench" / "throughput.py"), *argv]
    else:
        command = [sys.executable, "-m", "agent", "measure", "throughput", "--json", "--config", str(config),
                   "--interface", lab.client_if, *argv]
    done = lab.run(lab.client_ns, command, timeout=180)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{label}: {done.stderr.strip()[-400:]}")
    part = json.loads(done.stdout)
    return Result(rate, label, part["down_mbps"], part["up_mbps"], part["bytes_used"],
                  round(time.monotonic() - started, 1), part["error"])


def fmt_rate(result: Result, mbps: float | None) -> str:
    if mbps is None:
        return f"{'-':>16}"
    return f"{mbps:7.3f} ({result.error_pct(mbps):+5.1f}%)"


def main() -> None:
    args = parse_args()
    if args.inner_plan:
        inner(args.inner_plan)
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/throughput.py needs root: it builds network namespaces and tbf qdiscs")
    for line in machine_lines():
        print(line)
    print(f"link: {args.delay_ms:g} ms round trip, tbf both ways (200 ms queue); true rate = rate x 1448/1514 "
          f"(TCP payload in full Ethernet frames)")
    print(f"http cap {args.cap}; speedtest-cli 10 s each way; bytes counted on the client's interface\n")
    print(f"{'link':>6}  {'backend':<24} {'down Mbit/s (error)':>19} {'up Mbit/s (error)':>19} {'bytes':>12} {'seconds':>8}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as workdir:
        config = Path(workdir) / "agent.toml"
        config.write_text(f'[budget]\nledger = "{Path(workdir) / "usage.db"}"\n')
        with NetLab(delay_ms=args.delay_ms, rate_mbit=args.rates[0], seed=1) as lab:
            lab.popen(lab.server_ns, [sys.executable, "-m", "agent", "speed-server", "--port", str(PORT),
                                      "--bind", lab.server_ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lab.wait_tcp(lab.server_ns, PORT)
            url = f"http://{lab.server_ip}:{PORT}/"
            runs = [("http", ["--target", url, "--cap", args.cap]),
                    ("speedtest-cli", ["--backend", "speedtest", "--target", url])]
            if args.as_shipped:
                plan = {"backend": "speedtest", "target": url, "count_interface": lab.client_if,
                        "speedtest_as_shipped": True}
                runs.append(("speedtest-cli as shipped", [INNER, json.dumps(plan)]))
            for rate in args.rates:
                lab.shape(rate)
                for _ in range(args.runs):
                    for label, argv in runs:
                        result = measure(lab, label, rate, argv, config)
                        results.append(result)
                        print(f"{rate:>6g}  {label:<24} {fmt_rate(result, result.down_mbps):>19} "
                              f"{fmt_rate(result, result.up_mbps):>19} {result.bytes_used:>12,} {result.seconds:>8}"
                              + (f"  error: {result.error}" if result.error else ""), flush=True)
    print("\nper link rate (mean of the runs):")
    print(f"{'link':>6}  {'http bytes':>12} {'speedtest bytes':>16} {'bytes ratio':>12} "
          f"{'http worst error':>17} {'speedtest worst error':>22}")
    for rate in args.rates:
        http = [r for r in results if r.rate_mbit == rate and r.label == "http"]
        st = [r for r in results if r.rate_mbit == rate and r.label == "speedtest-cli"]
        http_bytes, st_bytes = statistics.mean(r.bytes_used for r in http), statistics.mean(r.bytes_used for r in st)

        def worst(rs: list[Result]) -> str:
            errors = [abs(e) for r in rs for e in (r.error_pct(r.down_mbps), r.error_pct(r.up_mbps)) if e is not None]
            return f"{max(errors):.1f}%" if errors else "-"

        print(f"{rate:>6g}  {http_bytes:>12,.0f} {st_bytes:>16,.0f} {http_bytes / st_bytes:>11.3f}x "
              f"{worst(http):>17} {worst(st):>22}")


if __name__ == "__main__":
    main()
