"""``blankspot export``: GeoJSON that QGIS reads (RFC 7946), KML 2.2 that Google Earth opens, CSV.

The files are written by the command from a real SQLite collector database and checked
against the rules of each format: GeoJSON positions are [lon, lat], polygons closed and
counter-clockwise; every KML placemark's style exists and its coordinates are lon,lat,alt.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import signal
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from agent.centre.coverage import CLASSES, HomeOperators, aggregate, attribute
from agent.centre.export import (
    CELL_COLUMNS, CLASS_COLORS, COLUMNS, LAYERS, Layers, default_operator_name, inert_cell, kml_color, write_csv,
    write_geojson, write_kml,
)
from agent.centre.segments import segments, tracks
from agent.commands.main import main
from tests.support.survey_factory import damaged_survey, in_service, no_answer, survey_db, trip_with_tags

KML_NS_URL = "http://www.opengis.net/kml/2.2"
K = "{" + KML_NS_URL + "}"


@pytest.fixture(scope="module")
def readings():
    return trip_with_tags() + [no_answer("boat-1", 100_000, -0.25, 116.8)]


@pytest.fixture(scope="module")
def db(tmp_path_factory, readings) -> str:
    return survey_db(tmp_path_factory.mktemp("export") / "collector.db", readings)


def export(db: str, out: Path, *args: str) -> int:
    return main(["export", "--db", db, "--out", str(out), *args])


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


# -- GeoJSON rules (RFC 7946) ------------------------------------------------------------------

def check_position(pos) -> None:
    assert isinstance(pos, list) and len(pos) in (2, 3), pos
    lon, lat = pos[0], pos[1]
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in pos)
    assert -180 <= lon <= 180 and -90 <= lat <= 90
    # Our survey is on the Mahakam: a swapped pair would put the longitude near -0.4.
    assert 116 < lon < 118 and -1 < lat < 0, f"not [lon, lat]: {pos}"


def signed_area(ring) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1, *_), (x2, y2, *_) in zip(ring, ring[1:])) / 2


def check_geometry(geometry) -> None:
    kind, coords = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        check_position(coords)
    elif kind == "LineString":
        assert len(coords) >= 2
        for pos in coords:
            check_position(pos)
    elif kind == "Polygon":
        for index, ring in enumerate(coords):
            assert len(ring) >= 4 and ring[0] == ring[-1], "ring not closed"
            for pos in ring:
                check_position(pos)
            area = signed_area(ring)
            assert area > 0 if index == 0 else area < 0, "exterior rings counter-clockwise, holes clockwise"
    else:
        raise AssertionError(f"unexpected geometry {kind}")


def check_feature_collection(doc) -> None:
    assert doc["type"] == "FeatureCollection" and isinstance(doc["features"], list)
    assert "crs" not in doc   # RFC 7946 dropped it: WGS84 only
    for feature in doc["features"]:
        assert feature["type"] == "Feature"
        assert isinstance(feature["properties"], dict)
        check_geometry(feature["geometry"])
        assert all(not isinstance(v, (dict, list)) for v in feature["properties"].values())


def test_geojson_all_layers(db, tmp_path, readings):
    out = tmp_path / "survey.geojson"
    assert export(db, out) == 0
    doc = strict_json(out.read_text(encoding="utf-8"))
    check_feature_collection(doc)
    by_layer: dict[str, list] = {}
    for f in doc["features"]:
        by_layer.setdefault(f["properties"]["layer"], []).append(f)
    assert set(by_layer) == set(LAYERS)
    assert len(by_layer["points"]) == len(readings)
    assert {f["geometry"]["type"] for f in by_layer["cells"]} == {"Polygon"}
    assert {f["geometry"]["type"] for f in by_layer["tracks"]} == {"LineString"}
    assert [f["properties"]["device"] for f in by_layer["tracks"]] == ["boat-1"]
    (segment,) = by_layer["segments"]
    assert segment["properties"]["operator"] == "510-10" and segment["properties"]["length_km"] > 30
    classes = {f["properties"]["class"] for f in by_layer["cells"]}
    assert {"blank", "covered"} <= classes <= set(CLASS_COLORS)
    blank = next(f for f in by_layer["cells"] if f["properties"]["class"] == "blank")
    assert blank["properties"]["no_service_pct"] >= 50 and blank["properties"]["resolution"] == 8
    tag = next(f for f in by_layer["points"] if f["properties"]["kind"] == "event" and f["properties"]["message"])
    assert tag["geometry"]["coordinates"] == [116.72, -0.18]
    assert json.loads(tag["properties"]["data"]) == {"button": "short"}


def test_geojson_one_layer_and_resolution(db, tmp_path):
    out = tmp_path / "cells.json"
    assert export(db, out, "--what", "cells", "--resolution", "7") == 0
    doc = strict_json(out.read_text(encoding="utf-8"))
    check_feature_collection(doc)
    assert {f["properties"]["layer"] for f in doc["features"]} == {"cells"}
    assert {f["properties"]["resolution"] for f in doc["features"]} == {7}


def test_geojson_of_an_empty_database(tmp_path):
    db = survey_db(tmp_path / "empty.db", [])
    out = tmp_path / "empty.geojson"
    assert export(db, out) == 0
    assert strict_json(out.read_text()) == {"type": "FeatureCollection", "features": []}


# -- the same columns and operators in every layer and format ----------------------------------

def geojson_layer(db: str, out: Path, layer: str) -> list[dict]:
    assert export(db, out, "--what", layer) == 0
    return [f["properties"] for f in strict_json(out.read_text(encoding="utf-8"))["features"]]


def csv_layer(db: str, out: Path, layer: str) -> list[dict]:
    assert export(db, out, "--what", layer) == 0
    with out.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        assert len(header) == len(set(header)), f"{layer}: a column twice in {header}"
        return [dict(zip(header, row)) for row in reader]


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_has_each_column_once_and_the_same_in_csv_and_geojson(db, tmp_path, layer):
    names = [c.name for c in COLUMNS[layer]]
    assert len(names) == len(set(names))
    (first_csv, *_) = csv_layer(db, tmp_path / f"{layer}.csv", layer)
    (first_json, *_) = geojson_layer(db, tmp_path / f"{layer}.geojson", layer)
    assert list(first_csv) == names + ([] if layer == "points" else ["wkt"])
    assert list(first_json) == ["layer"] + [n for n in names if n in first_json]
    assert set(first_json) - {"layer"} <= set(names)


def test_a_no_service_point_counts_for_its_sims_home_operator(db, tmp_path):
    points = geojson_layer(db, tmp_path / "points.geojson", "points")
    blank = [p for p in points if p["kind"] == "signal" and p["rat"] == "NONE" and p["error"] is None]
    assert blank
    assert {(p["operator"], p["operator_name"]) for p in blank} == {("510-10", "Telkomsel")}
    assert {p["modem_operator"] for p in blank} == {None}   # what the modem said: nothing


def test_every_kind_of_point_names_its_operator_the_same_way(db, tmp_path):
    points = geojson_layer(db, tmp_path / "points.geojson", "points")
    by_kind = {(p["kind"], p["operator"], p["operator_name"]) for p in points}
    assert by_kind == {("signal", "510-10", "Telkomsel"), ("latency", "510-10", "Telkomsel"), ("event", None, None)}
    in_service = next(p for p in points if p["kind"] == "signal" and p["rat"] == "LTE")
    assert in_service["modem_operator"] == "TELKOMSEL"


def test_segments_and_cells_name_operators_as_points_do(db, tmp_path):
    for layer in ("segments", "cells"):
        rows = csv_layer(db, tmp_path / f"{layer}.csv", layer)
        assert {(r["operator"], r["operator_name"]) for r in rows} == {("510-10", "Telkomsel")}, layer


def test_an_operator_key_is_named_by_its_brand_when_nothing_better_is_known():
    assert [default_operator_name(k) for k in ("510-10", "510-89", "999-99", "unknown", "MyNet", "510-01", "510-001")] \
        == ["Telkomsel", "Tri", "999-99", "unknown SIM", "MyNet", "Indosat", "510-001"]


def test_codes_keep_their_digits_in_every_format(tmp_path):
    """Indosat's 510-01: "01" in GeoJSON, CSV and KML (typed as text), never 1."""
    db = survey_db(tmp_path / "c.db", [in_service("probe-2", seq, -0.5030, 117.1460, mcc="510", mnc="01",
                                                   operator="INDOSAT") for seq in range(1, 6)])
    (point, *_) = geojson_layer(db, tmp_path / "points.geojson", "points")
    assert (point["mcc"], point["mnc"], point["operator"], point["operator_name"]) == ("510", "01", "510-01", "Indosat")
    (row, *_) = csv_layer(db, tmp_path / "points.csv", "points")
    assert (row["mcc"], row["mnc"], row["operator"]) == ("510", "01", "510-01")
    assert {c.name: c.type for c in COLUMNS["points"]}["mnc"] == "string"
    assert export(db, tmp_path / "survey.kml", "--format", "kml", "--what", "points") == 0
    assert '<SimpleData name="mnc">01</SimpleData>' in (tmp_path / "survey.kml").read_text(encoding="utf-8")


