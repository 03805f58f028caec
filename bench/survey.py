"""How long the centre's analysis commands take on a survey, and their peak memory: `map`, `report`, `export`.

A SQLite collector database is filled with the readings of a few boats on the Mahakam (the
synthetic trip of ``bench/_common.py``, each boat under its own device id and a day apart,
with a latency reading every tenth reading and a tagged spot every thousandth), then each
command runs as a real ``python -m agent`` process and is timed from start to exit.

With ``--against DIR`` the same commands also run on the code checked out in DIR (an older
checkout, say), on the same database, and the output compares the two.

Once filled, the tracks, segments and tags the collector keeps and its sums of each day and
month are brought up to date as a collector does after a quiet moment (timed: ``kept tracks
computed in``, ``days and months summed in``), so that the commands read them as they would on
a running collector's database.  ``--fill upgrade`` fills it
faster, for large runs: the readings are stored without anything kept (the schema of a
blankspot before the coverage figures), then opening the database upgrades it and the
schema's steps compute the figures and the kept tracks from every reading, as they would
for an older database (what is kept is the same either way: tests/test_cell_stats.py and
tests/test_kept_tracks.py).  ``--fill copy``, for ten million readings: as ``upgrade``, but
only the first 12 boats are generated and the others are copies of them made in SQL (the
same trips at the same times under their own device ids, as boats travelling together), so
that the fill takes minutes and the upgrade's computing of every figure is the long part.
Then what a served map asks for a visible area is timed in this process: the tracks at a
zoom and the segments of an area about 10 km across on the route.

    python bench/survey.py                                  # the figures in docs/benchmarks.md
    python bench/survey.py --readings 10000000 --boats 40 --fill copy --commands "map,report,export cells"
    python bench/survey.py --against /path/to/older/checkout
    python bench/survey.py --quick                          # a smoke run
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from _common import REPO, machine_lines, ratio, synthetic_readings, work_dir

from agent.centre.store import open_store
from agent.shared.reading import Event, Latency, Reading

COMMANDS = (
    ("map", ["map", "--out", "{dir}/survey-map.html"]),
    ("report", ["report"]),
    ("export geojson", ["export", "--format", "geojson", "--out", "{dir}/survey.geojson"]),
    ("export cells", ["export", "--format", "csv", "--what", "cells", "--out", "{dir}/survey-cells.csv"]),
)
LATENCY_EVERY = 10
GENERATED_BOATS = 12  # with --fill copy, the boats generated; the others are copies of them
TAG_EVERY = 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=200_000, help="readings in the database (default 200000)")
    parser.add_argument("--boats", type=int, default=4, help="units the readings are spread over (default 4)")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="also time the commands of the checkout in DIR, on the same database")
    parser.add_argument("--runs", type=int, default=1, help="runs of each command; the best is kept (default 1)")
    parser.add_argument("--dir", type=Path, default=None, help="where the database goes (default bench/results/)")
    parser.add_argument("--quick", action="store_true", help="20,000 readings, for a smoke run")
    parser.add_argument("--fill", choices=("ingest", "upgrade", "copy"), default="ingest",
                        help="store the readings as a collector does (default), or without anything kept and"
                             " then upgrade the database (faster), or as upgrade with only the first"
                             f" {GENERATED_BOATS} boats generated and the others copies of them (fastest)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the commands on the database an earlier run left in --dir, without filling it"
                             " (opening it applies any schema step it lacks, timed)")
    parser.add_argument("--commands", default=",".join(name for name, _ in COMMANDS),
                        help="the commands to time, comma-separated (default all: "
                             + ", ".join(name for name, _ in COMMANDS) + ")")
    return parser.parse_args()


def boat_readings(boat: int, count: int) -> list[Reading]:
    """``count`` readings of one boat: the synthetic trip, a latency reading and a tag now and then."""
    device = f"boat-{boat}"
    shift = timedelta(days=boat)
    readings = []
    for index, signal in enumerate(synthetic_readings(count), start=1):
        reading = replace(signal, device=device, seq=index, time=signal.time + shift)
        if index % TAG_EVERY == 0:
            reading = replace(reading, part=Event("tag", f"spot {boat}-{index // TAG_EVERY}", {"button": "short"}))
        elif index % LATENCY_EVERY == 0:
            served = signal.part.rat != "NONE"
            reading = replace(reading, part=Latency(
                target="8.8.8.8", method="icmp", sent=5, received=5 if served else 0,
                loss_pct=0.0 if served else 100.0, rtt_avg_ms=85.0 if served else None))
        readings.append(reading)
    return readings


def fill(path: Path, readings: int, boats: int, mode: str) -> None:
    from agent.centre.store.schema import MIGRATIONS
    from agent.centre.store.sqlite import SqliteStore

    upgrade = mode in ("upgrade", "copy")
    generated = min(boats, GENERATED_BOATS) if mode == "copy" else boats
    if path.exists():
        path.unlink()
    with SqliteStore(path, MIGRATIONS[:3] if upgrade else MIGRATIONS) as store:
        for boat in range(1, generated + 1):
            share = readings // boats + (1 if boat <= readings % boats else 0)
            made = boat_readings(boat, share)
            for start in range(0, len(made), 5_000):
                store.insert_readings(made[start:start + 5_000])
        started = time.perf_counter()
        if not upgrade:
            store.refresh_tracks()
            print(f"kept tracks computed in {time.perf_counter() - started:.1f} s", flush=True)
            sum_periods(store)
    if generated < boats:
        started = time.perf_counter()
        copy_boats(path, generated, boats)
        print(f"boats {generated + 1} to {boats} copied in {time.perf_counter() - started:.1f} s", flush=True)
    if upgrade:
        started = time.perf_counter()
        with open_store(f"sqlite:///{path}") as store:
            print(f"upgraded: the figures and kept tracks computed in {time.perf_counter() - started:.1f} s",
                  flush=True)
            sum_periods(store)


def copy_boats(path: Path, generated: int, boats: int) -> None:
    """Boats ``generated + 1`` to ``boats`` as copies of the generated ones, in SQL: the same
    trips at the same times under their own device ids (several boats on the river at once),
    with their seq ledger.  Minutes for millions of rows, where generating them takes hours."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    try:
        for boat in range(generated + 1, boats + 1):
            names = {"d": f"boat-{boat}", "s": f"boat-{(boat - generated - 1) % generated + 1}"}
            db.execute("BEGIN")
            for table in ("readings", "seq_ranges", "unit_ledger"):
                columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                values = [":d" if c == "device" else "json_set(body, '$.device', :d)" if c == "body" else c
                          for c in columns]
                db.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {table}"
                           " WHERE device = :s", names)
            db.execute("COMMIT")
    finally:
        db.close()


