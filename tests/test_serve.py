"""``blankspot serve``: the collector's database answered over HTTP, read-only, for the live map.

Every test runs the real server in a thread on a free port over a real SQLite collector
database (PostgreSQL once), and asks it as a browser would.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.centre.cell_stats import FiguresFilter
from agent.centre.coverage import Thresholds, cell_center
from agent.centre.live_answers import resolution_for_zoom
from agent.centre.serve import LiveMap, ServeOptions
from agent.centre.serve_login import Login, read_users, set_user
from agent.centre.store import open_store
from agent.centre.store.base import StoreError
from agent.centre.store.readonly import open_store_readonly
from agent.centre.store.schema import LATEST
from agent.centre.report import parse_places_csv
from agent.commands.main import main
from tests.support.postgres import postgres_url as postgres_url_fixture
from tests.support.served_map import DAY_TWO, indosat_unit, served
from tests.support.survey_factory import no_service, survey_db, trip_with_tags

ROUTE_PLACES = Path(__file__).resolve().parent.parent / "agent" / "sim" / "routes" / "mahakam.csv"
@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return survey_db(tmp_path_factory.mktemp("serve") / "collector.db", trip_with_tags() + indosat_unit())


@pytest.fixture(scope="module")
def options() -> ServeOptions:
    places = parse_places_csv(ROUTE_PLACES.read_text(encoding="utf-8"), str(ROUTE_PLACES))
    return ServeOptions(refresh_s=0, background=False, tiles=None, places=tuple(places))


@pytest.fixture(scope="module")
def server(db, options):
    with served(db, options) as s:
        yield s


def coverage(db: str, resolution: int, where: FiguresFilter = FiguresFilter()):
    with open_store(db) as store:
        return store.coverage(resolution, Thresholds(), where)


# -- cells -----------------------------------------------------------------------------------

def test_cells_of_the_operator_with_most_readings_by_default(server, db):
    answer = server.get("api/cells?zoom=12").json
    expected = [c.cell for c in coverage(db, 8).cells if c.operator == "510-10"]
    assert answer["operator"] == "510-10" and answer["resolution"] == 8
    assert sorted(c["cell"] for c in answer["cells"]) == sorted(expected) and len(expected) > 50
    first = answer["cells"][0]
    assert set(first) >= {"cell", "op", "class", "ring", "popup", "rats"} and len(first["ring"]) == 7   # closed


@pytest.mark.parametrize("zoom", [5, 7, 9, 10])
def test_a_coarser_zoom_rolls_cells_up_from_the_kept_figures(server, db, zoom):
    resolution = resolution_for_zoom(zoom)
    answer = server.get(f"api/cells?zoom={zoom}").json
    assert answer["resolution"] == resolution < 8
    rolled = {c.cell: c.coverage_class for c in coverage(db, resolution).cells if c.operator == "510-10"}
    assert {c["cell"]: c["class"] for c in answer["cells"]} == rolled


def test_the_visible_area_cuts_the_cells(server, db):
    south, west, north, east = -0.45, 116.95, -0.30, 117.00
    answer = server.get(f"api/cells?zoom=12&bbox={south},{west},{north},{east}").json
    inside = [c.cell for c in coverage(db, 8).cells if c.operator == "510-10"
              and south <= cell_center(c.cell)[0] <= north and west <= cell_center(c.cell)[1] <= east]
    assert sorted(c["cell"] for c in answer["cells"]) == sorted(inside)
    assert 0 < len(inside) < 30


def test_operator_days_and_units(server):
    indosat = server.get("api/cells?zoom=12&operator=510-01").json
    assert sorted(c["class"] for c in indosat["cells"]) == ["blank", "covered"]
    # The boat's day alone has no Indosat reading; its Telkomsel cells are all there.
    assert server.get("api/cells?zoom=12&operator=510-01&from=2026-11-24&to=2026-11-24").status == 400
    boat_day = server.get("api/cells?zoom=12&from=2026-11-24&to=2026-11-24").json
    assert len(boat_day["cells"]) > 50
    later = server.get("api/cells?zoom=12&from=2026-11-25&operator=510-01").json
    assert len(later["cells"]) == 2
    by_unit = server.get("api/cells?zoom=12&units=probe-2").json
    assert by_unit["operator"] == "510-01" and len(by_unit["cells"]) == 2
    assert server.get("api/cells?zoom=12&units=boat-1").json["operator"] == "510-10"


def test_a_technology_draws_the_cells_map_technology_draws(server, db):
    lte = server.get("api/cells?zoom=12&tech=LTE").json
    assert "LTE" in lte["technologies"]
    expected = {c.cell: c.coverage_class for c in coverage(db, 8, FiguresFilter(technology="LTE")).cells
                if c.operator == "510-10"}
    assert {c["cell"]: c["class"] for c in lte["cells"]} == expected
    assert all(row[0].startswith("LTE:") for row in (c["popup"][-1] for c in lte["cells"]))
    # No reading on it: only the readings without service are left, and they stay blank.
    unheard = server.get("api/cells?zoom=12&tech=NR5G-SA").json["cells"]
    assert unheard and {c["class"] for c in unheard} <= {"blank", "unknown"}


@pytest.mark.parametrize("query, message", [
    ("bbox=1,2,3", "bbox: '1,2,3' is not south,west,north,east"),
    ("bbox=0,10,-1,11", "need -90 <= south <= north"),
    ("zoom=99", "zoom: '99' is not a whole number from 0 to 22"),
    ("zoom=ten", "zoom: 'ten'"),
    ("from=2026-02-30", "from: '2026-02-30' is not a day as YYYY-MM-DD"),
    ("from=2026-11-25&to=2026-11-24", "from 2026-11-25 is after to 2026-11-24"),
    ("operator=510-99", "operator: no readings of '510-99'"),
    ("colour=red", "unknown parameter 'colour'"),
    ("zoom=3&zoom=4", "zoom: given 2 times"),
    ("units=a%20b", "units: 'a b' is not a unit id"),
])
def test_bad_parameters_are_a_400_that_says_what_is_wrong(server, query, message):
    reply = server.get(f"api/cells?{query}")
    assert reply.status == 400 and message in reply.json["error"], reply.json


def test_unknown_pages_and_writes_are_refused(server):
    assert server.get("api/nothing").status == 404
    assert server.get("api/cells", method="POST").status == 405
    assert server.get("api/tracks?operator=510-10").status == 400   # tracks are of every operator


# -- layers, places, fleet -------------------------------------------------------------------

def test_tracks_stretches_tags_and_places(server):
    tracks = server.get("api/tracks?zoom=12").json
    assert len(tracks["tracks"]) == 1 and tracks["layers"] == "kept" and tracks["left_out"] == 0
    coarse = server.get("api/tracks?zoom=8").json["tracks"][0]["line"]
    assert 2 <= len(coarse) < len(tracks["tracks"][0]["line"]), "simplified for the zoom"
    assert server.get("api/tracks?zoom=12&units=probe-2").json["tracks"] == []
    assert server.get("api/tracks?zoom=12&from=2026-11-25").json["tracks"] == []
    assert len(server.get("api/segments").json["segments"]) == 1
    assert len(server.get("api/segments?operator=510-01").json["segments"]) == 1
    assert server.get("api/segments?operator=510-01&bbox=0,100,1,101").json["segments"] == []
    tags = server.get("api/tags").json["tags"]
    assert sorted(t["label"] for t in tags) == ["", "kantor desa Muara Kaman"]
    places = {p["name"] for p in server.get("api/places").json["places"]}
    assert {"Samarinda", "Tenggarong", "Kota Bangun", "kantor desa Muara Kaman"} <= places
    near = {p["name"] for p in server.get("api/places?bbox=-0.52,117.1,-0.48,117.2").json["places"]}
    assert near == {"Samarinda"}


def test_fleet_lists_every_unit(server):
    units = {u["device"]: u for u in server.get("api/fleet").json["units"]}
    assert set(units) == {"boat-1", "probe-2"}
    assert units["probe-2"]["stored"] == 15 and units["probe-2"]["missing"] == 0
    overview = server.get("api/overview").json
    assert overview["units"] == ["boat-1", "probe-2"] and overview["default_operator"] == "510-10"
    assert overview["days"] == ["2026-11-24", "2026-11-27"]
    assert [o["key"] for o in overview["operators"]] == ["510-01", "510-10"]


# -- caching and the data's version ------------------------------------------------------------

def test_a_repeat_is_answered_from_memory_and_new_readings_are_seen(tmp_path, options):
    db = survey_db(tmp_path / "c.db", indosat_unit())
    with served(db, options) as s:
        first = s.get("api/cells?zoom=12&operator=510-01")
        assert s.get("api/cells?zoom=12&operator=510-01").body == first.body
        with open_store(db) as writer:  # a collector stores more
            writer.insert_readings([no_service("probe-2", seq, -0.18, 116.72, when=DAY_TWO) for seq in range(16, 24)])
            writer.refresh_tracks()  # as it does after a quiet moment
        after = s.get("api/cells?zoom=12&operator=510-01").json
        assert len(after["cells"]) == 3
        # The layers are made again too: 30 km further on, the new readings are a stretch of their own.
        assert len(s.get("api/segments?operator=510-01").json["segments"]) == 2


def test_the_version_is_asked_at_most_every_refresh_interval(tmp_path):
    db = survey_db(tmp_path / "c.db", indosat_unit())
    now = [0.0]
    live = LiveMap(lambda: open_store_readonly(db), ServeOptions(refresh_s=30, background=False),
                   clock=lambda: now[0])
    try:
        before = live.answer("/api/cells", "zoom=12&operator=510-01").body
        with open_store(db) as writer:
            writer.insert_readings([no_service("probe-2", 16, -0.18, 116.72, when=DAY_TWO)])
        now[0] = 29.0
        assert live.answer("/api/cells", "zoom=12&operator=510-01").body == before
        now[0] = 31.0
        assert live.answer("/api/cells", "zoom=12&operator=510-01").body != before
    finally:
        live.close()


def test_newer_data_is_summed_in_the_background_while_the_last_grid_answers(tmp_path):
    db = survey_db(tmp_path / "c.db", indosat_unit())
    live = LiveMap(lambda: open_store_readonly(db), ServeOptions(refresh_s=0, background=True))

    def cells() -> int:
        return len(json.loads(live.answer("/api/cells", "zoom=12&operator=510-01").body)["cells"])

    try:
        assert cells() == 2                     # the first grid is made while the request waits
        with open_store(db) as writer:
            writer.insert_readings([no_service("probe-2", seq, -0.18, 116.72, when=DAY_TWO) for seq in range(16, 24)])
        assert cells() == 2                     # the last grid answers at once
        live.settle(30)
        assert cells() == 3
    finally:
        live.close()


def test_requests_of_every_kind_at_once_all_finish(db):
    """A browser asks cells, layers and the fleet together; every answer comes, whatever the
    order the threads take the version and the store in."""
    live = LiveMap(lambda: open_store_readonly(db), ServeOptions(refresh_s=0, background=False))
    paths = ["/api/segments", "/api/tracks", "/api/cells", "/api/tags", "/api/fleet", "/api/overview"] * 8
    statuses: list[int] = []

    def ask(path: str) -> None:
        for zoom in (9, 11, 13):
            statuses.append(live.answer(path, "" if path in ("/api/fleet", "/api/overview") else f"zoom={zoom}").status)

    threads = [threading.Thread(target=ask, args=(path,), daemon=True) for path in paths]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    # Not closed when stuck: closing takes the store, which a stuck thread holds.
    assert not any(thread.is_alive() for thread in threads), "requests stuck waiting for each other"
    live.close()
    assert statuses == [200] * len(paths) * 3


# -- login -----------------------------------------------------------------------------------

def test_login_is_refused_then_accepted(tmp_path, db):
    users = tmp_path / "serve.users"
    set_user(users, "siti", "kukar-2026")
    set_user(users, "budi", "sungai")
    with served(db, login=Login(read_users(users))) as s:
        refused = s.get("api/cells")
        assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert s.get("", login=("siti", "wrong")).status == 401
        assert s.get("api/cells", login=("nobody", "kukar-2026")).status == 401
        assert s.get("metrics").status == 401
        assert s.get("api/cells", login=("siti", "kukar-2026")).status == 200
        assert s.get("", login=("budi", "sungai")).status == 200
        assert s.get("healthz").status == 200, "health checks need no login"


def test_users_file_keeps_only_salted_hashes(tmp_path):
    users = tmp_path / "serve.users"
    assert set_user(users, "siti", "kukar-2026") is True
    assert set_user(users, "siti", "baru") is False           # a new password, the same line
    text = users.read_text()
    assert "kukar-2026" not in text and "baru" not in text and text.count("siti:scrypt:") == 1
    assert users.stat().st_mode & 0o077 == 0
    login = Login(read_users(users))
    import base64
    assert login.user("Basic " + base64.b64encode(b"siti:baru").decode()) == "siti"
    assert login.user("Basic " + base64.b64encode(b"siti:kukar-2026").decode()) is None


def test_add_user_from_the_command_line(tmp_path, monkeypatch, capsys):
    users = tmp_path / "serve.users"
    monkeypatch.setattr(sys, "stdin", io.StringIO("rahasia\n"))
    assert main(["serve", "--login", str(users), "--add-user", "siti"]) == 0
    assert "added siti" in capsys.readouterr().out
    assert list(read_users(users)) == ["siti"]


@pytest.mark.parametrize("args, message", [
    (["--bind", "0.0.0.0"], "--bind 0.0.0.0 opens the map to the network: give --login FILE"),
    (["--port", "0"], "--port must be 1 to 65535"),
    (["--refresh", "soon"], "--refresh"),
    (["--login", "/nonexistent/users"], "cannot read /nonexistent/users"),
])
def test_serve_refuses_a_lan_server_without_login_and_other_mistakes(db, args, message, capsys):
    assert main(["serve", "--db", db, *args]) == 2
    assert message in capsys.readouterr().err


# -- read-only -------------------------------------------------------------------------------

def test_the_database_is_only_read(tmp_path, options):
    db = survey_db(tmp_path / "c.db", trip_with_tags())
    path = tmp_path / "c.db"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with served(db, options) as s:
        for page in ("", "api/overview", "api/cells?zoom=9", "api/tracks", "api/segments", "api/tags",
                     "api/places", "api/fleet", "healthz", "metrics"):
            assert s.get(page).status == 200, page
        with pytest.raises(StoreError, match="read-only"):
            s.live.store.insert_readings(trip_with_tags("intruder")[:3])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_no_database_is_created_where_there_is_none(tmp_path, capsys):
    assert main(["serve", "--db", str(tmp_path / "none.db")]) == 1
    assert "no SQLite database at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


postgres_url = postgres_url_fixture


def test_postgresql_is_served_read_only(request):
    postgres_url = request.getfixturevalue("postgres_url")
    with open_store(postgres_url) as writer:
        writer.insert_readings(indosat_unit())
    with served(postgres_url) as s:
        cells = s.get("api/cells?zoom=12").json
        assert cells["operator"] == "510-01" and len(cells["cells"]) == 2
        assert s.get("healthz").json["database"] == {"reachable": True, "schema_version": LATEST}
        with pytest.raises(StoreError, match="read-only"):
            s.live.store.insert_readings(indosat_unit())
        with s.live.store._reading() as conn, pytest.raises(Exception, match="read-only transaction"):
            conn.execute("DELETE FROM readings")


# -- health and metrics ----------------------------------------------------------------------

def test_healthz_says_what_the_operator_needs(server):
    reply = server.get("healthz")
    assert reply.status == 200
    health = reply.json
    assert health["status"] == "ok" and health["database"] == {"reachable": True, "schema_version": LATEST}
    assert health["figures"] == {"kept": True, "stale": None}
    assert health["readings"] == len(trip_with_tags()) + 15 and health["units"] == 2
    assert health["last_reading_received"].endswith("Z") and 0 <= health["last_reading_age_s"] < 600


def test_metrics_in_prometheus_text_format(server):
    server.get("api/cells?zoom=12")
    server.get("api/cells?zoom=99")
    reply = server.get("metrics")
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = reply.text
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    values = dict(line.rsplit(" ", 1) for line in lines)
    assert values["blankspot_readings_stored"] == str(len(trip_with_tags()) + 15)
    assert values["blankspot_units"] == "2" and values["blankspot_quarantined_total"] == "0"
    assert float(values['blankspot_unit_readings_stored{unit="probe-2"}']) == 15
    assert int(values['blankspot_serve_requests_total{route="/api/cells",status="200"}']) >= 1
    assert int(values['blankspot_serve_requests_total{route="/api/cells",status="400"}']) >= 1
    assert 'blankspot_serve_request_duration_seconds_bucket{route="/api/cells",le="+Inf"}' in values
    assert "# TYPE blankspot_serve_request_duration_seconds histogram" in text


def test_health_is_503_when_the_database_cannot_be_read(tmp_path):
    db = survey_db(tmp_path / "c.db", indosat_unit())
    with served(db) as s:
        s.live.store.close()
        reply = s.get("healthz")
        assert reply.status == 503 and reply.json["database"]["reachable"] is False
        assert "blankspot_database_up 0" in s.get("metrics").text


# -- the tracks the collector keeps ---------------------------------------------------------------

def test_the_kept_tracks_are_asked_per_request_as_the_collector_last_computed_them(tmp_path):
    db = survey_db(tmp_path / "c.db", trip_with_tags() + indosat_unit())
    with served(db) as s:
        answer = s.get("api/tracks?zoom=10&units=boat-1&from=2026-11-24").json
        assert answer["layers"] == "kept" and len(answer["tracks"]) == 1
        assert s.get("api/tracks?zoom=10&units=boat-1&from=2026-11-25").json["tracks"] == []
        assert len(s.get("api/tags").json["tags"]) == 2
        assert s.get("healthz").json["layers"] == "kept"
        with open_store(db) as writer:  # readings stored, their tracks not yet computed
            writer.insert_readings(trip_with_tags("boat-9"))
            assert s.get("api/tracks?zoom=10&units=boat-9").json["tracks"] == []
            writer.refresh_tracks()
        assert len(s.get("api/tracks?zoom=10&units=boat-9").json["tracks"]) == 1
