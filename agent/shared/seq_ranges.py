"""Sets of seq numbers as sorted, disjoint, non-adjacent inclusive ranges ``[(first, last), ...]``.

A unit's readings are numbered 1, 2, 3, ...; what the centre holds, what a unit dropped and
what a confirmation covers are long runs with few gaps, so they are kept and sent as ranges.
Every function here is pure and returns ranges in that normal form.
"""
from __future__ import annotations

from typing import Iterable

Range = tuple[int, int]


def normalize(ranges: Iterable[Range]) -> list[Range]:
    """Sort and merge overlapping or touching ranges; empty ranges (last < first) vanish."""
    merged: list[Range] = []
    for first, last in sorted(r for r in ranges if r[1] >= r[0]):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def from_seqs(seqs: Iterable[int]) -> list[Range]:
    """The ranges of a collection of seqs (any order, repeats allowed)."""
    out: list[Range] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def union(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    return normalize([*a, *b])


def subtract(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    """Seqs in ``a`` and not in ``b``."""
    cut = normalize(b)
    out: list[Range] = []
    for first, last in normalize(a):
        start = first
        for c_first, c_last in cut:
            if c_last < start:
                continue
            if c_first > last:
                break
            if c_first > start:
                out.append((start, c_first - 1))
            start = max(start, c_last + 1)
            if start > last:
                break
        if start <= last:
            out.append((start, last))
    return out


def intersect(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    a_n = normalize(a)
    return subtract(a_n, subtract(a_n, b))


def gaps(ranges: Iterable[Range], low: int = 1, high: int | None = None) -> list[Range]:
    """What is missing from ``ranges`` between ``low`` and ``high`` (default: the highest seq held)."""
    held = normalize(ranges)
    if high is None:
        high = held[-1][1] if held else low - 1
    return subtract([(low, high)], held)


def count(ranges: Iterable[Range]) -> int:
    return sum(last - first + 1 for first, last in ranges)


def contains(ranges: list[Range], seq: int) -> bool:
    """Whether ``seq`` is in normalized ``ranges`` (binary search)."""
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] < seq:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= seq


def text(ranges: Iterable[Range], most: int = 5) -> str:
    """``"12-40, 77, 90-95"`` for log lines; long lists are cut with a count of the rest."""
    items = list(ranges)
    words = [f"{a}" if a == b else f"{a}-{b}" for a, b in items[:most]]
    if len(items) > most:
        words.append(f"and {len(items) - most} more ranges")
    return ", ".join(words) if words else "none"
