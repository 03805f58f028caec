"""The survey of a collector's database, as the map, the report, the export and the demo read it:
one pass over the store gives what separate passes over the readings give; a stored row that
does not decode is counted once and left out of every figure; an operator is asked for by its
mcc-mnc or its name."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from agent.centre.cell_stats import STATS_RESOLUTION
from agent.centre.coverage import DEFAULT_RESOLUTION, HomeOperators, Thresholds, aggregate, attribute
from agent.centre.export import LAYERS, Layers, write_geojson
from agent.centre.report import tagged_places
from agent.centre.segments import segments, tracks
from agent.centre.store import open_store
from agent.centre.store.schema import MIGRATIONS
from agent.centre.store.sqlite import SqliteStore
from agent.centre.survey import Survey, UnknownOperator, export_layers, map_page, whole_track
from tests.support.survey_factory import (
    T0, boat_trip, damaged_survey, in_service, no_service, survey_db, tag, trip_with_tags,
)

COVERED = (-0.5030, 117.1460)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    return damaged_survey(tmp_path_factory)


def drawn(survey: Survey) -> dict:
    """The map's data without the moment it was made."""
    _, data = map_page(survey)
    return {key: value for key, value in data.items() if key not in ("generated", "subtitle")}


def test_a_row_that_does_not_decode_is_counted_once_and_left_out_of_every_figure(damaged) -> None:
    db, clean, (year_one, truncated) = damaged
    with open_store(db) as store, open_store(clean) as sound:
        survey = Survey(store, DEFAULT_RESOLUTION, Thresholds())
        expected = Survey(sound, DEFAULT_RESOLUTION, Thresholds())
        assert survey.coverage == expected.coverage
        assert list(survey.attributed()) == list(expected.attributed())
        assert drawn(survey) == drawn(expected)
        assert survey.readings.skipped == 2, "met by every pass above, counted once each"
        assert survey.summary().startswith(f"2 stored readings skipped: unreadable (first: boat-1#{year_one.seq}: ")
        assert survey.summary().endswith(f"; also boat-1#{truncated.seq})")
        assert expected.summary() is None


def test_an_operator_is_found_by_mcc_mnc_or_name_and_an_unknown_one_names_those_known(tmp_path) -> None:
    url = survey_db(tmp_path / "survey.db", [
        in_service("boat-1", 1, *COVERED),
        in_service("probe-2", 1, *COVERED, mnc="01", operator="INDOSAT OOREDOO"),
    ])
    with open_store(url) as store:
        survey = Survey(store, DEFAULT_RESOLUTION, Thresholds())
        assert survey.operator("510-10") == "510-10"
        assert survey.operator(" telkomsel ") == "510-10"
        assert survey.operator(None) is None
        with pytest.raises(UnknownOperator) as raised:
            survey.operator("XL")
    assert raised.value.known == {"510-01": "Indosat", "510-10": "Telkomsel"}
    assert str(raised.value) == "no readings of operator 'XL'; operators: 510-01 (Indosat), 510-10 (Telkomsel)"


def test_an_empty_database_knows_no_operator_yet(tmp_path) -> None:
    with open_store(survey_db(tmp_path / "empty.db", [])) as store:
        with pytest.raises(UnknownOperator, match=r"no readings of operator 'Telkomsel'; operators: none yet$"):
            Survey(store, DEFAULT_RESOLUTION, Thresholds()).operator("Telkomsel")


# -- one pass -------------------------------------------------------------------------------------

def fleet_survey() -> list:
    """Two units: a boat that starts in the blank spot before it first registers at home, and
    a probe whose SIM never is at home (roaming, then no service)."""
    boat = boat_trip("boat-1", latency_every=6, first_seq=4)
    seq = boat[-1].seq + 1
    return [no_service("boat-1", n, -0.1800, 116.7200) for n in (1, 2, 3)] + boat + [
        tag("boat-1", seq, -0.1800, 116.7200, "kantor desa Muara Kaman"),
        tag("boat-1", seq + 1, -0.3300, 116.9900, None),
        in_service("probe-2", 1, -0.5030, 117.1460, registration="roaming"),
        *(no_service("probe-2", n, -0.2500, 116.8000, when=T0) for n in range(2, 8)),
    ]


