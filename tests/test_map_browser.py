"""``blankspot map`` in a real browser: headless Chromium opens the file offline and draws it.

The page keeps every script error and ``console.error`` in ``#bs-errors``; Chromium's
``--dump-dom`` gives the DOM after the scripts ran, so the tests read the errors and count
the SVG paths Leaflet drew (cells, tracks, stretches, tags) without any driver library.
A screenshot is saved in the test's temporary folder and its path printed.

Needs Debian's ``chromium`` (``apt-get install -y chromium``, as deploy/quickstart.sh does).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.centre.coverage import aggregate
from agent.centre.mapview import map_data, render_map
from agent.commands.main import main
from tests.support.chromium import DESKTOP, MEASURE_PANELS, PHONE, Dom, click, run_chromium
from tests.support.survey_factory import in_service, no_service, survey_db, trip_with_tags

ROUTE_PLACES = Path(__file__).resolve().parent.parent / "agent" / "sim" / "routes" / "mahakam.csv"


def load(workdir: Path, page: Path, fragment: str = "", size: tuple[int, int] = DESKTOP) -> Dom:
    result = run_chromium(workdir, page.as_uri() + fragment, "--dump-dom", size=size)
    return Dom(result.stdout)


def load_with_script(workdir: Path, page: Path, script: str, fragment: str = "",
                     size: tuple[int, int] = DESKTOP) -> Dom:
    """The page with ``script`` run after the page's own (as a user's clicks would), then dumped."""
    copy = workdir / "scripted.html"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", f"<script>{script}</script>\n</body>"),
                    encoding="utf-8")
    return load(workdir, copy, fragment, size)


def indosat_unit() -> list:
    """A second unit with an Indosat SIM, in service downstream and without it near Tenggarong."""
    readings = [in_service("probe-2", seq, -0.5030, 117.1460, mcc="510", mnc="01", operator="INDOSAT", rsrp=-85.0)
                for seq in range(1, 8)]
    readings += [no_service("probe-2", seq, -0.4240, 116.9840) for seq in range(8, 16)]
    return readings


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("map")
    readings = trip_with_tags() + indosat_unit()
    db = survey_db(folder / "collector.db", readings)
    page = folder / "map.html"
    assert main(["map", "--db", db, "--out", str(page), "--places", str(ROUTE_PLACES)]) == 0
    return folder, page, aggregate(readings)


def test_map_draws_offline_without_errors(survey, tmp_path):
    _, page, coverage = survey
    dom = load(tmp_path, page)
    assert dom.errors == []
    assert dom.attribute("body", "data-ready") == "1"
    # The operator with most readings is shown first: every one of its cells is drawn.
    telkomsel = [c for c in coverage.cells if c.operator == "510-10"]
    assert dom.attribute("body", "data-operator") == "510-10"
    assert dom.paths("bs-cell") == len(telkomsel) > 50
    assert dom.paths("bs-blank") == sum(c.coverage_class == "blank" for c in telkomsel) > 10
    assert dom.paths("bs-track") == 1                # probe-2 stood still: no line
    assert dom.paths("bs-segment") == 1
    assert dom.paths("bs-tag") == 2
    text = " ".join(dom.text)
    for words in ("Keterangan / Legend", "Blank spot: tidak ada sinyal", "Blank spot: no service", "Tercakup",
                  "Not enough readings", "Lintasan unit", "Tagged spot", "kantor desa Muara Kaman"):
        assert words in text, words
    options = [a.get("value") for t, a in dom.elements if t == "option"]
    assert options == ["510-01", "510-10"]


def test_place_names_are_written_on_the_map(survey, tmp_path):
    _, page, _ = survey
    dom = load(tmp_path, page)
    assert dom.errors == []
    assert dom.with_class("bs-place") == 7          # every town of the places file
    text = " ".join(dom.text)
    for town in ("Samarinda", "Tenggarong", "Sebulu", "Muara Kaman", "Kota Bangun"):
        assert town in text, town


def test_times_are_shown_in_wita_with_utc_on_hover(survey, tmp_path):
    _, page, _ = survey
    dom = load_with_script(tmp_path, page, click("path.bs-track"))
    assert dom.errors == []
    times = [(a["title"], dom_text) for a, dom_text in dom.spans("bs-time")]
    assert times, "the track's popup shows its time"
    utc, wita = times[0]
    # The trip starts at 00:00 UTC on 24 November: 08:00 in Kalimantan Timur.
    assert wita.startswith("2026-11-24 08:00 WITA – ") and wita.endswith(" WITA")
    assert utc.startswith("2026-11-24 00:00 UTC – ") and utc.endswith(" UTC")
    assert "WITA" in dom.text_of("bs-sub")


def test_legend_folds_away_on_a_phone(survey, tmp_path):
    _, page, _ = survey
    dom = load_with_script(tmp_path, page, MEASURE_PANELS, size=PHONE)
    assert dom.errors == []
    assert float(dom.attribute("body", "data-covered-legend")) <= 0.03
    assert float(dom.attribute("body", "data-covered-controls")) <= 0.08
    assert dom.paths("bs-cell") > 50                  # the map itself is all there


def test_legend_is_open_on_a_desktop(survey, tmp_path):
    _, page, _ = survey
    dom = load(tmp_path, page)
    assert dom.attribute_of("bs-legend-box", "open") is not None
    assert dom.attribute_of("bs-filters", "open") is not None


def test_layer_switches_hide_tracks_and_stretches(survey, tmp_path):
    _, page, coverage = survey
    dom = load(tmp_path, page, "#hide=tracks,segments")
    assert dom.errors == []
    assert dom.paths("bs-track") == dom.paths("bs-segment") == 0
    assert dom.paths("bs-cell") == sum(c.operator == "510-10" for c in coverage.cells)
    assert dom.paths("bs-tag") == 2


def test_unticking_a_layer_removes_it(survey, tmp_path):
    _, page, _ = survey
    dom = load_with_script(tmp_path, page, "document.getElementById('bs-layer-places').click();")
    assert dom.errors == []
    assert dom.with_class("bs-place") == 0
    assert dom.paths("bs-track") == 1


def test_operator_filter(survey, tmp_path):
    _, page, coverage = survey
    dom = load(tmp_path, page, "#operator=510-01")
    assert dom.errors == []
    assert dom.attribute("body", "data-operator") == "510-01"
    indosat = [c for c in coverage.cells if c.operator == "510-01"]
    assert sorted(c.coverage_class for c in indosat) == ["blank", "covered"]
    assert dom.paths("bs-cell") == len(indosat) == 2
    assert dom.paths("bs-blank") == 1
    assert dom.paths("bs-segment") == 1       # probe-2's, standing in its blank spot; Telkomsel's is hidden


def test_technology_switch(survey, tmp_path):
    _, page, coverage = survey
    dom = load(tmp_path, page, "#tech=NR5G-SA")
    assert dom.errors == []
    # Nobody heard 5G: only the blank cells stay, as no technology reaches them.
    blank = [c for c in coverage.cells if c.operator == "510-10" and c.coverage_class == "blank"]
    assert dom.paths("bs-cell") == dom.paths("bs-blank") == len(blank) > 0
    dom = load_with_script(tmp_path, page, "document.querySelector('input[name=bs-tech][value=LTE]').click();")
    assert dom.errors == []
    lte = [c for c in coverage.cells if c.operator == "510-10"
           and (c.coverage_class == "blank" or any(f.rat == "LTE" for f in c.by_rat))]
    assert dom.paths("bs-cell") == len(lte) and dom.attribute("body", "data-tech") == "LTE"


def test_screenshot_looks_like_a_map(survey, tmp_path):
    _, page, _ = survey
    shot = tmp_path / "map.png"
    run_chromium(tmp_path, page.as_uri(), f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"map screenshot: {shot}")


def test_error_collector_catches_script_errors(survey, tmp_path):
    """The no-error checks above mean something: a broken script does show up."""
    _, page, _ = survey
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>surelyNotDefined();</script>\n</body>"), encoding="utf-8")
    dom = load(tmp_path, broken)
    assert len(dom.errors) == 1 and "surelyNotDefined" in dom.errors[0]


def test_empty_database_gives_an_empty_map(tmp_path):
    db = survey_db(tmp_path / "empty.db", [])
    page = tmp_path / "empty.html"
    assert main(["map", "--db", db, "--out", str(page), "--tiles", "none"]) == 0
    dom = load(tmp_path, page)
    assert dom.errors == []
    assert dom.paths("bs-cell") == 0
    assert "No readings yet" in " ".join(dom.text)


def test_page_is_self_contained(survey):
    _, page, coverage = survey
    html = page.read_text(encoding="utf-8")
    dom = Dom(html)
    assert not [a for t, a in dom.elements if t in ("script", "img", "iframe") and a.get("src")]
    assert not [a for t, a in dom.elements if t == "link"]
    assert "Leaflet 1.9.4" in html and "Copyright (c) 2010-2023, Volodymyr Agafonkin" in html   # its licence, kept
    assert html.count("</script>") == html.count("<script")


def test_hostile_text_stays_text():
    """Tag messages come from the field: they are data in the page, never markup."""
    from agent.centre.report import Place
    coverage = aggregate([])
    html = render_map(map_data(coverage, [], [], [Place("</script><script>alert(1)</script>", -0.3, 116.8, "tag")]))
    assert "<script>alert(1)" not in html