# -- KML 2.2 ------------------------------------------------------------------------------

def test_kml_is_valid_kml_2_2(db, tmp_path):
    out = tmp_path / "survey.kml"
    assert export(db, out, "--format", "kml") == 0
    root = ET.parse(out).getroot()
    assert root.tag == f"{K}kml"
    (document,) = root.findall(f"{K}Document")
    styles = {s.get("id") for s in document.findall(f"{K}Style")}
    assert {f"cell-{c}" for c in CLASS_COLORS} <= styles
    style = document.find(f"{K}Style[@id='cell-blank']")
    assert style.find(f"{K}PolyStyle/{K}color").text == kml_color(CLASS_COLORS["blank"], 0x80) == "801c19d7"
    folders = [f.find(f"{K}name").text for f in document.findall(f"{K}Folder")]
    assert folders == list(LAYERS)
    cells_folder = document.findall(f"{K}Folder")[3]
    assert [f.find(f"{K}name").text for f in cells_folder.findall(f"{K}Folder")] == ["Telkomsel (510-10)"]
    placemarks = list(root.iter(f"{K}Placemark"))
    assert placemarks
    for mark in placemarks:
        assert mark.find(f"{K}styleUrl").text[1:] in styles
        for coords in mark.iter(f"{K}coordinates"):
            tuples = [tuple(float(v) for v in t.split(",")) for t in coords.text.split()]
            for lon, lat, alt in tuples:
                assert 116 < lon < 118 and -1 < lat < 0 and alt == 0
        for ring in mark.iter(f"{K}LinearRing"):
            tuples = [tuple(float(v) for v in t.split(",")) for t in ring.find(f"{K}coordinates").text.split()]
            assert tuples[0] == tuples[-1] and len(tuples) == 7 and signed_area(tuples) > 0
    names = [m.find(f"{K}name").text for m in placemarks]
    assert "kantor desa Muara Kaman" in names
    # Children of a Placemark in the order of the KML 2.2 schema (Google Earth forgives, validators do not).
    schema_order = ["name", "TimeStamp", "styleUrl", "ExtendedData", "Point", "LineString", "Polygon"]
    for mark in placemarks:
        tags = [child.tag.replace(K, "") for child in mark]
        assert tags == sorted(tags, key=schema_order.index), tags
        assert tags[-1] in ("Point", "LineString", "Polygon")


