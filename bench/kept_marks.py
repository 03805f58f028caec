"""What keeping tracks, segments and tags costs at ingest: commits to a database that keeps
them (schema step 5: each commit marks the blocks of seqs it stored readings in) against one
that does not (step 4, the coverage figures only), in-process, same readings, same batches.

CPU time is compared, not only the wall clock: on a machine shared with other work the wall
clock of a few seconds of commits says more about the neighbours than about the code.

    python bench/kept_marks.py
    python bench/kept_marks.py --units 20 --readings 1000 --runs 3
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import machine_lines, synthetic_readings, work_dir

from agent.centre.store.schema import MIGRATIONS
from agent.centre.store.sqlite import SqliteStore
from agent.shared.reading import Reading


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=20, help="units (default 20)")
    parser.add_argument("--readings", type=int, default=1000, help="readings per unit (default 1000)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[200, 10], help="readings per commit")
    parser.add_argument("--runs", type=int, default=3, help="runs of each; the best is kept (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go (default bench/results/)")
    return parser.parse_args()


def commits(folder: Path, steps: tuple, units: list[list[Reading]], size: int) -> tuple[float, float]:
    """CPU and wall seconds to store every unit's readings, ``size`` per commit, the units in turn."""
    with SqliteStore(Path(tempfile.mkdtemp(dir=folder)) / "c.db", steps) as store:
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, len(units[0]), size):
            for unit in units:
                store.insert_readings(unit[start:start + size])
        return time.process_time() - cpu, time.perf_counter() - wall


def main() -> int:
    args = parse_args()
    folder = work_dir(args.dir)
    trip = synthetic_readings(args.units * args.readings)
    units = [[replace(r, device=f"boat-{u}", seq=i + 1)
              for i, r in enumerate(trip[u * args.readings:(u + 1) * args.readings])] for u in range(args.units)]
    for line in machine_lines():
        print(line)
    print(f"{args.units} units x {args.readings} readings; best of {args.runs}")
    for size in args.batch_sizes:
        best = {}
        for name, steps in (("kept", MIGRATIONS), ("figures only", MIGRATIONS[:4])):
            best[name] = min(commits(folder, steps, units, size) for _ in range(args.runs))
        kept, without = best["kept"], best["figures only"]
        print(f"batches of {size:>4}: CPU {kept[0]:.2f} s kept, {without[0]:.2f} s figures only: "
              f"{without[0] / kept[0]:.0%} of the rate; wall {kept[1]:.2f} s against {without[1]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
