"""``blankspot serve``: the collector's database behind an HTTP server, as a live map.

:class:`LiveMap` holds what the answers are made from (one read-only store, the grids made
from the kept figures, the layers, the answers already given) and answers a path and its
query; :func:`make_server` puts it behind a :class:`~http.server.ThreadingHTTPServer` with
the login.  Routes (all GET)::

    /                  the page (agent/centre/static, in its live mode)
    /api/overview      operators, technologies, units, days and bounds of the data
    /api/cells         ?bbox=S,W,N,E&zoom=Z&operator=510-10&tech=LTE&from=DAY&to=DAY&units=a,b
    /api/tracks        ?bbox&zoom&from&to&units
    /api/segments      ?bbox&zoom&operator&from&to&units   stretches without service
    /api/tags          ?bbox&zoom&from&to&units
    /api/places        ?bbox                                 the --places file and named tags
    /api/fleet         units, last seen, backlog, holes
    /healthz           no login: 200 and JSON while the database can be read, else 503
    /metrics           Prometheus text format

Every answer is kept in memory under the request and the data's version (the collectors'
counters, which every commit moves, and whether the figures are stale); the version is
asked at most every ``refresh_s`` seconds, so a map left open on a busy collector redraws
from the database that often at most.  The store is used by one request at a time.
"""
from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agent.centre.cell_stats import FiguresFilter
from agent.centre.choices import SERVE_PORT
from agent.centre.coverage import Coverage, Thresholds
from agent.centre.fleet import fleet
from agent.centre.live_answers import (
    QueryError, ServedGrid, View, bounds_of, cells_answer, days_of, fleet_answer, parse_view,
    places_answer, resolution_for_zoom, segments_answer, served_grid, tags_answer, tracks_answer,
)
from agent.centre.live_layers import Refreshing, as_of, keeps_tracks, kept_layers, layer_source
from agent.centre.mapview import MAHAKAM_CENTER, OSM_ATTRIBUTION, OSM_TILES, place_labels, render_map
from agent.centre.report import Place
from agent.centre.serve_login import Login
from agent.centre.serve_status import Facts, RequestStats, health, metrics_text
from agent.centre.store.base import Store, StoreError

log = logging.getLogger(__name__)

DEFAULT_PORT = SERVE_PORT
DEFAULT_REFRESH_S = 30.0
ANSWERS_KEPT = 512
GRIDS_KEPT = 24
ROUTES = ("/", "/api/overview", "/api/cells", "/api/tracks", "/api/segments", "/api/tags", "/api/places",
          "/api/fleet", "/healthz", "/metrics")


DEFAULT_TITLES = ("Peta blank spot langsung", "Live blank-spot map")


@dataclass(frozen=True)
class ServeOptions:
    title: str = " / ".join(DEFAULT_TITLES)
    tiles: str | None = OSM_TILES
    tiles_attribution: str = OSM_ATTRIBUTION
    thresholds: Thresholds = Thresholds()
    refresh_s: float = DEFAULT_REFRESH_S
    places: tuple[Place, ...] = ()
    background: bool = True     # remake grids and layers in the background (False: at once, for tests)


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(data: Any, status: int = 200) -> Answer:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return Answer(status, "application/json; charset=utf-8", body)


def error_answer(status: int, message: str) -> Answer:
    return json_answer({"error": message}, status)


@dataclass
class _Version:
    value: Hashable = None
    asked: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


