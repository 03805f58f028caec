"""Durable appends: readings per second and bytes written to disk per reading.

The chosen setting (``ReadingBuffer`` defaults: each reading flushed to the intake, filed
into SQLite, WAL journal, ``synchronous=FULL``, every few minutes) against SQLite alone
(``intake_bytes=0``): WAL + FULL with one transaction per reading (what the buffer did before
the intake), WAL + NORMAL (faster, but the last commits can be lost on power failure), DELETE +
FULL (SQLite's rollback journal) and WAL + FULL with 100 readings per ``append_many``
transaction (batched).  Back to back, the intake is filed whenever it is three quarters full.

Bytes come from ``/proc/self/io`` (``wchar``: bytes handed to write(); ``write_bytes``:
bytes this process caused to be sent to storage, counted per page when it is dirtied) and
from the block device's own counters in ``/sys/dev/block`` (sectors written and cache
flushes: whole device, so other activity on the machine shows up there too).  tmpfs and
overlay filesystems report no ``write_bytes`` and have no block device: use ``--dir`` to
point at a real disk.

    python bench/append.py            # the figures in docs/benchmarks.md
    python bench/append.py --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from _common import DEVICE, machine_lines, mount_of, ratio, synthetic_readings, work_dir

from agent.unit.buffer import ReadingBuffer
from agent.unit.intake import INTAKE_BYTES
from agent.shared.reading import Reading


@dataclass(frozen=True)
class Variant:
    label: str
    journal_mode: str
    synchronous: str
    per_transaction: int
    durable: bool
    intake: bool = False


VARIANTS = (
    Variant("intake, then WAL + FULL (chosen)", "WAL", "FULL", 1, True, intake=True),
    Variant("WAL + FULL, a commit per reading", "WAL", "FULL", 1, True),
    Variant("WAL + NORMAL", "WAL", "NORMAL", 1, False),
    Variant("DELETE + FULL", "DELETE", "FULL", 1, True),
    Variant("WAL + FULL, 100 per txn", "WAL", "FULL", 100, True),
)


@dataclass(frozen=True)
class Counters:
    wchar: int
    write_bytes: int
    device_bytes: int | None
    device_flushes: int | None

    def __sub__(self, other: "Counters") -> "Counters":
        def minus(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a - b

        return Counters(self.wchar - other.wchar, self.write_bytes - other.write_bytes,
                        minus(self.device_bytes, other.device_bytes),
                        minus(self.device_flushes, other.device_flushes))


@dataclass(frozen=True)
class Result:
    variant: Variant
    readings: int
    seconds: float
    io: Counters

    @property
    def per_second(self) -> float:
        return self.readings / self.seconds

    def per_reading(self, value: int | None) -> float | None:
        return None if value is None else value / self.readings


def block_stat_path(folder: Path) -> Path | None:
    """The whole disk's ``stat`` file for the filesystem holding ``folder``, if it has one."""
    dev = os.stat(folder).st_dev
    sysdir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not sysdir.exists():
        return None
    sysdir = sysdir.resolve()
    if (sysdir / "partition").exists():
        # Flushes are counted on the disk, not on its partitions.
        sysdir = sysdir.parent
    stat = sysdir / "stat"
    return stat if stat.exists() else None


def read_counters(block_stat: Path | None) -> Counters:
    io: dict[str, int] = {}
    with open("/proc/self/io") as handle:
        for line in handle:
            key, value = line.split(":")
            io[key] = int(value)
    device_bytes = device_flushes = None
    if block_stat is not None:
        # Documentation/admin-guide/iostats.rst: field 7 sectors written, field 16 flushes.
        fields = [int(x) for x in block_stat.read_text().split()]
        device_bytes = fields[6] * 512
        device_flushes = fields[15] if len(fields) >= 17 else None
    return Counters(io["wchar"], io["write_bytes"], device_bytes, device_flushes)


