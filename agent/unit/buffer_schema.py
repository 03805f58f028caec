"""The reading buffer's schema, as ordered steps (:mod:`agent.shared.migrations`), SQLite only.

The step a buffer file is at is kept in its header, SQLite's ``PRAGMA user_version``.  Files
written before that was kept are at ``user_version`` 0; the columns of their ``readings`` say
which of the three layouts of that time they have (before clock correction, before
confirmations, with confirmations), that is which step they are at.

Steps are append-only: once released, a step's SQL never changes; a change is a new step.
The ``meta`` rows are not part of a step: the buffer adds those it lacks each time it opens.
"""
from __future__ import annotations

import sqlite3

from agent.shared.migrations import Step, pending_steps

STEPS: tuple[Step, ...] = (
    Step(
        1,
        "readings and counters",
        sqlite=(
            "CREATE TABLE readings (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, time TEXT NOT NULL,"
            " body TEXT NOT NULL, delivered_at REAL)",
            # WITHOUT ROWID: one b-tree, so bumping next_seq writes one page per commit, not two.
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID",
            "CREATE INDEX readings_pending ON readings(seq) WHERE delivered_at IS NULL",
        ),
    ),
    Step(
        2,
        "clock correction: the boot and boottime of readings taken before the clock was trusted",
        sqlite=(
            "ALTER TABLE readings ADD COLUMN boot TEXT",
            "ALTER TABLE readings ADD COLUMN boottime REAL",
            "CREATE INDEX readings_unsynced ON readings(boot) WHERE boot IS NOT NULL",
        ),
    ),
    Step(
        3,
        "confirmations by the centre",
        sqlite=(
            "ALTER TABLE readings ADD COLUMN confirmed_at REAL",
            "ALTER TABLE readings ADD COLUMN confirmed_odo REAL",
            # What the broker acknowledged before confirmations existed counts as confirmed
            # (sending a month of it again would cost a village SIM its quota); the centre's
            # confirmations re-open whatever it turns out not to hold.
            "UPDATE readings SET confirmed_at = delivered_at, confirmed_odo = 0 WHERE delivered_at IS NOT NULL",
            "CREATE INDEX readings_unconfirmed ON readings(seq) WHERE confirmed_at IS NULL",
        ),
    ),
    Step(
        4,
        "one index for readings not yet confirmed: the pending ones are among them",
        sqlite=(
            # A pending reading is never confirmed, so readings_unconfirmed finds the pending
            # ones too (queries ask for both conditions); an append then writes one index
            # page instead of two.
            "DROP INDEX readings_pending",
        ),
    ),
)

LATEST = STEPS[-1].version


def version_of(conn: sqlite3.Connection) -> int:
    """The step the buffer file on ``conn`` is at: 0 for a file without a buffer in it."""
    return conn.execute("PRAGMA user_version").fetchone()[0] or _version_by_columns(conn)


def _version_by_columns(conn: sqlite3.Connection) -> int:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(readings)")}
    if not columns:
        return 0
    if "confirmed_at" in columns:
        return 3
    if "boot" in columns:
        return 2
    return 1


def pending(conn: sqlite3.Connection) -> tuple[Step, ...]:
    """The steps the file on ``conn`` lacks; raises ``ValueError`` when it is newer than this code."""
    return pending_steps(version_of(conn), STEPS)


def upgrade(conn: sqlite3.Connection, todo: tuple[Step, ...]) -> None:
    """Apply ``todo`` (what :func:`pending` gave) and record the file's version; call it in a transaction."""
    for step in todo:
        for statement in step.statements("sqlite"):
            conn.execute(statement)
    # Also for a file adopted by its columns with no step to apply: its version is kept from now on.
    if conn.execute("PRAGMA user_version").fetchone()[0] != LATEST:
        conn.execute(f"PRAGMA user_version = {LATEST}")
