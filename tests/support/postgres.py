"""A real PostgreSQL for tests: the local server, or one started here, one schema per test.

The server is ``$BLANKSPOT_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
trust authentication).  When nothing answers there, the machine's own cluster is started
(``pg_ctlcluster``), or else a private one is made with ``initdb`` in a temporary folder on a
free port.  Each test gets a fresh schema (``search_path`` in the URL) dropped afterwards.
Without PostgreSQL the tests fail and say how to get it.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from agent.sim.broker import free_port

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
HOW_TO_GET_ONE = (
    "PostgreSQL is needed for these tests: install it (Debian: apt-get install postgresql; "
    "deploy/quickstart.sh test does), or point BLANKSPOT_TEST_POSTGRES at a server with trust "
    "authentication, e.g. postgresql://postgres@127.0.0.1:5432/test"
)


def _psycopg():
    try:
        import psycopg
    except ImportError:
        pytest.fail("psycopg is not installed: pip install -e '.[test]' (it brings psycopg[binary])")
    return psycopg


def _try(url: str) -> str | None:
    """None when a connection to ``url`` works; else why not."""
    psycopg = _psycopg()
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return None
    except psycopg.Error as exc:
        return " ".join(str(exc).split())


def _create_database(url: str) -> None:
    psycopg = _psycopg()
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _start_system_cluster() -> bool:
    if not shutil.which("pg_lsclusters") or not shutil.which("pg_ctlcluster"):
        return False
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True)
    started = False
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3] != "online":
            started |= subprocess.run(["pg_ctlcluster", fields[0], fields[1], "start"],
                                      capture_output=True).returncode == 0
    return started


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _start_private_cluster() -> str | None:
    """A throwaway server on a free port; its URL, or None when initdb is not installed."""
    initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
    if not initdb or not pg_ctl:
        return None
    folder = Path(tempfile.mkdtemp(prefix="blankspot-pg-"))
    data = folder / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            return None
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off", "start"],
                   check=True, capture_output=True)
    atexit.register(lambda: subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                                           capture_output=True))
    return f"postgresql://postgres@127.0.0.1:{port}/test"


_server_url: str | None = None


def server_url() -> str:
    """The URL of a reachable server with the test database; starts one when needed."""
    global _server_url
    if _server_url is not None:
        return _server_url
    url = os.environ.get("BLANKSPOT_TEST_POSTGRES", DEFAULT_URL)
    error = _try(url)
    if error and "does not exist" in error:
        _create_database(url)
        error = _try(url)
    if error and _start_system_cluster():
        _create_database(url)
        error = _try(url)
    if error:
        private = _start_private_cluster()
        if private is None:
            pytest.fail(f"{HOW_TO_GET_ONE}. Nothing answers at {url} ({error}) and initdb is not installed.")
        _create_database(private)
        url = private
    _server_url = url
    return url


def schema_url(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def postgres_url():
    """A URL whose tables live in a fresh schema of the test server, dropped afterwards."""
    psycopg = _psycopg()
    base = server_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield schema_url(base, schema)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path: Path) -> str:
    """The collector's database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/collector.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(db_url: str):
    """The store at ``db_url``, open, closed afterwards."""
    from agent.centre.store import open_store

    s = open_store(db_url)
    yield s
    s.close()
