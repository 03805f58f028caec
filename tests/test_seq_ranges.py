"""Seq ranges: sets of seq numbers kept as sorted, disjoint, non-adjacent inclusive ranges.

Each function is specified twice: by a table of small cases a reader can check by eye, and
by a property against Python's own sets (the ranges must mean exactly the set they stand for,
and every result must be in normal form).
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.shared import seq_ranges
from agent.shared.seq_ranges import Range


def seqs_of(ranges: list[Range]) -> set[int]:
    return {seq for first, last in ranges for seq in range(first, last + 1)}


def is_normal(ranges: list[Range]) -> bool:
    """Sorted, each range non-empty, and a gap of at least one seq between neighbours."""
    return (all(first <= last for first, last in ranges)
            and all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:])))


# -- normalize ---------------------------------------------------------------------------

@pytest.mark.parametrize("ranges, expected", [
    # empty input and empty ranges first
    ([], []),
    ([(5, 4)], []),                                   # last < first: empty, vanishes
    ([(5, 4), (1, 1)], [(1, 1)]),
    # already normal
    ([(1, 3)], [(1, 3)]),
    ([(1, 3), (5, 9)], [(1, 3), (5, 9)]),
    # out of order
    ([(5, 9), (1, 3)], [(1, 3), (5, 9)]),
    # touching ranges merge: 3 and 4 are neighbours
    ([(1, 3), (4, 9)], [(1, 9)]),
    # overlapping and contained ranges merge
    ([(1, 5), (3, 9)], [(1, 9)]),
    ([(1, 9), (3, 4)], [(1, 9)]),
    ([(3, 4), (1, 9)], [(1, 9)]),
    # repeats
    ([(2, 2), (2, 2), (2, 2)], [(2, 2)]),
    # a chain that only merges through a later range
    ([(1, 2), (6, 7), (3, 5)], [(1, 7)]),
])
def test_normalize(ranges: list[Range], expected: list[Range]) -> None:
    assert seq_ranges.normalize(ranges) == expected


# -- from_seqs ---------------------------------------------------------------------------

@pytest.mark.parametrize("seqs, expected", [
    ([], []),
    ([7], [(7, 7)]),
    ([1, 2, 3], [(1, 3)]),
    ([3, 1, 2], [(1, 3)]),                            # any order
    ([1, 1, 2, 2, 2], [(1, 2)]),                      # repeats allowed
    ([1, 2, 4, 5, 7], [(1, 2), (4, 5), (7, 7)]),
    (range(1, 10_001), [(1, 10_000)]),                # a long run is one range
])
def test_from_seqs(seqs, expected: list[Range]) -> None:
    assert seq_ranges.from_seqs(seqs) == expected


# -- union, subtract, intersect ----------------------------------------------------------

@pytest.mark.parametrize("a, b, union, subtract, intersect", [
    # a         b                   a | b               a - b                      a & b
    ([],        [],                 [],                 [],                        []),
    ([(1, 5)],  [],                 [(1, 5)],           [(1, 5)],                  []),
    ([],        [(1, 5)],           [(1, 5)],           [],                        []),
    ([(1, 5)],  [(1, 5)],           [(1, 5)],           [],                        [(1, 5)]),
    ([(1, 5)],  [(6, 9)],           [(1, 9)],           [(1, 5)],                  []),     # touching
    ([(1, 5)],  [(7, 9)],           [(1, 5), (7, 9)],   [(1, 5)],                  []),
    ([(1, 9)],  [(3, 4)],           [(1, 9)],           [(1, 2), (5, 9)],          [(3, 4)]),
    ([(1, 9)],  [(1, 1)],           [(1, 9)],           [(2, 9)],                  [(1, 1)]),
    ([(1, 9)],  [(9, 9)],           [(1, 9)],           [(1, 8)],                  [(9, 9)]),
    ([(1, 9)],  [(0, 20)],          [(0, 20)],          [],                        [(1, 9)]),
    ([(3, 7)],  [(1, 4), (6, 9)],   [(1, 9)],           [(5, 5)],                  [(3, 4), (6, 7)]),
    ([(1, 3), (5, 7), (9, 11)],
                [(2, 10)],          [(1, 11)],          [(1, 1), (11, 11)],        [(2, 3), (5, 7), (9, 10)]),
    # inputs need not be normal: unsorted, overlapping, empty ranges
    ([(5, 7), (1, 6)], [(4, 2), (3, 3)], [(1, 7)],      [(1, 2), (4, 7)],          [(3, 3)]),
])
def test_set_operations(a: list[Range], b: list[Range], union: list[Range], subtract: list[Range],
                        intersect: list[Range]) -> None:
    assert seq_ranges.union(a, b) == union
    assert seq_ranges.subtract(a, b) == subtract
    assert seq_ranges.intersect(a, b) == intersect


# -- gaps --------------------------------------------------------------------------------

@pytest.mark.parametrize("ranges, low, high, expected", [
    ([], 1, None, []),                                # nothing held: nothing known to be missing
    ([], 1, 5, [(1, 5)]),
    ([(1, 10)], 1, None, []),
    ([(3, 10)], 1, None, [(1, 2)]),                   # missing from the start
    ([(1, 3), (7, 9)], 1, None, [(4, 6)]),
    ([(1, 3), (7, 9)], 1, 12, [(4, 6), (10, 12)]),   # high beyond the highest held
    ([(1, 3), (7, 9)], 5, None, [(5, 6)]),           # low cuts the start
    ([(1, 3), (7, 9)], 1, 5, [(4, 5)]),              # high cuts the end
    ([(5, 9)], 3, None, [(3, 4)]),
    ([(1, 3)], 5, 4, []),                             # an empty window
])
def test_gaps(ranges: list[Range], low: int, high: int | None, expected: list[Range]) -> None:
    assert seq_ranges.gaps(ranges, low, high) == expected


# -- count, contains ---------------------------------------------------------------------

@pytest.mark.parametrize("ranges, expected", [
    ([], 0),
    ([(5, 5)], 1),
    ([(1, 10)], 10),
    ([(1, 3), (7, 9)], 6),
    ([(1, 2**62)], 2**62),                            # counted, not enumerated
])
def test_count(ranges: list[Range], expected: int) -> None:
    assert seq_ranges.count(ranges) == expected


@pytest.mark.parametrize("ranges, inside, outside", [
    ([], [], [0, 1, 5]),
    ([(5, 5)], [5], [4, 6]),
    ([(1, 3), (7, 9), (20, 30)], [1, 2, 3, 7, 9, 20, 25, 30], [0, 4, 6, 10, 19, 31, 10**12]),
    ([(1, 2**62)], [1, 2**61, 2**62], [0, 2**62 + 1]),
])
def test_contains(ranges: list[Range], inside: list[int], outside: list[int]) -> None:
    assert all(seq_ranges.contains(ranges, seq) for seq in inside)
    assert not any(seq_ranges.contains(ranges, seq) for seq in outside)


# -- text --------------------------------------------------------------------------------

@pytest.mark.parametrize("ranges, most, expected", [
    ([], 5, "none"),
    ([(7, 7)], 5, "7"),
    ([(12, 40), (77, 77), (90, 95)], 5, "12-40, 77, 90-95"),
    ([(1, 1), (3, 3), (5, 5), (7, 7), (9, 9)], 5, "1, 3, 5, 7, 9"),           # exactly `most`: no tail
    ([(1, 1), (3, 3), (5, 5), (7, 7), (9, 9), (11, 11)], 5, "1, 3, 5, 7, 9, and 1 more ranges"),
    ([(1, 2), (4, 5), (7, 8)], 1, "1-2, and 2 more ranges"),
])
def test_text(ranges: list[Range], most: int, expected: str) -> None:
    assert seq_ranges.text(ranges, most) == expected


# -- properties against Python sets ------------------------------------------------------

small_sets = st.sets(st.integers(-3, 40), max_size=30)
raw_ranges = st.lists(st.tuples(st.integers(-3, 40), st.integers(-3, 40)), max_size=8)  # empty ones included


def raw_seqs(ranges: list[Range]) -> set[int]:
    return {seq for first, last in ranges for seq in range(first, last + 1)}


@given(small_sets)
def test_from_seqs_means_the_set(seqs: set[int]) -> None:
    ranges = seq_ranges.from_seqs(seqs)
    assert is_normal(ranges) and seqs_of(ranges) == seqs


@given(raw_ranges)
def test_normalize_means_the_same_set(ranges: list[Range]) -> None:
    normal = seq_ranges.normalize(ranges)
    assert is_normal(normal) and seqs_of(normal) == raw_seqs(ranges)
    assert normal == seq_ranges.from_seqs(raw_seqs(ranges)), "one set, one normal form"
    assert seq_ranges.normalize(normal) == normal


@given(raw_ranges, raw_ranges)
def test_set_operations_agree_with_sets(a: list[Range], b: list[Range]) -> None:
    sa, sb = raw_seqs(a), raw_seqs(b)
    for result, expected in ((seq_ranges.union(a, b), sa | sb),
                             (seq_ranges.subtract(a, b), sa - sb),
                             (seq_ranges.intersect(a, b), sa & sb)):
        assert is_normal(result) and seqs_of(result) == expected


@given(raw_ranges, st.integers(-3, 45), st.none() | st.integers(-3, 45))
def test_gaps_agree_with_sets(ranges: list[Range], low: int, high: int | None) -> None:
    held = raw_seqs(ranges)
    top = high if high is not None else (max(held) if held else low - 1)
    result = seq_ranges.gaps(ranges, low, high)
    assert is_normal(result) and seqs_of(result) == set(range(low, top + 1)) - held


@given(small_sets, st.integers(-5, 45))
def test_count_and_contains_agree_with_sets(seqs: set[int], probe: int) -> None:
    ranges = seq_ranges.from_seqs(seqs)
    assert seq_ranges.count(ranges) == len(seqs)
    assert seq_ranges.contains(ranges, probe) == (probe in seqs)
    assert all(seq_ranges.contains(ranges, seq) for seq in seqs)


@settings(max_examples=50)
@given(small_sets, st.integers(1, 6))
def test_text_names_the_first_ranges_and_counts_the_rest(seqs: set[int], most: int) -> None:
    ranges = seq_ranges.from_seqs(seqs)
    words = seq_ranges.text(ranges, most).split(", ")
    if not ranges:
        assert words == ["none"]
    elif len(ranges) <= most:
        assert len(words) == len(ranges)
    else:
        assert len(words) == most + 1 and words[-1] == f"and {len(ranges) - most} more ranges"
