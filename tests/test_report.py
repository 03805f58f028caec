"""``blankspot report``: the blank-spot cells per operator, with the nearest named place.

The report is what goes into a letter to an operator, so its rows are checked for content:
which cells, how many readings, and "N km DIR of PLACE" from tagged spots or a places file.
"""
from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.centre.coverage import aggregate, cell_of
from agent.centre.report import (
    REPORT_COLUMNS, Place, PlacesError, blank_spot_rows, compass, format_report, nearest_place, parse_places_csv,
    tagged_places, write_report_csv,
)
from agent.commands.main import main
from agent.shared.reading import SCHEMA_1, reading_from_dict
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)
from tests.support.survey_factory import damaged_survey, in_service, no_service, survey_db, tag, trip_with_tags

BLANK = (-0.2500, 116.8000)
COVERED = (-0.5030, 117.1460)


def spot_readings() -> list:
    """Telkomsel unit: covered at Samarinda, blank at one spot on the river; a tagged village near the blank."""
    readings = [in_service("u", seq, *COVERED) for seq in range(1, 7)]
    readings += [no_service("u", seq, *BLANK) for seq in range(7, 15)]
    readings.append(tag("u", 15, -0.2500, 116.7700, "kantor desa Sangkuliman"))   # 3.3 km west of the blank spot
    readings.append(tag("u", 16, -0.2000, 116.8000, None))                        # unnamed: not a place
    return readings


# -- places -------------------------------------------------------------------------------

def test_tagged_places_are_named_tags_with_a_position():
    places = tagged_places(spot_readings())
    assert [(p.name, p.source, p.device) for p in places] == [("kantor desa Sangkuliman", "tag", "u")]
    assert len(tagged_places(spot_readings(), named_only=False)) == 2


def test_places_csv():
    text = "# villages of Kecamatan Muara Kaman\nname,lat,lon\nMuara Kaman Ulu,-0.1800,116.7200\n\n\"Sido, Mukti\",-0.2,116.75\n"
    places = parse_places_csv(text, "desa.csv")
    assert [(p.name, p.lat, p.lon, p.source) for p in places] == [
        ("Muara Kaman Ulu", -0.18, 116.72, "desa.csv"), ("Sido, Mukti", -0.2, 116.75, "desa.csv")]


@pytest.mark.parametrize("text", [
    "nama;lintang;bujur\nMuara Kaman Ulu;-0,18;116,72\nSido, Mukti;-0,2;116,75\n",
    "\ufeffnama;lintang;bujur\r\nMuara Kaman Ulu;-0,18;116,72\r\nSido, Mukti;-0,2;116,75\r\n",
    "Nama;Lintang;Bujur;Kecamatan\nMuara Kaman Ulu;-0.18;116.72;Muara Kaman\n\"Sido, Mukti\";-0,2;116,75;Muara Kaman\n",
    "name;lat;lon\nMuara Kaman Ulu;-0,18;116,72\nSido, Mukti;-0,2;116,75\n",
    "\ufeffnama,lintang,bujur\nMuara Kaman Ulu,-0.18,116.72\n\"Sido, Mukti\",-0.2,116.75\n",
])
def test_places_csv_as_an_indonesian_spreadsheet_saves_it(text):
    places = parse_places_csv(text, "desa.csv")
    assert [(p.name, p.lat, p.lon) for p in places] == [("Muara Kaman Ulu", -0.18, 116.72), ("Sido, Mukti", -0.2, 116.75)]


def test_places_csv_with_commas_takes_no_decimal_comma():
    with pytest.raises(PlacesError, match=":2: expected numeric"):
        parse_places_csv('name,lat,lon\nA,"-0,18",116\n', "p.csv")


def test_the_shipped_route_file_is_a_places_file():
    from importlib.resources import files
    text = files("agent.sim").joinpath("routes/mahakam.csv").read_text(encoding="utf-8")
    assert [p.name for p in parse_places_csv(text)][:2] == ["Samarinda", "Loa Janan"]


@pytest.mark.parametrize("text, message", [
    ("", "no places"),
    ("# only a comment\n", "no places"),
    ("lat,lon\n-0.1,116\n", "header"),
    ("name,lat,lon\n", "no places after the header"),
    ("name,lat,lon\nA,north,116\n", ":2: expected numeric"),
    ("name,lat,lon\nA,-0.1\n", ":2: expected numeric"),
    ("name,lat,lon\nA,-91,116\n", "out of range"),
    ("name,lat,lon\n,-0.1,116\n", "needs a name"),
])
def test_places_csv_errors(text, message):
    with pytest.raises(PlacesError, match=message):
        parse_places_csv(text, "p.csv")


@given(st.text(max_size=300))
def test_places_parser_raises_only_its_own_error(text):
    try:
        parse_places_csv(text)
    except PlacesError:
        pass


@pytest.mark.parametrize("bearing, expected", [(0, "N"), (22.4, "N"), (22.6, "NE"), (90, "E"), (180, "S"),
                                               (250, "W"), (300, "NW"), (359.9, "N"), (360, "N")])