def test_kml_has_a_typed_schema_per_layer_and_each_placemark_uses_its_own(db, tmp_path):
    out = tmp_path / "survey.kml"
    assert export(db, out, "--format", "kml") == 0
    document = ET.parse(out).getroot().find(f"{K}Document")
    schemas = {s.get("id"): s for s in document.findall(f"{K}Schema")}
    assert set(schemas) == set(LAYERS)
    for layer, schema in schemas.items():
        assert schema.get("name") == layer
        assert [(f.get("name"), f.get("type")) for f in schema.findall(f"{K}SimpleField")] == \
            [(c.name, c.type) for c in COLUMNS[layer]]
    convert = {"int": int, "double": float, "string": str}
    for folder, layer in zip(document.findall(f"{K}Folder"), LAYERS):
        marks = list(folder.iter(f"{K}Placemark"))
        assert marks, layer
        types = {c.name: convert[c.type] for c in COLUMNS[layer]}
        for mark in marks:
            (data,) = mark.findall(f"{K}ExtendedData/{K}SchemaData")
            assert data.get("schemaUrl") == f"#{layer}"
            for value in data.findall(f"{K}SimpleData"):
                types[value.get("name")](value.text)   # each value reads as its field's type


def test_kml_fetches_nothing_from_the_web(db, tmp_path):
    out = tmp_path / "survey.kml"
    assert export(db, out, "--format", "kml") == 0
    text = out.read_text(encoding="utf-8")
    assert "href" not in text and "http://" not in text.replace(KML_NS_URL, "") and "https://" not in text


