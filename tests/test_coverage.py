"""Coverage grid: where readings land, which operator they count for, and each cell's class.

- A boat through the Mahakam scenario's blank stretch paints blank cells there, and only there.
- Fewer readings than ``min_samples`` is unknown, never blank.
- A modem that does not answer never paints a blank spot.
- No-service readings count for the SIM's home operator, across SIM swaps.
"""
from __future__ import annotations

from datetime import timedelta

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.centre.coverage import (
    CLASSES, UNKNOWN_OPERATOR, Attribution, HomeOperators, Thresholds, aggregate, attribute, cell_of, cell_ring, classify,
    median_quality, operator_key, percentile,
)
from agent.shared.geo import haversine_m
from agent.shared.quality import QUALITY_ORDER
from agent.shared.reading import REGISTRATIONS, SCHEMA_1, Latency, Reading, Signal, Throughput, reading_from_dict
from agent.sim.route import mahakam_route
from tests.support.survey_factory import T0, boat_trip, in_service, no_answer, no_service, position, tag

SEBULU = (-0.3300, 116.9900)
MUARA_KAMAN = (-0.1800, 116.7200)
SAMARINDA = (-0.5030, 117.1460)
LAT, LON = -0.25, 116.80  # a spot on the river, for single-cell scenarios


# -- classification -------------------------------------------------------------------------

@pytest.mark.parametrize("samples, no_service, quality, expected", [
    (0, 0, None, "unknown"),
    (4, 4, "none", "unknown"),        # everything says no service, but too few readings
    (5, 5, "none", "blank"),
    (10, 5, "none", "blank"),         # half the readings without service
    (10, 4, "fair", "weak"),
    (10, 2, "good", "weak"),          # a fifth without service: intermittent
    (10, 1, "good", "covered"),
    (10, 0, "poor", "weak"),          # always in service, but the median level is poor
    (10, 0, "fair", "covered"),
    (10, 0, None, "covered"),         # in service, levels unknown
])
def test_classify(samples, no_service, quality, expected):
    assert classify(samples, no_service, quality) == expected


def test_classify_uses_the_thresholds_given():
    strict = Thresholds(min_samples=20, blank_share=0.8, weak_share=0.5)
    assert classify(19, 19, "none", strict) == "unknown"
    assert classify(20, 15, "none", strict) == "weak"
    assert classify(20, 16, "none", strict) == "blank"


@pytest.mark.parametrize("kwargs", [dict(min_samples=0), dict(weak_share=0.6, blank_share=0.5), dict(blank_share=1.5)])
def test_thresholds_refuse_nonsense(kwargs):
    with pytest.raises(ValueError):
        Thresholds(**kwargs)


@given(samples=st.integers(0, 200), data=st.data(), min_samples=st.integers(1, 50),
       quality=st.sampled_from([None, "none", "poor", "fair", "good", "excellent"]))
def test_never_blank_under_min_samples(samples, data, min_samples, quality):
    no_service = data.draw(st.integers(0, samples))
    result = classify(samples, no_service, quality, Thresholds(min_samples=min_samples))
    if samples < min_samples:
        assert result == "unknown"


@given(samples=st.integers(0, 200), data=st.data(), quality=st.sampled_from([None, *QUALITY_ORDER]),
       thresholds=st.builds(Thresholds, min_samples=st.integers(1, 50), blank_share=st.floats(0.5, 1.0),
                            weak_share=st.floats(0.01, 0.5)))
def test_classify_gives_only_the_classes(samples, data, quality, thresholds):
    assert classify(samples, data.draw(st.integers(0, samples)), quality, thresholds) in CLASSES


@given(samples=st.integers(5, 100), data=st.data())
def test_more_no_service_never_improves_the_class(samples, data):
    worse = {"covered": 0, "weak": 1, "blank": 2}
    a = data.draw(st.integers(0, samples - 1))
    assert worse[classify(samples, a + 1, "good")] >= worse[classify(samples, a, "good")]


# -- figures --------------------------------------------------------------------------------

@pytest.mark.parametrize("values, q, expected", [
    ([], 50, None),
    ([-90.0], 10, -90.0),
    ([-100.0, -90.0], 50, -95.0),
    ([-110.0, -100.0, -90.0, -80.0, -70.0], 50, -90.0),
    ([-110.0, -100.0, -90.0, -80.0, -70.0], 10, -106.0),
    ([-70.0, -110.0, -90.0], 0, -110.0),
])
def test_percentile(values, q, expected):
    assert percentile(values, q) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("classes, expected", [
    ([], None),
    (["good"], "good"),
    (["none", "good"], "none"),            # even count: the worse of the middle two
    (["poor", "fair", "excellent"], "fair"),
    (["none", "none", "good", "good", "excellent"], "good"),
])
def test_median_quality(classes, expected):
    assert median_quality(classes) == expected