def test_compass(bearing, expected):
    assert compass(bearing) == expected


def test_nearest_place_and_direction():
    places = [Place("Muara Kaman", -0.18, 116.72, "list"), Place("Kota Bangun", -0.26, 116.59, "list")]
    nearest = nearest_place(-0.18, 116.75, places)
    assert nearest.place.name == "Muara Kaman" and nearest.direction == "E"
    assert nearest.km == pytest.approx(3.34, abs=0.01)
    assert nearest.describe() == "3.3 km E of Muara Kaman"
    assert nearest_place(-0.18, 116.72, places).describe() == "at Muara Kaman"
    assert nearest_place(0, 0, []) is None


# -- rows and text ---------------------------------------------------------------------------

def test_rows_are_the_blank_cells_with_their_nearest_place():
    readings = spot_readings()
    coverage = aggregate(readings)
    (row,) = blank_spot_rows(coverage, tagged_places(readings))
    assert (row.operator, row.operator_name, row.cell) == ("510-10", "Telkomsel", cell_of(*BLANK))
    assert (row.samples, row.no_service, row.no_service_pct, row.no_answer) == (8, 8, 100.0, 0)
    assert row.nearest.place.name == "kantor desa Sangkuliman" and row.nearest.direction == "E"
    assert 2.5 < row.nearest.km < 4.5
    assert row.first_seen == "2026-11-24T00:00:00.000Z"


def test_text_report_reads_like_a_letter_annex():
    readings = spot_readings()
    coverage = aggregate(readings)
    rows = blank_spot_rows(coverage, tagged_places(readings))
    text = format_report(coverage, rows)
    assert "Telkomsel (510-10): 1 blank, 0 weak, 1 covered, 0 with too few readings" in text
    assert cell_of(*BLANK) in text
    assert "km E of kantor desa Sangkuliman (tag)" in text
    assert "8 (100%)" in text
    assert "at least 50% of at least 5 readings had no service" in text


def test_operator_without_blank_cells_says_so():
    readings = [in_service("u", seq, *COVERED) for seq in range(1, 7)]
    coverage = aggregate(readings)
    assert "no blank cells" in format_report(coverage, blank_spot_rows(coverage, []))


