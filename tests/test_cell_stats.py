"""Coverage figures kept as readings arrive: whatever order, batches, duplicates and re-sends
the readings come in, the kept figures are those a full recomputation from the stored readings
gives, and the grid drawn from them is the one-pass grid's."""
from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.centre.cell_stats import hist_percentile, log_bucket, log_value, wita_day
from agent.centre.coverage import Thresholds, aggregate, percentile
from agent.centre.store import open_store
from agent.centre.store import schema
from agent.centre.store.schema import MIGRATIONS
from agent.centre.store.sqlite import SqliteStore
from agent.shared.reading import (
    HOME_REGISTRATIONS, NO_SERVICE_REGISTRATIONS, ROAMING_REGISTRATIONS, Latency, Reading, Signal, Throughput,
)
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)
from tests.support.survey_factory import T0, boat_trip, in_service, no_service, position

# Three cells a few km apart on the Mahakam, and no position at all.
PLACES = ((-0.5030, 117.1460), (-0.4500, 117.0500), (-0.3300, 116.9900), None)
NETWORKS = (("510", "10", "TELKOMSEL"), ("510", "01", "INDOSAT OOREDOO"), ("510", "11", "XL Axiata"))


@st.composite
def unit_readings(draw, device: str) -> list[Reading]:
    """One unit's readings, seq 1..n: home and roaming signals (the SIM may change), no
    service, no answer, latency, throughput and events, over two WITA days."""
    n = draw(st.integers(1, 30))
    home = draw(st.sampled_from(NETWORKS))
    readings = []
    for seq in range(1, n + 1):
        if draw(st.integers(0, 20)) == 0:
            home = draw(st.sampled_from(NETWORKS))  # a SIM swap
        place = draw(st.sampled_from(PLACES))
        when = T0 + timedelta(hours=draw(st.integers(0, 40)))
        source = draw(st.sampled_from(("gps", "gps", "ntp", "unsynced")))
        kind = draw(st.sampled_from(("home", "home", "roaming", "none", "none", "error", "latency", "throughput",
                                     "event")))
        rsrp = draw(st.integers(-240, -120)) / 2
        if kind in ("home", "roaming"):
            mcc, mnc, name = home if kind == "home" else draw(st.sampled_from(NETWORKS))
            words = HOME_REGISTRATIONS if kind == "home" else ROAMING_REGISTRATIONS  # SMS only, CSFB ... too
            part = Signal(registration=draw(st.sampled_from(sorted(words))), operator=name, mcc=mcc, mnc=mnc,
                          rat=draw(st.sampled_from(("LTE", "WCDMA"))), rsrp_dbm=rsrp, rssi_dbm=rsrp + 28,
                          quality=draw(st.sampled_from(("good", "fair", "poor"))))
        elif kind == "none":
            part = Signal(registration=draw(st.sampled_from(sorted(NO_SERVICE_REGISTRATIONS))), rat="NONE",
                          quality="none", rssi_dbm=draw(st.sampled_from((None, -110.0))))
            if part.registration == "emergency_only" and draw(st.booleans()):
                # the cell the modem is attached to for emergency calls, as another source may tell it
                mcc, mnc, name = draw(st.sampled_from(NETWORKS))
                part = Signal(registration="emergency_only", operator=name, mcc=mcc, mnc=mnc, rat="LTE",
                              rsrp_dbm=rsrp, rssi_dbm=rsrp + 28, quality="good")
        elif kind == "error":
            part = Signal(registration="unknown", rat="NONE", quality=None, error="no answer")
        elif kind == "latency":
            part = Latency(target="8.8.8.8", method="icmp", sent=5, received=5, loss_pct=0.0,
                           rtt_avg_ms=log_value(draw(st.integers(150, 400))))
        elif kind == "throughput":
            part = Throughput(backend="http", server="c", down_mbps=log_value(draw(st.integers(-50, 150))), up_mbps=None)
        else:
            from agent.shared.reading import Event
            part = Event("tag", "kantor desa", {})
        readings.append(Reading(device, when, source, part, None if place is None else position(*place), seq))
    return readings