def reopen(path: Path) -> None:
    """Open the database an earlier run filled: the schema steps it lacks are applied (timed)."""
    if not path.exists():
        raise SystemExit(f"--reuse: no database at {path}")
    started = time.perf_counter()
    with open_store(f"sqlite:///{path}") as store:
        store.refresh_tracks()
        print(f"opened, its schema brought up to date in {time.perf_counter() - started:.1f} s", flush=True)
        sum_periods(store)


def sum_periods(store) -> None:  # type: ignore[no-untyped-def]
    """Sum the days and months, as a collector does after a quiet moment (timed)."""
    started = time.perf_counter()
    summed = store.refresh_periods()
    print(f"{summed} days and months summed in {time.perf_counter() - started:.1f} s", flush=True)


def served_requests(db: Path, runs: int = 5) -> list[tuple[str, float, int]]:
    """What a served map asks for an area about 10 km across on the route, where the trip
    first loses service: ``(what, best seconds of ``runs``, items)``."""
    from agent.centre.cell_stats import FiguresFilter

    # Centred where the trip first loses service, so that the area holds a blank-spot segment.
    blank = next(r for r in synthetic_readings(5_000) if getattr(r.part, "rat", None) == "NONE")
    lat, lon = blank.position.lat, blank.position.lon  # type: ignore[union-attr]
    area = FiguresFilter(area=(lat - 0.045, lon - 0.045, lat + 0.045, lon + 0.045))
    asks = [(f"tracks at zoom {zoom}", lambda store, zoom=zoom: store.tracks(zoom, area)) for zoom in (16, 12)]
    asks += [(f"segments at zoom {zoom}", lambda store, zoom=zoom: store.segments(area, zoom)) for zoom in (16, 12)]
    results = []
    with open_store(f"sqlite:///{db}") as store:
        for what, ask in asks:
            best, items = float("inf"), 0
            for _ in range(runs):
                started = time.perf_counter()
                items = len(ask(store))
                best = min(best, time.perf_counter() - started)
            results.append((what, best, items))
    return results


def timed(code: Path, args: list[str], db: Path, folder: Path) -> tuple[float, float]:
    """Seconds from start to exit, and the peak resident memory in MB, of one command."""
    command = [sys.executable, "-m", "agent", *(a.format(dir=folder) for a in args), "--db", f"sqlite:///{db}"]
    env = {**os.environ, "PYTHONPATH": str(code)}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return seconds, usage.ru_maxrss / 1024


def main() -> int:
    args = parse_args()
    if args.quick:
        args.readings = 20_000
    folder = work_dir(args.dir)
    db = folder / "survey.db"
    started = time.perf_counter()
    # Filled by another process: a command's peak memory counts from the size of the process
    # that starts it, and this one stays small.
    if args.reuse:
        filler = multiprocessing.Process(target=reopen, args=(db,))
    else:
        filler = multiprocessing.Process(target=fill, args=(db, args.readings, args.boats, args.fill))
    filler.start()
    filler.join()
    if filler.exitcode:
        raise SystemExit(f"filling {db} failed")
    if args.reuse:
        with open_store(f"sqlite:///{db}") as store:
            args.readings, args.boats = store.counts()["readings"], store.counts()["devices"]
    print(f"{args.readings:,} readings of {args.boats} boats in {db} "
          f"({db.stat().st_size / 1e6:.0f} MB, {'reused' if args.reuse else 'filled'} in "
          f"{time.perf_counter() - started:.0f} s)")
    for line in machine_lines():
        print(line)
    checkouts = [("this checkout", REPO)] + ([("--against", args.against.resolve())] if args.against else [])
    print()
    print(f"{'command':<16}" + "".join(f"{name + ': s, MB':>26}" for name, _ in checkouts)
          + ("   time ratio" if args.against else ""))
    chosen = {name.strip() for name in args.commands.split(",")}
    for name, command in COMMANDS:
        if name not in chosen:
            continue
        runs = [min(timed(code, command, db, folder) for _ in range(args.runs)) for _, code in checkouts]
        row = f"{name:<16}" + "".join(f"{seconds:>19.1f}{peak:>7.0f}" for seconds, peak in runs)
        if args.against:
            row += f"   {ratio(runs[0][0], runs[1][0]):>10}"
        print(row, flush=True)
    print()
    for what, seconds, items in served_requests(db):
        print(f"served area, {what:<20} {seconds * 1000:>8.1f} ms  ({items} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