def test_csv_rows():
    readings = spot_readings()
    coverage = aggregate(readings)
    out = io.StringIO()
    assert write_report_csv(blank_spot_rows(coverage, tagged_places(readings)), out) == 1
    (row,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(row) == REPORT_COLUMNS
    assert row["nearest_place"] == "kantor desa Sangkuliman" and row["place_source"] == "tag"
    assert row["no_service"] == "8" and row["operator_name"] == "Telkomsel"


# -- the command ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    extra = [in_service("probe-2", 1, *COVERED, mcc="510", mnc="01", operator="INDOSAT")]
    extra += [no_service("probe-2", seq, -0.4240, 116.9840) for seq in range(2, 10)]
    return survey_db(tmp_path_factory.mktemp("report") / "collector.db", trip_with_tags() + extra)


def test_report_command_with_places_and_csv(db, tmp_path, capsys):
    places = tmp_path / "desa.csv"
    places.write_text("name,lat,lon\nSebulu,-0.3300,116.9900\nMuara Kaman,-0.1800,116.7200\n", encoding="utf-8")
    out = tmp_path / "blank.csv"
    assert main(["report", "--db", db, "--places", str(places), "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Telkomsel (510-10):" in text and "Indosat (510-01): 1 blank" in text
    assert "km without service along tracks in 1 stretch" in text
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {r["operator"] for r in rows} == {"510-10", "510-01"}
    names = {r["nearest_place"] for r in rows}
    assert names <= {"Sebulu", "Muara Kaman", "kantor desa Muara Kaman"} and len(names) >= 2
    assert all(float(r["place_km"]) < 30 for r in rows)


def test_readings_of_both_schemas_are_one_operator_printed_with_its_digits(tmp_path, capsys):
    """Indosat's readings sent by a unit before its upgrade (/1: MNC 1) and after (/2: "01")
    make one operator, 510-01, in the report and its --operator argument."""
    now = [in_service("probe-2", seq, *COVERED, mcc="510", mnc="01", operator="INDOSAT") for seq in range(1, 4)]
    before = []
    for seq in range(4, 7):
        body = in_service("probe-2", seq, *COVERED, mcc="510", mnc="01", operator="INDOSAT").to_dict()
        body["schema"] = SCHEMA_1
        body["signal"].update(mcc=510, mnc=1)
        before.append(reading_from_dict(body))  # as the collector reads it
    blank = [no_service("probe-2", seq, -0.4240, 116.9840) for seq in range(7, 13)]
    db = survey_db(tmp_path / "collector.db", now + before + blank)
    assert main(["report", "--db", db, "--operator", "510-01", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(o["operator"], o["operator_name"]) for o in report["operators"]] == [("510-01", "Indosat")]
    assert main(["report", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "Indosat (510-01): 1 blank, 0 weak, 1 covered" in text and "510-1)" not in text


def test_report_json_holds_what_the_text_and_csv_say(db, tmp_path, capsys):
    out = tmp_path / "blank.csv"
    assert main(["report", "--db", db, "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    csv_rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert main(["report", "--db", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"resolution", "thresholds", "operators", "unplaced", "missing", "skipped", "of"}
    assert report["resolution"] == 8 and report["thresholds"]["min_samples"] == 5
    assert [o["operator"] for o in report["operators"]] == ["510-01", "510-10"]
    for o in report["operators"]:
        c = o["cells"]
        assert (f"{o['operator_name']} ({o['operator']}): {c['blank']} blank, {c['weak']} weak, {c['covered']} "
                f"covered, {c['unknown']} with too few readings") in text
        if o["stretches"]:
            assert f"{o['km_without_service']:.1f} km without service along tracks in {o['stretches']} stretch" in text
    blank = [row for o in report["operators"] for row in o["blank_cells"]]
    assert [{k: "" if v is None else str(v) for k, v in row.items()} for row in blank] == csv_rows
    assert report["missing"] == [] and report["of"] is None and report["skipped"] is None and report["unplaced"] == 0


def test_report_json_of_a_damaged_database_names_what_was_skipped_and_missing(damaged, capsys):
    db, _clean, (year_one, _truncated) = damaged
    assert main(["report", "--db", db, "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["skipped"].startswith(f"2 stored readings skipped: unreadable (first: boat-1#{year_one.seq}")
    assert captured.err == f"blankspot report: warning: {report['skipped']}\n"
    assert main(["report", "--db", _clean, "--json"]) == 0   # the clean copy lacks those two rows
    (unit,) = json.loads(capsys.readouterr().out)["missing"]
    assert (unit["device"], unit["missing"]) == ("boat-1", 2) and sum(h["count"] for h in unit["holes"]) == 2


def test_report_json_of_one_operator(db, capsys):
    assert main(["report", "--db", db, "--operator", "indosat", "--json"]) == 0
    (only,) = json.loads(capsys.readouterr().out)["operators"]
    assert (only["operator"], only["operator_name"], only["cells"]["blank"]) == ("510-01", "Indosat", 1)


def test_report_one_operator_by_name(db, capsys):
    assert main(["report", "--db", db, "--operator", "indosat"]) == 0
    text = capsys.readouterr().out
    assert "Indosat (510-01): 1 blank" in text and "Telkomsel" not in text


@pytest.mark.parametrize("args, message", [
    (["--operator", "Smartfren"], "no readings of operator 'Smartfren'; operators: 510-01 (Indosat), 510-10 (Telkomsel)"),
    (["--places", "/nonexistent/desa.csv"], "cannot read /nonexistent/desa.csv"),
])
def test_report_usage_errors(db, capsys, args, message):
    assert main(["report", "--db", db, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_report_bad_places_file(db, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,lat,lon\nX,north,1\n", encoding="utf-8")
    assert main(["report", "--db", db, "--places", str(bad)]) == 2
    assert f"{bad}:2: expected numeric lat and lon" in capsys.readouterr().err



def test_report_from_postgresql_matches_sqlite(db, postgres_url, capsys):
    from agent.centre.store import open_store

    store = open_store(postgres_url)
    try:
        source = open_store(db)
        try:
            store.insert_readings(list(source.iter_readings()))
        finally:
            source.close()
    finally:
        store.close()
    assert main(["report", "--db", db]) == 0
    from_sqlite = capsys.readouterr().out
    assert main(["report", "--db", postgres_url]) == 0
    assert capsys.readouterr().out == from_sqlite


# -- a damaged database ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    return damaged_survey(tmp_path_factory)


def test_report_skips_unreadable_stored_readings_and_says_so(damaged, capsys):
    """One bad row never breaks the report: it is left out, as if never stored, and the report
    and stderr both say how many rows were skipped, naming the first with the reason."""
    db, clean, (year_one, truncated) = damaged
    assert main(["report", "--db", clean]) == 0
    expected = capsys.readouterr().out
    assert main(["report", "--db", db]) == 0
    captured = capsys.readouterr()
    line = (f"2 stored readings skipped: unreadable (first: boat-1#{year_one.seq}: time: expected UTC ISO 8601 with "
            f"milliseconds and 'Z', got \"1-01-01T00:00:00.000Z\"; also boat-1#{truncated.seq})")
    # The coverage is the same as without those rows; the numbering section differs, as it
    # should: the damaged database holds rows for those seqs, the clean one lacks them.
    section = "\nReadings missing at the centre"
    assert captured.out.split(section)[0] == expected.split(section)[0]
    assert captured.out.endswith(f"\n{line}\n")
    assert "boat-1: 2 of seq" in expected and "none: every unit's readings" in captured.out
    assert captured.err == f"blankspot report: warning: {line}\n"


def test_report_of_a_sound_database_says_nothing_of_skipping(db, capsys):
    assert main(["report", "--db", db]) == 0
    captured = capsys.readouterr()
    assert "skipped" not in captured.out and captured.err == ""