OGR_TYPES = {"int": "Integer", "double": "Real", "string": "String"}


def ogr_fields(path: Path, layer: str) -> dict[str, str]:
    """The fields GDAL reads in ``layer`` of ``path``: name -> OGR type."""
    text = subprocess.run(["ogrinfo", "-ro", "-so", str(path), layer], capture_output=True, text=True,
                          check=True).stdout
    return dict(re.findall(r"^(\w+): (\w+) \(", text, re.MULTILINE))


needs_gdal = pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL's ogrinfo is not installed (gdal-bin)")


@needs_gdal
def test_gdal_reads_kml_figures_as_numbers(db, tmp_path):
    out = tmp_path / "survey.kml"
    assert export(db, out, "--format", "kml") == 0
    # GDAL makes a layer of each folder: the cells are in their operator's.
    for layer, ogr_layer in (("points", "points"), ("tracks", "tracks"), ("segments", "segments"),
                             ("cells", "Telkomsel (510-10)")):
        fields = ogr_fields(out, ogr_layer)
        assert {c.name: fields.get(c.name) for c in COLUMNS[layer]} == \
            {c.name: OGR_TYPES[c.type] for c in COLUMNS[layer]}, layer


@needs_gdal
def test_gdal_reads_geojson_figures_as_numbers(db, tmp_path):
    out = tmp_path / "cells.geojson"
    assert export(db, out, "--what", "cells") == 0
    fields = ogr_fields(out, "cells")
    # GeoJSON has no schema: GDAL guesses from the values, so a column that is null in every
    # row reads as a string, and a time as a date.
    valued = {k for f in strict_json(out.read_text())["features"] for k, v in f["properties"].items() if v is not None}
    numeric = [c for c in CELL_COLUMNS if c.type != "string" and c.name in valued]
    assert numeric and {c.name: fields[c.name] for c in numeric} == {c.name: OGR_TYPES[c.type] for c in numeric}


def test_kml_escapes_what_units_send(tmp_path):
    from tests.support.survey_factory import in_service, tag
    readings = [in_service("u", 1, -0.3, 116.8), tag("u", 2, -0.3, 116.8, 'Desa <"A&B"> ]]>')]
    db = survey_db(tmp_path / "c.db", readings)
    out = tmp_path / "tags.kml"
    assert export(db, out, "--what", "points") == 0
    names = [m.find(f"{K}name").text for m in ET.parse(out).getroot().iter(f"{K}Placemark")]
    assert 'Desa <"A&B"> ]]>' in names