class CountingStore(SqliteStore):
    """A SQLite store that counts the rows read from it."""

    rows_read = 0

    def iter_rows(self, device=None, kind=None):
        for row in super().iter_rows(device, kind):
            self.rows_read += 1
            yield row


def draw_map(survey: Survey) -> None:
    map_page(survey)


def write_report(survey: Survey) -> None:
    survey.operator("Telkomsel")
    assert [p.name for p in survey.tags if p.name] and survey.segments and survey.coverage


def write_export(survey: Survey) -> None:
    write_geojson(export_layers(survey, LAYERS), io.StringIO())


# (what a command does with its survey, what the command keeps of each track piece, whether
# it reads the readings: the export's points and whole tracks are per reading by nature; the
# map and the report read what the collector keeps)
COMMANDS = [(draw_map, {}, False), (write_report, {"tracks": None}, False),
            (write_export, {"tracks": whole_track}, True)]


@pytest.mark.parametrize("command, options, reads", COMMANDS, ids=["map", "report", "export"])
def test_each_stored_reading_is_read_once_at_most(tmp_path: Path, command, options: dict, reads: bool) -> None:
    readings = fleet_survey()
    survey_db(tmp_path / "survey.db", readings)
    store = CountingStore(tmp_path / "survey.db")
    try:
        command(Survey(store, DEFAULT_RESOLUTION, Thresholds(), **options))
    finally:
        store.close()
    assert store.rows_read == (len(readings) if reads else 0)


@pytest.mark.parametrize("command, options", [(draw_map, {}), (write_report, {"tracks": None})], ids=["map", "report"])
def test_a_database_that_keeps_no_tracks_is_read_once(tmp_path: Path, command, options: dict) -> None:
    readings = fleet_survey()
    store = CountingStore(tmp_path / "older.db", MIGRATIONS[:4])
    try:
        store.insert_readings(readings)
        command(Survey(store, DEFAULT_RESOLUTION, Thresholds(), **options))
    finally:
        store.close()
    assert store.rows_read == len(readings)


# Finer than the figures the collector keeps, so that the pass itself draws the grid.
PASS_RESOLUTION = STATS_RESOLUTION + 1


def test_the_one_pass_gives_what_separate_passes_over_the_readings_give(tmp_path: Path) -> None:
    readings = fleet_survey()
    home = HomeOperators.learn(readings)
    with open_store(survey_db(tmp_path / "survey.db", readings)) as store:
        survey = Survey(store, PASS_RESOLUTION, Thresholds(), tracks=whole_track)
        assert list(survey.attributed()) == list(attribute(readings, home))
        assert survey.coverage == aggregate(readings, home=home, resolution=PASS_RESOLUTION)
        assert survey.tracks == list(tracks(readings))
        assert survey.segments == list(segments(attribute(readings, home)))
        assert survey.tags == tagged_places(readings, named_only=False)
        assert survey.coverage.operators == {"510-10": "Telkomsel", "unknown": "unknown SIM"}


def test_the_export_streams_the_points_of_the_one_pass_and_writes_the_rest_after_them(tmp_path: Path) -> None:
    readings = trip_with_tags()
    home = HomeOperators.learn(readings)
    separate = Layers(points=attribute(readings, home), tracks=tracks(readings),
                      segments=segments(attribute(readings, home)),
                      coverage=aggregate(readings, home=home, resolution=PASS_RESOLUTION))
    expected = io.StringIO()
    write_geojson(separate, expected)
    with open_store(survey_db(tmp_path / "survey.db", readings)) as store:
        out = io.StringIO()
        write_geojson(export_layers(Survey(store, PASS_RESOLUTION, Thresholds(), tracks=whole_track), LAYERS), out)
    assert out.getvalue() == expected.getvalue()
