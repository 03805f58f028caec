"""The map page as ``render_map`` writes it: every placeholder of the template filled, every
coverage class titled and coloured (what the browser does with it: tests/test_map_browser.py)."""
from __future__ import annotations

import re
from importlib.resources import files

from agent.centre.coverage import CLASSES, aggregate
from agent.centre.mapview import CLASS_TITLES, map_data, render_map

PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def static(name: str) -> str:
    return files("agent.centre").joinpath("static", name).read_text(encoding="utf-8")


def test_every_placeholder_of_the_template_is_filled() -> None:
    names = set(PLACEHOLDER.findall(static("map.html")))
    assert {"TITLE", "DATA", "MAP_JS"} <= names
    page = render_map(map_data(aggregate([]), [], [], []))
    assert PLACEHOLDER.findall(page) == []


def test_every_class_has_a_title() -> None:
    assert tuple(CLASS_TITLES) == CLASSES


def test_the_pages_script_colours_and_explains_every_class() -> None:
    script = static("map.js")
    colors = re.search(r"var COLORS = \{([^}]*)\}", script).group(1)
    legend = re.search(r"var LEGEND = \[(.*?)\];", script, re.S).group(1)
    assert tuple(re.findall(r"(\w+):", colors)) == CLASSES
    assert tuple(re.findall(r'\["(\w+)"', legend)) == CLASSES