@st.composite
def arrivals(draw) -> tuple[list[Reading], list[list[Reading]]]:
    """Readings of several units, and the batches they arrive in: shuffled, with re-sends."""
    readings = [r for device in ("boat-1", "boat-2", "probe-3")[:draw(st.integers(1, 3))]
                for r in draw(unit_readings(device))]
    order = draw(st.permutations(readings))
    resent = draw(st.lists(st.sampled_from(readings), max_size=10))
    sent = list(order) + resent
    cuts = sorted(draw(st.lists(st.integers(0, len(sent)), max_size=8)))
    batches = [sent[a:b] for a, b in zip([0] + cuts, cuts + [len(sent)]) if sent[a:b]]
    return readings, batches


@st.composite
def arrivals_in_order(draw) -> tuple[list[Reading], list[list[Reading]]]:
    """Readings of several units arriving as the units send them: each unit's messages in
    seq order, the units' messages interleaved, now and then one late or sent again."""
    units = [draw(unit_readings(device)) for device in ("boat-1", "boat-2", "probe-3")[:draw(st.integers(1, 3))]]
    messages = []
    for readings in units:
        cuts = sorted(draw(st.lists(st.integers(1, len(readings)), max_size=6)))
        messages.append([readings[a:b] for a, b in zip([0] + cuts, cuts + [len(readings)]) if readings[a:b]])
    sent: list[list[Reading]] = []
    while any(messages):
        sent.append(draw(st.sampled_from([m for m in messages if m])).pop(0))
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(sent) - 1))
        sent.insert(draw(st.integers(i, len(sent))), sent[i] if draw(st.booleans()) else sent.pop(i))
    per_commit = draw(st.integers(1, 4))
    batches = [sum(sent[i:i + per_commit], []) for i in range(0, len(sent), per_commit)]
    return [r for readings in units for r in readings], batches


def kept(store) -> tuple[list, dict, list, list]:
    """Everything the database keeps of the figures, as comparable values."""
    from agent.centre.store.aggregates import Figures

    with store._reading() as conn:
        run = store._runner(conn)
        figures = Figures(run, totals=True)
        rows = [(key, dataclasses.asdict(stats)) for key, stats in figures.keyed()]
        places = run("SELECT device, seq, cell, counts_for FROM readings ORDER BY device, seq", ())
        totals = [(cell, op, dataclasses.asdict(stats), units) for cell, op, stats, units in figures.summed()]
        return rows, figures.names(), [tuple(p) for p in places], totals


def check_totals_are_the_sum_of_their_keys(store) -> None:
    """Each cell's and operator's total is the sum of its keys over days and units, and names
    exactly the units that have readings in them."""
    from agent.centre.store.aggregates import Figures, totals_of

    with store._reading() as conn:
        figures = Figures(store._runner(conn), totals=True)
        summed = {(cell, op): (dataclasses.asdict(stats), units) for cell, op, stats, units in figures.summed()}
        expected = {pair: (dataclasses.asdict(stats), sorted(units))
                    for pair, (stats, units) in totals_of(figures.keyed()).items()}
    assert summed == expected


def without_log_medians(coverage):
    """The grid with the figures read from log buckets left out (the one-pass grid has the exact ones)."""
    return [dataclasses.replace(c, latency_median_ms=None, down_median_mbps=None, up_median_mbps=None)
            for c in coverage.cells]


def check_against_recomputation(store, readings: list[Reading]) -> None:
    check_totals_are_the_sum_of_their_keys(store)
    incremental = kept(store)
    assert store.rebuild_figures() == len(readings)
    assert kept(store) == incremental
    grid = store.coverage(8, Thresholds(min_samples=2))
    one_pass = aggregate(list(store.iter_readings()), thresholds=Thresholds(min_samples=2))
    assert without_log_medians(grid) == without_log_medians(one_pass)
    assert (grid.operators, grid.unplaced) == (one_pass.operators, one_pass.unplaced)
    assert [c.latency_median_ms for c in grid.cells] == [c.latency_median_ms for c in one_pass.cells]


