"""What a reading costs on the wire: bytes per reading in each batch encoding, and how long a
backlog takes to reach the centre's database over a slow, lossy link.

Bytes: the 900 readings of the demo's boat trip (``bench/data/demo-trip.jsonl.gz``) and a week
of a fixed probe at the edge of coverage (one signal reading every 10 s, a latency test every
15 minutes, a throughput test a day), each as the unit keeps it, in batches of 50, 200 and
1000: the JSON batch, the obvious alternative (that JSON batch through zlib), and the compact
encoding.

Drain: a unit with 10,000 of the probe's readings waiting (``blankspot run`` with the buffer filled) behind
an emulated link (200 kbit/s each way, 150 ms each way, 2 % of packets lost each way: the weak
3G/EDGE edge of a blank spot; network namespaces, ``tbf`` and the userspace link emulator of
``tests/support/netlab.py``), a Mosquitto and a ``blankspot collect`` on the other side. The
clock runs from the agent's start until the collector's database holds every reading; the
bytes are those of the unit's interface (IP and TCP headers included). Once per encoding.

    python bench/wire.py            # the figures in docs/benchmarks.md
    python bench/wire.py --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
import zlib
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from _common import DEVICE, REPO, START, open_run, ratio

from agent.shared.protocol import encode_batch
from agent.shared.reading import Event, Latency, Position, Reading, Throughput, reading_from_json
from agent.sim.scenario import Radio, mahakam_scenario
from agent.sim.synthetic import modem_signal
from agent.unit.buffer import ReadingBuffer

DEMO_TRIP = REPO / "bench" / "data" / "demo-trip.jsonl.gz"
# The edge of Kota Bangun's cell, where a kantor desa probe sees service come and go.
PROBE_AT = (-0.2600 + 0.081, 116.5900 + 0.0)


def demo_trip() -> list[Reading]:
    with gzip.open(DEMO_TRIP, "rt") as lines:
        return [reading_from_json(line).at_precision() for line in lines if line.strip()]


def probe_week(days: float = 7.0, seed: int = 7) -> list[Reading]:
    """A fixed probe's readings: GPS wandering a few metres, levels fading by a few dB."""
    rng = random.Random(seed)
    scenario = mahakam_scenario()
    readings: list[Reading] = []
    north = east = 0.0
    seq = 0
    for step in range(int(days * 8640)):
        t = step * 10.0
        seq += 1
        north = 0.9 * north + rng.gauss(0, 0.6)
        east = 0.9 * east + rng.gauss(0, 0.6)
        lat, lon = PROBE_AT[0] + north / 111_320, PROBE_AT[1] + east / 111_320
        position = Position(lat=lat, lon=lon, alt_m=21.0 + rng.gauss(0, 2), hdop=round(rng.uniform(0.7, 1.6), 2),
                            sats=rng.randint(6, 12), speed_kmh=round(abs(rng.gauss(0, 0.3)), 1),
                            course_deg=round(rng.uniform(0, 360), 2), fix="3d")
        radio = scenario.radio_at(lat, lon, t)
        if radio.tower is not None:
            fade = round(rng.gauss(0, 2.0))
            radio = Radio(radio.tower, rsrp_dbm=radio.rsrp_dbm + fade, rsrq_db=round(radio.rsrq_db + rng.gauss(0, 1)),
                          sinr_db=round(radio.sinr_db + rng.gauss(0, 2)), rssi_dbm=radio.rssi_dbm + fade)
        when = START + timedelta(seconds=t, milliseconds=rng.randint(0, 999))
        readings.append(Reading(DEVICE, when, "gps", modem_signal(radio), position, seq=seq))
        if step % 90 == 45:
            seq += 1
            if radio.tower is None:
                part = Latency("8.8.8.8", "tcp", 5, 0, 100.0, error="no route to host")
            else:
                rtts = sorted(rng.lognormvariate(4.5, 0.4) for _ in range(5))
                part = Latency("8.8.8.8", "tcp", 5, 5, 0.0, rtts[0], sum(rtts) / 5, rtts[-1],
                               sum(abs(a - b) for a, b in zip(rtts, rtts[1:])) / 4)
            readings.append(Reading(DEVICE, when + timedelta(seconds=2), "gps", part, position, seq=seq))
        if step % 8640 == 4000:
            seq += 1
            part = Throughput("speedtest", "Telkomsel Samarinda", rng.uniform(0.5, 6), rng.uniform(0.2, 2),
                              rng.randint(5_000_000, 20_000_000), rng.uniform(15, 30)) \
                if radio.tower is not None else Throughput("speedtest", error="no service")
            readings.append(Reading(DEVICE, when + timedelta(seconds=4), "gps", part, position, seq=seq))
        if step % 8640 == 0:
            seq += 1
            readings.append(Reading(DEVICE, when, "gps", Event("boot", "agent started", {"version": "1"}), None,
                                    seq=seq))
    return [r.at_precision() for r in readings]


