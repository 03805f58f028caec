"""The collector's database: :func:`open_store` opens one from a URL; the interface, its
errors and the URL forms are in :mod:`agent.centre.store.base`."""
from __future__ import annotations

from agent.centre.store.base import Store, parse_db_url


def open_store(url: str) -> Store:
    """Open (create, upgrade) the database at ``url``; see :mod:`agent.centre.store.base`."""
    parsed = parse_db_url(url)
    if parsed.backend == "sqlite":
        from agent.centre.store.sqlite import SqliteStore

        return SqliteStore(parsed.target)
    from agent.centre.store.postgres import PostgresStore

    return PostgresStore(parsed.target)
