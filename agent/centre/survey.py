"""The survey a collector's database holds: its readings, the SIMs' home operators and the
coverage grid, read once for the map, the report and the export.

Every pass over the stored readings goes through :attr:`Survey.readings`, which skips a row
that does not decode (one bad row must not cost the whole map) and counts it once.  The
survey reads a store it is given and never closes it: whoever opened the store closes it.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent.centre.coverage import Attributed, HomeOperators, Thresholds, aggregate, attribute
from agent.centre.mapview import MapOptions, map_data, render_map
from agent.centre.report import tagged_places
from agent.centre.segments import segments, tracks
from agent.centre.store.base import Store
from agent.centre.stored_readings import StoredReadings

# Units in the field install without the grid library; only the central side needs it.
NEEDS_H3 = "the coverage grid needs h3: pip install 'blankspot[collector]'"


class UnknownOperator(LookupError):
    """No stored reading is of the operator asked for; ``known`` maps each one seen to its name."""

    def __init__(self, text: str, known: dict[str, str]) -> None:
        self.text = text
        self.known = known
        names = ", ".join(f"{key} ({name})" for key, name in known.items()) or "none yet"
        super().__init__(f"no readings of operator {text!r}; operators: {names}")


class Survey:
    """The readings of ``store`` on an H3 grid of ``resolution``, classed by ``thresholds``.

    Reads the whole store when made (twice: the home operators first, then the grid); a
    ``StoreError``, or ``ModuleNotFoundError`` for h3 where the grid library is missing,
    passes through.
    """

    def __init__(self, store: Store, resolution: int, thresholds: Thresholds) -> None:
        self.store = store
        self.readings = StoredReadings.of(store)
        self.home = HomeOperators.learn(self.readings.iter_readings(kind="signal"))
        self.coverage = aggregate(self.readings.iter_readings(), home=self.home, resolution=resolution,
                                  thresholds=thresholds)

    def attributed(self) -> Iterator[Attributed]:
        """Each stored reading with the operator its figures count for (one more pass)."""
        return attribute(self.readings.iter_readings(), self.home)

    def summary(self) -> str | None:
        """One line naming the stored readings skipped so far, or None when none were."""
        return self.readings.summary()

    def operator(self, text: str | None) -> str | None:
        """The operator key ``text`` names (``510-10`` or ``Telkomsel``, any case); None for None.

        Raises :class:`UnknownOperator` when no stored reading is of that operator.
        """
        if text is None:
            return None
        key = self.coverage.find_operator(text)
        if key is None:
            raise UnknownOperator(text, dict(self.coverage.operators))
        return key


def map_page(survey: Survey, options: MapOptions = MapOptions()) -> tuple[str, dict[str, Any]]:
    """The blank-spot map of ``survey``: the HTML page, and the data embedded in it."""
    readings = survey.readings
    data = map_data(survey.coverage, tracks(readings.iter_readings()), segments(survey.attributed()),
                    tagged_places(readings.iter_readings(kind="event"), named_only=False), options)
    return render_map(data), data
