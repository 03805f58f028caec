"""Tracks, blank-spot segments and tagged spots kept per unit: whatever order, batches,
duplicates and re-sends the readings come in, and whenever they are read, what the database
keeps is what one pass over every stored reading gives; the map draws the same page from it."""
from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.centre import segments as track_rules
from agent.centre.cell_stats import FiguresFilter, wita_day
from agent.centre.coverage import Attribution, HomeOperators, Thresholds
from agent.centre.mapview import FINEST_TRACK_ZOOM, MIN_TRACK_ZOOM, drawn_track, pixel_m, simplify
from agent.centre.report import tagged_place
from agent.centre.store import kept_tracks, open_store
from agent.centre.store.schema import MIGRATIONS
from agent.centre.segments import Track
from agent.centre.store.sqlite import SqliteStore
from agent.centre.survey import Survey, map_page
from agent.shared.reading import (
    HOME_REGISTRATIONS, NO_SERVICE_REGISTRATIONS, ROAMING_REGISTRATIONS, Event, Latency, Reading, Signal,
)
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)
from tests.support.survey_factory import T0, boat_trip, position

NETWORKS = (("510", "10", "TELKOMSEL"), ("510", "01", "INDOSAT OOREDOO"))
START = T0 + timedelta(hours=15, minutes=50)  # ten minutes before midnight in WITA
DAYS = (None, ("2026-11-24", "2026-11-24"), ("2026-11-25", "2026-11-25"), ("2026-11-26", "2026-12-31"))
DEVICES = (None, frozenset(), frozenset({"boat-2"}), frozenset({"boat-1", "probe-3"}))
AREAS = (None, (-0.52, 117.13, -0.49, 117.16), (-1.0, 110.0, 1.0, 120.0))


@st.composite
def unit_readings(draw, device: str) -> list[Reading]:
    """One unit's readings, seq 1..n, along a walk on the river: steps of a few hundred
    metres (some none: standing still), now and then a jump or a pause long enough to cut the
    track, over WITA midnight; service, no service, no answer, tests, tags, no position."""
    n = draw(st.integers(1, 40))
    home = draw(st.sampled_from(NETWORKS))
    lat, lon, when = -0.5030, 117.1460, START + timedelta(minutes=draw(st.integers(0, 8)))
    readings = []
    for seq in range(1, n + 1):
        step = draw(st.sampled_from((0, 0, 150, 300, 450, 6000)))
        heading = draw(st.integers(0, 7)) * math.pi / 4
        lat += step * math.cos(heading) / 110_574.0
        lon += step * math.sin(heading) / 111_320.0
        when += timedelta(seconds=draw(st.sampled_from((5, 30, 120, 600, 2000))))
        if draw(st.integers(0, 25)) == 0:
            home = draw(st.sampled_from(NETWORKS))  # a SIM swap
        kind = draw(st.sampled_from(("home", "home", "roaming", "none", "none", "none", "error", "latency", "tag")))
        if kind in ("home", "roaming"):
            mcc, mnc, name = home if kind == "home" else draw(st.sampled_from(NETWORKS))
            words = HOME_REGISTRATIONS if kind == "home" else ROAMING_REGISTRATIONS  # SMS only, CSFB ... too
            part = Signal(registration=draw(st.sampled_from(sorted(words))), operator=name, mcc=mcc, mnc=mnc,
                          rat="LTE", rsrp_dbm=-100.0, quality="fair")
        elif kind == "none":
            part = Signal(registration=draw(st.sampled_from(sorted(NO_SERVICE_REGISTRATIONS))), rat="NONE",
                          quality="none")
            if part.registration in ("emergency_only", "rlos_only") and draw(st.booleans()):
                # attached to a cell the public cannot use, as another source may tell it: still a blank spot
                part = Signal(registration=part.registration, operator="INDOSAT OOREDOO", mcc="510", mnc="01",
                              rat="LTE", rsrp_dbm=-100.0, quality="fair")
        elif kind == "error":
            part = Signal(registration="unknown", rat="NONE", quality=None, error="no answer")
        elif kind == "latency":
            part = Latency(target="8.8.8.8", method="icmp", sent=5, received=5, loss_pct=0.0, rtt_avg_ms=90.0)
        else:
            part = Event("tag", draw(st.sampled_from((None, " kantor desa "))), {})
        placed = draw(st.integers(0, 9)) > 0
        readings.append(Reading(device, when, "gps", part, position(lat, lon) if placed else None, seq))
    return readings