@dataclass(frozen=True)
class Sizes:
    workload: str
    batch: int
    readings: int
    json: int
    zlib_json: int
    compact: int


def sizes(workload: str, readings: list[Reading], batch: int) -> Sizes:
    bodies = [r.to_json() for r in readings]
    plain = packed = compact = 0
    for start in range(0, len(bodies), batch):
        chunk = bodies[start:start + batch]
        payload = encode_batch(DEVICE, chunk)
        plain += len(payload)
        packed += len(zlib.compress(payload, 6))
        compact += len(encode_batch(DEVICE, chunk, "compact"))
    return Sizes(workload, batch, len(bodies), plain, packed, compact)


def bytes_part(batches: list[int], quick: bool) -> list[Sizes]:
    workloads = [("demo boat trip", demo_trip()), ("fixed probe, a week", probe_week(0.5 if quick else 7.0))]
    print("\nbytes per reading (payload of the MQTT message):")
    print(f"  {'workload':<22} {'readings':>8} {'batch':>5} {'JSON':>7} {'zlib(JSON)':>10} {'compact':>8}"
          f" {'JSON/compact':>12} {'zlib/compact':>12}")
    rows = []
    for name, readings in workloads:
        for batch in batches:
            s = sizes(name, readings, batch)
            rows.append(s)
            n = s.readings
            print(f"  {name:<22} {n:>8,} {batch:>5} {s.json / n:>7.1f} {s.zlib_json / n:>10.1f} {s.compact / n:>8.1f}"
                  f" {ratio(s.json, s.compact):>12} {ratio(s.zlib_json, s.compact):>12}", flush=True)
    return rows


# -- the drain over an emulated link --------------------------------------------------------

@dataclass(frozen=True)
class Drain:
    encoding: str
    readings: int
    seconds: float
    link_bytes: int
    payload_bytes: int
    rate_kbit: float

    @property
    def floor_s(self) -> float:
        """The payload alone at the link's rate: no protocol could carry it faster."""
        return self.payload_bytes * 8 / (self.rate_kbit * 1000)


def interface_bytes(lab, ns: str, ifname: str) -> int:
    text = lab.run(ns, ["cat", "/proc/net/dev"]).stdout
    for line in text.splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == ifname:
            fields = counters.split()
            return int(fields[0]) + int(fields[8])
    raise RuntimeError(f"{ifname} not in /proc/net/dev of {ns}")