@pytest.mark.parametrize("signal, expected", [
    (Signal(registration="home", mcc="510", mnc="10", operator="TELKOMSEL", rat="LTE"), "510-10"),
    (Signal(registration="home", mcc="510", mnc="01", rat="LTE"), "510-01"),
    (Signal(registration="roaming", mcc="310", mnc="260", rat="LTE"), "310-260"),
    (Signal(registration="home", operator=" IND XL ", rat="GSM"), "IND XL"),
    (Signal(registration="home", mcc="000", mnc="00", operator="X", rat="GSM"), "X"),
    (Signal(registration="searching", rat="NONE"), None),
    (Signal(registration="roaming", mcc="310", mnc="026", rat="LTE"), "310-026"),  # two networks ...
    (Signal(registration="roaming", mcc="310", mnc="26", rat="GSM"), "310-26"),    # ... two keys
])
def test_operator_key(signal, expected):
    assert operator_key(signal) == expected


def test_a_reading_of_schema_1_and_one_of_schema_2_of_one_network_count_for_the_same_operator() -> None:
    """Indosat's 510-01 as /1 wrote it (510, 1) and as /2 writes it ("510", "01"): one key, one cell."""
    mine = in_service("u", 1, LAT, LON, mcc="510", mnc="01", operator="INDOSAT")
    earlier = mine.to_dict()
    earlier.update(schema=SCHEMA_1, seq=2)
    earlier["signal"].update(mcc=510, mnc=1)
    readings = [mine, reading_from_dict(earlier)]
    assert [operator_key(r.part) for r in readings] == ["510-01", "510-01"]
    coverage = aggregate(readings, thresholds=Thresholds(min_samples=2))
    assert [(c.operator, c.operator_name, c.samples) for c in coverage.cells] == [("510-01", "Indosat", 2)]


def test_310_026_and_310_26_stay_two_operators_on_the_map() -> None:
    readings = [in_service("u", seq, LAT, LON, mcc="310", mnc=mnc, operator=None, registration="roaming")
                for seq, mnc in enumerate(["026", "26", "026"], start=1)]
    coverage = aggregate(readings, thresholds=Thresholds(min_samples=1))
    assert sorted((c.operator, c.samples) for c in coverage.cells) == [("310-026", 2), ("310-26", 1)]


# How each registration state counts on the coverage map (docs/signal-quality.md): in
# service or a blank spot, and whether the centre learns the SIM's home network from it.
REGISTRATION_ON_THE_MAP = [
    # registration, in service, teaches the home operator
    ("home", True, True),
    ("sms_only_home", True, True),
    ("csfb_not_preferred_home", True, True),
    ("roaming", True, False),
    ("sms_only_roaming", True, False),
    ("csfb_not_preferred_roaming", True, False),
    ("emergency_only", False, False),
    ("rlos_only", False, False),
    ("searching", False, False),
    ("denied", False, False),
    ("not_registered", False, False),
    ("unknown", True, False),
]


def test_the_table_names_every_registration_word() -> None:
    assert sorted(word for word, _, _ in REGISTRATION_ON_THE_MAP) == sorted(REGISTRATIONS)


@pytest.mark.parametrize("registration, served, home", REGISTRATION_ON_THE_MAP,
                         ids=[word for word, _, _ in REGISTRATION_ON_THE_MAP])
def test_each_registration_state_counts_on_the_map_as_documented(registration: str, served: bool,
                                                                 home: bool) -> None:
    """A unit at home on Telkomsel (510-10) measures a cell of Indosat (510-01): its reading
    says the cell's codes and good levels, as a modem attached for emergency calls only may.
    In service, the reading counts for Indosat; without, it is a blank spot of the SIM's
    home operator.  A home registration makes Indosat the home operator for what follows."""
    first = in_service("u", 1, LAT, LON, mcc="510", mnc="10")
    part = Signal(registration=registration, operator="INDOSAT", mcc="510", mnc="01", rat="LTE", rsrp_dbm=-85.0,
                  quality="good")
    reading = Reading("u", T0, "gps", part, position(LAT, LON), 2)
    after = no_service("u", 3, *SAMARINDA)  # in another cell
    attributed = list(attribute([first, reading, after], HomeOperators.learn([first, reading, after])))
    coverage = aggregate([first, reading, after], thresholds=Thresholds(min_samples=1))
    here = {c.operator: c for c in coverage.cells if c.cell == cell_of(LAT, LON)}
    if served:
        assert attributed[1].operator == "510-01"
        assert (here["510-01"].samples, here["510-01"].no_service, here["510-01"].coverage_class) == (1, 0, "covered")
    else:
        assert attributed[1].operator == "510-10"
        assert (here["510-10"].samples, here["510-10"].no_service) == (2, 1) and "510-01" not in here
    assert attributed[2].operator == ("510-01" if home else "510-10")