def measure(variant: Variant, folder: Path, readings: list[Reading], block_stat: Path | None) -> Result:
    """Time the appends alone; the counters also take in the writeback ``sync`` forces afterwards."""
    buffer = ReadingBuffer(folder / "append.db", DEVICE, journal_mode=variant.journal_mode,
                           synchronous=variant.synchronous, intake_bytes=INTAKE_BYTES if variant.intake else 0)
    try:
        os.sync()
        before = read_counters(block_stat)
        started = time.perf_counter()
        if variant.per_transaction == 1:
            for reading in readings:
                buffer.append(reading)
        else:
            step = variant.per_transaction
            for start in range(0, len(readings), step):
                buffer.append_many(readings[start:start + step])
        seconds = time.perf_counter() - started
        # WAL + NORMAL leaves pages for the kernel to write later: count them too.
        os.sync()
        after = read_counters(block_stat)
    finally:
        buffer.close()
    return Result(variant, len(readings), seconds, after - before)


def median_result(results: list[Result]) -> Result:
    """The run with the median speed, so its counters are from one real run."""
    ordered = sorted(results, key=lambda r: r.seconds)
    return ordered[len(ordered) // 2]


def speed_ratio(runs: list[Result], chosen: list[Result]) -> float:
    """Median over rounds of the speed relative to the chosen setting in the same round.

    Disk speed drifts over seconds on a shared machine; pairing runs of one round cancels most of it.
    """
    return statistics.median(r.per_second / c.per_second for r, c in zip(runs, chosen))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=3000, help="readings appended per setting (default 3000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="times each setting is run, interleaved; the median run is shown (default 5)")
    parser.add_argument("--quick", action="store_true", help="300 readings, one round, for a smoke run")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder on the disk to measure (default bench/results/); not tmpfs or overlay")
    args = parser.parse_args()
    if args.quick:
        args.readings, args.rounds = min(args.readings, 300), 1
    return args


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(runs: dict[Variant, list[Result]]) -> None:
    chosen_runs = runs[VARIANTS[0]]
    chosen = median_result(chosen_runs)
    print()
    print(f"{'setting':25} {'durable':>7} {'readings/s':>10} {'wchar/rd':>9} {'write_bytes/rd':>14} "
          f"{'disk bytes/rd':>13} {'flushes/rd':>10} {'speed':>7} {'write_bytes':>11}")
    for results in runs.values():
        r = median_result(results)
        print(f"{r.variant.label:25} {'yes' if r.variant.durable else 'NO':>7} {r.per_second:>10,.0f} "
              f"{fmt(r.per_reading(r.io.wchar), ',.0f'):>9} {fmt(r.per_reading(r.io.write_bytes), ',.0f'):>14} "
              f"{fmt(r.per_reading(r.io.device_bytes), ',.0f'):>13} {fmt(r.per_reading(r.io.device_flushes), '.2f'):>10} "
              f"{speed_ratio(results, chosen_runs):>6.2f}x "
              f"{ratio(r.io.write_bytes, chosen.io.write_bytes):>11}")
    print("/rd: per reading; each row is the median-speed run of its setting.  speed: median over rounds of the "
          "ratio to the chosen setting in the same round.  write_bytes: ratio to the chosen setting.  wchar and "
          "write_bytes from /proc/self/io; disk bytes and flushes from the block device (whole device, after sync).")


def main() -> None:
    args = parse_args()
    folder = work_dir(args.dir)
    for line in machine_lines():
        print(line)
    mount = mount_of(folder)
    block_stat = block_stat_path(folder)
    print(f"measuring in {folder}: {mount.fstype} on {mount.source} ({mount.options})")
    if mount.fstype in ("tmpfs", "overlay", "ramfs"):
        print(f"WARNING: {mount.fstype} does not report write_bytes; use --dir on a real disk")
    print(f"block device counters: {block_stat or 'none (not a block device)'}")
    readings = synthetic_readings(args.readings)
    body = sum(len(replace(r, seq=n).to_json().encode()) for n, r in enumerate(readings, 1)) / len(readings)
    print(f"{args.readings:,} readings per setting and round, {body:.0f} bytes of JSON each on average")
    runs: dict[Variant, list[Result]] = {v: [] for v in VARIANTS}
    for round_number in range(1, args.rounds + 1):
        for variant in VARIANTS:
            # A fresh database each run, so no run appends to a file another run has grown.
            with tempfile.TemporaryDirectory(dir=folder, prefix="append-") as tmp:
                result = measure(variant, Path(tmp), readings, block_stat)
            runs[variant].append(result)
            print(f"  round {round_number}: {variant.label:25} {result.per_second:>8,.0f} readings/s")
    report(runs)


if __name__ == "__main__":
    main()
