"""The confirmation payload: what the centre's database holds of one unit's readings.

``<prefix>/<device>/confirm``, published (retained) by the collectors and read by the unit.
A unit acts on it by marking readings confirmed and re-opening those the centre lacks, so a
payload it cannot trust must be refused whole, with :class:`PayloadError` saying why, and
never with any other exception.  Bad payloads first.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.shared import seq_ranges
from agent.shared.protocol import (
    CONFIRM_SCHEMA, MAX_CONFIRM_BYTES, MAX_CONFIRM_HOLES, Confirmation, PayloadError, confirm_topic,
    decode_confirmation, encode_confirmation, split_topic,
)

BIG = 2**63  # the first number a 64-bit database column cannot hold


def payload(**fields) -> bytes:
    """A confirmation payload; a field given as ``...`` is left out."""
    body = {"schema": CONFIRM_SCHEMA, "device": "unit-1", "rev": 3, "upto": 10, "top": 20, "holes": [[12, 13]]}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def holes_payload(n: int) -> bytes:
    """``n`` one-seq holes 2, 4, 6, ... above upto 0."""
    return payload(upto=0, top=2 * n + 1, holes=[[2 * i, 2 * i] for i in range(1, n + 1)])


def padded(body: bytes, size: int) -> bytes:
    """The same JSON, padded with spaces to ``size`` bytes."""
    return body[:-1] + b" " * (size - len(body)) + b"}"


# -- bad payloads ----------------------------------------------------------------------

BAD = [
    # not JSON at all
    (b"", "not JSON"),
    (b"\xff\xfe\xfa", "not JSON"),
    (b"{", "not JSON"),
    (b"confirm rev 3", "not JSON"),
    (b"[" * 4000 + b"]" * 4000, "not JSON"),                       # nested deeper than the parser goes
    (payload()[:-1] + b',"rev":' + b"9" * 5000 + b"}", "not JSON: Exceeds the limit"),  # a 5000-digit number
    # JSON, but not a confirmation
    (b"null", "expected an object with schema 'blankspot.confirm/1'"),
    (b"[]", "expected an object with schema"),
    (b'"blankspot.confirm/1"', "expected an object with schema"),
    (payload(schema=...), "expected an object with schema"),
    (payload(schema="blankspot.confirm/2"), "expected an object with schema"),
    (payload(schema="blankspot.batch/1"), "expected an object with schema"),
    # device
    (payload(device=...), "device: expected a device id, got None"),
    (payload(device=""), "device: expected a device id, got ''"),
    (payload(device="unit 1"), "device: expected a device id"),
    (payload(device="unit-1/confirm"), "device: expected a device id"),
    (payload(device="u" * 65), "device: expected a device id"),
    (payload(device=7), "device: expected a device id, got 7"),
    # rev: from 1
    (payload(rev=...), "rev: expected a whole number from 1, got None"),
    (payload(rev=0), "rev: expected a whole number from 1, got 0"),
    (payload(rev=-1), "rev: expected a whole number from 1, got -1"),
    (payload(rev=3.0), "rev: expected a whole number from 1, got 3.0"),
    (payload(rev=True), "rev: expected a whole number from 1, got True"),      # bool is not a number here
    (payload(rev="3"), "rev: expected a whole number from 1, got '3'"),
    (payload(rev=BIG), f"rev: expected a whole number from 1, got {BIG}"),
    (payload(rev=10**30), "rev: expected a whole number"),
    (payload()[:-1] + b',"rev":1e400}', "rev: expected a whole number from 1, got inf"),
    (payload()[:-1] + b',"rev":NaN}', "rev: expected a whole number from 1, got nan"),
    # upto and top: from 0
    (payload(upto=...), "upto: expected a whole number from 0, got None"),
    (payload(upto=-1), "upto: expected a whole number from 0, got -1"),
    (payload(upto=10.5), "upto: expected a whole number from 0, got 10.5"),
    (payload(upto=False), "upto: expected a whole number from 0, got False"),
    (payload(upto=BIG), "upto: expected a whole number from 0"),
    (payload(top=...), "top: expected a whole number from 0, got None"),
    (payload(top=-20), "top: expected a whole number from 0, got -20"),
    (payload(top=[20]), r"top: expected a whole number from 0, got \[20\]"),
    (payload(top=BIG), "top: expected a whole number from 0"),
    # holes: a list of [first, last] pairs
    (payload(holes=...), "holes: expected a list of at most 64"),
    (payload(holes={"12": 13}), "holes: expected a list of at most 64"),
    (payload(holes="12-13"), "holes: expected a list of at most 64"),
    (payload(holes=[12, 13]), r"holes\[0\]: expected \[first, last\]"),                  # not pairs
    (payload(holes=[[12]]), r"holes\[0\]: expected \[first, last\] .* got \[12\]"),
    (payload(holes=[[12, 13, 14]]), r"holes\[0\]: .* got \[12, 13, 14\]"),
    (payload(holes=[["12", "13"]]), r"holes\[0\]: .* got \['12', '13'\]"),
    (payload(holes=[[12.0, 13]]), r"holes\[0\]: .* got \[12.0, 13\]"),
    (payload(holes=[[True, 13]]), r"holes\[0\]: .* got \[True, 13\]"),
    (payload(holes=[{"first": 12, "last": 13}]), r"holes\[0\]: expected \[first, last\]"),
    # holes: ascending, disjoint, not touching, above upto, up to top
    (payload(holes=[[13, 12]]), r"holes\[0\]: expected \[first, last\] ascending"),    # first > last
    (payload(holes=[[15, 16], [12, 13]]), r"holes\[1\]: .* got \[12, 13\]"),          # not ascending
    (payload(holes=[[12, 15], [14, 16]]), r"holes\[1\]: .* got \[14, 16\]"),          # overlapping
    (payload(holes=[[12, 13], [12, 13]]), r"holes\[1\]: .* got \[12, 13\]"),          # repeated
    (payload(holes=[[12, 13], [14, 15]]), r"holes\[1\]: .* got \[14, 15\]"),          # adjacent: one hole, [12, 15]
    (payload(holes=[[10, 12]]), r"holes\[0\]: .* above upto .* got \[10, 12\]"),      # upto itself is covered
    (payload(holes=[[5, 6]]), r"holes\[0\]: .* above upto .* got \[5, 6\]"),          # below upto
    (payload(holes=[[18, 21]]), r"holes\[0\]: .* up to top, got \[18, 21\]"),         # past top
    (payload(holes=[[21, 22]]), r"holes\[0\]: .* up to top, got \[21, 22\]"),         # above top
    (payload(upto=0, top=0, holes=[[1, 1]]), r"holes\[0\]: .* got \[1, 1\]"),
    (payload(holes=[[12, BIG]]), r"holes\[0\]: "),
    (holes_payload(MAX_CONFIRM_HOLES + 1), "holes: expected a list of at most 64 .first, last. pairs"),
    # the topic names another unit
    (payload(device="unit-2"), "confirmation device 'unit-2' does not match topic device 'unit-1'"),
    # size: checked before parsing
    (padded(payload(), MAX_CONFIRM_BYTES + 1), f"confirmation of {MAX_CONFIRM_BYTES + 1} bytes exceeds 8192"),
    (b"x" * 1_000_000, "confirmation of 1000000 bytes exceeds 8192"),
]


@pytest.mark.parametrize("raw, message", BAD)
def test_bad_confirmations_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message) as caught:
        decode_confirmation(raw, "unit-1")
    assert type(caught.value) is PayloadError
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__), \
        "one line for the log, not the parser's traceback"


def test_a_payload_over_the_size_limit_is_not_even_parsed() -> None:
    with pytest.raises(PayloadError, match="exceeds"):
        decode_confirmation(b"{" * (MAX_CONFIRM_BYTES + 1))


# -- good payloads ---------------------------------------------------------------------

GOOD = [
    # nothing held yet: rev 1 says nothing about any seq
    (payload(rev=1, upto=0, top=0, holes=[]), Confirmation("unit-1", 1, 0, 0, ())),
    # everything up to 500 held or settled
    (payload(upto=500, top=500, holes=[]), Confirmation("unit-1", 3, 500, 500, ())),
    # upto only: nothing stored above it (top may lie below upto when the rest is settled)
    (payload(upto=500, top=0, holes=[]), Confirmation("unit-1", 3, 500, 0, ())),
    (payload(upto=500, top=120, holes=[]), Confirmation("unit-1", 3, 500, 120, ())),
    # a run from 1 is missing
    (payload(upto=0, top=20, holes=[[1, 4]]), Confirmation("unit-1", 3, 0, 20, ((1, 4),))),
    # holes right above upto and right up to top
    (payload(upto=10, top=20, holes=[[11, 11], [20, 20]]), Confirmation("unit-1", 3, 10, 20, ((11, 11), (20, 20)))),
    # one seq between two holes
    (payload(holes=[[12, 13], [15, 16]]), Confirmation("unit-1", 3, 10, 20, ((12, 13), (15, 16)))),
    # key order and spacing do not matter
    (b'{ "holes": [ [12,13] ], "top": 20, "upto": 10, "rev": 3, "device": "unit-1", "schema": "blankspot.confirm/1" }',
     Confirmation("unit-1", 3, 10, 20, ((12, 13),))),
    # the largest numbers a database column holds
    (payload(rev=BIG - 1, upto=BIG - 3, top=BIG - 1, holes=[[BIG - 2, BIG - 2]]),
     Confirmation("unit-1", BIG - 1, BIG - 3, BIG - 1, ((BIG - 2, BIG - 2),))),
    # exactly MAX_CONFIRM_HOLES holes
    (holes_payload(MAX_CONFIRM_HOLES),
     Confirmation("unit-1", 3, 0, 2 * MAX_CONFIRM_HOLES + 1, tuple((2 * i, 2 * i) for i in range(1, 65)))),
    # exactly MAX_CONFIRM_BYTES bytes
    (padded(payload(), MAX_CONFIRM_BYTES), Confirmation("unit-1", 3, 10, 20, ((12, 13),))),
]


@pytest.mark.parametrize("raw, expected", GOOD)
def test_good_confirmations(raw: bytes, expected: Confirmation) -> None:
    assert decode_confirmation(raw, "unit-1") == expected
    assert decode_confirmation(raw) == expected, "without a topic to compare, the payload's device stands"


@pytest.mark.parametrize("raw, expected", GOOD)
def test_what_a_collector_encodes_a_unit_decodes(raw: bytes, expected: Confirmation) -> None:
    encoded = encode_confirmation(expected)
    assert decode_confirmation(encoded, expected.device) == expected
    assert len(encoded) <= MAX_CONFIRM_BYTES


def test_the_encoded_form() -> None:
    encoded = encode_confirmation(Confirmation("unit-1", 7, 10, 20, ((12, 13), (15, 15))))
    assert encoded == (b'{"schema":"blankspot.confirm/1","device":"unit-1","rev":7,"upto":10,"top":20,'
                       b'"holes":[[12,13],[15,15]]}')


def test_the_confirm_topic() -> None:
    assert confirm_topic("blankspot/v1", "unit-1") == "blankspot/v1/unit-1/confirm"
    with pytest.raises(PayloadError, match="expected blankspot/v1/<device>/readings or /status"):
        split_topic("blankspot/v1", confirm_topic("blankspot/v1", "unit-1"))  # a collector's own: not an input


# -- what a confirmation covers --------------------------------------------------------

@pytest.mark.parametrize("confirmation, covered, not_covered, ranges", [
    # nothing held: nothing covered
    (Confirmation("u", 1, 0, 0), [], [1, 2], []),
    # upto: every seq up to it
    (Confirmation("u", 1, 5, 0), [1, 5], [6, 7], [(1, 5)]),
    (Confirmation("u", 1, 5, 5), [1, 5], [6], [(1, 5)]),
    # top with holes above upto
    (Confirmation("u", 1, 5, 20, ((8, 9), (15, 15))), [1, 5, 6, 7, 10, 14, 16, 20], [8, 9, 15, 21, 100],
     [(1, 7), (10, 14), (16, 20)]),
    # no upto: the first hole starts at 1
    (Confirmation("u", 1, 0, 10, ((1, 3),)), [4, 10], [1, 2, 3, 11], [(4, 10)]),
    # top below upto: upto alone speaks
    (Confirmation("u", 1, 30, 10), [1, 10, 11, 30], [31], [(1, 30)]),
    # a hole reaching top
    (Confirmation("u", 1, 2, 10, ((5, 10),)), [1, 2, 3, 4], [5, 10, 11], [(1, 4)]),
])
def test_what_a_confirmation_covers(confirmation: Confirmation, covered: list[int], not_covered: list[int],
                                    ranges: list[tuple[int, int]]) -> None:
    assert [seq for seq in covered if not confirmation.covers(seq)] == []
    assert [seq for seq in not_covered if confirmation.covers(seq)] == []
    assert confirmation.covered() == ranges
    assert confirmation.bound == max(confirmation.upto, confirmation.top)


# -- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_payload_error(raw: bytes) -> None:
    try:
        decode_confirmation(raw, "unit-1")
    except PayloadError:
        pass


@given(json_values)
def test_any_json_value_decodes_or_raises_payload_error(value) -> None:
    try:
        decode_confirmation(json.dumps(value).encode(), "unit-1")
    except PayloadError:
        pass


# Near misses: the right schema and keys, each field any JSON value or a plausible number.
numbers = st.integers(-3, 30) | st.sampled_from([BIG - 1, BIG, -BIG, 10**40]) | json_values
near_misses = st.fixed_dictionaries(
    {"schema": st.just(CONFIRM_SCHEMA), "device": st.sampled_from(["unit-1", "unit-2", "", None]) | json_values,
     "rev": numbers, "upto": numbers, "top": numbers,
     "holes": st.lists(st.lists(numbers, min_size=0, max_size=3) | json_values, max_size=6) | json_values},
    optional={"extra": json_values},
)


@settings(max_examples=300)
@given(near_misses)
def test_near_misses_decode_or_raise_payload_error(table: dict) -> None:
    try:
        confirmation = decode_confirmation(json.dumps(table).encode(), "unit-1")
    except PayloadError:
        return
    # What is accepted is what the docstring promises: holes above upto, ascending, apart, up to top.
    assert confirmation.rev >= 1 and confirmation.upto >= 0 and confirmation.top >= 0
    previous = confirmation.upto
    for first, last in confirmation.holes:
        assert previous < first <= last <= confirmation.top
        previous = last + 1


@st.composite
def confirmations(draw) -> Confirmation:
    device = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True))
    rev = draw(st.integers(1, BIG - 1))
    upto = draw(st.integers(0, BIG - 1))
    top = draw(st.integers(0, BIG - 1))
    # holes: 2 * n distinct points above upto and up to top, paired, with a gap between pairs
    points = sorted(draw(st.sets(st.integers(upto + 1, max(upto + 1, top)), max_size=2 * MAX_CONFIRM_HOLES)))
    holes: list[tuple[int, int]] = []
    for i in range(0, len(points) - 1, 2):
        first, last = points[i], points[i] if draw(st.booleans()) else points[i + 1]
        if last <= top and (not holes or first > holes[-1][1] + 1):
            holes.append((first, last))
    return Confirmation(device, rev, upto, top, tuple(holes))


@given(confirmations())
def test_any_valid_confirmation_round_trips(confirmation: Confirmation) -> None:
    encoded = encode_confirmation(confirmation)
    assert len(encoded) <= MAX_CONFIRM_BYTES
    assert decode_confirmation(encoded, confirmation.device) == confirmation


@given(confirmations(), st.integers(1, 2**64))  # seqs start at 1
def test_covers_agrees_with_covered(confirmation: Confirmation, probe: int) -> None:
    probe = min(probe, confirmation.bound + 2)
    assert confirmation.covers(probe) == seq_ranges.contains(confirmation.covered(), probe)
