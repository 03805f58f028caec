"""SQL written for many rows at once, through a store's ``run(sql, params) -> rows`` (``?``
placeholders): one statement per chunk instead of one per row, which is one round trip on
PostgreSQL and one step of the SQLite engine's parse-and-bind work."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
# insert(table, columns, rows, conflict) -> what the statements return: insert_rows, or a
# store's faster way for many rows (PostgreSQL's COPY).
Insert = Callable[[str, Sequence[str], Sequence[Sequence[Any]], str], list[tuple[Any, ...]]]

PARAMETERS = 8000  # per statement: well within SQLite's 32766 and PostgreSQL's 65535


def insert_rows(run: Run, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], conflict: str = ""
                ) -> list[tuple[Any, ...]]:
    """``INSERT`` ``rows`` into ``table`` in chunks, each statement ending with ``conflict``
    (an ``ON CONFLICT`` clause, a ``RETURNING``); returns what they return."""
    returned: list[tuple[Any, ...]] = []
    per = max(1, PARAMETERS // len(columns))
    one = f"({', '.join('?' * len(columns))})"
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        returned += run(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(chunk))}"
                        + (f" {conflict}" if conflict else ""), [v for row in chunk for v in row])
    return returned


def inserter(run: Run) -> Insert:
    """:func:`insert_rows` through ``run``, as an :data:`Insert`."""
    return lambda table, columns, rows, conflict="": insert_rows(run, table, columns, rows, conflict)


def one_of(column: str, words: Iterable[str]) -> str:
    """``column IN ('a', 'b')`` for words of the reading's schema, sorted: the same text every
    time, as a query must be to use a partial index that has it."""
    words = sorted(words)
    if not words or not all(re.fullmatch(r"[a-z_]+", word) for word in words):
        raise ValueError(f"not words of the schema: {words!r}")
    return f"{column} IN ({', '.join(repr(word) for word in words)})"
