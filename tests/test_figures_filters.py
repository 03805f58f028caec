"""``blankspot map``, ``report`` and ``export`` of chosen WITA days, units and radio technology
(``--from``, ``--to``, ``--unit``, ``--technology``), and their progress on stderr.

Two boats on the Mahakam on two days (boat-1 on the 24th, boat-2 on the 25th, WITA) and a
few GSM readings of boat-1 at Samarinda: the cells a filter gives are the kept figures of
those days, units and technology; tracks, points and stretches follow the units and days.
"""
from __future__ import annotations

import csv
import json
import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from agent.centre.cell_stats import FiguresFilter
from agent.centre.coverage import Thresholds
from agent.centre.store import open_store
from agent.commands.main import main
from agent.shared.reading import Reading, Signal
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)
from tests.support.survey_factory import T0, boat_trip, position, survey_db

SAMARINDA = (-0.5030, 117.1460)


def gsm(seq: int) -> Reading:
    part = Signal(registration="home", operator="TELKOMSEL", mcc="510", mnc="10", rat="GSM", rssi_dbm=-85.0,
                  quality="fair")
    return Reading("boat-1", T0 + timedelta(minutes=1), "gps", part, position(*SAMARINDA), seq)


@pytest.fixture(scope="module")
def readings() -> list[Reading]:
    first = boat_trip("boat-1", latency_every=6)
    second = boat_trip("boat-2", start=T0 + timedelta(days=1))
    return first + [gsm(first[-1].seq + n) for n in range(1, 7)] + second


@pytest.fixture(scope="module")
def db(tmp_path_factory, readings) -> str:
    return survey_db(tmp_path_factory.mktemp("filters") / "collector.db", readings)


def cells_csv(db: str, tmp_path: Path, *args: str) -> list[dict[str, str]]:
    out = tmp_path / "cells.csv"
    assert main(["export", "--db", db, "--out", str(out), "--what", "cells", *args]) == 0
    return list(csv.DictReader(out.open(encoding="utf-8", newline="")))


def kept_cells(db: str, where: FiguresFilter) -> set[tuple[str, str, str, int]]:
    with open_store(db) as store:
        return {(c.cell, c.operator, c.coverage_class, c.samples)
                for c in store.coverage(8, Thresholds(), where).cells}


def as_cells(rows: list[dict[str, str]]) -> set[tuple[str, str, str, int]]:
    return {(r["cell"], r["operator"], r["class"], int(r["samples"])) for r in rows}


def test_the_cells_of_a_unit_are_its_own_figures(db, tmp_path) -> None:
    rows = cells_csv(db, tmp_path, "--unit", "boat-2")
    assert rows and {r["devices"] for r in rows} == {"boat-2"}
    assert as_cells(rows) == kept_cells(db, FiguresFilter(devices=frozenset({"boat-2"})))
    both = cells_csv(db, tmp_path, "--unit", "boat-1", "--unit", "boat-2")
    assert as_cells(both) == as_cells(cells_csv(db, tmp_path))


def test_the_cells_of_wita_days_are_the_figures_of_those_days(db, tmp_path) -> None:
    second_day = cells_csv(db, tmp_path, "--from", "2026-11-25", "--to", "2026-11-25")
    assert as_cells(second_day) == as_cells(cells_csv(db, tmp_path, "--unit", "boat-2"))
    assert as_cells(cells_csv(db, tmp_path, "--to", "2026-11-24")) == as_cells(cells_csv(db, tmp_path, "--unit", "boat-1"))
    assert as_cells(cells_csv(db, tmp_path, "--from", "2026-11-26")) == set()


def test_days_that_take_every_kept_day_draw_the_whole_survey(db) -> None:
    from agent.centre.cell_stats import coverage_of_totals
    from agent.centre.store.aggregates import Figures

    every_day = FiguresFilter(days=("2026-11-01", "2026-12-31"))
    with open_store(db) as store:
        whole = store.coverage(8, Thresholds())
        taken = store.coverage(8, Thresholds(), every_day)
        with store._reading() as conn:
            figures = Figures(store._runner(conn), totals=True)
            summed = coverage_of_totals(figures.keys_summed(every_day), figures.names(), 8, Thresholds())
    assert (taken.cells, taken.operators, taken.unplaced) == (whole.cells, whole.operators, whole.unplaced) \
        == (summed.cells, summed.operators, summed.unplaced)


def test_a_technology_draws_its_own_cells_and_every_blank_one(db, tmp_path) -> None:
    everything = {r["cell"]: r for r in cells_csv(db, tmp_path, "--unit", "boat-1")}
    rows = cells_csv(db, tmp_path, "--technology", "gsm", "--unit", "boat-1")
    assert as_cells(rows) == kept_cells(db, FiguresFilter(devices=frozenset({"boat-1"}), technology="GSM"))
    gsm_cells = {r["cell"] for r in rows if int(r["samples"]) > int(r["no_service"])}
    assert len(gsm_cells) == 1  # only at Samarinda was boat-1 on GSM
    # Readings without service count under every technology: no blank cell goes missing, and
    # one without any reading in service stays blank (others may have too few left to class).
    blank = {cell for cell, r in everything.items() if r["class"] == "blank"}
    only_blank = {cell for cell in blank if everything[cell]["samples"] == everything[cell]["no_service"]}
    assert only_blank and only_blank <= {r["cell"] for r in rows if r["class"] == "blank"}
    assert blank <= {r["cell"] for r in rows}