# Any order (the general attribution) and the units' own order (attributed from their ends).
@pytest.mark.parametrize("arriving", [arrivals, arrivals_in_order], ids=["any order", "in order"])
def test_figures_kept_as_readings_arrive_equal_a_full_recomputation(tmp_path_factory, arriving) -> None:
    @settings(max_examples=60, deadline=None)
    @given(arriving())
    def arrive(case) -> None:
        readings, batches = case
        with open_store(str(tmp_path_factory.mktemp("kept") / "c.db")) as store:
            for batch in batches:
                store.insert_readings(batch)
            check_against_recomputation(store, readings)

    arrive()


def _latency(device: str, seq: int, lat: float, lon: float) -> Reading:
    return Reading(device, T0 + timedelta(minutes=seq), "gps",
                   Latency(target="8.8.8.8", method="icmp", sent=5, received=5, loss_pct=0.0, rtt_avg_ms=log_value(190)),
                   position(lat, lon), seq)


_A, _B = PLACES[0], PLACES[1]
_INDOSAT = {"mcc": "510", "mnc": "01", "operator": "INDOSAT OOREDOO"}


# Each case: the commits of one unit, every seq above the ones stored before, and what the
# last commit's readings must count for; each hinges on one thing read from what is stored.
@pytest.mark.parametrize("commits, counts_for", [
    pytest.param([[in_service("b", 1, *_A)], [_latency("b", 2, *_B)]], "510-10",
                 id="a test counts for the last stored signal"),
    pytest.param([[in_service("b", 1, *_A), in_service("b", 2, *_A, registration="roaming", **_INDOSAT)],
                  [_latency("b", 3, *_B)]], "510-01",
                 id="the last stored signal is a roaming one"),
    pytest.param([[in_service("b", 1, *_A)], [no_service("b", 2, *_B)]], "510-10",
                 id="no service counts for the stored home registration"),
    pytest.param([[in_service("b", 1, *_A), in_service("b", 2, *_A, **_INDOSAT)], [no_service("b", 3, *_B)]],
                 "510-01", id="the last stored home registration after a SIM swap"),
    pytest.param([[no_service("b", 1, *_A)], [in_service("b", 2, *_A)], [no_service("b", 3, *_B)]], "510-10",
                 id="no service before any home registration, then one"),
])
def test_readings_arriving_in_order_count_for_what_is_stored_before_them(tmp_path, commits, counts_for) -> None:
    with open_store(str(tmp_path / "c.db")) as store:
        for commit in commits:
            store.insert_readings([dataclasses.replace(r, time=T0 + timedelta(minutes=r.seq)) for r in commit])
        last = {r.seq for r in commits[-1]}
        with sqlite3.connect(tmp_path / "c.db") as db:
            stored = {seq: operator for seq, operator in db.execute("SELECT seq, counts_for FROM readings")}
        assert {stored[seq] for seq in last} == {counts_for}
        check_against_recomputation(store, [r for commit in commits for r in commit])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(arrivals(), arrivals_in_order()))
def test_postgresql_keeps_the_same_figures(postgres_url, case) -> None:  # noqa: F811
    readings, batches = case
    with stored_in_empty(postgres_url, batches) as store:
        check_against_recomputation(store, readings)


@contextlib.contextmanager
def stored_in_empty(url: str, commits: list[list[Reading]]):
    """The store at ``url`` emptied of readings and figures, then given ``commits``."""
    with open_store(url) as store:
        with store._reading() as conn:
            conn.execute("DELETE FROM readings; DELETE FROM cell_stats; DELETE FROM cell_totals; DELETE FROM operator_names;"
                         " DELETE FROM seq_ranges; DELETE FROM gone; DELETE FROM unit_ledger")
        for commit in commits:
            store.insert_readings(commit)
        yield store