def test_every_class_has_the_colour_the_map_gives_it():
    script = files("agent.centre").joinpath("static", "map.js").read_text(encoding="utf-8")
    colors = re.search(r"var COLORS = \{([^}]*)\}", script).group(1)
    assert tuple(CLASS_COLORS) == CLASSES
    assert CLASS_COLORS == dict(re.findall(r'(\w+): "(#[0-9a-f]{6})"', colors))


# -- CSV ----------------------------------------------------------------------------------

def test_csv_cells_by_default_with_wkt(db, tmp_path):
    out = tmp_path / "cells.csv"
    assert export(db, out) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows and {r["class"] for r in rows} >= {"blank", "covered"}
    for r in rows:
        assert r["wkt"].startswith("POLYGON ((") and r["wkt"].endswith("))")
        pairs = r["wkt"][len("POLYGON (("):-2].split(", ")
        assert pairs[0] == pairs[-1] and len(pairs) == 7
        assert -1 < float(r["lat"]) < 0 and 116 < float(r["lon"]) < 118
        assert int(r["samples"]) >= int(r["no_service"])


@pytest.mark.parametrize("layer, column", [("points", "rsrp_dbm"), ("tracks", "wkt"), ("segments", "length_km")])
def test_csv_other_layers(db, tmp_path, layer, column):
    out = tmp_path / f"{layer}.csv"
    assert export(db, out, "--what", layer) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows and column in rows[0]


def test_writers_stream_to_text(readings):
    home = HomeOperators.learn(readings)
    layers = Layers(points=attribute(readings, home), tracks=tracks(readings),
                    segments=segments(attribute(readings, home)), coverage=aggregate(readings, home=home))
    buffer = io.StringIO()
    n = write_geojson(layers, buffer)
    assert n == len(strict_json(buffer.getvalue())["features"])
    with pytest.raises(ValueError, match="one layer"):
        write_csv(Layers(what=("cells", "points")), io.StringIO())
    assert write_kml(Layers(what=()), io.StringIO()) == 0


# -- one file per layer --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["geojson", "csv", "kml"])
def test_split_writes_each_layer_to_its_own_file_as_a_one_layer_export_would(db, tmp_path, capsys, fmt):
    assert export(db, tmp_path / f"survey.{fmt}", "--split") == 0
    err = capsys.readouterr().err.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"survey-{layer}.{fmt}" for layer in LAYERS)
    assert [line.split(":")[0] for line in err] == [str(tmp_path / f"survey-{layer}.{fmt}") for layer in LAYERS]
    for layer in LAYERS:
        alone = tmp_path / "alone" / f"{layer}.{fmt}"
        alone.parent.mkdir(exist_ok=True)
        assert export(db, alone, "--what", layer) == 0
        assert (tmp_path / f"survey-{layer}.{fmt}").read_bytes() == alone.read_bytes(), layer


def test_split_writes_only_the_layers_asked_for(db, tmp_path):
    assert export(db, tmp_path / "s.csv", "--split", "--what", "cells,points") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-cells.csv", "s-points.csv"]


def test_split_needs_a_file_name(db, capsys):
    assert main(["export", "--db", db, "--out", "-", "--format", "geojson", "--split"]) == 2
    assert "--split" in capsys.readouterr().err


