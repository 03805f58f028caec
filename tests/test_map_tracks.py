"""Tracks on the map stay within a bounded size: simplified for a zoom (Douglas-Peucker),
then drawn for a coarser zoom, then shortest pieces left out, as the budget requires."""
from __future__ import annotations

import math

from agent.centre.mapview import PIECE_COST, fit_tracks, pixel_m, simplify
from agent.shared.geo import haversine_m


def zigzag(points: int, amplitude_m: float, lat0: float = -0.4, lon0: float = 116.9) -> list[list[float]]:
    """A track eastwards 10 m a point, swinging ``amplitude_m`` north and south every point."""
    deg_lat = amplitude_m / 110_574.0
    return [[lat0 + (deg_lat if i % 2 else -deg_lat), lon0 + i * 10 / 111_320.0] for i in range(points)]


def distance_to_line_m(point, line) -> float:
    # Good enough for the test: the nearest vertex or segment point, sampled finely.
    best = math.inf
    for a, b in zip(line, line[1:]):
        for k in range(101):
            t = k / 100
            best = min(best, haversine_m(point[0], point[1], a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
    return best


def test_a_straight_line_keeps_its_ends_only():
    line = [[-0.4, 116.9 + i * 1e-4] for i in range(200)]
    assert simplify(line, 1.0) == [line[0], line[-1]]


def test_wiggles_within_the_tolerance_go_and_wiggles_beyond_it_stay():
    assert len(simplify(zigzag(200, 2.0), 5.0)) == 2
    assert len(simplify(zigzag(200, 20.0), 5.0)) == 200


def test_every_left_out_point_is_within_the_tolerance():
    line = [[-0.4 + 0.001 * math.sin(i / 7), 116.9 + i * 2e-4] for i in range(300)]
    kept = simplify(line, 10.0)
    assert len(kept) < len(line) / 3
    assert max(distance_to_line_m(p, kept) for p in line) <= 10.5


def test_a_pixel_halves_with_each_zoom_step():
    assert pixel_m(16) == pixel_m(15) / 2
    assert 2.3 < pixel_m(16) < 2.5


def piece(line):
    return {"line": line, "popup": []}


def test_tracks_within_the_budget_keep_the_finest_zoom():
    fitted = fit_tracks([piece(zigzag(100, 50.0))], budget=1000)
    assert (fitted.zoom, fitted.left_out, len(fitted.pieces[0]["line"])) == (16, 0, 100)


def test_tracks_over_the_budget_are_drawn_for_a_coarser_zoom():
    pieces = [piece(zigzag(2000, 20.0)) for _ in range(5)]
    fitted = fit_tracks(pieces, budget=1000)
    assert fitted.zoom < 16 and fitted.left_out == 0
    assert sum(len(p["line"]) + PIECE_COST for p in fitted.pieces) <= 1000


def test_too_many_pieces_leave_the_shortest_out():
    pieces = [piece(zigzag(2, 0.0)) for _ in range(300)] + [piece(zigzag(500, 5000.0))]
    fitted = fit_tracks(pieces, budget=1000)
    assert fitted.left_out > 0
    assert sum(len(p["line"]) + PIECE_COST for p in fitted.pieces) <= 1000
    assert any(len(p["line"]) > 2 for p in fitted.pieces), "the long piece is kept"


def test_a_page_of_many_long_tracks_stays_within_its_bound():
    from agent.centre.coverage import aggregate
    from agent.centre.mapview import TRACK_BUDGET, map_data, render_map

    pieces = [piece([[round(lat, 5), round(lon, 5)] for lat, lon in zigzag(2000, 20.0)]) for _ in range(40)]
    page = render_map(map_data(aggregate([]), pieces, [], []))
    assert sum(len(p["line"]) for p in pieces) > TRACK_BUDGET
    assert len(page.encode()) < 250_000 + 22 * TRACK_BUDGET


def test_stretches_and_tags_beyond_their_budgets_keep_the_longest_and_a_spread():
    from datetime import timedelta

    from agent.centre.coverage import aggregate
    from agent.centre.mapview import map_data
    from agent.centre.report import Place
    from agent.centre.segments import Segment, TrackPoint
    from agent.shared.reading import format_time
    from tests.support.survey_factory import T0, in_service

    coverage = aggregate([in_service("boat-1", 1, -0.4, 116.9)])
    # Stretches of 3 to 102 points, each drawn as it is (simplified already).
    segments = [Segment("boat-1", "510-10", tuple(TrackPoint(j, T0, -0.4 + j * 1e-3, 116.9 + i * 1e-2)
                                                  for j in range(3 + i)), 3 + i, 0, 100.0 * (3 + i))
                for i in range(100)]
    tags = [Place(f"spot {i}", -0.4, 116.9 + i * 1e-4, "tag", "boat-1", format_time(T0 + timedelta(minutes=i)))
            for i in range(50)]
    data = map_data(coverage, [], segments, tags, segments_simplified=True, segment_budget=1000, tag_budget=10)
    drawn = data["segments"]
    assert sum(len(s["line"]) + PIECE_COST for s in drawn) <= 1000
    assert data["segments_left_out"] == 100 - len(drawn) > 0
    assert {len(s["line"]) for s in drawn} >= {102, 101, 100, 99, 98}, "the longest are kept"
    assert [t["label"] for t in data["tags"]] == [f"spot {i}" for i in range(0, 50, 5)]
    assert data["tags_left_out"] == 40
    within = map_data(coverage, [], segments[:5], tags[:3], segments_simplified=True)
    assert (within["segments_left_out"], within["tags_left_out"], len(within["tags"])) == (0, 0, 3)


def test_served_stretches_past_their_budget_keep_the_longest_at_the_zoom_of_the_view():
    from agent.centre.live_answers import ServedLayers, View, segments_answer

    def stretch(i: int, line: list[list[float]], operator: str = "510-10") -> dict:
        return {"op": operator, "device": "boat-1", "days": ("2026-11-01", "2026-11-01"),
                "box": (min(p[0] for p in line), min(p[1] for p in line), max(p[0] for p in line),
                        max(p[1] for p in line)), "length_m": 10.0 * len(line), "line": line,
                "make_popup": lambda: [["n", str(i)]]}

    # A stretch is a few points and its popup weighs more: past the budget, the longest on
    # the ground are sent, as the view's zoom draws them (not simplified further).
    layers = ServedLayers(segments=[stretch(i, zigzag(3 + i, 20.0, lon0=116.9 + i * 0.01)) for i in range(10)]
                          + [stretch(99, zigzag(500, 20.0), "510-01")], finest=12)  # kept for zoom 12
    view = View(zoom=12, operator="510-10")
    within = segments_answer(layers, view, "510-10")
    assert (len(within["segments"]), within["segment_zoom"], within["left_out"]) == (10, 12, 0)
    assert within["segments"][0] == {"op": "510-10", "line": zigzag(3, 20.0, lon0=116.9), "popup": [["n", "0"]]}
    few = segments_answer(layers, view, "510-10", budget=(12 + 11 + 10) + 3 * PIECE_COST)
    assert (few["segment_zoom"], few["left_out"], [s["popup"] for s in few["segments"]]) == \
        (12, 7, [[["n", "7"]], [["n", "8"]], [["n", "9"]]]), "the three longest"