# -- the Mahakam trip -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def trip() -> list[Reading]:
    return boat_trip(latency_every=6)


@pytest.fixture(scope="module")
def trip_coverage(trip):
    return aggregate(trip)


def _route_distance_of(lat: float, lon: float) -> float:
    """How far along the shipped route the point nearest (lat, lon) is, in metres."""
    route = mahakam_route()
    best = min(range(0, int(route.length_m), 100), key=lambda d: haversine_m(lat, lon, *_at(route, d)))
    return float(best)


def _at(route, d):
    p = route.at(d)
    return p.lat, p.lon


def test_trip_blank_stretch_is_blank_and_town_cells_are_covered(trip_coverage):
    cov = trip_coverage
    assert cov.operators == {"510-10": "Telkomsel"}
    by_cell = {c.cell: c for c in cov.cells}
    # Between Sebulu and Muara Kaman no tower reaches the river.
    route = mahakam_route()
    start, end = _route_distance_of(*SEBULU), _route_distance_of(*MUARA_KAMAN)
    inside = {cell_of(*_at(route, d)) for d in range(int(start) + 2500, int(end) - 2500, 200)}
    assert inside and all(by_cell[c].coverage_class in ("blank", "unknown") for c in inside if c in by_cell)
    assert sum(by_cell[c].coverage_class == "blank" for c in inside if c in by_cell) >= 0.8 * len(inside)
    # At the towers the signal is excellent.
    for town in (SAMARINDA, (-0.4240, 116.9840)):
        cell = by_cell[cell_of(*town)]
        assert cell.coverage_class == "covered", cell
        assert cell.rsrp_median_dbm > -80
    # Blank cells are all in the blank stretch, on no other part of the river.
    for c in cov.cells:
        if c.coverage_class == "blank":
            assert start - 3000 <= _route_distance_of(c.lat, c.lon) <= end + 15000, c


def test_trip_cells_have_their_figures(trip, trip_coverage):
    blank = next(c for c in trip_coverage.cells if c.coverage_class == "blank")
    assert blank.no_service_share >= 0.5
    assert blank.samples >= 5 and blank.devices == ("boat-1",)
    assert [f.rat for f in blank.by_rat][-1] == "NONE"
    assert blank.first_seen <= blank.last_seen
    covered = next(c for c in trip_coverage.cells if c.coverage_class == "covered" and c.latency_median_ms)
    assert covered.latency_median_ms == 80.0 and covered.latency_samples >= 1
    assert covered.rsrp_p10_dbm <= covered.rsrp_median_dbm
    assert covered.by_rat[0].rat == "LTE" and covered.by_rat[0].samples == covered.samples


def test_every_signal_reading_lands_in_exactly_one_cell(trip, trip_coverage):
    signals = [r for r in trip if isinstance(r.part, Signal)]
    assert sum(c.samples + c.no_answer for c in trip_coverage.cells) == len(signals)
    assert trip_coverage.unplaced == 0


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(st.floats(-60, 60), st.floats(-179, 179), st.booleans(), st.booleans()),
                       min_size=1, max_size=40),
       resolution=st.integers(5, 10))
def test_property_each_point_counted_once_in_its_own_cell(points, resolution):
    readings = []
    for seq, (lat, lon, service, answered) in enumerate(points, start=1):
        if not answered:
            readings.append(no_answer("u", seq, lat, lon))
        elif service:
            readings.append(in_service("u", seq, lat, lon))
        else:
            readings.append(no_service("u", seq, lat, lon))
    cov = aggregate(readings, resolution=resolution)
    counted = {(c.cell, c.operator): c.samples + c.no_answer for c in cov.cells}
    assert sum(counted.values()) == len(points)
    expected: dict[str, int] = {}
    for lat, lon, _, _ in points:
        cell = cell_of(lat, lon, resolution)
        expected[cell] = expected.get(cell, 0) + 1
    assert {cell: sum(n for (c, _), n in counted.items() if c == cell) for cell in expected} == expected
    assert all(h3.get_resolution(c.cell) == resolution for c in cov.cells)
    for c in cov.cells:
        assert c.coverage_class != "blank" or c.samples >= cov.thresholds.min_samples


