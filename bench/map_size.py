"""How big the offline map gets, and how long its tracks take to draw, at a regency-year.

One million positioned readings of generated trips (boats going up and down the Mahakam
route at 15 km/h, one reading every 10 s, a few metres of GPS scatter, a trip a piece), plus
the coverage grid of one trip per boat, go through ``map_data`` and ``render_map`` twice:
with the tracks as the map draws them (thinned, simplified for a zoom, fitted to the
track budget) and with the tracks only thinned (the obvious alternative: every point
15 m apart). Prints page size and build time of each and their ratio.

    python bench/map_size.py              # the figures in docs/benchmarks.md
    python bench/map_size.py --readings 100000
"""
from __future__ import annotations

import argparse
import random
import resource
import time
from datetime import timedelta

from _common import START, machine_lines, ratio, synthetic_readings

from agent.centre import mapview
from agent.centre.coverage import aggregate
from agent.centre.segments import Track, TrackPoint
from agent.sim.route import mahakam_route

BOATS = 30


def trips(readings: int, seed: int = 13) -> list[Track]:
    """Track pieces of ``readings`` points in all: trips of BOATS boats, alternately up and down the river."""
    rng = random.Random(seed)
    route = mahakam_route()
    step_m = 15 / 3.6 * 10
    per_trip = int(route.length_m // step_m)
    pieces, left, trip = [], readings, 0
    while left > 0:
        count = min(per_trip, left)
        start = START + timedelta(days=trip // BOATS)
        up = trip % 2 == 0
        points = []
        for i in range(count):
            d = i * step_m if up else route.length_m - i * step_m
            at = route.at(d)
            # About 3 m of GPS scatter.
            points.append(TrackPoint(i, start + timedelta(seconds=10 * i),
                                     at.lat + rng.gauss(0, 3 / 110_574), at.lon + rng.gauss(0, 3 / 111_320)))
        pieces.append(Track(f"boat-{trip % BOATS + 1}", trip // BOATS + 1, tuple(points)))
        left -= count
        trip += 1
    return pieces


def only_thinned(track: Track) -> dict:
    return {"line": [[round(p.lat, 5), round(p.lon, 5)] for p in mapview.thin(track.points)],
            "popup": mapview.drawn_track(track)["popup"]}


def build(pieces: list[Track], coverage, drawn, budget: int) -> tuple[int, float]:
    began = time.perf_counter()
    lines = [drawn(t) for t in pieces]
    data = mapview.map_data(coverage, lines, [], [], track_budget=budget)
    page = mapview.render_map(data)
    return len(page.encode("utf-8")), time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    args = parser.parse_args()
    for line in machine_lines():
        print(line)
    pieces = trips(args.readings)
    coverage = aggregate(synthetic_readings(len(pieces[0].points)))
    print(f"{args.readings} readings in {len(pieces)} track pieces; {len(coverage.cells)} cells")

    simplified_size, simplified_s = build(pieces, coverage, mapview.drawn_track, mapview.TRACK_BUDGET)
    print(f"map as drawn:   {simplified_size / 1e6:6.2f} MB in {simplified_s:6.1f} s")
    # No budget and no simplification: the page as it was drawn before.
    thinned_size, thinned_s = build(pieces, coverage, only_thinned, 10 ** 12)
    print(f"only thinned:   {thinned_size / 1e6:6.2f} MB in {thinned_s:6.1f} s")
    print(f"size: {ratio(simplified_size, thinned_size)} of the thinned page; "
          f"time: {ratio(simplified_s, thinned_s)}")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
