"""How fast `blankspot serve` answers the live map, against drawing the offline map: cells and tracks, cold and cached.

The database is the one of ``bench/survey.py`` (a few boats on the Mahakam, the same
readings and the same filling).  `blankspot map` runs on it as a real process and is timed
from start to exit; then the server runs in this process (a thread, as `blankspot serve`
runs it) and each request is timed from the client's side over HTTP on loopback:

- cold: the first request of its kind (the grid of its resolution and filters is summed from
  the kept figures; for tracks, the one pass over the readings);
- pan: another area at the same zoom and filters (the grid or layers are kept; only the
  answer is cut and written);
- cached: the same request again (the answer is kept).

    python bench/serve.py                          # 200,000 readings
    python bench/serve.py --readings 1000000 --reuse
    python bench/serve.py --quick                  # a smoke run
    python bench/serve.py --db /var/tmp/survey-10m/survey.db   # a database bench/survey.py filled

Before the requests, the time `blankspot serve` takes at start to prepare the first view (the
whole grid at resolution 8 and the layers, ``LiveMap.warm``) is measured on a server of its
own: after it, the first view's requests are answered from memory.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import threading
import time
import urllib.request
from pathlib import Path

from _common import REPO, machine_lines, work_dir
from survey import fill, timed

from agent.centre.serve import LiveMap, ServeOptions, make_server, settle_garbage_collector
from agent.centre.store.readonly import open_store_readonly

# Views of a district office: around Tenggarong at zoom 11 and 13, the whole river at zoom 8.
TENGGARONG = (-0.52, 116.85, -0.32, 117.10)
TENGGARONG_EAST = (-0.52, 117.00, -0.32, 117.25)
RIVER = (-0.80, 116.30, 0.00, 117.40)
CLOSE = (-0.445, 116.96, -0.405, 117.01)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=200_000, help="readings in the database (default 200000)")
    parser.add_argument("--boats", type=int, default=4, help="units the readings are spread over (default 4)")
    parser.add_argument("--dir", type=Path, default=None, help="where the database goes (default bench/results/)")
    parser.add_argument("--reuse", action="store_true",
                        help="use the database of an earlier run with the same --readings and --boats if it is there")
    parser.add_argument("--quick", action="store_true", help="20,000 readings, for a smoke run")
    parser.add_argument("--db", type=Path, default=None,
                        help="time this collector database as it is (one bench/survey.py filled, say)")
    return parser.parse_args()


def bbox(box: tuple[float, float, float, float]) -> str:
    return ",".join(f"{v:g}" for v in box)


def main() -> int:
    args = parse_args()
    if args.quick:
        args.readings = 20_000
    folder = work_dir(args.dir)
    db = args.db.resolve() if args.db else folder / f"serve-{args.readings}-{args.boats}.db"
    if args.db is None and not (args.reuse and db.exists()):
        started = time.perf_counter()
        filler = multiprocessing.Process(target=fill, args=(db, args.readings, args.boats, "ingest"))
        filler.start()
        filler.join()
        if filler.exitcode:
            raise SystemExit(f"filling {db} failed")
        print(f"filled in {time.perf_counter() - started:.0f} s")
    if args.db is not None:
        with open_store_readonly(f"sqlite:///{db}") as store:
            counts = store.counts()
        args.readings, args.boats = counts["readings"], counts["devices"]
    print(f"{args.readings:,} readings of {args.boats} boats in {db} ({db.stat().st_size / 1e6:.0f} MB)")
    for line in machine_lines():
        print(line)

    map_s, map_mb = timed(REPO, ["map", "--out", "{dir}/serve-map.html"], db, folder)
    print(f"\nblankspot map (offline page, one process): {map_s:.1f} s, peak {map_mb:.0f} MB\n")

    url = f"sqlite:///{db}"
    starting = LiveMap(lambda: open_store_readonly(url), ServeOptions(tiles=None))
    started = time.perf_counter()
    starting.warm().join()
    print(f"at start, the first view prepared in {time.perf_counter() - started:.2f} s\n")
    starting.close()
    settle_garbage_collector()  # as blankspot serve does at start
    live = LiveMap(lambda: open_store_readonly(url), ServeOptions(tiles=None))
    server = make_server("127.0.0.1", 0, live, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"

    def get(path: str) -> tuple[float, int]:
        started = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=3600) as reply:
            body = reply.read()
        return (time.perf_counter() - started) * 1000, len(body)

    week = "from=2026-11-25&to=2026-12-01"
    requests = [
        ("cells z11 Tenggarong", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}", "cold"),
        ("cells z11 Tenggarong", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}", "cached"),
        ("cells z11 further east", f"api/cells?zoom=11&bbox={bbox(TENGGARONG_EAST)}", "pan"),
        ("cells z13 close", f"api/cells?zoom=13&bbox={bbox(CLOSE)}", "pan"),
        ("cells z8 river (res 5)", f"api/cells?zoom=8&bbox={bbox(RIVER)}", "cold"),
        ("cells z8 river (res 5)", f"api/cells?zoom=8&bbox={bbox(RIVER)}", "cached"),
        ("cells z11, one week", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}&{week}", "cold"),
        ("cells z11, one week", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}&{week}", "cached"),
        ("cells z11, another week", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}&from=2026-12-01&to=2026-12-07", "cold"),
        ("cells z11, a month", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}&from=2026-12-01&to=2026-12-31", "cold"),
        ("cells z11, 30 days", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}&from=2026-11-25&to=2026-12-24", "cold"),
        ("cells z11, one unit", f"api/cells?zoom=11&bbox={bbox(TENGGARONG)}&units=boat-1", "cold"),
        ("tracks z11 Tenggarong", f"api/tracks?zoom=11&bbox={bbox(TENGGARONG)}", "cold"),
        ("tracks z11 Tenggarong", f"api/tracks?zoom=11&bbox={bbox(TENGGARONG)}", "cached"),
        ("tracks z11 further east", f"api/tracks?zoom=11&bbox={bbox(TENGGARONG_EAST)}", "pan"),
        ("tracks z8 river", f"api/tracks?zoom=8&bbox={bbox(RIVER)}", "cold zoom"),
        ("tracks z8 river", f"api/tracks?zoom=8&bbox={bbox(RIVER)}", "cached"),
        ("segments z11", f"api/segments?zoom=11&bbox={bbox(TENGGARONG)}", "pan"),
        ("fleet", "api/fleet", "always"),
        ("healthz", "healthz", "always"),
    ]
    print(f"{'request':<26}{'kind':<11}{'ms':>10}{'KB':>9}{'vs map':>10}")
    try:
        for name, path, kind in requests:
            ms, size = get(path)
            print(f"{name:<26}{kind:<11}{ms:>10.1f}{size / 1000:>9.0f}{ms / 1000 / map_s:>10.4f}", flush=True)
    finally:
        server.shutdown()
        server.server_close()
        live.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nserver process peak memory: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