# -- few readings, no answers ------------------------------------------------------------------

def _at_spot(n_service: int = 0, n_none: int = 0, n_error: int = 0, device: str = "u") -> list[Reading]:
    readings, seq = [in_service(device, 1, None, None)], 2   # registers at home once, far away (unplaced)
    for make, n in ((in_service, n_service), (no_service, n_none), (no_answer, n_error)):
        for _ in range(n):
            readings.append(make(device, seq, LAT, LON, when=T0 + timedelta(seconds=10 * seq)))
            seq += 1
    return readings


def _spot(readings, **kwargs):
    cov = aggregate(readings, **kwargs)
    (cell,) = [c for c in cov.cells if c.cell == cell_of(LAT, LON)]
    return cell


def test_too_few_readings_is_unknown_not_blank():
    cell = _spot(_at_spot(n_none=4))
    assert (cell.coverage_class, cell.samples, cell.no_service) == ("unknown", 4, 4)
    assert _spot(_at_spot(n_none=5)).coverage_class == "blank"
    assert _spot(_at_spot(n_none=5), thresholds=Thresholds(min_samples=6)).coverage_class == "unknown"


def test_no_answer_never_makes_a_blank_spot():
    only_errors = _spot(_at_spot(n_error=50))
    assert (only_errors.coverage_class, only_errors.samples, only_errors.no_answer) == ("unknown", 0, 50)
    mostly_errors = _spot(_at_spot(n_service=6, n_error=50))
    assert mostly_errors.coverage_class == "covered" and mostly_errors.no_service == 0
    few_none_many_errors = _spot(_at_spot(n_none=4, n_error=50))
    assert few_none_many_errors.coverage_class == "unknown"


def test_unplaced_readings_are_counted_not_placed():
    readings = [in_service("u", 1, None, None), no_service("u", 2, None, None), in_service("u", 3, LAT, LON)]
    cov = aggregate(readings)
    assert cov.unplaced == 2
    assert [c.samples for c in cov.cells] == [1]


# -- operators ------------------------------------------------------------------------------

def test_no_service_counts_for_the_home_operator():
    readings = [
        no_service("u", 1, LAT, LON),                                     # before the first home reading
        in_service("u", 2, LAT, LON, mcc="510", mnc="01", operator="INDOSAT"),
        no_service("u", 3, LAT, LON),
        in_service("u", 4, LAT, LON, mcc="510", mnc="10", registration="roaming"),  # visited network
        no_service("u", 5, LAT, LON),
    ]
    home = HomeOperators.learn(readings)
    keys = [a.operator for a in attribute(readings, home)]
    assert keys == ["510-01", "510-01", "510-01", "510-10", "510-01"]
    assert home.name("510-01") == "Indosat"


def test_sim_swap_changes_the_home_operator_from_then_on():
    readings = [
        in_service("u", 1, LAT, LON, mcc="510", mnc="10"), no_service("u", 2, LAT, LON),
        in_service("u", 3, LAT, LON, mcc="510", mnc="11", operator="XL"), no_service("u", 4, LAT, LON),
    ]
    home = HomeOperators.learn(readings)
    assert [a.operator for a in attribute(readings, home)] == ["510-10", "510-10", "510-11", "510-11"]


def test_home_operators_learnt_while_attributing_give_what_learning_first_gives():
    readings = [
        no_service("u", 1, LAT, LON),                                     # before the first home reading
        in_service("u", 2, LAT, LON, mcc="510", mnc="10", registration="roaming"),
        no_service("u", 3, LAT, LON),
        in_service("u", 4, LAT, LON, mcc="510", mnc="01", operator="INDOSAT"),
        no_service("u", 5, LAT, LON),
        in_service("u", 6, LAT, LON, mcc="510", mnc="11", operator="XL"),     # a SIM swap
        no_service("u", 7, LAT, LON),
        no_service("v", 1, LAT, LON),                                     # never at home
    ]
    home = HomeOperators()
    home.expect_first("u", readings[3].part)
    attribution = Attribution(home)
    keys = []
    for reading in readings:
        home.add(reading)
        keys.append(attribution(reading).operator)
    assert keys == [a.operator for a in attribute(readings, HomeOperators.learn(readings))]
    assert keys == ["510-01", "510-10", "510-01", "510-01", "510-01", "510-11", "510-11", UNKNOWN_OPERATOR]


