"""How long the cells of a regency-year take to read: `export --what cells` with and without filters.

The kept figures of a fleet's year are written straight into a SQLite collector database,
as the collector would have kept them from that many readings: per unit and WITA day the
cells its boat went through (a stretch of its own part of the river), for its home operator
and now and then a second one, each key holding about ``--readings`` / keys readings in
histograms of the sizes real keys have (levels on 0.5 dB bins, quality classes, one or two
technologies, latency).  The totals per cell and operator are those keys summed.  No
reading row is written: `export --what cells` reads the figures only, so what it costs
follows the keys and the totals, not the readings behind them.

Each command runs as a real ``python -m agent`` process, timed from start to exit, with its
peak memory; then the same grids in process, from the totals and summed from the keys (how
every view was read before the totals were kept).

    python bench/figures.py                    # the figures in docs/benchmarks.md
    python bench/figures.py --units 4 --days 30 --quick
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from _common import REPO, machine_lines, work_dir

from agent.centre.cell_stats import CellStats, FiguresFilter, StatsKey, log_bucket
from agent.centre.coverage import Thresholds, cell_of
from agent.centre.store import open_store
from agent.centre.store.aggregates import Figures, _TOTAL_INSERT, _UPSERT, _units_json, totals_of
from agent.sim.route import mahakam_route

OPERATORS = ("510-10", "510-1", "510-11")
FIRST_DAY = date(2026, 1, 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=40, help="units of the fleet (default 40)")
    parser.add_argument("--days", type=int, default=365, help="WITA days each unit measures (default 365)")
    parser.add_argument("--cells-per-day", type=int, default=60, help="cells a unit crosses in a day (default 60)")
    parser.add_argument("--readings", type=int, default=10_000_000,
                        help="readings the keys hold between them (default 10,000,000)")
    parser.add_argument("--dir", type=Path, default=None, help="where the database goes (default bench/results/)")
    parser.add_argument("--quick", action="store_true", help="4 units, 30 days, 100,000 readings")
    parser.add_argument("--reuse", action="store_true", help="time the database a previous run filled, as it is")
    parser.add_argument("--keys", action="store_true",
                        help="also time the grid of every day and unit summed from the keys (minutes at a year)")
    return parser.parse_args()


def river_cells() -> list[str]:
    """Cells at resolution 8 along the Mahakam and its side rivers: the route's cells and the
    rings around them, in an order that keeps neighbours near each other."""
    import h3

    route = mahakam_route()
    line = list(dict.fromkeys(cell_of(p.lat, p.lon, 8) for p in (route.at(route.length_m * i / 2000)
                                                                   for i in range(2000))))
    return list(dict.fromkeys(c for cell in line for c in sorted(h3.grid_disk(cell, 8))))


def key_stats(rng: random.Random, readings: int, day: date) -> CellStats:
    blank = rng.random() < 0.15
    no_service = readings if blank else rng.randint(0, readings // 4)
    served = readings - no_service
    stats = CellStats(samples=readings, no_service=no_service, trusted=readings)
    stats.quality = {"none": no_service} if no_service else {}
    if served:
        stats.quality.update({"good": served // 2, "fair": served - served // 2} if served > 1 else {"good": 1})
        centre = rng.randint(-230, -170)
        stats.rsrp = {centre + d: served // 6 + 1 for d in range(-6, 6, 2)}
        stats.rssi = {b + 56: n for b, n in stats.rsrp.items()}
        stats.rat_samples = {"LTE": served}
        stats.rat_rsrp = {"LTE": dict(stats.rsrp)}
        stats.rat_rssi = {"LTE": dict(stats.rssi)}
        stats.rat_quality = {"LTE": {q: n for q, n in stats.quality.items() if q != "none"}}
        stats.latency_samples = 1
        stats.latency = {log_bucket(rng.uniform(40, 400)): 1}
    if no_service:
        stats.rat_samples["NONE"] = no_service
        stats.rat_quality["NONE"] = {"none": no_service}
    hour = rng.randint(0, 8)
    stats.first_trusted = f"{day.isoformat()}T{hour:02d}:00:00.000Z"
    stats.last_trusted = f"{day.isoformat()}T{hour + 1:02d}:30:00.000Z"
    return stats


def fill(path: Path, args: argparse.Namespace) -> tuple[int, int, int]:
    """The database's keys and totals; returns (keys, totals, readings)."""
    if path.exists():
        path.unlink()
    rng = random.Random(13)
    cells = river_cells()
    keys_per_unit_day = args.cells_per_day * 1.3  # a second operator in about 30 % of the cells
    per_key = max(1, round(args.readings / (args.units * args.days * keys_per_unit_day)))
    totals: dict[tuple[str, str], tuple[CellStats, dict[str, int]]] = {}
    keys = readings = 0
    with open_store(f"sqlite:///{path}") as store:
        with store._reading() as db:
            db.execute("BEGIN")
            for unit in range(1, args.units + 1):
                device = f"boat-{unit:02d}"
                home = OPERATORS[unit % len(OPERATORS)]
                beat = rng.randrange(0, max(1, len(cells) - 400))
                rows = []
                for offset in range(args.days):
                    day = FIRST_DAY + timedelta(days=offset)
                    start = beat + rng.randrange(0, 400 - args.cells_per_day)
                    for cell in cells[start:start + args.cells_per_day]:
                        operators = [home] + ([OPERATORS[(unit + 1) % 3]] if rng.random() < 0.3 else [])
                        for operator in operators:
                            stats = key_stats(rng, per_key, day)
                            key = StatsKey(cell, operator, day.isoformat(), device)
                            rows.append((key.cell, key.operator, key.day, key.device, *stats.row()))
                            for pair, (total, units) in totals_of([(key, stats)]).items():
                                kept, seen = totals.setdefault(pair, (CellStats(), {}))
                                kept.merge(total)
                                seen[device] = seen.get(device, 0) + units[device]
                            readings += stats.readings
                db.executemany(_UPSERT, rows)
                keys += len(rows)
                db.execute("INSERT INTO units (device, state, last_seen, status) VALUES (?, 'online', ?, '{}')",
                           (device, f"{FIRST_DAY.isoformat()}T00:00:00.000Z"))
            db.executemany(_TOTAL_INSERT, [(cell, operator, *total.row(), _units_json(units))
                                           for (cell, operator), (total, units) in sorted(totals.items())])
            db.executemany("INSERT INTO operator_names (operator, name, n) VALUES (?, ?, 1)",
                           [(op, name, ) for op, name in zip(OPERATORS, ("Telkomsel", "Indosat", "XL"))])
            db.execute("COMMIT")
    return keys, len(totals), readings


