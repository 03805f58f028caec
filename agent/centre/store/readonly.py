"""The collector's database opened for reading only: what ``blankspot serve`` uses.

:func:`open_store_readonly` never creates, upgrades or writes the database: SQLite is opened
with ``mode=ro`` and ``PRAGMA query_only``, PostgreSQL sessions with
``default_transaction_read_only``, so a bug in a reader cannot change what the collectors
store.  The schema must already be this blankspot's (a collector, or any writing command,
upgrades it); an older or newer one is a :class:`~agent.centre.store.base.StoreError`.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agent.centre.coverage import has_grid_library
from agent.centre.store import schema
from agent.centre.store.base import (
    CommitResult, SchemaTooNew, Store, StoreError, Work, parse_db_url,
)
from agent.centre.store.sqlite import BUSY_TIMEOUT_MS, SqliteStore

READ_ONLY = "opened read-only: nothing can be written through it"


def _check_version(version: int, where: str) -> None:
    if version > schema.LATEST:
        raise SchemaTooNew(f"{where}: schema version {version} is newer than this blankspot knows ({schema.LATEST}):"
                           " upgrade blankspot")
    if version == 0:
        raise StoreError(f"{where}: not a blankspot collector database (no schema version)")
    if version < schema.LATEST:
        raise StoreError(f"{where}: schema version {version} is older than this blankspot's ({schema.LATEST}):"
                         " start the collector (or 'blankspot aggregate --rebuild') once to upgrade it")


class ReadOnlySqliteStore(SqliteStore):
    """A SQLite collector database, read only (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        # Not SqliteStore.__init__: that one switches to WAL and migrates, both writes.
        self.path = Path(path)
        self._closed = False
        self.url = f"sqlite:///{self.path.resolve().as_posix().lstrip('/')}"
        if not self.path.is_file():
            raise StoreError(f"no SQLite database at {self.path}")
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                       timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path} for reading: {exc}") from None
        try:
            self._db.execute("PRAGMA query_only = ON")
            rows = self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchall()
            version = self._db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0] \
                if rows else 0
            _check_version(version, str(self.path))
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot read SQLite database {self.path}: {exc}") from None
        except StoreError:
            self._db.close()
            raise
        self._ledger = self._figures = self._totals = self._periods = self._kept_tracks = self._sms = True
        self._grid = has_grid_library()

    def commit(self, work: Work, collector: str = "") -> CommitResult:
        raise StoreError(f"SQLite database {self.path} {READ_ONLY}")

    def rebuild_figures(self, progress: Any = None) -> int:
        raise StoreError(f"SQLite database {self.path} {READ_ONLY}")

    def refresh_tracks(self, units: int | None = None, progress: Any = None) -> int:
        return 0  # the collectors bring the kept tracks up to date; a reader takes them as they are

    def refresh_periods(self, periods: int | None = None) -> int:
        return 0  # as the kept tracks: the collectors sum the days and months


def _postgres_class() -> Any:
    from agent.centre.store.postgres import PostgresStore

    class ReadOnlyPostgresStore(PostgresStore):
        """A PostgreSQL collector database, read only: every transaction of its session is."""

        def __init__(self, url: str) -> None:
            super().__init__(url)

        def _connect(self) -> None:
            self._params["application_name"] = "blankspot-serve"
            options = self._params.get("options", "")
            if "default_transaction_read_only" not in options:
                self._params["options"] = (options + " -c default_transaction_read_only=on").strip()
            super()._connect()

        def _migrate(self, steps: Any) -> None:
            self._ledger = self._figures = self._totals = self._periods = self._kept_tracks = self._sms = True
            self._grid = has_grid_library()
            conn = self._conn
            exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
            version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0] \
                if exists else 0
            _check_version(version, self.url)

        def commit(self, work: Work, collector: str = "") -> CommitResult:
            raise StoreError(f"PostgreSQL {self.url} {READ_ONLY}")

        def rebuild_figures(self, progress: Any = None) -> int:
            raise StoreError(f"PostgreSQL {self.url} {READ_ONLY}")

        def refresh_tracks(self, units: int | None = None, progress: Any = None) -> int:
            return 0  # as the SQLite reader's

        def refresh_periods(self, periods: int | None = None) -> int:
            return 0

    return ReadOnlyPostgresStore


def open_store_readonly(url: str) -> Store:
    """The collector database at ``url``, for reading only; raises ``StoreUrlError`` for a bad
    URL and ``StoreError`` when there is no usable database there."""
    parsed = parse_db_url(url)
    if parsed.backend == "sqlite":
        return ReadOnlySqliteStore(parsed.target)
    return _postgres_class()(parsed.target)