def test_a_home_operator_told_ahead_counts_until_one_is_learnt():
    home = HomeOperators()
    home.expect_first("u", Signal(registration="home", operator="INDOSAT", mcc="510", mnc="01"))
    home.expect_first("w", Signal(registration="home"))  # names no network: tells nothing
    assert (home.at("u", 1), home.at("u", None), home.at("w", 1)) == ("510-01", "510-01", UNKNOWN_OPERATOR)
    home.add(in_service("u", 5, LAT, LON, mcc="510", mnc="11", operator="XL"))
    assert (home.at("u", 1), home.at("u", 9)) == ("510-11", "510-11")


def test_unit_never_at_home_counts_for_unknown():
    readings = [no_service("v", 1, LAT, LON), no_service("v", 2, LAT, LON)]
    cov = aggregate(readings)
    assert cov.operators == {UNKNOWN_OPERATOR: "unknown SIM"}
    assert [c.operator for c in cov.cells] == [UNKNOWN_OPERATOR]


def test_two_operators_are_classed_apart():
    readings = []
    seq = 1
    for i in range(8):
        readings.append(in_service("a", seq, LAT, LON, mcc="510", mnc="10"))
        seq += 1
    readings.append(in_service("b", 1, -0.5, 117.1, mcc="510", mnc="01", operator="INDOSAT"))
    for i in range(8):
        readings.append(no_service("b", 2 + i, LAT, LON))
    cov = aggregate(readings)
    classes = {c.operator: c.coverage_class for c in cov.cells if c.cell == cell_of(LAT, LON)}
    assert classes == {"510-10": "covered", "510-01": "blank"}
    assert cov.find_operator("telkomsel") == "510-10"
    assert cov.find_operator("510-01") == "510-01"
    assert cov.find_operator("Smartfren") is None


def test_latency_and_throughput_join_the_cell_of_their_operator():
    readings = _at_spot(n_service=5)
    seq = len(readings) + 1
    readings.append(Reading("u", T0, "gps", Latency("8.8.8.8", "icmp", 5, 5, 0.0, rtt_avg_ms=42.0), position(LAT, LON), seq))
    readings.append(Reading("u", T0, "gps", Latency("8.8.8.8", "icmp", 5, 0, 100.0), position(LAT, LON), seq + 1))
    readings.append(Reading("u", T0, "gps", Throughput("http", down_mbps=3.5, up_mbps=1.25), position(LAT, LON), seq + 2))
    readings.append(Reading("u", T0, "gps", Throughput("http", error="timeout"), position(LAT, LON), seq + 3))
    cell = _spot(readings)
    assert (cell.latency_samples, cell.latency_median_ms) == (2, 42.0)
    assert (cell.throughput_samples, cell.down_median_mbps, cell.up_median_mbps) == (2, 3.5, 1.25)
    assert cell.samples == 5


def test_events_are_not_coverage():
    cov = aggregate(_at_spot(n_service=5) + [tag("u", 99, LAT, LON, "kantor desa")])
    assert sum(c.samples for c in cov.cells) == 5


def test_cell_ring_is_closed_and_counter_clockwise():
    ring = cell_ring(cell_of(LAT, LON))
    assert ring[0] == ring[-1] and len(ring) == 7
    twice_area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:]))
    assert twice_area > 0
    assert all(116 < lon < 118 and -1 < lat < 0 for lon, lat in ring)


def test_documented_thresholds_are_the_defaults():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "map.md").read_text(encoding="utf-8")
    th = Thresholds()
    assert f"fewer than `--min-samples` ({th.min_samples}) answered readings" in doc
    assert f"no service in at least {th.blank_share:.0%} of the readings |" in doc
    assert f"no service in at least {th.weak_share:.0%} of the readings, or the median quality class is `poor`" in doc
    assert "| **8** (default) |" in doc


def test_unsynced_times_do_not_date_a_cell_that_has_trusted_ones() -> None:
    """A unit that never learnt the date stamps 1970 (marked unsynced): the cell's first and
    last seen come from the readings whose time is trusted."""
    from dataclasses import replace as _replace
    from datetime import datetime, timezone

    from agent.shared.reading import Position

    good = Signal(registration="home", operator="TELKOMSEL", mcc="510", mnc="10", rat="LTE", rsrp_dbm=-90.0, quality="good")
    base = Reading("unit-1", datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc), "gps", good,
                   Position(-0.5, 117.1), seq=1)
    readings = [_replace(base, seq=n, time=base.time.replace(minute=n)) for n in range(1, 6)]
    readings.append(_replace(base, seq=6, time=datetime(1970, 1, 1, tzinfo=timezone.utc), time_source="unsynced"))
    cells = aggregate(readings).cells
    assert len(cells) == 1
    assert cells[0].first_seen.year == 2026 and cells[0].last_seen.minute == 5
