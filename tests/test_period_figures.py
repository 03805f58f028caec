"""Coverage figures summed per month after a quiet moment: a range of days reads its whole
months from them and the keys of its other days, and draws exactly the grid the keys of its
days give, whatever has been summed, changed since, or arrived late."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.centre.cell_stats import FIRST_DAY, LAST_DAY, FiguresFilter, coverage_of_totals
from agent.centre.coverage import Thresholds
from agent.centre.store import open_store
from agent.centre.store.aggregates import Figures, _whole_months
from agent.shared.reading import Reading
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)
from tests.test_cell_stats import stored_in_empty, unit_readings

# Ranges across the months the readings below fall in (late November 2026 to March 2027).
RANGES = (("2026-11-24", "2026-11-30"), ("2026-11-25", "2027-01-10"), ("2026-12-01", "2026-12-31"),
          ("2026-12-01", "2027-02-28"), ("2026-12-15", "2027-03-05"), ("2027-01-01", "2027-01-31"),
          (FIRST_DAY, "2027-01-31"), ("2027-02-01", LAST_DAY), ("2026-12-31", "2027-01-01"))


@st.composite
def months_of_arrivals(draw) -> tuple[list[Reading], list[list[Reading]], list[int | None]]:
    """Readings of one to three units spread over four months, the commits they arrive in
    (in order per unit, one now and then late), and after each commit the months summed
    then (None: none; a number: that many; 0: all)."""
    readings = []
    for device in ("boat-1", "boat-2", "probe-3")[:draw(st.integers(1, 3))]:
        for reading in draw(unit_readings(device)):
            days = draw(st.integers(0, 120))
            readings.append(dataclasses.replace(reading, time=reading.time + timedelta(days=days)))
    order = list(readings)
    if len(order) > 1 and draw(st.booleans()):
        order.append(order.pop(draw(st.integers(0, len(order) - 2))))  # one late
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=5)))
    commits = [order[a:b] for a, b in zip([0] + cuts, cuts + [len(order)]) if order[a:b]]
    refresh = [draw(st.sampled_from((None, None, 1, 2, 0))) for _ in commits]
    return readings, commits, refresh


def keys_only(store, days: tuple[str, str]):
    with store._reading() as conn:
        figures = Figures(store._runner(conn), totals=True)
        return coverage_of_totals(figures.keys_summed(FiguresFilter(days=days)), figures.names(), 8, Thresholds())


def check_ranges(store) -> None:
    for days in RANGES:
        for resolution in (8, 6):
            got = store.coverage(resolution, Thresholds(), FiguresFilter(days=days))
            with store._reading() as conn:
                figures = Figures(store._runner(conn), totals=True)
                want = coverage_of_totals(figures.keys_summed(FiguresFilter(days=days)), figures.names(),
                                          resolution, Thresholds())
            assert (got.cells, got.operators, got.unplaced) == (want.cells, want.operators, want.unplaced), days


def arrive(store, commits, refresh) -> None:
    for commit, months in zip(commits, refresh):
        store.insert_readings(commit)
        if months is not None:
            store.refresh_periods(months or None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=months_of_arrivals())
def test_a_range_of_days_draws_what_the_keys_of_its_days_give(tmp_path_factory, case) -> None:
    _readings, commits, refresh = case
    with open_store(str(tmp_path_factory.mktemp("months") / "c.db")) as store:
        arrive(store, commits, refresh)
        check_ranges(store)
        store.refresh_periods()
        check_ranges(store)
        assert store.refresh_periods() == 0, "nothing left to sum"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=months_of_arrivals())
def test_postgresql_draws_the_same_ranges(postgres_url, case) -> None:  # noqa: F811
    _readings, commits, refresh = case
    with stored_in_empty(postgres_url, []) as store:
        with store._reading() as conn:
            conn.execute("DELETE FROM cell_periods; DELETE FROM periods_dirty")
        arrive(store, commits, refresh)
        check_ranges(store)
        store.refresh_periods()
        check_ranges(store)


def test_a_day_and_month_summed_then_changed_are_read_from_their_keys_until_summed_again(tmp_path) -> None:
    from tests.test_cell_stats import in_service, no_service

    seen = Thresholds(min_samples=1)
    with open_store(str(tmp_path / "c.db")) as store:
        store.insert_readings([in_service("b", 1, -0.5, 117.1)])
        assert store.refresh_periods() == 2, "its day, then its month"
        for days in (("2026-11-01", "2026-11-30"), ("2026-11-24", "2026-11-24"), ("2026-11-20", "2026-12-31")):
            assert [c.samples for c in store.coverage(8, seen, FiguresFilter(days=days)).cells] == [1]
        store.insert_readings([no_service("b", 2, -0.5, 117.1)])
        for days in (("2026-11-01", "2026-11-30"), ("2026-11-24", "2026-11-24"), ("2026-11-20", "2026-12-31")):
            assert [c.samples for c in store.coverage(8, seen, FiguresFilter(days=days)).cells] == [2]
        assert store.refresh_periods(1) == 1 and store.refresh_periods(1) == 1 and store.refresh_periods() == 0
        for days in (("2026-11-01", "2026-11-30"), ("2026-11-24", "2026-11-24"), ("2026-11-20", "2026-12-31")):
            assert [c.samples for c in store.coverage(8, seen, FiguresFilter(days=days)).cells] == [2]


@pytest.mark.parametrize("first, last, months", [
    ("2026-12-01", "2026-12-31", ("2026-12", "2026-12")),
    ("2026-11-24", "2027-01-31", ("2026-12", "2027-01")),
    ("2026-11-24", "2027-01-30", ("2026-12", "2026-12")),
    ("2026-12-02", "2027-01-30", (None, None)),
    ("2027-02-01", "2027-02-28", ("2027-02", "2027-02")),
    ("2028-02-01", "2028-02-28", (None, None)),          # a leap year's February ends on the 29th
    (FIRST_DAY, LAST_DAY, ("0001-01", "9999-12")),
    ("2026-12-31", "2027-01-01", (None, None)),
])
def test_the_whole_months_of_a_range(first, last, months) -> None:
    assert _whole_months(first, last) == months


def test_postgresql_a_day_changed_while_it_is_summed_stays_marked(postgres_url) -> None:  # noqa: F811
    """A commit that lands while a refresh sums the same day (after the refresh read the
    keys, before it clears the day's mark) leaves the day marked: the sum missed it."""
    from tests.test_cell_stats import in_service, no_service

    with stored_in_empty(postgres_url, [[in_service("boat-1", 1, -0.5, 117.1)]]) as collector:
        with collector._reading() as conn:
            conn.execute("DELETE FROM cell_periods; DELETE FROM periods_dirty")
        collector.insert_readings([in_service("boat-1", 2, -0.5, 117.1)])
        with open_store(postgres_url) as refresher:
            conn = refresher._usable()
            run = refresher._runner(conn)
            landed = []

            def run_then_commit(sql, params):
                if sql.startswith("DELETE FROM periods_dirty") and not landed:
                    landed.append(collector.insert_readings([no_service("boat-1", 3, -0.5, 117.1)]))
                return run(sql, params)

            with conn.transaction():
                assert Figures(run_then_commit, totals=True, periods=True).refresh_periods(1) == 1
            assert landed == [(1, 0)]
            check_ranges(refresher)
            november = FiguresFilter(days=("2026-11-01", "2026-11-30"))
            assert [c.samples for c in refresher.coverage(8, Thresholds(min_samples=1), november).cells] == [3]
            assert refresher.refresh_periods() == 2, "the day again, then its month"
            assert [c.samples for c in refresher.coverage(8, Thresholds(min_samples=1), november).cells] == [3]
