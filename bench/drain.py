"""Drain a full buffer to a local Mosquitto: readings per second and bytes on the wire per reading.

Ours: ``MqttUplink`` (QoS 1 batches, several in flight, each batch marked delivered in the
buffer on its PUBACK).  The obvious alternative: one MQTT message per reading, published
with QoS 1 and waited for before the next.  Both go through the same counting TCP proxy
(``LinkProxy`` without faults) to the same broker, in the same run.

    python bench/drain.py            # the figures in docs/benchmarks.md
    python bench/drain.py --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import DEVICE, machine_lines, mount_of, ratio, synthetic_readings, work_dir

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.unit.buffer import ReadingBuffer
from agent.unit.config import UplinkConfig
from agent.shared.protocol import readings_topic
from agent.shared.reading import Reading
from agent.sim.broker import LocalBroker
from agent.sim.link import LinkProxy
from agent.unit.uplink import MqttUplink

FILL_CHUNK = 1000


@dataclass(frozen=True)
class Run:
    label: str
    readings: int
    seconds: float
    wire_bytes: int

    @property
    def per_second(self) -> float:
        return self.readings / self.seconds

    @property
    def bytes_per_reading(self) -> float:
        return self.wire_bytes / self.readings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=100_000, help="readings in the buffer (default 100000)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[50, 200, 1000],
                        help="uplink.batch_size values to try (default 50 200 1000; 200 is the shipped default)")
    parser.add_argument("--max-inflight", type=int, default=UplinkConfig.max_inflight,
                        help=f"uplink.max_inflight (default {UplinkConfig.max_inflight}, as shipped)")
    parser.add_argument("--alt-readings", type=int, default=None,
                        help="readings for the one-message-per-reading alternative (default: all of them); "
                             "fewer are timed and scaled, and the output says so")
    parser.add_argument("--quick", action="store_true", help="10000 readings, for a smoke run")
    parser.add_argument("--dir", type=Path, default=None, help="where the buffer files go (default bench/results/)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up a run after this many seconds")
    args = parser.parse_args()
    if args.quick:
        args.readings = min(args.readings, 10_000)
    args.alt_readings = min(args.alt_readings or args.readings, args.readings)
    return args


def fill(buffer: ReadingBuffer, readings: list[Reading]) -> list[Reading]:
    stored: list[Reading] = []
    for start in range(0, len(readings), FILL_CHUNK):
        stored.extend(buffer.append_many(readings[start:start + FILL_CHUNK]))
    return stored


def drain_with_uplink(broker_port: int, folder: Path, readings: list[Reading], batch_size: int,
                      max_inflight: int, timeout: float) -> tuple[Run, list[Reading]]:
    """Fill a fresh buffer, then time ``MqttUplink`` from start until every reading is acknowledged."""
    buffer = ReadingBuffer(folder / f"drain-{batch_size}.db", DEVICE)
    proxy = LinkProxy(broker_port).start()
    config = UplinkConfig(host="127.0.0.1", port=proxy.port, batch_size=batch_size, max_inflight=max_inflight)
    uplink = MqttUplink(config, DEVICE, buffer, client_id=f"bench-drain-{batch_size}")
    try:
        filled = time.perf_counter()
        stored = fill(buffer, readings)
        filled = time.perf_counter() - filled
        started = time.perf_counter()
        uplink.start()
        deadline = started + timeout
        # Polls the uplink's counter rather than the buffer, whose lock the uplink needs.
        while uplink.stats.readings_acked < len(readings):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"batch size {batch_size}: only {uplink.stats.readings_acked} acknowledged in {timeout:g}s")
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        wire = proxy.bytes_up + proxy.bytes_down
        pending = buffer.pending_count()
        if pending:
            raise RuntimeError(f"batch size {batch_size}: {pending} readings still pending after all were acknowledged")
        print(f"  batch {batch_size:>5}: filled in {filled:.1f}s, drained in {seconds:.1f}s, "
              f"{uplink.stats.batches_acked} batches, {uplink.stats.disconnects} disconnects")
    finally:
        uplink.stop()
        proxy.close()
        buffer.close()
    return Run(f"MqttUplink, batch {batch_size}", len(readings), seconds, wire), stored


def publish_one_by_one(broker_port: int, bodies: list[str], timeout: float) -> Run:
    """One QoS 1 message per reading: publish, wait for its PUBACK, next."""
    proxy = LinkProxy(broker_port).start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-one-by-one",
                         protocol=MQTTProtocolVersion.MQTTv5)
    topic = readings_topic(UplinkConfig.topic_prefix, DEVICE)
    try:
        client.connect("127.0.0.1", proxy.port, keepalive=60)
        client.loop_start()
        deadline = time.perf_counter() + 10
        while not client.is_connected():
            if time.perf_counter() > deadline:
                raise RuntimeError("one-by-one client did not connect")
            time.sleep(0.01)
        started = time.perf_counter()
        deadline = started + timeout
        for body in bodies:
            info = client.publish(topic, body, qos=1)
            info.wait_for_publish(timeout=max(0.0, deadline - time.perf_counter()))
            if not info.is_published():
                raise RuntimeError(f"one-by-one: message {info.mid} not acknowledged in time")
        seconds = time.perf_counter() - started
        wire = proxy.bytes_up + proxy.bytes_down
    finally:
        client.disconnect()
        client.loop_stop()
        proxy.close()
    return Run("one message per reading", len(bodies), seconds, wire)


def report(ours: list[Run], alternative: Run, scaled_from: int | None, total: int) -> None:
    print()
    print(f"{'':28} {'readings/s':>11} {'bytes/reading':>14} {'speed vs alt':>13} {'bytes vs alt':>13}")
    for run in ours + [alternative]:
        print(f"{run.label:28} {run.per_second:>11,.0f} {run.bytes_per_reading:>14,.1f} "
              f"{ratio(run.per_second, alternative.per_second):>13} "
              f"{ratio(run.bytes_per_reading, alternative.bytes_per_reading):>13}")
    if scaled_from is not None:
        print(f"(the alternative was timed on the first {scaled_from:,} readings only; "
              f"at that rate all {total:,} would take {total / alternative.per_second:.0f}s)")
    print("wire bytes are MQTT over TCP as counted by the proxy (both directions, including CONNECT "
          "and status messages); IP/TCP headers are not included.")


def main() -> None:
    args = parse_args()
    folder = work_dir(args.dir)
    for line in machine_lines():
        print(line)
    mount = mount_of(folder)
    print(f"buffer in {folder} ({mount.fstype} on {mount.source})")
    print(f"generating {args.readings:,} synthetic readings ...")
    readings = synthetic_readings(args.readings)
    with tempfile.TemporaryDirectory(dir=folder, prefix="drain-") as tmp:
        broker = LocalBroker("mosquitto", workdir=Path(tmp) / "broker").start()
        try:
            print(f"mosquitto on 127.0.0.1:{broker.port}, persistence off, no subscribers")
            ours: list[Run] = []
            stored: list[Reading] = []
            for batch_size in args.batch_sizes:
                run, stored = drain_with_uplink(broker.port, Path(tmp), readings, batch_size,
                                                args.max_inflight, args.timeout)
                ours.append(run)
            bodies = [reading.to_json() for reading in stored[:args.alt_readings]]
            print(f"  body size: {sum(map(len, bodies)) / len(bodies):.0f} bytes of JSON per reading on average")
            alternative = publish_one_by_one(broker.port, bodies, args.timeout)
            print(f"  one by one: {len(bodies):,} readings in {alternative.seconds:.1f}s")
        finally:
            broker.stop()
    scaled = args.alt_readings if args.alt_readings < args.readings else None
    report(ours, alternative, scaled, args.readings)


if __name__ == "__main__":
    main()