def drain_once(args: argparse.Namespace, folder: Path, encoding: str, readings: list[Reading]) -> Drain:
    from confirm import CollectorProcess, held

    from tests.support.netlab import LAB_BROKER_PORT, BrokerInNamespace, NetLab
    from tests.support.unit_config import write_config

    work = folder / f"drain-{encoding}"
    work.mkdir(parents=True)
    buffer = ReadingBuffer(work / "buffer.db", DEVICE)
    for start in range(0, len(readings), 1000):
        buffer.append_many(replace(r, seq=None) for r in readings[start:start + 1000])
    buffer.close()
    payload = sum(len(encode_batch(DEVICE, [r.to_json() for r in readings[s:s + args.batch]], encoding))
                  for s in range(0, len(readings), args.batch))
    round_trip_loss = 100 * (1 - (1 - args.loss_pct / 100) ** 2)
    with NetLab(delay_ms=2 * args.delay_ms, loss_pct=round_trip_loss, rate_mbit=args.rate_kbit / 1000, seed=1) as lab:
        broker = BrokerInNamespace(lab, lab.server_ns, work / "broker").start()
        collector = CollectorProcess(work, f"mqtt://127.0.0.1:{broker.port}", work / "collector.db", 300,
                                     ["ip", "netns", "exec", lab.server_ns]).start()
        config = write_config(work / "agent.toml", LAB_BROKER_PORT, work / "buffer.db", {
            "uplink": {"host": lab.server_ip, "encoding": encoding, "batch_size": args.batch,
                       "keepalive": "60s", "connect_timeout": "20s"},
            "source": {"kind": "synthetic", "interval": "1h"},
        }, device=DEVICE)
        before = interface_bytes(lab, lab.client_ns, lab.client_if)
        started = time.monotonic()
        with open(work / "agent.log", "wb") as log:
            agent = lab.popen(lab.client_ns, [sys.executable, "-m", "agent", "run", "--config", str(config)],
                              stdout=log, stderr=log)
        try:
            while held(work / "collector.db", 1, len(readings)) < len(readings):
                if agent.poll() is not None:
                    raise RuntimeError(f"agent ended: {(work / 'agent.log').read_text()[-2000:]}")
                if time.monotonic() - started > args.timeout:
                    raise RuntimeError(f"{encoding}: not drained in {args.timeout:g}s")
                time.sleep(0.1)
            seconds = time.monotonic() - started
            used = interface_bytes(lab, lab.client_ns, lab.client_if) - before
        finally:
            agent.kill()
            agent.wait(10)
            collector.stop()
            broker.stop()
    drain = Drain(encoding, len(readings), seconds, used, payload, args.rate_kbit)
    print(f"  {encoding:<8} {drain.readings:>7,} readings in the database after {drain.seconds:7.1f} s; "
          f"{drain.link_bytes / drain.readings:7.1f} B/reading on the link; payload floor {drain.floor_s:6.1f} s "
          f"({drain.seconds / drain.floor_s:.2f}x the floor)", flush=True)
    return drain


def drain_part(args: argparse.Namespace, folder: Path) -> list[Drain]:
    from confirm import lab_missing

    why = lab_missing()
    if why is not None:
        print(f"\ndrain: skipped ({why}: the link lab needs root, ip, tc and ethtool)")
        return []
    readings = probe_week(args.drain_readings / 8700 + 0.01)[:args.drain_readings]
    print(f"\ndrain: {args.drain_readings:,} waiting readings (the fixed probe's) over "
          f"{args.rate_kbit:g} kbit/s, {args.delay_ms:g} ms and {args.loss_pct:g} % loss each way; "
          f"batch {args.batch}, counted in the collector's database:")
    drains = [drain_once(args, folder, encoding, readings) for encoding in args.encodings]
    if len(drains) == 2:
        print(f"  json / compact: {ratio(drains[1].seconds, drains[0].seconds)} the time, "
              f"{ratio(drains[1].link_bytes, drains[0].link_bytes)} the bytes")
    return drains


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[50, 200, 1000],
                        help="batch sizes for the bytes (default 50 200 1000)")
    parser.add_argument("--drain-readings", type=int, default=10_000, help="backlog of the drain (default 10000)")
    parser.add_argument("--batch", type=int, default=200, help="uplink.batch_size of the drain (default 200)")
    parser.add_argument("--rate-kbit", type=float, default=200.0, help="link rate each way (default 200)")
    parser.add_argument("--delay-ms", type=float, default=150.0, help="delay each way (default 150)")
    parser.add_argument("--loss-pct", type=float, default=2.0, help="packets lost each way (default 2)")
    parser.add_argument("--encodings", nargs="+", default=["compact", "json"], choices=["compact", "json"],
                        help="encodings to drain (default compact json)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give a drain up after this long (default 900)")
    parser.add_argument("--skip-drain", action="store_true", help="only the bytes")
    parser.add_argument("--dir", type=Path, help="where the files go (default bench/results)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: half a day of the probe, 1000 readings")
    args = parser.parse_args()
    if args.quick:
        args.drain_readings = min(args.drain_readings, 1000)
    return args


def main() -> None:
    args = parse_args()
    folder = open_run(args.dir, "wire-")
    bytes_part(args.batch_sizes, args.quick)
    if not args.skip_drain:
        drain_part(args, folder)
    print(f"\nfiles in {folder}")


if __name__ == "__main__":
    main()
