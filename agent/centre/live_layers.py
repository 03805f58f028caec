"""Tracks, stretches without service and tagged spots for the served map, from whatever the store offers.

A store that keeps them as readings arrive says so (``store.keeps_tracks()``) and answers
``tracks(zoom, where)``, ``segments(where)`` and ``tags(where)`` itself: those are asked per
request.  Otherwise they come from one :class:`~agent.centre.survey.Survey` pass over every
stored reading, kept in memory against the data's version; a newer version is read by a
pass on its own connection, in the background, while requests are answered from the last
pass (the answer says when that was).  Only the first pass makes a request wait.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Hashable, TypeVar

from agent.centre.cell_stats import FiguresFilter
from agent.centre.coverage import Thresholds
from agent.centre.live_answers import ServedLayers, View, served_layers, served_track
from agent.centre.mapview import FINEST_TRACK_ZOOM, MIN_TRACK_ZOOM
from agent.centre.store.base import Store

log = logging.getLogger(__name__)

T = TypeVar("T")


def keeps_tracks(store: Store) -> bool:
    """Whether ``store`` keeps tracks, stretches and tags itself (schema step 5 on, and figures
    not stale: the stretches follow what each reading counts for)."""
    return store.keeps_tracks() and store.figures_stale() is None


def figures_filter(view: View) -> FiguresFilter:
    return FiguresFilter(days=view.days, devices=view.devices, area=view.area)


LAYERS = ("tracks", "segments", "tags")


def kept_layers(store: Store, view: View, operator_names: dict[str, str],
                layers: Sequence[str] = LAYERS) -> ServedLayers:
    """The ``layers`` of the view (the others left empty: a request asks for one) as a store
    that keeps them answers (see the module docstring)."""
    where = figures_filter(view)
    zoom = min(max(view.zoom, MIN_TRACK_ZOOM), FINEST_TRACK_ZOOM)  # the zooms lines are kept for
    # The store gives the lines simplified for the zoom already: served as they are.
    tracks = [served_track(t, simplified=True) for t in store.tracks(zoom, where) if t.points] \
        if "tracks" in layers else []
    return served_layers(tracks, store.segments(where, zoom) if "segments" in layers else [],
                         store.tags(where) if "tags" in layers else [], operator_names, zoom)


def surveyed_layers(store: Store, operator_names: dict[str, str]) -> ServedLayers:
    """Every track, stretch and tag from one pass over the stored readings of ``store``."""
    from agent.centre.survey import Survey

    survey = Survey(store, 8, Thresholds(), tracks=served_track, cells=False)
    tracks = survey.tracks
    layers = served_layers(tracks, survey.segments, survey.tags, operator_names)
    if summary := survey.summary():
        log.warning("served layers: %s", summary)
    return layers


@dataclass(frozen=True)
class Kept(Generic[T]):
    version: Hashable
    value: T
    made: float        # time.time() when it was made
    took_s: float


class Refreshing(Generic[T]):
    """One value (the layers, a grid) made by ``make()`` for a data version: the first :meth:`get` makes it; a
    later one with a newer version starts a remake in the background and answers the kept
    value meanwhile.  ``make`` runs on at most one thread at a time."""

    def __init__(self, make: Callable[[], T], background: bool = True, name: str = "served layers") -> None:
        self._make = make
        self.name = name
        self._background = background
        self._lock = threading.Lock()
        self._making = threading.Lock()
        self._kept: Kept[T] | None = None
        self._wanted: Hashable = None
        self._worker: threading.Thread | None = None
        self.failures = 0

    def _run(self, version: Hashable) -> Kept[T]:
        with self._making:
            kept = self._kept
            if kept is not None and kept.version == version:
                return kept
            started = time.perf_counter()
            value = self._make()
            kept = Kept(version, value, time.time(), time.perf_counter() - started)
            with self._lock:
                self._kept = kept
            log.info("%s made in %.2f s", self.name, kept.took_s)
            return kept

    def _in_background(self, version: Hashable) -> None:
        try:
            self._run(version)
        except Exception:  # the next request tries again; the kept value stays meanwhile
            self.failures += 1
            log.exception("making %s failed", self.name)

    def get(self, version: Hashable) -> Kept[T]:
        with self._lock:
            kept = self._kept
            if kept is not None and kept.version == version:
                return kept
            if kept is not None and self._background:
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._in_background, args=(version,),
                                                    name=f"blankspot-serve {self.name}", daemon=True)
                    self._worker.start()
                return kept
        return self._run(version)

    def wait(self, timeout: float | None = None) -> None:
        """Until a background remake (if any) is done: for tests and the benchmark."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)


def layer_source(open_reader: Callable[[], Store], names: Callable[[], dict[str, str]],
                 background: bool = True) -> Refreshing[ServedLayers]:
    """The survey-made layers, each pass on its own connection from ``open_reader``."""
    def make() -> ServedLayers:
        store = open_reader()
        try:
            return surveyed_layers(store, names())
        finally:
            store.close()

    return Refreshing(make, background)


def as_of(kept: Kept[Any]) -> dict[str, Any]:
    from datetime import datetime, timezone

    from agent.shared.reading import format_time

    return {"as_of": format_time(datetime.fromtimestamp(kept.made, timezone.utc)), "took_s": round(kept.took_s, 3)}
