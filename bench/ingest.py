"""Collector ingest rate: readings per second committed from 200 units through a local Mosquitto.

For each workload (backlog: batches of 200 readings, as a unit drains after a blank spot;
live: batches of 10) and each database (SQLite, PostgreSQL), three set-ups run in turn:

- one ``blankspot collect`` (as shipped: up to 100 messages per transaction);
- two collectors in one shared-subscription group, writing to the same database;
- the obvious alternative: one collector committing every MQTT message on its own
  (``--max-messages-per-commit 1``);
- with ``--against DIR``: one collector running the code checked out in DIR (the commit
  before the coverage figures were kept at ingest, say), to give what keeping them costs.

Each run: start the collectors and let them subscribe, freeze them (SIGSTOP), let 200
simulated units (one MQTT connection each, QoS 1) publish all their batches so the broker
holds them, then thaw the collectors (SIGCONT) and time until the database has every
reading.  This is the collector's sustained rate on a backlog, without the publishers
competing for the CPU while it is measured.

    python bench/ingest.py            # the figures in docs/benchmarks.md
    python bench/ingest.py --quick    # a smoke run
    python bench/ingest.py --setups one --against /tmp/before --rounds 3   # with the figures against without
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from _common import REPO, machine_lines, mount_of, ratio, synthetic_readings, work_dir

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.centre.store import open_store
from agent.shared.protocol import encode_batch, readings_topic, DEFAULT_PREFIX
from agent.sim.broker import LocalBroker

SETUPS = (
    ("one collector", 1, []),
    ("two collectors, one group", 2, []),
    ("one commit per message", 1, ["--max-messages-per-commit", "1"]),
)
SETUP_NAMES = {"one": SETUPS[0], "two": SETUPS[1], "per-message": SETUPS[2]}
AGAINST = "one collector, --against"


@dataclass(frozen=True)
class Run:
    workload: str
    backend: str
    setup: str
    readings: int
    seconds: float
    publish_seconds: float

    @property
    def per_second(self) -> float:
        return self.readings / self.seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=200, help="simulated units (default 200)")
    parser.add_argument("--readings", type=int, default=500, help="readings per unit (default 500: 100,000 in all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[200, 10],
                        help="readings per MQTT message (default 200 10: backlog and live)")
    parser.add_argument("--postgres", default=os.environ.get("BLANKSPOT_BENCH_POSTGRES",
                                                             "postgresql://postgres@127.0.0.1:5432/test"),
                        help="PostgreSQL server to use (a schema is made per run and dropped)")
    parser.add_argument("--publishers", type=int, default=2, help="processes the units are spread over (default 2)")
    parser.add_argument("--dir", type=Path, default=None, help="where SQLite files go (default bench/results/)")
    parser.add_argument("--quick", action="store_true", help="50 readings per unit, for a smoke run")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up a run after this many seconds")
    parser.add_argument("--setups", nargs="+", choices=tuple(SETUP_NAMES), default=list(SETUP_NAMES),
                        help="set-ups to run (default: all three)")
    parser.add_argument("--backends", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"],
                        help="databases to run on (default both)")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="also run one collector with the code checked out in DIR, on a database of its own")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every set-up this many times, in turn; each row gives the median (default 1)")
    args = parser.parse_args()
    if args.quick:
        args.readings = min(args.readings, 50)
    return args


# -- the units ----------------------------------------------------------------------------

def unit_payloads(units: int, per_unit: int, batch_size: int) -> list[tuple[str, list[bytes]]]:
    """Every unit's batches: the same synthetic trip, under each unit's own device id."""
    template = [replace(r, seq=n).to_dict() for n, r in enumerate(synthetic_readings(per_unit), start=1)]
    result = []
    for u in range(units):
        device = f"bench-unit-{u:03d}"
        bodies = []
        for table in template:
            table["device"] = device
            bodies.append(json.dumps(table, separators=(",", ":"), ensure_ascii=False))
        batches = [encode_batch(device, bodies[i:i + batch_size]) for i in range(0, len(bodies), batch_size)]
        result.append((device, batches))
    return result


def _publish(port: int, units: list[tuple[str, list[bytes]]]) -> None:
    """One process's share of the units: one MQTT 5 connection each, QoS 1, all batches."""
    clients = []
    for device, _ in units:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-{uuid.uuid4().hex[:6]}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        client.max_inflight_messages_set(8)  # as the agent's uplink
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port, keepalive=60)
        client.loop_start()
        clients.append(client)
    infos = []
    rounds = max(len(batches) for _, batches in units)
    for i in range(rounds):
        for client, (device, batches) in zip(clients, units):
            if i < len(batches):
                infos.append(client.publish(readings_topic(DEFAULT_PREFIX, device), batches[i], qos=1))
    for info in infos:
        info.wait_for_publish(120)
        if not info.is_published():
            raise SystemExit("a batch was not acknowledged by the broker")
    for client in clients:
        client.disconnect()
        client.loop_stop()


def publish_all(port: int, payloads: list[tuple[str, list[bytes]]], processes: int) -> float:
    context = multiprocessing.get_context("fork")
    shares = [payloads[i::processes] for i in range(processes)]
    started = time.perf_counter()
    workers = [context.Process(target=_publish, args=(port, share)) for share in shares]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"a publisher process failed (exit {w.exitcode})")
    return time.perf_counter() - started


# -- the collectors -----------------------------------------------------------------------

