"""``blankspot speed-server``, ``collect``, ``export``, ``map``, ``report``, ``units``, ``aggregate``
and ``serve``: the central side's commands.

Each command has an ``add_<name>(sub)`` function that adds its parser; the registry in
:mod:`agent.commands.main` calls them in the order they appear in ``blankspot --help``.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands.exit_status import RuntimeFailure, UsageError
from agent.commands.common import add_broker_options, broker_of

if TYPE_CHECKING:
    from agent.centre.survey import Survey

log = logging.getLogger(__name__)


# -- speed-server ------------------------------------------------------------------------

def add_speed_server(sub: argparse._SubParsersAction) -> None:
    from agent.unit.measure.target import SPEED_SERVER_PORT

    p = sub.add_parser(
        "speed-server", help="serve throughput tests to the units (run it on the collector host)",
        description="Serve the units' throughput tests over HTTP until stopped: /bytes?n=N and /upload "
                    "for the http backend, and the Speedtest Mini layout (/speedtest/...) for speedtest-cli. "
                    "Example: blankspot speed-server --port 8080")
    p.add_argument("--port", type=int, default=SPEED_SERVER_PORT, help=f"TCP port (default {SPEED_SERVER_PORT})")
    p.add_argument("--bind", metavar="ADDR", default="0.0.0.0", help="local address to listen on (default all)")
    p.add_argument("--verbose", "-v", action="store_true", help="log every request on stderr")
    p.set_defaults(func=cmd_speed_server)


def cmd_speed_server(args: argparse.Namespace) -> int:
    from agent.centre.speed_server import make_server
    from agent.commands.common import setup_logging

    if not 0 < args.port < 65536:
        raise UsageError(f"blankspot speed-server: --port must be 1 to 65535, got {args.port}")
    setup_logging("debug" if args.verbose else "info")
    try:
        server = make_server(args.bind, args.port)
    except OSError as exc:
        raise RuntimeFailure(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from None
    host, port = server.server_address[:2]
    log.info("speed server on http://%s:%s/ (units: blankspot measure throughput --target http://THIS-HOST:%s/)",
             host, port, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# -- shared by the commands that read the database ---------------------------------------

def open_store_or_exit(url: str, command: str):
    """The store at ``url``; a bad URL is a usage error, an unusable database a runtime failure."""
    from agent.centre.store import open_store
    from agent.centre.store.base import StoreError, StoreUrlError

    try:
        return open_store(url)
    except StoreUrlError as exc:
        raise UsageError(f"blankspot {command}: --db: {exc}") from None
    except StoreError as exc:
        raise RuntimeFailure(str(exc)) from None


# -- collect ----------------------------------------------------------------------------

def add_collect(sub: argparse._SubParsersAction) -> None:
    from agent.centre.choices import COLLECTOR_GROUP, COLLECTOR_INFLIGHT, COLLECTOR_MESSAGES_PER_COMMIT

    p = sub.add_parser(
        "collect", help="central collector: store every unit's readings from the broker, once",
        description="Subscribe to every unit's readings and status (MQTT 5 shared subscription) and store "
                    "them in SQLite or PostgreSQL, each reading once. Several collectors may share one "
                    "group. Runs until SIGTERM. "
                    "Example: blankspot collect --broker mqtt://127.0.0.1:1883 --db sqlite:///var/lib/blankspot/collector.db",
    )
    add_broker_options(p)
    p.add_argument("--db", required=True, metavar="URL",
                   help="sqlite:///absolute/path.db, a file path, or postgresql://user@host/database")
    p.add_argument("--group", default=COLLECTOR_GROUP, help=f"shared subscription group (default {COLLECTOR_GROUP})")
    p.add_argument("--client-id", metavar="ID",
                   help="MQTT client id, unique per collector and the same across its restarts "
                        "(default blankspot-collector-<hostname>)")
    p.add_argument("--session-expiry", default="7d", metavar="DURATION",
                   help="how long the broker keeps this collector's messages while it is away (default 7d)")
    p.add_argument("--inflight", type=int, default=COLLECTOR_INFLIGHT, metavar="N",
                   help=f"messages the broker may send before they are acknowledged (default {COLLECTOR_INFLIGHT})")
    p.add_argument("--max-messages-per-commit", type=int, default=COLLECTOR_MESSAGES_PER_COMMIT, metavar="N",
                   help=f"most MQTT messages stored in one transaction (default {COLLECTOR_MESSAGES_PER_COMMIT})")
    p.add_argument("--stats-interval", default="60s", metavar="DURATION",
                   help="how often to log what was stored (default 60s)")
    p.add_argument("--confirm-interval", default="5m", metavar="DURATION",
                   help="most one confirmation per unit this often, sooner when the unit is behind or a hole "
                        "opens (default 5m)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.set_defaults(func=cmd_collect)


def cmd_collect(args: argparse.Namespace) -> int:
    from agent.commands.common import setup_logging, stop_on_signals
    from agent.centre.ingest import Collector, CollectorSettings, default_client_id
    from agent.shared.quantities import parse_duration
    from agent.shared.watchdog import SystemdNotifier, Watchdog

    broker, password = broker_of(args, "collect")
    try:
        expiry = parse_duration(args.session_expiry)
        stats_interval = parse_duration(args.stats_interval)
        confirm_interval = parse_duration(args.confirm_interval)
    except ValueError as exc:
        raise UsageError(f"blankspot collect: {exc}") from None
    settings = CollectorSettings(
        broker=broker, client_id=args.client_id or default_client_id(), group=args.group, prefix=args.prefix,
        username=args.username, password=password,
        tls_ca=Path(args.tls_ca) if args.tls_ca else None,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        session_expiry_s=int(expiry), inflight=args.inflight, group_messages=args.max_messages_per_commit,
        stats_interval_s=stats_interval, confirm_interval_s=confirm_interval,
    )
    try:
        settings.check()
    except ValueError as exc:
        raise UsageError(f"blankspot collect: {exc}") from None
    setup_logging(args.log_level)
    store = open_store_or_exit(args.db, "collect")
    stop = stop_on_signals()
    notifier = SystemdNotifier.from_environment()
    try:
        Collector(settings, store, notifier=notifier, watchdog=Watchdog.from_environment(notifier)).run(stop)
    finally:
        store.close()
        notifier.close()
    return 0


# -- export, map, report: the analysis of stored readings ---------------------------------

PROGRESS_SECONDS = 5.0


class Progress:
    """A line on ``stream`` every ``every_s`` seconds with the readings read so far; called
    by the survey as it reads.  Always stderr: stdout may be the export itself (``--out -``)."""

    def __init__(self, command: str, stream, every_s: float = 5.0, clock=None) -> None:
        import time

        self.command = command
        self.stream = stream
        self.every_s = every_s
        self.clock = clock or time.monotonic
        self._last = self.clock()

    def __call__(self, done: int) -> None:
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            print(f"blankspot {self.command}: {done:,} readings read", file=self.stream, flush=True)


_DB_HELP = "collector database: a file path, sqlite:///path.db or postgresql://user@host/db"
_EXPORT_SUFFIXES = {".geojson": "geojson", ".json": "geojson", ".kml": "kml", ".csv": "csv"}


def add_export(sub: argparse._SubParsersAction) -> None:
    from agent.centre.choices import EXPORT_FORMATS as FORMATS, EXPORT_LAYERS as LAYERS

    p = sub.add_parser(
        "export", help="write the survey as GeoJSON, KML or CSV: points, tracks, segments, cells",
        description="Write stored readings and the coverage grid for QGIS or Google Earth. CSV holds one layer "
                    "per file. Example: blankspot export --db /var/lib/blankspot/collector.db --format kml "
                    "--out survey.kml --what tracks,segments,cells")
    p.add_argument("--db", required=True, metavar="URL", help=_DB_HELP)
    p.add_argument("--format", choices=FORMATS, help="output format (default: from the --out suffix)")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write, or - for standard output")
    p.add_argument("--what", metavar="LAYERS",
                   help=f"comma-separated layers out of {','.join(LAYERS)} (default: all; for csv: cells)")
    p.add_argument("--split", action="store_true",
                   help="one file per layer, named after --out with the layer before the suffix "
                        "(survey.geojson: survey-points.geojson, survey-cells.geojson, ...); with csv, "
                        "--what may then name several layers (default all)")
    _grid_args(p)
    _filter_args(p, points=True)
    _progress_arg(p)
    p.set_defaults(func=cmd_export)


def add_map(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map", help="write the blank-spot map: one HTML file that works offline",
        description="Draw the coverage grid, the units' tracks and tagged spots on one self-contained HTML page "
                    "(background tiles only when online). Example: blankspot map --db /var/lib/blankspot/collector.db "
                    "--out kukar-map.html")
    p.add_argument("--db", required=True, metavar="URL", help=_DB_HELP)
    p.add_argument("--out", required=True, metavar="FILE", help="HTML file to write")
    p.add_argument("--operator", help="operator shown first, as mcc-mnc (510-10) or name (default: most readings)")
    p.add_argument("--title", help="page title")
    p.add_argument("--tiles", metavar="URL",
                   help="background tile URL template, or 'none' (default: OpenStreetMap, when online)")
    p.add_argument("--places", metavar="FILE", help="CSV of named places (name,lat,lon) to write on the map")
    _grid_args(p)
    _filter_args(p)
    _progress_arg(p)
    p.set_defaults(func=cmd_map)


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="list the blank-spot cells per operator with the nearest place",
        description="Print each operator's blank-spot cells with sample counts and the nearest tagged place, "
                    "and optionally write them as CSV. Example: blankspot report --db "
                    "/var/lib/blankspot/collector.db --operator Telkomsel --places desa.csv --csv blank-spots.csv")
    p.add_argument("--db", required=True, metavar="URL", help=_DB_HELP)
    p.add_argument("--operator", help="only this operator: mcc-mnc (510-10) or name")
    p.add_argument("--places", metavar="FILE", help="CSV of named places (name,lat,lon) besides the tagged spots")
    p.add_argument("--csv", metavar="FILE", help="also write the rows as CSV to FILE")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object instead of text")
    _grid_args(p)
    _filter_args(p)
    _progress_arg(p)
    p.set_defaults(func=cmd_report)


def add_units(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "units", help="the fleet: each unit's state, last seen, backlog and the readings the centre lacks",
        description="List every unit the collector's database knows: state and last status, readings stored, "
                    "the backlog the unit last reported, and each seq range the centre lacks with the reason "
                    "(dropped by the unit, unusable buffer, refused, waiting to be sent again, lost for good); "
                    "a unit whose SMS heartbeat came after its last status and reading is 'alive by SMS', and "
                    "the SMS not stored as heartbeats are counted by reason. "
                    "Example: blankspot units --db sqlite:///var/lib/blankspot/collector.db --json",
    )
    p.add_argument("--db", required=True, metavar="URL", help=_DB_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object: {\"units\": [...], \"refused_sms\": {reason: count}}")
    p.set_defaults(func=cmd_units)


def add_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aggregate", help="the coverage figures the collector keeps: compute them again from the stored readings",
        description="The collector keeps per-cell coverage figures up to date as readings arrive (map, report "
                    "and export --what cells read them), and each unit's tracks, blank-spot segments and "
                    "tagged spots (map and report read them). --rebuild computes them all again from every "
                    "stored reading, in one transaction (collectors wait meanwhile). "
                    "Example: blankspot aggregate --db sqlite:///var/lib/blankspot/collector.db --rebuild",
    )
    p.add_argument("--db", required=True, metavar="URL", help=_DB_HELP)
    p.add_argument("--rebuild", action="store_true", required=True,
                   help="compute every figure again from the stored readings")
    _progress_arg(p)
    p.set_defaults(func=cmd_aggregate)


def cmd_aggregate(args: argparse.Namespace) -> int:
    def work() -> int:
        store = _open_existing_store(args.db, "aggregate")
        try:
            counted = store.rebuild_figures(_progress(args, "aggregate"))
            periods = store.refresh_periods()
        finally:
            store.close()
        print(f"coverage figures rebuilt from {counted} stored readings; {periods} days and months summed")
        return 0

    return _guarded("aggregate", work)


def _grid_args(p: argparse.ArgumentParser) -> None:
    from agent.centre.coverage import DEFAULT_RESOLUTION, Thresholds

    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                   help=f"H3 grid resolution, 0-15 (default {DEFAULT_RESOLUTION}: cells of about 0.74 km²)")
    p.add_argument("--min-samples", type=int, default=Thresholds.min_samples,
                   help=f"readings a cell needs before it is classed (default {Thresholds.min_samples})")


def _filter_args(p: argparse.ArgumentParser, points: bool = False) -> None:
    from agent.shared.reading import RATS

    where = "cells" + (", points" if points else "")
    p.add_argument("--from", dest="first_day", metavar="DAY",
                   help="only readings from this WITA day on (YYYY-MM-DD): cells, tracks, stretches without "
                        "service, tagged spots" + (", points" if points else ""))
    p.add_argument("--to", dest="last_day", metavar="DAY", help="only readings up to this WITA day (YYYY-MM-DD), "
                                                                 "inclusive")
    p.add_argument("--unit", dest="units", action="append", metavar="ID",
                   help="only this unit's readings (repeat for several units)")
    p.add_argument("--technology", metavar="RAT",
                   help=f"the {where} of one radio technology ({', '.join(r for r in RATS if r != 'NONE')}): its "
                        "readings, and every reading without service (which has no technology); tracks and "
                        "stretches without service are drawn whatever the technology")


def _progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action="store_true",
                   help="print the readings read so far on stderr every few seconds, also when stderr is not "
                        "a terminal (default: only on a terminal)")


def _progress(args: argparse.Namespace, command: str) -> "Progress | None":
    import sys

    return Progress(command, sys.stderr, PROGRESS_SECONDS) if args.progress or sys.stderr.isatty() else None


_DAY_RE = r"\d{4}-\d{2}-\d{2}"


def figures_filter(args: argparse.Namespace, command: str):
    """The FiguresFilter of ``--from``, ``--to``, ``--unit`` and ``--technology``; a bad value is a usage error."""
    import re
    from datetime import date

    from agent.centre.cell_stats import FIRST_DAY, LAST_DAY, FiguresFilter
    from agent.shared.reading import RATS

    given = []
    for option, text in (("--from", args.first_day), ("--to", args.last_day)):
        if text is None:
            continue
        try:
            if not re.fullmatch(_DAY_RE, text):
                raise ValueError
            date.fromisoformat(text)
        except ValueError:
            raise UsageError(f"blankspot {command}: {option} takes a WITA day as YYYY-MM-DD, got {text!r}") from None
        given.append(option)
    first, last = args.first_day or FIRST_DAY, args.last_day or LAST_DAY
    if first > last:
        raise UsageError(f"blankspot {command}: --from {first} is after --to {last}")
    technology = None
    if args.technology is not None:
        known = {rat.lower(): rat for rat in RATS if rat != "NONE"}
        technology = known.get(args.technology.strip().lower())
        if technology is None:
            raise UsageError(f"blankspot {command}: --technology takes one of {', '.join(known.values())},"
                             f" got {args.technology!r}")
    units = None
    if args.units:
        units = frozenset(u.strip() for u in args.units)
        if "" in units:
            raise UsageError(f"blankspot {command}: --unit needs a unit id")
    return FiguresFilter(days=(first, last) if given else None, devices=units, technology=technology)


def _check_units(store, where, command: str) -> None:
    """A unit asked for that the database has never heard of is a usage error (a typo, most likely)."""
    if where.devices is None:
        return
    known = set(store.ledger()) | {unit["device"] for unit in store.units()}
    unknown = sorted(where.devices - known)
    if unknown:
        raise UsageError(f"blankspot {command}: no readings of unit {', '.join(unknown)} in the database;"
                         f" units: {', '.join(sorted(known)) or 'none yet'}")


@contextmanager
def _survey(args: argparse.Namespace, command: str, **options: Any) -> Iterator[Survey]:
    """The survey of ``--db`` on the grid of ``--resolution`` and ``--min-samples``, of the days,
    units and technology of ``--from``, ``--to``, ``--unit`` and ``--technology``, made with
    ``options`` (read when its results are first asked for, so inside the block); the store is
    closed when the block ends."""
    import sys

    from agent.centre.coverage import Thresholds
    from agent.centre.survey import Survey

    if not 0 <= args.resolution <= 15:
        raise UsageError(f"blankspot {command}: --resolution must be 0 to 15, got {args.resolution}")
    if args.min_samples < 1:
        raise UsageError(f"blankspot {command}: --min-samples must be at least 1, got {args.min_samples}")
    where = figures_filter(args, command)
    store = _open_existing_store(args.db, command)
    try:
        _check_units(store, where, command)
        yield Survey(store, args.resolution, Thresholds(min_samples=args.min_samples),
                     warn=lambda text: print(f"blankspot {command}: warning: {text}", file=sys.stderr),
                     where=where, **options)
    finally:
        store.close()


def _operator(survey: Survey, text: str | None, command: str) -> str | None:
    from agent.centre.survey import UnknownOperator

    try:
        return survey.operator(text)
    except UnknownOperator as exc:
        raise UsageError(f"blankspot {command}: {exc}") from None


def _warn_skipped(survey: Survey, command: str) -> None:
    """The command's last line on stderr, when stored readings were skipped."""
    import sys

    summary = survey.summary()
    if summary:
        print(f"blankspot {command}: warning: {summary}", file=sys.stderr)