@st.composite
def arrivals(draw) -> tuple[list[Reading], list[list[Reading]], list[bool]]:
    """Readings of several units, the batches they arrive in (shuffled, with re-sends), and
    after which batches the kept tracks are read."""
    readings = [r for device in ("boat-1", "boat-2", "probe-3")[:draw(st.integers(1, 3))]
                for r in draw(unit_readings(device))]
    order = draw(st.permutations(readings))
    resent = draw(st.lists(st.sampled_from(readings), max_size=8))
    sent = list(order) + resent
    cuts = sorted(draw(st.lists(st.integers(0, len(sent)), max_size=10)))
    batches = [sent[a:b] for a, b in zip([0] + cuts, cuts + [len(sent)]) if sent[a:b]]
    return readings, batches, [draw(st.booleans()) for _ in batches]


def one_pass(store):
    """Tracks, segments and tags as the survey's pass over every stored reading makes them."""
    readings = list(store.iter_readings())
    home = HomeOperators()
    for device, _seq, mcc, mnc, operator in store.first_home_signals():
        home.expect_first(device, Signal(registration="home", operator=operator, mcc=mcc, mnc=mnc))
    attribution = Attribution(home)
    items = []
    for reading in readings:
        home.add(reading)
        items.append(attribution(reading))
    tags = [place for place in map(tagged_place, readings) if place is not None]
    return list(track_rules.tracks(readings)), list(track_rules.segments(items)), tags


def line_at(track, zoom: int) -> list[list[float]]:
    """The line the map draws of a whole track piece (or stretch without service) at ``zoom``:
    thinned, simplified for the finest zoom, then one zoom step at a time."""
    line = drawn_track(Track(track.device, 1, track.points))["line"]
    for step in range(FINEST_TRACK_ZOOM - 1, zoom - 1, -1):
        line = simplify(line, pixel_m(step))
    return line


def drawn_segment(segment, line) -> tuple:
    return (segment.device, segment.operator, line, segment.no_service, segment.bridged, segment.length_km,
            segment.start.time, segment.end.time)


def drawn(track, line) -> tuple:
    return track.device, track.part, line, track.length_km, track.points[0].time, track.points[-1].time


def takes(where: FiguresFilter, device: str, points, line=None) -> bool:
    if where.devices is not None and device not in where.devices:
        return False
    if where.days is not None:
        days = [wita_day(p.time) for p in points]
        if max(days) < where.days[0] or min(days) > where.days[1]:
            return False
    if where.area is not None:
        south, west, north, east = where.area
        coords = line if line is not None else [(p.lat, p.lon) for p in points]
        return any(south <= lat <= north and west <= lon <= east for lat, lon, *_ in coords)
    return True


def check_against_one_pass(store, where: FiguresFilter = FiguresFilter(),
                           zooms=(FINEST_TRACK_ZOOM, 12, MIN_TRACK_ZOOM)) -> None:
    tracks, segments, tags = one_pass(store)
    for zoom in zooms:
        expected = [drawn(t, line_at(t, zoom)) for t in tracks
                    if takes(where, t.device, t.points, drawn_track(t)["line"])]
        assert [drawn(t, [[p.lat, p.lon] for p in t.points]) for t in store.tracks(zoom, where)] == expected
    taken = [s for s in segments if takes(where, s.device, s.points, line_at(s, FINEST_TRACK_ZOOM))]
    assert store.segments(where) == taken
    for zoom in zooms:
        assert [drawn_segment(s, [[p.lat, p.lon] for p in s.points]) for s in store.segments(where, zoom)] == \
            [drawn_segment(s, line_at(s, zoom)) for s in taken]
    assert store.tags(where) == [t for t in tags if takes(where, t.device or "", [_Spot(t)])]


class _Spot:
    def __init__(self, place) -> None:
        from agent.shared.reading import parse_time

        self.lat, self.lon, self.time = place.lat, place.lon, parse_time(place.time)