class LiveMap:
    """The answers of the served map (see the module docstring); no HTTP in here."""

    def __init__(self, open_reader: Callable[[], Store], options: ServeOptions = ServeOptions(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._open_reader = open_reader
        self._clock = clock
        self.store = open_reader()
        self._store_lock = threading.RLock()
        self._version = _Version()
        self._grids: OrderedDict[Hashable, Refreshing[tuple[ServedGrid, Coverage]]] = OrderedDict()
        self._grids_lock = threading.Lock()
        self._answers: OrderedDict[Hashable, Answer] = OrderedDict()
        self._answers_lock = threading.Lock()
        self.stats = RequestStats()
        self.kept_tracks = keeps_tracks(self.store)
        self._layers: Refreshing | None = None if self.kept_tracks else \
            layer_source(open_reader, lambda: self._names(), options.background)
        self._place_labels = place_labels(options.places)
        self.page = render_map(self._page_data()).encode("utf-8")

    def close(self) -> None:
        with self._store_lock:
            self.store.close()

    # -- the data's version ------------------------------------------------------------------

    def version(self) -> Hashable:
        """The collectors' counters, the figures' state and whether the kept tracks follow the
        readings; asked at most every refresh_s."""
        v = self._version
        with v.lock:
            now = self._clock()
            if v.value is None or now - v.asked >= self.options.refresh_s:
                with self._store_lock:
                    counters = self.store.counters()
                    stale = self.store.figures_stale()
                    # The collector computes the kept tracks after a quiet moment, after its counters moved.
                    tracks = self.store.tracks_up_to_date() if self.kept_tracks else None
                v.value = (tuple(sorted((c, tuple(sorted(n.items()))) for c, n in counters.items())), stale, tracks)
                v.asked = now
            return v.value

    # -- grids from the kept figures --------------------------------------------------------

    def grid(self, resolution: int, days: tuple[str, str] | None, devices: frozenset[str] | None,
             version: Hashable, technology: str | None = None) -> tuple[ServedGrid, Coverage, bool]:
        """The grid of ``resolution``, days, units and radio technology, and whether it is of
        ``version``: a grid of older data is answered while the newer one is summed in the background."""
        key = (resolution, days, devices, technology)
        with self._grids_lock:
            holder = self._grids.get(key)
            if holder is None:
                holder = self._grids[key] = Refreshing(lambda: self._make_grid(resolution, days, devices, technology),
                                                       self.options.background, f"grid {key}")
            self._grids.move_to_end(key)
            while len(self._grids) > GRIDS_KEPT:
                self._grids.popitem(last=False)
        kept = holder.get(version)
        return kept.value[0], kept.value[1], kept.version == version

    def _make_grid(self, resolution: int, days: tuple[str, str] | None, devices: frozenset[str] | None,
                   technology: str | None) -> tuple[ServedGrid, Coverage]:
        # On a connection of its own: a long sum does not hold up the other requests.
        store = self._open_reader()
        try:
            if not store.keeps_figures():
                raise StoreError("this database keeps no coverage figures: upgrade it by starting the collector")
            stale = store.figures_stale()
            if stale:
                raise StoreError(f"the kept coverage figures are out of date ({stale}): run 'blankspot aggregate"
                                 " --db URL --rebuild' (the served map only reads)")
            where = FiguresFilter(days=days, devices=devices, technology=technology)
            coverage = store.coverage(resolution, self.options.thresholds, where)
        finally:
            store.close()
        return served_grid(coverage), coverage

    def warm(self) -> threading.Thread:
        """Start making what the first page view asks for (the whole grid at resolution 8 and
        the layers) in the background, so that the first visitor does not wait for them."""
        def work() -> None:
            for path, query in (("/api/overview", ""), ("/api/tracks", "zoom=11")):
                answer = self.answer(path, query)
                if answer.status != 200:
                    log.warning("preparing %s: %s", path, answer.body.decode("utf-8", "replace"))

        thread = threading.Thread(target=work, name="blankspot-serve warm", daemon=True)
        thread.start()
        return thread

    def settle(self, timeout: float | None = None) -> None:
        """Until the grids and layers being made in the background are done (tests, benchmark)."""
        with self._grids_lock:
            holders: list[Refreshing[Any]] = list(self._grids.values())
        for holder in holders + ([self._layers] if self._layers is not None else []):
            holder.wait(timeout)

    def _names(self) -> dict[str, str]:
        """Operator names for the stretches' popups; none while the figures cannot be read."""
        try:
            return dict(self.grid(8, None, None, self.version())[1].operators)
        except StoreError:
            return {}

    # -- answers ----------------------------------------------------------------------------

    def answer(self, path: str, query: str) -> Answer:
        """The answer to a GET of ``path`` with ``query`` (the login is checked before)."""
        if path == "/":
            return Answer(200, "text/html; charset=utf-8", self.page, (("Cache-Control", "no-cache"),))
        if path == "/healthz":
            return self.healthz()
        if path == "/metrics":
            return Answer(200, "text/plain; version=0.0.4; charset=utf-8",
                          metrics_text(self.facts(), self.stats, datetime.now(timezone.utc)).encode("utf-8"))
        handler = {
            "/api/overview": self._overview, "/api/cells": self._cells, "/api/tracks": self._tracks,
            "/api/segments": self._segments, "/api/tags": self._tags, "/api/places": self._places,
            "/api/fleet": self._fleet,
        }.get(path)
        if handler is None:
            return error_answer(404, f"no such page: {path} (the API is under /api/: overview, cells, tracks, "
                                     "segments, tags, places, fleet)")
        params = parse_qs(query, keep_blank_values=True)
        try:
            version = self.version()
            key = (version, path, tuple(sorted((k, tuple(v)) for k, v in params.items())))
            with self._answers_lock:
                kept = self._answers.get(key)
                if kept is not None:
                    self._answers.move_to_end(key)
                    return kept
            made, keep = handler(params, version)
        except QueryError as exc:
            return error_answer(400, str(exc))
        except StoreError as exc:
            log.warning("%s: %s", path, exc)
            return error_answer(503, str(exc))
        answer = json_answer(made)
        if keep:
            with self._answers_lock:
                self._answers[key] = answer
                while len(self._answers) > ANSWERS_KEPT:
                    self._answers.popitem(last=False)
        return answer

    def _overview(self, params: dict[str, list[str]], version: Hashable) -> tuple[Any, bool]:
        parse_view(params, allowed=())
        grid, coverage, fresh = self.grid(8, None, None, version)
        with self._store_lock:
            units = [u["device"] for u in fleet_answer(fleet(self.store), datetime.now(timezone.utc))["units"]]
        return {
            "operators": [{"key": k, "name": n, "samples": grid.samples.get(k, 0)} for k, n in grid.operators.items()],
            "default_operator": grid.default_operator, "technologies": list(grid.technologies),
            "units": units, "days": days_of(coverage), "bounds": bounds_of(grid),
            "layers": "kept" if self.kept_tracks else "survey", "refresh_s": self.options.refresh_s,
            "resolutions": {str(z): resolution_for_zoom(z) for z in range(0, 23)},
        }, fresh

    def _cells(self, params: dict[str, list[str]], version: Hashable) -> tuple[Any, bool]:
        view = parse_view(params)
        grid, _, fresh = self.grid(view.resolution, view.days, view.devices, version, view.technology)
        # An answer from a grid older than the data is not kept: the next one may be newer.
        return cells_answer(grid, view), fresh

    def _layers_of(self, view: View, version: Hashable, layer: str) -> tuple[Any, dict[str, Any], bool]:
        if self.kept_tracks:
            # The names first (the stretches' popups): they ask the version, which takes the
            # store after its own lock.
            names = self._names() if layer == "segments" else {}
            with self._store_lock:
                return kept_layers(self.store, view, names, (layer,)), {"layers": "kept"}, True
        assert self._layers is not None
        kept = self._layers.get(version)
        # An answer from layers older than the data is not kept: the next one may be newer.
        return kept.value, {"layers": "survey", **as_of(kept)}, kept.version == version

    def _tracks(self, params: dict[str, list[str]], version: Hashable) -> tuple[Any, bool]:
        view = parse_view(params, allowed=("bbox", "zoom", "from", "to", "units"))
        layers, about, keep = self._layers_of(view, version, "tracks")
        return {**tracks_answer(layers, view), **about}, keep

    def _segments(self, params: dict[str, list[str]], version: Hashable) -> tuple[Any, bool]:
        view = parse_view(params, allowed=("bbox", "zoom", "operator", "from", "to", "units"))
        operator = view.operator or self.grid(8, None, None, version)[0].default_operator
        layers, about, keep = self._layers_of(view, version, "segments")
        return {**segments_answer(layers, view, operator), "operator": operator, **about}, keep

    def _tags(self, params: dict[str, list[str]], version: Hashable) -> tuple[Any, bool]:
        view = parse_view(params, allowed=("bbox", "zoom", "from", "to", "units"))
        layers, about, keep = self._layers_of(view, version, "tags")
        return {**tags_answer(layers, view), **about}, keep

    def _places(self, params: dict[str, list[str]], version: Hashable) -> tuple[Any, bool]:
        view = parse_view(params, allowed=("bbox", "zoom"))
        named = [t for t in self._layers_of(View(), version, "tags")[0].tags if t.get("label")]
        tagged = place_labels(Place(t["label"], t["lat"], t["lon"], "tag") for t in named)
        return places_answer(place_labels([*(Place(p["name"], p["lat"], p["lon"], "file")
                                              for p in self._place_labels),
                                            *(Place(p["name"], p["lat"], p["lon"], "tag") for p in tagged)]),
                             view), True

    def _fleet(self, params: dict[str, list[str]], version: Hashable) -> tuple[Any, bool]:
        parse_view(params, allowed=())
        with self._store_lock:
            views = fleet(self.store)
            refused = self.store.refused_sms()
        # Not kept: the ages move with the clock.
        return fleet_answer(views, datetime.now(timezone.utc), refused), False

    # -- health and metrics -----------------------------------------------------------------

    def facts(self) -> Facts:
        try:
            with self._store_lock:
                store = self.store
                ledger = store.ledger()
                units = store.units()
                counters: dict[str, int] = {}
                for values in store.counters().values():
                    for name, value in values.items():
                        counters[name] = counters.get(name, 0) + value
                devices = sorted(set(ledger) | {u["device"] for u in units})
                seen = {u["device"]: u for u in units}
                return Facts(
                    reachable=True, schema_version=store.schema_version(), figures_kept=store.keeps_figures(),
                    figures_stale=store.figures_stale(), last_received=store.last_received(),
                    readings=sum(e["stored"] for e in ledger.values()), counters=counters,
                    units=[{"device": d, "state": seen.get(d, {}).get("state"),
                            "last_seen": seen.get(d, {}).get("last_seen"),
                            "stored": ledger.get(d, {}).get("stored", 0)} for d in devices])
        except StoreError as exc:
            return Facts(reachable=False, error=str(exc))

    def healthz(self) -> Answer:
        status, body = health(self.facts(), datetime.now(timezone.utc), "kept" if self.kept_tracks else "survey")
        return json_answer(body, status)

    # -- the page ---------------------------------------------------------------------------

    def _page_data(self) -> dict[str, Any]:
        from agent import __version__

        o = self.options
        return {
            "title": o.title, "subtitle": f"blankspot {__version__}", "legend_note": "",
            "generated": None, "resolution": 8,
            "tiles": None if not o.tiles else {"url": o.tiles, "attribution": o.tiles_attribution},
            "center": list(MAHAKAM_CENTER), "operators": [], "default_operator": None, "cells": [],
            "tracks": [], "track_zoom": 16, "tracks_left_out": 0, "segments": [], "tags": [], "places": [],
            "live": {"api": "api/", "refresh_s": o.refresh_s},
            "titles": list(DEFAULT_TITLES) if o.title == " / ".join(DEFAULT_TITLES) else None,
        }


class _Handler(BaseHTTPRequestHandler):
    server: "MapServer"
    protocol_version = "HTTP/1.1"
    server_version = "blankspot-serve"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _refuse(self) -> None:
        self._send(error_answer(405, f"{self.command} is not served: this map only reads (GET)"), True)

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _serve(self, body: bool) -> None:
        started = time.perf_counter()
        parts = urlsplit(self.path)
        path = parts.path
        live = self.server.live
        try:
            if path != "/healthz" and self.server.login is not None \
                    and self.server.login.user(self.headers.get("Authorization")) is None:
                answer = Answer(401, "application/json; charset=utf-8",
                                json.dumps({"error": "login needed"}).encode(),
                                (("WWW-Authenticate", 'Basic realm="blankspot", charset="UTF-8"'),))
            else:
                answer = live.answer(path, parts.query)
        except Exception:
            log.exception("answering %s", self.path)
            answer = error_answer(500, "the server failed to answer; its log says why")
        self._send(answer, body)
        route = path if path in ROUTES else "other"
        live.stats.record(route, answer.status, time.perf_counter() - started)

    def _send(self, answer: Answer, body: bool) -> None:
        self.send_response(answer.status, HTTPStatus(answer.status).phrase)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(answer.body)


class MapServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], live: LiveMap, login: Login | None) -> None:
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.live = live
        self.login = login
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("%s went away", client_address)  # a browser closing its tab mid-answer
            return
        log.exception("connection from %s failed", client_address)


def make_server(bind: str, port: int, live: LiveMap, login: Login | None) -> MapServer:
    return MapServer((bind, port), live, login)


def settle_garbage_collector() -> None:
    """Set Python's cycle collector for a process that builds large answers (call once, at start).

    An answer of thousands of stretches or track pieces makes tens of thousands of lists and
    dicts; at the default threshold (700) the collector then runs dozens of times per request,
    its older passes walking every grid kept in memory: 10-25 ms of a 100-200 ms answer at
    10 million readings (docs/benchmarks.md).  What start-up made is never garbage (frozen:
    not walked again), and the collector runs less often; cycles are still collected."""
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def is_loopback(bind: str) -> bool:
    import ipaddress

    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False