def timed(args: list[str], db: Path) -> tuple[float, float, float]:
    """Seconds from start to exit, CPU seconds (what other work on the machine changes least),
    and the peak resident memory in MB, of one command."""
    command = [sys.executable, "-m", "agent", *args, "--db", f"sqlite:///{db}"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"failed: {' '.join(command)}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> int:
    args = parse_args()
    if args.quick:
        args.units, args.days, args.readings = 4, 30, 100_000
    folder = work_dir(args.dir)
    db = folder / "figures.db"
    started = time.perf_counter()
    if args.reuse and db.exists():
        with open_store(f"sqlite:///{db}") as store, store._reading() as conn:
            keys, totals, readings = conn.execute(
                "SELECT (SELECT count(*) FROM cell_stats), (SELECT count(*) FROM cell_totals),"
                " (SELECT sum(trusted + unsynced) FROM cell_totals)").fetchone()
        print(f"{readings:,} readings: {keys:,} keys, {totals:,} totals in {db} ({db.stat().st_size / 1e6:.0f} MB)")
    else:
        keys, totals, readings = fill(db, args)
        print(f"{readings:,} readings of {args.units} units over {args.days} days: {keys:,} keys, {totals:,} totals"
              f" in {db} ({db.stat().st_size / 1e6:.0f} MB, filled in {time.perf_counter() - started:.0f} s)")
    for line in machine_lines():
        print(line)
    out = folder / "figures-cells.csv"
    month = (FIRST_DAY + timedelta(days=30)).isoformat(), (FIRST_DAY + timedelta(days=59)).isoformat()
    commands = (
        ("all days and units", []),
        ("--technology LTE", ["--technology", "LTE"]),
        ("--from/--to 30 days", ["--from", month[0], "--to", month[1]]),
        ("--unit (one)", ["--unit", "boat-01"]),
    )
    print()
    print(f"{'export --what cells':<28}{'s':>8}{'CPU s':>8}{'MB':>8}")
    for name, extra in commands:
        seconds, cpu, peak = timed(["export", "--what", "cells", "--format", "csv", "--out", str(out), *extra], db)
        print(f"{name:<28}{seconds:>8.1f}{cpu:>8.1f}{peak:>8.0f}", flush=True)
    print()
    print(f"{'in process, Store.coverage(8)':<40}{'s':>8}{'CPU s':>8}")
    with open_store(f"sqlite:///{db}") as store:
        with store._reading() as conn:
            ways = [("from the totals", Figures(store._runner(conn), totals=True))]
            if args.keys:
                ways.append(("summed from the keys", Figures(store._runner(conn))))
            for name, figures in ways:
                start, cpu = time.perf_counter(), time.process_time()
                figures.coverage(8, Thresholds(), FiguresFilter())
                print(f"{name:<40}{time.perf_counter() - start:>8.1f}{time.process_time() - cpu:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