def kept_rows(store) -> dict:
    with store._reading() as conn:
        run = store._runner(conn)
        return {table: [tuple(row) for row in run(f"SELECT * FROM {table} ORDER BY 1, 2, 3", ())]
                for table in ("track_pieces", "track_lines", "blank_runs", "blank_lines", "kept_tags")}


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of three seqs, so that a refresh computes short runs of seqs and must find where it can stop."""
    monkeypatch.setattr(kept_tracks, "BLOCK", 3)


def arrive(store, batches, reads) -> None:
    for batch, read in zip(batches, reads):
        store.insert_readings(batch)
        if read:
            store.refresh_tracks()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrivals())
def test_kept_tracks_segments_and_tags_equal_one_pass_over_every_reading(tmp_path_factory, small_blocks, case) -> None:
    readings, batches, reads = case
    with open_store(str(tmp_path_factory.mktemp("kept") / "c.db")) as store:
        arrive(store, batches, reads)
        check_against_one_pass(store)
        incremental = kept_rows(store)
        store.rebuild_figures()
        assert kept_rows(store) == incremental


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrivals())
def test_postgresql_keeps_the_same_tracks(postgres_url, small_blocks, case) -> None:  # noqa: F811
    readings, batches, reads = case
    with open_store(postgres_url) as store:
        with store._reading() as conn:
            conn.execute("DELETE FROM readings; DELETE FROM cell_stats; DELETE FROM operator_names;"
                         " DELETE FROM seq_ranges; DELETE FROM gone; DELETE FROM unit_ledger; DELETE FROM kept_dirty;"
                         " DELETE FROM track_pieces; DELETE FROM track_lines; DELETE FROM blank_runs;"
                         " DELETE FROM blank_lines;"
                         " DELETE FROM kept_tags")
        arrive(store, batches, reads)
        check_against_one_pass(store)
        incremental = kept_rows(store)
        store.rebuild_figures()
        assert kept_rows(store) == incremental


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrivals(), days=st.sampled_from(DAYS), devices=st.sampled_from(DEVICES), area=st.sampled_from(AREAS))
def test_a_filter_takes_the_pieces_segments_and_tags_of_its_days_units_and_area(tmp_path_factory, case, days, devices,
                                                                               area) -> None:
    readings, batches, reads = case
    with open_store(str(tmp_path_factory.mktemp("kept") / "c.db")) as store:
        arrive(store, batches, reads)
        check_against_one_pass(store, FiguresFilter(days, devices, area), zooms=(FINEST_TRACK_ZOOM, 10))


def test_a_piece_crossing_midnight_in_kalimantan_is_one_piece(tmp_path) -> None:
    trip = boat_trip("boat-1", start=T0 + timedelta(hours=15, minutes=50), interval_s=60)[:40]
    assert wita_day(trip[0].time) != wita_day(trip[-1].time)
    with open_store(str(tmp_path / "c.db")) as store:
        store.insert_readings(trip[20:])
        store.refresh_tracks()
        store.insert_readings(trip[:20])
        [piece] = store.tracks(FINEST_TRACK_ZOOM)
        assert (piece.points[0].seq, piece.points[-1].seq) == (1, 40)
        assert len(store.tracks(FINEST_TRACK_ZOOM, FiguresFilter(days=("2026-11-25", "2026-11-25")))) == 1


def stopping_trip(device: str, day: int) -> list[Reading]:
    """A boat trip that stops for the night, twice: three pieces of track."""
    trip = boat_trip(device, latency_every=5, start=T0 + timedelta(days=day))
    third = len(trip) // 3
    return [Reading(r.device, r.time + timedelta(hours=12 * min(i // third, 2)), r.time_source, r.part, r.position,
                    r.seq) for i, r in enumerate(trip)]


# The map's track budget: as it ships; small enough that the zoom steps down; too small for
# every piece even at the coarsest zoom, so the shortest are left out.
@pytest.mark.parametrize("budget", [60_000, 62, 30])
def test_the_map_drawn_from_the_kept_tracks_is_the_map_of_one_pass(tmp_path, budget: int) -> None:
    trip = stopping_trip("boat-1", 0) + boat_trip("boat-2", interval_s=7, start=T0 + timedelta(days=1))
    pages = []
    for name, steps in (("kept.db", MIGRATIONS), ("older.db", MIGRATIONS[:4])):  # the older keeps no tracks
        with SqliteStore(str(tmp_path / name), steps) as store:
            store.insert_readings(trip)
            assert store.keeps_tracks() == (steps == MIGRATIONS)
            _html, data = map_page(Survey(store, 8, Thresholds(), track_budget=budget))
            data.pop("generated"), data.pop("subtitle")
            pages.append(data)
    assert pages[0] == pages[1]
    assert pages[0]["segments"] and len(pages[0]["tracks"]) + pages[0]["tracks_left_out"] == 4
    assert (pages[0]["track_zoom"] < FINEST_TRACK_ZOOM) == (budget < 60_000)
    assert (pages[0]["tracks_left_out"] > 0) == (budget == 30)


def test_an_older_database_gets_its_tracks_when_it_is_upgraded(tmp_path) -> None:
    path = str(tmp_path / "c.db")
    with SqliteStore(path, MIGRATIONS[:4]) as older:
        older.insert_readings(boat_trip("boat-1")[:300])
        assert not older.keeps_tracks()
    with open_store(path) as store:
        assert store.keeps_tracks()
        check_against_one_pass(store)