def _open_existing_store(url: str, command: str):
    from agent.centre.store import open_store
    from agent.centre.store.base import StoreError, StoreUrlError, parse_db_url

    try:
        parsed = parse_db_url(url)
        if parsed.backend == "sqlite" and not Path(parsed.target).is_file():
            raise UsageError(f"blankspot {command}: no database at {parsed.target} (is --db right?)")
        return open_store(url)
    except StoreUrlError as exc:
        raise UsageError(f"blankspot {command}: {exc}") from None
    except StoreError as exc:
        raise RuntimeFailure(str(exc)) from None


def _write_atomically(path: str, write) -> None:
    """Write through a temporary file beside ``path``, so a failed run leaves no half a file."""
    import os
    import sys
    import tempfile

    if path == "-":
        write(sys.stdout)
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".blankspot-", suffix=".tmp")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            write(out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _guarded(command: str, work) -> int:
    from agent.centre.store.base import StoreError
    from agent.centre.survey import NEEDS_H3

    try:
        return work()
    except StoreError as exc:
        raise RuntimeFailure(f"blankspot {command}: {exc}") from None
    except ModuleNotFoundError as exc:
        if exc.name != "h3":
            raise
        raise RuntimeFailure(f"blankspot {command}: {NEEDS_H3}") from None


def _read_places(path: str | None, command: str) -> list:
    """The places of a ``--places`` file (none without one); a file that cannot be used is a usage error."""
    from agent.centre.report import PlacesError, parse_places_csv

    if not path:
        return []
    try:
        return parse_places_csv(Path(path).read_text(encoding="utf-8"), path)
    except OSError as exc:
        raise UsageError(f"blankspot {command}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"blankspot {command}: {path} is not UTF-8 text") from None
    except PlacesError as exc:
        raise UsageError(f"blankspot {command}: {exc}") from None


def cmd_units(args: argparse.Namespace) -> int:
    import json
    import sys

    from agent.centre.fleet import fleet, write_units

    def work() -> int:
        store = _open_existing_store(args.db, "units")
        try:
            views = fleet(store)
            refused = store.refused_sms()
        finally:
            store.close()
        if args.json:
            print(json.dumps({"units": [v.as_dict() for v in views], "refused_sms": refused}, indent=1))
        else:
            write_units(views, sys.stdout, refused)
        return 0

    return _guarded("units", work)


def cmd_export(args: argparse.Namespace) -> int:
    import os
    import sys
    from dataclasses import replace

    from agent.centre.export import LAYERS, WRITERS
    from agent.centre.survey import export_layers, whole_track

    fmt = args.format or _EXPORT_SUFFIXES.get(os.path.splitext(args.out)[1].lower())
    if fmt is None:
        raise UsageError(f"blankspot export: cannot tell the format from {args.out!r}: give --format geojson, kml or csv")
    if args.split and args.out == "-":
        raise UsageError("blankspot export: --split writes one file per layer: give --out a file name, not -")
    if args.what:
        what = tuple(dict.fromkeys(w.strip() for w in args.what.split(",") if w.strip()))
        unknown = [w for w in what if w not in LAYERS]
        if unknown or not what:
            raise UsageError(f"blankspot export: --what takes {', '.join(LAYERS)}, got {args.what!r}")
    else:
        what = ("cells",) if fmt == "csv" and not args.split else LAYERS
    if fmt == "csv" and len(what) != 1 and not args.split:
        raise UsageError(f"blankspot export: a CSV file holds one layer; choose one of --what {','.join(what)} "
                         f"or give --split")
    # The layers come from one pass over the readings, so they are written in its order.
    what = tuple(layer for layer in LAYERS if layer in what)
    stem, suffix = os.path.splitext(args.out)
    files = [(f"{stem}-{layer}{suffix}", (layer,)) for layer in what] if args.split else [(args.out, what)]
    unit = "rows" if fmt == "csv" else "features"

    def work() -> int:
        written = []
        progress = _progress(args, "export")
        with _survey(args, "export", tracks=whole_track if "tracks" in what else None,
                     cells="cells" in what, progress=progress) as survey:
            layers = export_layers(survey, what)
            for path, part in files:
                _write_atomically(path, lambda out: written.append(WRITERS[fmt](replace(layers, what=part), out)))
        if args.out != "-":
            for (path, part), count in zip(files, written):
                print(f"{path}: {count} {unit} ({', '.join(part)})", file=sys.stderr)
        _warn_skipped(survey, "export")
        return 0

    return _guarded("export", work)


def cmd_map(args: argparse.Namespace) -> int:
    import sys
    from dataclasses import replace

    from agent.centre.mapview import MapOptions, map_summary
    from agent.centre.survey import map_page

    places = _read_places(args.places, "map")

    def work() -> int:
        with _survey(args, "map", progress=_progress(args, "map")) as survey:
            options = MapOptions(operator=_operator(survey, args.operator, "map"))
            if args.title:
                options = replace(options, title=args.title)
            elif not survey.where.everything:
                options = replace(options, title=f"{options.title} · {survey.where.describe()}")
            if args.tiles:
                options = replace(options, tiles=None) if args.tiles.lower() == "none" else \
                    replace(options, tiles=args.tiles, tiles_attribution="")
            html, data = map_page(survey, options, places)
        _write_atomically(args.out, lambda out: out.write(html))
        print(f"{args.out}: {map_summary(data)}", file=sys.stderr)
        _warn_skipped(survey, "map")
        return 0

    return _guarded("map", work)


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from agent.centre.fleet import fleet
    from agent.centre.report import (
        blank_spot_rows, format_report, report_dict, write_report_csv,
    )

    def holes_section(views) -> str:
        import io

        from agent.centre.fleet import write_holes_section

        out = io.StringIO()
        write_holes_section(views, out)
        return out.getvalue()

    places = _read_places(args.places, "report")

    def work() -> int:
        with _survey(args, "report", tracks=None, progress=_progress(args, "report")) as survey:
            operator = _operator(survey, args.operator, "report")
            places.extend(place for place in survey.tags if place.name)
            rows = blank_spot_rows(survey.coverage, places, operator)
            views = fleet(survey.store)
            if args.json:
                report = report_dict(survey.coverage, rows, survey.segments, operator)
            else:
                text = format_report(survey.coverage, rows, survey.segments, operator) + holes_section(views)
        summary = survey.summary()
        chosen = survey.where.describe()
        if args.json:
            report["of"] = chosen or None
            report["missing"] = [{"device": v.device, "top": v.top, "missing": v.missing,
                                  "holes": v.as_dict()["holes"]} for v in views if v.holes]
            report["skipped"] = summary
            text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
        elif chosen:
            text = f"Readings of {chosen}\n" + text + (f"\n{summary}\n" if summary else "")
        elif summary:  # in the report itself too: its figures leave these readings out
            text += f"\n{summary}\n"
        if args.csv:
            _write_atomically(args.csv, lambda out: write_report_csv(rows, out))
        print(text, end="")
        _warn_skipped(survey, "report")
        return 0

    return _guarded("report", work)


# -- serve: the live map -------------------------------------------------------------------

def add_serve(sub: argparse._SubParsersAction) -> None:
    from agent.centre.choices import SERVE_PORT as DEFAULT_PORT
    from agent.centre.coverage import Thresholds

    p = sub.add_parser(
        "serve", help="serve the live blank-spot map of the collector's database over HTTP (read-only)",
        description="Serve the collector's database as a live map for browsers on the office LAN: cells for the "
                    "visible area and zoom, per operator, technology, WITA days and units; tracks, stretches "
                    "without service, tags and place names as layers; the fleet; /healthz and /metrics. The "
                    "database is only read. It listens on 127.0.0.1 unless --bind says otherwise, and another "
                    "address needs --login (or --no-login on a trusted network). "
                    "Example: blankspot serve --db sqlite:///var/lib/blankspot-collector/collector.db "
                    "--bind 0.0.0.0 --login /etc/blankspot/serve.users --places desa.csv. "
                    "A user is added with: blankspot serve --login /etc/blankspot/serve.users --add-user siti")
    p.add_argument("--db", metavar="URL", help=_DB_HELP)
    p.add_argument("--bind", metavar="ADDR", default="127.0.0.1",
                   help="local address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--login", metavar="FILE",
                   help="users file (name:scrypt hash a line): browsers must log in as one of them (HTTP Basic)")
    p.add_argument("--no-login", action="store_true",
                   help="serve without a login on an address other than loopback (a trusted network only)")
    p.add_argument("--add-user", metavar="NAME",
                   help="add NAME to the --login file (or change its password) and exit; the password is asked, "
                        "or read from the first line of standard input")
    p.add_argument("--places", metavar="FILE", help="CSV of named places (name,lat,lon or nama;lintang;bujur)")
    p.add_argument("--title", help="page title")
    p.add_argument("--tiles", metavar="URL",
                   help="background tile URL template, or 'none' (default: OpenStreetMap, when the browser is online)")
    p.add_argument("--min-samples", type=int, default=Thresholds.min_samples,
                   help=f"readings a cell needs before it is classed (default {Thresholds.min_samples})")
    p.add_argument("--refresh", default="30s", metavar="DURATION",
                   help="how often the database is asked whether it changed (default 30s)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                   help="debug logs every request")
    p.set_defaults(func=cmd_serve)


def _add_user(args: argparse.Namespace) -> int:
    import getpass
    import sys

    from agent.centre.serve_login import LoginFileError, set_user

    if not args.login:
        raise UsageError("blankspot serve: --add-user needs --login FILE (the users file to write)")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.add_user}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("blankspot serve: the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        new = set_user(Path(args.login), args.add_user, password)
    except LoginFileError as exc:
        raise UsageError(f"blankspot serve: {exc}") from None
    except OSError as exc:
        raise RuntimeFailure(f"blankspot serve: cannot write {args.login}: {exc.strerror or exc}") from None
    print(f"{args.login}: {'added' if new else 'changed the password of'} {args.add_user}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from agent.centre.coverage import Thresholds
    from agent.centre.serve import LiveMap, ServeOptions, is_loopback, make_server, settle_garbage_collector
    from agent.centre.serve_login import Login, LoginFileError, read_users
    from agent.centre.store.base import StoreError, StoreUrlError
    from agent.centre.store.readonly import open_store_readonly
    from agent.commands.common import setup_logging
    from agent.shared.quantities import parse_duration

    if args.add_user is not None:
        return _add_user(args)
    if not args.db:
        raise UsageError("blankspot serve: --db URL is needed (the collector's database)")
    if not 0 < args.port < 65536:
        raise UsageError(f"blankspot serve: --port must be 1 to 65535, got {args.port}")
    if args.min_samples < 1:
        raise UsageError(f"blankspot serve: --min-samples must be at least 1, got {args.min_samples}")
    try:
        refresh = parse_duration(args.refresh)
    except ValueError as exc:
        raise UsageError(f"blankspot serve: --refresh: {exc}") from None
    if args.login and args.no_login:
        raise UsageError("blankspot serve: --login and --no-login contradict each other")
    if not args.login and not args.no_login and not is_loopback(args.bind):
        raise UsageError(f"blankspot serve: --bind {args.bind} opens the map to the network: give --login FILE "
                         "(users made with --add-user), or --no-login on a trusted network")
    login = None
    if args.login:
        try:
            users = read_users(Path(args.login))
        except LoginFileError as exc:
            raise UsageError(f"blankspot serve: --login: {exc}") from None
        if not users:
            raise UsageError(f"blankspot serve: --login: {args.login} has no users: add one with --add-user NAME")
        login = Login(users)
    options = ServeOptions(thresholds=Thresholds(min_samples=args.min_samples), refresh_s=refresh,
                           places=tuple(_read_places(args.places, "serve")))
    if args.title:
        options = replace(options, title=args.title)
    if args.tiles:
        options = replace(options, tiles=None) if args.tiles.lower() == "none" else \
            replace(options, tiles=args.tiles, tiles_attribution="")
    setup_logging(args.log_level)

    def reader():
        return open_store_readonly(args.db)

    try:
        live = LiveMap(reader, options)
    except StoreUrlError as exc:
        raise UsageError(f"blankspot serve: --db: {exc}") from None
    except StoreError as exc:
        raise RuntimeFailure(f"blankspot serve: {exc}") from None
    try:
        try:
            server = make_server(args.bind, args.port, live, login)
        except OSError as exc:
            raise RuntimeFailure(f"blankspot serve: cannot listen on {args.bind}:{args.port}: "
                                 f"{exc.strerror or exc}") from None
        stop = threading.Event()

        def shut(*_: object) -> None:
            if not stop.is_set():
                stop.set()
                threading.Thread(target=server.shutdown, daemon=True).start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, shut)
        settle_garbage_collector()
        live.warm()
        host, port = server.server_address[:2]
        log.info("live map of %s on http://%s:%s/ (%s; layers %s)", live.store.url, host, port,
                 "login required" if login else "no login", "kept by the store" if live.kept_tracks
                 else "from a pass over the readings, kept in memory")
        try:
            server.serve_forever()
        finally:
            server.server_close()
    finally:
        live.close()
    return 0
