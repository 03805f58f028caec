"""``blankspot serve`` in a real browser: headless Chromium opens the served page, which asks
the API for what the view shows, and the tests count what Leaflet drew (see
tests/support/chromium.py), at desktop and phone sizes.

A user's clicks are a script added to the served page (as tests/test_map_browser.py adds one
to the file): it waits until the page says it is ready, acts, and waits again.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.centre.cell_stats import FiguresFilter
from agent.centre.coverage import Thresholds
from agent.centre.report import parse_places_csv
from agent.centre.serve import ServeOptions
from agent.centre.store import open_store
from tests.support.chromium import MEASURE_PANELS, PHONE, Dom, run_chromium
from tests.support.served_map import indosat_unit, served
from tests.support.survey_factory import survey_db, trip_with_tags

ROUTE_PLACES = Path(__file__).resolve().parent.parent / "agent" / "sim" / "routes" / "mahakam.csv"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return survey_db(tmp_path_factory.mktemp("served") / "collector.db", trip_with_tags() + indosat_unit())


@pytest.fixture(scope="module")
def server(db):
    places = parse_places_csv(ROUTE_PLACES.read_text(encoding="utf-8"), str(ROUTE_PLACES))
    with served(db, ServeOptions(refresh_s=0, background=False, tiles=None, places=tuple(places))) as s:
        yield s


def open_page(workdir: Path, server, fragment: str = "", script: str | None = None, size=(1280, 900),
              *flags: str) -> Dom:
    """The served page as Chromium leaves it; ``script`` runs once the page is ready the first time."""
    live = server.live
    page = live.page
    if script is not None:
        live.page = page.replace(b"</body>", f"<script>{after_ready(script)}</script>\n</body>".encode())
    try:
        result = run_chromium(workdir, server.url + fragment, "--dump-dom", *flags, size=size)
    finally:
        live.page = page
    return Dom(result.stdout)


def after_ready(script: str) -> str:
    """Runs ``script`` when the page is first ready, then marks <body data-acted> once the page
    has asked the API again and drawn the answers."""
    return ("(function () { var acted = false;"
            " function ready() { return document.body.getAttribute('data-ready') === '1'; }"
            " function wait() { if (!ready()) { return setTimeout(wait, 50); }"
            f"  if (!acted) {{ acted = true; (function () {{ {script} }})(); return setTimeout(wait, 400); }}"
            "  document.body.setAttribute('data-acted', '1'); }"
            " wait(); })();")


def cells_of(db: str, operator: str, resolution: int, where: FiguresFilter = FiguresFilter()) -> list:
    with open_store(db) as store:
        return [c for c in store.coverage(resolution, Thresholds(), where).cells if c.operator == operator]


def test_served_page_draws_what_the_api_answers(server, db, tmp_path):
    dom = open_page(tmp_path, server, "#lang=id")
    assert dom.errors == []
    assert dom.attribute("body", "data-ready") == "1"
    assert dom.attribute("body", "data-operator") == "510-10"
    resolution = int(dom.attribute("body", "data-resolution"))
    telkomsel = cells_of(db, "510-10", resolution)
    assert dom.paths("bs-cell") == len(telkomsel) > 10       # the first view holds the whole survey
    assert dom.paths("bs-blank") == sum(c.coverage_class == "blank" for c in telkomsel) > 0
    assert dom.paths("bs-track") == 1
    assert dom.paths("bs-segment") == 1
    assert dom.paths("bs-tag") == 2
    assert dom.with_class("bs-place") == 8               # seven towns and the named tag
    rows = dom.spans("bs-fleet-row")
    assert [a["data-unit"] for a, _ in rows] == ["boat-1", "probe-2"]
    text = " ".join(dom.shown)
    for words in ("Peta blank spot langsung", "Armada unit", "Keterangan", "Lapisan", "Teknologi", "Hari (WITA)",
                  "Samarinda", "Tenggarong"):
        assert words in text, words
    assert "Fleet" not in text
    options = [a.get("value") for t, a in dom.elements if t == "option"]
    assert options == ["510-01", "510-10"]
    assert dom.attribute("html", "lang") == "id"


def test_language_switch_to_english(server, tmp_path):
    dom = open_page(tmp_path, server, "#lang=id", "document.querySelector('.bs-lang-button[data-lang=en]').click();")
    assert dom.errors == []
    assert dom.attribute("body", "data-acted") == "1"
    assert dom.attribute("body", "data-lang") == "en"
    text = " ".join(dom.shown)
    for words in ("Live blank-spot map", "Fleet", "Legend", "Layers", "Technology", "Days (WITA)",
                  "Blank spot: no service"):
        assert words in text, words
    assert "Armada unit" not in text
    assert dom.paths("bs-track") == 1 and dom.with_class("bs-fleet-row") == 2


def test_language_follows_the_browser(server, tmp_path):
    english = open_page(tmp_path / "en", server, "", None, (1280, 900), "--accept-lang=en-US,en")
    assert english.attribute("body", "data-lang") == "en"
    indonesian = open_page(tmp_path / "id", server, "", None, (1280, 900), "--accept-lang=id-ID,id,en")
    assert indonesian.attribute("body", "data-lang") == "id"


def test_operator_choice_asks_again(server, db, tmp_path):
    choose = ("var s = document.getElementById('bs-operator'); s.value = '510-01';"
              " s.dispatchEvent(new Event('change'));")
    dom = open_page(tmp_path, server, "#lang=en", choose)
    assert dom.errors == []
    assert dom.attribute("body", "data-acted") == "1" and dom.attribute("body", "data-operator") == "510-01"
    resolution = int(dom.attribute("body", "data-resolution"))
    assert dom.paths("bs-cell") == len(cells_of(db, "510-01", resolution)) > 0
    assert dom.paths("bs-segment") == 1          # probe-2's, in its blank spot


def test_days_and_units_filter_the_layers(server, tmp_path):
    only_probe = ("var boxes = document.querySelectorAll('.bs-unit');"
                  " boxes.forEach(function (b) { if (b.value === 'boat-1') { b.click(); } });")
    dom = open_page(tmp_path, server, "#lang=en", only_probe)
    assert dom.errors == []
    assert dom.attribute("body", "data-acted") == "1"
    assert dom.paths("bs-track") == 0 and dom.paths("bs-tag") == 0   # the boat's, left out
    later = ("var from = document.getElementById('bs-from'); from.value = '2026-11-25';"
             " from.dispatchEvent(new Event('change'));")
    dom = open_page(tmp_path, server, "#lang=en&operator=510-10", later)
    assert dom.errors == []
    assert dom.paths("bs-track") == 0 and dom.paths("bs-tag") == 0
    notice = dom.text_of("bs-notice")
    assert "Could not load" in notice and "no readings of '510-10'" in notice


def test_no_unit_ticked_draws_no_readings(server, tmp_path):
    untick = "document.querySelectorAll('.bs-unit').forEach(function (b) { b.click(); });"
    dom = open_page(tmp_path, server, "#lang=en", untick)
    assert dom.errors == []
    assert dom.paths("bs-cell") == dom.paths("bs-track") == dom.paths("bs-tag") == 0
    assert dom.text_of("bs-notice") == "No unit chosen"


def test_layer_switches(server, tmp_path):
    dom = open_page(tmp_path, server, "#lang=en&hide=cells,tracks,places")
    assert dom.errors == []
    assert dom.paths("bs-cell") == dom.paths("bs-track") == dom.with_class("bs-place") == 0
    assert dom.paths("bs-tag") == 2 and dom.paths("bs-segment") == 1


def test_technology_switch(server, db, tmp_path):
    dom = open_page(tmp_path, server, "#lang=en&tech=NR5G-SA")
    assert dom.errors == []
    # No reading on it: its cells are those of the readings without service, blank where enough.
    cells = cells_of(db, "510-10", int(dom.attribute("body", "data-resolution")), FiguresFilter(technology="NR5G-SA"))
    assert {c.coverage_class for c in cells} <= {"blank", "unknown"}
    assert dom.paths("bs-cell") == len(cells)
    assert dom.paths("bs-blank") == len([c for c in cells if c.coverage_class == "blank"]) > 0


def test_panels_fold_away_on_a_phone(server, tmp_path):
    dom = open_page(tmp_path, server, "#lang=id", MEASURE_PANELS.replace(
        "[['controls', '.bs-controls'], ['legend', '.bs-legend']]",
        "[['controls', '.bs-controls'], ['legend', '.bs-legend'], ['fleet', '.bs-fleet-panel']]"), PHONE)
    assert dom.errors == []
    assert float(dom.attribute("body", "data-covered-legend")) <= 0.03
    assert float(dom.attribute("body", "data-covered-controls")) <= 0.08
    assert float(dom.attribute("body", "data-covered-fleet")) <= 0.03
    assert dom.attribute_of("bs-fleet-box", "open") is None
    assert dom.paths("bs-cell") > 10


def test_fleet_times_in_wita_with_utc_on_hover(tmp_path):
    from datetime import datetime, timezone

    moment = datetime(2026, 11, 24, 23, 30, tzinfo=timezone.utc)
    copy = survey_db(tmp_path / "units.db", trip_with_tags()[:40])
    with open_store(copy) as writer:
        writer.update_unit("boat-1", "online", moment, {"state": "online", "backlog": {"pending": 12}})
    with served(copy) as s:
        dom = open_page(tmp_path, s, "#lang=en")
    assert dom.errors == []
    times = [(a["title"], text) for a, text in dom.spans("bs-time")]
    assert ("2026-11-24 23:30 UTC", "2026-11-25 07:30 WITA") in times
    row = [text for a, text in dom.spans("bs-fleet-row")]
    assert len(row) == 1
    assert "12" in " ".join(dom.shown)