def test_postgresql_writes_many_figures_at_once_as_sqlite_does(postgres_url, tmp_path) -> None:  # noqa: F811
    """Commits touching more keys and totals than PostgreSQL writes one statement at a time
    (it copies them in) keep what SQLite keeps, and what a recomputation gives."""
    from agent.centre.store.postgres import _COPY_FROM

    trips = {device: boat_trip(device) for device in ("boat-1", "boat-2", "boat-3")}
    halves = [[r for trip in trips.values() for r in trip[:len(trip) // 2]],
              [r for trip in trips.values() for r in trip[len(trip) // 2:]]]
    with open_store(str(tmp_path / "c.db")) as sqlite_store:
        for commit in halves:
            sqlite_store.insert_readings(commit)
        with sqlite3.connect(tmp_path / "c.db") as db:
            keys, totals = db.execute("SELECT (SELECT count(*) FROM cell_stats), (SELECT count(*) FROM cell_totals)").fetchone()
        assert min(keys, totals) >= _COPY_FROM
        expected = kept(sqlite_store)
    with stored_in_empty(postgres_url, halves) as store:
        assert kept(store) == expected
        check_against_recomputation(store, [r for commit in halves for r in commit])


def test_readings_before_the_first_home_registration_move_to_the_home_operator_when_it_arrives(tmp_path) -> None:
    trip = boat_trip("boat-1")[:60]
    blank = [r for r in trip if isinstance(r.part, Signal) and r.part.rat == "NONE"][:3]
    with open_store(str(tmp_path / "c.db")) as store:
        store.insert_readings(trip[30:])
        store.insert_readings(trip[:30])
        operators = {c.operator for c in store.coverage(8, Thresholds()).cells}
        check_against_recomputation(store, trip)
    assert "unknown" not in operators or not blank


def test_an_older_database_gets_its_figures_when_it_is_upgraded(tmp_path) -> None:
    path = tmp_path / "old.db"
    trip = boat_trip("boat-1", latency_every=5)
    old = SqliteStore(path, steps=MIGRATIONS[:3])
    old.insert_readings(trip)
    old.close()
    with open_store(str(path)) as store:
        assert store.schema_version() == schema.LATEST
        check_totals_are_the_sum_of_their_keys(store)
        assert store.coverage(8, Thresholds()).cells
        incremental = kept(store)
        store.rebuild_figures()
        assert kept(store) == incremental
        assert without_log_medians(store.coverage(8, Thresholds())) == \
            without_log_medians(aggregate(list(store.iter_readings())))
    assert sqlite3.connect(path).execute("SELECT count(*) FROM readings WHERE counts_for IS NULL"
                                         " AND kind <> 'event'").fetchone() == (0,)


@pytest.mark.parametrize("values", [[-97.0], [-97.0, -96.5], [-120.0, -80.5, -99.0, -99.0, -100.5]])
def test_levels_on_half_db_give_the_exact_percentiles(values) -> None:
    hist: dict[int, int] = {}
    for v in values:
        hist[int(v * 2)] = hist.get(int(v * 2), 0) + 1
    for q in (10, 50, 90):
        assert hist_percentile(hist, q) == pytest.approx(percentile(values, q))


@pytest.mark.parametrize("value", [0.3, 1.0, 55.0, 80.0, 1234.5])
def test_a_log_bucket_holds_its_value_within_one_percent(value: float) -> None:
    assert log_value(log_bucket(value)) == pytest.approx(value, rel=0.01)


def test_the_day_is_the_day_in_kalimantan() -> None:
    assert wita_day(T0.replace(hour=15, minute=59)) == "2026-11-24"
    assert wita_day(T0.replace(hour=16)) == "2026-11-25"


def test_the_rebuild_command_computes_the_figures_again(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "c.db"
    trip = boat_trip("boat-1")[:80]
    with open_store(str(path)) as store:
        store.insert_readings(trip)
        before = kept(store)
    sqlite3.connect(path).execute("DELETE FROM cell_stats").connection.commit()
    done = subprocess.run([sys.executable, "-m", "agent", "aggregate", "--db", f"sqlite:///{path}", "--rebuild"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "coverage figures rebuilt from 80 stored readings; 2 days and months summed\n"
    with open_store(str(path)) as store:
        assert kept(store) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrivals(), days=st.sampled_from((None, ("2026-11-24", "2026-11-24"), ("2026-11-25", "2026-12-31"), ("2026-03-01", "2026-03-01"))),
       devices=st.sampled_from((None, frozenset(), frozenset({"boat-2"}), frozenset({"boat-1", "probe-3"}))),
       area=st.sampled_from((None, (-0.52, 117.0, -0.44, 117.2), (-1.0, 110.0, 1.0, 120.0))))
def test_a_filtered_grid_sums_exactly_the_keys_of_its_days_units_and_area(tmp_path_factory, case, days, devices,
                                                                           area) -> None:
    from agent.centre.cell_stats import FiguresFilter, UNPLACED, cell_center, coverage_of
    from agent.centre.store.aggregates import Figures

    _readings, batches = case
    where = FiguresFilter(days=days, devices=devices, area=area)

    def taken(key) -> bool:
        if days is not None and not days[0] <= key.day <= days[1]:
            return False
        if devices is not None and key.device not in devices:
            return False
        if area is None:
            return True
        if key.cell == UNPLACED:
            return False
        lat, lon = cell_center(key.cell)
        return area[0] <= lat <= area[2] and area[1] <= lon <= area[3]

    thresholds = Thresholds(min_samples=2)
    with open_store(str(tmp_path_factory.mktemp("filtered") / "c.db")) as store:
        for batch in batches:
            store.insert_readings(batch)
        with store._reading() as conn:
            figures = Figures(store._runner(conn))
            expected = coverage_of([(k, s) for k, s in figures.keyed() if taken(k)], figures.names(), 8, thresholds)
        assert store.coverage(8, thresholds, where) == expected
        assert store.coverage(8, thresholds) == store.coverage(8, thresholds, FiguresFilter())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrivals(), technology=st.sampled_from((None, "LTE", "WCDMA", "NONE", "GSM")),
       area=st.sampled_from((None, (-0.52, 117.0, -0.44, 117.2))), resolution=st.sampled_from((8, 7, 6)))
def test_the_grid_of_every_day_and_unit_from_the_totals_is_the_grid_summed_from_the_keys(
        tmp_path_factory, case, technology, area, resolution) -> None:
    from agent.centre.cell_stats import FiguresFilter, coverage_of
    from agent.centre.store.aggregates import Figures

    _readings, batches = case
    where = FiguresFilter(area=area, technology=technology)
    thresholds = Thresholds(min_samples=2)
    with open_store(str(tmp_path_factory.mktemp("totals") / "c.db")) as store:
        for batch in batches:
            store.insert_readings(batch)
        with store._reading() as conn:
            figures = Figures(store._runner(conn))  # without the totals: from the keys
            from_keys = coverage_of(figures.keyed(where), figures.names(), resolution, thresholds, technology)
        assert store.coverage(resolution, thresholds, where) == from_keys


def test_a_technology_grid_counts_that_technology_and_every_reading_without_service(tmp_path) -> None:
    from agent.centre.cell_stats import FiguresFilter

    def gsm(seq: int, lat: float, lon: float) -> Reading:
        part = Signal(registration="home", operator="TELKOMSEL", mcc="510", mnc="10", rat="GSM", rssi_dbm=-95.0,
                      quality="poor")
        return Reading("boat-1", T0, "gps", part, position(lat, lon), seq)

    lte_cell, gsm_cell, blank_cell = PLACES[:3]
    readings = [in_service("boat-1", 1, *lte_cell, rsrp=-90.0), in_service("boat-1", 2, *lte_cell, rsrp=-100.0),
                gsm(3, *lte_cell), no_service("boat-1", 4, *lte_cell),
                gsm(5, *gsm_cell), gsm(6, *gsm_cell),
                no_service("boat-1", 7, *blank_cell), no_service("boat-1", 8, *blank_cell)]
    with open_store(str(tmp_path / "c.db")) as store:
        store.insert_readings(readings)
        lte = {(c.lat, c.lon): c for c in store.coverage(8, Thresholds(min_samples=2), FiguresFilter(technology="LTE")).cells}
        everything = {(c.lat, c.lon): c for c in store.coverage(8, Thresholds(min_samples=2)).cells}
    by_place = {place: min(everything, key=lambda c: abs(c[0] - place[0]) + abs(c[1] - place[1]))
                for place in (lte_cell, gsm_cell, blank_cell)}
    mixed = lte[by_place[lte_cell]]
    assert (mixed.samples, mixed.no_service, mixed.rsrp_median_dbm) == (3, 1, -95.0)
    assert [r.rat for r in mixed.by_rat] == ["LTE"] and everything[by_place[lte_cell]].samples == 4
    assert by_place[gsm_cell] not in lte  # service there, but none on LTE
    assert lte[by_place[blank_cell]].coverage_class == everything[by_place[blank_cell]].coverage_class == "blank"


def test_a_database_of_step_4_gets_its_totals_and_technology_figures_when_it_is_upgraded(tmp_path) -> None:
    from agent.centre.cell_stats import FiguresFilter, coverage_of
    from agent.centre.store.aggregates import Figures

    path = tmp_path / "step4.db"
    trip = boat_trip("boat-1", latency_every=5)
    old = SqliteStore(path, steps=MIGRATIONS[:next(i for i, s in enumerate(MIGRATIONS) if s.version == 4) + 1])
    old.insert_readings(trip)
    old.close()
    with open_store(str(path)) as store:
        assert store.schema_version() == MIGRATIONS[-1].version
        check_totals_are_the_sum_of_their_keys(store)
        incremental = kept(store)
        store.rebuild_figures()
        assert kept(store) == incremental
        lte = store.coverage(8, Thresholds(), FiguresFilter(technology="LTE"))
        with store._reading() as conn:
            figures = Figures(store._runner(conn))
            assert lte == coverage_of(figures.keyed(), figures.names(), 8, Thresholds(), "LTE")
    assert any(c.quality_median for c in lte.cells)


def test_collectors_storing_different_units_at_once_keep_the_totals_of_their_cells(postgres_url) -> None:  # noqa: F811
    """On PostgreSQL, collectors of different units meet on the totals of the cells they share."""
    import threading

    # Three units moored at one landing without service, each reading committed on its own:
    # every commit changes the same total (and no operator name, which would queue them).
    trips = {device: [no_service(device, seq, *PLACES[0]) for seq in range(1, 81)]
             for device in ("boat-1", "boat-2", "boat-3")}
    open_store(postgres_url).close()
    failures: list[BaseException] = []

    def collect(device: str) -> None:
        try:
            with open_store(postgres_url) as store:
                for reading in trips[device]:
                    store.insert_readings([reading])
        except BaseException as exc:  # noqa: BLE001  (told to the test below)
            failures.append(exc)

    threads = [threading.Thread(target=collect, args=(device,)) for device in trips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures
    with open_store(postgres_url) as store:
        check_totals_are_the_sum_of_their_keys(store)
        incremental = kept(store)
        store.rebuild_figures()
        assert kept(store) == incremental
        (cell,) = store.coverage(8, Thresholds()).cells
    assert (cell.samples, cell.devices) == (240, ("boat-1", "boat-2", "boat-3"))


@settings(max_examples=40, deadline=None)
@given(first=unit_readings("boat-1"), second=unit_readings("boat-2"))
def test_a_stored_row_added_as_it_is_read_equals_it_merged(first, second) -> None:
    """A view of some days or units adds each stored row without making figures of it first."""
    from agent.centre.cell_stats import CellStats

    def stats_of(readings: list[Reading]) -> CellStats:
        stats = CellStats()
        for reading in readings:
            stats.add(reading)
        return stats

    merged, added = stats_of(first), stats_of(first)
    merged.merge(CellStats.from_row(stats_of(second).row()))
    added.add_row(stats_of(second).row())
    assert dataclasses.asdict(added) == dataclasses.asdict(merged)