def test_tracks_and_points_follow_the_units_and_days(db, tmp_path) -> None:
    out = tmp_path / "s.geojson"
    assert main(["export", "--db", db, "--out", str(out), "--what", "points,tracks", "--unit", "boat-1"]) == 0
    features = json.loads(out.read_text())["features"]
    assert features and {f["properties"]["device"] for f in features} == {"boat-1"}
    assert main(["export", "--db", db, "--out", str(out), "--what", "points", "--from", "2026-11-25",
                 "--technology", "LTE"]) == 0
    points = json.loads(out.read_text())["features"]
    assert points and {f["properties"]["device"] for f in points} == {"boat-2"}


def test_the_grid_drawn_from_the_readings_takes_the_same_units(db, tmp_path) -> None:
    rows = cells_csv(db, tmp_path, "--resolution", "9", "--unit", "boat-2")  # finer than the kept figures
    assert rows and {r["devices"] for r in rows} == {"boat-2"}


def test_map_and_report_say_what_they_are_of(db, tmp_path, capsys) -> None:
    page = tmp_path / "m.html"
    assert main(["map", "--db", db, "--out", str(page), "--unit", "boat-2", "--from", "2026-11-25"]) == 0
    assert "from 2026-11-25 WITA · unit boat-2" in page.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["report", "--db", db, "--json", "--technology", "LTE", "--unit", "boat-2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["of"] == "LTE · unit boat-2"
    assert main(["report", "--db", db, "--unit", "boat-2"]) == 0
    assert capsys.readouterr().out.startswith("Readings of unit boat-2\n")


@pytest.mark.parametrize("args, message", [
    (["--from", "2026-13-01"], "--from takes a WITA day as YYYY-MM-DD, got '2026-13-01'"),
    (["--to", "20261124"], "--to takes a WITA day as YYYY-MM-DD, got '20261124'"),
    (["--from", "24-11-2026"], "--from takes a WITA day as YYYY-MM-DD, got '24-11-2026'"),
    (["--from", "2026-11-25", "--to", "2026-11-24"], "--from 2026-11-25 is after --to 2026-11-24"),
    (["--technology", "6G"], "--technology takes one of GSM, WCDMA, LTE, NR5G-NSA, NR5G-SA, got '6G'"),
    (["--unit", "boat-9"], "no readings of unit boat-9 in the database; units: boat-1, boat-2"),
])
@pytest.mark.parametrize("command", ["map", "report", "export"])
def test_a_bad_filter_is_one_line_and_exit_status_2(db, tmp_path, capsys, command, args, message) -> None:
    out = ["--out", str(tmp_path / ("x.html" if command == "map" else "x.csv"))] if command != "report" else []
    assert main([command, "--db", db, *out, *args]) == 2
    assert capsys.readouterr().err == f"blankspot {command}: {message}\n"


@pytest.mark.parametrize("command", ["map", "report", "export", "aggregate"])
def test_progress_goes_to_stderr_when_asked(db, tmp_path, capsys, monkeypatch, command) -> None:
    import agent.centre.store.aggregates as aggregates_module
    import agent.centre.survey as survey_module
    import agent.commands.centre as centre_commands

    monkeypatch.setattr(survey_module, "PROGRESS_EVERY", 100)
    monkeypatch.setattr(aggregates_module, "REBUILD_PROGRESS_EVERY", 100)
    monkeypatch.setattr(centre_commands, "PROGRESS_SECONDS", 0.0)
    copy = tmp_path / "c.db"
    copy.write_bytes(Path(db.removeprefix("sqlite:///")).read_bytes())
    if command in ("map", "report"):
        # They read readings only for what arrived since the collector last kept the tracks.
        with sqlite3.connect(copy) as conn:
            conn.execute("INSERT INTO kept_dirty (device, block) SELECT DISTINCT device, seq / 1024 FROM readings")
    out = {"map": ["--out", str(tmp_path / "m.html")], "export": ["--out", str(tmp_path / "p.geojson"), "--what", "points"],
           "report": [], "aggregate": ["--rebuild"]}[command]
    assert main([command, "--db", str(copy), *out, "--progress"]) == 0
    assert re.search(rf"^blankspot {command}: [\d,]+ readings read$", capsys.readouterr().err, re.M)
    assert main([command, "--db", str(copy), *out]) == 0
    assert "readings read" not in capsys.readouterr().err  # stderr is not a terminal here


def test_postgresql_gives_the_same_filtered_cells(readings, db, postgres_url, tmp_path) -> None:  # noqa: F811
    with open_store(postgres_url) as store:
        store.insert_readings(readings)
    args = ("--from", "2026-11-24", "--to", "2026-11-25", "--unit", "boat-1", "--technology", "LTE")
    assert cells_csv(postgres_url, tmp_path, *args) == cells_csv(db, tmp_path, *args)
    assert as_cells(cells_csv(postgres_url, tmp_path)) == as_cells(cells_csv(db, tmp_path))


def test_the_rows_a_filter_takes() -> None:
    where = FiguresFilter(days=("2026-11-24", "2026-11-24"), devices=frozenset({"boat-1"}), technology="LTE")
    lte, gsm_reading = boat_trip("boat-1")[0], gsm(99)
    assert where.takes_reading(lte) and not where.takes_reading(gsm_reading)
    assert where.takes_unit_and_day(gsm_reading)
    assert not where.takes_unit_and_day(boat_trip("boat-1", start=T0 + timedelta(days=1))[0])
