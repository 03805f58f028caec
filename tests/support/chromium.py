"""Headless Chromium for the tests of the map page, offline and served: no driver library.

Chromium's ``--dump-dom`` gives the DOM after the page's scripts ran; :class:`Dom` reads it:
the elements, their text and the page's own error list ``#bs-errors``.  Needs Debian's
``chromium`` (``apt-get install -y chromium``, as deploy/quickstart.sh does).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is needed to test the HTML map and is not installed: apt-get install -y chromium "
                "(deploy/quickstart.sh installs it)")


DESKTOP = (1280, 900)
PHONE = (390, 844)


def run_chromium(workdir: Path, url: str, *flags: str, size: tuple[int, int] = DESKTOP) -> subprocess.CompletedProcess:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        "--hide-scrollbars", f"--user-data-dir={workdir / 'chromium-profile'}", f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=5000", *flags, url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result


class Dom(HTMLParser):
    """The elements of a dumped DOM (tag, attributes) and the text of ``#bs-errors``."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.errors_text = ""
        self._in_errors = False
        self.text: list[str] = []
        self.shown: list[str] = []     # the text outside <script> and <style>
        self._hidden_in: str | None = None
        self._texts: dict[int, str] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        self._in_errors = attributes.get("id") == "bs-errors"
        if tag in ("script", "style"):
            self._hidden_in = tag

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_errors = False
        if tag == self._hidden_in:
            self._hidden_in = None

    def handle_data(self, data):
        if self.elements:
            last = len(self.elements) - 1
            self._texts[last] = self._texts.get(last, "") + data
        if self._in_errors:
            self.errors_text += data
        self.text.append(data)
        if self._hidden_in is None:
            self.shown.append(data)

    def paths(self, css_class: str) -> int:
        return sum(1 for tag, a in self.elements if tag == "path" and css_class in a.get("class", "").split())

    def with_class(self, css_class: str) -> int:
        return sum(1 for _, a in self.elements if css_class in a.get("class", "").split())

    def spans(self, css_class: str) -> list[tuple[dict[str, str], str]]:
        """Each element of ``css_class`` with its own text (elements without children)."""
        return [(a, self._texts.get(i, "")) for i, (_, a) in enumerate(self.elements)
                if css_class in a.get("class", "").split()]

    def text_of(self, css_class: str) -> str:
        return next(text for a, text in self.spans(css_class))

    def attribute_of(self, element_id: str, name: str) -> str | None:
        return next((a.get(name) for _, a in self.elements if a.get("id") == element_id), None)

    def attribute(self, tag: str, name: str) -> str | None:
        return next((a.get(name) for t, a in self.elements if t == tag and name in a), None)

    @property
    def errors(self) -> list[str]:
        return json.loads(self.errors_text)


def click(selector: str) -> str:
    """Script: a click in the middle of the first element ``selector`` matches."""
    return (f"(function () {{ var el = document.querySelector({json.dumps(selector)});"
            "var box = el.getBoundingClientRect();"
            "var at = {bubbles: true, cancelable: true, clientX: box.left + box.width / 2,"
            " clientY: box.top + box.height / 2};"
            "el.dispatchEvent(new MouseEvent('mousedown', at)); el.dispatchEvent(new MouseEvent('mouseup', at));"
            "el.dispatchEvent(new MouseEvent('click', at)); })();")


# Script: the share of the map each panel covers, written on <body> as data-covered-<panel>.
MEASURE_PANELS = (
    "(function () { var map = document.getElementById('map').getBoundingClientRect();"
    "[['controls', '.bs-controls'], ['legend', '.bs-legend']].forEach(function (p) {"
    " var box = document.querySelector(p[1]).getBoundingClientRect();"
    " document.body.setAttribute('data-covered-' + p[0], String(box.width * box.height / (map.width * map.height)));"
    "}); })();")