class Collector:
    def __init__(self, port: int, db: str, group: str, client_id: str, extra: list[str], log: Path,
                 code: Path = REPO) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "collect", "--broker", f"mqtt://127.0.0.1:{port}", "--db", db,
                 "--group", group, "--client-id", client_id, "--log-level", "info", *extra],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=code,
                env={**os.environ, "PYTHONPATH": str(code)},
            )

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "subscribed to" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not subscribe:\n{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(30) != 0:
            raise RuntimeError(f"collector exited {self.process.returncode}:\n{self.log.read_text()[-2000:]}")


def inserted(store) -> int:
    return sum(values.get("readings_inserted", 0) for values in store.counters().values())


def one_run(broker: LocalBroker, db: str, folder: Path, label: tuple[str, int, list[str]],
            payloads: list[tuple[str, list[bytes]]], args: argparse.Namespace) -> tuple[float, float]:
    setup, count, extra = label
    code = args.against.resolve() if setup == AGAINST else REPO
    total = sum(len(json.loads(b)["readings"]) for _, batches in payloads for b in batches)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    collectors = [Collector(broker.port, db, group, f"{group}-{n}", extra, folder / f"{group}-{n}.log", code)
                  for n in range(count)]
    try:
        for c in collectors:
            c.wait_subscribed()
        for c in collectors:
            c.signal(signal.SIGSTOP)
        publish_seconds = publish_all(broker.port, payloads, args.publishers)
        store = open_store(db)
        try:
            started = time.perf_counter()
            for c in collectors:
                c.signal(signal.SIGCONT)
            deadline = started + args.timeout
            while inserted(store) < total:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{setup}: only {inserted(store)} of {total} stored in {args.timeout:g}s")
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            counts = store.counts()
        finally:
            store.close()
        if counts["readings"] != total or counts["duplicates"] or counts["quarantined"]:
            raise RuntimeError(f"{setup}: unexpected counts {counts}")
    finally:
        for c in collectors:
            if c.process.poll() is None:
                c.signal(signal.SIGCONT)
                c.stop()
    return seconds, publish_seconds


def postgres_schema(base: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options=-csearch_path%3D{schema}"


def drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def report(runs: list[Run], setups: list[tuple[str, int, list[str]]]) -> None:
    print()
    print(f"{'workload':<22} {'database':<10} {'set-up':<27} {'readings/s':>11} {'vs one collector':>17}")
    for run in runs:
        base = next((r for r in runs if r.workload == run.workload and r.backend == run.backend
                     and r.setup == SETUPS[0][0]), run)
        print(f"{run.workload:<22} {run.backend:<10} {run.setup:<27} {run.per_second:>11,.0f} "
              f"{ratio(run.per_second, base.per_second):>17}")
    print()
    for run in runs:
        if run.setup == AGAINST:
            ours = next((r for r in runs if r.workload == run.workload and r.backend == run.backend
                         and r.setup == SETUPS[0][0]), None)
            if ours is not None:
                print(f"this checkout vs --against, {run.workload}, {run.backend}: "
                      f"{ours.per_second / run.per_second:.0%} of its rate")
    for workload in dict.fromkeys(r.workload for r in runs):
        for setup, _, _ in setups:
            pair = {r.backend: r for r in runs if r.workload == workload and r.setup == setup}
            if len(pair) == 2:
                print(f"PostgreSQL vs SQLite, {workload}, {setup}: "
                      f"{ratio(pair['postgres'].per_second, pair['sqlite'].per_second)}")


def main() -> None:
    args = parse_args()
    folder = work_dir(args.dir)
    for line in machine_lines():
        print(line)
    setups = [SETUP_NAMES[name] for name in args.setups] + ([(AGAINST, 1, [])] if args.against else [])
    if args.against:
        print(f"--against: {args.against.resolve()}")
    if "postgres" in args.backends:
        import psycopg

        with psycopg.connect(args.postgres, connect_timeout=5) as conn:
            print(f"PostgreSQL {conn.info.server_version // 10000}.{conn.info.server_version % 10000} at "
                  f"{conn.info.host}:{conn.info.port}, psycopg {psycopg.__version__}")
    mount = mount_of(folder)
    print(f"SQLite files in {folder} ({mount.fstype} on {mount.source})")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(dir=folder, prefix="ingest-") as tmp:
        broker = LocalBroker("mosquitto", workdir=Path(tmp) / "broker").start()
        try:
            print(f"mosquitto on 127.0.0.1:{broker.port}, persistence off")
            for batch_size in args.batch_sizes:
                payloads = unit_payloads(args.units, args.readings, batch_size)
                messages = sum(len(b) for _, b in payloads)
                workload = f"batches of {batch_size}"
                print(f"{workload}: {args.units} units x {args.readings} readings = "
                      f"{args.units * args.readings:,} readings in {messages:,} messages")
                for backend, _round, label in ((b, r, s) for b in args.backends for r in range(args.rounds)
                                               for s in setups):
                    schema = None
                    if backend == "sqlite":
                        db = f"sqlite:///{Path(tmp).resolve()}/{uuid.uuid4().hex[:8]}.db"
                    else:
                        schema, db = postgres_schema(args.postgres)
                    try:
                        seconds, published = one_run(broker, db, Path(tmp), label, payloads, args)
                    finally:
                        if schema:
                            drop_schema(args.postgres, schema)
                    run = Run(workload, backend, label[0], args.units * args.readings, seconds, published)
                    runs.append(run)
                    print(f"  {backend:<9} {label[0]:<27} {run.per_second:>9,.0f} readings/s "
                          f"({seconds:.1f}s; loading the broker took {published:.1f}s)")
        finally:
            broker.stop()
    report(medians(runs), setups)


def medians(runs: list[Run]) -> list[Run]:
    """One run per workload, database and set-up: the one of median rate (the rounds alternate
    set-ups, so a neighbour's burst of work is shared between them)."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.workload, run.backend, run.setup), []).append(run)
    return [sorted(group, key=lambda r: r.per_second)[len(group) // 2] for group in groups.values()]


if __name__ == "__main__":
    main()
