"""Blank-spot segments along units' tracks, and the tracks themselves.

Tracks here run due east along a parallel near the equator with readings every 100 m, so
every expected length is a count of 100 m steps.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from agent.centre.coverage import HomeOperators, attribute
from agent.centre.segments import TrackRules, path_length_m, segments, tracks
from agent.shared.geo import haversine_m
from agent.shared.reading import Reading
from tests.support.survey_factory import T0, boat_trip, in_service, no_answer, no_service

LAT, LON0 = -0.3, 116.8
STEP_M = 100.0
STEP_DEG = STEP_M / haversine_m(LAT, 0.0, LAT, 1.0)  # degrees of longitude per 100 m here


def walk(pattern: str, device: str = "u", first_seq: int = 1, interval_s: float = 10.0, start_index: int = 0) -> list[Reading]:
    """One reading per character, 100 m and ``interval_s`` apart: ``S`` service, ``-`` none, ``E`` no answer,
    ``?`` service without a position."""
    readings = []
    for i, ch in enumerate(pattern):
        k = start_index + i
        lon, when, seq = LON0 + k * STEP_DEG, T0 + timedelta(seconds=interval_s * k), first_seq + i
        if ch == "S":
            readings.append(in_service(device, seq, LAT, lon, when=when))
        elif ch == "-":
            readings.append(no_service(device, seq, LAT, lon, when=when))
        elif ch == "E":
            readings.append(no_answer(device, seq, LAT, lon, when=when))
        elif ch == "?":
            readings.append(in_service(device, seq, None, None, when=when))
        else:
            raise ValueError(ch)
    return readings


def found(readings: list[Reading], rules: TrackRules = TrackRules()):
    return list(segments(attribute(readings, HomeOperators.learn(readings)), rules))


@pytest.mark.parametrize("pattern, expected", [
    # (no-service readings, bridged readings, length in 100 m steps) per segment
    ("SSSS", []),
    ("SS-SS", []),                                  # one reading is not a stretch
    ("SS--SS", [(2, 0, 1)]),
    ("SSSSSSSSSS--------------------SSSSSSSSSS", [(20, 0, 19)]),
    ("SS-----S-----SS", [(10, 1, 10)]),             # one bar of signal does not end it
    ("SS-----SS-----SS", [(10, 2, 11)]),            # nor two
    ("SS-----SSS-----SS", [(5, 0, 4), (5, 0, 4)]),  # three do
    ("SS---EEEE---SS", [(6, 0, 9)]),                # the modem not answering neither ends nor extends it
    ("SS---????---SS", [(6, 0, 9)]),                # readings without a position are left out
    ("-----", [(5, 0, 4)]),                          # from the very first reading to the last
])
def test_segments_on_a_known_track(pattern, expected):
    result = found(walk(pattern))
    assert [(s.no_service, s.bridged, round(s.length_km * 1000 / STEP_M, 2)) for s in result] == \
        [(n, b, float(steps)) for n, b, steps in expected]


def test_segment_ends_and_times():
    (s,) = found(walk("SSS----------SSS"))
    assert (s.start.seq, s.end.seq) == (4, 13)
    assert s.start.lon == pytest.approx(LON0 + 3 * STEP_DEG) and s.end.lon == pytest.approx(LON0 + 12 * STEP_DEG)
    assert s.start.lat == s.end.lat == LAT
    assert s.duration_s == 90.0
    assert s.length_km == pytest.approx(0.9, rel=1e-6)
    assert s.operator == "510-10" and s.device == "u"


def test_a_bridge_longer_than_bridge_m_ends_the_segment():
    rules = TrackRules(bridge_readings=5, bridge_m=250.0)
    assert [s.no_service for s in found(walk("---SS---"), rules)] == [6]       # 200 m with service
    assert [s.no_service for s in found(walk("---SSS---"), rules)] == [3, 3]   # 300 m with service


def test_a_gap_in_time_ends_the_segment():
    before = walk("SS-----")
    after = walk("-----SS", first_seq=8, start_index=7, interval_s=10.0)
    late = [Reading(r.device, r.time + timedelta(hours=1), r.time_source, r.part, r.position, r.seq) for r in after]
    assert [s.no_service for s in found(before + after)] == [10]
    assert [s.no_service for s in found(before + late)] == [5, 5]


def test_a_gap_in_space_ends_the_segment():
    jumped = walk("-----", first_seq=6, start_index=105)   # 10 km further on, 1000 s later
    assert [s.no_service for s in found(walk("-----") + jumped, TrackRules(max_gap_s=1e9))] == [5, 5]


def test_each_unit_has_its_own_segments():
    readings = walk("SS---", device="a") + walk("---SS", device="b")
    assert [(s.device, s.no_service) for s in found(readings)] == [("a", 3), ("b", 3)]


def test_segments_count_for_the_home_operator():
    readings = walk("SSS---")
    readings[0] = in_service("u", 1, LAT, LON0, mcc="510", mnc="01", operator="INDOSAT")
    readings[1] = in_service("u", 2, LAT, LON0 + STEP_DEG, mcc="510", mnc="01", operator="INDOSAT")
    readings[2] = in_service("u", 3, LAT, LON0 + 2 * STEP_DEG, mcc="510", mnc="01", operator="INDOSAT")
    assert [s.operator for s in found(readings)] == ["510-01"]


def test_trip_through_the_mahakam_blank_stretch():
    trip = boat_trip()
    (s,) = found(trip)
    assert s.operator == "510-10"
    # The stretch starts past Sebulu, inside the Tenggarong tower's flapping edge, and ends near Kota Bangun.
    assert haversine_m(s.start.lat, s.start.lon, -0.3300, 116.9900) < 2500
    assert haversine_m(s.end.lat, s.end.lon, -0.2600, 116.5900) < 10_500
    # Its length along the track equals the boat's distance between its first and last reading.
    steps = s.end.seq - s.start.seq
    assert s.length_km == pytest.approx(steps * 30 / 3.6 * 10 / 1000, rel=0.01)


# -- tracks ---------------------------------------------------------------------------------

def test_track_is_one_line_per_unit():
    (track,) = tracks(walk("SS--EE??SS"))
    assert track.device == "u" and track.part == 1
    assert len(track.points) == 8                    # the two without a position are left out
    assert track.length_km == pytest.approx(0.9, rel=1e-6)


def test_track_breaks_at_gaps_and_skips_standing_still():
    a = walk("SSSS")
    still = [Reading("u", r.time + timedelta(seconds=5), "gps", r.part, r.position, r.seq + 100) for r in a[-1:]]
    b = walk("SSS", first_seq=200, start_index=4)
    b = [Reading(r.device, r.time + timedelta(hours=2), r.time_source, r.part, r.position, r.seq) for r in b]
    lone = walk("S", device="v")
    result = list(tracks(a + still + b + lone))
    assert [(t.device, t.part, len(t.points)) for t in result] == [("u", 1, 4), ("u", 2, 3)]


def test_path_length_of_nothing_is_zero():
    assert path_length_m([]) == 0.0


def test_documented_rules_are_the_defaults():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "map.md").read_text(encoding="utf-8")
    rules = TrackRules()
    assert f"at most **{rules.bridge_readings} readings spanning at most {rules.bridge_m:.0f} m**" in doc
    assert f"more than **{rules.max_gap_s / 60:.0f} minutes** or **{rules.max_gap_m / 1000:.0f} km** apart" in doc
    assert f"it needs at least **{rules.min_readings}** no-service readings" in doc
