"""The survey a collector's database holds, for the map, the report and the export.

Where the database keeps them (schema steps 4 and 5, up to date), the cells, the tracks as
the map draws them, the blank-spot segments and the tagged spots are read from what the
collector keeps, and no reading is read.  Otherwise, and for what is per reading by nature
(the export's points and whole tracks), one pass over the stored readings, in device and
seq order, decodes each reading once and hands it to everything the commands draw from it:
the SIMs' home operators, the coverage grid, the tracks, the blank-spot segments and the
tagged spots.  Only the results are kept
(the grid's figures, each track piece as its user needs it, the segments, the tags), never
the readings.  The home operators are learnt as the pass goes; what a reading before its unit's first ``home``
registration counts for is told ahead by one small query on the rows' columns
(``Store.first_home_signals``).

The pass goes through :attr:`Survey.readings`, which skips a row that does not decode (one
bad row must not cost the whole map) and counts it once.  The survey reads a store it is
given and never closes it: whoever opened the store closes it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from agent.centre.cell_stats import STATS_RESOLUTION, FiguresFilter
from agent.centre.coverage import Attributed, Attribution, Coverage, Grid, HomeOperators, Thresholds, attribute
from agent.centre.export import Layers
from agent.centre.mapview import (
    FINEST_TRACK_ZOOM, MIN_TRACK_ZOOM, TRACK_BUDGET, MapOptions, drawn_track, kept_track, map_data, render_map,
    track_zoom,
)
from agent.centre.report import Place, tagged_place
from agent.centre.segments import Segment, SegmentFinder, Track, TrackBuilder
from agent.centre.store.base import Store
from agent.centre.stored_readings import SkippedRow, StoredReadings
from agent.shared.reading import Signal

# Units in the field install without the grid library; only the central side needs it.
NEEDS_H3 = "the coverage grid needs h3: pip install 'blankspot[collector]'"

T = TypeVar("T")
# Readings between two calls of a survey's ``progress``: rare enough to cost nothing per reading.
PROGRESS_EVERY = 10_000


class UnknownOperator(LookupError):
    """No stored reading is of the operator asked for; ``known`` maps each one seen to its name."""

    def __init__(self, text: str, known: dict[str, str]) -> None:
        self.text = text
        self.known = known
        names = ", ".join(f"{key} ({name})" for key, name in known.items()) or "none yet"
        super().__init__(f"no readings of operator {text!r}; operators: {names}")


def whole_track(track: Track) -> Track:
    """Keeps a track piece as it is, every point (what the export writes)."""
    return track


class Survey:
    """The readings of ``store`` on an H3 grid of ``resolution``, classed by ``thresholds``.

    Nothing is read when it is made.  The one pass runs when a result is first asked for
    (:attr:`coverage`, :attr:`tracks`, :attr:`segments`, :attr:`tags`), or as the caller
    takes the items of the first :meth:`attributed`.  ``tracks`` is what is kept of each
    track piece as the pass completes it: by default what the map draws of it
    (:func:`~agent.centre.mapview.drawn_track`), :func:`whole_track` for the export, None for
    nothing (the report draws no track).  ``cells=False`` leaves the grid out (no
    :attr:`coverage`): what needs no grid then needs no h3 either.  ``progress``, when given,
    is called with the number of readings read so far every :data:`PROGRESS_EVERY` readings,
    and while the kept tracks are brought up to date with what arrived since the collector's
    last refresh.
    ``track_budget`` is the points of track the map holds (:func:`~agent.centre.mapview.fit_tracks`).
    A ``StoreError``, or ``ModuleNotFoundError`` for h3 where the grid library is missing,
    passes through.

    ``where`` chooses WITA days, units and a radio technology: the cells are those of its
    figures (:meth:`Store.coverage`, or the pass's grid of the readings it takes); the tracks,
    stretches without service and tags are those of its units and days (every technology:
    a track is where a unit went); :meth:`attributed` gives the readings it takes.  Its area
    is asked of the kept figures only.
    """

    def __init__(self, store: Store, resolution: int, thresholds: Thresholds, *,
                 tracks: Callable[[Track], Any] | None = drawn_track, cells: bool = True,
                 progress: Callable[[int], None] | None = None,
                 warn: Callable[[str], None] = lambda _text: None, where: FiguresFilter = FiguresFilter(),
                 track_budget: int = TRACK_BUDGET) -> None:
        self.store = store
        self.where = where
        self.track_budget = track_budget  # points of track the map may hold
        self._progress = progress
        self.warn = warn  # told, once, when the kept figures are stale and the pass draws the grid
        self.readings = StoredReadings.of(store)
        self.resolution = resolution
        self.thresholds = thresholds
        self.home = HomeOperators()
        self._track_view = tracks
        self._cells = cells
        self._tracks: list[Any] = []
        self._segments: list[Segment] = []
        self._tags: list[Place] = []
        self._pass: Iterator[Attributed] | None = None
        self._coverage: Coverage | None = None
        self._stale: str | None = None  # why the kept figures are out of date ("" when they are not), once read
        self._kept: bool | None = None  # whether the kept tracks, segments and tags can be read, once asked
        self.track_zoom = FINEST_TRACK_ZOOM  # the zoom the map's track pieces are simplified for
        self._read: set[str] = set()  # the results read from what the collector keeps
        self._whole_segments: list[Segment] = []
        self.segments_simplified = False  # whether segments are simplified for the map's track_zoom
        self._names: dict[str, str] | None = None  # operator names of the kept figures, once read

    def attributed(self) -> Iterator[Attributed]:
        """Each stored reading with the operator its figures count for.

        The first call gives the survey's one pass: every result is filled as its items are
        taken.  A later call reads the store again.
        """
        if self._pass is None:
            self._pass = self._scan()
            return self._pass
        self._complete()
        return (item for item in attribute(self.readings.iter_readings(), self.home)
                if self.where.takes_reading(item.reading))

    def _scan(self) -> Iterator[Attributed]:
        # The pass draws the grid only where the kept figures cannot (said before it starts).
        drawn = self._cells and self._coverage is None and not self._figures_usable()
        for device, _seq, mcc, mnc, operator in self.store.first_home_signals():
            self.home.expect_first(device, Signal(registration="home", operator=operator, mcc=mcc, mnc=mnc))
        # The accumulators live only as long as the pass: their figures go once the results are made.
        attribution = Attribution(self.home)
        grid = Grid(self.resolution) if drawn else None
        kept = self._kept_usable()
        tracks = TrackBuilder() if self._track_view is not None and not self._kept_drawn() else None
        segments = SegmentFinder() if not kept else None
        done = 0
        where = self.where
        everything = where.everything
        for reading in self.readings.iter_readings():
            done += 1
            if self._progress is not None and done % PROGRESS_EVERY == 0:
                self._progress(done)
            # Every reading is attributed: what one counts for depends on its unit's others.
            self.home.add(reading)
            item = attribution(reading)
            if not everything and not where.takes_unit_and_day(reading):
                continue
            taken = everything or where.takes_reading(reading)
            if grid is not None and taken:
                grid.add(item)
            if tracks is not None and (track := tracks.add(reading)) is not None:
                self._keep(track)
            if segments is not None:
                if (segment := segments.add(item)) is not None:
                    self._segments.append(segment)
                if (place := tagged_place(reading)) is not None:
                    self._tags.append(place)
            if taken:
                yield item
        if tracks is not None and (track := tracks.finish()) is not None:
            self._keep(track)
        if segments is not None and (segment := segments.finish()) is not None:
            self._segments.append(segment)
        if grid is not None:
            self._coverage = grid.coverage(self.home, self.thresholds)

    def _figures_usable(self) -> bool:
        """Whether the kept figures can draw this grid; when they are out of date, says so (once)."""
        if not (self.store.keeps_figures() and self.resolution <= STATS_RESOLUTION):
            return False
        if self._stale is None:
            self._stale = self.store.figures_stale() or ""
            if self._stale:
                self.warn(f"the kept coverage figures are out of date ({self._stale}); the cells are drawn from"
                          " every stored reading until 'blankspot aggregate --rebuild' computes them again")
        return not self._stale

    def _kept_usable(self) -> bool:
        """Whether the tracks, segments and tags the collector keeps can be read: kept, and
        the figures whose operators the segments follow are up to date."""
        if self._kept is None:
            self._kept = self.store.keeps_tracks() and self.store.figures_stale() is None
            if self._kept:
                # What readings since the collector's last refresh changed is read here, told.
                self.store.refresh_tracks(progress=self._progress)
        return self._kept

    def _read_kept(self, result: str) -> None:
        """After ``result`` is read from what the collector keeps: the rows left out of it
        count as skipped, as the pass would have skipped them."""
        if not self._read:
            for device, seq, reason in self.store.unreadable_rows():
                self.readings.skip(SkippedRow(device, seq, reason))
        self._read.add(result)

    def _where_went(self) -> FiguresFilter:
        """What of ``where`` chooses tracks, stretches and tags: its days and units (a track is
        where a unit went, on every technology)."""
        return FiguresFilter(days=self.where.days, devices=self.where.devices)

    def _kept_drawn(self) -> bool:
        """Whether the tracks are read as the map draws them from what the collector keeps."""
        return self._track_view is drawn_track and self._kept_usable()

    def _keep(self, track: Track) -> None:
        assert self._track_view is not None
        self._tracks.append(self._track_view(track))

    def _complete(self) -> None:
        if self._pass is None:
            self._pass = self._scan()
        for _ in self._pass:  # what the caller of attributed() left, if anything
            pass

    @property
    def coverage(self) -> Coverage:
        """The grid: from the figures the collector keeps, without reading a reading, where the
        database keeps them, they are up to date and fine enough for the resolution; else from
        the pass."""
        if not self._cells:
            raise ValueError("this survey was made without cells")
        if self._coverage is not None:
            return self._coverage
        if self._figures_usable():
            self._coverage = self.store.coverage(self.resolution, self.thresholds, self.where)
            return self._coverage
        self._complete()
        assert self._coverage is not None
        return self._coverage

    @property
    def tracks(self) -> list[Any]:
        """Each unit's track in pieces, each as the ``tracks`` function the survey was made with kept it.

        For the map (the default ``tracks``) from the pieces the collector keeps, where it
        does: simplified for the finest zoom at which they fit in the map's track budget
        (:attr:`track_zoom`), as the map would simplify them."""
        if self._kept_drawn():
            if "tracks" not in self._read:
                self.track_zoom = track_zoom(self.store.track_costs(), self.track_budget)
                self._tracks = [kept_track(track) for track in self.store.tracks(self.track_zoom, self._where_went())]
                self._read_kept("tracks")
            return self._tracks
        self._complete()
        return self._tracks

    @property
    def segments(self) -> list[Segment]:
        """The blank-spot segments along the tracks, as the map and the report use them: from
        what the collector keeps, where it does, simplified for the map's :attr:`track_zoom`
        (:attr:`segments_simplified`; without tracks, for the coarsest zoom: the report needs
        only their lengths); else every point."""
        if self._kept_usable():
            if "segments" not in self._read:
                if self._kept_drawn():
                    _ = self.tracks  # they give the zoom the map is drawn for
                    zoom = self.track_zoom
                elif self._track_view is None:
                    zoom = MIN_TRACK_ZOOM  # no map: what is read of them is their length
                else:
                    return self.whole_segments
                self._segments = self.store.segments(self._where_went(), zoom=zoom)
                self.segments_simplified = True
                self._read_kept("segments")
            return self._segments
        self._complete()
        return self._segments

    @property
    def whole_segments(self) -> list[Segment]:
        """The blank-spot segments with every point (what the export writes)."""
        if self._kept_usable():
            if "whole segments" not in self._read:
                self._whole_segments = self.store.segments(self._where_went())
                self._read_kept("whole segments")
            return self._whole_segments
        self._complete()
        return self._segments

    @property
    def tags(self) -> list[Place]:
        """Every tagged spot with a position, with a name or not."""
        if self._kept_usable():
            if "tags" not in self._read:
                self._tags = self.store.tags(self._where_went())
                self._read_kept("tags")
            return self._tags
        self._complete()
        return self._tags

    def summary(self) -> str | None:
        """One line naming the stored readings skipped so far, or None when none were: by the
        pass, or, for what was read from what the collector keeps, left out of it."""
        return self.readings.summary()

    def operator_name(self, key: str) -> str:
        """The name people know an operator key by, as the grid names its cells' operators:
        as the pass learnt it, or, without a pass, as the kept figures know it."""
        if self._pass is None and self._figures_usable():
            if self._names is None:
                self._names = self.store.operator_names()
            return self._names.get(key) or self.home.name(key)
        return self.home.name(key)

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


def map_page(survey: Survey, options: MapOptions = MapOptions(), places: Iterable[Place] = ()
             ) -> tuple[str, dict[str, Any]]:
    """The blank-spot map of ``survey`` (made with the default ``tracks``): the HTML page, and the data embedded in it.

    ``places`` (a places file's towns and villages) are written on it by name, as the tagged
    spots are by their message.
    """
    tracks, segments = survey.tracks, survey.segments
    data = map_data(survey.coverage, tracks, segments, survey.tags, options, places=places,
                    track_budget=survey.track_budget, track_zoom=survey.track_zoom,
                    segments_simplified=survey.segments_simplified)
    return render_map(data), data


def export_layers(survey: Survey, what: tuple[str, ...]) -> Layers:
    """The layers ``what`` names, from the survey's one pass (made with ``tracks=whole_track``
    when ``what`` has tracks): the points stream out as the pass reads them, and the tracks,
    segments and cells it fills are written after them."""
    def after(results: Callable[[], Iterable[T]]) -> Iterator[T]:
        yield from results()  # a generator: asks for the results only when its layer is written

    return Layers(points=survey.attributed() if "points" in what else (),
                  tracks=after(lambda: survey.tracks), segments=after(lambda: survey.whole_segments),
                  coverage=lambda: survey.coverage, what=what, operator_names=survey.operator_name)