# -- command errors -----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--what", "cells,rivers"], "--what takes"),
    (["--format", "csv", "--what", "cells,points"], "one layer"),
    (["--resolution", "16"], "--resolution"),
    (["--min-samples", "0"], "--min-samples"),
])
def test_usage_errors(db, tmp_path, capsys, args, message):
    out = tmp_path / "x.geojson"
    assert export(db, out, *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_suffix_needs_format(db, tmp_path, capsys):
    assert export(db, tmp_path / "survey.txt") == 2
    assert "--format" in capsys.readouterr().err


def test_missing_database_is_a_usage_error(tmp_path, capsys):
    assert export(str(tmp_path / "nope.db"), tmp_path / "x.geojson") == 2
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()


def test_unwritable_output_is_a_runtime_failure(db, tmp_path, capsys):
    assert export(db, tmp_path / "no" / "such" / "dir.geojson") == 1
    assert "cannot write" in capsys.readouterr().err


def test_export_to_stdout(db, capsys):
    assert main(["export", "--db", db, "--out", "-", "--format", "geojson", "--what", "tracks"]) == 0
    check_feature_collection(strict_json(capsys.readouterr().out))


@pytest.mark.parametrize("fmt, what", [("csv", "points"), ("geojson", "points,cells"), ("kml", "tracks")])
def test_export_to_a_reader_that_stops_early_ends_quietly(db, fmt, what):
    """``export --out - | head``: the reader goes away; the command ends as a Unix tool does on
    SIGPIPE, with nothing on stderr (no BrokenPipeError, no closed-database complaint)."""
    export = subprocess.Popen([sys.executable, "-m", "agent", "export", "--db", db, "--out", "-",
                               "--format", fmt, "--what", what], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    export.stdout.close()  # before it writes a byte: its first write finds no reader
    err = export.stderr.read().decode()
    assert export.wait(60) == 128 + signal.SIGPIPE and err == ""


WITHOUT_H3 = "import sys; sys.modules['h3'] = None; from agent.commands.main import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("what, status, err", [
    ("points,tracks,segments", 0, "features (points, tracks, segments)"),
    ("cells", 1, "blankspot: blankspot export: the coverage grid needs h3: pip install 'blankspot[collector]'"),
])
def test_without_the_grid_library_only_the_cells_stop(db, tmp_path, what, status, err):
    """A collector host without the ``collector`` extra: the layers that need no H3 grid are
    exported; cells stop with one line naming the extra, and nothing else on stderr."""
    out = tmp_path / "survey.geojson"
    done = subprocess.run([sys.executable, "-c", WITHOUT_H3, "export", "--db", db, "--out", str(out), "--what", what],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == status and len(done.stderr.splitlines()) == 1 and err in done.stderr, done.stderr
    assert out.exists() == (status == 0)


# -- a damaged database ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    return damaged_survey(tmp_path_factory)


@pytest.mark.parametrize("fmt, what", [
    ("geojson", None), ("kml", None),
    ("csv", "cells"), ("csv", "points"), ("csv", "tracks"), ("csv", "segments"),
])
def test_export_skips_unreadable_stored_readings_and_says_so(damaged, tmp_path, capsys, fmt, what):
    """Every format, every layer: the file is what a database without the two damaged rows
    gives, and the last line on stderr names them."""
    db, clean, (year_one, truncated) = damaged
    args = ["--format", fmt] + (["--what", what] if what else [])
    assert export(clean, tmp_path / "clean.out", *args) == 0
    capsys.readouterr()
    assert export(db, tmp_path / "damaged.out", *args) == 0
    err = capsys.readouterr().err.splitlines()
    assert (tmp_path / "damaged.out").read_bytes() == (tmp_path / "clean.out").read_bytes()
    if what == "cells":  # drawn from the kept figures: no stored reading is read
        assert not any("skipped" in line for line in err)
        return
    assert err[-1].startswith(f"blankspot export: warning: 2 stored readings skipped: unreadable "
                              f"(first: boat-1#{year_one.seq}: time: expected UTC ISO 8601")
    assert err[-1].endswith(f"; also boat-1#{truncated.seq})")


def test_export_to_stdout_keeps_the_warning_on_stderr(damaged, capsys):
    db, clean, _ = damaged
    assert main(["export", "--db", db, "--out", "-", "--format", "geojson", "--what", "points"]) == 0
    captured = capsys.readouterr()
    check_feature_collection(strict_json(captured.out))
    assert captured.err.startswith("blankspot export: warning: 2 stored readings skipped")


def test_map_skips_unreadable_stored_readings_and_says_so(damaged, tmp_path, capsys):
    db, clean, (year_one, _) = damaged
    out = tmp_path / "map.html"
    assert main(["map", "--db", db, "--out", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert err[0].startswith(f"{out}: ") and "cells" in err[0]
    assert err[-1].startswith(f"blankspot map: warning: 2 stored readings skipped: unreadable "
                              f"(first: boat-1#{year_one.seq}: time: ")


# -- CSV a spreadsheet does not run ------------------------------------------------------------

@pytest.mark.parametrize("value, cell", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\tTAB", "'\tTAB"),
    ("\rCR", "'\rCR"),
    ("-97.5", "-97.5"),
    ("+62", "+62"),
    ("-1e3", "-1e3"),
    ("Muara Kaman", "Muara Kaman"),
    ("LTE 20 (RSRP -97/-104 dBm)", "LTE 20 (RSRP -97/-104 dBm)"),
    ("", ""),
    (-97.5, -97.5),
    (12, 12),
    (None, ""),
])
def test_a_cell_that_starts_as_a_formula_is_written_as_text(value, cell):
    assert inert_cell(value) == cell


HOSTILE = "=cmd|' /C calc'!A0"


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory) -> str:
    """A unit whose modem names its network with a formula and whose technician tagged a spot with one."""
    from tests.support.survey_factory import in_service, no_service, tag
    readings = [in_service("u", 1, -0.30, 116.80, operator=HOSTILE, mcc=None, mnc=None)]
    readings += [no_service("u", seq, -0.30, 116.80) for seq in range(2, 8)]
    readings.append(tag("u", 8, -0.30, 116.80, "@SUM(1+1)*cmd|' /C calc'!A0"))
    return survey_db(tmp_path_factory.mktemp("hostile") / "c.db", readings)


@pytest.mark.parametrize("layer", ["points", "segments", "cells"])
def test_what_a_unit_sent_comes_out_of_a_csv_export_inert(hostile_db, tmp_path, layer):
    rows = csv_layer(hostile_db, tmp_path / f"{layer}.csv", layer)
    cells = [v for row in rows for v in row.values()]
    assert "'" + HOSTILE in cells
    assert not [v for v in cells if v.startswith(("=", "+", "@", "\t", "\r"))
                or (v.startswith("-") and not re.fullmatch(r"-[\d.]+", v))]


def test_what_a_unit_sent_comes_out_of_the_report_csv_inert(hostile_db, tmp_path):
    out = tmp_path / "report.csv"
    assert main(["report", "--db", hostile_db, "--csv", str(out)]) == 0
    (row,) = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert row["operator"] == row["operator_name"] == "'" + HOSTILE
    assert row["nearest_place"] == "'@SUM(1+1)*cmd|' /C calc'!A0"


# -- progress ---------------------------------------------------------------------------------

def test_progress_prints_a_line_every_few_seconds_of_reading():
    from agent.commands.centre import Progress
    now = [0.0]
    out = io.StringIO()
    progress = Progress("export", out, every_s=5.0, clock=lambda: now[0])
    for done, at in ((10_000, 1.0), (20_000, 5.5), (30_000, 7.0), (40_000, 10.6)):
        now[0] = at
        progress(done)
    assert out.getvalue().splitlines() == ["blankspot export: 20,000 readings read",
                                           "blankspot export: 40,000 readings read"]


def test_the_survey_tells_progress_as_it_reads(tmp_path, monkeypatch):
    import agent.centre.survey as survey_module
    from agent.centre.coverage import Thresholds
    from agent.centre.store import open_store
    monkeypatch.setattr(survey_module, "PROGRESS_EVERY", 100)
    db = survey_db(tmp_path / "c.db", trip_with_tags())
    calls: list[int] = []
    store = open_store(db)
    try:
        survey_module.Survey(store, 8, Thresholds(), tracks=survey_module.whole_track,
                             progress=calls.append).tracks  # whole tracks need the pass
    finally:
        store.close()
    assert calls == list(range(100, len(trip_with_tags()) + 1, 100))


def test_progress_is_not_printed_to_a_file_unless_asked(db, tmp_path, capsys):
    assert export(db, tmp_path / "s.geojson") == 0
    assert "readings read" not in capsys.readouterr().err
