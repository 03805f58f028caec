"""Schema migrations as ordered steps: the collector's database and the unit's buffer alike.

A database is at a version: the last step applied to it.  Opening it applies the steps above
that version in order, so a database made by an older blankspot is upgraded in place; a
database newer than the code refuses to open rather than being written with the wrong idea of
its columns.  Steps are append-only: once released, a step's SQL never changes; a change is a
new step.  Where each database keeps its version is its own affair (the collector's
``schema_version`` table, the buffer's ``PRAGMA user_version``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One step: its SQL for SQLite and, for a database that may live in PostgreSQL, for that."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...] = ()
    # Run after the SQL, in the same transaction, for what SQL alone cannot compute:
    # ``build(run, stream)``, ``run(sql, params) -> rows`` and ``stream(sql, params) -> rows``
    # (read in steps), both with ``?`` placeholders.
    build: Callable[[Any, Any], None] | None = None

    def statements(self, backend: str) -> tuple[str, ...]:
        return self.sqlite if backend == "sqlite" else self.postgres


def pending_steps(current: int, steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The steps to apply to a database at ``current``; raises ``ValueError`` if it is newer."""
    known = steps[-1].version if steps else 0
    if current > known:
        raise ValueError(
            f"database schema version {current} is newer than this blankspot knows ({known}): "
            "upgrade blankspot on this machine, or use another database"
        )
    return tuple(step for step in steps if step.version > current)
